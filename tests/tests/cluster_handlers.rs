//! Event handlers on the simulated network with the virtual clock: which script runs for
//! which event, in what order, with which environment and stdin (Serf's), one at a time,
//! with a deadline; replaced by a reload.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;

use std::net::SocketAddr;
use std::time::Duration;

use rpc_support::{V, handshake, map, req, req_with};
use tandem_core::cluster::MemberStatus;
use tandem_core::{Agent, Config, Effect, HandlerId, HandlerRun, Instant, Listener, Output, Pool};
use tandem_tests::netsim::{Net, NetConfig, START, SimNode, lan_addr, node_name};
use tandem_tests::netsim_agent::agent_config;

const TICK: Duration = Duration::from_millis(100);

/// An agent whose handler runs are recorded for the test to answer.
struct Node {
    agent: Agent,
    /// Every run the agent asked for, in order.
    runs: Vec<HandlerRun>,
    /// Runs the agent asked to stop.
    cancels: Vec<HandlerId>,
    /// Runs answered so far (a prefix of `runs`).
    answered: usize,
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
                Output::Effect(Effect::RunHandler(run)) => self.runs.push(run),
                Output::Effect(Effect::CancelHandler(id)) => self.cancels.push(id),
                Output::Log(record) => return Some(record.line.to_string()),
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

fn net(handlers: &[&[&str]]) -> Net<Node> {
    let mut sim = Net::new(NetConfig::default(), START);
    sim.record_events = true;
    for (i, h) in handlers.iter().enumerate() {
        let cfg = Config {
            event_handlers: h.iter().map(|s| s.to_string()).collect(),
            ..agent_config(i)
        };
        let node = Node {
            agent: Agent::new(cfg, 7 + i as u64, sim.now),
            runs: Vec::new(),
            cancels: Vec::new(),
            answered: 0,
        };
        sim.add(node, lan_addr(i), None);
    }
    sim
}

/// Answers every run of node `i` as a success, as a script that exits 0 at once would; the
/// next run starts only after the answer, so this loops until none is waiting.
fn answer_all(sim: &mut Net<Node>, i: usize) {
    while sim.node(i).answered < sim.node(i).runs.len() {
        sim.with(i, |n, now| {
            let id = n.runs[n.answered].id;
            n.answered += 1;
            n.agent.handler_finished(id, Ok(()), b"ok\n", now);
        });
    }
}

fn run_answering(sim: &mut Net<Node>, d: Duration) {
    let end = sim.now + d;
    while sim.now < end {
        let t = (sim.now + TICK).min(end);
        sim.run_until(t);
        for i in 0..sim.len() {
            if sim.is_alive(i) {
                answer_all(sim, i);
            }
        }
    }
}

fn env<'a>(run: &'a HandlerRun, key: &str) -> Option<&'a str> {
    run.env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `(script, SERF_EVENT, stdin)` of each run.
fn summary(runs: &[HandlerRun]) -> Vec<(String, String, String)> {
    runs.iter()
        .map(|r| {
            (
                r.script.clone(),
                env(r, "SERF_EVENT").unwrap_or("").to_string(),
                String::from_utf8_lossy(&r.stdin).into_owned(),
            )
        })
        .collect()
}

fn member_line(i: usize) -> String {
    let addr = lan_addr(i);
    format!(
        "{}\t{}\tnode\tbuild={},dc=dc1,role=node,vsn=2\n",
        node_name(i),
        addr.ip(),
        tandem_core::VERSION
    )
}

/// Runs one RPC command on node `i` (with a body, if any), after a handshake.
fn rpc_call(sim: &mut Net<Node>, i: usize, cmd: &str, body: Option<V>) {
    let mut bytes = handshake(0);
    bytes.extend(match body {
        Some(body) => req_with(cmd, 1, &body),
        None => req(cmd, 1),
    });
    sim.with(i, |n, now| {
        let c = n.agent.accept(Listener::Rpc, None, now).unwrap();
        assert_eq!(n.agent.handle_stream(c, &bytes, now), bytes.len());
        n.agent.handle_reset(c, now);
    });
}

fn user_event(sim: &mut Net<Node>, i: usize, name: &str, payload: &[u8]) {
    let body = map(&[
        ("Name", name.into()),
        ("Payload", V::B(payload.to_vec())),
        ("Coalesce", false.into()),
    ]);
    rpc_call(sim, i, "event", Some(body));
}

fn sees(sim: &Net<Node>, i: usize, j: usize, status: MemberStatus) -> bool {
    let addr = lan_addr(j);
    sim.node(i).agent.cluster().member_status(Pool::Lan, addr) == Some(status)
}

#[test]
fn each_handler_sees_the_events_serf_gives_it_in_order_with_serfs_env_and_stdin() {
    let mut sim = net(&[
        &["all.sh"],
        &[
            "member-join=join.sh",
            "user:deploy=deploy.sh",
            "user:other=no.sh",
        ],
        &["member-leave,member-failed=gone.sh", "user=user.sh"],
        &[],
    ]);
    sim.with(1, |n, now| {
        n.agent.join(&[&lan_addr(0).to_string()], false, now)
    });
    run_answering(&mut sim, Duration::from_secs(3));
    sim.with(2, |n, now| {
        n.agent.join(&[&lan_addr(0).to_string()], false, now)
    });
    run_answering(&mut sim, Duration::from_secs(5));
    user_event(&mut sim, 0, "deploy", b"v1");
    run_answering(&mut sim, Duration::from_secs(3));
    // Node 3 comes and leaves gracefully.
    sim.with(3, |n, now| {
        n.agent.join(&[&lan_addr(0).to_string()], false, now)
    });
    run_answering(&mut sim, Duration::from_secs(5));
    rpc_call(&mut sim, 3, "leave", None);
    run_answering(&mut sim, Duration::from_secs(10));
    assert!(sees(&sim, 0, 3, MemberStatus::Left));
    sim.kill(3);
    // A crash of node 1: the others find it failed.
    sim.kill(1);
    let t = Duration::from_secs(60);
    let mut waited = Duration::ZERO;
    while !(sees(&sim, 0, 1, MemberStatus::Failed) && sees(&sim, 2, 1, MemberStatus::Failed)) {
        assert!(waited < t, "node 1 not found failed");
        run_answering(&mut sim, Duration::from_secs(1));
        waited += Duration::from_secs(1);
    }

    // Node 0 runs its one script for everything: the joins, the user event, the leave,
    // the failure.
    let s0 = summary(&sim.node(0).runs);
    assert_eq!(
        s0,
        [
            ("all.sh".into(), "member-join".into(), member_line(1)),
            ("all.sh".into(), "member-join".into(), member_line(2)),
            ("all.sh".into(), "user".into(), "v1\n".into()),
            ("all.sh".into(), "member-join".into(), member_line(3)),
            ("all.sh".into(), "member-leave".into(), member_line(3)),
            ("all.sh".into(), "member-failed".into(), member_line(1)),
        ]
    );
    let user = &sim.node(0).runs[2];
    assert_eq!(env(user, "SERF_USER_EVENT"), Some("deploy"));
    assert_eq!(env(user, "SERF_SELF_NAME"), Some(node_name(0).as_str()));
    assert_eq!(env(user, "SERF_SELF_ROLE"), Some("node"));
    assert_eq!(env(user, "SERF_TAG_ROLE"), Some("node"));
    assert_eq!(env(user, "SERF_TAG_DC"), Some("dc1"));
    assert_eq!(env(user, "SERF_TAG_BUILD"), Some(tandem_core::VERSION));
    let ltime: u64 = env(user, "SERF_USER_LTIME").unwrap().parse().unwrap();
    assert!(ltime >= 1);
    assert_eq!(env(&sim.node(0).runs[0], "SERF_USER_EVENT"), None);

    // Node 1: its joins (node 0's, then node 2's) and the deploy, never `user:other`.
    let s1 = summary(&sim.node(1).runs);
    assert_eq!(
        s1,
        [
            ("join.sh".into(), "member-join".into(), member_line(0)),
            ("join.sh".into(), "member-join".into(), member_line(2)),
            ("deploy.sh".into(), "user".into(), "v1\n".into()),
            ("join.sh".into(), "member-join".into(), member_line(3)),
        ]
    );
    assert_eq!(
        env(&sim.node(1).runs[2], "SERF_USER_LTIME"),
        Some(ltime.to_string().as_str()),
        "every node sees the event's one Lamport time"
    );

    // Node 2: the user event, node 3's leave, then node 1's failure.
    let s2 = summary(&sim.node(2).runs);
    assert_eq!(
        s2,
        [
            ("user.sh".into(), "user".into(), "v1\n".into()),
            ("gone.sh".into(), "member-leave".into(), member_line(3)),
            ("gone.sh".into(), "member-failed".into(), member_line(1)),
        ]
    );
}

#[test]
fn handlers_run_one_at_a_time_and_a_stuck_one_is_stopped_at_its_deadline() {
    let mut sim = net(&[&["first.sh", "second.sh"], &[]]);
    sim.with(0, |n, now| {
        let mut cfg = n.agent.config().clone();
        cfg.timing.event_handler_timeout_ms = 5_000;
        n.agent.apply_config(cfg, now);
    });
    sim.with(1, |n, now| {
        n.agent.join(&[&lan_addr(0).to_string()], false, now)
    });
    sim.run_for(Duration::from_secs(2));
    // One join, two scripts: only the first has started, nobody answers it.
    let runs = &sim.node(0).runs;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].script, "first.sh");
    assert_eq!(runs[0].max_output, 8 * 1024);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.node(0).runs.len(), 1, "the second waits for the first");
    assert!(sim.node(0).cancels.is_empty());
    sim.run_for(Duration::from_secs(2));
    // The deadline (5 s after the join's run started) passed: the first is stopped and
    // failed, the second starts.
    let first = sim.node(0).runs[0].id;
    assert_eq!(sim.node(0).cancels, [first]);
    assert_eq!(sim.node(0).runs.len(), 2);
    assert_eq!(sim.node(0).runs[1].script, "second.sh");
    assert!(
        sim.events(0).iter().any(|l| l
            .contains("[ERR] agent: Error invoking script 'first.sh': timed out after 5000 ms")),
        "{:?}",
        sim.events(0)
    );
    // A late answer for the first is ignored; the second's failure is logged.
    sim.with(0, |n, now| {
        n.agent.handler_finished(first, Ok(()), b"", now);
        let second = n.runs[1].id;
        n.agent
            .handler_finished(second, Err("exit status 2"), b"boom\n", now);
    });
    let stats = sim.node(0).agent.handler_stats();
    assert_eq!((stats.runs, stats.failures, stats.timeouts), (2, 2, 1));
    assert!(
        sim.events(0)
            .iter()
            .any(|l| l.contains("[ERR] agent: Error invoking script 'second.sh': exit status 2"))
    );
}

#[test]
fn a_reload_replaces_the_handlers_and_a_bad_set_is_refused() {
    let mut sim = net(&[&["member-join=old.sh"], &[], &[]]);
    sim.with(0, |n, now| {
        let mut cfg = n.agent.config().clone();
        cfg.event_handlers = vec!["member-join=new.sh".into()];
        n.agent.apply_config(cfg, now);
        assert_eq!(n.agent.event_handlers()[0].script, "new.sh");
        let mut bad = n.agent.config().clone();
        bad.event_handlers = vec!["member-jion=x".into()];
        n.agent.apply_config(bad, now);
        assert_eq!(n.agent.event_handlers()[0].script, "new.sh", "kept");
    });
    sim.with(1, |n, now| {
        n.agent.join(&[&lan_addr(0).to_string()], false, now)
    });
    run_answering(&mut sim, Duration::from_secs(3));
    assert_eq!(summary(&sim.node(0).runs)[0].0, "new.sh");
    assert!(
        sim.events(0)
            .iter()
            .any(|l| l.contains("agent: event handlers not changed: Invalid event script"))
    );
}

#[test]
fn a_full_queue_drops_runs_and_counts_them() {
    let mut sim = net(&[&["a.sh", "b.sh", "c.sh"], &[]]);
    sim.with(0, |n, now| {
        let mut cfg = n.agent.config().clone();
        cfg.limits.event_handler_queue = 1;
        n.agent.apply_config(cfg, now);
    });
    sim.with(1, |n, now| {
        n.agent.join(&[&lan_addr(0).to_string()], false, now)
    });
    sim.run_for(Duration::from_secs(2));
    // a.sh started at once (the queue was empty), b.sh queued, c.sh dropped.
    assert_eq!(sim.node(0).agent.handler_stats().dropped, 1);
    answer_all(&mut sim, 0);
    let scripts: Vec<_> = sim.node(0).runs.iter().map(|r| r.script.clone()).collect();
    assert_eq!(scripts, ["a.sh", "b.sh"]);
}

#[test]
fn a_query_handlers_output_is_the_nodes_response_and_an_oversized_one_is_refused() {
    let mut sim = net(&[&["query:load=load.sh"], &[], &["query=big.sh"]]);
    for i in [1, 2] {
        sim.with(i, |n, now| {
            n.agent.join(&[&lan_addr(0).to_string()], false, now)
        });
    }
    run_answering(&mut sim, Duration::from_secs(5));
    // Node 1 asks; nodes 0 and 2 run their handlers, which the test answers by hand.
    let body = map(&[("Name", "load".into()), ("Payload", V::B(b"q".to_vec()))]);
    let mut bytes = handshake(0);
    bytes.extend(req_with("query", 1, &body));
    let c = sim.with(1, |n, now| {
        let c = n.agent.accept(Listener::Rpc, None, now).unwrap();
        assert_eq!(n.agent.handle_stream(c, &bytes, now), bytes.len());
        c
    });
    sim.run_for(Duration::from_millis(500));
    let run = sim.node(0).runs.last().unwrap().clone();
    assert_eq!(run.script, "load.sh");
    assert_eq!(env(&run, "SERF_EVENT"), Some("query"));
    assert_eq!(env(&run, "SERF_QUERY_NAME"), Some("load"));
    assert!(env(&run, "SERF_QUERY_LTIME").is_some());
    assert_eq!(run.stdin, b"q\n");
    sim.with(0, |n, now| {
        n.answered = n.runs.len();
        n.agent.handler_finished(run.id, Ok(()), b"0.42\n", now);
    });
    // Node 2's answer is over the 1,024-byte response limit: refused and logged.
    let big = sim.node(2).runs.last().unwrap().id;
    sim.with(2, |n, now| {
        n.answered = n.runs.len();
        n.agent.handler_finished(big, Ok(()), &[b'x'; 2000], now);
    });
    assert!(
        sim.events(2)
            .iter()
            .any(|l| l.contains("[WARN] agent: Failed to respond to query 'load': ")),
        "{:#?}",
        sim.events(2)
    );
    sim.run_for(Duration::from_secs(20));
    let out = sim.with(1, |n, now| {
        let out = n.agent.tx_pending(c).to_vec();
        n.agent.tx_consume(c, out.len(), now);
        out
    });
    let records = rpc_support::values(&out);
    let responses: Vec<&V> = records
        .iter()
        .filter(|v| v.try_get("Type") == Some(&V::from("response")))
        .collect();
    assert_eq!(responses.len(), 1, "{records:#?}");
    assert_eq!(responses[0].get("From"), &V::from(node_name(0).as_str()));
    assert_eq!(responses[0].get("Payload"), &V::B(b"0.42\n".to_vec()));
    assert!(
        records
            .iter()
            .any(|v| v.try_get("Type") == Some(&V::from("done")))
    );
}
