//! Cluster-wide jobs (docs/cluster-jobs.md) on the simulated network: three (or more) whole
//! agents gossiping on the virtual network, their peer streams carried by the harness, host
//! jobs answered by a script, all on the virtual clock.

use std::time::Duration;

use serde_json::{Value, json};
use tandem_core::Config;
use tandem_tests::jobs_sim::{JobCluster, Script, by_node, job_config};
use tandem_tests::netsim::NetConfig;

fn cluster(enable: [bool; 3]) -> JobCluster {
    let configs = (0..3).map(|i| job_config(i, enable[i])).collect();
    JobCluster::new(configs, NetConfig::default(), 11)
}

fn cluster_with(configs: Vec<Config>) -> JobCluster {
    JobCluster::new(configs, NetConfig::default(), 11)
}

/// `init_session` on agent 0: (sessionId, consumerId).
fn session(c: &mut JobCluster) -> (String, String) {
    let a = c.api(0, r#"{"action":"init_session"}"#);
    (
        a["sessionId"].as_str().unwrap().to_string(),
        a["consumerId"].as_str().unwrap().to_string(),
    )
}

/// Pulls until the job's own final `status` (the one without `node`) arrived or `limit`
/// of virtual time passed; returns the job's items (input statuses and echoes left out).
fn pull_job(c: &mut JobCluster, sid: &str, cid: &str, limit: Duration) -> Vec<Value> {
    let mut items = Vec::new();
    let start = c.sim.now;
    while c.sim.now - start < limit {
        let body = json!({"action":"pull_results","sessionId":sid,"consumerId":cid}).to_string();
        let conn = c.request(0, &body);
        let mut answer = None;
        c.run_until(Duration::from_secs(5), |c| {
            answer = answer.take().or_else(|| c.answer(0, conn));
            answer.is_some()
        });
        let answer = answer.expect("pull answered");
        for it in answer["body"]["results"].as_array().unwrap() {
            if it["jobId"] == 0 && it["type"] != "gap" || it["type"] == "command" {
                continue;
            }
            items.push(it.clone());
        }
        if items
            .iter()
            .any(|i| i["type"] == "status" && i.get("node").is_none())
        {
            return items;
        }
    }
    panic!("the job did not end within {limit:?}: {items:#?}");
}

fn async_exec(c: &mut JobCluster, sid: &str, extra: Value) -> Value {
    let mut req = json!({"action":"async_exec","sessionId":sid,"command":"work a 'b c'"});
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    let a = c.api(0, &req.to_string());
    assert_eq!(a["state"], "SCHEDULED", "{a}");
    a
}

fn summary(items: &[Value]) -> &Value {
    items
        .iter()
        .find(|i| i["type"] == "summary")
        .expect("a summary")
}

fn node_status<'a>(items: &'a [Value], node: &str) -> &'a Value {
    let statuses: Vec<&Value> = items
        .iter()
        .filter(|i| i["type"] == "status" && i["node"] == node)
        .collect();
    assert_eq!(statuses.len(), 1, "one status for {node}: {items:#?}");
    statuses[0]
}

#[test]
fn a_targeted_async_exec_streams_every_nodes_items_in_order_tagged_with_one_status_each() {
    let mut c = cluster([true; 3]);
    let (sid, cid) = session(&mut c);
    let a = async_exec(&mut c, &sid, json!({"nodes": ".*"}));
    let job = a["body"]["jobId"].clone();
    let items = pull_job(&mut c, &sid, &cid, Duration::from_secs(30));
    assert!(items.iter().all(|i| i["jobId"] == job), "{items:#?}");
    let groups = by_node(&items);
    for i in 0..3 {
        let name = format!("node-{i}");
        let got: Vec<&str> = groups[&name]
            .iter()
            .map(|i| i["message"].as_str().unwrap_or("<status>"))
            .collect();
        let want = [
            format!("{name} line 0"),
            format!("{name} line 1"),
            format!("{name} line 2"),
            "<status>".to_string(),
        ];
        assert_eq!(got, want, "{name}'s items in order, its status last");
        let st = node_status(&items, &name);
        assert_eq!(st["statusCode"], 0);
        assert!(st.get("error").is_none());
    }
    // Every node ran the command with its arguments, split as always.
    let mut ran: Vec<usize> = c.started.iter().map(|s| s.node).collect();
    ran.sort();
    assert_eq!(ran, [0, 1, 2]);
    assert!(c.started.iter().all(|s| s.args == ["a", "b c"]));
    let s = summary(&items);
    let all = json!(["node-0", "node-1", "node-2"]);
    assert_eq!(s["targeted"], all);
    assert_eq!(s["answered"], all);
    assert_eq!(s["failed"], json!([]));
    assert_eq!(s["timedOut"], json!([]));
    // The summary, then the job's own status come last.
    let n = items.len();
    assert_eq!(items[n - 2]["type"], "summary");
    assert_eq!(items[n - 1]["statusCode"], 0);
}

#[test]
fn exec_with_a_tag_target_answers_once_every_targeted_node_is_accounted_for() {
    let mut configs: Vec<Config> = (0..3).map(|i| job_config(i, true)).collect();
    for cfg in &mut configs[1..] {
        cfg.tags.insert("role".into(), "edge".into());
    }
    configs[0].tags.insert("role".into(), "edge-proxy".into());
    let mut c = cluster_with(configs);
    let conn = c.request(
        0,
        r#"{"action":"exec","command":"work","tags":{"role":"edge"}}"#,
    );
    let mut answer = None;
    c.run_until(Duration::from_secs(30), |c| {
        answer = answer.take().or_else(|| c.answer(0, conn));
        answer.is_some()
    })
    .expect("answered");
    let a = answer.unwrap();
    assert_eq!(a["state"], "SUCCEEDED", "{a}");
    assert_eq!(a["body"]["jobStatus"], "TERMINATED");
    let items = a["body"]["results"].as_array().unwrap().clone();
    // Anchored: `edge-proxy` does not match `edge`, so the origin is not a target.
    let s = summary(&items);
    assert_eq!(s["targeted"], json!(["node-1", "node-2"]));
    assert_eq!(s["answered"], json!(["node-1", "node-2"]));
    assert!(!by_node(&items).contains_key("node-0"));
    assert_eq!(items.last().unwrap()["statusCode"], 0);
}

#[test]
fn a_node_without_remote_exec_answers_refused_and_runs_nothing() {
    let mut c = cluster([true, true, false]);
    let (sid, cid) = session(&mut c);
    async_exec(&mut c, &sid, json!({"nodes": "node-[12]"}));
    let items = pull_job(&mut c, &sid, &cid, Duration::from_secs(30));
    let st = node_status(&items, "node-2");
    assert_eq!(st["error"], "refused");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("-enable-remote-exec")
    );
    assert!(c.started.iter().all(|s| s.node != 2), "node-2 ran nothing");
    assert_eq!(node_status(&items, "node-1")["statusCode"], 0);
    let s = summary(&items);
    assert_eq!(s["answered"], json!(["node-1"]));
    assert_eq!(s["failed"], json!(["node-2"]));
    let end = items.last().unwrap();
    assert_eq!(end["statusCode"], 1);
    assert_eq!(end["message"], "1 of 2 nodes failed or timed out");
}

#[test]
fn a_command_the_target_does_not_know_is_an_unknown_command_there() {
    let mut c = cluster([true; 3]);
    let (sid, cid) = session(&mut c);
    let a = c.api(
        0,
        &json!({"action":"async_exec","sessionId":sid,"command":"nosuch","nodes":".*"}).to_string(),
    );
    assert_eq!(a["state"], "SCHEDULED", "{a}");
    let items = pull_job(&mut c, &sid, &cid, Duration::from_secs(30));
    for i in 0..3 {
        assert_eq!(
            node_status(&items, &format!("node-{i}"))["error"],
            "unknown command"
        );
    }
    assert!(c.started.is_empty());
}

#[test]
fn a_node_killed_mid_job_is_reported_unreachable_at_once() {
    let mut c = cluster([true; 3]);
    c.scripts[2] = Script::Hang(1);
    let (sid, cid) = session(&mut c);
    async_exec(&mut c, &sid, json!({"nodes": ".*", "execTimeout": 600_000}));
    c.run_until(Duration::from_secs(10), |c| {
        c.started.iter().any(|s| s.node == 2)
    })
    .expect("node-2 started");
    let killed_at = c.sim.now;
    c.kill(2);
    let items = pull_job(&mut c, &sid, &cid, Duration::from_secs(30));
    let st = node_status(&items, "node-2");
    assert_eq!(st["error"], "unreachable");
    assert_eq!(st["message"], "connection lost");
    // Its one item before the kill is kept, before its status.
    let g = by_node(&items);
    assert_eq!(g["node-2"][0]["message"], "node-2 line 0");
    assert!(c.sim.now - killed_at < Duration::from_secs(10));
    assert_eq!(summary(&items)["failed"], json!(["node-2"]));
}

#[test]
fn a_node_cut_off_before_the_start_is_unreachable_at_the_ack_deadline() {
    let mut c = cluster([true; 3]);
    // node-2 still looks alive to the origin, but hears nothing and says nothing.
    c.sim.partition(&[&[0, 1], &[2]]);
    let (sid, cid) = session(&mut c);
    let start = c.sim.now;
    async_exec(&mut c, &sid, json!({"nodes": ".*", "execTimeout": 600_000}));
    let items = pull_job(&mut c, &sid, &cid, Duration::from_secs(60));
    let st = node_status(&items, "node-2");
    assert_eq!(st["error"], "unreachable");
    // The query's timeout for 3 members: 200 ms × 16 × ⌈log10(4)⌉ = 3.2 s.
    let took = c.sim.now - start;
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(summary(&items)["answered"], json!(["node-0", "node-1"]));
}

#[test]
fn exec_reports_a_node_that_does_not_finish_as_timeout() {
    let mut c = cluster([true; 3]);
    c.scripts[1] = Script::Hang(2);
    let conn = c.request(
        0,
        r#"{"action":"exec","command":"work","nodes":".*","execTimeout":5000}"#,
    );
    let start = c.sim.now;
    let mut answer = None;
    c.run_until(Duration::from_secs(30), |c| {
        answer = answer.take().or_else(|| c.answer(0, conn));
        answer.is_some()
    })
    .expect("answered");
    let took = c.sim.now - start;
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let a = answer.unwrap();
    assert_eq!(a["state"], "INTERRUPTED", "{a}");
    assert_eq!(a["body"]["jobStatus"], "TERMINATED");
    let items = a["body"]["results"].as_array().unwrap().clone();
    assert_eq!(node_status(&items, "node-1")["error"], "timeout");
    let s = summary(&items);
    assert_eq!(s["timedOut"], json!(["node-1"]));
    assert_eq!(s["answered"], json!(["node-0", "node-2"]));
    // node-1's host job was told to stop.
    let job1 = c.started.iter().find(|s| s.node == 1).unwrap().job;
    assert!(c.cancelled.contains(&(1, job1)));
}

#[test]
fn interrupt_job_stops_the_job_on_every_node() {
    let mut c = cluster([true; 3]);
    c.scripts = vec![Script::Hang(1); 3];
    let (sid, cid) = session(&mut c);
    async_exec(&mut c, &sid, json!({"nodes": ".*"}));
    c.run_until(Duration::from_secs(10), |c| c.started.len() == 3)
        .expect("all started");
    c.run_for(Duration::from_millis(100));
    let a = c.api(
        0,
        &json!({"action":"interrupt_job","sessionId":sid}).to_string(),
    );
    assert_eq!(a["state"], "SUCCEEDED", "{a}");
    c.run_for(Duration::from_millis(100));
    for s in c.started.clone() {
        assert!(
            c.cancelled.contains(&(s.node, s.job)),
            "node-{}'s host job got CancelJob",
            s.node
        );
    }
    let items = pull_job(&mut c, &sid, &cid, Duration::from_secs(10));
    for i in 0..3 {
        assert_eq!(
            node_status(&items, &format!("node-{i}"))["error"],
            "interrupted"
        );
    }
    assert_eq!(items.last().unwrap()["interrupted"], true);
}

#[test]
fn close_session_stops_the_job_on_every_node() {
    let mut c = cluster([true; 3]);
    c.scripts = vec![Script::Hang(1); 3];
    let (sid, _) = session(&mut c);
    async_exec(&mut c, &sid, json!({"nodes": ".*"}));
    c.run_until(Duration::from_secs(10), |c| c.started.len() == 3)
        .expect("all started");
    c.api(
        0,
        &json!({"action":"close_session","sessionId":sid}).to_string(),
    );
    c.run_for(Duration::from_millis(100));
    assert_eq!(c.cancelled.len(), 3, "{:?}", c.cancelled);
    for i in 0..3 {
        assert_eq!(c.sim.node(i).agent.job_count(), 0, "node-{i}");
    }
}

#[test]
fn a_slow_session_pushes_back_to_the_remote_host_job_and_loses_nothing() {
    let mut configs: Vec<Config> = (0..3).map(|i| job_config(i, true)).collect();
    configs[0].limits.consumer_queue = 8;
    for cfg in &mut configs {
        cfg.limits.max_tx = 256;
    }
    let mut c = cluster_with(configs);
    c.scripts = vec![Script::Items(200); 3];
    let (sid, cid) = session(&mut c);
    async_exec(&mut c, &sid, json!({"nodes": "node-[12]"}));
    c.run_for(Duration::from_secs(5));
    // Nobody pulled: the remote host jobs were answered `Full` and wait, far from done.
    assert_eq!(c.started.len(), 2);
    for i in [1, 2] {
        let made = c.produced(i);
        assert!(made > 0 && made < 50, "node-{i} made {made} of 200");
    }
    let bytes_while_stalled = c.stream_bytes;
    c.run_for(Duration::from_secs(5));
    assert_eq!(c.stream_bytes, bytes_while_stalled, "the streams stopped");
    let items = pull_job(&mut c, &sid, &cid, Duration::from_secs(300));
    let gaps: Vec<(usize, &Value)> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| i["type"] == "gap")
        .collect();
    assert!(
        gaps.is_empty(),
        "nothing dropped: {gaps:?} of {}",
        items.len()
    );
    let g = by_node(&items);
    for n in ["node-1", "node-2"] {
        let lines: Vec<String> = g[n]
            .iter()
            .filter_map(|i| i["message"].as_str().map(String::from))
            .collect();
        let want: Vec<String> = (0..200).map(|k| format!("{n} line {k}")).collect();
        assert_eq!(lines, want, "{n}: every item, in order");
    }
}

#[test]
fn targets_are_validated_and_built_ins_refused() {
    let mut c = cluster([true; 3]);
    let (sid, _) = session(&mut c);
    for (req, want) in [
        (
            json!({"action":"exec","command":"work","nodes":"("}),
            "Exec command failed:bad nodes expression",
        ),
        (
            json!({"action":"async_exec","sessionId":sid,"command":"work","tags":{"role":"a)|(b"}}),
            "Async exec command failed:bad tags expression for \"role\"",
        ),
        (
            json!({"action":"exec","command":"version","nodes":".*"}),
            "Exec command failed:version: a built-in command",
        ),
    ] {
        let a = c.api(0, &req.to_string());
        assert_eq!(a["state"], "FAILED", "{a}");
        let m = a["message"].as_str().unwrap();
        assert!(m.starts_with(want), "{m}");
    }
    // No member matches: the job ends at once, saying so.
    let a = c.api(0, r#"{"action":"exec","command":"work","nodes":"nobody"}"#);
    let items = a["body"]["results"].as_array().unwrap();
    assert_eq!(summary(items)["targeted"], json!([]));
    assert_eq!(
        items.last().unwrap()["message"],
        "no member matches the target"
    );
}

#[test]
fn with_gossip_encryption_the_streams_authenticate_with_the_cluster_key() {
    let key = tandem_core::cluster::GossipKey::new(&[7u8; 16]).unwrap();
    let configs = (0..3)
        .map(|i| {
            let mut cfg = job_config(i, true);
            let mut cc = tandem_tests::netsim::cluster_config(i);
            cc.keyring = tandem_core::cluster::Keyring::new(key, []);
            cfg.cluster = Some(cc);
            cfg
        })
        .collect();
    let mut c = cluster_with(configs);
    let (sid, cid) = session(&mut c);
    async_exec(&mut c, &sid, json!({"nodes": ".*"}));
    let items = pull_job(&mut c, &sid, &cid, Duration::from_secs(30));
    assert_eq!(
        summary(&items)["answered"],
        json!(["node-0", "node-1", "node-2"])
    );
}

#[test]
fn twenty_agents_at_ten_percent_loss_are_all_accounted_for() {
    let row = tandem_tests::jobs_sim::jobs_run(20, 10);
    assert_eq!(row.accounted, 20, "{row:?}");
    assert_eq!(row.answered, 20, "{row:?}");
    assert!(row.last_answer < Duration::from_secs(10), "{row:?}");
}
