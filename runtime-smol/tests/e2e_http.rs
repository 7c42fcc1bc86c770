//! End-to-end tests of `tandem agent`'s HTTP API: the real binary, real sockets on
//! 127.0.0.1 with ephemeral ports, real signals. The binary is the one cargo builds for this
//! package (`CARGO_BIN_EXE_tandem`); see `support/mod.rs` for the harness.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{BIN, DEADLINE, RunningAgent, post_api, require_tool};

fn results(v: &Value) -> Vec<Value> {
    v["body"]["results"].as_array().cloned().unwrap_or_default()
}

fn types(items: &[Value]) -> Vec<&str> {
    items.iter().filter_map(|i| i["type"].as_str()).collect()
}

// ----- the seed tutorial, run with curl and sed as it is written ---------------------

/// The seed's commands (`shared/seeds/000_…`), verbatim except for the address (the
/// ephemeral port on 127.0.0.1) and the `async_exec` command: the tutorial watches a Java
/// method, tandem streams `dashboard` samples instead. `=== name` lines split the output
/// into sections for the assertions.
const SEED_SCRIPT: &str = r#####"
set -eo pipefail
command -v json_pp >/dev/null || json_pp() { cat; }
echo '=== init'
session_data=$(curl -Ss -XPOST http://localhost:8563/api -d '
{
"action":"init_session"
}
')
echo $session_data | json_pp
echo '=== session_id'
session_id=$(echo $session_data | sed 's/.*"sessionId":"\([^"]*\)".*/\1/g')
echo $session_id
echo '=== consumer_id'
consumer_id=$(echo $session_data | sed 's/.*"consumerId":"\([^"]*\)".*/\1/g')
echo $consumer_id
echo '=== join'
session_data=$(curl -Ss -XPOST http://localhost:8563/api -d '
{
"action":"join_session",
"sessionId" : "'"$session_id"'"
}
')
echo $session_data | json_pp
echo '=== joined_consumer_id'
consumer_id=$(echo $session_data | sed 's/.*"consumerId":"\([^"]*\)".*/\1/g')
echo $consumer_id
echo '=== pull'
curl -Ss -XPOST http://localhost:8563/api -d '
{
"action":"pull_results",
"sessionId" : "'"$session_id"'",
"consumerId" : "'"$consumer_id"'"
}
' | json_pp
echo '=== async_exec'
curl -Ss -XPOST http://localhost:8563/api -d '''
{
"action":"async_exec",
"command":"dashboard -i 50",
"sessionId" : "'"$session_id"'"
}
''' | json_pp
echo '=== pull_job'
curl -Ss -XPOST http://localhost:8563/api -d '
{
"action":"pull_results",
"sessionId" : "'"$session_id"'",
"consumerId" : "'"$consumer_id"'"
}
' | json_pp
echo '=== interrupt'
curl -Ss -XPOST http://localhost:8563/api -d '''
{
"action":"interrupt_job",
"sessionId" : "'"$session_id"'"
}
''' | json_pp
echo '=== pull_end'
curl -Ss -XPOST http://localhost:8563/api -d '
{
"action":"pull_results",
"sessionId" : "'"$session_id"'",
"consumerId" : "'"$consumer_id"'"
}
' | json_pp
echo '=== close'
curl -Ss -XPOST http://localhost:8563/api -d '''
{
"action":"close_session",
"sessionId" : "'"$session_id"'"
}
''' | json_pp
"#####;

/// Splits the script's stdout at its `=== name` lines.
fn sections(stdout: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut name = String::new();
    for line in stdout.lines() {
        if let Some(n) = line.strip_prefix("=== ") {
            name = n.to_string();
            out.insert(name.clone(), String::new());
        } else if let Some(s) = out.get_mut(&name) {
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

#[test]
fn seed_tutorial_flow_with_curl_and_sed() {
    require_tool("curl");
    require_tool("sed");
    let agent = RunningAgent::start(&[]);
    let script = SEED_SCRIPT.replace("localhost:8563", &format!("127.0.0.1:{}", agent.port));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "seed script failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let s = sections(&stdout);
    let json = |name: &str| -> Value {
        serde_json::from_str(&s[name]).unwrap_or_else(|e| panic!("{name}: {e}: {:?}", s[name]))
    };
    let text = |name: &str| s[name].trim().to_string();

    // init_session, and the ids as sed extracts them from the compact JSON.
    let init = json("init");
    assert_eq!(init["state"], "SUCCEEDED");
    assert_eq!(text("session_id"), init["sessionId"].as_str().unwrap());
    assert_eq!(text("session_id").len(), 36, "a UUID with dashes");
    assert_eq!(text("consumer_id"), init["consumerId"].as_str().unwrap());
    assert!(text("consumer_id").ends_with("_1"));

    // join_session gives the second consumer of the same session.
    let join = json("join");
    assert_eq!(join["sessionId"].as_str().unwrap(), text("session_id"));
    assert_eq!(
        text("joined_consumer_id"),
        join["consumerId"].as_str().unwrap()
    );
    assert!(text("joined_consumer_id").ends_with("_2"));

    // The joiner's first pull: DISABLED, the welcome history, the current input status.
    let pull = json("pull");
    assert_eq!(pull["state"], "SUCCEEDED");
    assert_eq!(
        pull["consumerId"].as_str().unwrap(),
        text("joined_consumer_id")
    );
    let items = results(&pull);
    assert_eq!(
        types(&items),
        ["input_status", "message", "welcome", "input_status"],
        "{items:?}"
    );
    assert_eq!(items[0]["inputStatus"], "DISABLED");
    assert!(
        items[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("Welcome to")
    );
    assert_eq!(items[2]["pid"], agent.pid().to_string());
    assert_eq!(items[3]["inputStatus"], "ALLOW_INPUT");

    // async_exec of a streaming host command.
    let scheduled = json("async_exec");
    assert_eq!(scheduled["state"], "SCHEDULED");
    assert_eq!(scheduled["body"]["jobStatus"], "READY");
    let job = scheduled["body"]["jobId"].as_u64().unwrap();
    let items = results(&json("pull_job"));
    assert_eq!(
        items[0],
        json!({"command":"dashboard -i 50","jobId":job,"state":"SCHEDULED","type":"command"})
    );
    let samples: Vec<&Value> = items.iter().filter(|i| i["type"] == "dashboard").collect();
    assert!(!samples.is_empty(), "{items:?}");
    assert!(
        samples
            .iter()
            .all(|d| d["jobId"] == job && d["pid"] == agent.pid())
    );

    // interrupt_job ends it; the stream says so with an interrupted status.
    assert_eq!(
        json("interrupt"),
        json!({"body":{"jobId":job,"jobStatus":"TERMINATED"},"state":"SUCCEEDED"})
    );
    let items = results(&json("pull_end"));
    let status = items
        .iter()
        .position(|i| i["type"] == "status")
        .unwrap_or_else(|| panic!("no status in {items:?}"));
    assert_eq!(
        items[status],
        json!({"interrupted":true,"jobId":job,"statusCode":0,"type":"status"})
    );
    assert_eq!(
        items.get(status + 1),
        Some(&json!({"inputStatus":"ALLOW_INPUT","jobId":0,"type":"input_status"}))
    );
    assert_eq!(json("close"), json!({"state":"SUCCEEDED"}));
}

// ----- host commands -------------------------------------------------------------------

#[test]
fn exec_version_reports_core_and_runtime() {
    let agent = RunningAgent::start(&[]);
    let r = agent.api(r#"{"action":"exec","command":"version","requestId":"v"}"#);
    assert_eq!(r["state"], "SUCCEEDED");
    assert_eq!(r["requestId"], "v");
    let items = results(&r);
    assert_eq!(types(&items), ["version", "status"]);
    assert_eq!(items[0]["version"], tandem_core::VERSION);
    assert_eq!(items[1]["statusCode"], 0);
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
    assert!(info["threads"].as_u64().unwrap() >= 1);
    assert!(info["fds"].as_u64().unwrap() >= 3, "stdio at least: {info}");
    assert!(info["uptime_ms"].is_u64());
    let load = info["load"].as_array().unwrap();
    assert!(
        load.len() == 3 && load.iter().all(Value::is_number),
        "{info}"
    );
    assert_eq!(
        items[1],
        json!({"jobId":info["jobId"],"statusCode":0,"type":"status"})
    );
}

#[test]
fn exec_sysinfo_with_arguments_is_a_usage_error() {
    let agent = RunningAgent::start(&[]);
    let r = agent.api(r#"{"action":"exec","command":"sysinfo -x"}"#);
    let items = results(&r);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["statusCode"], -10);
    assert_eq!(items[0]["message"], "usage: sysinfo");
    let r = agent.api(r#"{"action":"exec","command":"dashboard -i zero"}"#);
    assert_eq!(
        results(&r)[0]["message"],
        "usage: dashboard [-i MS] [-n COUNT]"
    );
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
fn async_dashboard_is_stopped_by_interrupt_job() {
    let agent = RunningAgent::start(&["-log-level", "debug"]);
    let init = agent.api(r#"{"action":"init_session"}"#);
    let sid = init["sessionId"].as_str().unwrap().to_string();
    let cid = init["consumerId"].as_str().unwrap().to_string();
    let pull_body =
        format!(r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid}"}}"#);
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"dashboard -i 50","sessionId":"{sid}"}}"#
    ));
    let job = r["body"]["jobId"].as_u64().unwrap();
    // Pull until a sample has arrived, so the job is really running when interrupted.
    let deadline = Instant::now() + DEADLINE;
    while !results(&agent.api(&pull_body))
        .iter()
        .any(|i| i["type"] == "dashboard")
    {
        assert!(Instant::now() < deadline, "no dashboard sample");
    }
    let r = agent.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        r,
        json!({"body":{"jobId":job,"jobStatus":"TERMINATED"},"state":"SUCCEEDED"})
    );
    let mut seen = Vec::new();
    while !seen.iter().any(|i: &Value| i["type"] == "status") {
        assert!(
            Instant::now() < deadline,
            "no status after interrupt: {seen:?}"
        );
        seen.extend(results(&agent.api(&pull_body)));
    }
    let status = seen.iter().find(|i| i["type"] == "status").unwrap();
    assert_eq!(
        status,
        &json!({"interrupted":true,"jobId":job,"statusCode":0,"type":"status"})
    );
    // The runtime stopped the sampling task itself, not just the agent's record of it.
    agent.wait_log(&format!("host: job {job} cancelled"));
    // The foreground slot is free again: another job may start.
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"sysinfo","sessionId":"{sid}"}}"#
    ));
    assert_eq!(r["state"], "SCHEDULED");
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
fn connection_close_answers_then_closes_cleanly_despite_unread_bytes() {
    let agent = RunningAgent::start(&[]);
    let mut c = agent.connect();
    let body = r#"{"action":"exec","command":"version"}"#;
    let mut req = format!(
        "POST /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    // Bytes after a `Connection: close` request are never parsed by the agent: they get no
    // answer, and the runtime drains them while closing (a close with unread input would
    // be a reset, which can destroy an answer still in flight) so the client sees a FIN.
    req.extend(std::iter::repeat_n(b'x', 32 * 1024));
    c.send(&req);
    let mut all = c.read_to_end();
    let responses = support::take_responses(&mut all);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].header("connection"), Some("close"));
    assert_eq!(results(&responses[0].json())[0]["type"], "version");
    assert!(all.is_empty(), "nothing after the answer");
}

#[test]
fn other_paths_are_404() {
    let agent = RunningAgent::start(&[]);
    let mut c = agent.connect();
    c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Not found");
}

#[test]
fn get_api_is_refused_in_json() {
    let agent = RunningAgent::start(&[]);
    let mut c = agent.connect();
    c.send(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        r.text(),
        r#"{"message":"Unsupported http method: GET","state":"REFUSED"}"#
    );
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
    let pull = format!(
        r#"{{"action":"pull_results","sessionId":"{}","consumerId":"{}"}}"#,
        init["sessionId"].as_str().unwrap(),
        init["consumerId"].as_str().unwrap()
    );
    parked.send(&post_api(&pull));
    let _ = parked.response(); // the welcome items
    parked.send(&post_api(&pull)); // now parked: nothing queued
    agent.signal(signal);
    let status = agent.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{name}: {status}");
    agent.wait_log(&format!("agent: caught signal {name}"));
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
    let out = Command::new(BIN).args(["agent", "-help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("-http-addr"));
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("tandem v{}", tandem_core::VERSION))
    );
}

// ----- the agent RPC listener -----------------------------------------------------------

/// A msgpack string (fixstr; the test only needs short ones).
fn mp_str(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 32);
    out.push(0xa0 | s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// A request header `{"Command": command, "Seq": seq}`.
fn rpc_header(out: &mut Vec<u8>, command: &str, seq: u8) {
    assert!(seq < 128);
    out.push(0x82);
    mp_str(out, "Command");
    mp_str(out, command);
    mp_str(out, "Seq");
    out.push(seq);
}

#[test]
fn rpc_leave_answers_then_the_agent_exits_zero() {
    let mut agent = RunningAgent::start(&[]);
    let mut c = agent.connect_rpc();
    let mut req = Vec::new();
    rpc_header(&mut req, "handshake", 0);
    req.push(0x81);
    mp_str(&mut req, "Version");
    req.push(1);
    rpc_header(&mut req, "leave", 1);
    c.send(&req);
    // Both replies arrive before the agent closes the connection on its way out.
    let got = c.read_to_end();
    let replies = got
        .windows(b"Error".len())
        .filter(|w| w == b"Error")
        .count();
    assert_eq!(replies, 2, "{got:?}");
    let status = agent.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}");
    agent.wait_log("agent: shutdown complete");
}

// ----- host jobs under backpressure -----------------------------------------------------

/// A config file in a fresh temporary directory, removed on drop.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(json: &str) -> ConfigFile {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tandem-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.json");
        std::fs::write(&path, json).unwrap();
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn write(&self, json: &str) {
        std::fs::write(&self.0, json).unwrap();
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn a_host_job_filling_an_exec_response_is_ended_at_once_and_cancelled() {
    let cfg = ConfigFile::new(r#"{"limits":{"exec_results":2}}"#);
    let agent = RunningAgent::start(&["-config-file", cfg.path(), "-log-level", "debug"]);
    // The third sample does not fit: the job ends there (no waiting for the timeout), the
    // status says why, and the runtime is told to cancel the host task.
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
    let cid = init["consumerId"].as_str().unwrap().to_string();
    let pull = format!(r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid}"}}"#);
    assert_eq!(
        types(&results(&agent.api(&pull))).len(),
        3,
        "the welcome items"
    );
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"dashboard -i 10 -n 8","sessionId":"{sid}"}}"#
    ));
    let job = r["body"]["jobId"].as_u64().unwrap();
    // Eight samples do not fit a queue of four: the job must be held back by `Full` and
    // resumed by `JobWritable` as the queue is pulled, or its status never comes.
    let deadline = Instant::now() + DEADLINE;
    let mut seen: Vec<Value> = Vec::new();
    while !seen.iter().any(|i| i["type"] == "status") {
        assert!(Instant::now() < deadline, "job never finished: {seen:?}");
        seen.extend(results(&agent.api(&pull)));
    }
    let status = seen.iter().find(|i| i["type"] == "status").unwrap();
    assert_eq!(status, &json!({"jobId":job,"statusCode":0,"type":"status"}));
    let samples = seen.iter().filter(|i| i["type"] == "dashboard").count();
    assert!(samples >= 4, "most samples got through: {seen:?}");
}

#[test]
fn connections_over_the_limit_are_answered_503_and_closed() {
    let cfg = ConfigFile::new(r#"{"limits":{"max_connections":1}}"#);
    let agent = RunningAgent::start(&["-config-file", cfg.path()]);
    let mut first = agent.connect();
    first.send(&post_api(r#"{"action":"exec","command":"version"}"#));
    assert_eq!(first.response().status, 200, "the first one is served");
    // The second is refused by the agent and closed by the runtime without an answer.
    // The second is answered 503 by the agent, before it sends anything, and closed.
    let mut second = agent.connect();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut second.stream, &mut got).expect("read until the agent closes");
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
        let _ = std::io::Write::write_all(&mut c.stream, closing.as_bytes());
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c.stream, &mut buf);
        if support::take_responses(&mut buf)
            .first()
            .is_some_and(|r| r.status == 200)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no room after the first closed");
    }
}

#[test]
fn monitor_streams_the_runtimes_own_records() {
    let agent = RunningAgent::start(&[]);
    let init = agent.api(r#"{"action":"init_session"}"#);
    let sid = init["sessionId"].as_str().unwrap().to_string();
    let cid = init["consumerId"].as_str().unwrap().to_string();
    let pull = format!(r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid}"}}"#);
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"monitor","sessionId":"{sid}"}}"#
    ));
    assert_eq!(r["state"], "SCHEDULED");
    // A record only the runtime writes: the reload after SIGHUP (no config file: the flags
    // alone are re-applied).
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
