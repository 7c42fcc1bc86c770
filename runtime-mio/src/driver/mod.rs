//! [`MioAgent`]: one [`tandem_core::Agent`] with its sockets, driven by events from a
//! `mio::Poll` that the application owns.
//!
//! What it owns: the HTTP and RPC listeners, the UDP gossip sockets (LAN, and WAN on a
//! server), every connection, closed sockets lingering until the peer is done, the runtime
//! timers ([`crate::timers`]), the worker threads of host jobs and of name lookups, and the
//! `mio::Waker` they ring. What it leaves to the application: the `Poll`, signals, the
//! config file, and process exit ([`AgentRequest`]).
//!
//! Invariants kept here:
//! - Every input to the agent is followed by [`MioAgent::settle`] (the core's call
//!   contract). Acting on an output may be an input itself (`tx_consume` after a write,
//!   `handle_reset` after a close, `job_output` of a held item); its outputs join the same
//!   drain, so nothing recurses.
//! - Accepts are drained to `WouldBlock` (mio is edge-triggered); reads to a short read
//!   or `WouldBlock` (a short read took all the socket had, and a later arrival raises a
//!   new edge; after an event that reported FIN or an error, to EOF). A read that
//!   stops early (the agent's window is empty, or the connection used its read budget)
//!   leaves the connection in the ready queue or waiting for `ResumeRead`, which puts it
//!   back: it is read again without waiting for readiness, since no new edge may come.
//! - `WRITABLE` is registered only while a write would block, and a connection is
//!   re-registered only when its interest set changes.
//! - Tokens, from the base the application gives: `+0` the HTTP listener, `+1` the RPC
//!   listener, `+2` the waker, `+3` the LAN gossip socket, `+4` the WAN gossip socket,
//!   `+8 + 2·i` the connection whose `ConnId` has index `i`, and
//!   `+8 + 2·j + 1` lingering socket `j`. The slot keeps the whole `ConnId`, so an event or
//!   output for an earlier occupant of the index (an older generation) is never applied to
//!   a newer one.
//!
//! This file holds the public face and the drain; `conns` the sockets, `gossip` the UDP
//! side and name lookups, `jobs` the host job side.

mod conns;
mod gossip;
mod handlers;
mod jobs;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant as StdInstant};

use mio::event::Event;
use mio::net::TcpListener;
use mio::{Interest, Registry, Token, Waker};
use tandem_core::{
    Agent, Config, ConnId, Effect, HostInfo, Instant, JobId, Level, Listener, LogRecord, Output,
    Pool, RegisterError,
};
use tandem_runtime::clock::Clock;
use tandem_runtime::persist::StatePaths;

use crate::RUNTIME;
use crate::host::{self, HostCommand, HostFn, JobMsg};
use crate::timers::{RtTimer, Timers};
pub(crate) use conns::protocol;
use conns::{ConnSlot, Lingering, ListenerSlot, conn_offset, slot_mut};
use gossip::{GossipSlot, Resolved, gossip_offset};
use jobs::RunningJob;

/// Offset of the HTTP listener's token from the base.
const HTTP_LISTENER: usize = 0;
/// Offset of the RPC listener's token.
const RPC_LISTENER: usize = 1;
/// Offset of the waker's token (host job and name lookup threads ring it).
const WAKER: usize = 2;
/// Offset of the LAN gossip socket's token.
const LAN_GOSSIP: usize = 3;
/// Offset of the WAN gossip socket's token.
const WAN_GOSSIP: usize = 4;
/// Offset of the peer-stream listener's token (cluster-wide jobs).
const PEER_LISTENER: usize = 5;
/// Offset of the first connection token; 6..8 are reserved.
const FIRST_CONN: usize = 8;
/// Connection slots (and lingering-socket slots) a `MioAgent` has tokens for.
const MAX_SLOTS: usize = 1 << 20;

/// How many tokens a [`MioAgent`] owns, from the base given to [`MioAgent::register`].
pub const TOKEN_RANGE: usize = FIRST_CONN + 2 * MAX_SLOTS;

/// What the agent asks of the application, drained with [`MioAgent::poll_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentRequest {
    /// Re-read the configuration and pass the outcome to `Agent::reload_finished` (through
    /// [`MioAgent::input`]): the `reload` requests wait for it. SIGHUP should do the same.
    Reload,
    /// The agent has left: flush what is queued and stop (see [`MioAgent::stop_listening`],
    /// [`MioAgent::has_unflushed_output`], [`MioAgent::close_all`]).
    Shutdown,
}

/// Where log records go: the record's formatted line to stderr by default.
type Printer = Box<dyn FnMut(&LogRecord) + Send>;

/// A tandem agent on mio: an application embeds it in its own `mio::Poll`.
///
/// The agent takes a range of [`TOKEN_RANGE`] tokens from the base given to
/// [`register`](Self::register); the application keeps every token outside it.
///
/// # Driving it
///
/// 1. [`new`](Self::new) (no gossip: a node on its own) or
///    [`with_gossip`](Self::with_gossip) (binds the gossip sockets first, so the agent
///    advertises what was bound), [`listen`](Self::listen) on the listeners wanted, then
///    [`register`](Self::register) with the application's registry.
/// 2. Poll with a timeout no longer than [`poll_timeout`](Self::poll_timeout) (retry
///    `Interrupted`: mio 1.x returns it).
/// 3. Give every event to [`handle_event`](Self::handle_event); it returns `false` for
///    tokens that are not the agent's.
/// 4. Call [`handle_timeout`](Self::handle_timeout) after every poll (spurious calls are
///    harmless; it also finishes work that needs no event, like reads resumed after
///    backpressure).
/// 5. Act on [`poll_request`](Self::poll_request): reload the configuration, or shut down.
///
/// # Example
///
/// ```
/// use std::io::{Read as _, Write as _};
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use mio::{Events, Poll, Token};
/// use tandem_core::{Config, Listener};
/// use tandem_mio::MioAgent;
///
/// let mut poll = Poll::new()?;
/// let mut agent = MioAgent::new(Config::default())?;
/// let addr = agent.listen(Listener::Http, "127.0.0.1:0".parse().unwrap())?;
/// // Tokens below 1000 stay the application's.
/// agent.register(poll.registry(), Token(1000))?;
///
/// // A client on another thread.
/// let done = Arc::new(AtomicBool::new(false));
/// let client = {
///     let done = Arc::clone(&done);
///     std::thread::spawn(move || {
///         let body = r#"{"action":"exec","command":"version"}"#;
///         let mut s = std::net::TcpStream::connect(addr).unwrap();
///         write!(s, "POST /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
///                    Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
///         let mut answer = String::new();
///         s.read_to_string(&mut answer).unwrap();
///         done.store(true, Ordering::SeqCst);
///         answer
///     })
/// };
///
/// let mut events = Events::with_capacity(256);
/// while !done.load(Ordering::SeqCst) {
///     // Capped, so the loop sees `done` even if no event follows it.
///     let timeout = agent.poll_timeout().map_or(std::time::Duration::from_millis(50), |t| {
///         t.min(std::time::Duration::from_millis(50))
///     });
///     match poll.poll(&mut events, Some(timeout)) {
///         Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
///         r => r?,
///     }
///     for event in events.iter() {
///         if !agent.handle_event(event) {
///             // the application's own sources
///         }
///     }
///     agent.handle_timeout();
///     while let Some(_request) = agent.poll_request() {
///         // reload the configuration, or shut down
///     }
/// }
/// assert!(client.join().unwrap().starts_with("HTTP/1.1 200 OK\r\n"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct MioAgent {
    agent: Agent,
    clock: Clock,
    /// Set by `register`; connections exist only after it.
    registry: Option<Registry>,
    base: usize,
    listeners: Vec<ListenerSlot>,
    /// By `ConnId` index.
    conns: Vec<Option<ConnSlot>>,
    open: usize,
    lingering: Vec<Option<Lingering>>,
    linger_serial: u64,
    /// Connections to read without waiting for an event.
    ready: VecDeque<ConnId>,
    /// Connection reads that found nothing (`WouldBlock`); see [`MioAgent::reads_would_block`].
    reads_would_block: u64,
    timers: Timers,
    waker: Option<Arc<Waker>>,
    job_tx: Sender<JobMsg>,
    job_rx: Receiver<JobMsg>,
    jobs: HashMap<JobId, RunningJob>,
    /// Held by every worker thread while it lives: `strong_count - 1` threads are alive,
    /// stopped ones that have not returned yet included.
    workers: Arc<()>,
    host: HashMap<String, Arc<HostFn>>,
    requests: VecDeque<AgentRequest>,
    printer: Printer,
    /// The gossip sockets (none for an agent made with `new`).
    gossip: Vec<GossipSlot>,
    /// Receive buffer of the gossip sockets (empty without them).
    udp_buf: Box<[u8]>,
    /// A gossip send would block: the socket's writable event resumes sending.
    gossip_blocked: bool,
    /// Datagrams dropped because their send failed (not for a full socket buffer).
    datagrams_dropped: u64,
    resolve_tx: Sender<Resolved>,
    resolve_rx: Receiver<Resolved>,
    /// Event handler scripts running.
    handlers: handlers::Handlers,
    /// Where `Effect::Persist` writes (none until `set_state_paths`).
    state: StatePaths,
}

impl std::fmt::Debug for MioAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MioAgent")
            .field("base", &self.base)
            .field("connections", &self.open)
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl MioAgent {
    /// A new agent with `config`, without gossip sockets: a node on its own, whose gossip
    /// datagrams (a `join` would send some) are dropped. The host facts (`config.host`:
    /// pid, wall clock, UTC offset, runtime name) are filled in here, the agent is seeded
    /// from OS randomness, and the host commands `sysinfo` and `dashboard` are registered.
    pub fn new(config: Config) -> io::Result<MioAgent> {
        MioAgent::build(config, Vec::new())
    }

    /// A new agent that gossips: binds the LAN socket at `config.lan_addr` and, for a
    /// server (`config.server`), the WAN socket at `config.wan_addr`, then builds the agent
    /// with the addresses actually bound (port 0 picks a free port), which is what it
    /// advertises. Otherwise as [`new`](Self::new).
    pub fn with_gossip(config: Config) -> io::Result<MioAgent> {
        let lan = gossip::bind(Pool::Lan, config.lan_addr)?;
        let wan = if config.server {
            Some(gossip::bind(Pool::Wan, config.wan_addr)?)
        } else {
            None
        };
        MioAgent::with_gossip_sockets(config, lan, wan)
    }

    /// [`with_gossip`](Self::with_gossip) on sockets the application bound itself (or
    /// inherited); they are made non-blocking here, and their addresses replace
    /// `config.lan_addr` and `config.wan_addr`. A server needs `wan`, a client must not
    /// have one.
    pub fn with_gossip_sockets(
        mut config: Config,
        lan: std::net::UdpSocket,
        wan: Option<std::net::UdpSocket>,
    ) -> io::Result<MioAgent> {
        if config.server != wan.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a server needs a WAN gossip socket, and only a server has one",
            ));
        }
        let mut slots = vec![GossipSlot::new(Pool::Lan, lan)?];
        config.lan_addr = slots[0].addr;
        if let Some(wan) = wan {
            let slot = GossipSlot::new(Pool::Wan, wan)?;
            config.wan_addr = slot.addr;
            slots.push(slot);
        }
        MioAgent::build(config, slots)
    }

    fn build(mut config: Config, gossip: Vec<GossipSlot>) -> io::Result<MioAgent> {
        let clock = Clock::start();
        config.host = HostInfo {
            pid: std::process::id(),
            unix_ms: clock.unix_ms_at_start(),
            utc_offset_secs: clock.utc_offset_secs(),
            runtime: RUNTIME.into(),
        };
        // Session and consumer ids come from this seed, so it must not be guessable.
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| io::Error::other(format!("Cannot read OS randomness: {e}")))?;
        let (job_tx, job_rx) = mpsc::channel();
        let (resolve_tx, resolve_rx) = mpsc::channel();
        let udp_buf = if gossip.is_empty() {
            Box::default()
        } else {
            vec![0u8; gossip::RECV_BUFFER].into_boxed_slice()
        };
        let mut me = MioAgent {
            agent: Agent::from_seed(config, seed, Instant::ZERO),
            clock,
            registry: None,
            base: 0,
            listeners: Vec::new(),
            conns: Vec::new(),
            open: 0,
            lingering: Vec::new(),
            linger_serial: 0,
            ready: VecDeque::new(),
            reads_would_block: 0,
            timers: Timers::default(),
            waker: None,
            job_tx,
            job_rx,
            jobs: HashMap::new(),
            workers: Arc::new(()),
            host: HashMap::new(),
            requests: VecDeque::new(),
            printer: Box::new(|record| crate::print_line(&record.line)),
            gossip,
            udp_buf,
            gossip_blocked: false,
            datagrams_dropped: 0,
            resolve_tx,
            resolve_rx,
            handlers: handlers::Handlers::default(),
            state: StatePaths::default(),
        };
        for command in host::builtins() {
            me.register_host_command(command)
                .map_err(|e| io::Error::other(format!("Cannot register host commands: {e:?}")))?;
        }
        Ok(me)
    }

    // ----- setup ---------------------------------------------------------------------

    /// Binds `addr` for `listener`'s protocol; returns the bound address (port 0 picks a
    /// free port). May be called before or after [`register`](Self::register).
    pub fn listen(&mut self, listener: Listener, addr: SocketAddr) -> io::Result<SocketAddr> {
        self.add_listener(listener, tandem_runtime::listen::bind_listener(addr)?)
    }

    /// Serves `listener`'s protocol on a socket the application bound itself (or
    /// inherited); it is made non-blocking here.
    pub fn add_listener(
        &mut self,
        listener: Listener,
        socket: std::net::TcpListener,
    ) -> io::Result<SocketAddr> {
        if self.listeners.iter().any(|l| l.kind == listener) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("already listening for {}", protocol(listener)),
            ));
        }
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        let mut slot = ListenerSlot {
            kind: listener,
            socket: TcpListener::from_std(socket),
            addr,
            backoff: None,
        };
        if let Some(registry) = &self.registry {
            registry.register(
                &mut slot.socket,
                Token(self.base + listener_offset(listener)),
                Interest::READABLE,
            )?;
        }
        self.listeners.push(slot);
        Ok(addr)
    }

    /// Registers the listeners, the gossip sockets and the waker with `registry`, taking
    /// the tokens `token_base .. token_base + TOKEN_RANGE`. Called once.
    pub fn register(&mut self, registry: &Registry, token_base: Token) -> io::Result<()> {
        if self.registry.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the agent is already registered",
            ));
        }
        if token_base.0.checked_add(TOKEN_RANGE).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "token range overflows",
            ));
        }
        let base = token_base.0;
        for l in &mut self.listeners {
            registry.register(
                &mut l.socket,
                Token(base + listener_offset(l.kind)),
                Interest::READABLE,
            )?;
        }
        for g in &mut self.gossip {
            registry.register(
                &mut g.socket,
                Token(base + gossip_offset(g.pool)),
                Interest::READABLE,
            )?;
            g.registered = Interest::READABLE;
        }
        self.waker = Some(Arc::new(Waker::new(registry, Token(base + WAKER))?));
        self.registry = Some(registry.try_clone()?);
        self.base = base;
        Ok(())
    }

    /// Adds a host command: registered with the agent (`help` lists it), run on a worker
    /// thread when a session executes it.
    pub fn register_host_command(&mut self, command: HostCommand) -> Result<(), RegisterError> {
        let name = command.info.name.clone();
        self.agent.register_command(command.info)?;
        self.host.insert(name, command.run);
        Ok(())
    }

    /// Where log records go (by default: their line to stderr). Records below the
    /// configured level never get here.
    pub fn set_log_printer(&mut self, printer: impl FnMut(&LogRecord) + Send + 'static) {
        self.printer = Box::new(printer);
    }

    // ----- getters -------------------------------------------------------------------

    /// The agent, for its getters.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The core's `now`.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The bound address of a listener.
    pub fn local_addr(&self, listener: Listener) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.kind == listener)
            .map(|l| l.addr)
    }

    /// The bound address of a pool's gossip socket (also what the agent advertises).
    pub fn gossip_addr(&self, pool: Pool) -> Option<SocketAddr> {
        self.gossip.iter().find(|g| g.pool == pool).map(|g| g.addr)
    }

    /// Gossip datagrams dropped because sending them failed (a full socket buffer delays
    /// them instead), or because the agent has no gossip sockets.
    pub fn datagrams_dropped(&self) -> u64 {
        self.datagrams_dropped
    }

    /// Connections the runtime holds (closing ones included, lingering ones not).
    pub fn connection_count(&self) -> usize {
        self.open
    }

    /// Connection reads so far that returned `WouldBlock`: system calls that moved no
    /// bytes. A diagnostic: the loop stops reading at a short read, so a client that waits
    /// for each answer before it sends the next request costs none of these per request.
    pub fn reads_would_block(&self) -> u64 {
        self.reads_would_block
    }

    /// Host jobs running on worker threads.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Worker threads alive: the running host jobs' and those of stopped jobs that have
    /// not returned yet. Never more than `Limits::max_host_jobs`.
    pub fn worker_threads(&self) -> usize {
        Arc::strong_count(&self.workers) - 1
    }

    /// Whether any connection still has output queued.
    pub fn has_unflushed_output(&self) -> bool {
        self.conns
            .iter()
            .flatten()
            .any(|s| !self.agent.tx_pending(s.id).is_empty())
    }

    /// The waker host jobs ring (once registered). mio supports one `Waker` per `Poll`, so
    /// an application that needs one shares this one; its token is the agent's, so the
    /// application checks its own queues after every poll.
    pub fn waker(&self) -> Option<Arc<Waker>> {
        self.waker.clone()
    }

    // ----- inputs --------------------------------------------------------------------

    /// Handles one event from the application's `Poll`. Returns `false` (and does nothing)
    /// when the token is not in the agent's range.
    pub fn handle_event(&mut self, event: &Event) -> bool {
        let Some(offset) = event
            .token()
            .0
            .checked_sub(self.base)
            .filter(|&o| o < TOKEN_RANGE && self.registry.is_some())
        else {
            return false;
        };
        match offset {
            HTTP_LISTENER => self.accept_all(Listener::Http),
            RPC_LISTENER => self.accept_all(Listener::Rpc),
            PEER_LISTENER => self.accept_all(Listener::Peer),
            WAKER => {
                self.job_messages();
                self.resolve_messages();
                self.handler_messages();
            }
            LAN_GOSSIP => self.gossip_event(Pool::Lan, event),
            WAN_GOSSIP => self.gossip_event(Pool::Wan, event),
            o if o >= FIRST_CONN => {
                let slot = (o - FIRST_CONN) / 2;
                if (o - FIRST_CONN).is_multiple_of(2) {
                    self.conn_event(slot, event);
                } else {
                    self.linger_event(slot);
                }
            }
            _ => {}
        }
        self.run_ready();
        true
    }

    /// How long the application's poll may block: until the agent's next deadline (the
    /// core's or the runtime's own), zero when work is waiting, `None` for no deadline.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.next_deadline()
            .map(|at| at.saturating_duration_since(StdInstant::now()))
    }

    /// The instant of the agent's next deadline, for an application that keeps its own
    /// timers.
    pub fn next_deadline(&self) -> Option<StdInstant> {
        if !self.ready.is_empty() || self.gossip_ready() {
            return Some(StdInstant::now());
        }
        let core = self
            .agent
            .poll_timeout()
            .map(|at| self.clock.deadline_to_std(at));
        match (core, self.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires what is due: the core's timers, the runtime's own, reads that wait for no
    /// event, and host job output. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self) {
        let now = self.clock.now();
        if self.agent.poll_timeout().is_some_and(|at| at <= now) {
            self.agent.handle_timeout(now);
            self.settle();
        }
        let std_now = StdInstant::now();
        while let Some(timer) = self.timers.pop_due(std_now) {
            match timer {
                RtTimer::AcceptRetry(kind) => {
                    if let Some(l) = self.listeners.iter_mut().find(|l| l.kind == kind) {
                        l.backoff = None;
                    }
                    self.accept_all(kind);
                }
                RtTimer::CloseFlush(id) => {
                    if slot_mut(&mut self.conns, id).is_some_and(|s| s.closing) {
                        let e = io::Error::new(
                            io::ErrorKind::TimedOut,
                            "peer did not read its last response",
                        );
                        self.fail(id, &e);
                        self.settle();
                    }
                }
                RtTimer::Linger(slot, serial) => {
                    let current = self.lingering.get(slot).and_then(Option::as_ref);
                    if current.is_some_and(|l| l.serial == serial) {
                        self.end_linger(slot);
                    }
                }
            }
        }
        // Without a registry there is no waker: the channels are drained here instead.
        self.job_messages();
        self.resolve_messages();
        self.handler_messages();
        // Once per turn, so a flood of datagrams waits its turn behind the connections.
        self.run_ready_gossip();
        self.run_ready();
    }

    /// Gives the agent one input (`apply_config`, `log_record`, a command registration …)
    /// and then acts on its outputs, as the call contract asks.
    pub fn input<R>(&mut self, f: impl FnOnce(&mut Agent, Instant) -> R) -> R {
        let now = self.clock.now();
        let r = f(&mut self.agent, now);
        self.settle();
        self.run_ready();
        r
    }

    /// Logs a record of the runtime or application: printed (at or above the configured
    /// level) and kept in the agent's log ring, from which `monitor` streams it.
    pub fn log(&mut self, level: Level, text: &str) {
        self.record(level, text);
        self.settle();
    }

    // ----- outputs -------------------------------------------------------------------

    /// Where the agent's state files are (`-snapshot`, `-keyring-file`, `-tags-file`): the
    /// paths `Effect::Persist` writes to. The configuration's `state_files` says which the
    /// agent writes.
    pub fn set_state_paths(&mut self, paths: StatePaths) {
        self.state = paths;
    }

    /// The next thing the agent asks of the application.
    #[must_use]
    pub fn poll_request(&mut self) -> Option<AgentRequest> {
        self.requests.pop_front()
    }

    // ----- shutting down -------------------------------------------------------------

    /// Stops accepting: the listeners are deregistered and closed. Open connections go on,
    /// so replies already queued can still be written, and so does gossip (until
    /// [`close_all`](Self::close_all)): a node stopped without a `leave` simply goes
    /// silent, and its peers find it failed.
    pub fn stop_listening(&mut self) {
        for mut l in std::mem::take(&mut self.listeners) {
            self.timers.cancel(l.backoff);
            if let Some(registry) = &self.registry {
                let _ = registry.deregister(&mut l.socket);
            }
        }
    }

    /// Closes everything: listeners, connections (each released in the agent) and
    /// lingering sockets; stops every host job.
    pub fn close_all(&mut self) {
        self.stop_listening();
        let now = self.clock.now();
        for mut slot in std::mem::take(&mut self.conns).into_iter().flatten() {
            self.timers.cancel(slot.close_timer);
            if let Some(registry) = &self.registry {
                let _ = registry.deregister(&mut slot.stream);
            }
            let _ = slot.stream.shutdown(Shutdown::Write);
            self.agent.handle_reset(slot.id, now);
        }
        self.open = 0;
        self.ready.clear();
        for i in 0..self.lingering.len() {
            self.end_linger(i);
        }
        for (_, job) in self.jobs.drain() {
            job.shared.stop();
        }
        self.handlers.kill_all();
        for mut g in std::mem::take(&mut self.gossip) {
            if let Some(registry) = &self.registry {
                let _ = registry.deregister(&mut g.socket);
            }
        }
        // Whatever the releases set off (cancelled jobs, log records) is acted on; it can
        // no longer reach a socket.
        self.settle();
    }

    // ----- the call contract ---------------------------------------------------------

    /// Drains `poll_output()` and acts on each output, until the agent has nothing more.
    fn settle(&mut self) {
        while let Some(out) = self.agent.poll_output() {
            match out {
                Output::Transmit(id) => {
                    // While a write would block, the writable event does the writing.
                    if slot_mut(&mut self.conns, id).is_some_and(|s| !s.want_write) {
                        self.flush(id);
                    }
                }
                Output::ResumeRead(id) => self.queue_ready(id),
                Output::Close(id) => self.begin_close(id),
                Output::Log(record) => (self.printer)(&record),
                Output::Datagram => self.send_datagrams(),
                Output::Effect(effect) => self.effect(effect),
            }
        }
    }

    /// A record into the ring, printed; its outputs are left for the caller's drain.
    fn record(&mut self, level: Level, text: &str) {
        let now = self.clock.now();
        // Printed before the drain, so it precedes whatever the record set off.
        if let Some(record) = self.agent.log_record(level, text, now) {
            (self.printer)(&record);
        }
    }

    fn effect(&mut self, effect: Effect) {
        match effect {
            Effect::StartJob { job, command, args } => self.start_job(job, command, args),
            Effect::CancelJob(job) => {
                if let Some(running) = self.jobs.remove(&job) {
                    running.shared.stop();
                    self.record(Level::Debug, &format!("host: job {} cancelled", job.0));
                }
            }
            Effect::JobWritable(job) => self.offer(job, None),
            Effect::Reload => self.requests.push_back(AgentRequest::Reload),
            Effect::Resolve {
                id,
                names,
                default_port,
            } => self.resolve(id, names, default_port),
            Effect::Shutdown => self.requests.push_back(AgentRequest::Shutdown),
            Effect::Connect { conn, addr } => self.dial(conn, addr),
            Effect::RunHandler(run) => self.run_handler(run),
            Effect::CancelHandler(id) => self.cancel_handler(id),
            Effect::Persist { file, write, bytes } => {
                let result = self.state.write(file, write, &bytes);
                let result = result.as_ref().map(|_| ()).map_err(String::as_str);
                // Inside a drain: its outputs join it.
                let now = self.clock.now();
                self.agent.persisted(file, result, now);
            }
        }
    }
}

impl Drop for MioAgent {
    fn drop(&mut self) {
        // Worker threads stop at their next wait; sockets close with their slots.
        for job in self.jobs.values() {
            job.shared.stop();
        }
        self.handlers.kill_all();
        if let Some(registry) = &self.registry {
            for l in &mut self.listeners {
                let _ = registry.deregister(&mut l.socket);
            }
            for slot in self.conns.iter_mut().flatten() {
                let _ = registry.deregister(&mut slot.stream);
            }
            for l in self.lingering.iter_mut().flatten() {
                let _ = registry.deregister(&mut l.stream);
            }
            for g in &mut self.gossip {
                let _ = registry.deregister(&mut g.socket);
            }
        }
    }
}

fn listener_offset(listener: Listener) -> usize {
    match listener {
        Listener::Http => HTTP_LISTENER,
        Listener::Rpc => RPC_LISTENER,
        Listener::Peer => PEER_LISTENER,
    }
}

// The fixed tokens sit below the connections, and the last lingering slot inside the range.
const _: () = assert!(
    HTTP_LISTENER < FIRST_CONN
        && RPC_LISTENER < FIRST_CONN
        && WAKER < FIRST_CONN
        && LAN_GOSSIP < FIRST_CONN
        && WAN_GOSSIP < FIRST_CONN
);
const _: () = assert!(conn_offset(MAX_SLOTS - 1) + 1 < TOKEN_RANGE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_lingering_tokens_interleave_inside_the_range() {
        assert_eq!(conn_offset(0), FIRST_CONN);
        assert_eq!(conn_offset(0) + 1, FIRST_CONN + 1);
    }

    #[test]
    fn the_agent_is_send() {
        fn is_send<T: Send>() {}
        is_send::<MioAgent>();
    }

    #[test]
    fn the_agent_advertises_the_gossip_addresses_it_bound() {
        let cfg = Config {
            lan_addr: "127.0.0.1:0".parse().unwrap(),
            wan_addr: "127.0.0.1:0".parse().unwrap(),
            server: true,
            ..Config::default()
        };
        let agent = MioAgent::with_gossip(cfg).unwrap();
        let lan = agent.gossip_addr(Pool::Lan).unwrap();
        let wan = agent.gossip_addr(Pool::Wan).unwrap();
        assert_ne!(lan.port(), 0);
        assert_ne!(wan.port(), 0);
        assert_eq!(agent.agent().config().lan_addr, lan);
        assert_eq!(agent.agent().config().wan_addr, wan);
        assert_eq!(agent.agent().cluster().local_addr(Pool::Lan), Some(lan));
    }

    #[test]
    fn only_a_server_has_a_wan_socket() {
        let socket = || std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = Config::default();
        let err = MioAgent::with_gossip_sockets(client.clone(), socket(), Some(socket()));
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let server = Config {
            server: true,
            ..client
        };
        let err = MioAgent::with_gossip_sockets(server, socket(), None);
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn foreign_tokens_are_not_the_agents() {
        let mut agent = MioAgent::new(Config::default()).unwrap();
        let poll = mio::Poll::new().unwrap();
        agent.register(poll.registry(), Token(100)).unwrap();
        assert!(agent.register(poll.registry(), Token(100)).is_err());
        // An idle agent's next deadline is the gossip's (the node's own cluster timers).
        assert!(
            agent
                .poll_timeout()
                .is_some_and(|t| t <= Duration::from_secs(60))
        );
    }
}
