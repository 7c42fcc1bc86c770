//! Joins on the simulated network, as a user sees them: every address of a join is tried
//! (a list over the limit is refused, naming it), an agent's own address is an error that
//! says so, and an address the runtime reports unreachable fails at once with
//! `connection refused`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tandem_core::cluster::{Cluster, ClusterConfig, ClusterError, MAX_JOIN_ADDRS, Pool};
use tandem_tests::netsim::{NetConfig, cluster_net, lan_addr};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `n` addresses nobody listens at (no node is routed there).
fn unreachable(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| {
            SocketAddr::from((
                Ipv4Addr::new(10, 99, (i / 250) as u8, (i % 250) as u8 + 1),
                8301,
            ))
        })
        .collect()
}

#[test]
fn a_join_tries_every_address_so_a_live_one_after_64_unreachable_ones_answers() {
    let mut sim = cluster_net(2, NetConfig::default(), 7, |_, _| {});
    let mut addrs = unreachable(64);
    addrs.push(lan_addr(0));
    let id = sim
        .with(1, |c, now| c.join(Pool::Lan, &addrs, now))
        .expect("65 addresses are within the limit");
    sim.run_for(secs(6));
    let outcome = sim.with(1, |c, _| c.poll_join()).expect("the join ended");
    assert_eq!((outcome.id, outcome.joined, outcome.error), (id, 1, None));
    // The unreachable ones are still reported, one line each (the agent logs them).
    assert_eq!(outcome.failures.len(), 64);
    assert!(
        outcome.failures[0].starts_with("Failed to join 10.99.0.1:8301: no response"),
        "{:?}",
        outcome.failures[0]
    );
    assert_eq!(
        sim.node(1).member_status(Pool::Lan, lan_addr(0)),
        Some(tandem_core::cluster::MemberStatus::Alive)
    );
}

#[test]
fn a_join_over_the_address_limit_is_refused_naming_it_and_tries_nothing() {
    let mut sim = cluster_net(2, NetConfig::default(), 8, |_, _| {});
    let mut addrs = unreachable(MAX_JOIN_ADDRS);
    addrs.push(lan_addr(0));
    // Duplicates count once: the limit is on distinct addresses.
    addrs.push(lan_addr(0));
    let r = sim.with(1, |c, now| c.join(Pool::Lan, &addrs, now));
    assert_eq!(
        r,
        Err(ClusterError::TooManyJoinAddrs {
            given: MAX_JOIN_ADDRS + 1
        })
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        format!(
            "too many addresses to join: {} (limit {MAX_JOIN_ADDRS}); nothing was joined",
            MAX_JOIN_ADDRS + 1
        )
    );
    assert_eq!(sim.node(1).datagrams_queued(), 0);
    sim.run_for(secs(6));
    assert_eq!(sim.node(1).members(Pool::Lan).len(), 1, "nothing was tried");
}

#[test]
fn joining_the_agents_own_address_is_an_error_that_says_so() {
    let mut sim = cluster_net(2, NetConfig::default(), 9, |_, _| {});
    let me = lan_addr(1);
    sim.with(1, |c, now| c.join(Pool::Lan, &[me], now)).unwrap();
    let alone = sim
        .with(1, |c, _| c.poll_join())
        .expect("nothing to wait for");
    assert_eq!(alone.joined, 0);
    assert_eq!(
        alone.error.unwrap().to_string(),
        format!("1 error occurred:\n\t* Failed to join {me}: it is this agent's own address\n\n")
    );
    // With another address, the join succeeds and the own one is still named.
    sim.with(1, |c, now| c.join(Pool::Lan, &[me, lan_addr(0)], now))
        .unwrap();
    sim.run_for(secs(2));
    let mixed = sim.with(1, |c, _| c.poll_join()).expect("the join ended");
    assert_eq!((mixed.joined, mixed.error), (1, None));
    assert_eq!(
        mixed.failures,
        [format!(
            "Failed to join {me}: it is this agent's own address"
        )]
    );
}

#[test]
fn an_announce_that_comes_back_to_its_sender_fails_that_address_as_its_own() {
    // Bound to every interface, the node is reached at 127.0.0.1 too: its announce
    // arrives at itself, which no SWIM member would send.
    let wildcard = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8301));
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 8301));
    let cfg = ClusterConfig {
        lan_addr: wildcard,
        ..ClusterConfig::default()
    };
    let mut c = Cluster::new(cfg, 5, tandem_tests::netsim::START);
    let now = tandem_tests::netsim::START;
    c.join(Pool::Lan, &[loopback], now).unwrap();
    let mut echoed = 0;
    while let Some((pool, to, bytes)) = c.poll_datagram() {
        if to == loopback {
            c.handle_datagram(pool, loopback, &bytes, now);
            echoed += 1;
        }
    }
    assert!(echoed > 0, "the join announced to the loopback address");
    let outcome = c
        .poll_join()
        .expect("failed at once, not after the timeout");
    assert_eq!(
        outcome.failures,
        [format!(
            "Failed to join {loopback}: it is this agent's own address"
        )]
    );
    assert_eq!(c.members(Pool::Lan).len(), 1);
}

#[test]
fn an_address_reported_unreachable_fails_at_once_with_connection_refused() {
    let mut sim = cluster_net(2, NetConfig::default(), 10, |_, _| {});
    let closed: SocketAddr = "10.99.0.9:8301".parse().unwrap();
    let started = sim.now;
    sim.with(1, |c, now| c.join(Pool::Lan, &[closed], now))
        .unwrap();
    sim.run_for(Duration::from_millis(5));
    assert!(sim.with(1, |c, _| c.poll_join()).is_none());
    // Reports about addresses no join waits for change nothing.
    sim.with(1, |c, now| {
        c.handle_unreachable(Pool::Lan, lan_addr(0), now)
    });
    assert!(sim.with(1, |c, _| c.poll_join()).is_none());
    sim.with(1, |c, now| c.handle_unreachable(Pool::Lan, closed, now));
    let outcome = sim
        .with(1, |c, _| c.poll_join())
        .expect("the refusal ends the join");
    assert!(sim.now - started < Duration::from_millis(10));
    assert_eq!(
        outcome.error.unwrap().to_string(),
        format!("1 error occurred:\n\t* Failed to join {closed}: connection refused\n\n")
    );
    assert_eq!(sim.node(1).stats().unreachable_reports, 1);
    // A join with a live address besides still waits for it, and joins it.
    sim.with(1, |c, now| c.join(Pool::Lan, &[closed, lan_addr(0)], now))
        .unwrap();
    sim.with(1, |c, now| c.handle_unreachable(Pool::Lan, closed, now));
    sim.run_for(secs(2));
    let mixed = sim.with(1, |c, _| c.poll_join()).expect("the join ended");
    assert_eq!((mixed.joined, mixed.error), (1, None));
}

#[test]
fn a_silent_address_says_where_to_look_depending_on_encryption() {
    let mut sim = cluster_net(1, NetConfig::default(), 11, |_, _| {});
    let nowhere: SocketAddr = "10.99.0.7:8301".parse().unwrap();
    sim.with(0, |c, now| c.join(Pool::Lan, &[nowhere], now))
        .unwrap();
    sim.run_for(secs(6));
    let plain = sim.with(0, |c, _| c.poll_join()).unwrap();
    assert_eq!(
        plain.failures,
        [format!(
            "Failed to join {nowhere}: no response (if its gossip is encrypted, this agent needs the key)"
        )]
    );
    let mut sealed = cluster_net(1, NetConfig::default(), 12, |_, c| {
        c.keyring = tandem_core::cluster::Keyring::new(
            tandem_core::cluster::GossipKey::new(&[3; 32]).unwrap(),
            [],
        );
    });
    sealed
        .with(0, |c, now| c.join(Pool::Lan, &[nowhere], now))
        .unwrap();
    sealed.run_for(secs(6));
    let sealed = sealed.with(0, |c, _| c.poll_join()).unwrap();
    assert_eq!(
        sealed.failures,
        [format!(
            "Failed to join {nowhere}: no response (is its gossip encrypted with one of this agent's keys?)"
        )]
    );
}

/// Nodes 0, 1 and 2 joined (0 and 2 to 1), node 3 started with node 0's name, not joined.
fn name_clash(seed: u64) -> tandem_tests::netsim::Net<Cluster> {
    let mut sim = cluster_net(4, NetConfig::default(), seed, |i, c| {
        if i == 3 {
            c.node_name = tandem_tests::netsim::node_name(0);
        }
    });
    for i in [0, 2] {
        sim.with(i, |c, now| c.join(Pool::Lan, &[lan_addr(1)], now))
            .unwrap();
    }
    sim.run_for(secs(10));
    sim
}

/// Nodes 0, 1 and 2 each show one `node-0`, node 0 itself, and nothing at node 3.
fn one_named_node_0_and_no_node_3(sim: &tandem_tests::netsim::Net<Cluster>) {
    for i in 0..3 {
        let named: Vec<_> = sim
            .node(i)
            .members(Pool::Lan)
            .into_iter()
            .filter(|m| m.name == tandem_tests::netsim::node_name(0))
            .collect();
        assert_eq!(named.len(), 1, "node {i}: {named:?}");
        assert_eq!(
            (named[0].addr, named[0].port),
            (lan_addr(0).ip(), lan_addr(0).port())
        );
        assert_eq!(
            sim.node(i).member_status(Pool::Lan, lan_addr(3)),
            None,
            "node {i}"
        );
    }
}

#[test]
fn a_second_node_with_a_live_members_name_is_refused_and_yields_it() {
    use tandem_core::cluster::MemberStatus;
    use tandem_tests::netsim::{all_see, node_name};
    let mut sim = name_clash(13);
    sim.with(3, |c, now| c.join(Pool::Lan, &[lan_addr(1)], now))
        .unwrap();
    sim.run_for(secs(20));
    one_named_node_0_and_no_node_3(&sim);
    // The newcomer learnt it lost the name: it went silent, to shut down (Serf's
    // minority); the holder did not.
    let conflict = sim.node(3).name_conflict().expect("the newcomer yields");
    assert_eq!(
        (conflict.name.as_str(), conflict.holder),
        (node_name(0).as_str(), lan_addr(0))
    );
    assert!(sim.node(3).ready_to_shutdown());
    assert!(sim.node(0).name_conflict().is_none());
    sim.kill(3);
    sim.run_for(secs(30));
    assert!(all_see(&sim, Pool::Lan, 0, MemberStatus::Alive));
    for i in 0..3 {
        assert_eq!(
            sim.node(i).member_status(Pool::Lan, lan_addr(3)),
            None,
            "node {i}"
        );
    }
}

#[test]
fn a_member_is_not_shown_under_a_name_a_live_member_holds() {
    use tandem_core::cluster::MemberStatus;
    use tandem_tests::netsim::all_see;
    let mut sim = name_clash(14);
    // A member joins the node holding the name twice: that node did not join, so it does
    // not yield, but nobody shows it while node 0 lives.
    sim.with(1, |c, now| c.join(Pool::Lan, &[lan_addr(3)], now))
        .unwrap();
    sim.run_for(secs(20));
    one_named_node_0_and_no_node_3(&sim);
    assert!(sim.node(1).stats().name_conflicts > 0);
    assert!(sim.node(3).name_conflict().is_none());
    // The holder dies: the name is free, and the other takes its entry.
    sim.kill(0);
    sim.run_until_cond(secs(30), Duration::from_millis(100), |s| {
        all_see(s, Pool::Lan, 3, MemberStatus::Alive)
    })
    .expect("shown once the holder is down");
}
