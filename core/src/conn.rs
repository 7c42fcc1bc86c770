//! The connection table: a slab of connections addressed by [`ConnId`] (index plus
//! generation, so a stale id from the runtime can never touch a reused slot), each with a
//! receive buffer lent to the runtime and a transmit buffer the agent serializes into.
//!
//! Invariants kept here:
//! - `rx[..rx_len]` holds received bytes not yet consumed by a parser; the rest of `rx` is
//!   the window handed out by `rx_space`. `rx` never grows past what the current request
//!   may legally need, so a connection's memory is bounded by `Limits`; and it grows with
//!   the bytes that actually arrive (doubling from [`RX_CHUNK`], see [`Conn::rx_grown`]),
//!   never to a length a peer only declared, so a head announcing a large body costs no
//!   more than the bytes sent.
//! - `tx[tx_start..]` is output not yet written by the runtime.
//! - An idle connection holds no receive buffer at all: it is allocated on the first read
//!   and released once drained, which keeps parked long-polls and idle keep-alives small.

use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::http::HttpConn;
use crate::log::Level;
use crate::rpc::RpcConn;
use crate::rpc::commands::Filter;
use crate::time::{Instant, TimerKey};

/// Size of the receive window offered to an idle connection.
pub(crate) const RX_CHUNK: usize = 4096;

/// A connection, as handed out by [`crate::Agent::accept`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    /// The slab index: dense, small, reused after the connection is released. Runtimes may
    /// use it to index their own tables (mio tokens).
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The generation of the slot, bumped each time it is reused.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

/// Which listener a connection came from; it decides the protocol spoken on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The HTTP session API (`POST /api`).
    Http,
    /// The msgpack agent RPC.
    Rpc,
    /// Agent-to-agent streams of cluster-wide jobs (docs/cluster-jobs.md): accepted on a
    /// TCP listener at the LAN gossip address, and dialed by the agent itself
    /// ([`crate::Effect::Connect`]).
    Peer,
}

/// Why [`crate::Agent::accept`] refused a connection. The runtime closes the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The listener already has `Limits::max_connections` connections.
    TooManyConnections,
    /// The protocol of this listener is not served by this build.
    Unsupported,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Refused::TooManyConnections => "too many connections",
            Refused::Unsupported => "protocol not served",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Refused {}

pub(crate) struct Conn {
    pub(crate) listener: Listener,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) rx: Vec<u8>,
    pub(crate) rx_len: usize,
    pub(crate) tx: Vec<u8>,
    pub(crate) tx_start: usize,
    /// The runtime was handed an empty `rx_space`; it waits for `ResumeRead`.
    pub(crate) read_paused: bool,
    /// The peer sent EOF.
    pub(crate) read_closed: bool,
    /// `Output::Close` was emitted; no more input is processed.
    pub(crate) closing: bool,
    pub(crate) http: HttpConn,
    pub(crate) rpc: RpcConn,
    pub(crate) stream: crate::cluster_jobs::PeerConn,
    /// When the connection was accepted (the RPC handshake deadline counts from here).
    pub(crate) accepted: Instant,
    /// The last activity: bytes received, output written, a parked request answered (the
    /// HTTP idle deadline counts from here).
    pub(crate) last_active: Instant,
    /// The connection's one timer entry (head, idle, handshake or stall deadline), if
    /// armed.
    pub(crate) timer: Option<TimerKey>,
    /// Since when pending output has waited without the runtime taking any of it (set
    /// when the deadline is computed; cleared by progress).
    pub(crate) tx_since: Option<Instant>,
    /// Accepted beyond `max_connections` only to be answered `503` and closed.
    pub(crate) overflow: bool,
    /// Closed to make room for a new connection (see `Agent::accept`).
    pub(crate) evicted: bool,
}

impl Conn {
    fn new(listener: Listener, peer: Option<SocketAddr>, now: Instant) -> Self {
        Conn {
            listener,
            peer,
            rx: Vec::new(),
            rx_len: 0,
            tx: Vec::new(),
            tx_start: 0,
            read_paused: false,
            read_closed: false,
            closing: false,
            http: HttpConn::default(),
            rpc: RpcConn::default(),
            stream: crate::cluster_jobs::PeerConn::default(),
            accepted: now,
            last_active: now,
            timer: None,
            tx_since: None,
            overflow: false,
            evicted: false,
        }
    }

    pub(crate) fn tx_pending(&self) -> &[u8] {
        self.tx.get(self.tx_start..).unwrap_or(&[])
    }

    pub(crate) fn tx_len(&self) -> usize {
        self.tx.len() - self.tx_start
    }

    /// Output waits and has reached `max_tx` (the slow-reader bound). Never with nothing
    /// pending, so even a `max_tx` of 0 lets one answer out at a time.
    pub(crate) fn tx_full(&self, max_tx: usize) -> bool {
        let n = self.tx_len();
        n > 0 && n >= max_tx
    }

    /// Drops `n` parsed bytes from the front of the receive buffer.
    pub(crate) fn rx_consume(&mut self, n: usize) {
        let n = n.min(self.rx_len);
        self.rx.copy_within(n..self.rx_len, 0);
        self.rx_len -= n;
        if self.rx_len == 0 && self.rx.len() > RX_CHUNK {
            // A large body was served; give its memory back rather than keep it per idle
            // connection.
            self.rx = Vec::new();
        }
    }

    /// The receive buffer size to offer next, before any bound: the current size while it
    /// has room, doubled (from [`RX_CHUNK`]) once it is full. The callers cap it at what
    /// the message being read may still need.
    pub(crate) fn rx_grown(&self) -> usize {
        if self.rx_len >= self.rx.len() {
            (self.rx.len() * 2).max(RX_CHUNK)
        } else {
            self.rx.len().max(RX_CHUNK)
        }
    }

    /// Makes the receive window at least `want` bytes of total capacity, if possible.
    pub(crate) fn rx_reserve(&mut self, want: usize) {
        if self.rx.len() < want {
            self.rx.resize(want, 0);
        }
    }

    pub(crate) fn rx_release_if_idle(&mut self) {
        if self.rx_len == 0 {
            self.rx = Vec::new();
        }
    }
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// The slab.
#[derive(Default)]
pub(crate) struct Conns {
    slots: Vec<Slot>,
    free: Vec<u32>,
    open: [usize; 3],
}

fn listener_index(l: Listener) -> usize {
    match l {
        Listener::Http => 0,
        Listener::Rpc => 1,
        Listener::Peer => 2,
    }
}

impl Conns {
    pub(crate) fn open_count(&self, l: Listener) -> usize {
        self.open[listener_index(l)]
    }

    pub(crate) fn insert(
        &mut self,
        listener: Listener,
        peer: Option<SocketAddr>,
        now: Instant,
    ) -> ConnId {
        self.open[listener_index(listener)] += 1;
        let conn = Some(Conn::new(listener, peer, now));
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.generation = slot.generation.wrapping_add(1);
            slot.conn = conn;
            ConnId {
                index,
                generation: slot.generation,
            }
        } else {
            let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
            self.slots.push(Slot {
                generation: 0,
                conn,
            });
            ConnId {
                index,
                generation: 0,
            }
        }
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.conn.as_ref())
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.conn.as_mut())
    }

    pub(crate) fn live(&self) -> impl Iterator<Item = (ConnId, &Conn)> + Clone + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let id = ConnId {
                index: i as u32,
                generation: s.generation,
            };
            s.conn.as_ref().filter(|c| !c.closing).map(|c| (id, c))
        })
    }

    /// RPC connections with a monitor: (connection, monitor Seq, level).
    pub(crate) fn rpc_monitors(&self) -> impl Iterator<Item = (ConnId, u64, Level)> + '_ {
        self.live()
            .filter_map(|(id, c)| c.rpc.monitor.map(|(seq, level)| (id, seq, level)))
    }

    /// (connection, stream Seq) of every RPC event stream whose filter passes.
    pub(crate) fn rpc_streams(&self, pass: impl Fn(&Filter) -> bool) -> Vec<(ConnId, u64)> {
        let mut out = Vec::new();
        for (id, c) in self.live() {
            for s in &c.rpc.streams {
                if pass(&s.filter) {
                    out.push((id, s.seq));
                }
            }
        }
        out
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let slot = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)?;
        let conn = slot.conn.take()?;
        self.open[listener_index(conn.listener)] -= 1;
        self.free.push(id.index);
        Some(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_never_reach_a_reused_slot() {
        let mut conns = Conns::default();
        let a = conns.insert(Listener::Http, None, Instant::ZERO);
        assert!(conns.remove(a).is_some());
        let b = conns.insert(Listener::Http, None, Instant::ZERO);
        assert_eq!(a.index(), b.index());
        assert_ne!(a, b);
        assert!(conns.get(a).is_none());
        assert!(conns.remove(a).is_none());
        assert!(conns.get(b).is_some());
        assert_eq!(conns.open_count(Listener::Http), 1);
    }
}
