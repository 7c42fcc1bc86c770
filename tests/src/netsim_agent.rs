//! Whole agents on the simulated network: `tandem_core::Agent` as a [`SimNode`], so the
//! same virtual network and clock that drive bare clusters drive the agent's RPC, HTTP API
//! and gossip together. Its "events" are its outputs other than datagrams (which the network
//! carries), rendered as text so they hash into the trace.

use std::net::SocketAddr;

use tandem_core::{Agent, Config, Instant, Output, Pool};

use crate::netsim::{NetConfig, SimNode, lan_addr, node_name};

/// One agent output, as text (outputs carry no `Hash`; their text is deterministic).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct AgentEvent(pub String);

impl SimNode for Agent {
    type Event = AgentEvent;
    fn handle_datagram(&mut self, pool: Pool, from: SocketAddr, data: &[u8], now: Instant) {
        Agent::handle_datagram(self, pool, from, data, now);
    }
    fn poll_datagram(&mut self) -> Option<(Pool, SocketAddr, Vec<u8>)> {
        Agent::poll_datagram(self)
    }
    fn poll_event(&mut self) -> Option<AgentEvent> {
        loop {
            match self.poll_output()? {
                // The network drains datagrams itself through `poll_datagram`.
                Output::Datagram => continue,
                other => return Some(AgentEvent(format!("{other:?}"))),
            }
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Agent::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Agent::handle_timeout(self, now);
    }
}

/// The configuration of simulated agent `i`: its name and LAN address.
pub fn agent_config(i: usize) -> Config {
    Config {
        node_name: node_name(i),
        lan_addr: lan_addr(i),
        ..Config::default()
    }
}

/// `n` agents on a network, not yet joined. Agent `i` is seeded with `seed + i`.
pub fn agent_net(n: usize, net: NetConfig, seed: u64) -> crate::netsim::Net<Agent> {
    let mut sim = crate::netsim::Net::new(net, crate::netsim::START);
    for i in 0..n {
        let agent = Agent::new(agent_config(i), seed + i as u64, sim.now);
        sim.add(agent, lan_addr(i), None);
    }
    sim
}
