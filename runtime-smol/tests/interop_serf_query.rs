//! Queries with the real Serf CLI (Debian's `serf`): `serf query` (acks and responses from
//! every node of a three-agent tandem cluster, `-node` and `-tag` filters, `-format json`)
//! and `serf reachability`, compared line for line (names and timings aside) with what the
//! same commands print against three real `serf agent`s the test starts; `tandem query`
//! and `tandem reachability` print the same.
//!
//! Each node answers queries through an RPC `stream` + `respond` client on its own
//! connection (what Serf's query handlers do over the same RPC), with its node name.
//!
//! The test provisions `serf` itself ([`tandem_tests::tools::serf`]: apt-get when root);
//! without it, it is reported as `ignored` with the reason (failed under `CI=true`), as
//! with `TANDEM_SKIP_SERF=1`. `harness = false`: [`run_trials`] is the runner.

mod client_support;
mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use client_support::{Out, Spawned, command, run, tandem};
use rmpv::Value;
use support::RunningAgent;
use tandem_tests::tools::{self, Test, run_trials};

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Answers every query the agent at `rpc` receives with `answer`, from a thread, until the
/// agent goes away. Returns once its stream is registered.
fn responder(rpc: u16, answer: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", rpc)).expect("connect");
    let send = |s: &mut TcpStream, cmd: &str, seq: u64, body: Value| {
        let mut b = Vec::new();
        rmpv::encode::write_value(
            &mut b,
            &map(&[("Command", cmd.into()), ("Seq", seq.into())]),
        )
        .unwrap();
        rmpv::encode::write_value(&mut b, &body).unwrap();
        s.write_all(&b).unwrap();
    };
    send(&mut s, "handshake", 1, map(&[("Version", 1.into())]));
    send(&mut s, "stream", 2, map(&[("Type", "query".into())]));
    let mut r = s.try_clone().unwrap();
    for _ in 0..2 {
        let h = rmpv::decode::read_value(&mut r).expect("reply");
        assert_eq!(get(&h, "Error").and_then(Value::as_str), Some(""), "{h}");
    }
    let answer = answer.to_string();
    std::thread::spawn(move || {
        let mut seq = 3;
        while let Ok(header) = rmpv::decode::read_value(&mut r) {
            if get(&header, "Seq").and_then(Value::as_u64) != Some(2) {
                continue; // a respond's reply
            }
            let Ok(body) = rmpv::decode::read_value(&mut r) else {
                return;
            };
            let Some(id) = get(&body, "ID").and_then(Value::as_u64) else {
                continue;
            };
            let payload = Value::Binary(answer.clone().into_bytes());
            send(
                &mut s,
                "respond",
                seq,
                map(&[("ID", id.into()), ("Payload", payload)]),
            );
            seq += 1;
        }
    });
}

/// A free loopback port (TCP and UDP are both free in practice on a test machine).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three nodes of one kind (tandem or Serf), each answering queries with its name; tag
/// `zone=a` on the third only.
trait Cluster {
    fn rpc(&self, i: usize) -> String;
}

struct Tandem(Vec<RunningAgent>);

impl Cluster for Tandem {
    fn rpc(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.0[i].rpc_port)
    }
}

struct Serf {
    /// Killed on drop.
    _agents: Vec<Spawned>,
    rpcs: Vec<u16>,
}

impl Cluster for Serf {
    fn rpc(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.rpcs[i])
    }
}

fn serf_cmd(c: &dyn Cluster, i: usize, cmd: &str, args: &[&str]) -> Out {
    let addr = format!("-rpc-addr={}", c.rpc(i));
    let mut all = vec![cmd, addr.as_str()];
    all.extend_from_slice(args);
    run(command(tools::serf(), &all))
}

fn alive_members(c: &dyn Cluster) -> usize {
    let out = serf_cmd(c, 0, "members", &["-status=alive"]);
    out.stdout.lines().filter(|l| !l.trim().is_empty()).count()
}

/// Handlers every node of both kinds is started with (they show in `info`).
const HANDLERS: [&str; 2] = ["member-join,member-leave=true", "user:deploy=true"];

fn start_tandem() -> Tandem {
    let agents: Vec<RunningAgent> = (1..=3)
        .map(|i| {
            RunningAgent::start(&[
                "-node",
                &format!("n{i}"),
                "-event-handler",
                HANDLERS[0],
                "-event-handler",
                HANDLERS[1],
            ])
        })
        .collect();
    let t = Tandem(agents);
    let seed = format!("127.0.0.1:{}", t.0[0].lan_port);
    for i in 1..3 {
        assert_eq!(serf_cmd(&t, i, "join", &[&seed]).code, Some(0));
    }
    wait_for("three alive tandem members", || alive_members(&t) == 3);
    for i in 0..3 {
        responder(t.0[i].rpc_port, &format!("n{}", i + 1));
    }
    assert_eq!(serf_cmd(&t, 2, "tags", &["-set", "zone=a"]).code, Some(0));
    t
}

fn start_serf() -> Serf {
    let mut procs = Vec::new();
    let mut rpcs = Vec::new();
    let first = free_port();
    for i in 1..=3 {
        let bind = if i == 1 { first } else { free_port() };
        let rpc = free_port();
        let mut args = vec![
            "agent".to_string(),
            format!("-node=n{i}"),
            format!("-bind=127.0.0.1:{bind}"),
            format!("-rpc-addr=127.0.0.1:{rpc}"),
            "-log-level=warn".into(),
            format!("-event-handler={}", HANDLERS[0]),
            format!("-event-handler={}", HANDLERS[1]),
        ];
        if i == 3 {
            args.push("-tag".into());
            args.push("zone=a".into());
        }
        if i > 1 {
            args.push(format!("-join=127.0.0.1:{first}"));
        }
        let mut cmd = Command::new(tools::serf());
        cmd.args(&args).stdin(std::process::Stdio::null());
        procs.push(Spawned::new(&mut cmd));
        rpcs.push(rpc);
        let s = Serf {
            _agents: Vec::new(),
            rpcs: rpcs.clone(),
        };
        wait_for("a Serf agent's RPC", || {
            TcpStream::connect(s.rpc(i - 1)).is_ok()
        });
    }
    let s = Serf {
        _agents: procs,
        rpcs,
    };
    wait_for("three alive Serf members", || alive_members(&s) == 3);
    for i in 0..3 {
        responder(s.rpcs[i], &format!("n{}", i + 1));
    }
    s
}

/// Output lines, sorted (acks and responses come in any order).
fn lines(out: &Out) -> Vec<String> {
    assert_eq!(out.code, Some(0), "{out:#?}");
    let mut v: Vec<String> = out.stdout.lines().map(String::from).collect();
    v.sort();
    v
}

/// What a query prints on a cluster, with each form of the command.
fn query_outputs(c: &dyn Cluster) -> Vec<Vec<String>> {
    let t = "-timeout=1s";
    vec![
        lines(&serf_cmd(c, 0, "query", &[t, "load", "15m"])),
        lines(&serf_cmd(c, 0, "query", &[t, "-node=n2", "load"])),
        lines(&serf_cmd(c, 0, "query", &[t, "-tag", "zone=a", "load"])),
        lines(&serf_cmd(c, 0, "query", &[t, "-no-ack", "load"])),
        lines(&serf_cmd(c, 0, "reachability", &[])),
    ]
}

fn main() {
    run_trials(vec![Test::new(
        "serf_query_and_reachability_print_what_they_print_against_serf",
        serf_query_and_reachability_print_what_they_print_against_serf,
    )]);
}

fn serf_query_and_reachability_print_what_they_print_against_serf() {
    tools::serf(); // provisioned, or the test ends as skipped (failed under CI=true)
    let tandem_cluster = start_tandem();
    let got = query_outputs(&tandem_cluster);
    let want_all = [
        "Ack from 'n1'",
        "Ack from 'n2'",
        "Ack from 'n3'",
        "Query 'load' dispatched",
        "Response from 'n1': n1",
        "Response from 'n2': n2",
        "Response from 'n3': n3",
        "Total Acks: 3",
        "Total Responses: 3",
    ];
    assert_eq!(got[0], want_all);
    assert_eq!(
        got[1],
        [
            "Ack from 'n2'",
            "Query 'load' dispatched",
            "Response from 'n2': n2",
            "Total Acks: 1",
            "Total Responses: 1"
        ]
    );
    assert_eq!(
        got[2],
        [
            "Ack from 'n3'",
            "Query 'load' dispatched",
            "Response from 'n3': n3",
            "Total Acks: 1",
            "Total Responses: 1"
        ]
    );
    assert!(got[3].iter().all(|l| !l.starts_with("Ack")), "{:?}", got[3]);
    assert_eq!(
        got[4],
        [
            "Starting reachability test...",
            "Successfully contacted all live nodes",
            "Total members: 3, live members: 3",
        ]
    );
    // `-format json`.
    let json = serf_cmd(
        &tandem_cluster,
        1,
        "query",
        &["-timeout=1s", "-format=json", "q"],
    );
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(
        v["Responses"],
        serde_json::json!({"n1": "n1", "n2": "n2", "n3": "n3"})
    );
    let acks: BTreeSet<&str> = v["Acks"]
        .as_array()
        .expect("acks")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(acks, BTreeSet::from(["n1", "n2", "n3"]));
    // tandem's own CLI prints the same.
    let rpc = format!("-rpc-addr={}", tandem_cluster.rpc(0));
    assert_eq!(
        lines(&tandem(&["query", &rpc, "-timeout=1s", "load", "15m"])),
        want_all
    );
    assert_eq!(lines(&tandem(&["reachability", &rpc])), got[4]);
    let tjson = tandem(&[
        "query",
        &rpc,
        "-timeout=1s",
        "-format=json",
        "-node=n1",
        "q",
    ]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&tjson.stdout).expect("JSON"),
        serde_json::json!({"Acks": ["n1"], "Responses": {"n1": "n1"}})
    );
    let over = tandem(&["query", &rpc, "big", &"x".repeat(1100)]);
    assert_eq!(over.code, Some(1));
    assert_eq!(
        over.stderr.trim(),
        "Error sending query: query exceeds limit of 1024 bytes"
    );
    // `info -format json`: Serf's sections beside tandem's, every value a string.
    let info = |out: Out| -> serde_json::Value {
        assert_eq!(out.code, Some(0), "{out:#?}");
        serde_json::from_str(&out.stdout).expect("JSON")
    };
    let tinfo = info(serf_cmd(&tandem_cluster, 0, "info", &["-format=json"]));
    assert_eq!(tinfo["serf"]["members"], "3");
    assert_eq!(tinfo["serf"]["encrypted"], "false");
    assert_eq!(tinfo["tags"]["role"], "node");
    assert!(tinfo["event_handlers"].is_object(), "{tinfo}");
    let ours = info(tandem(&["info", &rpc, "-format", "json"]));
    let sections = |v: &serde_json::Value| -> Vec<String> {
        v.as_object().expect("object").keys().cloned().collect()
    };
    assert_eq!(sections(&ours), sections(&tinfo));
    let serf_keys = |v: &serde_json::Value| -> Vec<String> {
        v["serf"]
            .as_object()
            .expect("serf")
            .keys()
            .cloned()
            .collect()
    };
    // `members -tag -name`, anchored as Serf's members-filtered.
    let m = tandem(&["members", &rpc, "-tag", "zone=a", "-name", "n.*"]);
    assert_eq!(m.code, Some(0), "{m:#?}");
    // Consul's table: a header, then the one member.
    let rows: Vec<&str> = m.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{m:#?}");
    assert!(rows[0].starts_with("n3 "), "{m:#?}");
    assert_eq!(
        tandem(&["members", &rpc, "-tag", "zone=", "-name", "n3"]).code,
        Some(2)
    );
    assert_eq!(tandem(&["members", &rpc, "-name", "n"]).code, Some(2));
    drop(tandem_cluster);

    // The same commands against real Serf agents print the same lines.
    let serf_cluster = start_serf();
    let want = query_outputs(&serf_cluster);
    assert_eq!(got, want);
    let sinfo = info(serf_cmd(&serf_cluster, 0, "info", &["-format=json"]));
    assert_eq!(
        serf_keys(&tinfo),
        serf_keys(&sinfo),
        "the serf section's keys"
    );
    assert_eq!(tinfo["event_handlers"], sinfo["event_handlers"]);
    assert_eq!(
        tinfo["event_handlers"],
        serde_json::json!({"member-join:": "true", "member-leave:": "true", "user:deploy": "true"})
    );
    for section in ["agent", "runtime", "serf", "tags", "event_handlers"] {
        assert!(tinfo[section].is_object(), "{section} in {tinfo}");
    }
}
