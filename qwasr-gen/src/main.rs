//! `qwasr-gen`: see the library docs.

fn main() -> std::process::ExitCode {
    qwasr_gen::cli::main(std::env::args_os().collect())
}
