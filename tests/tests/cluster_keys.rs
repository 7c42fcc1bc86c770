//! Serf's keyring commands across simulated agents on the virtual clock: `install-key`,
//! `use-key`, `remove-key` and `list-keys` over the RPC reach every member, each applies
//! them to its keyring, the origin answers with Serf's counts and per-node messages, and the
//! gossip keeps working through a rotation; an unreachable member is counted as missing;
//! the keyring file is rewritten through `Effect::Persist`.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;

use std::net::SocketAddr;
use std::time::Duration;

use rpc_support::{V, handshake, map, req, req_with, values};
use tandem_core::cluster::{ClusterConfig, GossipKey, Keyring, MemberStatus};
use tandem_core::{
    Agent, ConnId, Effect, FileWrite, Instant, Listener, Output, Pool, StateFile, StateFiles,
};
use tandem_tests::netsim::{Net, NetConfig, START, SimNode, lan_addr, node_name};
use tandem_tests::netsim_agent::agent_config;

const TICK: Duration = Duration::from_millis(100);
const K1: &str = "AAECAwQFBgcICQoLDA0ODw==";
const K2: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// An agent whose keyring-file writes are recorded.
struct Node {
    agent: Agent,
    writes: Vec<(StateFile, FileWrite, Vec<u8>)>,
    logs: Vec<String>,
}

impl SimNode for Node {
    type Event = String;
    fn handle_datagram(&mut self, pool: Pool, from: SocketAddr, data: &[u8], now: Instant) {
        self.agent.handle_datagram(pool, from, data, now);
    }
    fn poll_datagram(&mut self) -> Option<(Pool, SocketAddr, Vec<u8>)> {
        self.agent.poll_datagram()
    }
    fn poll_event(&mut self) -> Option<String> {
        loop {
            match self.agent.poll_output()? {
                Output::Effect(Effect::Persist { file, write, bytes }) => {
                    self.writes.push((file, write, bytes));
                }
                Output::Log(record) => {
                    self.logs.push(record.line.to_string());
                    return Some(record.line.to_string());
                }
                _ => {}
            }
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.agent.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.agent.handle_timeout(now);
    }
}

fn key(text: &str) -> GossipKey {
    GossipKey::from_base64(text).unwrap()
}

/// `n` agents (encrypted with K1 when `encrypted`), all joined to agent 0 and alive
/// everywhere.
fn cluster(n: usize, encrypted: bool) -> Net<Node> {
    cluster_with(n, encrypted, |_, _| {})
}

/// [`cluster`], with agent `i`'s cluster configuration adjusted by `adjust`.
fn cluster_with(
    n: usize,
    encrypted: bool,
    adjust: impl Fn(usize, &mut ClusterConfig),
) -> Net<Node> {
    let mut sim = Net::new(NetConfig::default(), START);
    for i in 0..n {
        let mut cfg = agent_config(i);
        let mut cluster = ClusterConfig::default();
        if encrypted {
            cluster.keyring = Keyring::new(key(K1), []);
        }
        adjust(i, &mut cluster);
        if cluster != ClusterConfig::default() {
            cfg.cluster = Some(cluster);
        }
        cfg.state_files = StateFiles {
            keyring: true,
            ..StateFiles::default()
        };
        let node = Node {
            agent: Agent::new(cfg, 40 + i as u64, sim.now),
            writes: Vec::new(),
            logs: Vec::new(),
        };
        sim.add(node, lan_addr(i), None);
    }
    let target = lan_addr(0).to_string();
    for i in 1..n {
        sim.with(i, |node, now| {
            node.agent.join(&[target.as_str()], false, now)
        });
    }
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| all_alive(s, n))
        .expect("the agents converge");
    sim
}

fn all_alive(sim: &Net<Node>, n: usize) -> bool {
    (0..n).all(|i| {
        let members = sim.node(i).agent.cluster().members(Pool::Lan);
        (0..n).all(|j| {
            members
                .iter()
                .any(|m| m.name == node_name(j) && m.status == MemberStatus::Alive)
        })
    })
}

fn rpc_conn(sim: &mut Net<Node>, i: usize) -> ConnId {
    sim.with(i, |node, now| {
        let c = node.agent.accept(Listener::Rpc, None, now).unwrap();
        let hs = handshake(1);
        node.agent.handle_stream(c, &hs, now);
        let out = node.agent.tx_pending(c).len();
        node.agent.tx_consume(c, out, now);
        c
    })
}

/// Sends a key command on agent `i` and runs the network until its reply (header and
/// body) arrived: (header error, body).
fn key_command(sim: &mut Net<Node>, i: usize, cmd: &str, key: Option<&str>) -> (String, V) {
    let c = rpc_conn(sim, i);
    let bytes = match key {
        Some(k) => req_with(cmd, 2, &map(&[("Key", k.into())])),
        None => req(cmd, 2),
    };
    sim.with(i, |node, now| {
        assert_eq!(node.agent.handle_stream(c, &bytes, now), bytes.len());
    });
    let mut got = Vec::new();
    for _ in 0..200 {
        sim.with(i, |node, now| {
            let out = node.agent.tx_pending(c).to_vec();
            node.agent.tx_consume(c, out.len(), now);
            got.extend_from_slice(&out);
        });
        if values(&got).len() >= 2 {
            break;
        }
        sim.run_for(TICK);
    }
    let v = values(&got);
    assert_eq!(v.len(), 2, "a header and a body: {v:?}");
    assert_eq!(v[0].get("Seq").u64(), 2);
    (v[0].get("Error").str().to_string(), v[1].clone())
}

fn keys_of(sim: &Net<Node>, i: usize) -> Vec<String> {
    sim.node(i)
        .agent
        .cluster()
        .config()
        .keyring
        .keys()
        .iter()
        .map(GossipKey::to_base64)
        .collect()
}

fn counts(body: &V) -> (u64, u64, u64) {
    (
        body.get("NumNodes").u64(),
        body.get("NumResp").u64(),
        body.get("NumErr").u64(),
    )
}

fn key_counts(body: &V) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = body
        .get("Keys")
        .map()
        .iter()
        .map(|(k, n)| (k.str().to_string(), n.u64()))
        .collect();
    out.sort();
    out
}

fn messages(body: &V) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body
        .get("Messages")
        .map()
        .iter()
        .map(|(k, m)| (k.str().to_string(), m.str().to_string()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_key_rotates_across_three_agents_and_the_gossip_keeps_working() {
    let mut sim = cluster(3, true);
    let (err, body) = key_command(&mut sim, 0, "list-keys", None);
    assert_eq!(err, "");
    assert_eq!(counts(&body), (3, 3, 0));
    assert_eq!(key_counts(&body), [(K1.to_string(), 3)]);
    assert!(messages(&body).is_empty());

    let (err, body) = key_command(&mut sim, 1, "install-key", Some(K2));
    assert_eq!(err, "");
    assert_eq!(counts(&body), (3, 3, 0));
    assert_eq!(
        body.get("Keys"),
        &V::Nil,
        "install answers Keys nil, as Serf"
    );
    for i in 0..3 {
        assert_eq!(keys_of(&sim, i), [K1, K2], "node {i}");
    }
    let (_, body) = key_command(&mut sim, 2, "list-keys", None);
    assert_eq!(
        key_counts(&body),
        [(K1.to_string(), 3), (K2.to_string(), 3)]
    );

    let (err, body) = key_command(&mut sim, 0, "use-key", Some(K2));
    assert_eq!((err.as_str(), counts(&body)), ("", (3, 3, 0)));
    for i in 0..3 {
        assert_eq!(keys_of(&sim, i), [K2, K1], "node {i}: K2 primary");
    }
    // Removing the primary key is refused by every member, with Serf's words.
    let (err, body) = key_command(&mut sim, 0, "remove-key", Some(K2));
    assert_eq!(err, "3/3 nodes reported failure");
    assert_eq!(counts(&body), (3, 3, 3));
    for (node, text) in messages(&body) {
        assert!(node.starts_with("node-"), "{node}");
        assert_eq!(text, "Removing the primary key is not allowed");
    }
    let (err, _) = key_command(&mut sim, 0, "remove-key", Some(K1));
    assert_eq!(err, "");
    for i in 0..3 {
        assert_eq!(keys_of(&sim, i), [K2], "node {i}");
        // Each node's keyring file followed every change: Serf's indented JSON list.
        let last = sim.node(i).writes.last().expect("a keyring write").clone();
        assert_eq!((last.0, last.1), (StateFile::Keyring, FileWrite::Replace));
        assert_eq!(
            String::from_utf8(last.2).unwrap(),
            format!("[\n  \"{K2}\"\n]")
        );
        assert_eq!(sim.node(i).writes.len(), 3, "install, use, remove");
    }
    // The cluster still gossips under the new key only: a user event reaches everyone.
    let c = rpc_conn(&mut sim, 2);
    let event = req_with(
        "event",
        2,
        &map(&[
            ("Coalesce", false.into()),
            ("Name", "after".into()),
            ("Payload", V::B(Vec::new())),
        ]),
    );
    sim.with(2, |n, now| n.agent.handle_stream(c, &event, now));
    sim.run_for(Duration::from_secs(3));
    assert!(all_alive(&sim, 3));
    for i in 0..3 {
        assert!(
            sim.node(i)
                .logs
                .iter()
                .any(|l| l.contains("Received event: user-event: after")),
            "node {i}"
        );
    }
    // The members logged what Serf logs.
    let logs = &sim.node(1).logs;
    for want in [
        "[INFO] serf: Received install-key query",
        "[INFO] serf: Received use-key query",
        "[ERR] serf: Failed to remove key: Removing the primary key is not allowed",
    ] {
        assert!(logs.iter().any(|l| l.contains(want)), "{want}: {logs:#?}");
    }
    assert!(
        sim.node(0)
            .logs
            .iter()
            .any(|l| l.contains("[INFO] agent: Initiating key removal"))
    );
}

#[test]
fn refusals_are_serfs() {
    let mut sim = cluster(2, true);
    let (err, body) = key_command(&mut sim, 0, "use-key", Some(K2));
    assert_eq!(err, "2/2 nodes reported failure");
    assert_eq!(counts(&body), (2, 2, 2));
    assert_eq!(
        messages(&body),
        [
            (
                node_name(0),
                "Requested key is not in the keyring".to_string()
            ),
            (
                node_name(1),
                "Requested key is not in the keyring".to_string()
            ),
        ]
    );
    let (err, body) = key_command(&mut sim, 0, "install-key", Some("AAAA"));
    assert_eq!(err, "2/2 nodes reported failure");
    assert_eq!(
        messages(&body)[0].1,
        "key size must be 16, 24 or 32 bytes",
        "{body:?}"
    );
    // Not base64: refused by the origin before any query, with Go's message.
    let (err, body) = key_command(&mut sim, 0, "install-key", Some("notbase64!"));
    assert_eq!(err, "illegal base64 data at input byte 9");
    assert_eq!(counts(&body), (0, 0, 0));
    assert_eq!(body.get("Messages").map().len(), 0);
    // Removing a key that is not installed is no error (memberlist's RemoveKey).
    let (err, _) = key_command(&mut sim, 1, "remove-key", Some(K2));
    assert_eq!(err, "");
    assert_eq!(keys_of(&sim, 0), [K1]);
    assert!(
        sim.node(0).writes.is_empty(),
        "nothing changed, nothing written"
    );
}

#[test]
fn without_encryption_every_member_says_so() {
    let mut sim = cluster(2, false);
    let (err, body) = key_command(&mut sim, 0, "list-keys", None);
    assert_eq!(err, "2/2 nodes reported failure");
    assert_eq!(body.get("Keys").map().len(), 0, "Keys {{}}: {body:?}");
    assert_eq!(
        messages(&body),
        [
            (
                node_name(0),
                "Keyring is empty (encryption not enabled)".into()
            ),
            (
                node_name(1),
                "Keyring is empty (encryption not enabled)".into()
            ),
        ]
    );
    for cmd in ["install-key", "use-key", "remove-key"] {
        let (err, body) = key_command(&mut sim, 1, cmd, Some(K1));
        assert_eq!(err, "2/2 nodes reported failure", "{cmd}");
        assert_eq!(body.get("Keys"), &V::Nil);
        for (_, text) in messages(&body) {
            assert_eq!(text, "No keyring to modify (encryption not enabled)");
        }
    }
    assert!(!sim.node(0).agent.cluster().encrypted());
}

#[test]
fn an_unreachable_member_is_counted_missing_at_the_deadline() {
    let mut sim = cluster(3, true);
    // Node 2 is cut off, but not yet detected as failed: it is still counted.
    sim.partition(&[&[0, 1], &[2]]);
    let start = sim.now;
    let (err, body) = key_command(&mut sim, 0, "install-key", Some(K2));
    assert_eq!(err, "2/3 nodes reported success");
    assert_eq!(counts(&body), (3, 2, 0));
    assert!(messages(&body).is_empty(), "Serf names no missing member");
    // The reply came at the query's deadline (Serf's default query timeout), not before.
    let waited = sim.now.saturating_duration_since(start);
    let timeout = sim.node(0).agent.cluster().default_query_timeout();
    assert!(waited >= timeout, "{waited:?} < {timeout:?}");
    assert_eq!(keys_of(&sim, 1), [K1, K2]);
    assert_eq!(keys_of(&sim, 2), [K1], "the cut-off member did not change");
}

#[test]
fn a_failed_keyring_write_is_logged_and_counted_and_the_agent_keeps_its_new_keyring() {
    let mut sim = cluster(2, true);
    let (err, _) = key_command(&mut sim, 0, "install-key", Some(K2));
    assert_eq!(err, "");
    assert_eq!(sim.node(1).writes.len(), 1);
    sim.with(1, |n, now| {
        n.agent
            .persisted(StateFile::Keyring, Err("/var/lib/k: disk full"), now)
    });
    sim.run_for(TICK);
    let node = sim.node(1);
    assert_eq!(node.agent.persist_failures(), 1);
    assert!(
        node.logs
            .iter()
            .any(|l| l
                .contains("[ERR] agent: failed to write the keyring file: /var/lib/k: disk full")),
        "{:#?}",
        node.logs
    );
    assert_eq!(keys_of(&sim, 1), [K1, K2], "the new keyring stays in force");
    let (err, body) = key_command(&mut sim, 1, "use-key", Some(K2));
    assert_eq!((err.as_str(), counts(&body)), ("", (2, 2, 0)));
}

#[test]
fn a_reload_keeps_what_key_commands_did_unless_the_configured_keyring_changed() {
    let mut sim = cluster(2, true);
    key_command(&mut sim, 0, "install-key", Some(K2));
    key_command(&mut sim, 0, "use-key", Some(K2));
    // The same configuration again (a SIGHUP with the file unchanged).
    sim.with(0, |n, now| {
        let same = n.agent.config().clone();
        n.agent.apply_config(same, now)
    });
    assert_eq!(keys_of(&sim, 0), [K2, K1]);
    // A configuration whose keyring changed is put in force.
    sim.with(0, |n, now| {
        let mut cfg = n.agent.config().clone();
        cfg.cluster = Some(ClusterConfig {
            keyring: Keyring::new(key(K1), []),
            ..ClusterConfig::default()
        });
        n.agent.apply_config(cfg, now)
    });
    // Configured with K1 only at start, and K1 only now: unchanged, so still K2, K1.
    assert_eq!(keys_of(&sim, 0), [K2, K1]);
    sim.with(0, |n, now| {
        let mut cfg = n.agent.config().clone();
        cfg.cluster = Some(ClusterConfig {
            keyring: Keyring::new(key(K2), []),
            ..ClusterConfig::default()
        });
        n.agent.apply_config(cfg, now)
    });
    assert_eq!(keys_of(&sim, 0), [K2], "a changed configured keyring wins");
}

#[test]
fn a_key_list_over_the_response_limit_is_cut_short_as_serfs() {
    // Node 1 answers within a 250-byte response limit.
    let mut sim = cluster_with(2, true, |i, c| {
        if i == 1 {
            c.query_response_size_limit = 250;
        }
    });
    for fill in 1..=6u8 {
        let k = GossipKey::new(&[fill; 32]).unwrap().to_base64();
        let (err, _) = key_command(&mut sim, 0, "install-key", Some(&k));
        assert_eq!(err, "");
    }
    assert_eq!(keys_of(&sim, 1).len(), 7);
    let (err, body) = key_command(&mut sim, 0, "list-keys", None);
    assert_eq!(err, "", "a cut list is no failure, as in Serf");
    let listed = key_counts(&body);
    assert_eq!(listed.len(), 7, "node 0 still lists all seven");
    let from_both = listed.iter().filter(|(_, n)| *n == 2).count();
    assert!(
        (1..7).contains(&from_both),
        "node 1 listed fewer: {listed:?}"
    );
    assert!(
        sim.node(1)
            .logs
            .iter()
            .any(|l| l.contains("[WARN] serf: truncated key list response, showing first")),
        "{:#?}",
        sim.node(1).logs
    );
}
