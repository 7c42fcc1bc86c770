//! tandem-mio: the tandem node agent on a hand-written mio event loop.
//!
//! Two ways in:
//!
//! - the `tandem-mio` binary: `tandem-mio agent` runs an agent with the same flags,
//!   defaults, log lines, signals and exit codes as `tandem agent` ([`cli`], [`agent`]);
//! - [`MioAgent`], for an application that already runs a `mio::Poll`: it registers the
//!   agent's listeners, gossip sockets (UDP, see [`MioAgent::with_gossip`]) and
//!   connections under a range of tokens, and the application hands
//!   it the events for them and calls it when its deadline passes (see the example on
//!   [`MioAgent`]). The binary drives the agent exactly this way.
//!
//! One thread runs the loop. Host commands (`sysinfo`, `dashboard`, or the application's
//! own, see [`MioAgent::register_host_command`]) run on worker threads and hand their items
//! back through a channel and a `mio::Waker`; so do the host name lookups of a `join`.
//! mio has no timers, so the poll timeout is the
//! earliest of the core's deadline and the runtime's own ([`MioAgent::poll_timeout`]).
//!
//! `runtime-mio/examples/minimal_loop.rs` shows the least an embedder has to write without
//! mio at all: std sockets and `poll(2)`.

// The two FFI calls a runtime needs (`localtime_r`, `sysconf`) live in `tandem-runtime`;
// this crate is safe code throughout.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod cli;
mod driver;
mod host;
mod timers;

pub use driver::{AgentRequest, MioAgent, TOKEN_RANGE};
pub use host::{Finished, HostCommand, HostFn, HostJob, Stopped};

/// This runtime's name and version, as reported in `HostInfo::runtime`.
pub const RUNTIME: &str = concat!("tandem-mio ", env!("CARGO_PKG_VERSION"));

/// Writes one line to stderr. A closed or full stderr must not take the agent down, so
/// errors are ignored (`eprintln!` would panic).
pub(crate) fn print_line(line: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.write_all(b"\n");
}
