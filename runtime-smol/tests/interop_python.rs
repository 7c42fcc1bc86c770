//! Interop with a third-party msgpack client: `tests/py/consul_rpc.py`, which speaks
//! Consul's RPC commands (`members-lan`, `members-wan`, `stats`, `monitor`/`stop`,
//! `reload`, `force-leave`, `join` with `WAN`, `leave`) over a raw socket with Python's
//! `msgpack` package, and checks key order, value types and framing.
//!
//! Without `python3` and its `msgpack` package this test fails with an install hint,
//! unless `TANDEM_SKIP_PYTHON=1`.

mod client_support;
mod support;

use std::time::Duration;

use client_support::{command, on_path, run, skipped};
use support::RunningAgent;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/consul_rpc.py");

/// Whether to run: python3 can import msgpack, or the test must fail saying how.
fn python_msgpack_present() -> bool {
    let importable =
        on_path("python3") && run(command("python3", &["-c", "import msgpack"])).code == Some(0);
    if importable {
        return true;
    }
    assert!(
        skipped("TANDEM_SKIP_PYTHON"),
        "python3 with the `msgpack` package is required: install it with \
         `pip install msgpack` (or set TANDEM_SKIP_PYTHON=1 to skip the Python interop test)"
    );
    false
}

#[test]
fn a_python_msgpack_client_speaks_consuls_commands() {
    if !python_msgpack_present() {
        return;
    }
    let mut agent = RunningAgent::start(&["-node", "py-node"]);
    let port = agent.rpc_port.to_string();
    let out = run(command("python3", &[SCRIPT, &port]));
    assert_eq!(
        out.code,
        Some(0),
        "script failed:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let passed: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PASS "))
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        passed,
        [
            "members-lan",
            "members-wan",
            "stats",
            "force-leave",
            "join-wan",
            "monitor-stop-reload",
            "leave",
        ],
        "{}",
        out.stdout
    );
    // `leave` ended the agent.
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).code(), Some(0));
    agent.wait_log("agent: left the cluster, shutting down");
    agent.wait_log("agent: reload requested, reloading configuration");
}
