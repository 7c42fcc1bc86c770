//! What the soak's workers share: the plan, the agent under test's addresses, the stop
//! flag, the failures, the counters, and the logs of what the load did and when (sessions
//! created and closed, user events sent, membership changes caused), against which the RPC
//! streams are checked.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tandem_tests::driver::process::Runtime;

use crate::agent::{Agent, Bins};
use crate::rss;

/// The agent under test's node name.
pub const AGENT_NAME: &str = "soak-agent";
/// The agent under test's `timing.session_timeout_ms`.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any single request may wait for its answer (a pull parks for 2 s at most).
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a membership change may take to show on the agent under test (failure
/// detection after `kill -9` takes 5–7 s on loopback).
pub const CONVERGE: Duration = Duration::from_secs(30);

/// What to run, from the command line.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seconds: u64,
    pub sessions: usize,
    pub consumers: usize,
    pub window: usize,
    pub peers: usize,
    pub monitors: usize,
    pub streams: usize,
    pub warmup_pct: u64,
    pub rss_tolerance_pct: u64,
    pub seed: u64,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            seconds: 600,
            sessions: 4,
            consumers: 3,
            window: 16,
            peers: 3,
            monitors: 2,
            streams: 2,
            warmup_pct: 20,
            rss_tolerance_pct: 10,
            seed: 1,
        }
    }
}

/// A line the agent logs (at DEBUG) while handling a request the load sent: `text` is the
/// line after its level tag, `send` when the request was written, `resp` when its answer
/// was read. A monitor subscribed before `send` and stopped after `resp` must carry it.
pub struct Mark {
    pub text: String,
    pub send: Instant,
    pub resp: Instant,
}

/// A numbered user event the load sent (`event` with name `soak`, payload the number).
pub struct SentEvent {
    pub seq: u64,
    pub send: Instant,
    pub resp: Instant,
}

/// A membership change the churn caused on the agent under test: the `member-*` event
/// `kind` for `name`, set off no earlier than `start` and shown by `members-lan` by `seen`.
pub struct ChurnEvent {
    pub name: String,
    pub kind: &'static str,
    pub start: Instant,
    pub seen: Instant,
}

/// Counters, one per kind of operation or check.
#[derive(Default)]
pub struct Counters {
    pub sessions: AtomicU64,
    pub sessions_closed: AtomicU64,
    pub consumers: AtomicU64,
    pub pulls: AtomicU64,
    pub pull_items: AtomicU64,
    pub echo_jobs: AtomicU64,
    pub dashboard_jobs: AtomicU64,
    pub monitor_jobs: AtomicU64,
    pub interrupts: AtomicU64,
    pub execs: AtomicU64,
    pub one_time_execs: AtomicU64,
    pub session_infos: AtomicU64,
    pub abandoned_polls: AtomicU64,
    pub jobs_checked: AtomicU64,
    pub items_checked: AtomicU64,
    pub gaps: AtomicU64,
    pub monitor_subs: AtomicU64,
    pub monitor_records: AtomicU64,
    pub monitor_lines_checked: AtomicU64,
    pub stream_subs: AtomicU64,
    pub stream_records: AtomicU64,
    pub user_events: AtomicU64,
    pub user_events_checked: AtomicU64,
    pub member_events_checked: AtomicU64,
    pub member_events_extra: AtomicU64,
    pub stream_missing: AtomicU64,
    pub rpc_members: AtomicU64,
    pub rpc_stats: AtomicU64,
    pub churn_cycles: AtomicU64,
    pub joins: AtomicU64,
    pub graceful_leaves: AtomicU64,
    pub kills: AtomicU64,
    pub force_leaves: AtomicU64,
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Everything the workers share.
pub struct Ctx {
    pub plan: Plan,
    pub runtime: Runtime,
    pub bins: Bins,
    pub http: SocketAddr,
    pub rpc: SocketAddr,
    pub lan: SocketAddr,
    pub t0: Instant,
    pub n: Counters,
    pub marks: Mutex<Vec<Mark>>,
    pub user_events: Mutex<Vec<SentEvent>>,
    pub churn: Mutex<Vec<ChurnEvent>>,
    stop: AtomicBool,
    failures: Mutex<(Vec<String>, u64)>,
}

/// At most this many failure messages are kept (all are counted).
const KEEP_FAILURES: usize = 100;

impl Ctx {
    pub fn new(plan: Plan, runtime: Runtime, agent: &Agent, bins: Bins) -> Ctx {
        Ctx {
            plan,
            runtime,
            bins,
            http: agent.http,
            rpc: agent.rpc,
            lan: agent.lan,
            t0: Instant::now(),
            n: Counters::default(),
            marks: Mutex::default(),
            user_events: Mutex::default(),
            churn: Mutex::default(),
            stop: AtomicBool::new(false),
            failures: Mutex::default(),
        }
    }

    /// Whether the load should wind down.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Seconds since the run started, for messages.
    pub fn at(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Records a failure of the run (printed at once too).
    pub fn fail(&self, msg: impl Into<String>) {
        let msg = format!("[{:7.1} s] {}", self.at(), msg.into());
        eprintln!("soak {}: FAILURE {msg}", self.runtime.name());
        let mut f = self.failures.lock().unwrap();
        f.1 += 1;
        if f.0.len() < KEEP_FAILURES {
            f.0.push(msg);
        }
    }

    /// The failures so far (the first [`KEEP_FAILURES`]) and how many there were.
    pub fn failures(&self) -> (Vec<String>, u64) {
        self.failures.lock().unwrap().clone()
    }

    /// Sleeps `d`, or less if the load stops meanwhile; whether it is still running.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while !self.stopping() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        false
    }
}

impl Ctx {
    pub fn mark(&self, text: String, send: Instant, resp: Instant) {
        self.marks.lock().unwrap().push(Mark { text, send, resp });
    }
}

/// A small deterministic generator (SplitMix64), one per worker, seeded from `--seed`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `pct` %.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// What the wind-down found (see [`crate::streams::final_checks`]).
#[derive(Default)]
pub struct End {
    pub records_dropped: Option<u64>,
    pub sessions_expired: Option<u64>,
    pub connections_accepted: Option<u64>,
    pub quiet_after: Option<f64>,
}

/// The summary printed at the end of a runtime's run.
#[allow(clippy::too_many_arguments)]
pub fn report(
    out: &mut String,
    ctx: &Ctx,
    load_secs: f64,
    samples: &[(f64, u64)],
    verdict: &rss::Verdict,
    end: &End,
    after_rss: Option<u64>,
    failures: &(Vec<String>, u64),
) {
    let n = &ctx.n;
    let name = ctx.runtime.name();
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let _ = writeln!(out, "\n=== soak {name}: summary ===");
    let _ = writeln!(out, "load ran {load_secs:.1} s");
    let _ = writeln!(
        out,
        "http: sessions {} (closed {}), consumers {}, pulls {} ({} items), async jobs {} \
         (echo {}, dashboard {}, monitor {} + interrupt_job {}), exec {} in a session + {} one-time, \
         session_info {}, abandoned parked polls {}, sessions expired {}",
        get(&n.sessions),
        get(&n.sessions_closed),
        get(&n.consumers),
        get(&n.pulls),
        get(&n.pull_items),
        get(&n.echo_jobs) + get(&n.dashboard_jobs) + get(&n.monitor_jobs),
        get(&n.echo_jobs),
        get(&n.dashboard_jobs),
        get(&n.monitor_jobs),
        get(&n.interrupts),
        get(&n.execs),
        get(&n.one_time_execs),
        get(&n.session_infos),
        get(&n.abandoned_polls),
        opt(end.sessions_expired),
    );
    let _ = writeln!(
        out,
        "rpc: monitor subscriptions {} ({} records), stream subscriptions {} ({} records), \
         user events sent {}, members calls {}, stats calls {}",
        get(&n.monitor_subs),
        get(&n.monitor_records),
        get(&n.stream_subs),
        get(&n.stream_records),
        get(&n.user_events),
        get(&n.rpc_members),
        get(&n.rpc_stats),
    );
    let _ = writeln!(
        out,
        "churn: {} peer cycles: {} joins, {} graceful leaves, {} kill -9 + {} force-leave",
        get(&n.churn_cycles),
        get(&n.joins),
        get(&n.graceful_leaves),
        get(&n.kills),
        get(&n.force_leaves),
    );
    let _ = writeln!(
        out,
        "checked: {} jobs, {} consumer items (every consumer, by job id and sequence), \
         gaps {}; monitor lines expected and found {}, user events {}, member events {} \
         (+{} outside the checked windows), stream records missing {}, rpc.records_dropped {}",
        get(&n.jobs_checked),
        get(&n.items_checked),
        get(&n.gaps),
        get(&n.monitor_lines_checked),
        get(&n.user_events_checked),
        get(&n.member_events_checked),
        get(&n.member_events_extra),
        get(&n.stream_missing),
        opt(end.records_dropped),
    );
    let _ = writeln!(
        out,
        "connections accepted {}; every session and job gone {}",
        opt(end.connections_accepted),
        end.quiet_after
            .map_or("NOT within the deadline".to_string(), |s| format!(
                "{s:.1} s after the load stopped"
            )),
    );
    rss::print(out, ctx, samples, verdict, after_rss);
    if failures.1 > 0 {
        let _ = writeln!(out, "FAILURES ({}):", failures.1);
        for f in &failures.0 {
            let _ = writeln!(out, "  {f}");
        }
        if failures.1 > failures.0.len() as u64 {
            let _ = writeln!(out, "  … {} more", failures.1 - failures.0.len() as u64);
        }
    }
}
