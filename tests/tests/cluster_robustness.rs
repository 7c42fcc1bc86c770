//! The whole membership story under loss: for many seeds and 0 %, 10 % and 30 % loss, a
//! 10-node cluster converges, sees a killed node failed and a leaving node left (never
//! failed), delivers a user event exactly once everywhere and spreads a tag change. Lossy
//! broadcasts are repaired by the anti-entropy pulls; these runs pin that they are.

use std::net::SocketAddr;
use std::time::Duration;

use tandem_core::cluster::{ClusterEvent, MemberEvent, MemberStatus, Pool};
use tandem_tests::netsim::{
    NetConfig, all_see, cluster_net, converged, join_all, lan_addr, node_name,
};

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

// ----- forged gossip --------------------------------------------------------------------

/// A FOCA frame as a stranger at `from` would forge it: foca's `Gossip` message from
/// `from` to `to`, carrying one member update about `about` (identity bump 0) in `state`
/// (0 alive, 1 suspect, 2 down). 40 bytes.
fn forged(from: SocketAddr, to: SocketAddr, about: SocketAddr, state: u8) -> Vec<u8> {
    fn id(out: &mut Vec<u8>, a: SocketAddr) {
        let SocketAddr::V4(a) = a else {
            unreachable!("the simulation is IPv4")
        };
        out.push(4);
        out.extend(a.ip().octets());
        out.extend(a.port().to_be_bytes());
        out.extend(0u16.to_be_bytes());
    }
    let mut d = vec![0x01, 0, 0, 0, 1];
    id(&mut d, from);
    d.extend(0u16.to_be_bytes()); // incarnation
    id(&mut d, to);
    d.push(8); // Gossip
    d.extend(1u16.to_be_bytes());
    id(&mut d, about);
    d.extend(0u16.to_be_bytes());
    d.push(state);
    d
}

/// Member events of `kind` about `name`, on every node.
fn events_about(
    sim: &tandem_tests::netsim::Net<tandem_core::cluster::Cluster>,
    kind: MemberEvent,
    name: &str,
) -> usize {
    let about = |e: &&ClusterEvent| matches!(e, ClusterEvent::Member { kind: k, members, .. } if *k == kind && members[0].name == name);
    (0..sim.len())
        .map(|i| sim.events(i).iter().filter(about).count())
        .sum()
}

#[test]
fn a_strangers_claim_that_a_member_is_down_or_suspect_counts_for_nothing() {
    let mut sim = cluster_net(3, NetConfig::default(), 60, |_, _| {});
    join_all(&mut sim, 0);
    sim.run_until_cond(secs(20), TICK, |s| converged(s, Pool::Lan))
        .expect("converged");
    let stranger: SocketAddr = "10.99.0.66:8301".parse().unwrap();
    for (i, state) in [(1, 2u8), (2, 1u8), (0, 2u8)] {
        // Node 0 is told about itself: it must not renew its identity over it either.
        let d = forged(stranger, lan_addr(i), lan_addr(0), state);
        assert_eq!(d.len(), 40);
        sim.with(i, |c, now| c.handle_datagram(Pool::Lan, stranger, &d, now));
    }
    let updates = events_about(&sim, MemberEvent::Update, &node_name(0));
    sim.run_for(secs(20));
    assert!(all_see(&sim, Pool::Lan, 0, MemberStatus::Alive));
    assert_eq!(events_about(&sim, MemberEvent::Failed, &node_name(0)), 0);
    // Not even renewed: a member declared down must come back under a new identity,
    // which everyone sees as a `member-update`.
    assert_eq!(
        events_about(&sim, MemberEvent::Update, &node_name(0)),
        updates,
        "node 0 was declared down and renewed"
    );
    for i in 0..3 {
        assert_eq!(sim.node(i).stats().stranger_claims, 1, "node {i}");
        // Nobody shows the stranger, who never said who it is.
        assert_eq!(sim.node(i).member_status(Pool::Lan, stranger), None);
    }
    // Members' own word still counts: a real failure is detected as before.
    sim.kill(0);
    sim.run_until_cond(secs(30), TICK, |s| {
        all_see(s, Pool::Lan, 0, MemberStatus::Failed)
    })
    .expect("a killed member is failed");
}

#[test]
fn with_encryption_a_strangers_forged_datagram_does_not_even_open() {
    let mut sim = cluster_net(2, NetConfig::default(), 61, |_, c| {
        c.keyring = tandem_core::cluster::Keyring::new(
            tandem_core::cluster::GossipKey::new(&[9; 32]).unwrap(),
            [],
        );
    });
    join_all(&mut sim, 0);
    sim.run_until_cond(secs(20), TICK, |s| converged(s, Pool::Lan))
        .expect("converged");
    let stranger: SocketAddr = "10.99.0.66:8301".parse().unwrap();
    let before = sim.node(1).stats().decrypt_failures;
    let d = forged(stranger, lan_addr(1), lan_addr(0), 2);
    sim.with(1, |c, now| c.handle_datagram(Pool::Lan, stranger, &d, now));
    sim.run_for(secs(10));
    assert_eq!(sim.node(1).stats().decrypt_failures, before + 1);
    assert_eq!(sim.node(1).stats().stranger_claims, 0, "never reached foca");
    assert!(all_see(&sim, Pool::Lan, 0, MemberStatus::Alive));
}
