//! tandem-smol: the smol-family runtime of the tandem node agent.
//!
//! The `tandem` binary is a thin shell around this library: [`cli`] parses the command line
//! and dispatches subcommands, [`agent`] runs `tandem agent` (sockets, clock, signals, the
//! config file) around one [`tandem_core::Agent`], `host` implements the host commands
//! (`sysinfo`, `dashboard`) that the core asks the runtime to run as effects, and `client`
//! is the CLI client of a running agent (`members`, `join`, `monitor`, `exec`, …: blocking
//! std sockets, one connection per invocation).
//!
//! The agent runs on one thread: an `async_executor::LocalExecutor` driven by
//! `async_io::block_on`, with the agent in an `Rc<RefCell<_>>` that is only ever borrowed
//! between two `.await`s, never across one. It owns the HTTP and RPC listeners and the UDP
//! gossip sockets (LAN, and WAN on a `-server`). `async-io` adds its one helper thread for
//! the reactor; the only other threads are short-lived host name lookups for `join`
//! (`Effect::Resolve`), which block, and the waiters of event handler scripts
//! (`Effect::RunHandler`). (The client's `monitor` and `exec` add one thread
//! that waits for Ctrl-C.)

// The two FFI calls a runtime needs (`localtime_r`, `sysconf`) live in `tandem-runtime`;
// this crate is safe code throughout.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod cli;
mod client;
mod gossip;
mod handlers;
mod host;
mod logging;

/// This runtime's name and version, as reported in `HostInfo::runtime`.
pub const RUNTIME: &str = concat!("tandem-smol ", env!("CARGO_PKG_VERSION"));
