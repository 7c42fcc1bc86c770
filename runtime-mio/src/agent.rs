//! `tandem-mio agent`: one thread, one `mio::Poll`, and a [`MioAgent`] registered in it the
//! way any embedding application would register it. This file adds what an application
//! adds: signals, the config file, and the way out.
//!
//! Tokens: 0 for the signal self-pipe, the agent's range from 16.
//!
//! Shutting down (SIGINT, SIGTERM, or the agent's `leave`) follows `tandem agent`: stop
//! accepting, give connections up to a second to take the replies already queued
//! (the reply to the `leave` itself), after a `leave` give RPC clients up to
//! another second to hang up, then close everything and exit 0. Unlike a polling wait,
//! the loop checks those conditions after every turn, so it exits as soon as they hold.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use tandem_core::{Level, Listener, Pool};
use tandem_runtime::signals::{
    GRACEFUL_LINE, GRACEFUL_TIMEOUT, StopAction, StopSignal, stop_action,
};

use crate::cli::AgentOptions;
use crate::{AgentRequest, MioAgent, RUNTIME, print_line};

/// The signal self-pipe's token.
const SIGNALS: Token = Token(0);
/// The first token of the agent's range.
const AGENT_BASE: Token = Token(16);
/// How long queued output may take to drain at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);
/// After an RPC `leave`, how long the agent waits for RPC clients to hang up before it
/// exits. Go's RPC client (the `serf` CLI) selects on "reply read" and "connection closed"
/// at once, so an agent that closes right after the reply makes `serf leave` print
/// `Error leaving: client closed` about half the time. Serf's own agent takes ~1.7 s.
const LEAVE_LINGER: Duration = Duration::from_secs(1);
/// Events taken per poll.
const EVENTS: usize = 1024;

/// Where the agent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Stopped accepting; waiting (until the instant) for queued output to drain.
    Flushing(StdInstant),
    /// After a `leave`: waiting (until the instant) for RPC clients to hang up.
    Lingering(StdInstant),
}

/// Runs `tandem-mio agent` until SIGINT, SIGTERM or a `leave`; returns the exit code.
pub fn run(opts: AgentOptions) -> i32 {
    let config = match opts.load_config() {
        Ok(c) => c,
        Err(e) => {
            print_line(&format!("==> Error loading configuration: {e}"));
            return 1;
        }
    };
    let snapshot = match opts.read_snapshot(&config) {
        Ok(s) => s,
        Err(e) => {
            print_line(&format!("==> {e}"));
            return 1;
        }
    };
    // The gossip sockets are bound first: the agent advertises what was bound.
    let mut rt = match MioAgent::with_gossip(config) {
        Ok(rt) => rt,
        Err(e) => {
            print_line(&format!("==> agent: {e}"));
            return 1;
        }
    };
    rt.set_state_paths(opts.state.clone());
    let mut lp = match setup(&mut rt, &opts) {
        Ok(lp) => lp,
        Err(e) => {
            rt.log(Level::Err, &e);
            return 1;
        }
    };
    let (node, pid) = {
        let config = rt.agent().config();
        (config.node_name.clone(), config.host.pid)
    };
    rt.log(
        Level::Info,
        &format!(
            "agent: tandem v{} ({RUNTIME}) started: node {node:?}, pid {pid}",
            tandem_core::VERSION
        ),
    );
    for pool in [Pool::Lan, Pool::Wan] {
        if let Some(addr) = rt.gossip_addr(pool) {
            let name = pool.as_str();
            rt.log(
                Level::Info,
                &format!("agent: gossip {name} listening on {addr}"),
            );
        }
    }
    if let Some(lan) = rt
        .gossip_addr(Pool::Lan)
        .filter(|a| a.ip().is_unspecified())
    {
        rt.log(
            Level::Warn,
            &format!(
                "agent: gossip is bound to {}, which is what other nodes are told to reach \
                 this one at: give -bind a routable address",
                lan.ip()
            ),
        );
    }
    for warning in opts.generated_warnings() {
        rt.log(Level::Warn, &warning);
    }
    for note in opts.start_notes() {
        rt.log(Level::Info, &note);
    }
    rt.log(Level::Info, &format!("agent: RPC listening on {}", lp.rpc));
    // Printed last: once it is out, both listeners are up.
    rt.log(
        Level::Info,
        &format!("agent: HTTP API listening on {}", lp.http),
    );
    // The snapshot's re-join, `-join`, `-join-wan` and `-retry-join`.
    rt.input(|agent, now| opts.start(agent, snapshot, now));
    let code = serve(&mut rt, &mut lp, &opts);
    rt.close_all();
    if code == 0 {
        rt.log(Level::Info, "agent: shutdown complete");
    }
    code
}

/// The loop's resources, made before "listening" is printed.
struct Loop {
    poll: Poll,
    signals: Signals,
    /// The bound RPC address.
    rpc: SocketAddr,
    /// The bound HTTP address.
    http: SocketAddr,
}

/// Binds the listeners, installs the signal handlers and registers everything.
fn setup(rt: &mut MioAgent, opts: &AgentOptions) -> Result<Loop, String> {
    let poll = Poll::new().map_err(|e| format!("agent: cannot start the event loop: {e}"))?;
    let bind = |rt: &mut MioAgent, listener: Listener, addr: SocketAddr| {
        rt.listen(listener, addr).map_err(|e| {
            let what = crate::driver::protocol(listener);
            format!("agent: cannot listen for {what} on {addr}: {e}")
        })
    };
    let rpc = bind(rt, Listener::Rpc, opts.rpc_addr)?;
    let http = bind(rt, Listener::Http, opts.http_addr)?;
    // Cluster-wide jobs: targets stream results to the LAN gossip address's TCP port (as
    // memberlist's TCP). Without it only this node's own part of such a job runs.
    let lan = rt.agent().config().lan_addr;
    if let Err(e) = bind(rt, Listener::Peer, lan) {
        rt.log(Level::Warn, &e);
    }
    // Handlers go in before "listening" is printed, so a supervisor (or a test) that
    // signals as soon as it reads that line never hits the default action.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("agent: cannot handle signals: {e}"))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(|e| format!("agent: cannot handle signals: {e}"))?;
    rt.register(poll.registry(), AGENT_BASE)
        .map_err(|e| format!("agent: cannot register with the event loop: {e}"))?;
    Ok(Loop {
        poll,
        signals,
        rpc,
        http,
    })
}

/// The loop, until the agent may exit; returns the exit code.
fn serve(rt: &mut MioAgent, lp: &mut Loop, opts: &AgentOptions) -> i32 {
    let mut events = Events::with_capacity(EVENTS);
    let mut phase = Phase::Serving;
    let mut leaving = false;
    // A graceful leave started by a signal: shut down by then at the latest.
    let mut signal_leave: Option<StdInstant> = None;
    loop {
        let timeout = match phase {
            Phase::Serving => match signal_leave {
                Some(until) => {
                    let left = until.saturating_duration_since(StdInstant::now());
                    Some(rt.poll_timeout().map_or(left, |t| t.min(left)))
                }
                None => rt.poll_timeout(),
            },
            Phase::Flushing(until) | Phase::Lingering(until) => {
                let left = until.saturating_duration_since(StdInstant::now());
                Some(rt.poll_timeout().map_or(left, |t| t.min(left)))
            }
        };
        match lp.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            // A signal arrived during the wait: mio 1.x no longer retries by itself.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
            Err(e) => {
                rt.log(Level::Err, &format!("agent: event loop failed: {e}"));
                return 1;
            }
        }
        for event in events.iter() {
            if event.token() == SIGNALS {
                for signal in lp.signals.pending() {
                    match signal {
                        SIGHUP => reload(rt, opts, "caught signal Hup"),
                        _ => {
                            let name = if signal == SIGINT { "Int" } else { "Term" };
                            rt.log(Level::Info, &format!("agent: caught signal {name}"));
                            let stop = if signal == SIGINT {
                                StopSignal::Interrupt
                            } else {
                                StopSignal::Terminate
                            };
                            let config = rt.agent().config();
                            match stop_action(config, stop, signal_leave.is_some()) {
                                StopAction::Leave => {
                                    rt.log(Level::Info, GRACEFUL_LINE);
                                    rt.input(|agent, now| agent.leave(now));
                                    // `Effect::Shutdown` ends it; this bounds it.
                                    signal_leave = Some(StdInstant::now() + GRACEFUL_TIMEOUT);
                                }
                                StopAction::ShutDown => begin_shutdown(rt, &mut phase),
                            }
                        }
                    }
                }
            } else {
                rt.handle_event(event);
            }
        }
        rt.handle_timeout();
        if signal_leave.is_some_and(|until| StdInstant::now() >= until) {
            begin_shutdown(rt, &mut phase);
        }
        while let Some(request) = rt.poll_request() {
            match request {
                AgentRequest::Reload => reload(rt, opts, "reload requested"),
                AgentRequest::Shutdown => {
                    leaving = true;
                    rt.log(Level::Info, "agent: shutdown requested");
                    begin_shutdown(rt, &mut phase);
                }
            }
        }
        loop {
            let now = StdInstant::now();
            match phase {
                Phase::Flushing(until) if !rt.has_unflushed_output() || now >= until => {
                    if !leaving {
                        return rt.agent().exit_status();
                    }
                    phase = Phase::Lingering(now + LEAVE_LINGER);
                }
                Phase::Lingering(until)
                    if rt.agent().connection_count(Listener::Rpc) == 0 || now >= until =>
                {
                    // 1 when -retry-join gave up, as Serf's agent exits.
                    return rt.agent().exit_status();
                }
                _ => break,
            }
        }
    }
}

/// Stops accepting and starts the bounded flush (once).
fn begin_shutdown(rt: &mut MioAgent, phase: &mut Phase) {
    if *phase != Phase::Serving {
        return;
    }
    rt.stop_listening();
    let open = rt.connection_count();
    let jobs = rt.job_count();
    rt.log(
        Level::Info,
        &format!("agent: shutting down: closing {open} connections, stopping {jobs} jobs"),
    );
    *phase = Phase::Flushing(StdInstant::now() + SHUTDOWN_FLUSH);
}

/// SIGHUP or `reload` (RPC or command): re-read the config file and hand the outcome to
/// the core, which applies it or logs the error and keeps the running configuration, and
/// answers the `reload` requests waiting for it.
fn reload(rt: &mut MioAgent, opts: &AgentOptions, why: &str) {
    rt.log(
        Level::Info,
        &format!("agent: {why}, reloading configuration"),
    );
    let loaded = opts.reload_config(rt.agent().config());
    rt.input(|agent, now| agent.reload_finished(loaded, now));
}
