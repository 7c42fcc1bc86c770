//! Cluster membership on the simulated network: joins converge, failures are detected,
//! leaves show `left`, force-leave and prune, reaping, restarts, partitions heal, user
//! events and tag updates reach everyone, and a run is a pure function of its seed.

use std::net::SocketAddr;
use std::time::Duration;

use tandem_core::cluster::{
    Cluster, ClusterConfig, ClusterError, ClusterEvent, MemberEvent, MemberStatus, Pool, PoolTiming,
};
use tandem_tests::netsim::{
    self, NetConfig, all_see, cluster_config, cluster_net, converged, join_all, lan_addr, none_see,
    wan_addr,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const TICK: Duration = Duration::from_millis(100);

/// Member events node `i` saw about node `about`, as (kind, status).
fn member_events(
    sim: &netsim::Net<Cluster>,
    i: usize,
    about: usize,
) -> Vec<(MemberEvent, MemberStatus)> {
    let name = netsim::node_name(about);
    sim.events(i)
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Member {
                kind,
                pool: Pool::Lan,
                members,
            } if members[0].name == name => Some((*kind, members[0].status)),
            _ => None,
        })
        .collect()
}

fn converged_net(
    n: usize,
    seed: u64,
    tweak: impl Fn(usize, &mut ClusterConfig),
) -> netsim::Net<Cluster> {
    let mut sim = cluster_net(n, NetConfig::default(), seed, tweak);
    join_all(&mut sim, 0);
    sim.run_until_cond(secs(60), TICK, |s| converged(s, Pool::Lan))
        .expect("cluster converges");
    sim
}

/// Node `i` leaves gracefully and stops once its leave has spread; every node shows it
/// `left`.
fn leave_and_stop(sim: &mut netsim::Net<Cluster>, i: usize) {
    sim.with(i, |c, now| c.leave(now));
    sim.run_until_cond(secs(10), TICK, |s| s.node(i).ready_to_shutdown())
        .expect("ready to shut down");
    sim.kill(i);
    sim.run_until_cond(secs(10), TICK, |s| {
        all_see(s, Pool::Lan, i, MemberStatus::Left)
    })
    .expect("left everywhere");
}

#[test]
fn three_nodes_converge_after_joins() {
    let mut sim = cluster_net(3, NetConfig::default(), 7, |_, _| {});
    join_all(&mut sim, 0);
    let took = sim
        .run_until_cond(secs(30), TICK, |s| converged(s, Pool::Lan))
        .expect("3 nodes converge");
    assert!(took <= secs(2), "took {took:?}");
    for i in 0..3 {
        let members = sim.node(i).members(Pool::Lan);
        assert_eq!(members.len(), 3);
        for (j, m) in members.iter().enumerate() {
            assert_eq!(m.name, netsim::node_name(j));
            assert_eq!(m.status, MemberStatus::Alive);
            assert_eq!((m.addr, m.port), (lan_addr(j).ip(), 8301));
            assert_eq!(m.tags["role"], "node");
            assert_eq!(m.tags["dc"], "dc1");
            assert_eq!(m.tags["build"], "0.1.0:sim");
            assert_eq!(m.tags["vsn"], "2");
            assert_eq!(m.tags["index"], j.to_string());
            let fixed = [m.protocol_min, m.protocol_max, m.protocol_cur];
            assert_eq!(fixed, [1, 5, 2]);
            let delegate = [m.delegate_min, m.delegate_max, m.delegate_cur];
            assert_eq!(delegate, [2, 5, 5]);
        }
        // Each node announced itself first, then one join per peer.
        let joins = |about| member_events(&sim, i, about);
        for j in 0..3 {
            assert_eq!(
                joins(j),
                [(MemberEvent::Join, MemberStatus::Alive)],
                "{i} about {j}"
            );
        }
    }
}

#[test]
fn fifty_nodes_converge_after_joins() {
    let mut sim = cluster_net(50, NetConfig::default(), 11, |_, _| {});
    join_all(&mut sim, 0);
    let took = sim
        .run_until_cond(secs(120), TICK, |s| converged(s, Pool::Lan))
        .expect("50 nodes converge");
    assert!(took <= secs(15), "took {took:?}");
}

#[test]
fn joins_report_how_many_addresses_answered() {
    let mut sim = cluster_net(3, NetConfig::default(), 3, |_, _| {});
    let nowhere = "127.0.0.1:9".parse().unwrap();
    let partial = sim
        .with(1, |c, now| c.join(Pool::Lan, &[nowhere, lan_addr(0)], now))
        .unwrap();
    let failed = sim
        .with(2, |c, now| c.join(Pool::Lan, &[nowhere], now))
        .unwrap();
    let empty = sim.with(2, |c, now| c.join(Pool::Lan, &[], now)).unwrap();
    let e = sim
        .with(2, |c, _| c.poll_join())
        .expect("an empty join ends at once");
    assert_eq!((e.id, e.joined, e.error), (empty, 0, None));
    sim.run_for(secs(6));
    let p = sim
        .with(1, |c, _| c.poll_join())
        .expect("partial join ended");
    assert_eq!(
        (p.id, p.pool, p.joined, p.error),
        (partial, Pool::Lan, 1, None)
    );
    let f = sim
        .with(2, |c, _| c.poll_join())
        .expect("failed join ended");
    assert_eq!((f.id, f.joined), (failed, 0));
    assert_eq!(
        f.error.unwrap().to_string(),
        "1 error occurred:\n\t* Failed to join 127.0.0.1:9: no response (if its gossip is encrypted, this agent needs the key)\n\n"
    );
    let wan = sim.with(1, |c, now| c.join(Pool::Wan, &[wan_addr(0)], now));
    assert_eq!(wan, Err(ClusterError::NotServer));
    assert_eq!(
        ClusterError::NotServer.to_string(),
        "Must be a server to join WAN cluster"
    );
}

#[test]
fn a_join_answered_by_every_address_ends_before_the_timeout() {
    let mut sim = cluster_net(2, NetConfig::default(), 5, |_, _| {});
    let id = sim
        .with(1, |c, now| c.join(Pool::Lan, &[lan_addr(0)], now))
        .unwrap();
    sim.run_for(Duration::from_millis(50));
    let done = sim.with(1, |c, _| c.poll_join()).expect("answered quickly");
    assert_eq!((done.id, done.joined, done.error), (id, 1, None));
}

#[test]
fn a_killed_node_is_failed_everywhere_within_the_suspicion_timeout() {
    let mut sim = converged_net(5, 21, |_, _| {});
    let timing = PoolTiming::lan();
    let suspicion = timing.suspicion_timeout(5);
    sim.kill(4);
    // Detection: a probe period until someone probes it, one to declare it suspect, then
    // the suspicion timeout, then dissemination.
    let bound = suspicion + timing.probe_period * 3;
    let took = sim
        .run_until_cond(secs(60), TICK, |s| {
            all_see(s, Pool::Lan, 4, MemberStatus::Failed)
        })
        .expect("failed everywhere");
    assert!(took <= bound, "took {took:?}, bound {bound:?}");
    // `member-failed` waits up to half a pull interval for a leave record that may be on
    // its way, and `members` shows `failed` only with it: no wait is needed here.
    for i in 0..4 {
        let evs = member_events(&sim, i, 4);
        assert_eq!(
            evs.last(),
            Some(&(MemberEvent::Failed, MemberStatus::Failed))
        );
        assert_eq!(sim.node(i).status_counts(Pool::Lan).failed, 1);
    }
}

#[test]
fn members_shows_what_the_last_member_event_announced_throughout_a_life() {
    // Checked every 10 ms through a kill, the failure, a restart under a new identity, the
    // rejoin and a graceful leave: at every check, each node lists node 4 with the status
    // its last member event about node 4 carried (while peers are asked whether it left,
    // it is still `alive` in both; a new life is `alive` in both once `member-join` fires).
    let mut sim = converged_net(5, 23, |_, _| {});
    let agree = |s: &netsim::Net<Cluster>| {
        for i in 0..4 {
            let shown = s.node(i).member_status(Pool::Lan, lan_addr(4));
            let announced = member_events(s, i, 4).last().map(|e| e.1);
            // Serf has no event for `leaving`: it shows after the `member-join`.
            let leaving =
                shown == Some(MemberStatus::Leaving) && announced == Some(MemberStatus::Alive);
            assert!(
                shown == announced || leaving,
                "node {i}: {shown:?} {announced:?}"
            );
        }
    };
    let ms10 = Duration::from_millis(10);
    sim.kill(4);
    sim.run_until_cond(secs(60), ms10, |s| {
        agree(s);
        all_see(s, Pool::Lan, 4, MemberStatus::Failed)
    })
    .expect("failed everywhere");
    let now = sim.now;
    sim.restart(4, Cluster::new(cluster_config(4), 4242, now));
    sim.with(4, |c, now| c.join(Pool::Lan, &[lan_addr(0)], now))
        .unwrap();
    sim.run_until_cond(secs(60), ms10, |s| {
        agree(s);
        all_see(s, Pool::Lan, 4, MemberStatus::Alive)
    })
    .expect("rejoined everywhere");
    sim.with(4, |c, now| c.leave(now));
    sim.run_until_cond(secs(60), ms10, |s| {
        agree(s);
        all_see(s, Pool::Lan, 4, MemberStatus::Leaving)
    })
    .expect("leaving everywhere");
    sim.run_until_cond(secs(10), ms10, |s| s.node(4).ready_to_shutdown())
        .expect("ready to shut down");
    sim.kill(4);
    sim.run_until_cond(secs(60), ms10, |s| {
        agree(s);
        all_see(s, Pool::Lan, 4, MemberStatus::Left)
    })
    .expect("left everywhere");
    for i in 0..4 {
        let kinds: Vec<MemberEvent> = member_events(&sim, i, 4).iter().map(|e| e.0).collect();
        assert_eq!(
            kinds,
            [
                MemberEvent::Join,
                MemberEvent::Failed,
                MemberEvent::Join,
                MemberEvent::Leave
            ],
            "node {i}"
        );
    }
}

#[test]
fn a_leave_shows_left_everywhere_not_failed() {
    let mut sim = converged_net(5, 31, |_, _| {});
    sim.with(3, |c, now| c.leave(now));
    assert!(sim.node(3).is_leaving());
    sim.run_for(Duration::from_millis(300));
    assert!(
        all_see(&sim, Pool::Lan, 3, MemberStatus::Leaving),
        "peers show leaving while the leave propagates"
    );
    let took = sim
        .run_until_cond(secs(10), TICK, |s| s.node(3).ready_to_shutdown())
        .unwrap();
    assert!(
        took <= secs(1),
        "ready after the propagation delay: {took:?}"
    );
    sim.kill(3);
    sim.run_until_cond(secs(10), TICK, |s| {
        all_see(s, Pool::Lan, 3, MemberStatus::Left)
    })
    .expect("left everywhere");
    // And it stays left, never failed.
    sim.run_for(secs(30));
    assert!(all_see(&sim, Pool::Lan, 3, MemberStatus::Left));
    for i in [0, 1, 2, 4] {
        let evs = member_events(&sim, i, 3);
        assert_eq!(
            evs,
            [
                (MemberEvent::Join, MemberStatus::Alive),
                (MemberEvent::Leave, MemberStatus::Left)
            ],
            "node {i}"
        );
    }
    let own = member_events(&sim, 3, 3);
    assert_eq!(own.last(), Some(&(MemberEvent::Leave, MemberStatus::Left)));
}

#[test]
fn force_leave_turns_a_failed_node_left_and_prune_removes_it() {
    let mut sim = converged_net(4, 41, |_, _| {});
    sim.kill(3);
    sim.run_until_cond(secs(60), TICK, |s| {
        all_see(s, Pool::Lan, 3, MemberStatus::Failed)
    })
    .expect("failed");
    // Unknown names and live nodes are no error and change nothing.
    sim.with(0, |c, now| c.force_leave("nosuch", false, now))
        .unwrap();
    sim.with(0, |c, now| c.force_leave("node-1", false, now))
        .unwrap();
    sim.with(0, |c, now| c.force_leave("node-3", false, now))
        .unwrap();
    assert_eq!(
        sim.node(0).member_status(Pool::Lan, lan_addr(3)),
        Some(MemberStatus::Left)
    );
    sim.run_until_cond(secs(10), TICK, |s| {
        all_see(s, Pool::Lan, 3, MemberStatus::Left)
    })
    .expect("left everywhere");
    assert!(all_see(&sim, Pool::Lan, 1, MemberStatus::Alive));
    for i in 0..3 {
        let evs = member_events(&sim, i, 3);
        assert_eq!(
            evs.last(),
            Some(&(MemberEvent::Leave, MemberStatus::Left)),
            "node {i}"
        );
    }
    sim.with(1, |c, now| c.force_leave("node-3", true, now))
        .unwrap();
    sim.run_until_cond(secs(10), TICK, |s| none_see(s, Pool::Lan, 3))
        .expect("pruned everywhere");
    for i in 0..3 {
        let evs = member_events(&sim, i, 3);
        assert_eq!(
            evs.last(),
            Some(&(MemberEvent::Reap, MemberStatus::Left)),
            "node {i}"
        );
        assert_eq!(sim.node(i).members(Pool::Lan).len(), 3);
    }
    // Pruned stays pruned.
    sim.run_for(secs(60));
    assert!(none_see(&sim, Pool::Lan, 3));
}

#[test]
fn failed_members_are_reaped_after_the_reap_timeout() {
    let mut sim = converged_net(4, 51, |_, c| c.reap_after = secs(30));
    sim.kill(2);
    sim.run_until_cond(secs(60), TICK, |s| {
        all_see(s, Pool::Lan, 2, MemberStatus::Failed)
    })
    .expect("failed");
    let took = sim
        .run_until_cond(secs(60), TICK, |s| none_see(s, Pool::Lan, 2))
        .expect("reaped");
    assert!(took <= secs(31), "took {took:?}");
    for i in [0, 1, 3] {
        let evs = member_events(&sim, i, 2);
        assert_eq!(evs.last(), Some(&(MemberEvent::Reap, MemberStatus::Failed)));
    }
}

#[test]
fn a_restarted_node_at_the_same_address_rejoins() {
    let mut sim = converged_net(4, 61, |_, _| {});
    sim.kill(2);
    sim.run_until_cond(secs(60), TICK, |s| {
        all_see(s, Pool::Lan, 2, MemberStatus::Failed)
    })
    .expect("failed");
    sim.run_for(secs(2));
    let mut cfg = cluster_config(2);
    cfg.tags.insert("restarted".into(), "yes".into());
    let now = sim.now;
    sim.restart(2, Cluster::new(cfg, 999, now));
    sim.with(2, |c, now| c.join(Pool::Lan, &[lan_addr(0)], now))
        .unwrap();
    let took = sim
        .run_until_cond(secs(60), TICK, |s| converged(s, Pool::Lan))
        .expect("rejoined");
    assert!(took <= secs(10), "took {took:?}");
    for i in [0, 1, 3] {
        let m = sim.node(i).members(Pool::Lan);
        assert_eq!(
            m[2].tags.get("restarted").map(String::as_str),
            Some("yes"),
            "node {i}"
        );
        let evs = member_events(&sim, i, 2);
        let kinds: Vec<MemberEvent> = evs.iter().map(|e| e.0).collect();
        assert_eq!(
            kinds,
            [MemberEvent::Join, MemberEvent::Failed, MemberEvent::Join],
            "node {i}"
        );
    }
}

#[test]
fn a_node_back_at_a_new_address_replaces_its_old_entry() {
    // Serf keeps one member per name: node 3 leaves, then comes back as `node-3` on another
    // port (a restart with an ephemeral port). Everyone lists it once, alive at the new
    // address; its old entry goes without an event.
    let mut sim = converged_net(4, 65, |_, _| {});
    leave_and_stop(&mut sim, 3);
    let new_addr = SocketAddr::new(lan_addr(3).ip(), 18301);
    let mut cfg = cluster_config(3);
    cfg.lan_addr = new_addr;
    let now = sim.now;
    let back = sim.add(Cluster::new(cfg, 777, now), new_addr, None);
    sim.with(back, |c, now| c.join(Pool::Lan, &[lan_addr(0)], now))
        .unwrap();
    let name = netsim::node_name(3);
    let listed = |s: &netsim::Net<Cluster>, i: usize| -> Vec<(SocketAddr, MemberStatus)> {
        s.node(i)
            .members(Pool::Lan)
            .into_iter()
            .filter(|m| m.name == name)
            .map(|m| (SocketAddr::new(m.addr, m.port), m.status))
            .collect()
    };
    sim.run_until_cond(secs(30), TICK, |s| {
        (0..3).all(|i| listed(s, i) == [(new_addr, MemberStatus::Alive)])
    })
    .expect("listed once, alive at the new address, everywhere");
    for i in 0..3 {
        assert_eq!(sim.node(i).members(Pool::Lan).len(), 4, "node {i}");
        let kinds: Vec<MemberEvent> = member_events(&sim, i, 3).iter().map(|e| e.0).collect();
        assert_eq!(
            kinds,
            [MemberEvent::Join, MemberEvent::Leave, MemberEvent::Join],
            "node {i}"
        );
    }
    // The old address does not come back by itself either.
    sim.run_for(secs(60));
    for i in 0..3 {
        assert_eq!(
            listed(&sim, i),
            [(new_addr, MemberStatus::Alive)],
            "node {i}"
        );
    }
}

#[test]
fn a_partition_heals() {
    let mut sim = converged_net(6, 71, |_, _| {});
    sim.partition(&[&[0, 1, 2], &[3, 4, 5]]);
    let split = |s: &netsim::Net<Cluster>| {
        (0..6).all(|a| {
            (0..6).all(|b| {
                let want = if (a < 3) == (b < 3) {
                    MemberStatus::Alive
                } else {
                    MemberStatus::Failed
                };
                s.node(a).member_status(Pool::Lan, lan_addr(b)) == Some(want)
            })
        })
    };
    sim.run_until_cond(secs(60), TICK, split)
        .expect("each side sees the other failed");
    // Long enough that nothing from before the split is still in flight.
    sim.run_for(secs(30));
    assert!(split(&sim));
    sim.heal();
    let took = sim
        .run_until_cond(secs(300), TICK, |s| converged(s, Pool::Lan))
        .expect("healed");
    // Healing waits for a periodic announce to a failed member (every 65 s).
    assert!(took <= secs(75), "healed in {took:?}");
}

#[test]
fn user_events_reach_every_node_once() {
    let mut sim = converged_net(8, 81, |_, _| {});
    sim.with(2, |c, now| c.user_event("deploy", b"v1.2.3", false, now))
        .unwrap();
    sim.with(5, |c, now| c.user_event("restart", b"", false, now))
        .unwrap();
    let too_big = sim.with(5, |c, now| c.user_event("x", &[0; 512], false, now));
    assert_eq!(too_big, Err(ClusterError::UserEventTooLarge));
    assert_eq!(
        ClusterError::UserEventTooLarge.to_string(),
        "user event exceeds configured limit of 512 bytes before encoding"
    );
    sim.run_for(secs(20));
    for i in 0..8 {
        let users: Vec<_> = sim
            .events(i)
            .iter()
            .filter_map(|e| match e {
                ClusterEvent::User(u) => Some((u.name.as_str(), u.payload.as_slice())),
                _ => None,
            })
            .collect();
        let mut sorted = users.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [("deploy", &b"v1.2.3"[..]), ("restart", &b""[..])],
            "node {i}"
        );
    }
}

#[test]
fn tag_updates_reach_peers_as_member_update() {
    let mut sim = converged_net(6, 91, |_, _| {});
    sim.with(4, |c, now| {
        c.set_tags(&[("web".into(), "yes".into())], &["index".into()], now)
    })
    .unwrap();
    let too_big = sim.with(4, |c, now| {
        c.set_tags(
            &[("k".into(), "v".repeat(255)), ("l".into(), "v".repeat(255))],
            &[],
            now,
        )
    });
    assert_eq!(too_big, Err(ClusterError::TagsTooLarge));
    sim.run_until_cond(secs(20), TICK, |s| {
        (0..6).all(|i| {
            let m = &s.node(i).members(Pool::Lan)[4];
            m.tags.contains_key("web") && !m.tags.contains_key("index")
        })
    })
    .expect("tags propagate");
    for i in 0..6 {
        let evs = member_events(&sim, i, 4);
        assert_eq!(
            evs.last(),
            Some(&(MemberEvent::Update, MemberStatus::Alive)),
            "node {i}"
        );
    }
}

#[test]
fn servers_form_a_wan_pool_with_dc_qualified_names() {
    let mut sim = cluster_net(3, NetConfig::default(), 101, |i, c| {
        c.server = true;
        c.datacenter = if i == 2 { "dc2".into() } else { "dc1".into() };
    });
    for i in 1..3 {
        sim.with(i, |c, now| c.join(Pool::Wan, &[wan_addr(0)], now))
            .unwrap();
    }
    sim.run_until_cond(secs(60), TICK, |s| converged(s, Pool::Wan))
        .expect("WAN converges");
    let names: Vec<String> = sim
        .node(1)
        .members(Pool::Wan)
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["node-0.dc1", "node-1.dc1", "node-2.dc2"]);
    assert_eq!(sim.node(0).members(Pool::Wan)[2].tags["role"], "consul");
    // The LAN pools are still separate, single-node.
    assert_eq!(sim.node(1).members(Pool::Lan).len(), 1);
}

fn chaos_trace(seed: u64) -> (u64, u64) {
    let net = NetConfig {
        seed,
        latency: (Duration::from_millis(1), Duration::from_millis(30)),
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.1,
        reorder_delay: Duration::from_millis(50),
    };
    let mut sim = cluster_net(8, net, seed, |_, _| {});
    join_all(&mut sim, 0);
    sim.run_for(secs(10));
    sim.with(3, |c, now| c.user_event("e", b"p", false, now))
        .unwrap();
    sim.kill(5);
    sim.partition(&[&[0, 1], &[2, 3, 4, 6, 7]]);
    sim.run_for(secs(20));
    sim.heal();
    sim.run_for(secs(20));
    (sim.trace(), sim.stats.delivered)
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let a = chaos_trace(5);
    let b = chaos_trace(5);
    assert_eq!(a, b);
    let c = chaos_trace(6);
    assert_ne!(a.0, c.0);
}

#[test]
fn a_node_restarted_at_its_address_after_a_leave_leaves_again_as_left() {
    // A new life at the address of a node that left (a restart on the same port, bump 0
    // again) joins and then leaves gracefully: everyone shows it `left`, never `failed`.
    let mut sim = converged_net(4, 67, |_, _| {});
    for life in 0..4u64 {
        sim.with(3, |c, now| c.leave(now));
        sim.run_until_cond(secs(10), TICK, |s| s.node(3).ready_to_shutdown())
            .expect("ready");
        sim.kill(3);
        sim.run_until_cond(secs(10), Duration::from_millis(10), |s| {
            for i in 0..3 {
                assert_ne!(
                    s.node(i).member_status(Pool::Lan, lan_addr(3)),
                    Some(MemberStatus::Failed),
                    "life {life}, node {i}"
                );
            }
            all_see(s, Pool::Lan, 3, MemberStatus::Left)
        })
        .expect("left everywhere");
        for i in 0..3 {
            let last = member_events(&sim, i, 3).last().copied();
            assert_eq!(
                last,
                Some((MemberEvent::Leave, MemberStatus::Left)),
                "life {life}, node {i}"
            );
        }
        sim.run_for(Duration::from_millis(500));
        let now = sim.now;
        sim.restart(3, Cluster::new(cluster_config(3), 900 + life, now));
        let via = if life % 2 == 0 { 0 } else { 1 };
        sim.with(3, |c, now| c.join(Pool::Lan, &[lan_addr(via)], now))
            .unwrap();
        sim.run_until_cond(secs(30), TICK, |s| {
            all_see(s, Pool::Lan, 3, MemberStatus::Alive)
        })
        .expect("alive again");
        sim.run_for(secs(1 + life));
    }
    // Each life: one `member-join` (alive) and one `member-leave` (left), nothing else.
    let mut want = Vec::new();
    for _ in 0..4 {
        want.push((MemberEvent::Join, MemberStatus::Alive));
        want.push((MemberEvent::Leave, MemberStatus::Left));
    }
    want.push((MemberEvent::Join, MemberStatus::Alive));
    for i in 0..3 {
        assert_eq!(member_events(&sim, i, 3), want, "node {i}");
    }
}

#[test]
fn a_peer_restarted_at_its_address_again_and_again_leaves_no_timers_behind() {
    // Each life of a peer at one address that ends (a leave, or a kill noticed as failed)
    // makes foca ask for a `RemoveDown` of that identity 24 h later. foca keeps one member
    // per address, so the request of an earlier life can only find nothing to remove: the
    // queue must not hold one per life (the one-hour soak's slow RSS creep).
    let mut sim = converged_net(3, 67, |_, _| {});
    let mut counts = Vec::new();
    for life in 0..24u64 {
        if life % 3 == 2 {
            sim.kill(2);
            sim.run_until_cond(secs(30), TICK, |s| {
                s.node(0).member_status(Pool::Lan, lan_addr(2)) == Some(MemberStatus::Failed)
            })
            .expect("failed");
        } else {
            leave_and_stop(&mut sim, 2);
        }
        sim.run_for(Duration::from_millis(500));
        let now = sim.now;
        sim.restart(2, Cluster::new(cluster_config(2), 900 + life, now));
        sim.with(2, |c, now| c.join(Pool::Lan, &[lan_addr(0)], now))
            .unwrap();
        sim.run_until_cond(secs(30), TICK, |s| {
            all_see(s, Pool::Lan, 2, MemberStatus::Alive)
        })
        .expect("alive again");
        sim.run_for(secs(2));
        counts.push(sim.node(0).timer_count());
    }
    // Before the fix: 9, 11, 12, … 33 — one more per life.
    let first = counts[0];
    assert!(
        counts.iter().all(|&n| n <= first + 3),
        "timer entries of node 0 after each life: {counts:?}"
    );
}
