//! The soak run (issue #6): a real agent process under mixed load for a bounded time,
//! checking that its resident memory stays flat and that nothing a consumer was promised
//! goes missing.
//!
//! ```sh
//! cargo run --release -p tandem-tests --bin soak -- --seconds 600 --runtime both
//! ```
//!
//! Per runtime, one agent under test (`agent -http-addr 127.0.0.1:0 -rpc-addr 127.0.0.1:0
//! -lan-port 0`, log level DEBUG, sessions idle-expire after 10 s) and, all at once until
//! the time is up:
//!
//! - **sessions** ([`sessions`]): each worker creates a session, joins more consumers to
//!   it, and every consumer long-polls `pull_results` on its own keep-alive connection while
//!   the worker runs numbered `echo` jobs, background `dashboard` host jobs, foreground
//!   `monitor` jobs it interrupts with `interrupt_job`, `exec`s (in the session and
//!   one-time) and `session_info`, then closes the session. Every consumer must have seen
//!   exactly the same items, and every job exactly its items in order (command, payload,
//!   status); a `gap` fails the run, because the worker keeps at most `--window` jobs
//!   unconsumed, far under the 1000-item consumer queue;
//! - **abandoned polls**: sessions whose parked poll's connection is dropped (FIN or
//!   reset) and that are never closed, so the agent must discard the poll and expire the
//!   session;
//! - **RPC streams** ([`streams`]): Consul `monitor` subscribers (DEBUG) and Serf `stream`
//!   subscribers (member events and `user:soak`), each subscribing for a few seconds, then
//!   `stop`; a sender of numbered user `event`s; `members-lan`, `members` and `stats` calls.
//!   Every session the load created while a monitor was subscribed must show up in it as its
//!   `http: session … created` line, every numbered user event in every stream, in order;
//! - **a churning cluster** ([`churn`]): peer agent processes (both runtimes, alternately)
//!   that join the agent under test (or are joined by it), stay a few seconds and leave —
//!   gracefully, or by `kill -9` followed by `force-leave` — over and over; each step waits
//!   until the agent under test shows the member `alive`, `left` or `failed`, and every
//!   stream subscribed across a step must carry its `member-*` event.
//!
//! RSS: `VmRSS` of the agent under test, once a second. After the warm-up (`--warmup-pct`,
//! 20 % of the run), the baseline is the median of the first 5 samples; every later sample
//! must lie within ±`--rss-tolerance-pct` (10 %) of it. At the end, the load stops and every
//! session and job must be gone within the session timeout.
//!
//! Exit status: 0 pass, 1 fail, 2 bad arguments or the agents could not be built.

mod agent;
mod churn;
mod client;
mod ctx;
mod rss;
mod sessions;
mod streams;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{Agent, Bins};
use ctx::{Ctx, Plan};
use tandem_core::{Config, Level, Timing};
use tandem_tests::driver::process::Runtime;

const USAGE: &str = "usage: soak [--seconds N] [--runtime smol|mio|both] [--sessions N] \
[--consumers N] [--window N] [--peers N] [--monitors N] [--streams N] [--warmup-pct P] \
[--rss-tolerance-pct P] [--seed N] [--bin-dir DIR] [--no-build]";

fn main() -> ExitCode {
    let (plan, runtimes, bins) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) if e == "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("soak: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let bins = match bins.resolve() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    let mut all_passed = true;
    let mut summaries = Vec::new();
    for runtime in runtimes {
        let summary = run(&plan, &bins, runtime);
        all_passed &= summary.passed;
        println!("{}", summary.text);
        summaries.push(summary);
    }
    if summaries.len() > 1 {
        for s in &summaries {
            println!(
                "soak {}: {}",
                s.runtime,
                if s.passed { "PASS" } else { "FAIL" }
            );
        }
    }
    if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct Summary {
    runtime: &'static str,
    passed: bool,
    text: String,
}

fn parse_args() -> Result<(Plan, Vec<Runtime>, Bins), String> {
    let mut plan = Plan::default();
    let mut runtimes = vec![Runtime::Smol, Runtime::Mio];
    let mut bins = Bins::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let flag = flag.trim_start_matches('-').to_string();
        if flag == "no-build" {
            bins.build = false;
            continue;
        }
        if flag == "help" || flag == "h" {
            return Err("help".into());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("--{flag} needs a value"))?;
        let num = || -> Result<u64, String> {
            value
                .parse::<u64>()
                .map_err(|_| format!("--{flag}: not a number: {value:?}"))
        };
        match flag.as_str() {
            "seconds" => plan.seconds = num()?.max(10),
            "runtime" => {
                runtimes = match value.as_str() {
                    "smol" => vec![Runtime::Smol],
                    "mio" => vec![Runtime::Mio],
                    "both" => vec![Runtime::Smol, Runtime::Mio],
                    other => return Err(format!("--runtime: smol, mio or both, not {other:?}")),
                }
            }
            "sessions" => plan.sessions = num()? as usize,
            "consumers" => plan.consumers = (num()? as usize).max(1),
            "window" => plan.window = (num()? as usize).max(1),
            "peers" => plan.peers = num()? as usize,
            "monitors" => plan.monitors = num()? as usize,
            "streams" => plan.streams = num()? as usize,
            "warmup-pct" => plan.warmup_pct = num()?.min(90),
            "rss-tolerance-pct" => plan.rss_tolerance_pct = num()?,
            "seed" => plan.seed = num()?,
            "bin-dir" => bins.dir = Some(value.into()),
            other => return Err(format!("unknown flag --{other}")),
        }
    }
    Ok((plan, runtimes, bins))
}

/// The agent under test's configuration: DEBUG, so `monitor` carries a line per session
/// created and closed; sessions idle-expire after 10 s, so abandoned ones go away within
/// the warm-up; the rest are the defaults (consumer queue 1000, history 50, pull timeout
/// 2 s).
fn agent_config() -> Config {
    Config {
        node_name: ctx::AGENT_NAME.into(),
        log_level: Level::Debug,
        timing: Timing {
            session_timeout_ms: ctx::SESSION_TIMEOUT.as_millis() as u64,
            ..Timing::default()
        },
        ..Config::default()
    }
}

fn run(plan: &Plan, bins: &Bins, runtime: Runtime) -> Summary {
    let name = runtime.name();
    println!(
        "soak {name}: {} s, warm-up {} %, {} session workers x {} consumers (window {} jobs), \
         {} peers, {} monitors, {} streams, seed {}",
        plan.seconds,
        plan.warmup_pct,
        plan.sessions,
        plan.consumers,
        plan.window,
        plan.peers,
        plan.monitors,
        plan.streams,
        plan.seed
    );
    let agent = match Agent::start(bins, runtime, &agent_config(), 0) {
        Ok(a) => a,
        Err(e) => {
            return Summary {
                runtime: name,
                passed: false,
                text: format!("soak {name}: FAIL: the agent did not start: {e}"),
            };
        }
    };
    let ctx = Arc::new(Ctx::new(plan.clone(), runtime, &agent, bins.clone()));
    let started = Instant::now();
    let run_for = Duration::from_secs(plan.seconds);
    let mut workers = Vec::new();
    let spawn = |workers: &mut Vec<std::thread::JoinHandle<()>>,
                 what: String,
                 f: Box<dyn FnOnce(Arc<Ctx>) + Send>| {
        let ctx2 = Arc::clone(&ctx);
        workers.push(
            std::thread::Builder::new()
                .name(what.clone())
                .spawn(move || {
                    let c = Arc::clone(&ctx2);
                    if let Err(panic) =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c)))
                    {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        ctx2.fail(format!("{what} panicked: {msg}"));
                    }
                })
                .expect("spawn a worker"),
        );
    };
    let sampler = {
        let ctx = Arc::clone(&ctx);
        let pid = agent.pid();
        std::thread::spawn(move || rss::sample(&ctx, pid))
    };
    for w in 0..plan.sessions {
        spawn(
            &mut workers,
            format!("session worker {w}"),
            Box::new(move |c| sessions::worker(&c, w)),
        );
    }
    spawn(
        &mut workers,
        "abandoner".into(),
        Box::new(|c| sessions::abandoner(&c)),
    );
    for m in 0..plan.monitors {
        spawn(
            &mut workers,
            format!("monitor {m}"),
            Box::new(move |c| streams::monitor(&c, m)),
        );
    }
    for s in 0..plan.streams {
        spawn(
            &mut workers,
            format!("stream {s}"),
            Box::new(move |c| streams::stream(&c, s)),
        );
    }
    spawn(
        &mut workers,
        "rpc caller".into(),
        Box::new(|c| streams::caller(&c)),
    );
    for p in 0..plan.peers {
        spawn(
            &mut workers,
            format!("peer {p}"),
            Box::new(move |c| churn::peer(&c, p)),
        );
    }
    // Run until the time is up or the agent died.
    while started.elapsed() < run_for && !ctx.stopping() {
        std::thread::sleep(Duration::from_millis(200));
    }
    ctx.stop();
    let load_secs = started.elapsed().as_secs_f64();
    for w in workers {
        let _ = w.join();
    }
    let samples = sampler.join().unwrap_or_default();
    // Wind-down checks: nothing left behind, stream losses accounted for.
    let end = streams::final_checks(&ctx);
    let after_rss = agent.rss_kib();
    let verdict = rss::verdict(plan, &samples);
    if let Some(e) = &verdict.failure {
        ctx.fail(e.clone());
    }
    let failures = ctx.failures();
    let passed = failures.1 == 0;
    let mut text = String::new();
    ctx::report(
        &mut text, &ctx, load_secs, &samples, &verdict, &end, after_rss, &failures,
    );
    if !passed {
        text.push_str(&format!(
            "--- last agent stderr lines ---\n{}\n",
            agent.stderr_tail(40)
        ));
    }
    text.push_str(&format!(
        "soak {name}: {}\n",
        if passed { "PASS" } else { "FAIL" }
    ));
    drop(agent);
    Summary {
        runtime: name,
        passed,
        text,
    }
}
