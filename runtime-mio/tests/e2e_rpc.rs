//! End-to-end tests of `tandem-mio agent`'s agent RPC (msgpack over TCP, Serf's framing):
//! the real binary, real sockets on 127.0.0.1 with ephemeral ports.

mod support;

use std::time::Duration;

use rmpv::Value;
use support::{Client, RunningAgent, mp_get, mp_map, rpc_request};

fn handshake(c: &mut Client, seq: u64) {
    c.send(&rpc_request(
        "handshake",
        seq,
        Some(mp_map(&[("Version", 1.into())])),
    ));
    c.reply_ok(seq);
}

/// Reads monitor records (header, then `{"Log": line}`) until a line contains `needle`.
fn wait_record(c: &mut Client, seq: u64, needle: &str) -> String {
    loop {
        c.reply_ok(seq);
        let record = c.value();
        let line = mp_get(&record, "Log").as_str().unwrap().to_string();
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn handshake_members_monitor_stream_and_leave() {
    let mut agent = RunningAgent::start(&["-node", "n1"]);
    let mut c = agent.connect_rpc();
    handshake(&mut c, 0);

    c.send(&rpc_request("members", 1, None));
    c.reply_ok(1);
    let body = c.value();
    let members = mp_get(&body, "Members").as_array().unwrap().clone();
    assert_eq!(members.len(), 1, "{body}");
    assert_eq!(mp_get(&members[0], "Name").as_str(), Some("n1"));
    assert_eq!(mp_get(&members[0], "Status").as_str(), Some("alive"));

    // The monitor replays the log ring (the runtime's startup lines are in it), then
    // streams live records, the runtime's own included.
    c.send(&rpc_request(
        "monitor",
        2,
        Some(mp_map(&[("LogLevel", "INFO".into())])),
    ));
    c.reply_ok(2);
    let line = wait_record(&mut c, 2, "agent: HTTP API listening on 127.0.0.1:");
    assert!(line.ends_with(&format!(":{}", agent.port)), "{line}");
    agent.signal(libc::SIGHUP);
    wait_record(
        &mut c,
        2,
        "[INFO] agent: caught signal Hup, reloading configuration",
    );
    wait_record(&mut c, 2, "[INFO] agent: configuration reloaded");

    // `leave` on another connection: answered, streamed to the monitor, then the agent
    // exits 0 once the RPC clients hang up.
    let mut l = agent.connect_rpc();
    handshake(&mut l, 0);
    l.send(&rpc_request("leave", 1, None));
    l.reply_ok(1);
    wait_record(&mut c, 2, "agent: left the cluster, shutting down");
    drop(l);
    drop(c);
    let status = agent.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}");
    agent.wait_log("agent: shutdown requested");
    agent.wait_log("agent: shutdown complete");
}

#[test]
fn leave_replies_arrive_before_the_agent_closes_on_its_way_out() {
    let mut agent = RunningAgent::start(&[]);
    let mut c = agent.connect_rpc();
    let mut both = rpc_request("handshake", 0, Some(mp_map(&[("Version", 1.into())])));
    both.extend(rpc_request("leave", 1, None));
    c.send(&both);
    // The client keeps its end open: the agent waits up to a second for it, then closes,
    // and both replies are in before the EOF.
    c.reply_ok(0);
    c.reply_ok(1);
    assert!(c.read_to_end().is_empty(), "nothing after the replies");
    let status = agent.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn rpc_auth_gates_commands_until_the_key_is_given() {
    let agent = RunningAgent::start(&["-rpc-auth", "s3cret"]);
    let mut c = agent.connect_rpc();
    handshake(&mut c, 0);
    c.send(&rpc_request("members", 1, None));
    let header = c.value();
    assert_eq!(
        mp_get(&header, "Error").as_str(),
        Some("Authentication required"),
        "{header}"
    );
    c.send(&rpc_request(
        "auth",
        2,
        Some(mp_map(&[("AuthKey", "s3cret".into())])),
    ));
    c.reply_ok(2);
    c.send(&rpc_request("members", 3, None));
    c.reply_ok(3);
    let body = c.value();
    assert!(matches!(mp_get(&body, "Members"), Value::Array(m) if m.len() == 1));
}
