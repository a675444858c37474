//! The emitted runtime's command line.

use clap::{Arg, ArgAction, Command};

/// Parsed command line of a runtime.
#[derive(Debug, Clone, Default)]
pub struct Cli {
    /// `--addr` / `HTTP_ADDR`.
    pub addr: Option<String>,
    /// `--data-dir` / `QWASR_DATA_DIR`.
    pub data_dir: Option<std::path::PathBuf>,
    /// `--cache-dir` / `QWASR_CACHE_DIR`.
    pub cache_dir: Option<std::path::PathBuf>,
    /// `--no-cache` / `QWASR_NO_CACHE`.
    pub no_cache: bool,
    /// `--config KEY=VALUE`, in order.
    pub config: Vec<(String, String)>,
    /// `--component FILE`: a .wasm to compile and run instead of the embedded one.
    #[cfg(feature = "compiler")]
    pub component: Option<std::path::PathBuf>,
}

impl Cli {
    /// Parses `std::env::args` for `app`; prints help or an error and exits on bad input.
    pub fn parse_for(app: &'static crate::App) -> Cli {
        Self::command(app).get_matches().into()
    }

    fn command(app: &'static crate::App) -> Command {
        let command = Command::new(app.name)
            .about(format!(
                "The `{}` WebAssembly service: a runtime built for this one component by qwasr-gen {}.{}",
                app.name,
                app.generator,
                app.serves
                    .iter()
                    .map(|s| format!("\n  serves: {s}"))
                    .collect::<String>()
            ))
            .after_help(format!(
                "Environment:\n  \
                 HTTP_ADDR               address to listen on (default {})\n  \
                 QWASR_DATA_DIR          where embedded backends keep data (default {})\n  \
                 QWASR_CACHE_DIR         where a copy of the compiled component is kept (default ~/.cache/qwasr)\n  \
                 QWASR_NO_CACHE=1        keeps no such copy\n  \
                 QWASR_CONFIG_<KEY>      overrides a wasi:config value (KEY upper-cased, '-' and '.' as '_')\n  \
                 RUST_LOG                log filter, e.g. info, debug, qwasr=trace (default info)\n\
                 {}\n\
                 The guest sees no host environment, files or network beyond the manifest's [grants].",
                app.http_addr,
                app.data_dir.unwrap_or("./.qwasr-data"),
                app.env
                    .iter()
                    .map(|(name, help)| format!("  {name:<23} {help}\n"))
                    .collect::<String>(),
            ))
            .version(app.generator)
            .arg(
                Arg::new("addr")
                    .long("addr")
                    .env("HTTP_ADDR")
                    .value_name("HOST:PORT")
                    .help("Address the HTTP server listens on"),
            )
            .arg(
                Arg::new("data-dir")
                    .long("data-dir")
                    .env("QWASR_DATA_DIR")
                    .value_name("DIR")
                    .value_parser(clap::value_parser!(std::path::PathBuf))
                    .help("Directory where embedded backends keep their data"),
            )
            .arg(
                Arg::new("cache-dir")
                    .long("cache-dir")
                    .env("QWASR_CACHE_DIR")
                    .value_name("DIR")
                    .value_parser(clap::value_parser!(std::path::PathBuf))
                    .help("Directory for a file copy of the compiled component, which later starts map instead of copying (default $XDG_CACHE_HOME/qwasr or ~/.cache/qwasr)"),
            )
            .arg(
                Arg::new("no-cache")
                    .long("no-cache")
                    .env("QWASR_NO_CACHE")
                    .action(ArgAction::SetTrue)
                    // 1/0, yes/no, on/off as well as true/false.
                    .value_parser(clap::builder::BoolishValueParser::new())
                    .help("Neither reads nor writes that copy"),
            )
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_name("KEY=VALUE")
                    .action(ArgAction::Append)
                    .value_parser(parse_pair)
                    .help("Sets a wasi:config value (repeatable; wins over the manifest and environment)"),
            );
        #[cfg(feature = "compiler")]
        let command = command.arg(
            Arg::new("component")
                .long("component")
                .value_name("FILE")
                .value_parser(clap::value_parser!(std::path::PathBuf))
                .help("Compiles and runs this .wasm instead of the embedded component (development runtimes)"),
        );
        command
    }
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

impl From<clap::ArgMatches> for Cli {
    fn from(m: clap::ArgMatches) -> Self {
        Cli {
            addr: m.get_one::<String>("addr").cloned(),
            data_dir: m.get_one::<std::path::PathBuf>("data-dir").cloned(),
            cache_dir: m.get_one::<std::path::PathBuf>("cache-dir").cloned(),
            no_cache: m.get_flag("no-cache"),
            config: m
                .get_many::<(String, String)>("config")
                .map(|v| v.cloned().collect())
                .unwrap_or_default(),
            #[cfg(feature = "compiler")]
            component: m.get_one::<std::path::PathBuf>("component").cloned(),
        }
    }
}
