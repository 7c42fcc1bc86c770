//! The churning cluster: peer agent processes on loopback that join the agent under test
//! and leave it, over and over, each slot under the same node name and LAN gossip port (as
//! a restarted node would come back). The agent keys members by address, so a fresh port
//! per restart would leave a stale `left` record of the name behind for 24 h each time;
//! with a fixed port per slot its member list must stay at 1 + `--peers` entries, and that
//! is checked on every poll.
//!
//! Real processes rather than in-process simulated peers, because the point is the agent
//! under test's memory and streams under real gossip: its foca member table, suspicion
//! timers and broadcasts see real datagrams, real timeouts and real restarts. A cycle of
//! peer `peer-N`:
//! 1. start a fresh peer process (smol and mio alternately);
//! 2. join: the peer joins the agent under test over the RPC, or (every other cycle) the
//!    agent under test joins the peer; wait until `members-lan` on the agent under test
//!    shows the peer `alive` (the agent emits `member-join`);
//! 3. stay 1–5 s;
//! 4. leave: mostly a graceful RPC `leave` on the peer (wait until it shows `left`, never
//!    `failed`: `member-leave`; the peer must exit 0); every third cycle `kill -9` instead
//!    (wait for `failed`: `member-failed`), then at once `force-leave` on the agent under
//!    test (wait for `left`: `member-leave`).
//!
//! Each change is logged with when it was set off and when it showed, for the streams'
//! accounting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_core::Config;
use tandem_tests::driver::process::Runtime;

use crate::agent::Agent;
use crate::client::{Rpc, V, map, str_field};
use crate::ctx::{CONVERGE, ChurnEvent, Ctx, Rng, add};

type R<T> = Result<T, String>;

/// Runs peer `p`'s cycles until the load stops.
pub fn peer(ctx: &Arc<Ctx>, p: usize) {
    let name = format!("peer-{p}");
    let mut rng = Rng::new(ctx.plan.seed, 500 + p as u64);
    let mut cycle = 0u64;
    let port = match free_udp_port() {
        Ok(p) => p,
        Err(e) => return ctx.fail(format!("{name}: {e}")),
    };
    // Spread the peers' first joins.
    ctx.sleep(Duration::from_millis(300 * p as u64));
    while !ctx.stopping() {
        cycle += 1;
        match one_cycle(ctx, &name, port, p as u64 + cycle, cycle, &mut rng) {
            Ok(()) => {}
            Err(_) if ctx.stopping() => {}
            Err(e) => {
                ctx.fail(format!("{name}, cycle {cycle}: {e}"));
                ctx.sleep(Duration::from_secs(1));
            }
        }
    }
}

fn one_cycle(ctx: &Ctx, name: &str, port: u16, flavour: u64, cycle: u64, rng: &mut Rng) -> R<()> {
    let runtime = if flavour.is_multiple_of(2) {
        Runtime::Smol
    } else {
        Runtime::Mio
    };
    let config = Config {
        node_name: name.to_string(),
        ..Config::default()
    };
    let mut peer = Agent::start(&ctx.bins, runtime, &config, port)?;
    let mut agent = Rpc::connect(ctx.rpc)?;
    let start = Instant::now();
    if cycle.is_multiple_of(2) {
        join(&mut agent, peer.lan)?;
    } else {
        join(&mut Rpc::connect(peer.rpc)?, ctx.lan)?;
    }
    let seen = wait_status(ctx, &mut agent, (name, port), "alive", None)?;
    log(ctx, name, "member-join", start, seen);
    add(&ctx.n.joins, 1);
    if !ctx.sleep(Duration::from_millis(rng.range(1_000, 5_000))) {
        return Ok(());
    }
    if !cycle.is_multiple_of(3) {
        let start = Instant::now();
        Rpc::connect(peer.rpc)?.call("leave", None, false, "leave")?;
        let seen = wait_status(ctx, &mut agent, (name, port), "left", Some("failed"))?;
        log(ctx, name, "member-leave", start, seen);
        match peer.wait_exit(Duration::from_secs(10)) {
            Some(st) if st.success() => {}
            other => {
                return Err(format!(
                    "{name} ({}) did not exit 0 after its leave: {other:?}\n{}",
                    runtime.name(),
                    peer.stderr_tail(20)
                ));
            }
        }
        add(&ctx.n.graceful_leaves, 1);
    } else {
        let start = Instant::now();
        peer.kill9();
        let seen = wait_status(ctx, &mut agent, (name, port), "failed", None)?;
        log(ctx, name, "member-failed", start, seen);
        add(&ctx.n.kills, 1);
        // `members-lan` shows `failed` only once `member-failed` was emitted, so a
        // `force-leave` right away must still leave both events in the stream.
        let start = Instant::now();
        let node = map(&[("Node", name.into())]);
        agent.call("force-leave", Some(&node), false, "force-leave")?;
        let seen = wait_status(ctx, &mut agent, (name, port), "left", None)?;
        log(ctx, name, "member-leave", start, seen);
        add(&ctx.n.force_leaves, 1);
    }
    add(&ctx.n.churn_cycles, 1);
    Ok(())
}

fn log(ctx: &Ctx, name: &str, kind: &'static str, start: Instant, seen: Instant) {
    ctx.churn.lock().unwrap().push(ChurnEvent {
        name: name.to_string(),
        kind,
        start,
        seen,
    });
}

/// RPC `join` through `to`'s LAN gossip address: one node contacted.
fn join(rpc: &mut Rpc, to: std::net::SocketAddr) -> R<()> {
    let body = map(&[
        ("Existing", V::A(vec![to.to_string().as_str().into()])),
        ("WAN", V::Bool(false)),
    ]);
    let r = rpc
        .call("join", Some(&body), true, "join")?
        .expect("a body");
    match r.try_get("Num") {
        Some(V::U(1)) => Ok(()),
        _ => Err(format!("join {to} answered {r:?}")),
    }
}

/// Polls `members-lan` on the agent under test until `name` shows `want`; fails at once if
/// it shows `never`.
fn wait_status(
    ctx: &Ctx,
    agent: &mut Rpc,
    (name, port): (&str, u16),
    want: &str,
    never: Option<&str>,
) -> R<Instant> {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let m = agent
            .call("members-lan", None, true, "members-lan")?
            .expect("a body");
        let Some(V::A(ms)) = m.try_get("Members") else {
            return Err(format!("members-lan answered {m:?}"));
        };
        if ms.len() > 1 + ctx.plan.peers {
            let names: Vec<String> = ms
                .iter()
                .map(|m| {
                    let port = match m.try_get("Port") {
                        Some(V::U(p)) => *p,
                        _ => 0,
                    };
                    format!(
                        "{}@{port}={}",
                        str_field(m, "Name").unwrap_or("?"),
                        str_field(m, "Status").unwrap_or("?")
                    )
                })
                .collect();
            return Err(format!(
                "the member list grew to {} entries: {}",
                ms.len(),
                names.join(" ")
            ));
        }
        let status = ms
            .iter()
            .find(|m| {
                str_field(m, "Name") == Some(name)
                    && matches!(m.try_get("Port"), Some(V::U(p)) if *p == u64::from(port))
            })
            .and_then(|m| str_field(m, "Status"))
            .map(str::to_string);
        add(&ctx.n.rpc_members, 1);
        if status.as_deref() == Some(want) {
            return Ok(Instant::now());
        }
        if never.is_some() && status.as_deref() == never {
            return Err(format!(
                "{name} showed {status:?} while waiting for {want:?}"
            ));
        }
        if ctx.stopping() {
            return Err("stopped".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} still {status:?}, not {want:?}, after {CONVERGE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A UDP port free on 127.0.0.1 right now, kept by the slot for all its peers.
fn free_udp_port() -> R<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(s.local_addr()
        .map_err(|e| format!("local_addr: {e}"))?
        .port())
}
