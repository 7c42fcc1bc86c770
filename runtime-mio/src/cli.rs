//! The command line of `tandem-mio`: `agent`, `keygen` and `version`, with `tandem agent`'s flags,
//! defaults and exit codes.
//!
//! The flag parser ([`parse_flags`]), [`AgentOptions`], the `agent` flag table and the
//! config loading are `tandem_runtime`'s, the same code `tandem-smol` runs; only the
//! program name in the usage texts differs.

use std::ffi::OsString;

use tandem_runtime::agent_options::agent_usage;
pub use tandem_runtime::agent_options::{
    AgentOptions, DEFAULT_HTTP_ADDR, DEFAULT_LAN_PORT, DEFAULT_RPC_ADDR, DEFAULT_WAN_PORT,
    Generated,
};
pub use tandem_runtime::flags::{FlagError, FlagSpec, Parsed, parse_flags, usage};
use tandem_runtime::keygen::keygen_main;

use crate::RUNTIME;

/// The program name in usage texts.
const PROGRAM: &str = "tandem-mio";

/// The top-level usage: `agent`, `keygen`, `version`.
fn top_usage() -> String {
    let commands = [
        ("agent", "Runs a tandem agent"),
        ("keygen", "Generates a new encryption key"),
        ("version", "Prints the tandem version"),
    ];
    let mut out = String::from(
        "Usage: tandem-mio [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n",
    );
    for (name, synopsis) in commands {
        out.push_str(&format!("    {name:<13}{synopsis}\n"));
    }
    out
}

/// Runs the command line (without the program name); returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = match args.into_iter().map(OsString::into_string).collect() {
        Ok(a) => a,
        Err(bad) => {
            eprintln_safe(&format!("argument is not valid UTF-8: {bad:?}"));
            return 1;
        }
    };
    let Some((command, rest)) = args.split_first() else {
        eprintln_safe(&top_usage());
        return 1;
    };
    match command.as_str() {
        "-h" | "-help" | "--help" | "help" => {
            print_out(&top_usage());
            0
        }
        "-v" | "-version" | "--version" | "version" => {
            print_out(&version_text());
            0
        }
        "keygen" => {
            let (code, out, err) = keygen_main(PROGRAM, rest);
            print_out(&out);
            if !err.is_empty() {
                eprintln_safe(&err);
            }
            code
        }
        "agent" => match AgentOptions::parse(rest) {
            Ok(Some(opts)) => crate::agent::run(opts),
            Ok(None) => {
                print_out(&agent_usage(PROGRAM));
                0
            }
            Err(e) => {
                eprintln_safe(&format!("{e}\n\n{}", agent_usage(PROGRAM)));
                1
            }
        },
        other => {
            eprintln_safe(&format!("Unknown command: {other:?}\n\n{}", top_usage()));
            1
        }
    }
}

fn version_text() -> String {
    format!("tandem v{}\nRuntime: {RUNTIME}\n", tandem_core::VERSION)
}

/// Prints to stdout without panicking when stdout is closed (`print!` would).
pub(crate) fn print_out(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints to stderr without panicking when stderr is closed.
pub(crate) fn eprintln_safe(text: &str) {
    crate::print_line(text.trim_end_matches('\n'));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_runtime::agent_options::AGENT_FLAGS;

    #[test]
    fn the_agent_usage_is_the_shared_flag_table_under_this_programs_name() {
        let text = agent_usage(PROGRAM);
        assert!(
            text.starts_with("Usage: tandem-mio agent [options]\n\n"),
            "{text}"
        );
        for flag in AGENT_FLAGS {
            assert!(
                text.contains(&format!("\n  -{}", flag.name)),
                "-{}",
                flag.name
            );
        }
    }
}
