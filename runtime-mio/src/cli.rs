//! The command line of `tandem-mio`: `agent`, `keygen` and `version`, with `tandem agent`'s
//! flags, defaults and exit codes.
//!
//! The dispatch ([`Program`]), the flag parser ([`parse_flags`]), [`AgentOptions`], the
//! `agent` flag table and the config loading are `tandem_runtime`'s, the same code
//! `tandem-smol` runs; only the program name in the usage texts differs, and `tandem-mio`
//! has no client commands.

use std::ffi::OsString;

pub use tandem_runtime::agent_options::{
    AgentOptions, DEFAULT_HTTP_ADDR, DEFAULT_LAN_PORT, DEFAULT_RPC_ADDR, DEFAULT_WAN_PORT,
    Generated,
};
use tandem_runtime::cli::Program;
pub use tandem_runtime::flags::{FlagError, FlagSpec, Parsed, parse_flags, usage};

use crate::RUNTIME;

/// The program name in usage texts.
const PROGRAM: &str = "tandem-mio";

/// Runs the command line (without the program name); returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let program = Program {
        name: PROGRAM,
        runtime: RUNTIME,
        commands: Vec::new(),
    };
    program.main(args, crate::agent::run, |_, _| None)
}
