//! The whole membership story under loss: for many seeds and 0 %, 10 % and 30 % loss, a
//! 10-node cluster converges, sees a killed node failed and a leaving node left (never
//! failed), delivers a user event exactly once everywhere and spreads a tag change. Lossy
//! broadcasts are repaired by the anti-entropy pulls; these runs pin that they are.

use std::time::Duration;

use tandem_core::cluster::{ClusterEvent, MemberStatus, Pool};
use tandem_tests::netsim::{NetConfig, all_see, cluster_net, converged, join_all, node_name};

const TICK: Duration = Duration::from_millis(100);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Virtual seconds each phase took.
#[derive(Debug)]
struct Phases {
    converge: Duration,
    failed: Duration,
    left: Duration,
}

fn story(seed: u64, loss: f64) -> Result<Phases, String> {
    let net = NetConfig {
        seed,
        loss,
        latency: (Duration::from_millis(1), Duration::from_millis(20)),
        ..NetConfig::default()
    };
    let mut sim = cluster_net(10, net, seed, |_, _| {});
    join_all(&mut sim, 0);
    let converge = sim
        .run_until_cond(secs(120), TICK, |s| converged(s, Pool::Lan))
        .ok_or("no convergence")?;
    sim.with(2, |c, now| c.user_event("ev", b"x", false, now))
        .map_err(|e| e.to_string())?;
    sim.with(3, |c, now| {
        c.set_tags(&[("k".into(), "v".into())], &[], now)
    })
    .map_err(|e| e.to_string())?;
    sim.kill(9);
    let failed = sim
        .run_until_cond(secs(60), TICK, |s| {
            all_see(s, Pool::Lan, 9, MemberStatus::Failed)
        })
        .ok_or("killed node not failed everywhere")?;
    sim.with(8, |c, now| c.leave(now));
    sim.run_until_cond(secs(5), TICK, |s| s.node(8).ready_to_shutdown())
        .ok_or("leave never completed")?;
    sim.kill(8);
    let left = sim
        .run_until_cond(secs(60), TICK, |s| {
            all_see(s, Pool::Lan, 8, MemberStatus::Left)
        })
        .ok_or("leaving node not left everywhere")?;
    let name3 = node_name(3);
    sim.run_until_cond(secs(60), TICK, |s| {
        (0..8).all(|i| {
            s.node(i)
                .members(Pool::Lan)
                .iter()
                .any(|m| m.name == name3 && m.tags.get("k").is_some_and(|v| v == "v"))
        })
    })
    .ok_or("tag change did not spread")?;
    let users = |s: &tandem_tests::netsim::Net<_>, i| {
        s.events(i)
            .iter()
            .filter(|e| matches!(e, ClusterEvent::User(_)))
            .count()
    };
    sim.run_until_cond(secs(60), TICK, |s| (0..8).all(|i| users(s, i) >= 1))
        .ok_or("user event did not reach everyone")?;
    if let Some(i) = (0..8).find(|&i| users(&sim, i) != 1) {
        return Err(format!("node {i} got {} user events", users(&sim, i)));
    }
    for i in 0..8 {
        let failed_events = sim
            .events(i)
            .iter()
            .filter(|e| {
                matches!(e, ClusterEvent::Member { kind, members, .. }
                if *kind == tandem_core::cluster::MemberEvent::Failed
                    && members[0].name == node_name(8))
            })
            .count();
        if loss == 0.0 && failed_events > 0 {
            return Err(format!("node {i} saw the leaving node fail"));
        }
    }
    Ok(Phases {
        converge,
        failed,
        left,
    })
}

/// Runs the story for each seed; every phase must end within `bound`.
fn run(loss: f64, seeds: std::ops::Range<u64>, bound: Phases) {
    let mut bad = Vec::new();
    for seed in seeds {
        match story(seed, loss) {
            Ok(p)
                if p.converge <= bound.converge
                    && p.failed <= bound.failed
                    && p.left <= bound.left => {}
            Ok(p) => bad.push(format!("seed {seed}: too slow: {p:?}")),
            Err(e) => bad.push(format!("seed {seed}: {e}")),
        }
    }
    assert!(bad.is_empty(), "loss {loss}: {bad:#?}");
}

#[test]
fn no_loss() {
    let bound = Phases {
        converge: secs(3),
        failed: secs(10),
        left: secs(2),
    };
    run(0.0, 0..12, bound);
}

#[test]
fn ten_percent_loss() {
    let bound = Phases {
        converge: secs(20),
        failed: secs(15),
        left: secs(10),
    };
    run(0.1, 100..112, bound);
}

#[test]
fn thirty_percent_loss() {
    let bound = Phases {
        converge: secs(60),
        failed: secs(40),
        left: secs(40),
    };
    run(0.3, 300..312, bound);
}
