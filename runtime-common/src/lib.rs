//! tandem-runtime: the runtime-agnostic half of tandem's runtimes.
//!
//! `tandem-smol` and `tandem-mio` drive the same [`tandem_core::Agent`] on different event
//! loops. Everything that does not depend on the loop lives here once, so the two binaries
//! cannot drift apart: the [`clock`] mapping std time onto the core's `Instant`, the
//! [`procfs`] sampling of the agent process, the built-in [`host`] commands' table,
//! arguments and items, and `agent`'s command line ([`flags`], [`agent_options`]): its
//! flags, usage text and the configuration they describe, and the dispatch above it
//! ([`cli`]); [`keygen`]; the gossip name lookups ([`resolve`]); running event handler
//! scripts ([`handler`]); writing the state files ([`persist`]); what SIGINT and SIGTERM
//! do ([`signals`]); binding the TCP listeners with a full-size backlog ([`listen`]); and the kernel's
//! port-unreachable reports on the gossip sockets ([`mod@unreachable`]).

// `unsafe` appears in four one-line FFI calls (`localtime_r` in `clock`, `sysconf` in
// `procfs`, `kill` in `handler`, `listen` in `listen`; `setsockopt`/`recvmsg` in `unreachable`), each with its SAFETY note.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod agent_options;
pub mod cli;
pub mod clock;
pub mod flags;
pub mod handler;
pub mod host;
pub mod keygen;
pub mod listen;
pub mod persist;
pub mod procfs;
pub mod resolve;
pub mod signals;
pub mod unreachable;
