//! End-to-end tests of the agent RPC (msgpack over TCP, Serf's framing) of both runtimes'
//! binaries: real processes, real sockets on 127.0.0.1 with ephemeral ports, real signals.
//! Every case runs on both (`<case>::smol`, `<case>::mio`); the `tandem` CLI client's own
//! tests stay in `runtime-smol`.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;
#[macro_use]
mod e2e_support;

use std::time::Duration;

use e2e_support::{Agent, Client, Runtime};
use rpc_support::{V, map, req, req_with};

runtimes! {
    handshake_members_monitor_stream_and_leave;
    rpc_auth_flag_gates_commands_until_the_key_is_given;
}

/// Reads monitor records (header, then `{"Log": line}`) until a line contains `needle`.
fn wait_record(c: &mut Client, seq: u64, needle: &str) -> String {
    loop {
        c.reply_ok(seq);
        let record = c.value();
        let line = record.get("Log").str().to_string();
        if line.contains(needle) {
            return line;
        }
    }
}

fn handshake_members_monitor_stream_and_leave(rt: Runtime) {
    let mut agent = Agent::start(rt, &["-node", "n1"]);
    let mut c = agent.rpc();

    c.send(&req("members", 1));
    c.reply_ok(1);
    let body = c.value();
    let members = body.get("Members").arr();
    assert_eq!(members.len(), 1, "{body:?}");
    assert_eq!(members[0].get("Name").str(), "n1");
    assert_eq!(members[0].get("Status").str(), "alive");

    // The monitor replays the log ring (the runtime's startup lines are in it), then
    // streams live records, the runtime's own included.
    c.send(&req_with(
        "monitor",
        2,
        &map(&[("LogLevel", "INFO".into())]),
    ));
    c.reply_ok(2);
    let line = wait_record(&mut c, 2, "agent: HTTP API listening on 127.0.0.1:");
    assert!(line.ends_with(&format!(":{}", agent.port())), "{line}");
    agent.signal(libc::SIGHUP);
    wait_record(
        &mut c,
        2,
        "[INFO] agent: caught signal Hup, reloading configuration",
    );
    wait_record(&mut c, 2, "[INFO] agent: configuration reloaded");

    // `leave` on another connection: answered, streamed to the monitor, then the agent
    // exits 0 once the RPC clients hang up.
    let mut l = agent.rpc();
    l.send(&req("leave", 1));
    l.reply_ok(1);
    wait_record(&mut c, 2, "agent: left the cluster, shutting down");
    drop(l);
    drop(c);
    let status = agent.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}");
    agent.wait_log("agent: shutdown requested");
    agent.wait_log("agent: shutdown complete");
}

fn rpc_auth_flag_gates_commands_until_the_key_is_given(rt: Runtime) {
    let agent = Agent::start(rt, &["-rpc-auth", "s3cret"]);
    let mut c = agent.rpc();
    c.send(&req("members", 1));
    let header = c.value();
    assert_eq!(
        header.get("Error").str(),
        "Authentication required",
        "{header:?}"
    );
    c.send(&req_with("auth", 2, &map(&[("AuthKey", "s3cret".into())])));
    c.reply_ok(2);
    c.send(&req("members", 3));
    c.reply_ok(3);
    let body = c.value();
    assert!(matches!(body.get("Members"), V::A(m) if m.len() == 1));
}
