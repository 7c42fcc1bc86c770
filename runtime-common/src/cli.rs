//! The top of both binaries' command lines, in Consul's style: `agent`, `keygen`, `version`
//! and help, dispatched the same way with the same exit codes, so `tandem` and `tandem-mio`
//! cannot drift apart. A [`Program`] says what differs: the name in the usage texts, the
//! runtime `version` names, and (for `tandem`) the client commands.

use std::ffi::OsString;

use crate::agent_options::{AgentOptions, agent_usage};
use crate::keygen::keygen_main;

/// What one binary adds to the shared command line.
pub struct Program {
    /// The program name in usage texts (`tandem`, `tandem-mio`).
    pub name: &'static str,
    /// The runtime `version` prints (`tandem-smol 0.1.0`).
    pub runtime: &'static str,
    /// Commands besides `agent`, `keygen` and `version`, with their one-line synopses, for
    /// the top-level usage.
    pub commands: Vec<(&'static str, &'static str)>,
}

impl Program {
    /// The top-level usage: `agent`, `keygen`, `version` and the program's own commands.
    pub fn usage(&self) -> String {
        let mut commands = vec![
            ("agent", "Runs a tandem agent"),
            ("keygen", "Generates a new encryption key"),
            ("version", "Prints the tandem version"),
        ];
        commands.extend(self.commands.iter().copied());
        commands.sort_unstable();
        let mut out = format!(
            "Usage: {} [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n",
            self.name
        );
        for (name, synopsis) in commands {
            out.push_str(&format!("    {name:<13}{synopsis}\n"));
        }
        out
    }

    /// What `version` prints.
    pub fn version_text(&self) -> String {
        format!(
            "tandem v{}\nRuntime: {}\n",
            tandem_core::VERSION,
            self.runtime
        )
    }

    /// Runs the command line (without the program name); returns the process exit code.
    /// `agent` runs `run_agent`; any other command is `other`'s (`None`: unknown).
    pub fn main(
        &self,
        args: Vec<OsString>,
        run_agent: impl FnOnce(AgentOptions) -> i32,
        other: impl FnOnce(&str, &[String]) -> Option<i32>,
    ) -> i32 {
        let args: Vec<String> = match args.into_iter().map(OsString::into_string).collect() {
            Ok(a) => a,
            Err(bad) => {
                eprintln_safe(&format!("argument is not valid UTF-8: {bad:?}"));
                return 1;
            }
        };
        let Some((command, rest)) = args.split_first() else {
            eprintln_safe(&self.usage());
            return 1;
        };
        match command.as_str() {
            "-h" | "-help" | "--help" | "help" => {
                print_out(&self.usage());
                0
            }
            "-v" | "-version" | "--version" | "version" => {
                print_out(&self.version_text());
                0
            }
            "keygen" => {
                let (code, out, err) = keygen_main(self.name, rest);
                print_out(&out);
                if !err.is_empty() {
                    eprintln_safe(&err);
                }
                code
            }
            "agent" => match AgentOptions::parse(rest) {
                Ok(Some(opts)) => match opts.with_file_settings() {
                    Ok(opts) => run_agent(opts),
                    Err(e) => {
                        eprintln_safe(&format!("==> Error loading configuration: {e}"));
                        1
                    }
                },
                Ok(None) => {
                    print_out(&agent_usage(self.name));
                    0
                }
                Err(e) => {
                    // The error and where help is, not the whole usage after it: the one
                    // line that matters stays on the screen. Exit 1, as serf's agent does.
                    eprintln_safe(&format!("{e}\n{}", help_hint(self.name, "agent")));
                    1
                }
            },
            name => other(name, rest).unwrap_or_else(|| {
                eprintln_safe(&format!("Unknown command: {name:?}\n\n{}", self.usage()));
                1
            }),
        }
    }
}

/// The line after a command-line error: where the usage is.
pub fn help_hint(program: &str, command: &str) -> String {
    format!("Run '{program} {command} -help' for usage.")
}

/// Prints to stdout without panicking when stdout is closed (`print!` would).
pub fn print_out(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints `text` as one line to stderr without panicking when stderr is closed.
pub fn eprintln_safe(text: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.trim_end_matches('\n').as_bytes());
    let _ = err.write_all(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_options::AGENT_FLAGS;

    #[test]
    fn the_agent_usage_is_the_shared_flag_table_under_each_programs_name() {
        for program in ["tandem", "tandem-mio"] {
            let text = agent_usage(program);
            assert!(
                text.starts_with(&format!("Usage: {program} agent [options]\n\n")),
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

    #[test]
    fn the_usage_lists_the_shared_and_the_programs_own_commands_sorted() {
        let program = Program {
            name: "tandem-x",
            runtime: "tandem-x 0.0.0",
            commands: vec![("members", "Lists the members")],
        };
        let usage = program.usage();
        assert!(
            usage.starts_with("Usage: tandem-x [--version] [--help] <command> [<args>]\n"),
            "{usage}"
        );
        let names: Vec<&str> = usage
            .lines()
            .skip(3)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(names, ["agent", "keygen", "members", "version"]);
        assert_eq!(
            program.version_text(),
            format!(
                "tandem v{}\nRuntime: tandem-x 0.0.0\n",
                tandem_core::VERSION
            )
        );
    }
}
