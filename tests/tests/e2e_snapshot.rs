//! End-to-end `-snapshot` and `-rejoin` of both runtimes' binaries: agents killed with
//! SIGKILL and restarted without `-join` find their cluster again through the snapshot;
//! one that left gracefully stays out, unless `-rejoin` (Serf's `rejoin_after_leave`).
//!
//! Waits poll with a deadline. Every process is killed and reaped on drop.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;
#[macro_use]
mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::{Agent, DEADLINE, Runtime, TempDir};

runtimes! {
    killed_agents_rejoin_through_their_snapshot_and_a_graceful_leave_stays_out;
}

/// `name → status` as `tandem members` on `agent` lists them.
fn statuses(agent: &Agent) -> Vec<(String, String)> {
    agent
        .cli("members", &[])
        .ok()
        .lines()
        .skip(1) // the header
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            let _addr = w.next()?;
            Some((name, w.next()?.to_string()))
        })
        .collect()
}

fn wait_status(agent: &Agent, node: &str, status: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let seen = statuses(agent);
        if seen.iter().any(|(n, s)| n == node && s == status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} never {status}: {seen:?}\n{:#?}",
            agent.log_lines()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(rt: Runtime, name: &str, lan_port: u16, flags: &[&str]) -> Agent {
    let port = lan_port.to_string();
    let mut all = vec!["-node", name, "-lan-port", &port];
    all.extend_from_slice(flags);
    Agent::start(rt, &all)
}

fn killed_agents_rejoin_through_their_snapshot_and_a_graceful_leave_stays_out(rt: Runtime) {
    let dir = TempDir::new(&format!("snapshot-{}", rt.name()));
    let snap_b = dir.0.join("b.snapshot");
    let snap_c = dir.0.join("c.snapshot");
    let (snap_b, snap_c) = (snap_b.to_str().unwrap(), snap_c.to_str().unwrap());
    let b_flags = ["-snapshot", snap_b, "-rejoin"];
    let c_flags = ["-snapshot", snap_c];
    let a = start(rt, "a", 0, &[]);
    let join = format!("127.0.0.1:{}", a.lan_port());
    let mut b = start(rt, "b", 0, &[&b_flags[..], &["-join", &join]].concat());
    let mut c = start(rt, "c", 0, &[&c_flags[..], &["-join", &join]].concat());
    let (b_port, c_port) = (b.lan_port(), c.lan_port());
    for n in ["b", "c"] {
        wait_status(&a, n, "alive");
    }
    let deadline = Instant::now() + DEADLINE;
    let a_line = format!("alive: a 127.0.0.1:{}\n", a.lan_port());
    while !std::fs::read_to_string(snap_c)
        .unwrap_or_default()
        .contains(&a_line)
    {
        assert!(Instant::now() < deadline, "c's snapshot never lists a");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL both, restart both without -join (on their ports: the same members).
    b.kill9();
    c.kill9();
    let mut b = start(rt, "b", b_port, &b_flags);
    let mut c = start(rt, "c", c_port, &c_flags);
    for agent in [&b, &c] {
        agent.wait_log("[INFO] serf: Attempting re-join to previously known node: ");
        agent.wait_log("[INFO] serf: Re-joined to previously known node: ");
    }
    for n in ["b", "c"] {
        wait_status(&a, n, "alive");
    }
    wait_status(&c, "a", "alive");
    // A graceful leave: without -rejoin, the restarted agent stays out.
    assert_eq!(c.cli("leave", &[]).code, Some(0));
    c.wait_exit(DEADLINE);
    wait_status(&a, "c", "left");
    let snapshot = std::fs::read_to_string(snap_c).unwrap();
    assert!(snapshot.ends_with("leave\n"), "{snapshot}");
    let c = start(rt, "c", c_port, &c_flags);
    // Its re-join would come right after start; give it time to (not) happen.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !c.log_lines().iter().any(|l| l.contains("re-join")),
        "{:#?}",
        c.log_lines()
    );
    assert_eq!(statuses(&c), [("c".to_string(), "alive".to_string())]);
    wait_status(&a, "c", "left");
    // With -rejoin the leave is ignored: b comes back after its own graceful leave.
    assert_eq!(b.cli("leave", &[]).code, Some(0));
    b.wait_exit(DEADLINE);
    wait_status(&a, "b", "left");
    let b = start(rt, "b", b_port, &b_flags);
    b.wait_log("[INFO] serf: Ignoring previous leave in snapshot");
    b.wait_log("[INFO] serf: Re-joined to previously known node: ");
    wait_status(&a, "b", "alive");
}
