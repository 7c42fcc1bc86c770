//! `tandem agent`: the driver that owns the sockets, the clock, the signals and the config
//! file around one [`tandem_core::Agent`].
//!
//! One thread runs a `LocalExecutor` with these tasks:
//! - an accept loop per listener (HTTP API, agent RPC);
//! - a reader per gossip socket (UDP: LAN, and WAN on servers), and one writer that waits
//!   for a full socket to drain (see `gossip`);
//! - one task per connection, which reads into the agent's receive window, writes from its
//!   transmit window, and otherwise sleeps on the connection's doorbell;
//! - one timer task, which keeps a single `async_io::Timer` armed at `poll_timeout()`;
//! - one signal task (SIGINT/SIGTERM stop the agent, SIGHUP reloads the config);
//! - one task per running host job (see `host`);
//! - one task per name lookup of a `join`, awaiting the thread that does it (see `gossip`).
//!
//! Invariants kept here:
//! - The agent is borrowed only between two `.await`s, never across one, so tasks cannot
//!   observe each other's borrows.
//! - Every input is followed by `Runtime::drain` (the core's call contract): outputs are
//!   dispatched at once, and the timer task is told when the next deadline moved.
//! - A connection's bytes are written only by its own task, so writes stay in order; other
//!   tasks ring its doorbell instead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::{Rc, Weak};
use std::time::Duration;

use async_executor::{LocalExecutor, Task};
use async_io::{Async, Timer};
use async_signal::{Signal, Signals};
use futures_lite::{AsyncReadExt as _, StreamExt as _, future};
use tandem_core::{
    Agent, ConnId, Effect, HandlerId, HostInfo, Instant, JobId, Level, Listener, Output, Pool,
};
use tandem_runtime::clock::Clock;
use tandem_runtime::handler::HandlerKill;
use tandem_runtime::signals::{
    GRACEFUL_LINE, GRACEFUL_TIMEOUT, StopAction, StopSignal, stop_action,
};

use crate::RUNTIME;
use crate::cli::AgentOptions;
use crate::gossip::{self, GossipSockets};
use crate::host;
use crate::logging::print_line;

/// How long a closing connection may take to take its last bytes before it is dropped.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);
/// After closing, how long unread request bytes are still read and thrown away. Closing a
/// socket with unread input makes the kernel send RST, which can destroy the response we
/// just wrote before the peer reads it (a pipelined request behind `Connection: close`, an
/// unread oversized body).
const LINGER: Duration = Duration::from_secs(1);
/// The most bytes thrown away while lingering.
const LINGER_MAX: usize = 64 * 1024;
/// Reads a connection may do in a row before letting other tasks run.
const READ_BUDGET: u32 = 16;
/// How long queued output may take to drain at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);
/// How often that is checked (shutdown only; never in steady state).
const SHUTDOWN_POLL: Duration = Duration::from_millis(10);
/// After an RPC `leave`, how long the agent waits for RPC clients to hang up before it
/// exits. Go's RPC client (the `serf` CLI) selects on "reply read" and "connection closed"
/// at once, so an agent that closes right after the reply makes `serf leave` print
/// `Error leaving: client closed` about half the time. Serf's own agent takes ~1.7 s.
const LEAVE_LINGER: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (EMFILE and friends) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A coalescing wake-up: any number of rings before a wait count as one.
#[derive(Clone, Debug)]
pub(crate) struct Bell {
    tx: async_channel::Sender<()>,
    rx: async_channel::Receiver<()>,
}

impl Bell {
    pub(crate) fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Bell { tx, rx }
    }

    /// Wakes the waiter, or the next one if nobody waits yet.
    pub(crate) fn ring(&self) {
        let _ = self.tx.try_send(());
    }

    /// Forgets a pending ring.
    fn clear(&self) {
        let _ = self.rx.try_recv();
    }

    /// Waits for a ring (at once if one is pending).
    pub(crate) async fn wait(&self) {
        // Both ends live in `self`, so the channel cannot close while we wait.
        let _ = self.rx.recv().await;
    }
}

/// The runtime's side of one connection.
struct ConnEntry {
    /// Rung for `Transmit`, `ResumeRead` and `Close`.
    bell: Bell,
    /// The agent emitted `Close`: flush, shut down, release.
    close: Cell<bool>,
}

/// A running host job.
pub(crate) struct HostJob {
    /// Dropping the task cancels the job at its next `.await`.
    task: Task<()>,
    /// Rung on `Effect::JobWritable`.
    writable: Bell,
}

/// Everything the tasks share.
pub(crate) struct Runtime {
    pub(crate) agent: RefCell<Agent>,
    clock: Clock,
    opts: AgentOptions,
    /// The snapshot read at start, until the listeners are up and it is restored.
    snapshot: Cell<Option<tandem_core::Snapshot>>,
    conns: RefCell<HashMap<ConnId, Rc<ConnEntry>>>,
    jobs: RefCell<HashMap<JobId, HostJob>>,
    /// Event handler scripts running.
    pub(crate) handlers: RefCell<HashMap<HandlerId, HandlerKill>>,
    /// Rung after a drain that moved the agent's next deadline away from `armed`.
    timer_bell: Bell,
    /// The deadline the timer task last armed (`None`: disarmed).
    armed: Cell<Option<Instant>>,
    /// Rung by SIGINT/SIGTERM and by `Effect::Shutdown` (RPC `leave`).
    shutdown: Bell,
    /// The shutdown is a `leave`'s (see [`LEAVE_LINGER`]).
    leaving: Cell<bool>,
    /// A stop signal started a graceful leave (a second one shuts down at once).
    signal_leave: Cell<bool>,
    /// The UDP sockets of the gossip pools.
    pub(crate) gossip: GossipSockets,
    /// Sending gossip: blocked or not, datagrams dropped.
    pub(crate) sender: gossip::Sender,
    /// Weak, because tasks hold the runtime: dropping the executor must drop them all.
    pub(crate) ex: Weak<LocalExecutor<'static>>,
}

/// Runs `tandem agent` until SIGINT, SIGTERM or a `leave`; returns the exit code.
pub fn run(opts: AgentOptions) -> i32 {
    let clock = Clock::start();
    let mut config = match opts.load_config() {
        Ok(c) => c,
        Err(e) => {
            print_line(&format!("==> Error loading configuration: {e}"));
            return 1;
        }
    };
    config.host = HostInfo {
        pid: std::process::id(),
        unix_ms: clock.unix_ms_at_start(),
        utc_offset_secs: clock.utc_offset_secs(),
        runtime: RUNTIME.into(),
    };
    // Bound first: the agent advertises the addresses actually bound (port 0 picks one).
    let gossip = match GossipSockets::bind(&mut config) {
        Ok(g) => g,
        Err(e) => {
            print_line(&format!("==> {e}"));
            return 1;
        }
    };
    // Session and consumer ids come from this seed, so it must not be guessable.
    let mut seed = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut seed) {
        print_line(&format!("==> Cannot read OS randomness: {e}"));
        return 1;
    }
    let snapshot = match opts.read_snapshot(&config) {
        Ok(s) => s,
        Err(e) => {
            print_line(&format!("==> {e}"));
            return 1;
        }
    };
    let mut agent = Agent::from_seed(config, seed, Instant::ZERO);
    if let Err(e) = host::register(&mut agent) {
        print_line(&format!("==> Cannot register host commands: {e:?}"));
        return 1;
    }
    let ex = Rc::new(LocalExecutor::new());
    let rt = Rc::new(Runtime {
        agent: RefCell::new(agent),
        clock,
        opts,
        snapshot: Cell::new(snapshot),
        conns: RefCell::new(HashMap::new()),
        jobs: RefCell::new(HashMap::new()),
        handlers: RefCell::new(HashMap::new()),
        timer_bell: Bell::new(),
        armed: Cell::new(None),
        shutdown: Bell::new(),
        leaving: Cell::new(false),
        signal_leave: Cell::new(false),
        gossip,
        sender: gossip::Sender::new(),
        ex: Rc::downgrade(&ex),
    });
    let code = async_io::block_on(ex.run(Rc::clone(&rt).serve()));
    // Dropping the executor drops every task: sockets close, host jobs stop.
    drop(ex);
    rt.kill_handlers();
    if code == 0 {
        rt.log(Level::Info, "agent: shutdown complete");
    }
    code
}

impl Runtime {
    /// The agent's life: listen, start the tasks, wait for a stop signal.
    async fn serve(self: Rc<Self>) -> i32 {
        let Some(ex) = self.ex.upgrade() else {
            return 1;
        };
        let Some((rpc, rpc_addr)) = self.bind(Listener::Rpc, self.opts.rpc_addr) else {
            return 1;
        };
        let Some((http, http_addr)) = self.bind(Listener::Http, self.opts.http_addr) else {
            return 1;
        };
        // Handlers go in before "listening" is printed, so a supervisor (or a test) that
        // signals as soon as it reads that line never hits the default action.
        let signals = match Signals::new([Signal::Term, Signal::Int, Signal::Hup]) {
            Ok(s) => s,
            Err(e) => {
                self.log(Level::Err, &format!("agent: cannot handle signals: {e}"));
                return 1;
            }
        };
        ex.spawn(Rc::clone(&self).timer_loop()).detach();
        ex.spawn(Rc::clone(&self).signal_loop(signals)).detach();
        ex.spawn(Rc::clone(&self).gossip_writer()).detach();
        ex.spawn(Rc::clone(&self).gossip_reader(Pool::Lan, Rc::clone(&self.gossip.lan)))
            .detach();
        if let Some(wan) = &self.gossip.wan {
            ex.spawn(Rc::clone(&self).gossip_reader(Pool::Wan, Rc::clone(wan)))
                .detach();
        }
        let accepting = [
            ex.spawn(Rc::clone(&self).accept_loop(rpc, Listener::Rpc)),
            ex.spawn(Rc::clone(&self).accept_loop(http, Listener::Http)),
        ];
        // Cluster-wide jobs: targets stream results to this TCP port, the LAN gossip
        // address's (as memberlist's TCP). Without it only this node's own part runs.
        let lan = self.agent.borrow().config().lan_addr;
        let peer_accepting = self
            .bind(Listener::Peer, lan)
            .map(|(peer, _)| ex.spawn(Rc::clone(&self).accept_loop(peer, Listener::Peer)));
        let (node, pid, lan, wan) = {
            let agent = self.agent.borrow();
            let c = agent.config();
            let wan = c.server.then_some(c.wan_addr);
            (c.node_name.clone(), c.host.pid, c.lan_addr, wan)
        };
        self.log(
            Level::Info,
            &format!(
                "agent: tandem v{} ({RUNTIME}) started: node {node:?}, pid {pid}",
                tandem_core::VERSION
            ),
        );
        self.log(
            Level::Info,
            &format!("agent: gossip LAN listening on {lan}"),
        );
        if let Some(wan) = wan {
            self.log(
                Level::Info,
                &format!("agent: gossip WAN listening on {wan}"),
            );
        }
        if lan.ip().is_unspecified() {
            self.log(
                Level::Warn,
                &format!(
                    "agent: gossip is bound to {}, which is what other nodes are told to \
                     reach this one at: give -bind a routable address",
                    lan.ip()
                ),
            );
        }
        for warning in self.opts.generated_warnings() {
            self.log(Level::Warn, &warning);
        }
        for note in self.opts.start_notes() {
            self.log(Level::Info, &note);
        }
        self.log(Level::Info, &format!("agent: RPC listening on {rpc_addr}"));
        // Printed last: once it is out, both listeners are up.
        self.log(
            Level::Info,
            &format!("agent: HTTP API listening on {http_addr}"),
        );
        self.join_at_start();
        self.shutdown.wait().await;
        // Stop accepting (dropping the accept tasks closes the listeners), then give the
        // connections a moment to take answers already queued, such as the reply to the
        // RPC `leave` that asked for this shutdown.
        drop(accepting);
        drop(peer_accepting);
        let open = self.conns.borrow().len();
        let jobs = self.jobs.borrow().len();
        self.log(
            Level::Info,
            &format!("agent: shutting down: closing {open} connections, stopping {jobs} jobs"),
        );
        let deadline = std::time::Instant::now() + SHUTDOWN_FLUSH;
        while self.unflushed() && std::time::Instant::now() < deadline {
            Timer::after(SHUTDOWN_POLL).await;
        }
        if self.leaving.get() {
            let deadline = std::time::Instant::now() + LEAVE_LINGER;
            while self.agent.borrow().connection_count(Listener::Rpc) > 0
                && std::time::Instant::now() < deadline
            {
                Timer::after(SHUTDOWN_POLL).await;
            }
        }
        // 1 when -retry-join gave up, as Serf's agent exits.
        self.agent.borrow().exit_status()
    }

    /// The snapshot's re-join, `-join`, `-join-wan` and `-retry-join`.
    fn join_at_start(self: &Rc<Self>) {
        let snapshot = self.snapshot.take();
        self.input(|agent, now| self.opts.start(agent, snapshot, now));
    }

    fn bind(
        self: &Rc<Self>,
        listener: Listener,
        addr: SocketAddr,
    ) -> Option<(Async<TcpListener>, SocketAddr)> {
        match tandem_runtime::listen::bind_listener(addr).and_then(Async::new) {
            Ok(l) => {
                let bound = l.get_ref().local_addr().unwrap_or(addr);
                Some((l, bound))
            }
            Err(e) => {
                let what = protocol(listener);
                self.log(
                    Level::Err,
                    &format!("agent: cannot listen for {what} on {addr}: {e}"),
                );
                None
            }
        }
    }

    /// Whether any connection still has output queued.
    fn unflushed(&self) -> bool {
        let agent = self.agent.borrow();
        self.conns
            .borrow()
            .keys()
            .any(|&conn| !agent.tx_pending(conn).is_empty())
    }

    // ----- the call contract ---------------------------------------------------------

    /// Gives the agent one input, then drains its outputs.
    pub(crate) fn input<R>(self: &Rc<Self>, f: impl FnOnce(&mut Agent, Instant) -> R) -> R {
        let now = self.clock.now();
        let r = f(&mut self.agent.borrow_mut(), now);
        self.drain();
        r
    }

    /// Drains `poll_output()` and acts on each output; then, if `poll_timeout()` moved, tells
    /// the timer task to re-arm (most inputs leave the deadline where it was, and re-arming
    /// an `async_io::Timer` costs a trip through the reactor). Acting on an output may be an input itself (`handle_reset`
    /// of a connection that has no task); its outputs join this same drain.
    fn drain(self: &Rc<Self>) {
        loop {
            let Some(out) = self.agent.borrow_mut().poll_output() else {
                break;
            };
            match out {
                Output::Transmit(conn) | Output::ResumeRead(conn) => {
                    if let Some(entry) = self.conns.borrow().get(&conn) {
                        entry.bell.ring();
                    }
                }
                Output::Close(conn) => {
                    let entry = self.conns.borrow().get(&conn).cloned();
                    match entry {
                        Some(entry) => {
                            entry.close.set(true);
                            entry.bell.ring();
                        }
                        // No task owns it (it already ended): just release it.
                        None => {
                            let now = self.clock.now();
                            self.agent.borrow_mut().handle_reset(conn, now);
                        }
                    }
                }
                Output::Log(record) => print_line(&record.line),
                Output::Datagram => self.send_datagrams(),
                Output::Effect(effect) => self.effect(effect),
            }
        }
        if self.agent.borrow().poll_timeout() != self.armed.get() {
            self.timer_bell.ring();
        }
    }

    fn effect(self: &Rc<Self>, effect: Effect) {
        match effect {
            Effect::StartJob { job, command, args } => {
                let Some(ex) = self.ex.upgrade() else {
                    return; // shutting down
                };
                self.log(
                    Level::Debug,
                    &format!("host: job {} started: {command} {}", job.0, args.join(" ")),
                );
                let writable = Bell::new();
                let task = ex.spawn(host::run(
                    Rc::clone(self),
                    job,
                    command,
                    args,
                    writable.clone(),
                ));
                // The task has not run yet (it runs when the executor polls it), so it
                // cannot have finished and removed itself before this insert.
                self.jobs
                    .borrow_mut()
                    .insert(job, HostJob { task, writable });
            }
            Effect::CancelJob(job) => {
                let cancelled = self.jobs.borrow_mut().remove(&job);
                if cancelled.is_some() {
                    // Dropped outside the borrow: dropping a task may run its destructors.
                    drop(cancelled);
                    self.log(Level::Debug, &format!("host: job {} cancelled", job.0));
                }
            }
            Effect::JobWritable(job) => {
                if let Some(j) = self.jobs.borrow().get(&job) {
                    j.writable.ring();
                }
            }
            Effect::Reload => self.reload("reload requested"),
            Effect::Resolve {
                id,
                names,
                default_port,
            } => self.resolve(id, names, default_port),
            Effect::Shutdown => {
                self.leaving.set(true);
                self.log(Level::Info, "agent: shutdown requested");
                self.shutdown.ring();
            }
            Effect::Connect { conn, addr } => self.connect(conn, addr),
            Effect::RunHandler(run) => self.run_handler(run),
            Effect::CancelHandler(id) => self.cancel_handler(id),
            Effect::Persist { file, write, bytes } => {
                let result = self.opts.state.write(file, write, &bytes);
                let result = result.as_ref().map(|_| ()).map_err(String::as_str);
                self.input(|agent, now| agent.persisted(file, result, now));
            }
        }
    }

    /// A host job ended by itself: forget it without cancelling it.
    pub(crate) fn job_done(&self, job: JobId) {
        let done = self.jobs.borrow_mut().remove(&job);
        if let Some(done) = done {
            done.task.detach();
        }
    }

    /// Logs a record of the runtime: stderr (at or above the configured level) and the
    /// agent's log ring, from which `monitor` streams it.
    pub(crate) fn log(self: &Rc<Self>, level: Level, text: &str) {
        let now = self.clock.now();
        let record = self.agent.borrow_mut().log_record(level, text, now);
        // Printed before the drain, so it precedes whatever the record set off.
        if let Some(record) = record {
            print_line(&record.line);
        }
        self.drain();
    }

    // ----- tasks ---------------------------------------------------------------------

    /// Keeps one timer armed at the agent's next deadline.
    async fn timer_loop(self: Rc<Self>) {
        let mut timer = Timer::never();
        loop {
            // Clear before reading the deadline: a change after the read rings again.
            self.timer_bell.clear();
            let deadline = self.agent.borrow().poll_timeout();
            self.armed.set(deadline);
            match deadline {
                Some(deadline) => timer.set_at(self.clock.deadline_to_std(deadline)),
                None => timer.clear(),
            }
            let fired = future::or(
                async {
                    (&mut timer).await;
                    true
                },
                async {
                    self.timer_bell.wait().await;
                    false
                },
            )
            .await;
            if fired {
                self.input(|agent, now| agent.handle_timeout(now));
            }
        }
    }

    async fn signal_loop(self: Rc<Self>, mut signals: Signals) {
        while let Some(signal) = signals.next().await {
            match signal {
                Ok(Signal::Hup) => self.reload("caught signal Hup"),
                Ok(signal) => {
                    self.log(Level::Info, &format!("agent: caught signal {signal:?}"));
                    let stop = if signal == Signal::Int {
                        StopSignal::Interrupt
                    } else {
                        StopSignal::Terminate
                    };
                    let action = {
                        let agent = self.agent.borrow();
                        stop_action(agent.config(), stop, self.signal_leave.get())
                    };
                    match action {
                        StopAction::Leave => {
                            self.signal_leave.set(true);
                            self.log(Level::Info, GRACEFUL_LINE);
                            self.input(|agent, now| agent.leave(now));
                            // `Effect::Shutdown` ends it; this bounds it.
                            let rt = Rc::clone(&self);
                            if let Some(ex) = self.ex.upgrade() {
                                ex.spawn(async move {
                                    Timer::after(GRACEFUL_TIMEOUT).await;
                                    rt.shutdown.ring();
                                })
                                .detach();
                            }
                        }
                        StopAction::ShutDown => self.shutdown.ring(),
                    }
                }
                Err(e) => self.log(Level::Warn, &format!("agent: signal error: {e}")),
            }
        }
    }

    /// SIGHUP or `Effect::Reload`: re-read the config file and hand the outcome to the
    /// core, which applies it or logs the error and keeps the running configuration, and
    /// answers the `reload` requests waiting for it.
    fn reload(self: &Rc<Self>, why: &str) {
        self.log(
            Level::Info,
            &format!("agent: {why}, reloading configuration"),
        );
        let loaded = self.opts.reload_config(self.agent.borrow().config());
        self.input(|agent, now| agent.reload_finished(loaded, now));
    }

    async fn accept_loop(self: Rc<Self>, socket: Async<TcpListener>, listener: Listener) {
        loop {
            match socket.accept().await {
                Ok((stream, peer)) => self.accepted(listener, stream, peer),
                Err(e) => {
                    let what = protocol(listener);
                    self.log(Level::Warn, &format!("{what}: accept failed: {e}"));
                    Timer::after(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    fn accepted(self: &Rc<Self>, listener: Listener, stream: Async<TcpStream>, peer: SocketAddr) {
        let what = protocol(listener);
        let now = self.clock.now();
        let accepted = self.agent.borrow_mut().accept(listener, Some(peer), now);
        let conn = match accepted {
            Ok(conn) => conn,
            Err(refused) => {
                self.drain();
                self.log(
                    Level::Warn,
                    &format!("{what}: refused connection from {peer}: {refused}"),
                );
                return; // dropping the stream closes it
            }
        };
        // The entry exists before the drain, so outputs of the accept find the task.
        let entry = Rc::new(ConnEntry {
            bell: Bell::new(),
            close: Cell::new(false),
        });
        self.conns.borrow_mut().insert(conn, Rc::clone(&entry));
        self.drain();
        self.log(
            Level::Debug,
            &format!("{what}: accepted connection from {peer}"),
        );
        // Answers are written whole; Nagle would only delay pipelined ones.
        let _ = stream.get_ref().set_nodelay(true);
        match self.ex.upgrade() {
            Some(ex) => ex
                .spawn(Rc::clone(self).connection(conn, stream, entry))
                .detach(),
            None => {
                self.conns.borrow_mut().remove(&conn);
                self.input(|agent, now| agent.handle_reset(conn, now));
            }
        }
    }

    /// `Effect::Connect`: dials `addr` for the agent's connection `conn`, then serves it as
    /// an accepted one; a failed dial releases it (`handle_reset`).
    fn connect(self: &Rc<Self>, conn: ConnId, addr: SocketAddr) {
        let entry = Rc::new(ConnEntry {
            bell: Bell::new(),
            close: Cell::new(false),
        });
        self.conns.borrow_mut().insert(conn, Rc::clone(&entry));
        let Some(ex) = self.ex.upgrade() else {
            self.conns.borrow_mut().remove(&conn);
            self.input(|agent, now| agent.handle_reset(conn, now));
            return;
        };
        let rt = Rc::clone(self);
        ex.spawn(async move {
            match Async::<TcpStream>::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.get_ref().set_nodelay(true);
                    rt.log(Level::Debug, &format!("peer: connected to {addr}"));
                    rt.connection(conn, stream, entry).await;
                }
                Err(e) => {
                    rt.log(Level::Warn, &format!("peer: cannot connect to {addr}: {e}"));
                    rt.conns.borrow_mut().remove(&conn);
                    rt.input(|agent, now| agent.handle_reset(conn, now));
                }
            }
        })
        .detach();
    }

    /// One connection's task, from accept to release.
    async fn connection(
        self: Rc<Self>,
        conn: ConnId,
        stream: Async<TcpStream>,
        entry: Rc<ConnEntry>,
    ) {
        let result = self.pump(conn, &stream, &entry).await;
        if let Err(e) = &result {
            let peer = stream.get_ref().peer_addr().ok();
            self.log(
                Level::Debug,
                &format!("http: connection {peer:?} ended: {e}"),
            );
        }
        let _ = stream.get_ref().shutdown(Shutdown::Write);
        self.conns.borrow_mut().remove(&conn);
        self.input(|agent, now| agent.handle_reset(conn, now));
        if result.is_ok() {
            linger(&stream).await;
        }
    }

    /// Moves bytes between the socket and the agent until the agent closes the connection
    /// (`Ok`, everything flushed) or the socket fails (`Err`).
    async fn pump(
        self: &Rc<Self>,
        conn: ConnId,
        stream: &Async<TcpStream>,
        entry: &ConnEntry,
    ) -> io::Result<()> {
        let mut eof = false;
        // The last read was short: it took all the socket had, so the next read waits for
        // the socket to be readable again instead of being told `WouldBlock` first.
        let mut drained = false;
        let mut close_deadline = None;
        let mut budget = READ_BUDGET;
        loop {
            // A ring so far is answered by this pass (the close flag is read, everything
            // queued written, and a read tried), so it must not wake the next wait: the
            // ring of the answer to the request just read would make every request cost an
            // extra pass, and with it an extra read that finds nothing.
            entry.bell.clear();
            let closing = entry.close.get();
            if closing && close_deadline.is_none() {
                close_deadline = Some(std::time::Instant::now() + CLOSE_FLUSH);
            }
            let write_blocked = match self.write_pending(conn, stream)? {
                Flushed::All if closing => return Ok(()),
                Flushed::All => false,
                Flushed::Blocked => true,
            };
            if let Some(deadline) = close_deadline.filter(|_| write_blocked) {
                // Closing: nothing more will be queued, so only the socket matters, but a
                // peer that never reads must not keep us forever.
                let timed_out =
                    future::or(async { stream.writable().await.map(|()| false) }, async {
                        Timer::at(deadline).await;
                        Ok(true)
                    })
                    .await?;
                if timed_out {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "peer did not read its last response",
                    ));
                }
                continue;
            }
            // Answers waiting for the socket do not stop reading: the agent decides when
            // its requests wait (past `max_tx` it hands out no window: `Got::Paused`).
            if !eof {
                let got = if drained {
                    Got::WouldBlock
                } else {
                    self.read_some(conn, stream)?
                };
                match got {
                    Got::Drained => {
                        drained = true;
                        continue;
                    }
                    Got::Data => {
                        budget -= 1;
                        if budget == 0 {
                            // A client that keeps bytes coming must not starve the others.
                            budget = READ_BUDGET;
                            future::yield_now().await;
                        }
                        continue;
                    }
                    Got::Eof => {
                        eof = true;
                        self.input(|agent, now| agent.handle_eof(conn, now));
                        continue;
                    }
                    Got::WouldBlock => {
                        // Bytes to read, room to write, or the doorbell (new output, a
                        // `ResumeRead`, a `Close`).
                        // async-io re-arms the socket level-triggered on each wait, so
                        // bytes that came after a short read make it readable at once.
                        let readable =
                            future::or(async { stream.readable().await.map(|()| true) }, async {
                                entry.bell.wait().await;
                                Ok(false)
                            });
                        let readable = future::or(readable, async {
                            writable_if(stream, write_blocked).await.map(|()| false)
                        })
                        .await?;
                        if readable {
                            drained = false;
                        }
                        budget = READ_BUDGET;
                        continue;
                    }
                    // Backpressure: the agent rings `ResumeRead` when it has room again.
                    Got::Paused => {}
                }
            }
            future::or(
                async {
                    entry.bell.wait().await;
                    Ok(())
                },
                writable_if(stream, write_blocked),
            )
            .await?;
            budget = READ_BUDGET;
        }
    }

    /// Writes what the agent has queued for `conn` until it is all written or the socket
    /// would block. The agent's transmit window is written in place, no copy.
    fn write_pending(
        self: &Rc<Self>,
        conn: ConnId,
        stream: &Async<TcpStream>,
    ) -> io::Result<Flushed> {
        loop {
            let written = {
                let agent = self.agent.borrow();
                let pending = agent.tx_pending(conn);
                if pending.is_empty() {
                    return Ok(Flushed::All);
                }
                let mut socket: &TcpStream = stream.get_ref();
                socket.write(pending)
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.input(|agent, now| agent.tx_consume(conn, n, now)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One non-blocking read straight into the agent's receive window.
    fn read_some(self: &Rc<Self>, conn: ConnId, stream: &Async<TcpStream>) -> io::Result<Got> {
        let now = self.clock.now();
        let got = {
            let mut agent = self.agent.borrow_mut();
            let space = agent.rx_space(conn);
            if space.is_empty() {
                return Ok(Got::Paused);
            }
            let room = space.len();
            let mut socket: &TcpStream = stream.get_ref();
            match socket.read(space) {
                Ok(0) => Got::Eof,
                Ok(n) => {
                    agent.rx_commit(conn, n, now);
                    if n < room { Got::Drained } else { Got::Data }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::WouldBlock),
                // Retried by the caller's loop.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Got::Data),
                Err(e) => return Err(e),
            }
        };
        self.drain();
        Ok(got)
    }
}

/// The log prefix of a listener's protocol.
fn protocol(listener: Listener) -> &'static str {
    match listener {
        Listener::Http => "http",
        Listener::Rpc => "rpc",
        Listener::Peer => "peer",
    }
}

/// What [`Runtime::write_pending`] achieved.
enum Flushed {
    All,
    Blocked,
}

/// What [`Runtime::read_some`] found.
enum Got {
    /// Bytes, and fewer than there was room for: the socket had no more.
    Drained,
    /// Bytes that filled the window: there may be more.
    Data,
    Eof,
    WouldBlock,
    Paused,
}

/// Reads and discards what the peer still sends after we closed, for a short while, so the
/// kernel does not answer it with RST (see [`LINGER`]).
async fn linger(stream: &Async<TcpStream>) {
    let discard = async {
        // On the heap, and only while lingering: an array here would sit inside every
        // connection task's future from accept on (4 KiB per idle connection).
        let mut buf = vec![0u8; 4096];
        let mut total = 0;
        let mut reader = stream;
        while total < LINGER_MAX {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    future::or(discard, async {
        Timer::after(LINGER).await;
    })
    .await;
}

/// Waits until `stream` is writable when `blocked` (a write is waiting); never otherwise.
async fn writable_if(stream: &Async<TcpStream>, blocked: bool) -> io::Result<()> {
    if blocked {
        stream.writable().await
    } else {
        future::pending().await
    }
}
