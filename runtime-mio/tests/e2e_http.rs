//! End-to-end tests of `tandem-mio agent`'s HTTP API: the real binary, real sockets on
//! 127.0.0.1 with ephemeral ports, real signals. The binary is the one cargo builds for this
//! package (`CARGO_BIN_EXE_tandem-mio`); see `support/mod.rs` for the harness. The cases
//! follow `runtime-smol`'s end-to-end suite: the two runtimes must behave alike.

mod support;

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{BIN, ConfigFile, DEADLINE, RunningAgent, post_api, take_responses};

fn results(v: &Value) -> Vec<Value> {
    v["body"]["results"].as_array().cloned().unwrap_or_default()
}

fn types(items: &[Value]) -> Vec<&str> {
    items.iter().filter_map(|i| i["type"].as_str()).collect()
}

fn pull_body(sid: &str, cid: &str) -> String {
    format!(r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid}"}}"#)
}

/// Pulls until an item of type `ty` has come; returns everything pulled.
fn pull_until(agent: &RunningAgent, pull: &str, ty: &str) -> Vec<Value> {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    while !seen.iter().any(|i: &Value| i["type"] == ty) {
        assert!(Instant::now() < deadline, "no {ty} item: {seen:?}");
        seen.extend(results(&agent.api(pull)));
    }
    seen
}

// ----- the session API flow ------------------------------------------------------------

#[test]
fn session_flow_init_join_pull_async_exec_interrupt_close() {
    let agent = RunningAgent::start(&["-log-level", "debug"]);
    let init = agent.api(r#"{"action":"init_session"}"#);
    assert_eq!(init["state"], "SUCCEEDED");
    let sid = init["sessionId"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 36, "a UUID with dashes");
    assert!(init["consumerId"].as_str().unwrap().ends_with("_1"));

    // join_session gives the second consumer of the same session.
    let join = agent.api(&format!(
        r#"{{"action":"join_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(join["sessionId"], sid.as_str());
    let cid = join["consumerId"].as_str().unwrap().to_string();
    assert!(cid.ends_with("_2"));
    let pull = pull_body(&sid, &cid);

    // The joiner's first pull: DISABLED, the welcome history, the current input status.
    let items = results(&agent.api(&pull));
    assert_eq!(
        types(&items),
        ["input_status", "message", "welcome", "input_status"],
        "{items:?}"
    );
    assert_eq!(items[2]["pid"], agent.pid().to_string());

    // async_exec of a streaming host command: samples arrive on the worker thread's pace.
    let scheduled = agent.api(&format!(
        r#"{{"action":"async_exec","command":"dashboard -i 50","sessionId":"{sid}"}}"#
    ));
    assert_eq!(scheduled["state"], "SCHEDULED");
    assert_eq!(scheduled["body"]["jobStatus"], "READY");
    let job = scheduled["body"]["jobId"].as_u64().unwrap();
    let items = pull_until(&agent, &pull, "dashboard");
    assert_eq!(
        items[0],
        json!({"command":"dashboard -i 50","jobId":job,"state":"SCHEDULED","type":"command"})
    );
    assert!(
        items
            .iter()
            .filter(|i| i["type"] == "dashboard")
            .all(|d| d["jobId"] == job && d["pid"] == agent.pid())
    );

    // interrupt_job ends it; the stream says so; the runtime stops the worker thread.
    assert_eq!(
        agent.api(&format!(
            r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
        )),
        json!({"body":{"jobId":job,"jobStatus":"TERMINATED"},"state":"SUCCEEDED"})
    );
    let items = pull_until(&agent, &pull, "status");
    let status = items.iter().position(|i| i["type"] == "status").unwrap();
    assert_eq!(
        items[status],
        json!({"interrupted":true,"jobId":job,"statusCode":0,"type":"status"})
    );
    agent.wait_log(&format!("host: job {job} cancelled"));
    // The foreground slot is free again.
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"sysinfo","sessionId":"{sid}"}}"#
    ));
    assert_eq!(r["state"], "SCHEDULED");
    assert_eq!(
        agent.api(&format!(
            r#"{{"action":"close_session","sessionId":"{sid}"}}"#
        )),
        json!({"state":"SUCCEEDED"})
    );
}

#[test]
fn a_parked_pull_answers_when_its_deadline_passes() {
    // The empty pull parks on the core's timer: the mio loop must wake for it.
    let cfg = ConfigFile::new(r#"{"timing":{"pull_timeout_ms":200}}"#);
    let agent = RunningAgent::start(&["-config-file", cfg.path()]);
    let init = agent.api(r#"{"action":"init_session"}"#);
    let pull = pull_body(
        init["sessionId"].as_str().unwrap(),
        init["consumerId"].as_str().unwrap(),
    );
    let _ = agent.api(&pull); // the welcome items
    let r = agent.api(&pull);
    assert_eq!(r["state"], "SUCCEEDED");
    assert_eq!(results(&r), Vec::<Value>::new());
}

// ----- host commands -------------------------------------------------------------------

#[test]
fn exec_version_and_stats_name_the_mio_runtime() {
    let agent = RunningAgent::start(&[]);
    let r = agent.api(r#"{"action":"exec","command":"version","requestId":"v"}"#);
    assert_eq!(r["state"], "SUCCEEDED");
    assert_eq!(r["requestId"], "v");
    let items = results(&r);
    assert_eq!(types(&items), ["version", "status"]);
    assert_eq!(items[0]["version"], tandem_core::VERSION);
    let stats = results(&agent.api(r#"{"action":"exec","command":"stats"}"#));
    assert_eq!(
        stats[0]["stats"]["runtime"],
        json!({"pid": agent.pid().to_string(), "runtime": tandem_mio::RUNTIME})
    );
}

#[test]
fn exec_sysinfo_describes_the_agent_process() {
    let agent = RunningAgent::start(&[]);
    let r = agent.api(r#"{"action":"exec","command":"sysinfo"}"#);
    assert_eq!(r["body"]["jobStatus"], "TERMINATED");
    let items = results(&r);
    assert_eq!(types(&items), ["sysinfo", "status"], "{items:?}");
    let info = &items[0];
    assert_eq!(info["pid"], agent.pid());
    assert!(info["rss"].as_u64().unwrap() > 0);
    // The loop thread and the job's worker thread at least.
    assert!(info["threads"].as_u64().unwrap() >= 2, "{info}");
    assert!(info["fds"].as_u64().unwrap() >= 3, "stdio at least: {info}");
    assert!(info["uptime_ms"].is_u64());
    assert_eq!(info["load"].as_array().map(Vec::len), Some(3), "{info}");
    assert_eq!(
        items[1],
        json!({"jobId":info["jobId"],"statusCode":0,"type":"status"})
    );
}

#[test]
fn host_commands_with_bad_arguments_are_usage_errors() {
    let agent = RunningAgent::start(&[]);
    let items = results(&agent.api(r#"{"action":"exec","command":"sysinfo -x"}"#));
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["statusCode"], -10);
    assert_eq!(items[0]["message"], "usage: sysinfo");
    let items = results(&agent.api(r#"{"action":"exec","command":"dashboard -i zero"}"#));
    assert_eq!(items[0]["message"], "usage: dashboard [-i MS] [-n COUNT]");
}

#[test]
fn exec_dashboard_with_a_count_gives_that_many_samples() {
    let agent = RunningAgent::start(&[]);
    let r = agent.api(r#"{"action":"exec","command":"dashboard -i 50 -n 3"}"#);
    assert_eq!(r["state"], "SUCCEEDED");
    assert_eq!(r["body"]["timeExpired"], false);
    let items = results(&r);
    assert_eq!(
        types(&items),
        ["dashboard", "dashboard", "dashboard", "status"],
        "{items:?}"
    );
    assert_eq!(items[3]["statusCode"], 0);
    let uptimes: Vec<u64> = items[..3]
        .iter()
        .map(|i| i["uptime_ms"].as_u64().unwrap())
        .collect();
    assert!(uptimes.is_sorted(), "{uptimes:?}");
}

#[test]
fn a_host_job_filling_an_exec_response_is_ended_at_once_and_cancelled() {
    let cfg = ConfigFile::new(r#"{"limits":{"exec_results":2}}"#);
    let agent = RunningAgent::start(&["-config-file", cfg.path(), "-log-level", "debug"]);
    let r = agent.api(r#"{"action":"exec","command":"dashboard -i 10 -n 5","execTimeout":30000}"#);
    assert_eq!(r["state"], "SUCCEEDED", "{r}");
    assert_eq!(r["body"]["timeExpired"], false);
    let items = results(&r);
    assert_eq!(
        types(&items),
        ["dashboard", "dashboard", "status"],
        "{items:?}"
    );
    assert_eq!(items[2]["interrupted"], true);
    assert_eq!(
        items[2]["message"],
        "result limit reached: exec collects at most 2 items"
    );
    let job = r["body"]["jobId"].as_u64().unwrap();
    agent.wait_log(&format!("host: job {job} cancelled"));
}

#[test]
fn a_host_job_waits_for_a_full_consumer_and_then_finishes() {
    let cfg = ConfigFile::new(r#"{"limits":{"consumer_queue":4}}"#);
    let agent = RunningAgent::start(&["-config-file", cfg.path()]);
    let init = agent.api(r#"{"action":"init_session"}"#);
    let sid = init["sessionId"].as_str().unwrap().to_string();
    let pull = pull_body(&sid, init["consumerId"].as_str().unwrap());
    assert_eq!(results(&agent.api(&pull)).len(), 3, "the welcome items");
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"dashboard -i 10 -n 8","sessionId":"{sid}"}}"#
    ));
    let job = r["body"]["jobId"].as_u64().unwrap();
    // Eight samples do not fit a queue of four: the worker must be held back by `Full` and
    // let go by `JobWritable` as the queue is pulled, or its status never comes.
    let seen = pull_until(&agent, &pull, "status");
    let status = seen.iter().find(|i| i["type"] == "status").unwrap();
    assert_eq!(status, &json!({"jobId":job,"statusCode":0,"type":"status"}));
    let samples = seen.iter().filter(|i| i["type"] == "dashboard").count();
    assert!(samples >= 4, "most samples got through: {seen:?}");
}

// ----- HTTP transport -------------------------------------------------------------------

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let agent = RunningAgent::start(&[]);
    let mut c = agent.connect();
    for id in ["k1", "k2"] {
        c.send(&post_api(&format!(
            r#"{{"action":"exec","command":"echo {id}","requestId":"{id}"}}"#
        )));
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None, "HTTP/1.1 default: stay open");
        assert_eq!(r.json()["requestId"], id);
    }
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let agent = RunningAgent::start(&[]);
    let mut c = agent.connect();
    let mut both = post_api(r#"{"action":"exec","command":"version","requestId":"p1"}"#);
    both.extend(post_api(
        r#"{"action":"exec","command":"sysinfo","requestId":"p2"}"#,
    ));
    c.send(&both);
    let first = c.response().json();
    let second = c.response().json();
    assert_eq!(first["requestId"], "p1");
    assert_eq!(results(&first)[0]["type"], "version");
    assert_eq!(second["requestId"], "p2");
    assert_eq!(results(&second)[0]["type"], "sysinfo");
}

#[test]
fn a_long_pipeline_under_a_small_output_bound_is_answered_whole_and_in_order() {
    // With max_tx this small the agent stops taking input after every answer or two: the
    // loop must resume reading on `ResumeRead` by itself, since the bytes already sit in
    // the socket and no new readiness edge will come for them.
    let cfg = ConfigFile::new(r#"{"limits":{"max_tx":512}}"#);
    let agent = RunningAgent::start(&["-config-file", cfg.path()]);
    let mut c = agent.connect();
    const N: usize = 400;
    let mut all = Vec::new();
    for i in 0..N {
        all.extend(post_api(&format!(
            r#"{{"action":"exec","command":"echo {i}","requestId":"r{i}"}}"#
        )));
    }
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&all));
    for i in 0..N {
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["requestId"], format!("r{i}"));
    }
    sender.join().unwrap().unwrap();
}

#[test]
fn a_reader_that_falls_behind_gets_every_byte() {
    // More answers than loopback's socket buffers hold (about 4 MiB) pile up while the
    // client reads nothing: the loop's writes go partial and then block, so it must
    // register WRITABLE and carry on from where the socket stopped. The output bound is
    // raised so the agent keeps reading requests meanwhile, and the client's writes finish.
    let cfg = ConfigFile::new(r#"{"limits":{"max_tx":67108864}}"#);
    let agent = RunningAgent::start(&["-config-file", cfg.path()]);
    let mut c = agent.connect();
    const N: usize = 6000;
    let mut all = Vec::new();
    for i in 0..N {
        all.extend(post_api(&format!(
            r#"{{"action":"exec","command":"help","requestId":"h{i}"}}"#
        )));
    }
    c.send(&all);
    // Read nothing until the agent has answered them all (it counts requests in `stats`),
    // so its writes surely met a full socket.
    let deadline = Instant::now() + DEADLINE;
    for asked in 1.. {
        let stats = results(&agent.api(r#"{"action":"exec","command":"stats"}"#));
        let requests: usize = stats[0]["stats"]["http"]["requests"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // The `stats` requests so far count too.
        if requests - asked >= N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {requests} requests handled"
        );
    }
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut answered = 0;
    let mut bytes = 0;
    while answered < N {
        let n = c.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {answered} answers");
        bytes += n;
        raw.extend_from_slice(&chunk[..n]);
        for r in take_responses(&mut raw) {
            assert_eq!(r.json()["requestId"], format!("h{answered}"));
            answered += 1;
        }
    }
    assert!(
        bytes > 5 << 20,
        "only {bytes} bytes: too few to fill the socket"
    );
}

#[test]
fn connection_close_answers_then_closes_cleanly_despite_unread_bytes() {
    let agent = RunningAgent::start(&[]);
    let mut c = agent.connect();
    let body = r#"{"action":"exec","command":"version"}"#;
    let mut req = format!(
        "POST /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    // Bytes after a `Connection: close` request are never parsed: the runtime drains them
    // while lingering (a close with unread input would be a reset, which can destroy the
    // answer in flight), so the client sees the answer and then a FIN.
    req.extend(std::iter::repeat_n(b'x', 32 * 1024));
    c.send(&req);
    let mut all = c.read_to_end();
    let responses = take_responses(&mut all);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].header("connection"), Some("close"));
    assert_eq!(results(&responses[0].json())[0]["type"], "version");
    assert!(all.is_empty(), "nothing after the answer");
}

#[test]
fn other_paths_are_404_and_get_api_is_refused_in_json() {
    let agent = RunningAgent::start(&[]);
    let mut c = agent.connect();
    c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Not found");
    c.send(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        r#"{"message":"Unsupported http method: GET","state":"REFUSED"}"#
    );
}

#[test]
fn connections_over_the_limit_are_answered_503_and_closed() {
    let cfg = ConfigFile::new(r#"{"limits":{"max_connections":1}}"#);
    let agent = RunningAgent::start(&["-config-file", cfg.path()]);
    let mut first = agent.connect();
    first.send(&post_api(r#"{"action":"exec","command":"version"}"#));
    assert_eq!(first.response().status, 200, "the first one is served");
    // The second is answered 503 by the agent, before it sends anything, and closed.
    let mut second = agent.connect();
    let mut got = Vec::new();
    second
        .stream
        .read_to_end(&mut got)
        .expect("read until the agent closes");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 41\r\nConnection: close\r\n\r\n\
         Service Unavailable: too many connections",
        "told why, then a FIN"
    );
    agent.wait_log("http: over max_connections: answered 503 to 127.0.0.1:");
    // Once the first goes away, there is room again.
    drop(first);
    let deadline = Instant::now() + DEADLINE;
    let body = r#"{"action":"exec","command":"version"}"#;
    let closing = format!(
        "POST /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    loop {
        let mut c = agent.connect();
        // Still over the limit, the answer is a 503: that is a retry, not a failure.
        let _ = c.stream.write_all(closing.as_bytes());
        let mut buf = Vec::new();
        let _ = c.stream.read_to_end(&mut buf);
        if take_responses(&mut buf)
            .first()
            .is_some_and(|r| r.status == 200)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no room after the first closed");
    }
}

#[test]
fn running_out_of_descriptors_backs_off_instead_of_spinning_and_recovers() {
    // With few descriptors, accept fails (EMFILE) while the backlog still holds
    // connections: no new readiness edge will come for them, and retrying at once would
    // fail the same way. The loop must pause accepting, retry on its own timer, and serve
    // again once descriptors are free.
    const LIMIT: libc::rlim_t = 32;
    let agent = RunningAgent::start_with(&[], |command| {
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
        let mut c = agent.connect();
        c.send(&post_api(&format!(
            r#"{{"action":"exec","command":"echo {i}"}}"#
        )));
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
    let r = agent.api(r#"{"action":"exec","command":"version"}"#);
    assert_eq!(r["state"], "SUCCEEDED");
    // One warning per back-off, not one per spin of the loop.
    let warnings = agent
        .log_lines()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(warnings < 100, "{warnings} accept warnings");
}

// ----- signals and the command line -----------------------------------------------------

fn stops_cleanly_on(signal: libc::c_int, name: &str) {
    let mut agent = RunningAgent::start(&[]);
    // An idle keep-alive connection and a parked long-poll must not hold the exit up.
    let mut idle = agent.connect();
    idle.send(&post_api(r#"{"action":"exec","command":"version"}"#));
    let _ = idle.response();
    let init = agent.api(r#"{"action":"init_session"}"#);
    let mut parked = agent.connect();
    let pull = pull_body(
        init["sessionId"].as_str().unwrap(),
        init["consumerId"].as_str().unwrap(),
    );
    parked.send(&post_api(&pull));
    let _ = parked.response(); // the welcome items
    parked.send(&post_api(&pull)); // now parked: nothing queued
    agent.signal(signal);
    let status = agent.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{name}: {status}");
    agent.wait_log(&format!("agent: caught signal {name}"));
    // The idle and the parked connection at least (the others may still be closing).
    let closing = agent.wait_log("agent: shutting down: closing ");
    assert!(
        closing.ends_with(" connections, stopping 0 jobs"),
        "{closing}"
    );
    agent.wait_log("agent: shutdown complete");
}

#[test]
fn sigterm_exits_zero() {
    stops_cleanly_on(libc::SIGTERM, "Term");
}

#[test]
fn sigint_exits_zero() {
    stops_cleanly_on(libc::SIGINT, "Int");
}

#[test]
fn sighup_reloads_the_config_file() {
    let cfg = ConfigFile::new(r#"{"node_name":"n1","log_level":"INFO"}"#);
    let agent = RunningAgent::start(&["-config-file", cfg.path()]);

    // At INFO, creating a session logs nothing (it is a DEBUG record).
    agent.api(r#"{"action":"init_session"}"#);
    cfg.write(r#"{"node_name":"n1","log_level":"debug"}"#);
    agent.signal(libc::SIGHUP);
    agent.wait_log("agent: caught signal Hup, reloading configuration");
    agent.wait_log("agent: configuration reloaded");
    // stderr is one ordered stream: had the first session been logged, it would be here.
    assert!(
        !agent.log_lines().iter().any(|l| l.contains("[DEBUG]")),
        "{:?}",
        agent.log_lines()
    );
    let from = agent.log_lines().len();
    agent.api(r#"{"action":"init_session"}"#);
    agent.wait_log_after(from, "[DEBUG] http: session");

    // A bad file is reported and the agent keeps serving with the config it has.
    cfg.write("{ not json");
    let from = agent.log_lines().len();
    agent.signal(libc::SIGHUP);
    agent.wait_log_after(from, "[ERR] agent: reload failed");
    let r = agent.api(r#"{"action":"exec","command":"version"}"#);
    assert_eq!(r["state"], "SUCCEEDED");
}

#[test]
fn command_line_errors_exit_one_and_help_exits_zero() {
    let out = Command::new(BIN)
        .args(["agent", "-no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("flag provided but not defined: -no-such-flag")
    );
    for help in ["-h", "-help"] {
        let out = Command::new(BIN).args(["agent", help]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let usage = String::from_utf8_lossy(&out.stdout);
        for flag in [
            "-http-addr",
            "-rpc-addr",
            "-rpc-auth",
            "-config-file",
            "-node",
            "-log-level",
        ] {
            assert!(usage.contains(flag), "{flag} in {usage}");
        }
    }
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "tandem v{}\nRuntime: {}\n",
            tandem_core::VERSION,
            tandem_mio::RUNTIME
        )
    );
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "no command");
}

#[test]
fn a_port_in_use_is_reported_and_exits_one() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["agent", "-rpc-addr", "127.0.0.1:0", "-http-addr", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("[ERR] agent: cannot listen for http on {addr}: ")),
        "{stderr}"
    );
}

#[test]
fn monitor_streams_the_runtimes_own_records() {
    let agent = RunningAgent::start(&[]);
    let init = agent.api(r#"{"action":"init_session"}"#);
    let sid = init["sessionId"].as_str().unwrap().to_string();
    let pull = pull_body(&sid, init["consumerId"].as_str().unwrap());
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"monitor","sessionId":"{sid}"}}"#
    ));
    assert_eq!(r["state"], "SCHEDULED");
    // A record only the runtime writes: the reload after SIGHUP.
    agent.signal(libc::SIGHUP);
    let deadline = Instant::now() + DEADLINE;
    let wanted = "[INFO] agent: caught signal Hup, reloading configuration";
    loop {
        let items = results(&agent.api(&pull));
        if items
            .iter()
            .any(|i| i["type"] == "log" && i["log"].as_str().unwrap().ends_with(wanted))
        {
            break;
        }
        assert!(Instant::now() < deadline, "monitor never showed {wanted:?}");
    }
}
