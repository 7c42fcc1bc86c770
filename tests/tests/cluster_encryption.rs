//! Gossip encryption on the simulated network: an encrypted cluster converges, a node
//! without the key or with a wrong one can neither join nor read membership, sealed
//! datagrams stay within `max_packet_size`, and keys rotate by reloading the keyring
//! (whole agents, `apply_config`) without the cluster splitting.

use std::net::SocketAddr;
use std::time::Duration;

use tandem_core::cluster::{
    Cluster, ClusterConfig, ClusterEvent, ENCRYPTION_VERSION, GossipKey, Keyring, Pool,
};
use tandem_core::{Agent, Config, Instant};
use tandem_tests::netsim::{Net, NetConfig, START, SimNode, cluster_config, lan_addr, node_name};
use tandem_tests::netsim_agent::{AgentEvent, agent_config};

const TICK: Duration = Duration::from_millis(100);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn key(fill: u8) -> GossipKey {
    GossipKey::new(&[fill; 32]).unwrap()
}

fn ring(keys: &[u8]) -> Keyring {
    let mut keys = keys.iter().map(|&k| key(k));
    let primary = keys.next().unwrap();
    Keyring::new(primary, keys)
}

/// A node whose every outgoing datagram is also kept, to look at what is on the wire.
struct Tap<N> {
    node: N,
    wire: Vec<Vec<u8>>,
}

impl<N: SimNode> SimNode for Tap<N> {
    type Event = N::Event;
    fn handle_datagram(&mut self, pool: Pool, from: SocketAddr, data: &[u8], now: Instant) {
        self.node.handle_datagram(pool, from, data, now);
    }
    fn poll_datagram(&mut self) -> Option<(Pool, SocketAddr, Vec<u8>)> {
        let d = self.node.poll_datagram()?;
        self.wire.push(d.2.clone());
        Some(d)
    }
    fn poll_event(&mut self) -> Option<N::Event> {
        self.node.poll_event()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
    }
}

/// `n` tapped clusters, node `i` with the keyring `keys(i)` (none: plaintext).
fn tapped_net(n: usize, keys: impl Fn(usize) -> Option<Keyring>) -> Net<Tap<Cluster>> {
    let mut sim = Net::new(NetConfig::default(), START);
    for i in 0..n {
        let mut cfg = cluster_config(i);
        if let Some(ring) = keys(i) {
            cfg.keyring = ring;
        }
        let node = Cluster::new(cfg, 40 + i as u64, START);
        sim.add(
            Tap {
                node,
                wire: Vec::new(),
            },
            lan_addr(i),
            None,
        );
    }
    sim
}

fn join(sim: &mut Net<Tap<Cluster>>, i: usize, to: usize) {
    sim.with(i, |t, now| t.node.join(Pool::Lan, &[lan_addr(to)], now))
        .unwrap();
}

/// The names node `i` shows in the LAN pool, sorted.
fn names(sim: &Net<Tap<Cluster>>, i: usize) -> Vec<String> {
    let mut v: Vec<String> = sim
        .node(i)
        .node
        .members(Pool::Lan)
        .into_iter()
        .map(|m| m.name)
        .collect();
    v.sort();
    v
}

/// Whether each of `nodes` shows exactly `nodes`, all alive.
fn see_each_other(sim: &Net<Tap<Cluster>>, nodes: &[usize]) -> bool {
    let mut want: Vec<String> = nodes.iter().map(|&i| node_name(i)).collect();
    want.sort();
    nodes.iter().all(|&i| {
        let c = sim.node(i).node.status_counts(Pool::Lan);
        names(sim, i) == want && c.alive == nodes.len()
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_encrypted_three_node_cluster_converges_and_seals_every_datagram() {
    let mut sim = tapped_net(3, |_| Some(ring(&[1])));
    join(&mut sim, 1, 0);
    join(&mut sim, 2, 0);
    let took = sim.run_until_cond(secs(20), TICK, |s| see_each_other(s, &[0, 1, 2]));
    assert!(took.is_some(), "did not converge: {:?}", names(&sim, 0));
    sim.run_for(secs(40));
    assert!(see_each_other(&sim, &[0, 1, 2]));
    for i in 0..3 {
        let t = sim.node(i);
        assert!(t.node.encrypted());
        assert_eq!(t.node.stats().decrypt_failures, 0, "node {i}");
        assert_eq!(t.node.stats().bad_datagrams, 0, "node {i}");
        assert!(t.wire.len() > 20, "node {i} sent {}", t.wire.len());
        for d in &t.wire {
            assert_eq!(d[0], ENCRYPTION_VERSION);
            assert!(d.len() <= 1400);
            for name in ["node-0", "node-1", "node-2", "0.1.0:sim"] {
                assert!(!contains(d, name.as_bytes()), "{name} in plaintext");
            }
        }
    }
}

#[test]
fn plaintext_gossip_shows_names_on_the_wire() {
    // The control for the test above and the next: without a key, names are readable.
    let mut sim = tapped_net(2, |_| None);
    join(&mut sim, 1, 0);
    assert!(
        sim.run_until_cond(secs(20), TICK, |s| see_each_other(s, &[0, 1]))
            .is_some()
    );
    assert!(!sim.node(0).node.encrypted());
    assert!(sim.node(0).wire.iter().any(|d| contains(d, b"node-0")));
}

#[test]
fn nodes_without_the_key_or_with_a_wrong_one_cannot_join_or_read_membership() {
    // 0..3 share key 1; 3 has no key; 4 has key 2.
    let mut sim = tapped_net(5, |i| match i {
        0..3 => Some(ring(&[1])),
        3 => None,
        _ => Some(ring(&[2])),
    });
    join(&mut sim, 1, 0);
    join(&mut sim, 2, 0);
    join(&mut sim, 3, 0);
    join(&mut sim, 4, 1);
    sim.run_for(secs(60));
    // Strangers keep knocking; nobody lets them in.
    join(&mut sim, 3, 2);
    join(&mut sim, 4, 0);
    sim.run_for(secs(30));

    assert!(see_each_other(&sim, &[0, 1, 2]), "{:?}", names(&sim, 0));
    for stranger in [3, 4] {
        assert_eq!(names(&sim, stranger), [node_name(stranger)]);
        for i in 0..3 {
            assert_eq!(
                sim.node(i)
                    .node
                    .member_status(Pool::Lan, lan_addr(stranger)),
                None
            );
        }
    }
    let failures: u64 = (0..3)
        .map(|i| sim.node(i).node.stats().decrypt_failures)
        .sum();
    assert!(failures >= 4, "strangers' datagrams counted: {failures}");
    // What the members sent (some of it to the strangers) names nobody in plaintext.
    for i in 0..3 {
        for d in &sim.node(i).wire {
            for name in ["node-0", "node-1", "node-2"] {
                assert!(!contains(d, name.as_bytes()), "{name} readable");
            }
        }
    }
    // The strangers never learnt a member's name either.
    for stranger in [3, 4] {
        let events = sim.events(stranger);
        let named: Vec<&ClusterEvent> = events
            .iter()
            .filter(|e| matches!(e, ClusterEvent::Member { members, .. } if members[0].name != node_name(stranger)))
            .collect();
        assert!(named.is_empty(), "{named:?}");
    }
}

#[test]
fn sealed_datagrams_stay_within_the_packet_size_when_full() {
    // Big tags fill PUSH answers and foca's packets to the budget.
    let mut sim = Net::new(NetConfig::default(), START);
    let n = 10;
    for i in 0..n {
        let mut cfg: ClusterConfig = cluster_config(i);
        cfg.keyring = ring(&[1]);
        // Uneven sizes, so packing comes close to the budget.
        cfg.tags.insert("pad".into(), "x".repeat(120 + 37 * i));
        let node = Cluster::new(cfg, 70 + i as u64, START);
        sim.add(
            Tap {
                node,
                wire: Vec::new(),
            },
            lan_addr(i),
            None,
        );
    }
    for i in 1..n {
        join(&mut sim, i, 0);
    }
    let all: Vec<usize> = (0..n).collect();
    let took = sim.run_until_cond(secs(60), TICK, |s| see_each_other(s, &all));
    assert!(took.is_some());
    sim.run_for(secs(60));
    let longest = (0..n)
        .flat_map(|i| sim.node(i).wire.iter().map(Vec::len))
        .max()
        .unwrap();
    assert!(
        (1340..=1400).contains(&longest),
        "longest datagram {longest}"
    );
    for i in 0..n {
        let s = sim.node(i).node.stats();
        assert_eq!((s.bad_datagrams, s.decrypt_failures), (0, 0), "node {i}");
    }
}

// ----- rotation through whole agents --------------------------------------------------------

fn agent_with(i: usize, keys: &[u8]) -> Config {
    Config {
        cluster: Some(ClusterConfig {
            keyring: ring(keys),
            ..ClusterConfig::default()
        }),
        ..agent_config(i)
    }
}

fn failed_events(sim: &Net<Agent>) -> usize {
    (0..sim.len())
        .map(|i| {
            sim.events(i)
                .iter()
                .filter(|AgentEvent(e)| e.contains("MemberFailed"))
                .count()
        })
        .sum()
}

/// Whether every agent shows all `n`, alive.
fn agents_agree(sim: &Net<Agent>, n: usize) -> bool {
    (0..n).all(|i| {
        let c = sim.node(i).cluster().status_counts(Pool::Lan);
        c.alive == n && c.total() == n
    })
}

#[test]
fn keys_rotate_by_reloading_the_keyring_without_the_cluster_splitting() {
    let n = 3;
    let mut sim: Net<Agent> = Net::new(NetConfig::default(), START);
    for i in 0..n {
        let agent = Agent::new(agent_with(i, &[1]), 90 + i as u64, START);
        sim.add(agent, lan_addr(i), None);
    }
    let seed = lan_addr(0).to_string();
    for i in 1..n {
        sim.with(i, |a, now| a.join(&[seed.as_str()], false, now));
    }
    assert!(
        sim.run_until_cond(secs(20), TICK, |s| agents_agree(s, n))
            .is_some()
    );
    assert!(sim.node(0).cluster().encrypted());

    // Install key 2, make it primary, remove key 1: one node at a time, with gossip
    // going on between reloads. At no point may anyone fail or go missing.
    for step in [&[1, 2][..], &[2, 1], &[2]] {
        for i in 0..n {
            sim.with(i, |a, now| a.apply_config(agent_with(i, step), now));
            let end = sim.now + secs(5);
            while sim.now < end {
                sim.run_for(TICK * 5);
                assert!(agents_agree(&sim, n), "split after {step:?} on node {i}");
            }
        }
    }
    assert_eq!(failed_events(&sim), 0);
    for i in 0..n {
        let c = sim.node(i).cluster();
        assert_eq!(c.config().keyring, ring(&[2]));
        let changed = sim
            .events(i)
            .iter()
            .filter(|AgentEvent(e)| e.contains("gossip keyring changed"))
            .count();
        assert_eq!(changed, 3, "node {i}");
    }

    // Key 1 no longer opens anything: a node that only has it cannot join.
    let late = Agent::new(agent_with(n, &[1]), 99, sim.now);
    let late = sim.add(late, lan_addr(n), None);
    sim.with(late, |a, now| a.join(&[seed.as_str()], false, now));
    sim.run_for(secs(30));
    assert!(agents_agree(&sim, n));
    assert_eq!(sim.node(late).cluster().status_counts(Pool::Lan).total(), 1);
    assert!(sim.node(0).cluster().stats().decrypt_failures > 0);
}

// ----- what an operator sees -----------------------------------------------------------------

#[test]
fn datagrams_no_key_opens_are_counted_in_the_stats_gossip_section() {
    let mut sim = tandem_tests::Sim::with_config(agent_with(0, &[1]));
    let stranger: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let gossip = |sim: &mut tandem_tests::Sim| {
        let v = sim.api(r#"{"action":"exec","command":"stats"}"#);
        v["body"]["results"][0]["stats"]["gossip"].clone()
    };
    assert_eq!(gossip(&mut sim)["decrypt_failures"], "0");
    // Sealed with another key, and plaintext: neither opens.
    let mut sealed = vec![ENCRYPTION_VERSION];
    sealed.extend([7u8; 12 + 40 + 16]);
    let now = sim.now;
    sim.agent.handle_datagram(Pool::Lan, stranger, &sealed, now);
    sim.agent
        .handle_datagram(Pool::Lan, stranger, b"plaintext gossip", now);
    sim.drain();
    let g = gossip(&mut sim);
    assert_eq!(g["decrypt_failures"], "2", "{g}");
    assert_eq!(g["datagrams_in"], "2", "{g}");
    assert_eq!(sim.agent.cluster().stats().decrypt_failures, 2);
}

#[test]
fn one_seed_at_two_starts_seals_with_different_nonces() {
    // An embedder may pass the same seed at every start; the runtime's wall-clock start is
    // mixed into the nonce generator, so a restart does not reuse nonces under the key.
    let first_sealed = |unix_ms: u64| {
        let mut config = agent_with(0, &[1]);
        config.host.unix_ms = unix_ms;
        let mut agent = Agent::new(config, 5, START);
        agent.join(&[&lan_addr(1).to_string()], false, START);
        let (_, _, d) = agent.poll_datagram().expect("a join sends a datagram");
        assert_eq!(d[0], ENCRYPTION_VERSION);
        d
    };
    let (a, b) = (first_sealed(1_000), first_sealed(2_000));
    assert_ne!(a[1..13], b[1..13], "nonces differ between starts");
    // Deterministic all the same: the same seed and start give the same bytes.
    assert_eq!(first_sealed(1_000), a);
}

/// Log lines of agent `i` containing `needle`.
fn log_lines(sim: &Net<Agent>, i: usize, needle: &str) -> Vec<String> {
    sim.events(i)
        .iter()
        .filter(|AgentEvent(e)| e.starts_with("Log(") && e.contains(needle))
        .map(|AgentEvent(e)| e.clone())
        .collect()
}

#[test]
fn a_wrong_key_is_logged_on_both_sides_and_the_receivers_lines_are_rate_limited() {
    let mut sim: Net<Agent> = Net::new(NetConfig::default(), START);
    sim.add(
        Agent::new(agent_with(0, &[1]), 70, START),
        lan_addr(0),
        None,
    );
    sim.add(
        Agent::new(agent_with(1, &[2]), 71, START),
        lan_addr(1),
        None,
    );
    let seed = lan_addr(0).to_string();
    sim.with(1, |a, now| a.join(&[seed.as_str()], false, now));
    sim.run_for(secs(6));
    // The joiner: the join failed, and the error says where to look.
    let joiner = log_lines(&sim, 1, "agent: error joining");
    assert_eq!(joiner.len(), 1, "{joiner:?}");
    assert!(
        joiner[0].contains(&format!(
            "Failed to join {seed}: no response (is its gossip encrypted with one of this agent's keys?)"
        )),
        "{joiner:?}"
    );
    // The receiver: one line for the announces it could not open (one a second), not one
    // per datagram.
    let opened = sim.node(0).cluster().stats().decrypt_failures;
    assert!(opened >= 4, "{opened}");
    let receiver = log_lines(&sim, 0, "Decrypt packet failed");
    assert_eq!(receiver.len(), 1, "{receiver:?}");
    assert!(
        receiver[0].contains(&format!(
            "[ERR] memberlist: Decrypt packet failed: No installed keys could decrypt the message from={}",
            lan_addr(1)
        )),
        "{receiver:?}"
    );
    // Ten seconds on, the next one counts those it did not log.
    sim.run_for(secs(5));
    sim.with(1, |a, now| a.join(&[seed.as_str()], false, now));
    sim.run_for(secs(1));
    let receiver = log_lines(&sim, 0, "Decrypt packet failed");
    assert_eq!(receiver.len(), 2, "{receiver:?}");
    assert!(
        receiver[1].contains("more since the last report)"),
        "{receiver:?}"
    );
}

#[test]
fn a_plaintext_agent_says_undecodable_gossip_may_be_encrypted() {
    let mut sim: Net<Agent> = Net::new(NetConfig::default(), START);
    sim.add(Agent::new(agent_config(0), 72, START), lan_addr(0), None);
    sim.add(
        Agent::new(agent_with(1, &[2]), 73, START),
        lan_addr(1),
        None,
    );
    let seed = lan_addr(0).to_string();
    sim.with(1, |a, now| a.join(&[seed.as_str()], false, now));
    sim.run_for(secs(6));
    let receiver = log_lines(&sim, 0, "Failed to decode packet");
    assert_eq!(receiver.len(), 1, "{receiver:?}");
    assert!(
        receiver[0].contains("(is its gossip encrypted? this agent's is not)"),
        "{receiver:?}"
    );
}
