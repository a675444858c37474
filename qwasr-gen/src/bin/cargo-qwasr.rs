//! `cargo qwasr …`: the same commands as `qwasr-gen`, as a cargo subcommand.

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // cargo runs `cargo-qwasr qwasr build …`; drop the repeated name.
    if args.get(1).is_some_and(|a| a == "qwasr") {
        args.remove(1);
    }
    if let Some(first) = args.first_mut() {
        *first = "cargo qwasr".into();
    }
    qwasr_gen::cli::main(args)
}
