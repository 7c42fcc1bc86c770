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
    /// Connections by [`Conn`] id; `None` for one the agent refused at accept.
    conns: Vec<Option<ConnId>>,
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

    fn conn(&self, c: &Conn) -> Option<ConnId> {
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
        // A runtime closes a socket the agent refuses. `Sim` has no refused client, so a
        // refused connection reads as closed; one over the limit must be refused or (HTTP)
        // accepted only to be answered `503` and closed.
        let limits = &self.sim.agent.config().limits;
        let full = self.sim.agent.connection_count(to) >= limits.max_connections;
        let id = match self.sim.try_connect_to(to) {
            Ok(id) => {
                // An RPC connection over the limit takes an evicted one's place.
                assert!(
                    to == Listener::Http
                        || self.sim.agent.connection_count(to)
                            <= self.sim.agent.config().limits.max_connections,
                    "the agent accepted an RPC connection beyond max_connections"
                );
                Some(id)
            }
            Err(_) => {
                assert!(full, "the agent refused a connection below max_connections");
                None
            }
        };
        self.conns.push(id);
        Conn::new(self.conns.len() - 1)
    }

    fn send(&mut self, c: &Conn, bytes: &[u8]) {
        // Bytes to a refused connection go nowhere, as into a socket the peer closed.
        if let Some(id) = self.conn(c) {
            self.sim.send(id, bytes);
        }
    }

    fn shutdown_write(&mut self, c: &Conn) {
        if let Some(id) = self.conn(c) {
            self.sim.eof(id);
        }
    }

    fn reset(&mut self, c: &Conn) {
        if let Some(id) = self.conn(c) {
            self.sim.reset(id);
        }
    }

    fn receive(&mut self, c: &Conn, within: Duration) -> Received {
        let Some(id) = self.conn(c) else {
            return Received::Eof;
        };
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
