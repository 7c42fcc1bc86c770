//! Whole agents — RPC, HTTP API and gossip together — on the simulated network with the
//! virtual clock: joins over the RPC, members through both protocols, a crash detected as
//! failed, force-leave, a graceful leave, and the same seed giving the same trace.

use std::time::Duration;

use tandem_core::cluster::MemberStatus;
use tandem_core::{Agent, ConnId, Listener, Pool};
use tandem_tests::http::{post_api, take_responses};
use tandem_tests::netsim::{Net, NetConfig, lan_addr, node_name};
use tandem_tests::netsim_agent::agent_net;

const TICK: Duration = Duration::from_millis(100);

fn rpc(cmd: &str, seq: u64, body: Option<&[(&str, Value)]>) -> Vec<u8> {
    let mut v = tandem_tests::rpc_header(cmd, seq);
    if let Some(fields) = body {
        rmp::encode::write_map_len(&mut v, fields.len() as u32).unwrap();
        for (k, val) in fields {
            rmp::encode::write_str(&mut v, k).unwrap();
            match val {
                Value::Int(n) => {
                    rmp::encode::write_uint(&mut v, *n).unwrap();
                }
                Value::Str(s) => rmp::encode::write_str(&mut v, s).unwrap(),
                Value::Bool(b) => rmp::encode::write_bool(&mut v, *b).unwrap(),
                Value::Strs(list) => {
                    rmp::encode::write_array_len(&mut v, list.len() as u32).unwrap();
                    for s in list {
                        rmp::encode::write_str(&mut v, s).unwrap();
                    }
                }
            }
        }
    }
    v
}

enum Value {
    Int(u64),
    Str(String),
    Bool(bool),
    Strs(Vec<String>),
}

/// The RPC `event` request for user event `deploy` with payload `v2` (Seq 2).
fn deploy_event() -> Vec<u8> {
    rpc(
        "event",
        2,
        Some(&[
            ("Name", Value::Str("deploy".into())),
            ("Payload", Value::Str("v2".into())),
            ("Coalesce", Value::Bool(false)),
        ]),
    )
}

/// Opens an RPC connection on agent `i` and shakes hands.
fn rpc_conn(sim: &mut Net<Agent>, i: usize) -> ConnId {
    sim.with(i, |a, now| {
        let c = a.accept(Listener::Rpc, None, now).unwrap();
        let hs = rpc("handshake", 0, Some(&[("Version", Value::Int(1))]));
        assert_eq!(a.handle_stream(c, &hs, now), hs.len());
        c
    })
}

/// Sends bytes on a connection of agent `i`, returning what it has written so far after
/// `wait` of simulated time, and consuming it.
fn exchange(sim: &mut Net<Agent>, i: usize, c: ConnId, bytes: &[u8], wait: Duration) -> Vec<u8> {
    sim.with(i, |a, now| {
        assert_eq!(a.handle_stream(c, bytes, now), bytes.len());
    });
    sim.run_for(wait);
    sim.with(i, |a, now| {
        let out = a.tx_pending(c).to_vec();
        a.tx_consume(c, out.len(), now);
        out
    })
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| w == &needle)
        .count()
}

fn statuses(sim: &Net<Agent>, i: usize) -> Vec<(String, MemberStatus)> {
    sim.node(i)
        .cluster()
        .members(Pool::Lan)
        .into_iter()
        .map(|m| (m.name, m.status))
        .collect()
}

fn everyone_sees(sim: &Net<Agent>, nodes: &[usize], name: &str, status: MemberStatus) -> bool {
    nodes
        .iter()
        .all(|&i| statuses(sim, i).contains(&(name.to_string(), status)))
}

fn run_story(seed: u64) -> u64 {
    let n = 5;
    let mut sim = agent_net(n, NetConfig::default(), seed);
    // Every agent but 0 joins agent 0 over its own RPC.
    let mut joins = Vec::new();
    for i in 1..n {
        let c = rpc_conn(&mut sim, i);
        let target = lan_addr(0).to_string();
        let req = rpc(
            "join",
            2,
            Some(&[
                ("Existing", Value::Strs(vec![target])),
                ("WAN", Value::Bool(false)),
            ]),
        );
        sim.with(i, |a, now| {
            assert_eq!(a.handle_stream(c, &req, now), req.len())
        });
        joins.push((i, c));
    }
    let all: Vec<usize> = (0..n).collect();
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| {
        all.iter().all(|&i| {
            statuses(s, i)
                .iter()
                .filter(|(_, st)| *st == MemberStatus::Alive)
                .count()
                == n
        })
    })
    .expect("five agents converge");
    for (i, c) in joins {
        let reply = sim.with(i, |a, _| a.tx_pending(c).to_vec());
        // The handshake reply, then the join's header and {"Num":1}.
        assert!(
            reply.ends_with(&[0x81, 0xa3, b'N', b'u', b'm', 0x01]),
            "agent {i}: {reply:02x?}"
        );
    }

    // members over the RPC on agent 1: five alive members.
    let c1 = rpc_conn(&mut sim, 1);
    let reply = exchange(&mut sim, 1, c1, &rpc("members", 3, None), Duration::ZERO);
    assert_eq!(count(&reply, b"\xa5alive"), n, "{reply:02x?}");
    // ... and over the HTTP API on agent 2.
    let h = sim.with(2, |a, now| a.accept(Listener::Http, None, now).unwrap());
    let mut out = exchange(
        &mut sim,
        2,
        h,
        &post_api(r#"{"action":"exec","command":"members"}"#),
        Duration::ZERO,
    );
    let r = take_responses(&mut out).remove(0).json();
    let members = r["body"]["results"][0]["members"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(members.len(), n);
    assert!(members.iter().all(|m| m["Status"] == "alive"));

    // Agent 4 crashes: failed everywhere, then force-left from agent 0's RPC.
    sim.kill(4);
    let rest = [0, 1, 2, 3];
    sim.run_until_cond(Duration::from_secs(60), TICK, |s| {
        everyone_sees(s, &rest, &node_name(4), MemberStatus::Failed)
    })
    .expect("a crashed agent is failed everywhere");
    let c0 = rpc_conn(&mut sim, 0);
    let fl = rpc(
        "force-leave",
        4,
        Some(&[
            ("Node", Value::Str(node_name(4))),
            ("Prune", Value::Bool(false)),
        ]),
    );
    let reply = exchange(&mut sim, 0, c0, &fl, Duration::ZERO);
    assert!(reply.ends_with(&[
        0x82, 0xa5, b'E', b'r', b'r', b'o', b'r', 0xa0, 0xa3, b'S', b'e', b'q', 0x04
    ]));
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| {
        everyone_sees(s, &rest, &node_name(4), MemberStatus::Left)
    })
    .expect("force-leave turns it left everywhere");

    // Agent 3 leaves gracefully over its RPC: left (never failed) on the others, and the
    // agent asks its runtime to shut down once the leave has propagated.
    let c3 = rpc_conn(&mut sim, 3);
    exchange(&mut sim, 3, c3, &rpc("leave", 5, None), Duration::ZERO);
    let others = [0, 1, 2];
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| {
        everyone_sees(s, &others, &node_name(3), MemberStatus::Left)
    })
    .expect("a graceful leave shows left everywhere");
    sim.run_for(Duration::from_secs(2));
    assert!(
        sim.events(3).iter().any(|e| e.0 == "Effect(Shutdown)"),
        "the leaving agent asked to shut down"
    );
    for &i in &others {
        assert!(
            !sim.events(i)
                .iter()
                .any(|e| e.0.contains("EventMemberFailed: node-3")),
            "agent {i} saw node-3 fail"
        );
    }
    sim.trace()
}

#[test]
fn five_agents_join_fail_force_leave_and_leave_over_their_rpc() {
    run_story(40);
}

#[test]
fn the_same_seed_gives_the_same_agent_trace() {
    assert_eq!(run_story(41), run_story(41));
    assert_ne!(run_story(41), run_story(42));
}

/// One HTTP API call on a fresh connection of agent `i`, answered within `wait`.
fn api(sim: &mut Net<Agent>, i: usize, body: &str, wait: Duration) -> serde_json::Value {
    let h = sim.with(i, |a, now| a.accept(Listener::Http, None, now).unwrap());
    let mut out = exchange(sim, i, h, &post_api(body), wait);
    take_responses(&mut out).remove(0).json()
}

#[test]
fn the_http_events_command_streams_a_member_join_and_a_user_event() {
    let mut sim = agent_net(2, NetConfig::default(), 43);
    let init = api(&mut sim, 0, r#"{"action":"init_session"}"#, Duration::ZERO);
    let (sid, cid) = (
        init["sessionId"].as_str().unwrap().to_string(),
        init["consumerId"].as_str().unwrap().to_string(),
    );
    let pull = format!(r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid}"}}"#);
    api(&mut sim, 0, &pull, Duration::from_millis(200));
    let started = api(
        &mut sim,
        0,
        &format!(
            r#"{{"action":"async_exec","command":"events member-join,user:deploy","sessionId":"{sid}"}}"#
        ),
        Duration::ZERO,
    );
    assert_eq!(started["state"], "SCHEDULED");
    // Agent 1 joins through the HTTP API's `join` command, then fires a user event.
    let joined = api(
        &mut sim,
        1,
        &format!(r#"{{"action":"exec","command":"join {}"}}"#, lan_addr(0)),
        Duration::from_secs(3),
    );
    let results = joined["body"]["results"].as_array().unwrap();
    assert_eq!(results[0]["type"], "join", "{joined}");
    assert_eq!(results[0]["joined"], 1);
    assert_eq!(results[1]["statusCode"], 0);
    sim.run_for(Duration::from_secs(2));
    let c1 = rpc_conn(&mut sim, 1);
    let ev = deploy_event();
    exchange(&mut sim, 1, c1, &ev, Duration::from_secs(2));
    let items = api(&mut sim, 0, &pull, Duration::from_millis(200));
    let items = items["body"]["results"].as_array().unwrap().clone();
    let events: Vec<&serde_json::Value> = items.iter().filter(|i| i["type"] == "event").collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "member-join" && e["members"][0]["Name"] == node_name(1)),
        "{items:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "user" && e["name"] == "deploy" && e["payload"] == "v2"),
        "{items:?}"
    );
}

/// Agents on a network, each logging at DEBUG.
fn debug_agents(n: usize, seed: u64) -> Net<Agent> {
    let mut sim = Net::new(NetConfig::default(), tandem_tests::netsim::START);
    for i in 0..n {
        let cfg = tandem_core::Config {
            log_level: tandem_core::Level::Debug,
            ..tandem_tests::netsim_agent::agent_config(i)
        };
        let agent = Agent::new(cfg, seed + i as u64, sim.now);
        sim.add(agent, lan_addr(i), None);
    }
    sim
}

#[test]
fn monitor_at_debug_shows_a_join_to_an_unreachable_address_running_and_failing() {
    let mut sim = debug_agents(1, 50);
    let mon = rpc_conn(&mut sim, 0);
    let req = rpc(
        "monitor",
        2,
        Some(&[("LogLevel", Value::Str("DEBUG".into()))]),
    );
    exchange(&mut sim, 0, mon, &req, Duration::ZERO);
    let c = rpc_conn(&mut sim, 0);
    let join = rpc(
        "join",
        3,
        Some(&[
            ("Existing", Value::Strs(vec!["10.99.0.1:8301".into()])),
            ("WAN", Value::Bool(false)),
        ]),
    );
    sim.with(0, |a, now| {
        assert_eq!(a.handle_stream(c, &join, now), join.len());
    });
    // While it runs: the attempt is on the monitor already.
    let running = exchange(&mut sim, 0, mon, &[], Duration::from_secs(1));
    let running = String::from_utf8_lossy(&running).into_owned();
    assert!(
        running.contains("[INFO] agent: joining: [10.99.0.1:8301] replay: false"),
        "{running}"
    );
    assert!(!running.contains("error joining"), "{running}");
    sim.run_for(Duration::from_secs(5));
    let failed = sim.with(0, |a, now| {
        let out = a.tx_pending(mon).to_vec();
        a.tx_consume(mon, out.len(), now);
        String::from_utf8_lossy(&out).into_owned()
    });
    assert!(
        failed.contains("[DEBUG] memberlist: Failed to join 10.99.0.1:8301: no response"),
        "{failed}"
    );
    assert!(
        failed.contains("[WARN] agent: error joining: 1 error occurred:"),
        "{failed}"
    );
}

#[test]
fn accepted_rpc_clients_member_events_and_user_events_are_logged_as_serf_does() {
    let mut sim = debug_agents(2, 51);
    let client: std::net::SocketAddr = "127.0.0.1:50123".parse().unwrap();
    let c = sim.with(0, |a, now| {
        let c = a.accept(Listener::Rpc, Some(client), now).unwrap();
        let hs = rpc("handshake", 0, Some(&[("Version", Value::Int(1))]));
        assert_eq!(a.handle_stream(c, &hs, now), hs.len());
        c
    });
    let logs = |sim: &Net<Agent>| -> Vec<String> {
        sim.events(0)
            .iter()
            .filter(|e| e.0.starts_with("Log("))
            .map(|e| e.0.clone())
            .collect()
    };
    assert_eq!(
        logs(&sim)
            .iter()
            .filter(|l| l.contains("[INFO] agent.ipc: Accepted client: 127.0.0.1:50123"))
            .count(),
        1,
        "{:?}",
        logs(&sim)
    );
    let ev = deploy_event();
    exchange(&mut sim, 0, c, &ev, Duration::from_secs(1));
    let has = |sim: &Net<Agent>, line: &str| logs(sim).iter().any(|l| l.contains(line));
    assert!(
        has(
            &sim,
            // The events are Debug-printed: the payload's quotes show escaped.
            r#"[DEBUG] agent: Requesting user event send: deploy. Coalesced: false. Payload: \"v2\""#
        ),
        "{:?}",
        logs(&sim)
    );
    assert!(
        has(&sim, "[INFO] agent: Received event: user-event: deploy"),
        "{:?}",
        logs(&sim)
    );
    // Over the limit: refused, and the refusal is logged as Serf's agent does.
    let big = rpc(
        "event",
        3,
        Some(&[
            ("Name", Value::Str("big".into())),
            ("Payload", Value::Str("x".repeat(600))),
            ("Coalesce", Value::Bool(false)),
        ]),
    );
    exchange(&mut sim, 0, c, &big, Duration::from_millis(10));
    assert!(
        has(&sim, "[WARN] agent: failed to send user event: "),
        "{:?}",
        logs(&sim)
    );
    // A member change: Serf's `serf: EventMemberJoin` and then the agent's
    // `Received event: member-join`.
    assert!(!has(&sim, "agent: Received event: member-join"));
    let join = rpc(
        "join",
        4,
        Some(&[
            ("Existing", Value::Strs(vec![lan_addr(1).to_string()])),
            ("WAN", Value::Bool(false)),
        ]),
    );
    exchange(&mut sim, 0, c, &join, Duration::from_secs(3));
    assert!(
        has(&sim, "[INFO] agent: Received event: member-join"),
        "{:?}",
        logs(&sim)
    );
}

#[test]
fn joining_the_agents_own_ip_over_the_rpc_is_an_error_naming_it() {
    let mut sim = agent_net(1, NetConfig::default(), 52);
    let c = rpc_conn(&mut sim, 0);
    // An IP without a port means the agent's own LAN port: `tandem join 127.0.0.1`.
    let ip = lan_addr(0).ip().to_string();
    let join = rpc(
        "join",
        2,
        Some(&[
            ("Existing", Value::Strs(vec![ip])),
            ("WAN", Value::Bool(false)),
        ]),
    );
    let reply = exchange(&mut sim, 0, c, &join, Duration::ZERO);
    let text = String::from_utf8_lossy(&reply).into_owned();
    assert!(
        text.contains(&format!(
            "Failed to join {}: it is this agent's own address",
            lan_addr(0)
        )),
        "{text}"
    );
    assert!(reply.ends_with(b"\xa3Num\x00"), "{reply:02x?}");
}

/// Three agents, 1 and 2 joined to 0 over their RPC, all alive everywhere.
fn three_joined_agents(seed: u64) -> Net<Agent> {
    let mut sim = agent_net(3, NetConfig::default(), seed);
    let target = lan_addr(0).to_string();
    for i in 1..3 {
        sim.with(i, |a, now| a.join(&[target.as_str()], false, now));
    }
    let all = [0, 1, 2];
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| {
        (0..3).all(|i| everyone_sees(s, &all, &node_name(i), MemberStatus::Alive))
    })
    .expect("three agents converge");
    sim
}

#[test]
fn leave_answers_once_the_leave_has_spread_so_a_process_ending_at_the_reply_shows_left() {
    let mut sim = three_joined_agents(53);
    let c = rpc_conn(&mut sim, 2);
    sim.with(2, |a, now| a.tx_consume(c, a.tx_pending(c).len(), now));
    let leave = rpc("leave", 7, None);
    let asked = sim.now;
    sim.with(2, |a, now| {
        assert_eq!(a.handle_stream(c, &leave, now), leave.len());
    });
    // The reply (Error "", Seq 7) comes once the leave has spread, not at once.
    let reply = [
        0x82, 0xa5, b'E', b'r', b'r', b'o', b'r', 0xa0, 0xa3, b'S', b'e', b'q', 0x07,
    ];
    let answered = sim
        .run_until_cond(Duration::from_secs(10), Duration::from_millis(1), |s| {
            s.node(2).tx_pending(c).ends_with(&reply)
        })
        .expect("leave answered");
    assert!(
        answered >= Duration::from_millis(500),
        "answered after {answered:?}, before the leave could spread"
    );
    assert!(
        sim.now - asked <= Duration::from_secs(5),
        "within Serf's broadcast timeout"
    );
    // `tandem leave && kill …`: the process ends at the reply, and what it had not sent
    // yet is lost.
    sim.crash(2);
    let rest = [0, 1];
    sim.run_for(Duration::from_secs(30));
    assert!(
        everyone_sees(&sim, &rest, &node_name(2), MemberStatus::Left),
        "{:?} {:?}",
        statuses(&sim, 0),
        statuses(&sim, 1)
    );
    for i in rest {
        assert!(
            !sim.events(i)
                .iter()
                .any(|e| e.0.contains("EventMemberFailed: node-2")),
            "agent {i} saw node-2 fail"
        );
    }
}

#[test]
fn the_http_leave_command_ends_once_the_leave_has_spread() {
    let mut sim = three_joined_agents(57);
    let c = sim.with(2, |a, now| a.accept(Listener::Http, None, now).unwrap());
    let req = post_api(r#"{"action":"exec","command":"leave"}"#);
    let asked = sim.now;
    sim.with(2, |a, now| {
        assert_eq!(a.handle_stream(c, &req, now), req.len())
    });
    let answered = sim
        .run_until_cond(Duration::from_secs(10), Duration::from_millis(1), |s| {
            !s.node(2).tx_pending(c).is_empty()
        })
        .expect("exec leave answered");
    assert!(
        answered >= Duration::from_millis(500),
        "answered after {answered:?}, before the leave could spread"
    );
    assert!(sim.now - asked <= Duration::from_secs(5));
    let mut raw = sim.with(2, |a, now| {
        let raw = a.tx_pending(c).to_vec();
        a.tx_consume(c, raw.len(), now);
        raw
    });
    let resp = take_responses(&mut raw).pop().expect("one response");
    let body = resp.json();
    assert_eq!(body["state"], "SUCCEEDED", "{body}");
    let results = body["body"]["results"].as_array().expect("results");
    let texts: Vec<&str> = results
        .iter()
        .filter_map(|r| r["message"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["Graceful leave started", "Graceful leave complete"],
        "{body}"
    );
    assert_eq!(results.last().unwrap()["statusCode"], 0, "{body}");
    // Ending the process at the answer leaves the others showing it left, not failed.
    sim.crash(2);
    sim.run_for(Duration::from_secs(30));
    assert!(everyone_sees(
        &sim,
        &[0, 1],
        &node_name(2),
        MemberStatus::Left
    ));
}

#[test]
fn an_agent_that_joins_under_a_live_members_name_logs_the_conflict_and_shuts_down() {
    let mut sim = agent_net(2, NetConfig::default(), 54);
    let newcomer = Agent::new(
        tandem_core::Config {
            node_name: node_name(0),
            ..tandem_tests::netsim_agent::agent_config(2)
        },
        56,
        sim.now,
    );
    sim.add(newcomer, lan_addr(2), None);
    let target = lan_addr(1).to_string();
    sim.with(0, |a, now| a.join(&[target.as_str()], false, now));
    sim.run_for(Duration::from_secs(10));
    sim.with(2, |a, now| a.join(&[target.as_str()], false, now));
    sim.run_for(Duration::from_secs(5));
    let events = sim.events(2);
    assert!(
        events.iter().any(|e| e.0.contains(&format!(
            "[ERR] serf: Node name conflicts with another node at {}. Names must be unique!",
            lan_addr(0)
        ))),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.0 == "Effect(Shutdown)"),
        "{events:?}"
    );
    assert!(!sim.events(0).iter().any(|e| e.0 == "Effect(Shutdown)"));
    assert_eq!(
        statuses(&sim, 1)
            .iter()
            .filter(|(n, _)| *n == node_name(0))
            .count(),
        1
    );
}
