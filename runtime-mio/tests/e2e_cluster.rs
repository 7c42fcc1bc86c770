//! End-to-end cluster tests of `tandem-mio agent`: three processes gossiping over UDP on
//! 127.0.0.1, every port ephemeral, driven over the agent RPC (`join`, `members`,
//! `force-leave`, `leave`; `tandem-mio` has no CLI client, so the requests are msgpack
//! here). One `tandem-mio` node also joins with `-join` at start.
//!
//! Waits poll with a deadline and assert nothing about timing; how long failure detection
//! took is printed (`cargo test -- --nocapture` shows it). Every process is killed and
//! reaped on drop.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rmpv::Value;
use support::{Client, RunningAgent, mp_get, mp_map, rpc_request};

/// How long the cluster may take to converge after a join.
const CONVERGE: Duration = Duration::from_secs(15);
/// How long a killed member may take to show `failed` (see runtime-smol's e2e_cluster).
const DETECT: Duration = Duration::from_secs(30);

/// A handshaken RPC connection.
fn rpc(agent: &RunningAgent) -> Client {
    let mut c = agent.connect_rpc();
    c.send(&rpc_request(
        "handshake",
        0,
        Some(mp_map(&[("Version", 1.into())])),
    ));
    c.reply_ok(0);
    c
}

/// The reply header's `Error` to one request (and the body, when `body` says one follows
/// a successful reply).
fn call(agent: &RunningAgent, command: &str, req: Option<Value>, body: bool) -> (String, Value) {
    let mut c = rpc(agent);
    c.send(&rpc_request(command, 1, req));
    let header = c.value();
    assert_eq!(mp_get(&header, "Seq").as_u64(), Some(1), "{header}");
    let error = mp_get(&header, "Error").as_str().unwrap_or("?").to_string();
    let value = if body && error.is_empty() {
        c.value()
    } else {
        Value::Nil
    };
    (error, value)
}

/// `join` of `port` on 127.0.0.1; the number of nodes contacted.
fn join(agent: &RunningAgent, port: u16) -> u64 {
    let existing = Value::Array(vec![format!("127.0.0.1:{port}").into()]);
    let req = mp_map(&[
        ("Existing", existing),
        ("Replay", false.into()),
        ("WAN", false.into()),
    ]);
    let (error, body) = call(agent, "join", Some(req), true);
    assert_eq!(error, "", "join");
    mp_get(&body, "Num").as_u64().expect("Num")
}

/// Name → (status, port) of the LAN members.
fn members(agent: &RunningAgent) -> BTreeMap<String, (String, u64)> {
    let (error, body) = call(agent, "members", None, true);
    assert_eq!(error, "", "members");
    mp_get(&body, "Members")
        .as_array()
        .expect("Members")
        .iter()
        .map(|m| {
            let s = |k: &str| mp_get(m, k).as_str().unwrap_or_default().to_string();
            let port = mp_get(m, "Port").as_u64().unwrap_or_default();
            (s("Name"), (s("Status"), port))
        })
        .collect()
}

/// Polls until `want` holds for `agent`'s members.
fn wait_members(
    agent: &RunningAgent,
    within: Duration,
    what: &str,
    want: impl Fn(&BTreeMap<String, (String, u64)>) -> bool,
) {
    let start = Instant::now();
    loop {
        let seen = members(agent);
        if want(&seen) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}; members now: {seen:?}\nagent log:\n{}",
            agent.log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_is(node: &str, status: &str) -> impl Fn(&BTreeMap<String, (String, u64)>) -> bool {
    let (node, status) = (node.to_string(), status.to_string());
    move |seen| seen.get(&node).is_some_and(|(s, _)| *s == status)
}

#[test]
fn three_agents_join_detect_a_kill_force_leave_it_and_see_a_graceful_leave() {
    let a1 = RunningAgent::start(&["-node", "m1"]);
    let mut a2 = RunningAgent::start(&["-node", "m2"]);
    // The third joins at start, with the flag.
    let by_flag = format!("127.0.0.1:{}", a1.lan_port);
    let mut a3 = RunningAgent::start(&["-node", "m3", "-join", &by_flag]);
    assert_eq!(join(&a2, a1.lan_port), 1);
    a3.wait_log("agent: joined: 1 nodes");
    let agents = [&a1, &a2, &a3];
    for a in agents {
        wait_members(a, CONVERGE, "three alive", |seen| {
            seen.len() == 3 && seen.values().all(|(s, _)| s == "alive")
        });
        // Every member is shown at the port its socket is bound to.
        let seen = members(a);
        for (name, peer) in ["m1", "m2", "m3"].iter().zip(agents) {
            assert_eq!(seen[*name].1, u64::from(peer.lan_port), "{seen:?}");
        }
    }

    a3.kill9();
    let killed = Instant::now();
    wait_members(&a1, DETECT, "m3 failed", status_is("m3", "failed"));
    let took = killed.elapsed();
    wait_members(&a2, DETECT, "m3 failed", status_is("m3", "failed"));
    eprintln!(
        "failure detection after kill -9: {took:?} on m1, {:?} on m2 (polled every 100 ms)",
        killed.elapsed()
    );

    let req = mp_map(&[("Node", "m3".into()), ("Prune", false.into())]);
    assert_eq!(call(&a1, "force-leave", Some(req), false).0, "");
    for a in [&a1, &a2] {
        wait_members(a, CONVERGE, "m3 left", status_is("m3", "left"));
    }

    // A graceful leave is `left` on the others, never `failed`.
    assert_eq!(call(&a2, "leave", None, false).0, "");
    wait_members(&a1, CONVERGE, "m2 left", |seen| {
        assert!(
            !status_is("m2", "failed")(seen),
            "a graceful leave must not look like a failure"
        );
        status_is("m2", "left")(seen)
    });
    assert_eq!(a2.wait_exit(Duration::from_secs(10)).code(), Some(0));
    a2.wait_log("agent: left the cluster, shutting down");
}

#[test]
fn a_server_gossips_on_the_wan_port_too() {
    let s1 = RunningAgent::start(&["-node", "w1", "-server", "-wan-port", "0"]);
    let s2 = RunningAgent::start(&["-node", "w2", "-server", "-wan-port=0"]);
    let existing = Value::Array(vec![format!("127.0.0.1:{}", s1.wan_port()).into()]);
    let req = mp_map(&[("Existing", existing), ("WAN", true.into())]);
    let (error, body) = call(&s2, "join", Some(req), true);
    assert_eq!(
        (error.as_str(), mp_get(&body, "Num").as_u64()),
        ("", Some(1))
    );
    let start = Instant::now();
    loop {
        let (_, body) = call(&s1, "members-wan", None, true);
        let mut names: Vec<&str> = mp_get(&body, "Members")
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| mp_get(m, "Status").as_str() == Some("alive"))
            .filter_map(|m| mp_get(m, "Name").as_str())
            .collect();
        names.sort_unstable();
        if names == ["w1.dc1", "w2.dc1"] {
            break;
        }
        assert!(start.elapsed() < CONVERGE, "WAN members: {names:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A client has no WAN pool to join.
    let client = RunningAgent::start(&["-node", "c1"]);
    let existing = Value::Array(vec![format!("127.0.0.1:{}", s1.wan_port()).into()]);
    let req = mp_map(&[("Existing", existing), ("WAN", true.into())]);
    let (error, _) = call(&client, "join", Some(req), true);
    assert_eq!(error, "Must be a server to join WAN cluster");
}
