//! End-to-end joins at start of both runtimes' binaries: with `-retry-join` an agent
//! started before its target keeps trying and gets in once the target is up; with
//! `-retry-max` it gives up and exits 1 (Serf's agent); with `-replay` (and `tandem join
//! -replay`) the user events the members hold are delivered to the joiner.
//!
//! Waits poll with a deadline. Every process is killed and reaped on drop.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;
#[macro_use]
mod e2e_support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use e2e_support::{Agent, DEADLINE, Runtime};

runtimes! {
    replay_on_join_delivers_the_events_the_members_hold;
    retry_join_gets_in_once_the_target_is_up;
    retry_join_gives_up_after_retry_max_and_exits_1;
}

/// A loopback UDP port nobody listens on (bound, then released).
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn retry_join_gets_in_once_the_target_is_up(rt: Runtime) {
    let port = free_udp_port();
    let target = format!("127.0.0.1:{port}");
    let a = Agent::start(
        rt,
        &[
            "-node",
            "a",
            "-retry-join",
            &target,
            "-retry-interval",
            "300ms",
        ],
    );
    a.wait_log("[INFO] agent: Joining cluster...(replay: false)");
    a.wait_log("[WARN] agent: Join failed: ");
    a.wait_log(", retrying in 300ms");
    let lan_port = port.to_string();
    let b = Agent::start(rt, &["-node", "b", "-lan-port", &lan_port]);
    assert_eq!(b.lan_port(), port);
    a.wait_log("[INFO] agent: Join completed. Synced with 1 initial agents");
    let deadline = Instant::now() + DEADLINE;
    while !b.cli("members", &[]).ok().contains("\na ") {
        assert!(
            Instant::now() < deadline,
            "b never lists a: {:#?}",
            b.log_lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn retry_join_gives_up_after_retry_max_and_exits_1(rt: Runtime) {
    let target = format!("127.0.0.1:{}", free_udp_port());
    let mut a = Agent::start(
        rt,
        &[
            "-node",
            "a",
            "-retry-join",
            &target,
            "-retry-interval",
            "100ms",
            "-retry-max",
            "1",
        ],
    );
    // Each attempt waits for its join timeout (5 s) before it fails.
    let status = a.wait_exit(Duration::from_secs(40));
    assert_eq!(status.code(), Some(1), "{:#?}", a.log_lines());
    let lines = a.log_lines();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    // The first attempt and one retry.
    assert_eq!(count("agent: Joining cluster..."), 2, "{lines:#?}");
    assert_eq!(
        count("[ERR] agent: maximum retry join attempts made, exiting"),
        1,
        "{lines:#?}"
    );
}

fn replay_on_join_delivers_the_events_the_members_hold(rt: Runtime) {
    let a = Agent::start(rt, &["-node", "a"]);
    let target = format!("127.0.0.1:{}", a.lan_port());
    // Two members, so the event's broadcast is spent before the others join (a lone
    // member keeps it for the first to come, which then hears it as news).
    let x = Agent::start(rt, &["-node", "x", "-join", &target]);
    x.wait_log("agent: joined: 1 nodes");
    assert_eq!(a.cli("event", &["deploy", "v1"]).code, Some(0));
    x.wait_log("agent: Received event: user-event: deploy");
    std::thread::sleep(Duration::from_secs(5));
    let received = |agent: &Agent| {
        agent
            .log_lines()
            .iter()
            .filter(|l| l.ends_with("agent: Received event: user-event: deploy"))
            .count()
    };
    // -replay: the join at start replays; a plain -join does not.
    let b = Agent::start(rt, &["-node", "b", "-replay", "-join", &target]);
    b.wait_log("replay: true");
    b.wait_log("agent: Received event: user-event: deploy");
    let c = Agent::start(rt, &["-node", "c", "-join", &target]);
    c.wait_log("replay: false");
    // `tandem join -replay` asks for it on one join.
    let d = Agent::start(rt, &["-node", "d"]);
    let out = d.cli("join", &["-replay", &target]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    d.wait_log("agent: Received event: user-event: deploy");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(received(&b), 1, "{:#?}", b.log_lines());
    assert_eq!(received(&c), 0, "{:#?}", c.log_lines());
    assert_eq!(received(&d), 1, "{:#?}", d.log_lines());
}
