//! The `tandem` CLI client: the subcommands that talk to a running agent, in the manner of
//! Consul's and Serf's CLIs. Each invocation opens a fresh connection, shakes hands, runs
//! one command and exits: 0 for success, 1 for any error (printed to stderr in Go's
//! wording), and `members` exits 2 when no member matches.
//!
//! [`COMMANDS`] is the one table of subcommands: the dispatcher, the top-level usage and
//! each subcommand's `-help` read it. Flags are parsed by [`crate::cli::parse_flags`], as
//! the agent's are. The RPC commands live in `commands`, `exec` (HTTP API) in `exec`.

mod commands;
mod exec;
mod format;
mod http;
mod interrupt;
mod keys;
mod query;
mod rpc;
mod rtt;

use crate::cli::{
    DEFAULT_RPC_ADDR, FlagError, FlagSpec, eprintln_safe, help_hint, parse_flags, print_out, usage,
};

/// Environment variable overriding `-rpc-addr`'s default (Consul: `CONSUL_RPC_ADDR`).
const ENV_RPC_ADDR: &str = "TANDEM_RPC_ADDR";
/// Environment variable overriding `-rpc-auth`'s default (Serf: `SERF_RPC_AUTH`).
const ENV_RPC_AUTH: &str = "TANDEM_RPC_AUTH";
/// Environment variable overriding `exec`'s `-http-addr` default.
const ENV_HTTP_ADDR: &str = "TANDEM_HTTP_ADDR";
/// Environment variable overriding `exec`'s `-http-auth` default.
const ENV_HTTP_AUTH: &str = "TANDEM_HTTP_AUTH";

/// One client subcommand.
pub(crate) struct Command {
    /// Its name on the command line.
    pub(crate) name: &'static str,
    /// One line for the top-level usage.
    pub(crate) synopsis: &'static str,
    /// Its usage text (without the flag table).
    usage: &'static str,
    /// Its own flags; the RPC commands also take [`RPC_FLAGS`].
    flags: &'static [FlagSpec],
    /// Whether it talks to the agent RPC (and so takes `-rpc-addr`, `-rpc-auth`).
    rpc: bool,
    /// Whether its own flags may also follow its first argument (`exec version -http-addr
    /// A`); every other word there is an argument (`exec dashboard -i 500`).
    flags_after_first_arg: bool,
    run: fn(&Invocation) -> i32,
}

/// The flags every RPC command takes.
const RPC_FLAGS: &[FlagSpec] = &[
    FlagSpec {
        name: "rpc-addr",
        value: Some("127.0.0.1:8400"),
        help: "RPC address of the tandem agent. Defaults to $TANDEM_RPC_ADDR, else \
               127.0.0.1:8400.",
    },
    FlagSpec {
        name: "rpc-auth",
        value: Some("<key>"),
        help: "RPC auth key of the agent (its -rpc-auth). Defaults to $TANDEM_RPC_AUTH.",
    },
];

/// Every client subcommand, in the order the top-level usage lists them.
pub(crate) const COMMANDS: &[Command] = &[
    commands::EVENT,
    exec::EXEC,
    commands::FORCE_LEAVE,
    commands::INFO,
    commands::JOIN,
    keys::KEYS,
    commands::LEAVE,
    commands::MEMBERS,
    commands::MONITOR,
    query::QUERY,
    query::REACHABILITY,
    commands::RELOAD,
    rtt::RTT,
    commands::TAGS,
];

/// Finds a client subcommand by name.
pub(crate) fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

impl Command {
    fn all_flags(&self) -> Vec<FlagSpec> {
        let mut all = self.flags.to_vec();
        if self.rpc {
            all.extend_from_slice(RPC_FLAGS);
        }
        all
    }

    /// The subcommand's `-help` text.
    fn help(&self) -> String {
        usage(self.usage, &self.all_flags())
    }

    /// The line after a usage error: where the `-help` text is.
    fn help_hint(&self) -> String {
        help_hint(crate::cli::PROGRAM, self.name)
    }

    /// Runs the subcommand with its arguments; returns the exit code.
    pub(crate) fn main(&self, args: &[String]) -> i32 {
        match self.parse(args) {
            Ok(Some(inv)) => (self.run)(&inv),
            Ok(None) => {
                print_out(&self.help());
                0
            }
            Err(e) => {
                eprintln_safe(&format!("{e}\n{}", self.help_hint()));
                1
            }
        }
    }

    fn parse(&self, args: &[String]) -> Result<Option<Invocation>, FlagError> {
        let specs = self.all_flags();
        let mut parsed = parse_flags(&specs, args)?;
        if self.flags_after_first_arg && parsed.rest.len() > 1 {
            let tail = parsed.rest.split_off(1);
            let mut words = tail.into_iter();
            while let Some(word) = words.next() {
                if word == "--" {
                    parsed.rest.extend(words.by_ref());
                    break;
                }
                match own_flag(&specs, &word) {
                    Some(spec) => {
                        // One of our flags: parse it (and its value) as at the front.
                        let mut flag = vec![word];
                        if spec.value.is_some() && !flag[0].contains('=') {
                            flag.extend(words.next());
                        }
                        parsed.flags.extend(parse_flags(&specs, &flag)?.flags);
                    }
                    None => parsed.rest.push(word),
                }
            }
        }
        if parsed.help {
            return Ok(None);
        }
        Ok(Some(Invocation {
            flags: parsed.flags,
            args: parsed.rest,
        }))
    }
}

/// The flag of `specs` that `word` names (`-name`, `--name`, `-name=value`), if any.
fn own_flag<'a>(specs: &'a [FlagSpec], word: &str) -> Option<&'a FlagSpec> {
    let body = word.strip_prefix("--").or_else(|| word.strip_prefix('-'))?;
    let name = body.split_once('=').map_or(body, |(name, _)| name);
    specs.iter().find(|s| s.name == name)
}

/// A parsed command line of a client subcommand.
pub(crate) struct Invocation {
    flags: Vec<(&'static str, Option<String>)>,
    /// The words after the flags.
    pub(crate) args: Vec<String>,
}

impl Invocation {
    /// The last value given for a flag.
    fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_deref().unwrap_or_default())
    }

    /// Every value given for a repeatable flag, in order.
    fn values(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_deref().unwrap_or_default())
            .collect()
    }

    /// A boolean flag: absent is `default`, `-flag` is true, `-flag=v` parses `v` as Go's
    /// `strconv.ParseBool` does.
    fn bool(&self, name: &'static str, default: bool) -> Result<bool, FlagError> {
        let Some((_, value)) = self.flags.iter().rev().find(|(n, _)| *n == name) else {
            return Ok(default);
        };
        match value.as_deref() {
            None => Ok(true),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(FlagError::Invalid {
                flag: name,
                value: other.to_string(),
                reason: "parse error".into(),
            }),
        }
    }

    /// `-rpc-addr`, else `$TANDEM_RPC_ADDR`, else the default.
    fn rpc_addr(&self) -> String {
        self.value("rpc-addr")
            .map(String::from)
            .or_else(|| env(ENV_RPC_ADDR))
            .unwrap_or_else(|| DEFAULT_RPC_ADDR.to_string())
    }

    /// `-rpc-auth`, else `$TANDEM_RPC_AUTH`.
    fn rpc_auth(&self) -> Option<String> {
        self.value("rpc-auth")
            .map(String::from)
            .or_else(|| env(ENV_RPC_AUTH))
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Prints one line to stdout.
fn out(line: &str) {
    print_out(&format!("{line}\n"));
}

/// Prints one line of a stream (`monitor`, `exec`) to stdout. An error means the reader
/// went away (`tandem monitor | head -1`): the stream should end rather than run on.
fn stream_out(line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(line.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()
}

/// Prints an error line to stderr and returns exit code 1.
fn fail(line: &str) -> i32 {
    eprintln_safe(line.trim_end_matches('\n'));
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn parse(cmd: &str, args: &str) -> Result<Option<Invocation>, FlagError> {
        find(cmd).unwrap().parse(&words(args))
    }

    #[test]
    fn flags_take_go_forms_and_repeat() {
        let inv = parse(
            "tags",
            "-set a=b --set=c=d -delete x -rpc-addr=127.0.0.1:1 -rpc-auth k",
        )
        .unwrap()
        .unwrap();
        assert_eq!(inv.values("set"), ["a=b", "c=d"]);
        assert_eq!(inv.values("delete"), ["x"]);
        assert_eq!(inv.rpc_addr(), "127.0.0.1:1");
        assert_eq!(inv.rpc_auth().as_deref(), Some("k"));
    }

    #[test]
    fn booleans_parse_as_go_does() {
        let b = |args: &str| {
            parse("event", args)
                .unwrap()
                .unwrap()
                .bool("coalesce", true)
        };
        let got: Vec<bool> = ["x", "-coalesce=false x", "-coalesce=0 x", "-coalesce x"]
            .iter()
            .map(|args| b(args).unwrap())
            .collect();
        assert_eq!(got, [true, false, false, true]);
        assert_eq!(
            b("-coalesce=maybe x").unwrap_err().to_string(),
            "invalid value \"maybe\" for flag -coalesce: parse error"
        );
    }

    #[test]
    fn exec_takes_flags_after_its_command_and_others_do_not() {
        let inv = parse("exec", "version -http-addr 127.0.0.1:9")
            .unwrap()
            .unwrap();
        assert_eq!(inv.args, ["version"]);
        assert_eq!(inv.value("http-addr"), Some("127.0.0.1:9"));
        // Its own flags anywhere after COMMAND; every other word is the command's.
        let inv = parse(
            "exec",
            "dashboard -i 500 -http-auth=u:p -n 2 --http-addr 127.0.0.1:8 -h",
        )
        .unwrap()
        .unwrap();
        assert_eq!(inv.args, ["dashboard", "-i", "500", "-n", "2", "-h"]);
        assert_eq!(inv.value("http-auth"), Some("u:p"));
        assert_eq!(inv.value("http-addr"), Some("127.0.0.1:8"));
        let inv = parse("exec", "echo -- -http-addr x").unwrap().unwrap();
        assert_eq!(inv.args, ["echo", "-http-addr", "x"]);
        assert_eq!(inv.value("http-addr"), None);
        let inv = parse("join", "a -wan").unwrap().unwrap();
        assert_eq!(inv.args, ["a", "-wan"]);
        assert!(parse("members", "-bogus").is_err());
        assert!(parse("members", "-h").unwrap().is_none());
    }

    #[test]
    fn every_command_has_usage_naming_itself() {
        for c in COMMANDS {
            assert!(
                c.help().starts_with(&format!("Usage: tandem {}", c.name)),
                "{}",
                c.name
            );
        }
    }
}
