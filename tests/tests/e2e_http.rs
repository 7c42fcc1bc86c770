//! End-to-end tests of the HTTP API, the signals and the command line of both runtimes'
//! binaries (`tandem agent`, `tandem-mio agent`): real processes, real sockets on 127.0.0.1
//! with ephemeral ports, real signals. Every case runs on both (`<case>::smol`,
//! `<case>::mio`); see `e2e_support/mod.rs` for the harness. What only one runtime has
//! stays in its own crate's tests (mio's descriptor back-off, smol's CLI client).

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;
#[macro_use]
mod e2e_support;

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_support::{
    Agent, ConfigFile, DEADLINE, Runtime, binary, post_api, pull_body, require_tool, results, run,
    take_responses, types,
};
use rpc_support::{handshake, req};
use serde_json::{Value, json};

runtimes! {
    // The session API.
    seed_tutorial_flow_with_curl_and_sed;
    session_flow_init_join_pull_async_exec_interrupt_close;
    async_dashboard_is_stopped_by_interrupt_job;
    a_parked_pull_answers_when_its_deadline_passes;
    // Host commands.
    exec_version_and_stats_name_the_runtime;
    exec_sysinfo_describes_the_agent_process;
    host_commands_with_bad_arguments_are_usage_errors;
    exec_dashboard_with_a_count_gives_that_many_samples;
    a_host_job_filling_an_exec_response_is_ended_at_once_and_cancelled;
    a_host_job_waits_for_a_full_consumer_and_then_finishes;
    host_jobs_over_max_host_jobs_are_refused_and_the_threads_stay_bounded;
    monitor_streams_the_runtimes_own_records;
    // HTTP transport.
    keep_alive_serves_two_requests_on_one_connection;
    a_client_waiting_for_each_answer_costs_no_empty_read_per_request;
    pipelined_requests_in_one_write_are_answered_in_order;
    a_long_pipeline_under_a_small_output_bound_is_answered_whole_and_in_order;
    connection_close_answers_then_closes_cleanly_despite_unread_bytes;
    other_paths_are_404_and_get_api_is_refused_in_json;
    connections_over_the_limit_are_answered_503_and_closed;
    http_auth_with_curl;
    local_trust_admits_loopback_without_credentials;
    // Signals, the command line, the way out.
    sigterm_exits_zero;
    sigint_exits_zero;
    sighup_reloads_the_config_file;
    reload_answers_a_broken_config_files_error_to_the_cli_and_the_api;
    command_line_errors_exit_one_and_help_exits_zero;
    a_port_in_use_is_reported_and_exits_one;
    rpc_leave_answers_then_the_agent_exits_zero;
    // Slow readers.
    a_reader_that_falls_behind_gets_every_byte;
}

/// Pulls until an item of type `ty` has come; returns everything pulled.
fn pull_until(agent: &Agent, pull: &str, ty: &str) -> Vec<Value> {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    while !seen.iter().any(|i: &Value| i["type"] == ty) {
        assert!(Instant::now() < deadline, "no {ty} item: {seen:?}");
        seen.extend(results(&agent.api(pull)));
    }
    seen
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

fn seed_tutorial_flow_with_curl_and_sed(rt: Runtime) {
    tandem_tests::tools::curl();
    require_tool("sed");
    let agent = Agent::start(rt, &[]);
    let script = SEED_SCRIPT.replace("localhost:8563", &format!("127.0.0.1:{}", agent.port()));
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

// ----- the session API flow ------------------------------------------------------------

fn session_flow_init_join_pull_async_exec_interrupt_close(rt: Runtime) {
    let agent = Agent::start(rt, &["-log-level", "debug"]);
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

    // async_exec of a streaming host command: samples arrive on the host's own pace.
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

    // interrupt_job ends it; the stream says so; the runtime stops the host job.
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

fn async_dashboard_is_stopped_by_interrupt_job(rt: Runtime) {
    let agent = Agent::start(rt, &["-log-level", "debug"]);
    let init = agent.api(r#"{"action":"init_session"}"#);
    let sid = init["sessionId"].as_str().unwrap().to_string();
    let pull = pull_body(&sid, init["consumerId"].as_str().unwrap());
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"dashboard -i 50","sessionId":"{sid}"}}"#
    ));
    let job = r["body"]["jobId"].as_u64().unwrap();
    // Pull until a sample has arrived, so the job is really running when interrupted.
    pull_until(&agent, &pull, "dashboard");
    let r = agent.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        r,
        json!({"body":{"jobId":job,"jobStatus":"TERMINATED"},"state":"SUCCEEDED"})
    );
    let seen = pull_until(&agent, &pull, "status");
    let status = seen.iter().find(|i| i["type"] == "status").unwrap();
    assert_eq!(
        status,
        &json!({"interrupted":true,"jobId":job,"statusCode":0,"type":"status"})
    );
    // The runtime stopped the sampling itself, not just the agent's record of it.
    agent.wait_log(&format!("host: job {job} cancelled"));
    // The foreground slot is free again: another job may start.
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"sysinfo","sessionId":"{sid}"}}"#
    ));
    assert_eq!(r["state"], "SCHEDULED");
}

fn a_parked_pull_answers_when_its_deadline_passes(rt: Runtime) {
    // The empty pull parks on the core's timer: the loop must wake for it.
    let cfg = ConfigFile::new(r#"{"timing":{"pull_timeout_ms":200}}"#);
    let agent = Agent::start(rt, &["-config-file", cfg.path()]);
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

fn exec_version_and_stats_name_the_runtime(rt: Runtime) {
    let agent = Agent::start(rt, &[]);
    let r = agent.api(r#"{"action":"exec","command":"version","requestId":"v"}"#);
    assert_eq!(r["state"], "SUCCEEDED");
    assert_eq!(r["requestId"], "v");
    let items = results(&r);
    assert_eq!(types(&items), ["version", "status"]);
    assert_eq!(items[0]["version"], tandem_core::VERSION);
    assert_eq!(items[1]["statusCode"], 0);
    let stats = results(&agent.api(r#"{"action":"exec","command":"stats"}"#));
    assert_eq!(
        stats[0]["stats"]["runtime"],
        json!({"pid": agent.pid().to_string(), "runtime": rt.reported_name()})
    );
}

fn exec_sysinfo_describes_the_agent_process(rt: Runtime) {
    let agent = Agent::start(rt, &[]);
    let r = agent.api(r#"{"action":"exec","command":"sysinfo"}"#);
    assert_eq!(r["body"]["jobStatus"], "TERMINATED");
    let items = results(&r);
    assert_eq!(types(&items), ["sysinfo", "status"], "{items:?}");
    let info = &items[0];
    assert_eq!(info["pid"], agent.pid());
    assert!(info["rss"].as_u64().unwrap() > 0);
    // mio: the loop thread and the job's worker thread at least; smol runs host jobs as
    // tasks on its executor.
    let threads = match rt {
        Runtime::Smol => 1,
        Runtime::Mio => 2,
    };
    assert!(info["threads"].as_u64().unwrap() >= threads, "{info}");
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

fn host_commands_with_bad_arguments_are_usage_errors(rt: Runtime) {
    let agent = Agent::start(rt, &[]);
    let items = results(&agent.api(r#"{"action":"exec","command":"sysinfo -x"}"#));
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["statusCode"], -10);
    assert_eq!(items[0]["message"], "usage: sysinfo");
    let items = results(&agent.api(r#"{"action":"exec","command":"dashboard -i zero"}"#));
    assert_eq!(items[0]["message"], "usage: dashboard [-i MS] [-n COUNT]");
}

fn exec_dashboard_with_a_count_gives_that_many_samples(rt: Runtime) {
    let agent = Agent::start(rt, &[]);
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

fn a_host_job_filling_an_exec_response_is_ended_at_once_and_cancelled(rt: Runtime) {
    let cfg = ConfigFile::new(r#"{"limits":{"exec_results":2}}"#);
    let agent = Agent::start(rt, &["-config-file", cfg.path(), "-log-level", "debug"]);
    // The third sample does not fit: the job ends there (no waiting for the timeout), the
    // status says why, and the runtime is told to cancel the host job.
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

fn a_host_job_waits_for_a_full_consumer_and_then_finishes(rt: Runtime) {
    let cfg = ConfigFile::new(r#"{"limits":{"consumer_queue":4}}"#);
    let agent = Agent::start(rt, &["-config-file", cfg.path()]);
    let init = agent.api(r#"{"action":"init_session"}"#);
    let sid = init["sessionId"].as_str().unwrap().to_string();
    let pull = pull_body(&sid, init["consumerId"].as_str().unwrap());
    assert_eq!(results(&agent.api(&pull)).len(), 3, "the welcome items");
    let r = agent.api(&format!(
        r#"{{"action":"async_exec","command":"dashboard -i 10 -n 8","sessionId":"{sid}"}}"#
    ));
    let job = r["body"]["jobId"].as_u64().unwrap();
    // Eight samples do not fit a queue of four: the job must be held back by `Full` and
    // let go by `JobWritable` as the queue is pulled, or its status never comes.
    let seen = pull_until(&agent, &pull, "status");
    let status = seen.iter().find(|i| i["type"] == "status").unwrap();
    assert_eq!(status, &json!({"jobId":job,"statusCode":0,"type":"status"}));
    let samples = seen.iter().filter(|i| i["type"] == "dashboard").count();
    assert!(samples >= 4, "most samples got through: {seen:?}");
}

/// `Threads:` of a process, from /proc/PID/status.
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

fn host_jobs_over_max_host_jobs_are_refused_and_the_threads_stay_bounded(rt: Runtime) {
    let cfg = ConfigFile::new(r#"{"limits":{"max_host_jobs":4}}"#);
    let agent = Agent::start(rt, &["-config-file", cfg.path()]);
    let before = threads(agent.pid());
    let refused = "too many host jobs running (limit 4)";
    let mut sids = Vec::new();
    let mut scheduled = 0;
    // Background samplers that would run for a minute each, over three sessions: as many
    // as the limit run, every further one is refused, whichever session asks.
    for i in 0..12 {
        if i % 4 == 0 {
            let init = agent.api(r#"{"action":"init_session"}"#);
            sids.push(init["sessionId"].as_str().unwrap().to_string());
        }
        let sid = sids.last().unwrap();
        let r = agent.api(&format!(
            r#"{{"action":"async_exec","command":"dashboard -i 60000 &","sessionId":"{sid}"}}"#
        ));
        if r["state"] == "SCHEDULED" {
            scheduled += 1;
        } else {
            assert_eq!(r["state"], "FAILED", "{r}");
            assert_eq!(
                r["message"],
                format!("Async exec command failed:{refused}"),
                "{r}"
            );
        }
    }
    assert_eq!(scheduled, 4);
    let r = agent.api(r#"{"action":"exec","command":"sysinfo"}"#);
    assert_eq!(
        r["message"],
        format!("Exec command failed:{refused}"),
        "{r}"
    );
    // tandem-mio runs a job on a thread of its own; tandem-smol as a task on its one loop.
    let during = threads(agent.pid());
    assert!(
        during <= before + 4,
        "{during} threads with 4 host jobs running, {before} before"
    );
    // Closing the sessions ends their jobs and gives their places back.
    for sid in &sids {
        let r = agent.api(&format!(
            r#"{{"action":"close_session","sessionId":"{sid}"}}"#
        ));
        assert_eq!(r["state"], "SUCCEEDED", "{r}");
    }
    let deadline = Instant::now() + DEADLINE;
    while threads(agent.pid()) > before {
        assert!(Instant::now() < deadline, "the job threads did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = agent.api(r#"{"action":"exec","command":"sysinfo"}"#);
    assert_eq!(r["state"], "SUCCEEDED", "{r}");
    assert_eq!(types(&results(&r)), ["sysinfo", "status"]);
}

fn monitor_streams_the_runtimes_own_records(rt: Runtime) {
    let agent = Agent::start(rt, &[]);
    let init = agent.api(r#"{"action":"init_session"}"#);
    let sid = init["sessionId"].as_str().unwrap().to_string();
    let pull = pull_body(&sid, init["consumerId"].as_str().unwrap());
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

// ----- HTTP transport -------------------------------------------------------------------

fn keep_alive_serves_two_requests_on_one_connection(rt: Runtime) {
    let agent = Agent::start(rt, &[]);
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

/// `strace` attached to an agent, killed (and so detached) on drop.
struct Tracer(std::process::Child);

impl Drop for Tracer {
    fn drop(&mut self) {
        // SIGINT: strace detaches from the agent and exits.
        // SAFETY: kill(2) on a child of ours that has not been reaped yet.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.0.wait();
    }
}

fn a_client_waiting_for_each_answer_costs_no_empty_read_per_request(rt: Runtime) {
    // A keep-alive client (HTTP or RPC) that sends its next request once the answer is in:
    // the agent reads the request (a read shorter than its window, so the socket is empty)
    // and answers. Reading on until `WouldBlock` cost one more `recvfrom` per request (two
    // in the smol runtime, whose connection task took the ring of its own answer as a
    // wake-up); the socket's next readiness is what says the next request is there.
    let strace = tandem_tests::tools::strace();
    let agent = Agent::start(rt, &[]);
    let mut http = agent.connect();
    let mut rpc = agent.rpc();
    let dir = e2e_support::TempDir::new("strace");
    let log = dir.0.join("recvfrom.log");
    let tracer = Tracer(
        Command::new(strace)
            .args(["-f", "-qq", "-e", "trace=recvfrom", "-o"])
            .arg(&log)
            .args(["-p", &agent.pid().to_string()])
            .spawn()
            .expect("start strace"),
    );
    let traced = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("recvfrom("))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // Attached once the agent's reads show up.
    let deadline = Instant::now() + DEADLINE;
    let mut seq = 1;
    while traced(&log).is_empty() {
        assert!(Instant::now() < deadline, "strace never saw a recvfrom");
        http.send(&post_api(r#"{"action":"exec","command":"version"}"#));
        assert_eq!(http.response().status, 200);
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = traced(&log).len();
    const REQUESTS: usize = 20;
    for i in 0..REQUESTS {
        http.send(&post_api(&format!(
            r#"{{"action":"exec","command":"version","requestId":"r{i}"}}"#
        )));
        assert_eq!(http.response().json()["requestId"], format!("r{i}"));
        rpc.send(&req("stats", seq));
        rpc.reply_ok(seq);
        let _stats = rpc.value();
        seq += 1;
        // The agent goes idle before the next request (this is not a timing assertion):
        // without the pause a traced agent, slowed by strace, may find the next request
        // already in, and an empty read would go unseen.
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(tracer);
    let lines = traced(&log);
    let reads = &lines[before.min(lines.len())..];
    let empty = reads.iter().filter(|l| l.contains("EAGAIN")).count();
    assert!(
        reads.len() >= 2 * REQUESTS,
        "strace saw {} reads for {} requests",
        reads.len(),
        2 * REQUESTS
    );
    assert!(
        empty <= 3,
        "{empty} of {} reads found nothing over {} requests:\n{}",
        reads.len(),
        2 * REQUESTS,
        reads.join("\n")
    );
}

fn pipelined_requests_in_one_write_are_answered_in_order(rt: Runtime) {
    let agent = Agent::start(rt, &[]);
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

fn a_long_pipeline_under_a_small_output_bound_is_answered_whole_and_in_order(rt: Runtime) {
    // With max_tx this small the agent stops taking input after every answer or two: the
    // runtime must resume reading on `ResumeRead` by itself, since the bytes already sit in
    // the socket and no new readiness edge will come for them.
    let cfg = ConfigFile::new(r#"{"limits":{"max_tx":512}}"#);
    let agent = Agent::start(rt, &["-config-file", cfg.path()]);
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

fn a_reader_that_falls_behind_gets_every_byte(rt: Runtime) {
    // More answers than loopback's socket buffers hold (about 4 MiB) pile up while the
    // client reads nothing: the runtime's writes go partial and then block, so it must
    // wait for writability and carry on from where the socket stopped. The output bound is
    // raised so the agent keeps reading requests meanwhile, and the client's writes finish.
    let cfg = ConfigFile::new(r#"{"limits":{"max_tx":67108864}}"#);
    let agent = Agent::start(rt, &["-config-file", cfg.path()]);
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
        let n = match c.stream.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        };
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

fn connection_close_answers_then_closes_cleanly_despite_unread_bytes(rt: Runtime) {
    let agent = Agent::start(rt, &[]);
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
    let responses = take_responses(&mut all);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].header("connection"), Some("close"));
    assert_eq!(results(&responses[0].json())[0]["type"], "version");
    assert!(all.is_empty(), "nothing after the answer");
}

fn other_paths_are_404_and_get_api_is_refused_in_json(rt: Runtime) {
    let agent = Agent::start(rt, &[]);
    let mut c = agent.connect();
    c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Not found");
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

fn connections_over_the_limit_are_answered_503_and_closed(rt: Runtime) {
    let cfg = ConfigFile::new(r#"{"limits":{"max_connections":1}}"#);
    let agent = Agent::start(rt, &["-config-file", cfg.path()]);
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

// ----- HTTP Basic authentication, with curl ----------------------------------------------

/// `curl -i -XPOST http://127.0.0.1:PORT/api -d <exec version> EXTRA…`: head and body.
fn curl(port: u16, extra: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", "-XPOST"])
        .args(extra)
        .arg(format!("http://127.0.0.1:{port}/api"))
        .args(["-d", r#"{"action":"exec","command":"version"}"#])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

fn http_auth_with_curl(rt: Runtime) {
    tandem_tests::tools::curl();
    let agent = Agent::start(rt, &["-http-auth", "admin:pa:ss"]);
    let (head, body) = curl(agent.port(), &[]);
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized"), "{head}");
    assert!(
        head.contains("WWW-Authenticate: Basic realm=\"tandem\""),
        "{head}"
    );
    assert!(body.is_empty(), "{body}");

    let (head, _) = curl(agent.port(), &["-u", "admin:wrong"]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    let (head, body) = curl(agent.port(), &["-u", "admin:pa:ss"]);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.contains(r#""state":"SUCCEEDED""#), "{body}");

    // A raw client without credentials is answered 401 and closed.
    let mut c = agent.connect();
    c.send(&post_api(r#"{"action":"exec","command":"version"}"#));
    let all = c.read_to_end();
    assert!(all.starts_with(b"HTTP/1.1 401 Unauthorized\r\n"));
}

fn local_trust_admits_loopback_without_credentials(rt: Runtime) {
    tandem_tests::tools::curl();
    let agent = Agent::start(rt, &["-http-auth", "admin:pw", "-http-local-trust"]);
    let (head, _) = curl(agent.port(), &[]);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let (head, _) = curl(agent.port(), &["-u", "admin:wrong"]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
}

// ----- signals and the command line -----------------------------------------------------

fn stops_cleanly_on(rt: Runtime, signal: libc::c_int, name: &str) {
    let mut agent = Agent::start(rt, &[]);
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

fn sigterm_exits_zero(rt: Runtime) {
    stops_cleanly_on(rt, libc::SIGTERM, "Term");
}

fn sigint_exits_zero(rt: Runtime) {
    stops_cleanly_on(rt, libc::SIGINT, "Int");
}

fn sighup_reloads_the_config_file(rt: Runtime) {
    let cfg = ConfigFile::new(r#"{"node_name":"n1","log_level":"INFO"}"#);
    let agent = Agent::start(rt, &["-config-file", cfg.path()]);

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

fn reload_answers_a_broken_config_files_error_to_the_cli_and_the_api(rt: Runtime) {
    let cfg = ConfigFile::new(r#"{"node_name":"n1"}"#);
    let agent = Agent::start(rt, &["-config-file", cfg.path()]);
    cfg.write("{ not json");
    let out = agent.cli("reload", &[]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "Error reloading: cannot parse {}: key must be a string at line 1 column 3\n",
            cfg.path()
        )
    );
    assert_eq!(out.stdout, "");
    agent.wait_log("[ERR] agent: reload failed, keeping the running configuration");
    let v = agent.api(r#"{"action":"exec","command":"reload"}"#);
    let status = &results(&v)[0];
    assert_eq!(status["statusCode"], 1, "{v}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("cannot parse "), "{v}");
    // A key nobody reads is refused by name, nested ones with their section.
    cfg.write(r#"{"node_name":"n1","limits":{"max_sesions":4}}"#);
    let out = agent.cli("reload", &[]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    let refused = format!(
        "Error reloading: cannot parse {}: limits.max_sesions: unknown field `max_sesions`",
        cfg.path()
    );
    assert!(out.stderr.starts_with(&refused), "{out:#?}");
    // The agent kept serving; a good file reloads and says so.
    cfg.write(r#"{"node_name":"n1","log_level":"debug"}"#);
    let out = agent.cli("reload", &[]);
    assert_eq!(out.ok(), "Configuration reload triggered\n");
    let v = agent.api(r#"{"action":"exec","command":"reload"}"#);
    assert_eq!(results(&v)[0]["message"], "Configuration reloaded", "{v}");
    assert_eq!(results(&v)[1]["statusCode"], 0, "{v}");
}

fn command_line_errors_exit_one_and_help_exits_zero(rt: Runtime) {
    // The error and one line on where help is, not the whole usage (exit 1, as serf).
    let program = rt.binary_name();
    let hint = format!("Run '{program} agent -help' for usage.");
    let out = run(rt, &["agent", "-no-such-flag"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        format!("flag provided but not defined: -no-such-flag\n{hint}\n")
    );
    let cfg = ConfigFile::new(r#"{"node_name":"n1","colour":"blue"}"#);
    let out = run(rt, &["agent", "-config-file", cfg.path()]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(&format!(
            r#"cannot parse {}: unknown configuration key "colour""#,
            cfg.path()
        )),
        "{out:#?}"
    );
    let out = run(rt, &["agent", "-lan-port", "http"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        format!(
            "invalid value \"http\" for flag -lan-port: expected a port number (0-65535)\n{hint}\n"
        )
    );
    for help in ["-h", "-help"] {
        let out = run(rt, &["agent", help]);
        assert_eq!(out.code, Some(0));
        for flag in [
            "-http-addr",
            "-rpc-addr",
            "-rpc-auth",
            "-config-file",
            "-node",
            "-log-level",
        ] {
            assert!(out.stdout.contains(flag), "{flag} in {}", out.stdout);
        }
    }
    let out = run(rt, &["version"]);
    assert_eq!(out.code, Some(0));
    assert_eq!(
        out.stdout,
        format!(
            "tandem v{}\nRuntime: {}\n",
            tandem_core::VERSION,
            rt.reported_name()
        )
    );
    let out = run(rt, &[]);
    assert_eq!(out.code, Some(1), "no command");
}

fn a_port_in_use_is_reported_and_exits_one(rt: Runtime) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(binary(rt))
        .args(["agent", "-rpc-addr", "127.0.0.1:0", "-http-addr", &addr])
        .args(["-lan-port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("[ERR] agent: cannot listen for http on {addr}: ")),
        "{stderr}"
    );
}

// ----- the way out through the agent RPC ------------------------------------------------

fn rpc_leave_answers_then_the_agent_exits_zero(rt: Runtime) {
    let mut agent = Agent::start(rt, &[]);
    let mut c = agent.connect_rpc();
    let mut both = handshake(0);
    both.extend(req("leave", 1));
    c.send(&both);
    // The client keeps its end open: the agent waits up to a second for it, then closes,
    // and both replies are in before the EOF.
    c.reply_ok(0);
    c.reply_ok(1);
    assert!(c.read_to_end().is_empty(), "nothing after the replies");
    let status = agent.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}");
    agent.wait_log("agent: shutdown complete");
}
