//! The gossip side of a [`MioAgent`]: the UDP sockets of the LAN pool (every agent) and
//! the WAN pool (servers), and the name lookups a `join` asks for (`Effect::Resolve`).
//!
//! - Receiving drains each socket to `WouldBlock` (mio is edge-triggered) into one 64 KiB
//!   buffer (the largest UDP payload), handing each datagram to `Agent::handle_datagram`.
//!   After [`RECV_BUDGET`] datagrams in a row the socket is marked ready and read again on
//!   the next turn without waiting for an event, so a flood cannot starve the connections.
//! - Sending happens inside the drain: on `Output::Datagram` each queued datagram is peeked,
//!   sent from its pool's socket and popped. When a socket would block, the datagram stays
//!   queued in the core, `WRITABLE` is registered for that socket, and the writable event
//!   sends the rest: nothing is dropped or reordered for a full socket buffer. Any other
//!   send error (no route, an address the socket cannot reach) drops that one datagram,
//!   counted and logged at DEBUG: UDP is lossy and the protocol retries.
//! - Name lookups block, so each runs on its own short-lived thread
//!   ([`tandem_runtime::resolve`]), which hands the answer back through a channel and the
//!   waker; `Agent::resolved` takes it on the loop.

use std::io;
use std::net::SocketAddr;

use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Token};
use tandem_core::{Level, Pool, ResolveId};
use tandem_runtime::resolve::{Lookups, is_harmless_recv_error, spawn_lookup};
use tandem_runtime::unreachable::{self, SEND_REFUSALS};

use super::{LAN_GOSSIP, MioAgent, WAN_GOSSIP};

/// The largest UDP payload: no datagram is ever cut short.
pub(super) const RECV_BUFFER: usize = 64 * 1024;
/// Datagrams read from one socket in a row before the others get their turn.
const RECV_BUDGET: u32 = 64;

/// The answer to one `Effect::Resolve`, from its lookup thread.
pub(super) type Resolved = (ResolveId, Lookups);

/// One gossip socket.
pub(super) struct GossipSlot {
    pub(super) pool: Pool,
    pub(super) socket: UdpSocket,
    pub(super) addr: SocketAddr,
    /// The interest set registered with mio.
    pub(super) registered: Interest,
    /// The read budget ran out: read again without waiting for an event.
    pub(super) ready: bool,
}

impl GossipSlot {
    /// Takes a bound socket (made non-blocking here) for `pool`.
    pub(super) fn new(pool: Pool, socket: std::net::UdpSocket) -> io::Result<GossipSlot> {
        socket.set_nonblocking(true)?;
        // Best effort: without it a refused join waits for its timeout.
        let _ = unreachable::enable(&socket);
        let addr = socket.local_addr()?;
        Ok(GossipSlot {
            pool,
            socket: UdpSocket::from_std(socket),
            addr,
            registered: Interest::READABLE,
            ready: false,
        })
    }
}

/// Binds `addr` for `pool`, with the address in the error.
pub(super) fn bind(pool: Pool, addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    std::net::UdpSocket::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen for gossip {} on {addr}: {e}", pool.as_str()),
        )
    })
}

/// A pool's token offset from the base.
pub(super) fn gossip_offset(pool: Pool) -> usize {
    match pool {
        Pool::Lan => LAN_GOSSIP,
        Pool::Wan => WAN_GOSSIP,
    }
}

impl MioAgent {
    /// An event for `pool`'s socket.
    pub(super) fn gossip_event(&mut self, pool: Pool, event: &Event) {
        if event.is_writable() && self.gossip_blocked {
            self.gossip_blocked = false;
            self.set_gossip_writable(pool, false);
            self.send_datagrams();
            self.settle();
        }
        if event.is_readable() || event.is_error() {
            self.read_gossip(pool);
        }
    }

    /// Receives until `WouldBlock` or the budget runs out.
    pub(super) fn read_gossip(&mut self, pool: Pool) {
        let mut budget = RECV_BUDGET;
        loop {
            let Some(slot) = self.gossip.iter_mut().find(|s| s.pool == pool) else {
                return;
            };
            let got = match slot.socket.recv_from(&mut self.udp_buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    slot.ready = false;
                    return;
                }
                Err(e) if is_harmless_recv_error(&e) => {
                    self.report_unreachable(pool);
                    continue;
                }
                Err(e) => {
                    // The next datagram to arrive makes a new edge.
                    slot.ready = false;
                    self.report_unreachable(pool);
                    let text = format!("gossip: {} receive failed: {e}", pool.as_str());
                    self.log(Level::Warn, &text);
                    return;
                }
            };
            let (n, from) = got;
            let now = self.clock.now();
            let data = self.udp_buf.get(..n).unwrap_or_default();
            self.agent.handle_datagram(pool, from, data, now);
            self.settle();
            budget -= 1;
            if budget == 0 {
                if let Some(slot) = self.gossip.iter_mut().find(|s| s.pool == pool) {
                    slot.ready = true;
                }
                return;
            }
        }
    }

    /// Drains `pool`'s queued ICMP errors (a receive failed, so some may be queued) and
    /// tells the agent which destinations refused.
    fn report_unreachable(&mut self, pool: Pool) {
        let Some(slot) = self.gossip.iter().find(|s| s.pool == pool) else {
            return;
        };
        let mut refused = Vec::new();
        unreachable::drain(&slot.socket, &mut refused);
        for addr in refused {
            let now = self.clock.now();
            self.agent.handle_unreachable(pool, addr, now);
            self.settle();
        }
    }

    /// Reads the gossip sockets whose budget ran out last turn.
    pub(super) fn run_ready_gossip(&mut self) {
        let ready: Vec<Pool> = self
            .gossip
            .iter()
            .filter(|s| s.ready)
            .map(|s| s.pool)
            .collect();
        for pool in ready {
            self.read_gossip(pool);
        }
    }

    /// Whether a gossip socket is to be read without waiting for an event.
    pub(super) fn gossip_ready(&self) -> bool {
        self.gossip.iter().any(|s| s.ready)
    }

    /// Sends the core's queued datagrams until the queue is empty or a socket would block
    /// (then its writable event resumes). Called on `Output::Datagram`, inside a drain.
    pub(super) fn send_datagrams(&mut self) {
        if self.gossip_blocked {
            return;
        }
        let mut refusals = 0;
        loop {
            let Some((pool, to, bytes)) = self.agent.peek_datagram() else {
                return;
            };
            let sent = match self.gossip.iter().find(|s| s.pool == pool) {
                Some(slot) => loop {
                    match slot.socket.send_to(bytes, to) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        r => break r.map(drop),
                    }
                },
                None => Err(io::Error::other("no socket for this pool")),
            };
            match sent {
                Ok(()) => self.agent.pop_datagram(),
                // An earlier datagram's port-unreachable (IP_RECVERR) surfaces on this send,
                // which was not made: hear it, then send this one again.
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionRefused && refusals < SEND_REFUSALS =>
                {
                    refusals += 1;
                    self.report_unreachable(pool);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.gossip_blocked = true;
                    self.set_gossip_writable(pool, true);
                    return;
                }
                Err(e) => {
                    self.agent.pop_datagram();
                    self.datagrams_dropped += 1;
                    // Its outputs join the drain this runs in.
                    self.record(
                        Level::Debug,
                        &format!(
                            "gossip: {} datagram to {to} dropped: {e} ({} dropped so far)",
                            pool.as_str(),
                            self.datagrams_dropped
                        ),
                    );
                }
            }
        }
    }

    /// Registers `WRITABLE` for `pool`'s socket while a send would block, and only then.
    fn set_gossip_writable(&mut self, pool: Pool, writable: bool) {
        let token = Token(self.base + gossip_offset(pool));
        let (Some(registry), Some(slot)) = (
            &self.registry,
            self.gossip.iter_mut().find(|s| s.pool == pool),
        ) else {
            return;
        };
        let want = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if want != slot.registered && registry.reregister(&mut slot.socket, token, want).is_ok() {
            slot.registered = want;
        }
    }

    /// `Effect::Resolve`: looks the names up on a thread; the answer comes back through
    /// the channel and the waker.
    pub(super) fn resolve(&mut self, id: ResolveId, names: Vec<String>, default_port: u16) {
        let to_loop = self.resolve_tx.clone();
        let waker = self.waker.clone();
        let spawned = spawn_lookup(names, default_port, move |found| {
            let _ = to_loop.send((id, found));
            if let Some(waker) = waker {
                let _ = waker.wake();
            }
        });
        if let Err(results) = spawned {
            // Inside a drain: its outputs join it.
            let now = self.clock.now();
            self.agent.resolved(id, &results, now);
        }
    }

    /// Gives the agent the lookups that are done.
    pub(super) fn resolve_messages(&mut self) {
        while let Ok((id, results)) = self.resolve_rx.try_recv() {
            let now = self.clock.now();
            self.agent.resolved(id, &results, now);
            self.settle();
        }
    }
}
