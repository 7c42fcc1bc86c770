//! The command line: subcommand dispatch, in Consul's style.
//!
//! Flags follow Go's `flag` package, as Consul's do (see [`parse_flags`]). The dispatch of
//! `agent`, `keygen` and `version` ([`Program`]), the flag parser, [`AgentOptions`], the
//! `agent` flag table and the config loading are `tandem_runtime`'s, shared with
//! `tandem-mio`; the client commands (`members`, `join`, …) declare their flags in tables
//! of [`FlagSpec`] of their own, so a new one is a table, a struct and an entry in
//! `client::COMMANDS`.

use std::ffi::OsString;

pub use tandem_runtime::agent_options::{
    AgentOptions, DEFAULT_HTTP_ADDR, DEFAULT_LAN_PORT, DEFAULT_RPC_ADDR, DEFAULT_WAN_PORT,
    Generated,
};
use tandem_runtime::cli::Program;
pub(crate) use tandem_runtime::cli::{eprintln_safe, help_hint, print_out};
pub use tandem_runtime::flags::{FlagError, FlagSpec, Parsed, parse_flags, usage};

use crate::RUNTIME;

/// The program name in usage texts.
pub(crate) const PROGRAM: &str = "tandem";

/// Runs the command line (without the program name); returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let program = Program {
        name: PROGRAM,
        runtime: RUNTIME,
        commands: crate::client::COMMANDS
            .iter()
            .map(|c| (c.name, c.synopsis))
            .collect(),
    };
    program.main(args, crate::agent::run, |name, rest| {
        crate::client::find(name).map(|command| command.main(rest))
    })
}
