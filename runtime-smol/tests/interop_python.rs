//! Interop with a third-party msgpack client: `tests/py/consul_rpc.py`, which speaks
//! Consul's RPC commands (`members-lan`, `members-wan`, `stats`, `monitor`/`stop`,
//! `reload`, `force-leave`, `join` with `WAN`, `leave`) over a raw socket with Python's
//! `msgpack` package, and checks key order, value types and framing.
//!
//! The test provisions its interpreter ([`tandem_tests::tools::python_msgpack`]: a private
//! virtual environment under `target/` with `msgpack` from PyPI); without one it is reported
//! as `ignored` with the reason (failed under `CI=true`), as with `TANDEM_SKIP_PYTHON=1`.
//! `harness = false`: [`run_trials`] is the runner.

mod client_support;
mod support;

use std::time::Duration;

use client_support::{command, run};
use support::RunningAgent;
use tandem_tests::tools::{self, Test, run_trials};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/consul_rpc.py");

fn main() {
    run_trials(vec![Test::new(
        "a_python_msgpack_client_speaks_consuls_commands",
        a_python_msgpack_client_speaks_consuls_commands,
    )]);
}

fn a_python_msgpack_client_speaks_consuls_commands() {
    let python = tools::python_msgpack();
    let mut agent = RunningAgent::start(&["-node", "py-node"]);
    let port = agent.rpc_port.to_string();
    let out = run(command(&python, &[SCRIPT, &port]));
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
