//! [`MioAgent`]: one [`tandem_core::Agent`] with its sockets, driven by events from a
//! `mio::Poll` that the application owns.
//!
//! What it owns: the HTTP and RPC listeners, every connection, closed sockets lingering
//! until the peer is done, the runtime timers ([`crate::timers`]), the worker threads of
//! host jobs and the `mio::Waker` they ring. What it leaves to the application: the `Poll`,
//! signals, the config file, and process exit ([`AgentRequest`]).
//!
//! Invariants kept here:
//! - Every input to the agent is followed by [`MioAgent::settle`] (the core's call
//!   contract). Acting on an output may be an input itself (`tx_consume` after a write,
//!   `handle_reset` after a close, `job_output` of a held item); its outputs join the same
//!   drain, so nothing recurses.
//! - Reads and accepts are drained to `WouldBlock` (mio is edge-triggered). A read that
//!   stops early (the agent's window is empty, or the connection used its read budget)
//!   leaves the connection in the ready queue or waiting for `ResumeRead`, which puts it
//!   back: it is read again without waiting for readiness, since no new edge may come.
//! - `WRITABLE` is registered only while a write would block, and a connection is
//!   re-registered only when its interest set changes.
//! - Tokens: `base + 2·i + FIRST_CONN` for the connection whose `ConnId` has index `i`;
//!   the slot keeps the whole `ConnId`, so an event or output for an earlier occupant of
//!   the index (an older generation) is never applied to a newer one.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant as StdInstant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token, Waker};
use tandem_core::{
    Agent, Config, ConnId, Effect, HostInfo, Instant, JobError, JobId, Level, Listener, LogRecord,
    Output, RegisterError,
};

use crate::RUNTIME;
use crate::clock::Clock;
use crate::host::{self, Finished, HostCommand, HostFn, HostJob, JobMsg, JobShared};
use crate::timers::{RtTimer, TimerKey, Timers};

/// Offset of the HTTP listener's token from the base.
const HTTP_LISTENER: usize = 0;
/// Offset of the RPC listener's token.
const RPC_LISTENER: usize = 1;
/// Offset of the waker's token (host job threads ring it).
const WAKER: usize = 2;
/// Offset of the first connection token; 3..8 are reserved.
const FIRST_CONN: usize = 8;
/// Connection slots (and lingering-socket slots) a `MioAgent` has tokens for.
const MAX_SLOTS: usize = 1 << 20;

/// How many tokens a [`MioAgent`] owns, from the base given to [`MioAgent::register`].
pub const TOKEN_RANGE: usize = FIRST_CONN + 2 * MAX_SLOTS;

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

/// What the agent asks of the application, drained with [`MioAgent::poll_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentRequest {
    /// Re-read the configuration and pass it to `Agent::apply_config` (through
    /// [`MioAgent::input`]). The RPC `reload` asks for this; SIGHUP should do the same.
    Reload,
    /// The agent has left: flush what is queued and stop (see [`MioAgent::stop_listening`],
    /// [`MioAgent::has_unflushed_output`], [`MioAgent::close_all`]).
    Shutdown,
}

/// A listener socket.
struct ListenerSlot {
    kind: Listener,
    socket: TcpListener,
    addr: SocketAddr,
    /// Accepting is paused until this back-off timer fires.
    backoff: Option<TimerKey>,
}

/// The runtime's side of one connection.
struct ConnSlot {
    /// The agent's id, generation included.
    id: ConnId,
    stream: TcpStream,
    listener: Listener,
    peer: SocketAddr,
    /// The interest set registered with mio.
    registered: Interest,
    /// The last write would block: wait for `WRITABLE`.
    want_write: bool,
    /// The peer sent EOF.
    eof: bool,
    /// In the ready queue.
    queued: bool,
    /// The agent emitted `Close`: flush, shut down, linger.
    closing: bool,
    /// The bound on that flush.
    close_timer: Option<TimerKey>,
}

/// A socket the agent is done with, read and discarded until the peer closes too.
struct Lingering {
    stream: TcpStream,
    /// Tells this occupant of the slot from earlier ones, for the timer.
    serial: u64,
    timer: TimerKey,
    discarded: usize,
}

/// A host job running on a worker thread.
struct RunningJob {
    shared: Arc<JobShared>,
    /// An item the agent refused `Full`, offered again on `JobWritable`.
    held: Option<serde_json::Value>,
    /// The agent refused its output as gone: the thread was told to stop. The entry stays
    /// until the thread says it is done, or the agent's `CancelJob` (which usually follows
    /// in the same drain) removes it.
    stopped: bool,
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
/// 1. [`new`](Self::new), [`listen`](Self::listen) on the listeners wanted, then
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
    timers: Timers,
    waker: Option<Arc<Waker>>,
    job_tx: Sender<JobMsg>,
    job_rx: Receiver<JobMsg>,
    jobs: HashMap<JobId, RunningJob>,
    host: HashMap<String, Arc<HostFn>>,
    requests: VecDeque<AgentRequest>,
    printer: Printer,
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
    /// A new agent with `config`. The host facts (`config.host`: pid, wall clock, UTC
    /// offset, runtime name) are filled in here, the agent is seeded from OS randomness,
    /// and the host commands `sysinfo` and `dashboard` are registered.
    pub fn new(mut config: Config) -> io::Result<MioAgent> {
        let clock = Clock::start();
        config.host = HostInfo {
            pid: std::process::id(),
            unix_ms: clock.unix_ms_at_start(),
            utc_offset_secs: clock.utc_offset_secs(),
            runtime: RUNTIME.into(),
        };
        // Session and consumer ids come from this seed, so it must not be guessable.
        let seed = getrandom::u64()
            .map_err(|e| io::Error::other(format!("Cannot read OS randomness: {e}")))?;
        let (job_tx, job_rx) = mpsc::channel();
        let mut me = MioAgent {
            agent: Agent::new(config, seed, Instant::ZERO),
            clock,
            registry: None,
            base: 0,
            listeners: Vec::new(),
            conns: Vec::new(),
            open: 0,
            lingering: Vec::new(),
            linger_serial: 0,
            ready: VecDeque::new(),
            timers: Timers::default(),
            waker: None,
            job_tx,
            job_rx,
            jobs: HashMap::new(),
            host: HashMap::new(),
            requests: VecDeque::new(),
            printer: Box::new(|record| crate::print_line(&record.line)),
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
        self.add_listener(listener, std::net::TcpListener::bind(addr)?)
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

    /// Registers the listeners and the job waker with `registry`, taking the tokens
    /// `token_base .. token_base + TOKEN_RANGE`. Called once.
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

    /// Connections the runtime holds (closing ones included, lingering ones not).
    pub fn connection_count(&self) -> usize {
        self.open
    }

    /// Host jobs running on worker threads.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
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
            WAKER => self.job_messages(),
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
        if !self.ready.is_empty() {
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
        // Without a registry there is no waker: the channel is drained here instead.
        self.job_messages();
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

    /// The next thing the agent asks of the application.
    #[must_use]
    pub fn poll_request(&mut self) -> Option<AgentRequest> {
        self.requests.pop_front()
    }

    // ----- shutting down -------------------------------------------------------------

    /// Stops accepting: the listeners are deregistered and closed. Open connections go on,
    /// so replies already queued can still be written.
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
            Effect::Shutdown => self.requests.push_back(AgentRequest::Shutdown),
        }
    }

    // ----- listeners -----------------------------------------------------------------

    /// Accepts until `WouldBlock`, or until an error starts a back-off.
    fn accept_all(&mut self, kind: Listener) {
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
        let accepted = self.agent.accept(kind, Some(peer), now);
        self.settle();
        let id = match accepted {
            Ok(id) => id,
            Err(refused) => {
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
            self.log(
                Level::Warn,
                &format!("{what}: cannot serve connection from {peer}: {e}"),
            );
            return;
        }
        // Answers are written whole; Nagle would only delay pipelined ones.
        let _ = stream.set_nodelay(true);
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        if let Some(entry) = self.conns.get_mut(index) {
            *entry = Some(ConnSlot {
                id,
                stream,
                listener: kind,
                peer,
                registered: Interest::READABLE,
                want_write: false,
                eof: false,
                queued: false,
                closing: false,
                close_timer: None,
            });
            self.open += 1;
        }
        self.log(
            Level::Debug,
            &format!("{what}: accepted connection from {peer}"),
        );
        // Bytes may already be waiting; read them without counting on an event.
        self.queue_ready(id);
    }

    // ----- connections ---------------------------------------------------------------

    fn conn_event(&mut self, index: usize, event: &Event) {
        let Some(slot) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return; // an event for a connection already gone
        };
        let id = slot.id;
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

    /// Reads into the agent's receive window until `WouldBlock`, EOF, backpressure (the
    /// window is empty: `ResumeRead` queues the connection again) or the read budget
    /// (queued again at once).
    fn read_conn(&mut self, id: ConnId) {
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
            match retry_interrupted(|| slot.stream.read(space)) {
                Ok(0) => {
                    slot.eof = true;
                    self.agent.handle_eof(id, now);
                    self.settle();
                    return;
                }
                Ok(n) => {
                    self.agent.rx_commit(id, n, now);
                    self.settle();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
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
    fn flush(&mut self, id: ConnId) {
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

    fn queue_ready(&mut self, id: ConnId) {
        if let Some(slot) = slot_mut(&mut self.conns, id)
            && !slot.queued
        {
            slot.queued = true;
            self.ready.push_back(id);
        }
    }

    /// Reads the connections queued for it, each once (with its budget).
    fn run_ready(&mut self) {
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
    fn begin_close(&mut self, id: ConnId) {
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
    fn fail(&mut self, id: ConnId, e: &io::Error) {
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
    fn linger_event(&mut self, index: usize) {
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

    fn end_linger(&mut self, index: usize) {
        let Some(mut l) = self.lingering.get_mut(index).and_then(Option::take) else {
            return;
        };
        self.timers.cancel(Some(l.timer));
        if let Some(registry) = &self.registry {
            let _ = registry.deregister(&mut l.stream);
        }
    }

    // ----- host jobs -----------------------------------------------------------------

    fn start_job(&mut self, job: JobId, command: String, args: Vec<String>) {
        self.record(
            Level::Debug,
            &format!("host: job {} started: {command} {}", job.0, args.join(" ")),
        );
        let Some(body) = self.host.get(&command).cloned() else {
            self.report_finished(
                job,
                Finished::failed(format!("{command}: no host implementation")),
            );
            return;
        };
        let shared = Arc::new(JobShared::default());
        let host_job = HostJob::new(
            job,
            Arc::clone(&shared),
            self.job_tx.clone(),
            self.waker.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("tandem-job-{}", job.0))
            .spawn(move || host_job.run(body, args));
        match spawned {
            // Detached: the thread ends when the job does, or at its next wait once
            // stopped. Its messages are read on this thread, after this insert.
            Ok(_) => {
                let (held, stopped) = (None, false);
                self.jobs.insert(
                    job,
                    RunningJob {
                        shared,
                        held,
                        stopped,
                    },
                );
            }
            Err(e) => self.report_finished(
                job,
                Finished::failed(format!("cannot start a worker thread: {e}")),
            ),
        }
    }

    /// Reads what the worker threads sent.
    fn job_messages(&mut self) {
        while let Ok(msg) = self.job_rx.try_recv() {
            match msg {
                JobMsg::Item(job, item) => self.offer(job, Some(item)),
                JobMsg::Done(job, finished) => {
                    // A job cancelled or refused meanwhile is not reported: the agent has
                    // ended it already.
                    let running = self.jobs.remove(&job);
                    if let (Some(running), Some(finished)) = (running, finished)
                        && !running.stopped
                    {
                        self.report_finished(job, finished);
                    }
                }
            }
            self.settle();
        }
    }

    /// Offers a job's item (a new one, or the one held since `Full`) to the agent.
    fn offer(&mut self, job: JobId, item: Option<serde_json::Value>) {
        let now = self.clock.now();
        let Some(running) = self.jobs.get_mut(&job) else {
            return; // stopped already: its thread was told
        };
        let Some(item) = item.or_else(|| running.held.take()) else {
            return;
        };
        match self.agent.job_output(job, &item, now) {
            Ok(()) => running.shared.taken(),
            Err(JobError::Full) => running.held = Some(item),
            Err(JobError::Gone) => {
                running.shared.stop();
                running.stopped = true;
            }
            Err(JobError::Invalid) => {
                running.shared.stop();
                running.stopped = true;
                self.report_finished(job, Finished::failed("internal error: invalid result item"));
            }
        }
    }

    fn report_finished(&mut self, job: JobId, finished: Finished) {
        let now = self.clock.now();
        self.agent
            .job_finished(job, finished.status_code, finished.message.as_deref(), now);
        self.record(
            Level::Debug,
            &format!(
                "host: job {} finished with status {}",
                job.0, finished.status_code
            ),
        );
    }
}

impl Drop for MioAgent {
    fn drop(&mut self) {
        // Worker threads stop at their next wait; sockets close with their slots.
        for job in self.jobs.values() {
            job.shared.stop();
        }
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
        }
    }
}

/// The slot of `id`, if it is still that connection (same generation).
fn slot_mut(conns: &mut [Option<ConnSlot>], id: ConnId) -> Option<&mut ConnSlot> {
    conns
        .get_mut(id.index())
        .and_then(Option::as_mut)
        .filter(|s| s.id == id)
}

/// A connection's token offset; the lingering socket of the same slot number is one more.
const fn conn_offset(index: usize) -> usize {
    FIRST_CONN + 2 * index
}

// The fixed tokens sit below the connections, and the last lingering slot inside the range.
const _: () =
    assert!(HTTP_LISTENER < FIRST_CONN && RPC_LISTENER < FIRST_CONN && WAKER < FIRST_CONN);
const _: () = assert!(conn_offset(MAX_SLOTS - 1) + 1 < TOKEN_RANGE);

fn listener_offset(listener: Listener) -> usize {
    match listener {
        Listener::Http => HTTP_LISTENER,
        Listener::Rpc => RPC_LISTENER,
    }
}

/// The log prefix of a listener's protocol.
pub(crate) fn protocol(listener: Listener) -> &'static str {
    match listener {
        Listener::Http => "http",
        Listener::Rpc => "rpc",
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
    fn foreign_tokens_are_not_the_agents() {
        let mut agent = MioAgent::new(Config::default()).unwrap();
        let poll = mio::Poll::new().unwrap();
        agent.register(poll.registry(), Token(100)).unwrap();
        assert!(agent.register(poll.registry(), Token(100)).is_err());
        assert_eq!(agent.poll_timeout(), None, "an idle agent has no deadline");
    }
}
