//! The in-memory conformance driver: [`Sim`] behind the [`Driver`] primitives. Waiting
//! advances the virtual clock deadline by deadline and stops as soon as the awaited bytes
//! are in, so a case that waits for a 300 ms long-poll takes no real time.

use std::net::SocketAddr;
use std::time::Duration;

use tandem_core::{Config, ConnId, Instant, Listener};

use super::{Conn, Driver, Received};
use crate::sim::{PID, Sim};

/// An agent in memory.
pub struct Memory {
    /// The simulation, for cases that look inside.
    pub sim: Sim,
    started: Instant,
    conns: Vec<ConnId>,
}

impl Memory {
    /// An agent with `config` (host facts are the simulation's).
    pub fn start(config: Config) -> Memory {
        let sim = Sim::with_config(config);
        Memory {
            started: sim.now,
            sim,
            conns: Vec::new(),
        }
    }

    fn conn(&self, c: &Conn) -> ConnId {
        self.conns[c.id()]
    }
}

impl Driver for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn pid(&self) -> u32 {
        PID
    }

    fn lan_addr(&self) -> SocketAddr {
        self.sim.agent.config().lan_addr
    }

    fn elapsed(&self) -> Duration {
        self.sim.now.saturating_duration_since(self.started)
    }

    fn connect(&mut self, to: Listener) -> Conn {
        let id = self.sim.connect_to(to);
        self.conns.push(id);
        Conn::new(self.conns.len() - 1)
    }

    fn send(&mut self, c: &Conn, bytes: &[u8]) {
        let id = self.conn(c);
        self.sim.send(id, bytes);
    }

    fn shutdown_write(&mut self, c: &Conn) {
        let id = self.conn(c);
        self.sim.eof(id);
    }

    fn reset(&mut self, c: &Conn) {
        let id = self.conn(c);
        self.sim.reset(id);
    }

    fn receive(&mut self, c: &Conn, within: Duration) -> Received {
        let id = self.conn(c);
        let end = self.sim.now + within;
        loop {
            let got = self.sim.received(id);
            if !got.is_empty() {
                return Received::Bytes(got);
            }
            if self.sim.is_closed(id) {
                return Received::Eof;
            }
            if self.sim.now >= end {
                return Received::Quiet;
            }
            // The next thing that can happen is the agent's next deadline; nothing at all
            // happens before `end` if that is later.
            let next = match self.sim.agent.poll_timeout() {
                Some(t) if t <= end => t,
                _ => end,
            };
            let step = next.saturating_duration_since(self.sim.now);
            self.sim.advance(step);
        }
    }

    fn wait(&mut self, d: Duration) {
        self.sim.advance(d);
    }
}
