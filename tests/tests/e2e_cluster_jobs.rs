//! Cluster-wide jobs end to end on both runtimes' binaries: three agents of one runtime on
//! 127.0.0.1 (ephemeral ports; each agent's peer streams on the TCP port of its LAN gossip
//! address), a targeted `exec`/`async_exec` of a host command, results streamed back over
//! real TCP. Waits poll with a deadline; every process is killed and reaped on drop.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;
#[macro_use]
mod e2e_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_support::{Agent, Runtime, pull_body, tandem};
use serde_json::{Value, json};

runtimes! {
    a_targeted_exec_runs_on_every_node_and_a_node_without_opt_in_refuses;
    the_cli_prints_each_item_after_its_node_and_exits_1_when_a_node_failed;
    a_killed_node_is_unreachable_and_interrupt_stops_the_others;
}

const CONVERGE: Duration = Duration::from_secs(20);

fn start(rt: Runtime, node: &str, extra: &[&str]) -> Agent {
    let mut args = vec!["-node", node];
    args.extend_from_slice(extra);
    Agent::start(rt, &args)
}

/// Three agents, `n2` and `n3` joined to `n1`; `enable[i]` gives `-enable-remote-exec`.
fn three(rt: Runtime, enable: [bool; 3]) -> Vec<Agent> {
    let flags = |i: usize| {
        let mut f = vec!["-log-level", "DEBUG"];
        if enable[i] {
            f.push("-enable-remote-exec");
        }
        f
    };
    let a1 = start(rt, "n1", &flags(0));
    let to = format!("127.0.0.1:{}", a1.lan_port());
    let mut agents = vec![a1];
    for (i, name) in [(1, "n2"), (2, "n3")] {
        let mut f = flags(i);
        f.extend_from_slice(&["-join", &to]);
        agents.push(start(rt, name, &f));
    }
    let start = Instant::now();
    for a in &agents {
        loop {
            let out = a.cli("members", &["-format=json"]);
            let v: Value = serde_json::from_str(out.ok()).unwrap_or(Value::Null);
            let alive = v
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["Status"] == "alive").count());
            if alive == 3 {
                break;
            }
            assert!(start.elapsed() < CONVERGE, "no convergence: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    agents
}

fn by_node(items: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for it in items {
        let node = it["node"].as_str().unwrap_or("").to_string();
        out.entry(node).or_default().push(it.clone());
    }
    out
}

fn node_status<'a>(items: &'a [Value], node: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["type"] == "status" && i["node"] == node)
        .unwrap_or_else(|| panic!("no status for {node}: {items:#?}"))
}

fn a_targeted_exec_runs_on_every_node_and_a_node_without_opt_in_refuses(rt: Runtime) {
    let agents = three(rt, [true, true, false]);
    let a =
        agents[0].api(r#"{"action":"exec","command":"sysinfo","nodes":".*","execTimeout":20000}"#);
    assert_eq!(a["state"], "SUCCEEDED", "{a}");
    assert_eq!(a["body"]["jobStatus"], "TERMINATED");
    let items = a["body"]["results"].as_array().unwrap().clone();
    let g = by_node(&items);
    for n in ["n1", "n2"] {
        assert_eq!(g[n][0]["type"], "sysinfo", "{n}: {:#?}", g[n]);
        assert_eq!(node_status(&items, n)["statusCode"], 0);
    }
    let refused = node_status(&items, "n3");
    assert_eq!(refused["error"], "refused", "{refused}");
    let summary = items.iter().find(|i| i["type"] == "summary").unwrap();
    assert_eq!(summary["answered"], json!(["n1", "n2"]));
    assert_eq!(summary["failed"], json!(["n3"]));
    assert_eq!(items.last().unwrap()["statusCode"], 1);
}

/// Pulls into `items` until `done` holds (at most 20 s).
fn pull_until(
    agent: &Agent,
    sid: &str,
    cid: &str,
    items: &mut Vec<Value>,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) {
    let start = Instant::now();
    while !done(items) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: {items:#?}\nlog:\n{}",
            agent.log_lines().join("\n")
        );
        let r = agent.api(&pull_body(sid, cid));
        for it in r["body"]["results"].as_array().unwrap() {
            if it["jobId"] != 0 {
                items.push(it.clone());
            }
        }
    }
}

fn a_killed_node_is_unreachable_and_interrupt_stops_the_others(rt: Runtime) {
    let mut agents = three(rt, [true; 3]);
    let s = agents[0].api(r#"{"action":"init_session"}"#);
    let (sid, cid) = (
        s["sessionId"].as_str().unwrap().to_string(),
        s["consumerId"].as_str().unwrap().to_string(),
    );
    let a = agents[0].api(
        &json!({"action":"async_exec","sessionId":sid,"command":"dashboard -i 200","nodes":".*","execTimeout":60000})
            .to_string(),
    );
    assert_eq!(a["state"], "SCHEDULED", "{a}");
    let mut items = Vec::new();
    pull_until(
        &agents[0],
        &sid,
        &cid,
        &mut items,
        "samples from all",
        |items| {
            let g = by_node(items);
            ["n1", "n2", "n3"].iter().all(|n| {
                g.get(*n)
                    .is_some_and(|v| v.iter().any(|i| i["type"] == "dashboard"))
            })
        },
    );
    let killed = Instant::now();
    agents[2].kill9();
    pull_until(
        &agents[0],
        &sid,
        &cid,
        &mut items,
        "n3 accounted for",
        |items| {
            items
                .iter()
                .any(|i| i["type"] == "status" && i["node"] == "n3")
        },
    );
    assert!(killed.elapsed() < Duration::from_secs(15));
    assert_eq!(node_status(&items, "n3")["error"], "unreachable");
    let r = agents[0].api(&json!({"action":"interrupt_job","sessionId":sid}).to_string());
    assert_eq!(r["state"], "SUCCEEDED", "{r}");
    pull_until(
        &agents[0],
        &sid,
        &cid,
        &mut items,
        "the job's end",
        |items| {
            items
                .iter()
                .any(|i| i["type"] == "status" && i.get("node").is_none())
        },
    );
    for n in ["n1", "n2"] {
        assert_eq!(node_status(&items, n)["error"], "interrupted");
    }
    // n2's host job was stopped (CancelJob), not left running.
    agents[1].wait_log("host: job");
    let start = Instant::now();
    while !agents[1]
        .log_lines()
        .iter()
        .any(|l| l.contains("cancelled"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "n2's job not cancelled:\n{}",
            agents[1].log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn the_cli_prints_each_item_after_its_node_and_exits_1_when_a_node_failed(rt: Runtime) {
    let agents = three(rt, [true, true, false]);
    let addr = format!("-http-addr={}", agents[0].http_addr());
    let out = tandem(&["exec", &addr, "-nodes", "n[12]", "sysinfo"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    for n in ["n1", "n2"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{n}: ")) && l.contains(r#""type":"sysinfo""#)),
            "{n}: {lines:#?}"
        );
    }
    let n = lines.len();
    assert!(lines[n - 2].contains(r#""type":"summary""#), "{lines:#?}");
    assert!(lines[n - 1].contains(r#""statusCode":0"#), "{lines:#?}");
    // With the node that did not opt in, and a tag filter that all three pass.
    let out = tandem(&["exec", &addr, "-nodes", ".*", "-tag", "dc=dc.", "sysinfo"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("n3: ") && l.contains(r#""error":"refused""#)),
        "{out:?}"
    );
    assert!(out.stdout.contains(r#""failed":["n3"]"#), "{out:?}");
}
