//! End-to-end `-retry-join` of both runtimes' binaries: an agent started before its target
//! keeps trying and gets in once the target is up; with `-retry-max` it gives up and exits 1
//! (Serf's agent).
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
