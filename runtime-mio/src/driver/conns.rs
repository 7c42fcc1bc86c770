//! The sockets of a [`MioAgent`]: listeners (accepting until `WouldBlock`, backing off
//! after EMFILE and friends), connections (reads into the agent's receive window, writes
//! from its transmit window, interest kept to what is needed), and closed sockets lingering
//! until the peer is done.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant as StdInstant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use tandem_core::{ConnId, Level, Listener};

use super::{FIRST_CONN, MAX_SLOTS, MioAgent};
use crate::timers::{RtTimer, TimerKey};

/// How long a closing connection may take to take its last bytes before it is dropped.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);
/// After closing, how long unread request bytes are still read and thrown away. Closing a
/// socket with unread input makes the kernel send RST, which can destroy the response we
/// just wrote before the peer reads it (a pipelined request behind `Connection: close`, an
/// unread oversized body).
const LINGER: Duration = Duration::from_secs(1);
/// The most bytes thrown away while lingering.
const LINGER_MAX: usize = 64 * 1024;
/// Reads a connection may do in a row before the others get their turn.
const READ_BUDGET: u32 = 16;
/// Pause after a failed `accept` (EMFILE and friends) so the loop does not spin: a pending
/// connection the process has no descriptor for makes no new edge, and retrying at once
/// fails the same way.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A listener socket.
pub(super) struct ListenerSlot {
    pub(super) kind: Listener,
    pub(super) socket: TcpListener,
    pub(super) addr: SocketAddr,
    /// Accepting is paused until this back-off timer fires.
    pub(super) backoff: Option<TimerKey>,
}

/// The runtime's side of one connection.
pub(super) struct ConnSlot {
    /// The agent's id, generation included.
    pub(super) id: ConnId,
    pub(super) stream: TcpStream,
    pub(super) listener: Listener,
    pub(super) peer: SocketAddr,
    /// The interest set registered with mio.
    pub(super) registered: Interest,
    /// The last write would block: wait for `WRITABLE`.
    pub(super) want_write: bool,
    /// The peer sent EOF.
    pub(super) eof: bool,
    /// An event reported the read side closed (FIN) or an error: read until `0` or an
    /// error, since no later edge will say so again (see [`MioAgent::read_conn`]).
    pub(super) hup: bool,
    /// In the ready queue.
    pub(super) queued: bool,
    /// The agent emitted `Close`: flush, shut down, linger.
    pub(super) closing: bool,
    /// The bound on that flush.
    pub(super) close_timer: Option<TimerKey>,
}

/// A socket the agent is done with, read and discarded until the peer closes too.
pub(super) struct Lingering {
    pub(super) stream: TcpStream,
    /// Tells this occupant of the slot from earlier ones, for the timer.
    pub(super) serial: u64,
    pub(super) timer: TimerKey,
    pub(super) discarded: usize,
}

impl MioAgent {
    // ----- listeners -----------------------------------------------------------------

    /// Accepts until `WouldBlock`, or until an error starts a back-off.
    pub(super) fn accept_all(&mut self, kind: Listener) {
        loop {
            let Some(l) = self.listeners.iter_mut().find(|l| l.kind == kind) else {
                return;
            };
            if l.backoff.is_some() {
                return;
            }
            match l.socket.accept() {
                Ok((stream, peer)) => self.accepted(kind, stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The peer gave up while queued: that one is gone, the next may be fine.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) => {}
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying now fails the same way.
                Err(e) => {
                    let at = StdInstant::now() + ACCEPT_BACKOFF;
                    l.backoff = Some(self.timers.schedule(at, RtTimer::AcceptRetry(kind)));
                    self.record(
                        Level::Warn,
                        &format!("{}: accept failed: {e}", protocol(kind)),
                    );
                    self.settle();
                    return;
                }
            }
        }
    }

    fn accepted(&mut self, kind: Listener, mut stream: TcpStream, peer: SocketAddr) {
        let what = protocol(kind);
        let now = self.clock.now();
        // The outputs of an accept (a `503` and its close, over the limit) are drained
        // once the slot exists, so they find it.
        let id = match self.agent.accept(kind, Some(peer), now) {
            Ok(id) => id,
            Err(refused) => {
                self.settle();
                // Dropping the stream closes it.
                self.log(
                    Level::Warn,
                    &format!("{what}: refused connection from {peer}: {refused}"),
                );
                return;
            }
        };
        let index = id.index();
        let registered = match &self.registry {
            Some(registry) if index < MAX_SLOTS => registry
                .register(
                    &mut stream,
                    Token(self.base + conn_offset(index)),
                    Interest::READABLE,
                )
                .map_err(|e| e.to_string()),
            _ => Err("no token left".to_string()),
        };
        if let Err(e) = registered {
            self.agent.handle_reset(id, now);
            self.settle();
            self.log(
                Level::Warn,
                &format!("{what}: cannot serve connection from {peer}: {e}"),
            );
            return;
        }
        self.insert_slot(id, stream, kind, peer, Interest::READABLE);
        self.log(
            Level::Debug,
            &format!("{what}: accepted connection from {peer}"),
        );
        self.settle();
        // Bytes may already be waiting; read them without counting on an event.
        self.queue_ready(id);
    }

    /// Puts a registered socket in the connection's slot; `registered` with `WRITABLE` means
    /// it waits to be writable (a dial in progress).
    fn insert_slot(
        &mut self,
        id: ConnId,
        stream: TcpStream,
        listener: Listener,
        peer: SocketAddr,
        registered: Interest,
    ) {
        // Answers are written whole; Nagle would only delay pipelined ones.
        let _ = stream.set_nodelay(true);
        let index = id.index();
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        if let Some(entry) = self.conns.get_mut(index) {
            *entry = Some(ConnSlot {
                id,
                stream,
                listener,
                peer,
                registered,
                want_write: registered.is_writable(),
                eof: false,
                hup: false,
                queued: false,
                closing: false,
                close_timer: None,
            });
            self.open += 1;
        }
    }

    /// `Effect::Connect`: dials `addr` for the agent's connection `id` (non-blocking; the
    /// agent's pending output goes once the socket is writable, i.e. connected). A dial that
    /// fails releases the connection (`handle_reset`), now or when the error event comes.
    pub(super) fn dial(&mut self, id: ConnId, addr: SocketAddr) {
        let now = self.clock.now();
        let index = id.index();
        let dialed = TcpStream::connect(addr)
            .map_err(|e| e.to_string())
            .and_then(|mut s| match &self.registry {
                Some(registry) if index < MAX_SLOTS => registry
                    .register(
                        &mut s,
                        Token(self.base + conn_offset(index)),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map(|()| s)
                    .map_err(|e| e.to_string()),
                _ => Err("no token left".to_string()),
            });
        let stream = match dialed {
            Ok(s) => s,
            Err(e) => {
                self.record(Level::Warn, &format!("peer: cannot connect to {addr}: {e}"));
                self.agent.handle_reset(id, now);
                return;
            }
        };
        let registered = Interest::READABLE | Interest::WRITABLE;
        self.insert_slot(id, stream, Listener::Peer, addr, registered);
        self.record(Level::Debug, &format!("peer: connecting to {addr}"));
    }

    // ----- connections ---------------------------------------------------------------

    pub(super) fn conn_event(&mut self, index: usize, event: &Event) {
        let Some(slot) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return; // an event for a connection already gone
        };
        let id = slot.id;
        if event.is_read_closed() || event.is_error() {
            slot.hup = true;
        }
        if event.is_error()
            && slot.eof
            && let Ok(Some(e)) = slot.stream.take_error()
        {
            // At EOF nothing reads any more, so a reset would go unnoticed until the next
            // write; the error event says it now.
            self.fail(id, &e);
            self.settle();
            return;
        }
        if event.is_writable() {
            self.flush(id);
            self.settle();
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_conn(id);
        }
    }

    /// Reads into the agent's receive window until a short read, `WouldBlock`, EOF,
    /// backpressure (the window is empty: `ResumeRead` queues the connection again) or the
    /// read budget (queued again at once).
    ///
    /// A short read (fewer bytes than the window had room for) took everything the socket
    /// held, so the loop stops there instead of making one more `read` only to be told
    /// `WouldBlock` — one system call per request on a keep-alive connection. That is safe
    /// under edge-triggered epoll because Linux queues a new event for every arrival after
    /// the socket was last reported (bytes, FIN or a reset): bytes that came after the
    /// short read raise an edge of their own. What the short read may have left behind is
    /// a FIN that arrived with the bytes, whose edge was the one being handled; `hup`
    /// (set from the event) makes the loop read on to EOF then. Tokio and nginx stop
    /// at a short read the same way.
    pub(super) fn read_conn(&mut self, id: ConnId) {
        let mut budget = READ_BUDGET;
        loop {
            let now = self.clock.now();
            let Some(slot) = slot_mut(&mut self.conns, id) else {
                return;
            };
            if slot.eof || slot.closing {
                return;
            }
            let space = self.agent.rx_space(id);
            if space.is_empty() {
                return;
            }
            let room = space.len();
            match retry_interrupted(|| slot.stream.read(space)) {
                Ok(0) => {
                    slot.eof = true;
                    self.agent.handle_eof(id, now);
                    self.settle();
                    return;
                }
                Ok(n) => {
                    let drained = n < room && !slot.hup;
                    self.agent.rx_commit(id, n, now);
                    self.settle();
                    if drained {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.reads_would_block += 1;
                    return;
                }
                Err(e) => {
                    self.fail(id, &e);
                    self.settle();
                    return;
                }
            }
            budget -= 1;
            if budget == 0 {
                // A client that keeps bytes coming must not starve the others.
                self.queue_ready(id);
                return;
            }
        }
    }

    /// Writes the agent's transmit window in place until it is empty or the socket would
    /// block; a closing connection whose window is empty is then closed.
    pub(super) fn flush(&mut self, id: ConnId) {
        let now = self.clock.now();
        loop {
            let Some(slot) = slot_mut(&mut self.conns, id) else {
                return;
            };
            let pending = self.agent.tx_pending(id);
            if pending.is_empty() {
                slot.want_write = false;
                break;
            }
            match retry_interrupted(|| slot.stream.write(pending)) {
                Ok(0) => {
                    self.fail(id, &io::ErrorKind::WriteZero.into());
                    return;
                }
                Ok(n) => self.agent.tx_consume(id, n, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    slot.want_write = true;
                    break;
                }
                Err(e) => {
                    self.fail(id, &e);
                    return;
                }
            }
        }
        if slot_mut(&mut self.conns, id).is_some_and(|s| s.closing && !s.want_write) {
            self.finish_close(id);
        } else {
            self.update_interest(id);
        }
    }

    /// Registers `WRITABLE` while a write would block, and only then.
    fn update_interest(&mut self, id: ConnId) {
        let base = self.base;
        let (Some(registry), Some(slot)) = (&self.registry, slot_mut(&mut self.conns, id)) else {
            return;
        };
        let want = if slot.want_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if want == slot.registered {
            return;
        }
        let token = Token(base + conn_offset(id.index()));
        match registry.reregister(&mut slot.stream, token, want) {
            Ok(()) => slot.registered = want,
            Err(e) => self.fail(id, &e),
        }
    }

    pub(super) fn queue_ready(&mut self, id: ConnId) {
        if let Some(slot) = slot_mut(&mut self.conns, id)
            && !slot.queued
        {
            slot.queued = true;
            self.ready.push_back(id);
        }
    }

    /// Reads the connections queued for it, each once (with its budget).
    pub(super) fn run_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            // A stale id (the connection is gone, or its index was reused) finds no slot.
            if let Some(slot) = slot_mut(&mut self.conns, id) {
                slot.queued = false;
                self.read_conn(id);
            }
        }
    }

    /// `Output::Close`: flush (bounded by [`CLOSE_FLUSH`]), then shut down and linger.
    pub(super) fn begin_close(&mut self, id: ConnId) {
        let at = StdInstant::now() + CLOSE_FLUSH;
        match slot_mut(&mut self.conns, id) {
            // No socket (it already failed): just release the connection.
            None => self.agent.handle_reset(id, self.clock.now()),
            Some(slot) if slot.closing => {}
            Some(slot) => {
                slot.closing = true;
                slot.close_timer = Some(self.timers.schedule(at, RtTimer::CloseFlush(id)));
                self.flush(id);
            }
        }
    }

    /// Everything was written: shut down the write side, release the connection in the
    /// agent, and keep reading (and discarding) for a while, so the kernel does not answer
    /// the peer's last bytes with a reset.
    fn finish_close(&mut self, id: ConnId) {
        let Some(mut slot) = self.take_slot(id) else {
            return;
        };
        self.timers.cancel(slot.close_timer);
        let _ = slot.stream.shutdown(Shutdown::Write);
        self.agent.handle_reset(id, self.clock.now());
        let index = self
            .lingering
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.lingering.len());
        let base = self.base;
        let Some(registry) = self.registry.as_ref().filter(|_| index < MAX_SLOTS) else {
            return; // dropped at once
        };
        let token = Token(base + conn_offset(index) + 1);
        if registry
            .reregister(&mut slot.stream, token, Interest::READABLE)
            .is_err()
        {
            let _ = registry.deregister(&mut slot.stream);
            return;
        }
        self.linger_serial += 1;
        let serial = self.linger_serial;
        let timer = self
            .timers
            .schedule(StdInstant::now() + LINGER, RtTimer::Linger(index, serial));
        if self.lingering.len() <= index {
            self.lingering.resize_with(index + 1, || None);
        }
        if let Some(entry) = self.lingering.get_mut(index) {
            *entry = Some(Lingering {
                stream: slot.stream,
                serial,
                timer,
                discarded: 0,
            });
        }
        // The peer's bytes may be in already: no new edge would say so.
        self.linger_event(index);
    }

    /// The socket failed (or never took its last response): log, shut down, release.
    pub(super) fn fail(&mut self, id: ConnId, e: &io::Error) {
        let Some(mut slot) = self.take_slot(id) else {
            return;
        };
        self.timers.cancel(slot.close_timer);
        self.record(
            Level::Debug,
            &format!(
                "{}: connection {} ended: {e}",
                protocol(slot.listener),
                slot.peer
            ),
        );
        if let Some(registry) = &self.registry {
            let _ = registry.deregister(&mut slot.stream);
        }
        let _ = slot.stream.shutdown(Shutdown::Write);
        drop(slot);
        self.agent.handle_reset(id, self.clock.now());
    }

    /// Removes a connection's slot (the socket is the caller's to close).
    fn take_slot(&mut self, id: ConnId) -> Option<ConnSlot> {
        let entry = self.conns.get_mut(id.index())?;
        if entry.as_ref().is_some_and(|s| s.id == id) {
            self.open -= 1;
            entry.take()
        } else {
            None
        }
    }

    /// Reads and discards what a lingering socket has; ends it at EOF, on an error, or
    /// past [`LINGER_MAX`].
    pub(super) fn linger_event(&mut self, index: usize) {
        let Some(l) = self.lingering.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let done = loop {
            match retry_interrupted(|| l.stream.read(&mut buf)) {
                Ok(0) => break true,
                Ok(n) => {
                    l.discarded += n;
                    if l.discarded >= LINGER_MAX {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if done {
            self.end_linger(index);
        }
    }

    pub(super) fn end_linger(&mut self, index: usize) {
        let Some(mut l) = self.lingering.get_mut(index).and_then(Option::take) else {
            return;
        };
        self.timers.cancel(Some(l.timer));
        if let Some(registry) = &self.registry {
            let _ = registry.deregister(&mut l.stream);
        }
    }
}

/// The slot of `id`, if it is still that connection (same generation).
pub(super) fn slot_mut(conns: &mut [Option<ConnSlot>], id: ConnId) -> Option<&mut ConnSlot> {
    conns
        .get_mut(id.index())
        .and_then(Option::as_mut)
        .filter(|s| s.id == id)
}

/// A connection's token offset; the lingering socket of the same slot number is one more.
pub(super) const fn conn_offset(index: usize) -> usize {
    FIRST_CONN + 2 * index
}

/// The log prefix of a listener's protocol.
pub(crate) fn protocol(listener: Listener) -> &'static str {
    match listener {
        Listener::Http => "http",
        Listener::Rpc => "rpc",
        Listener::Peer => "peer",
    }
}

/// Runs a socket call again while it is interrupted by a signal (EINTR).
fn retry_interrupted<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}
