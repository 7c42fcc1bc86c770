//! End-to-end cluster tests: several `tandem agent` processes gossiping over UDP on
//! 127.0.0.1, every port ephemeral (`-http-addr 127.0.0.1:0 -rpc-addr 127.0.0.1:0
//! -lan-port 0`, and `-wan-port 0` for servers), driven by the `tandem` CLI (`join`,
//! `members`, `force-leave`, `leave`) and, when installed, the `serf` CLI.
//!
//! Waits poll with a deadline and assert nothing about timing; how long failure detection
//! took is printed (`cargo test -- --nocapture` shows it). Every process is killed and
//! reaped on drop, so a failing test leaves none behind.

mod client_support;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client_support::{Out, command, on_path, run, skipped, tandem};
use serde_json::Value;
use support::RunningAgent;

/// How long the cluster may take to converge after a join.
const CONVERGE: Duration = Duration::from_secs(15);
/// How long a killed member may take to show `failed`: the LAN profile probes every
/// second and keeps a suspect for 4 s in a cluster this small, so this is generous.
const DETECT: Duration = Duration::from_secs(30);

fn rpc_flag(agent: &RunningAgent) -> String {
    format!("-rpc-addr=127.0.0.1:{}", agent.rpc_port)
}

/// `tandem CMD -rpc-addr=… ARGS…`.
fn cli(agent: &RunningAgent, cmd: &str, args: &[&str]) -> Out {
    let addr = rpc_flag(agent);
    let mut all = vec![cmd, addr.as_str()];
    all.extend_from_slice(args);
    tandem(&all)
}

/// Starts an agent named `node` with extra flags.
fn start(node: &str, extra: &[&str]) -> RunningAgent {
    let mut args = vec!["-node", node];
    args.extend_from_slice(extra);
    RunningAgent::start(&args)
}

/// `tandem join` on `agent` to `target`'s LAN (or WAN) gossip port.
fn join(agent: &RunningAgent, port: u16, wan: bool) -> Out {
    let to = format!("127.0.0.1:{port}");
    let mut args = vec![to.as_str()];
    if wan {
        args.insert(0, "-wan");
    }
    cli(agent, "join", &args)
}

/// Name → status, as `tandem members -format json` (or `-wan`) shows them.
fn statuses(agent: &RunningAgent, wan: bool) -> BTreeMap<String, String> {
    let mut args = vec!["-format=json"];
    if wan {
        args.push("-wan");
    }
    let out = cli(agent, "members", &args);
    let v: Value = serde_json::from_str(out.ok()).expect("members JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("Name"), s("Status"))
        })
        .collect()
}

/// Polls `agent`'s member list until `want` holds; returns how long it took.
fn wait_members(
    agent: &RunningAgent,
    wan: bool,
    within: Duration,
    what: &str,
    want: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let seen = statuses(agent, wan);
        if want(&seen) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}; members now: {seen:?}\nagent log:\n{}",
            agent.log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn all_alive(names: &[&str]) -> impl Fn(&BTreeMap<String, String>) -> bool {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    move |seen| {
        seen.len() == names.len()
            && names
                .iter()
                .all(|n| seen.get(n).is_some_and(|s| s == "alive"))
    }
}

fn status_is(node: &str, status: &str) -> impl Fn(&BTreeMap<String, String>) -> bool {
    let (node, status) = (node.to_string(), status.to_string());
    move |seen| seen.get(&node) == Some(&status)
}

/// Three agents; the second and third join the first with `tandem join` (the RPC join).
fn three_node_cluster(prefix: &str) -> [RunningAgent; 3] {
    let names = [1, 2, 3].map(|i| format!("{prefix}{i}"));
    let agents = [0, 1, 2].map(|i| start(&names[i], &[]));
    for a in &agents[1..] {
        let out = join(a, agents[0].lan_port, false);
        assert_eq!(
            out.ok(),
            "Successfully joined cluster by contacting 1 nodes.\n"
        );
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for a in &agents {
        wait_members(a, false, CONVERGE, "three alive", all_alive(&names));
    }
    agents
}

#[test]
fn three_agents_join_detect_a_kill_force_leave_it_and_see_a_graceful_leave() {
    let [a1, mut a2, mut a3] = three_node_cluster("n");
    // Every member is shown at the address its socket is bound to.
    let out = cli(&a1, "members", &["-format=json"]);
    let v: Value = serde_json::from_str(out.ok()).unwrap();
    for (m, agent) in v.as_array().unwrap().iter().zip([&a1, &a2, &a3]) {
        assert_eq!(m["Addr"], "127.0.0.1", "{m}");
        assert_eq!(m["Port"], agent.lan_port, "{m}");
        assert_eq!(m["Tags"]["role"], "node", "{m}");
        assert_eq!(m["Tags"]["dc"], "dc1", "{m}");
    }

    // kill -9: nobody is told; the others must find out.
    a3.kill9();
    let killed = Instant::now();
    wait_members(&a1, false, DETECT, "n3 failed", status_is("n3", "failed"));
    let took = killed.elapsed();
    wait_members(&a2, false, DETECT, "n3 failed", status_is("n3", "failed"));
    let took2 = killed.elapsed();
    eprintln!(
        "failure detection after kill -9: {took:?} on n1, {took2:?} on n2 (polled every 100 ms)"
    );
    a1.wait_log("serf: EventMemberFailed: n3 127.0.0.1");

    // force-leave turns the failed member into a left one, everywhere.
    assert_eq!(cli(&a1, "force-leave", &["n3"]).ok(), "");
    for a in [&a1, &a2] {
        wait_members(a, false, CONVERGE, "n3 left", status_is("n3", "left"));
    }

    // A graceful leave: n2 is `left` on n1, never `failed`; n2 exits 0 once it has
    // propagated.
    assert_eq!(cli(&a2, "leave", &[]).ok(), "Graceful leave complete\n");
    wait_members(&a1, false, CONVERGE, "n2 left", |seen| {
        assert_ne!(
            seen.get("n2").map(String::as_str),
            Some("failed"),
            "a graceful leave must not look like a failure"
        );
        seen.get("n2").is_some_and(|s| s == "left")
    });
    assert_eq!(a2.wait_exit(Duration::from_secs(10)).code(), Some(0));
    a2.wait_log("agent: left the cluster, shutting down");
    a1.wait_log("serf: EventMemberLeave: n2 127.0.0.1");
    // Still `left` a moment later: n2's silence is no failure.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(statuses(&a1, false)["n2"], "left");
    assert_eq!(statuses(&a1, false)["n1"], "alive");
}

#[test]
fn join_at_start_with_the_flag_by_address_and_by_host_name() {
    let a1 = start("j1", &[]);
    let by_ip = format!("127.0.0.1:{}", a1.lan_port);
    let a2 = start("j2", &["-join", &by_ip]);
    a2.wait_log("agent: joined: 1 nodes");
    // A host name goes through Effect::Resolve (a lookup thread).
    let by_name = format!("localhost:{}", a1.lan_port);
    let a3 = start("j3", &["-join", &by_name]);
    a3.wait_log("agent: joined: 1 nodes");
    for a in [&a1, &a2, &a3] {
        wait_members(
            a,
            false,
            CONVERGE,
            "three alive",
            all_alive(&["j1", "j2", "j3"]),
        );
    }
    // A join that reaches nobody is logged, and the agent keeps running.
    let a4 = start("j4", &["-join", "no-such-host.invalid"]);
    // Go's multi-error text: the failures follow on lines of their own.
    a4.wait_log("agent: join failed: 1 error occurred:");
    a4.wait_log("* Failed to join no-such-host.invalid: ");
    assert_eq!(statuses(&a4, false).len(), 1);
}

#[test]
fn serf_members_lists_a_three_node_tandem_cluster() {
    if !on_path("serf") {
        assert!(
            skipped("TANDEM_SKIP_SERF"),
            "`serf` is not installed: install it with `apt-get install -y serf` \
             (or set TANDEM_SKIP_SERF=1 to skip the Serf interop tests)"
        );
        return;
    }
    let agents = three_node_cluster("s");
    for (i, agent) in agents.iter().enumerate() {
        let out = run(command("serf", &["members", &rpc_flag(agent)]));
        let text = out.ok();
        let rows: BTreeMap<&str, (&str, &str)> = text
            .lines()
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols[0], (cols[1], cols[2]))
            })
            .collect();
        assert_eq!(rows.len(), 3, "serf members on s{}:\n{text}", i + 1);
        for (j, peer) in agents.iter().enumerate() {
            let name = format!("s{}", j + 1);
            let addr = format!("127.0.0.1:{}", peer.lan_port);
            assert_eq!(rows[name.as_str()], (addr.as_str(), "alive"), "{text}");
        }
    }
}

#[test]
fn a_wan_join_needs_a_server_and_two_servers_join_over_the_wan() {
    let client = start("c1", &[]);
    let s1 = start("w1", &["-server", "-wan-port", "0"]);
    let s2 = start("w2", &["-server", "-wan-port", "0", "-datacenter", "dc2"]);
    // A client has no WAN pool.
    let refused = join(&client, s1.wan_port(), true);
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert_eq!(
        refused.stderr,
        "Error joining the cluster: Must be a server to join WAN cluster\n"
    );
    // A client lists no WAN members: Consul's exit code 2 for "none".
    let none = cli(&client, "members", &["-wan"]);
    assert_eq!(
        (none.code, none.stdout.as_str()),
        (Some(2), ""),
        "{none:#?}"
    );
    // Two servers do; on the WAN a server is NODE.DC, as in Consul.
    let out = join(&s2, s1.wan_port(), true);
    assert_eq!(
        out.ok(),
        "Successfully joined cluster by contacting 1 nodes.\n"
    );
    for s in [&s1, &s2] {
        wait_members(
            s,
            true,
            CONVERGE,
            "both servers on the WAN",
            all_alive(&["w1.dc1", "w2.dc2"]),
        );
        // The LAN pools stay apart.
        assert_eq!(statuses(s, false).len(), 1);
    }
    let out = cli(&s1, "members", &["-wan", "-format=json"]);
    let v: Value = serde_json::from_str(out.ok()).unwrap();
    let w2 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Name"] == "w2.dc2")
        .expect("w2 on the WAN");
    assert_eq!(w2["Port"], s2.wan_port());
    assert_eq!(w2["Tags"]["role"], "consul");
    assert_eq!(w2["Tags"]["dc"], "dc2");
}
