//! The `qwasr-gen` command line (also `cargo qwasr`).

use crate::catalog::Catalog;
use crate::component::Component;
use crate::manifest::Manifest;
use crate::plan::Plan;
use crate::{build, emit, plan};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Builds a tailored native runtime for a WASI component.
#[derive(Debug, Parser)]
#[command(name = "qwasr-gen", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shows the component's imports and exports, as WIT interface ids.
    Inspect {
        /// The component (.wasm).
        component: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Shows which crate and backend serve each import, and which server runs each export.
    Plan {
        #[command(flatten)]
        input: Input,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Writes the runtime's crate to a directory (replacing it atomically).
    Generate {
        #[command(flatten)]
        input: Input,
        /// Embed WebAssembly and Cranelift instead of precompiled code (development).
        #[arg(long)]
        jit: bool,
        /// Directory to write the crate to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Generates and builds the runtime; prints the executable's path on stdout.
    Build {
        #[command(flatten)]
        input: Input,
        /// Copy the executable here.
        #[arg(short = 'o', long = "output", value_name = "BIN")]
        output: Option<PathBuf>,
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
        /// Embed WebAssembly and Cranelift instead of precompiled code; the
        /// runtime then also runs a .wasm given with `--component FILE` (development).
        #[arg(long)]
        jit: bool,
        /// Cargo target directory shared by all apps [env: QWASR_TARGET_DIR, then CARGO_TARGET_DIR; default ~/.cache/qwasr-gen/target]
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
    },
    /// Turns a core WebAssembly module (with component-type metadata) into a component.
    Componentize {
        /// The core module.
        module: PathBuf,
        /// Where to write the component.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
        /// A WASI preview1 adapter module, for modules that import wasi_snapshot_preview1.
        #[arg(long, value_name = "ADAPTER")]
        adapter: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct Input {
    /// The component (.wasm); default: `[app] component` in the manifest.
    component: Option<PathBuf>,
    /// The app's manifest; default: ./qwasr.toml if it exists.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Link every interface and default backend in the catalog, used or not
    /// (a general-purpose runtime, for comparisons).
    #[arg(long, hide = true)]
    link_all: bool,
    /// Directory of the backend crates [env: QWASR_BACKENDS; default: the one qwasr-gen was built from]
    #[arg(long, value_name = "DIR")]
    backends: Option<PathBuf>,
}

/// What the inputs resolve to.
struct Loaded {
    component: Component,
    manifest_path: Option<PathBuf>,
    plan: Plan,
}

impl Input {
    fn load(&self) -> Result<Loaded> {
        let manifest_path = match &self.manifest {
            Some(m) => Some(m.clone()),
            None => Some(PathBuf::from("qwasr.toml")).filter(|p| p.is_file()),
        };
        let manifest = match &manifest_path {
            Some(p) => Manifest::read(p)?,
            None => Manifest::default(),
        };
        let component_path = match (&self.component, &manifest.component) {
            (Some(c), _) => c.clone(),
            (None, Some(c)) => c.clone(),
            (None, None) => bail!(
                "no component given: pass APP.wasm, or set `component` under [app] in qwasr.toml{}",
                match &manifest_path {
                    Some(p) => format!(" ({})", p.display()),
                    None => " (none found in the current directory)".into(),
                }
            ),
        };
        let component = Component::read(&component_path)?;
        let dir = self.backends.clone().unwrap_or_else(Catalog::default_dir);
        let catalog = Catalog::load(&dir)?;
        let plan = plan::plan_with(&component, &manifest, &catalog, self.link_all)?;
        Ok(Loaded {
            component,
            manifest_path,
            plan,
        })
    }
}

fn status(verb: &str, what: impl std::fmt::Display) {
    eprintln!("{verb:>12} {what}");
}

/// Runs the command line; `args` includes the program name.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Inspect { component, json } => {
            let c = Component::read(&component)?;
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&c)?)?;
            } else {
                writeln!(stdout, "{} ({} bytes)", c.path.display(), c.size)?;
                writeln!(stdout, "imports:")?;
                for i in &c.imports {
                    writeln!(stdout, "  {i}")?;
                }
                for u in &c.unnamed_imports {
                    writeln!(stdout, "  {} ({})", u.name, u.kind)?;
                }
                writeln!(stdout, "exports:")?;
                for e in &c.exports {
                    writeln!(stdout, "  {e}")?;
                }
                for u in &c.unnamed_exports {
                    writeln!(stdout, "  {} ({})", u.name, u.kind)?;
                }
            }
        }
        Command::Plan { input, json } => {
            let loaded = input.load()?;
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&loaded.plan)?)?;
            } else {
                write!(stdout, "{}", loaded.plan.render())?;
            }
        }
        Command::Generate { input, out, jit } => {
            let loaded = input.load()?;
            generate(&loaded, &out, mode(jit))?;
            writeln!(stdout, "{}", out.display())?;
        }
        Command::Build {
            input,
            output,
            release,
            jit,
            target_dir,
        } => {
            let started = std::time::Instant::now();
            let loaded = input.load()?;
            let target_dir = match target_dir {
                Some(t) => t,
                None => build::default_target_dir()?,
            };
            let target_dir = absolute(&target_dir)?;
            let krate = target_dir.join("qwasr").join(&loaded.plan.app);
            generate(&loaded, &krate, mode(jit))?;
            status(
                "Building",
                format!(
                    "{} runtime (cargo, target dir {})",
                    loaded.plan.app,
                    target_dir.display()
                ),
            );
            let bin = build::cargo_build(&krate, &loaded.plan.app, &target_dir, release)?;
            let bin = match output {
                Some(to) => {
                    build::install(&bin, &to)?;
                    to
                }
                None => bin,
            };
            status(
                "Finished",
                format!(
                    "{} in {:.1}s",
                    loaded.plan.app,
                    started.elapsed().as_secs_f64()
                ),
            );
            writeln!(stdout, "{}", bin.display())?;
        }
        Command::Componentize {
            module,
            output,
            adapter,
        } => {
            componentize(&module, &output, adapter.as_deref())?;
            writeln!(stdout, "{}", output.display())?;
        }
    }
    Ok(())
}

fn mode(jit: bool) -> emit::Mode {
    if jit {
        emit::Mode::Jit
    } else {
        emit::Mode::Precompiled
    }
}

fn generate(loaded: &Loaded, out: &Path, mode: emit::Mode) -> Result<()> {
    for note in &loaded.plan.notes {
        eprintln!("note: {note}");
    }
    let files = emit::emit(
        &loaded.plan,
        &loaded.component.bytes,
        loaded.manifest_path.as_deref(),
        mode,
    )?;
    files.write(out)?;
    status(
        "Generated",
        format!("{} runtime crate in {}", loaded.plan.app, out.display()),
    );
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot resolve `{}`", p.display()))
}

fn componentize(module: &Path, output: &Path, adapter: Option<&Path>) -> Result<()> {
    let bytes =
        std::fs::read(module).with_context(|| format!("cannot read `{}`", module.display()))?;
    if !wasmparser::Parser::is_core_wasm(&bytes) {
        bail!("`{}` is not a core WebAssembly module", module.display());
    }
    let mut encoder = wit_component::ComponentEncoder::default();
    encoder.validate(true);
    encoder.module(&bytes).with_context(|| {
        format!(
            "`{}` carries no usable component-type metadata (build it with wit-bindgen)",
            module.display()
        )
    })?;
    if let Some(adapter) = adapter {
        let a = std::fs::read(adapter)
            .with_context(|| format!("cannot read `{}`", adapter.display()))?;
        encoder.adapter("wasi_snapshot_preview1", &a)?;
    }
    let component = encoder.encode().with_context(|| {
        format!(
            "cannot make a component of `{}` (a module that imports wasi_snapshot_preview1 needs --adapter)",
            module.display()
        )
    })?;
    build::install_bytes(&component, output)
}
