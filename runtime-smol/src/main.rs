//! The `tandem` binary: everything lives in the `tandem_smol` library so tests and
//! embedders can reach it; this file only turns the exit code into a process exit.

fn main() {
    let code = tandem_smol::cli::main(std::env::args_os().skip(1).collect());
    std::process::exit(code);
}
