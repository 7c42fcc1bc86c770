//! The gossip side of `tandem agent`: the UDP sockets of the LAN pool (every agent) and the
//! WAN pool (servers), and the name lookups a `join` asks for (`Effect::Resolve`).
//!
//! - The sockets are bound before the agent exists, so the core advertises the addresses
//!   actually bound (port 0 picks a free one): [`GossipSockets::bind`].
//! - Sending happens inside the drain: on `Output::Datagram`, [`Runtime::send_datagrams`]
//!   sends each queued datagram (peeked, popped once sent) from its pool's socket. When a
//!   socket would block, the datagram stays queued in the core and the writer task sends
//!   the rest once the socket is writable, so nothing is reordered or dropped for a full
//!   socket buffer. Any other send error (no route, bad address) drops that one datagram,
//!   counted and logged at DEBUG: UDP is lossy and the protocol retries.
//! - One reader task per socket receives into a 64 KiB buffer (the largest UDP payload)
//!   and hands each datagram to `Agent::handle_datagram`, yielding to the other tasks
//!   every [`RECV_BUDGET`] datagrams.
//! - Name lookups block, so each runs on its own short-lived thread
//!   ([`tandem_runtime::resolve`]); a task awaits the answer and gives it to
//!   `Agent::resolved`. The event loop never waits for DNS.

use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::future;
use tandem_core::{Config, Level, Pool, ResolveId};
use tandem_runtime::resolve::{is_harmless_recv_error, spawn_lookup};
use tandem_runtime::unreachable::{self, SEND_REFUSALS};

use crate::agent::{Bell, Runtime};

/// The largest UDP payload: no datagram is ever cut short.
const RECV_BUFFER: usize = 64 * 1024;
/// Datagrams a reader takes in a row before letting other tasks run.
const RECV_BUDGET: u32 = 16;
/// Pause after a receive error that is not about one datagram, so the loop does not spin.
const RECV_BACKOFF: Duration = Duration::from_millis(100);

/// The bound gossip sockets.
pub(crate) struct GossipSockets {
    pub(crate) lan: Rc<Async<UdpSocket>>,
    /// Servers only.
    pub(crate) wan: Option<Rc<Async<UdpSocket>>>,
}

impl GossipSockets {
    /// Binds the LAN socket at `config.lan_addr` and, for a server, the WAN socket at
    /// `config.wan_addr`, then writes the bound addresses back into `config`.
    pub(crate) fn bind(config: &mut Config) -> Result<GossipSockets, String> {
        let bind = |pool: Pool, addr: SocketAddr| {
            Async::<UdpSocket>::bind(addr)
                .and_then(|s| {
                    // Best effort: without it a refused join waits for its timeout.
                    let _ = unreachable::enable(s.get_ref());
                    Ok((s.get_ref().local_addr()?, s))
                })
                .map_err(|e| {
                    format!(
                        "agent: cannot listen for gossip {} on {addr}: {e}",
                        pool.as_str()
                    )
                })
        };
        let (lan_addr, lan) = bind(Pool::Lan, config.lan_addr)?;
        config.lan_addr = lan_addr;
        let wan = if config.server {
            let (wan_addr, wan) = bind(Pool::Wan, config.wan_addr)?;
            config.wan_addr = wan_addr;
            Some(Rc::new(wan))
        } else {
            None
        };
        Ok(GossipSockets {
            lan: Rc::new(lan),
            wan,
        })
    }

    /// The socket of `pool`, if this node has that pool.
    pub(crate) fn socket(&self, pool: Pool) -> Option<&Rc<Async<UdpSocket>>> {
        match pool {
            Pool::Lan => Some(&self.lan),
            Pool::Wan => self.wan.as_ref(),
        }
    }
}

/// The sending side's state, kept in the runtime.
#[derive(Debug)]
pub(crate) struct Sender {
    /// A socket would block: the writer task owns sending until it has drained the queue.
    blocked: Cell<bool>,
    /// Rung when `blocked` is set.
    bell: Bell,
    /// Datagrams dropped because their send failed (not for a full socket buffer).
    dropped: Cell<u64>,
}

impl Sender {
    pub(crate) fn new() -> Self {
        Sender {
            blocked: Cell::new(false),
            bell: Bell::new(),
            dropped: Cell::new(0),
        }
    }
}

/// What one send attempt came to.
enum Sent {
    Done,
    WouldBlock,
    /// Not sent: the socket reported an earlier datagram's refusal instead.
    Refused(Pool),
    Failed(Pool, SocketAddr, io::Error),
}

impl Runtime {
    /// Sends the core's queued datagrams until the queue is empty or a socket would block
    /// (then the writer task takes over). Called on `Output::Datagram`.
    pub(crate) fn send_datagrams(self: &Rc<Self>) {
        if self.sender.blocked.get() {
            return;
        }
        let mut failures = Vec::new();
        let mut refusals = 0;
        loop {
            let sent = {
                let mut agent = self.agent.borrow_mut();
                let Some((pool, to, bytes)) = agent.peek_datagram() else {
                    break;
                };
                let sent = match self.gossip.socket(pool) {
                    Some(socket) => match socket.get_ref().send_to(bytes, to) {
                        Ok(_) => Sent::Done,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::WouldBlock,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // An earlier datagram's port-unreachable (IP_RECVERR) surfaces on
                        // this send, which was not made: hear it, then send this one again.
                        Err(e)
                            if e.kind() == io::ErrorKind::ConnectionRefused
                                && refusals < SEND_REFUSALS =>
                        {
                            Sent::Refused(pool)
                        }
                        Err(e) => Sent::Failed(pool, to, e),
                    },
                    None => Sent::Failed(pool, to, io::Error::other("no socket for this pool")),
                };
                if !matches!(sent, Sent::WouldBlock | Sent::Refused(_)) {
                    agent.pop_datagram();
                }
                sent
            };
            match sent {
                Sent::Done => {}
                Sent::WouldBlock => {
                    self.sender.blocked.set(true);
                    self.sender.bell.ring();
                    break;
                }
                Sent::Refused(pool) => {
                    refusals += 1;
                    if let Some(socket) = self.gossip.socket(pool) {
                        self.report_unreachable(pool, &Rc::clone(socket));
                    }
                }
                Sent::Failed(pool, to, e) => {
                    self.sender.dropped.set(self.sender.dropped.get() + 1);
                    failures.push((pool, to, e));
                }
            }
        }
        // Logged once the agent is no longer borrowed.
        for (pool, to, e) in failures {
            self.log(
                Level::Debug,
                &format!(
                    "gossip: {} datagram to {to} dropped: {e} ({} dropped so far)",
                    pool.as_str(),
                    self.sender.dropped.get()
                ),
            );
        }
    }

    /// Waits for the blocked socket to be writable, then sends the rest of the queue.
    pub(crate) async fn gossip_writer(self: Rc<Self>) {
        loop {
            self.sender.bell.wait().await;
            while self.sender.blocked.get() {
                let head = self.agent.borrow().peek_datagram().map(|(pool, _, _)| pool);
                let socket = head.and_then(|pool| self.gossip.socket(pool).cloned());
                if let Some(socket) = socket {
                    // An error here shows again on the send, which drops the datagram.
                    let _ = socket.writable().await;
                }
                self.sender.blocked.set(false);
                self.send_datagrams();
            }
        }
    }

    /// Receives `pool`'s datagrams for the agent, for as long as the agent runs.
    pub(crate) async fn gossip_reader(self: Rc<Self>, pool: Pool, socket: Rc<Async<UdpSocket>>) {
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut budget = RECV_BUDGET;
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    let data = buf.get(..n).unwrap_or_default();
                    self.input(|agent, now| agent.handle_datagram(pool, from, data, now));
                    budget -= 1;
                    if budget == 0 {
                        budget = RECV_BUDGET;
                        future::yield_now().await;
                    }
                }
                Err(e) if is_harmless_recv_error(&e) => self.report_unreachable(pool, &socket),
                Err(e) => {
                    self.report_unreachable(pool, &socket);
                    self.log(
                        Level::Warn,
                        &format!("gossip: {} receive failed: {e}", pool.as_str()),
                    );
                    Timer::after(RECV_BACKOFF).await;
                }
            }
        }
    }

    /// Drains the socket's queued ICMP errors (a receive failed, so some may be queued) and
    /// tells the agent which destinations refused.
    fn report_unreachable(self: &Rc<Self>, pool: Pool, socket: &Async<UdpSocket>) {
        let mut refused = Vec::new();
        unreachable::drain(socket.get_ref(), &mut refused);
        for addr in refused {
            self.input(|agent, now| agent.handle_unreachable(pool, addr, now));
        }
    }

    /// `Effect::Resolve`: looks the names up on a thread and answers the agent.
    pub(crate) fn resolve(self: &Rc<Self>, id: ResolveId, names: Vec<String>, default_port: u16) {
        let Some(ex) = self.ex.upgrade() else {
            return; // shutting down: the join's waiter goes with the agent
        };
        let (tx, rx) = async_channel::bounded(1);
        let failed_names = names.clone();
        if let Err(results) = spawn_lookup(names, default_port, move |found| {
            let _ = tx.send_blocking(found);
        }) {
            self.input(|agent, now| agent.resolved(id, &results, now));
            return;
        }
        let rt = Rc::clone(self);
        ex.spawn(async move {
            // The thread always sends once; a closed channel means it panicked.
            let results = rx.recv().await.unwrap_or_else(|_| {
                failed_names
                    .into_iter()
                    .map(|n| (n, Err("the resolver thread failed".to_string())))
                    .collect()
            });
            rt.input(|agent, now| agent.resolved(id, &results, now));
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_writes_the_bound_addresses_into_the_config() {
        let mut cfg = Config {
            lan_addr: "127.0.0.1:0".parse().unwrap(),
            wan_addr: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        let client = GossipSockets::bind(&mut cfg).unwrap();
        assert!(client.wan.is_none(), "a client has no WAN socket");
        assert_ne!(cfg.lan_addr.port(), 0);
        assert_eq!(client.lan.get_ref().local_addr().unwrap(), cfg.lan_addr);
        let mut cfg = Config {
            lan_addr: "127.0.0.1:0".parse().unwrap(),
            wan_addr: "127.0.0.1:0".parse().unwrap(),
            server: true,
            ..Config::default()
        };
        let server = GossipSockets::bind(&mut cfg).unwrap();
        let wan = server.socket(Pool::Wan).expect("a server's WAN socket");
        assert_eq!(wan.get_ref().local_addr().unwrap(), cfg.wan_addr);
        assert_ne!(cfg.wan_addr.port(), 0);
        // A taken port is an error that names the pool and the address.
        let mut taken = Config {
            lan_addr: cfg.lan_addr,
            ..Config::default()
        };
        let err = GossipSockets::bind(&mut taken).err().unwrap();
        assert!(
            err.starts_with(&format!(
                "agent: cannot listen for gossip LAN on {}: ",
                cfg.lan_addr
            )),
            "{err}"
        );
    }
}
