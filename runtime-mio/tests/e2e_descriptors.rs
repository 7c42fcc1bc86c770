//! End-to-end test of what only `tandem-mio`'s hand-rolled loop has to get right by itself:
//! running out of file descriptors while connections wait in the accept backlog. The real
//! binary, real sockets on 127.0.0.1 with ephemeral ports; the agent is `tandem_tests`'
//! [`Process`], killed and reaped on drop. What both runtimes must do alike is tested once,
//! on both, in `tests/tests/e2e_*.rs`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use tandem_tests::driver::DEADLINE;
use tandem_tests::driver::process::{Process, Runtime};
use tandem_tests::http::{post_api, take_responses};

/// `exec version` on a fresh connection, answered and closed: whether it succeeded.
fn exec_version(agent: &Process) -> bool {
    let body = r#"{"action":"exec","command":"version"}"#;
    let request = format!(
        "POST /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut c = TcpStream::connect(agent.http_addr()).expect("connect");
    c.set_read_timeout(Some(DEADLINE)).expect("timeout");
    c.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).expect("read to EOF");
    let answer = take_responses(&mut raw).remove(0);
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.raw)
    );
    answer.json()["state"] == "SUCCEEDED"
}

#[test]
fn running_out_of_descriptors_backs_off_instead_of_spinning_and_recovers() {
    // With few descriptors, accept fails (EMFILE) while the backlog still holds
    // connections: no new readiness edge will come for them, and retrying at once would
    // fail the same way. The loop must pause accepting, retry on its own timer, and serve
    // again once descriptors are free.
    const LIMIT: libc::rlim_t = 32;
    let agent = Process::start_with(Runtime::Mio, &[], |command| {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: the closure runs in the forked child before exec and only calls
        // setrlimit(2), which is async-signal-safe; it allocates nothing.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: LIMIT,
                    rlim_max: LIMIT,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    // More connections than the agent has descriptors for; each is served first, so the
    // agent surely holds it open.
    let mut held = Vec::new();
    for i in 0..LIMIT {
        let mut c = TcpStream::connect(agent.http_addr()).expect("connect");
        c.write_all(&post_api(&format!(
            r#"{{"action":"exec","command":"echo {i}"}}"#
        )))
        .expect("send");
        held.push(c);
        if agent
            .log_lines()
            .iter()
            .any(|l| l.contains("http: accept failed: "))
        {
            break;
        }
    }
    let failed = agent.wait_log("[WARN] http: accept failed: ");
    assert!(failed.contains("Too many open files"), "{failed}");
    // Let go of the descriptors: the connections still in the backlog get accepted on a
    // retry, and a new one is served.
    drop(held);
    assert!(exec_version(&agent));
    // One warning per back-off, not one per spin of the loop.
    let warnings = agent
        .log_lines()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(warnings < 100, "{warnings} accept warnings");
}
