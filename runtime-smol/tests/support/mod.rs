//! End-to-end harness of the tests only `tandem` has (its CLI client, Serf's and Python's
//! clients against it): a `tandem agent` process on ephemeral loopback ports, which is
//! `tandem_tests`' [`Process`] (the same harness the both-runtime suites in `tests/` run
//! on) with its ports at hand. The agent is killed and reaped on drop.

#![allow(dead_code)] // each test file uses its own part of the harness

use std::ops::{Deref, DerefMut};

use tandem_tests::driver::Driver as _;
use tandem_tests::driver::process::{Process, Runtime};

/// The `tandem` binary cargo built for these tests (also the CLI client).
pub const BIN: &str = env!("CARGO_BIN_EXE_tandem");

/// A `tandem agent` child process.
pub struct RunningAgent {
    process: Process,
    /// The bound HTTP port.
    pub port: u16,
    /// The bound agent RPC port.
    pub rpc_port: u16,
    /// The bound LAN gossip port (UDP).
    pub lan_port: u16,
}

impl RunningAgent {
    /// Starts `tandem agent -http-addr 127.0.0.1:0 -rpc-addr 127.0.0.1:0 -lan-port 0
    /// -wan-port 0 <extra>` and waits until it listens.
    pub fn start(extra: &[&str]) -> RunningAgent {
        let process = Process::start_flags(Runtime::Smol, extra);
        RunningAgent {
            port: process.http_addr().port(),
            rpc_port: process.rpc_addr().port(),
            lan_port: process.lan_addr().port(),
            process,
        }
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Deref for RunningAgent {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl DerefMut for RunningAgent {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}
