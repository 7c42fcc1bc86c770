//! The `tandem-mio` binary: everything lives in the `tandem_mio` library so tests and
//! embedders can reach it; this file only turns the exit code into a process exit.

fn main() {
    let code = tandem_mio::cli::main(std::env::args_os().skip(1).collect());
    std::process::exit(code);
}
