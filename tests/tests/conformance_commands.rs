//! Conformance of the built-in commands and the command line: `help`, `version`,
//! `session`, `echo`, `jobs`, `kill`, `stats`, `members`, `monitor`, shell-style splitting,
//! unknown commands and the `-10` usage statuses.

use serde_json::Value;
use tandem_core::{Config, Level, VERSION};
use tandem_tests::Sim;
use tandem_tests::sim::{PID, result_items};

/// `exec` of `line` in a one-time session: the raw result items.
fn exec_items(sim: &mut Sim, line: &str) -> Vec<String> {
    let text = sim.api_text(&format!(
        r#"{{"action":"exec","command":{}}}"#,
        Value::from(line)
    ));
    assert!(text.contains(r#""state":"SUCCEEDED""#), "{line}: {text}");
    result_items(&text)
}

fn ok(job: u32) -> String {
    format!(r#"{{"jobId":{job},"statusCode":0,"type":"status"}}"#)
}

fn usage(job: u32, text: &str) -> String {
    format!(r#"{{"jobId":{job},"message":"{text}","statusCode":-10,"type":"status"}}"#)
}

// ----- help ---------------------------------------------------------------------------

#[test]
fn help_lists_every_command_sorted_by_name() {
    let mut sim = Sim::new();
    sim.register("gen");
    sim.register("abc");
    let items = exec_items(&mut sim, "help");
    let entry = |n: &str, s: &str| format!(r#"{{"name":"{n}","summary":"{s}"}}"#);
    let list = [
        entry("abc", "test command"),
        entry("echo", "Print its arguments"),
        entry(
            "events",
            "Stream membership and user events until interrupted",
        ),
        entry("force-leave", "Force a failed member into the left state"),
        entry("gen", "test command"),
        entry("help", "List commands, or show one command's usage"),
        entry("jobs", "List the jobs of this session"),
        entry("join", "Join a cluster through these addresses"),
        entry("kill", "Stop a job of this session"),
        entry(
            "leave",
            "Leave the cluster gracefully and shut the agent down",
        ),
        entry("members", "List the members of the cluster"),
        entry(
            "monitor",
            "Stream the agent's log records until interrupted",
        ),
        entry("reload", "Re-read the agent's configuration file"),
        entry("session", "Show this session"),
        entry("stats", "Show the agent's counters"),
        entry("version", "Show the agent's version"),
    ]
    .join(",");
    assert_eq!(
        items,
        [
            format!(r#"{{"commands":[{list}],"jobId":1,"type":"help"}}"#),
            ok(1)
        ]
    );
}

#[test]
fn help_with_a_name_shows_that_commands_usage() {
    let mut sim = Sim::new();
    sim.register("gen");
    assert_eq!(
        exec_items(&mut sim, "help kill"),
        [
            r#"{"command":{"name":"kill","summary":"Stop a job of this session","usage":"kill JOB_ID"},"jobId":1,"type":"help"}"#.to_string(),
            ok(1)
        ]
    );
    assert_eq!(
        exec_items(&mut sim, "help gen"),
        [
            r#"{"command":{"name":"gen","summary":"test command","usage":"gen"},"jobId":2,"type":"help"}"#.to_string(),
            ok(2)
        ]
    );
    assert_eq!(
        exec_items(&mut sim, "help nosuch"),
        [usage(3, "help: nosuch: command not found")]
    );
    assert_eq!(
        exec_items(&mut sim, "help kill jobs"),
        [usage(4, "usage: help [COMMAND]")]
    );
}

// ----- version, session, echo ---------------------------------------------------------

#[test]
fn version_shows_the_agent_version() {
    let mut sim = Sim::new();
    assert_eq!(
        exec_items(&mut sim, "version"),
        [
            format!(r#"{{"jobId":1,"type":"version","version":"{VERSION}"}}"#),
            ok(1)
        ]
    );
}

#[test]
fn bad_arguments_end_with_status_minus_10_and_the_usage() {
    let mut sim = Sim::new();
    let cases = [
        ("version x", "usage: version"),
        ("kill", "usage: kill JOB_ID"),
        ("kill abc", "usage: kill JOB_ID"),
        ("kill -1", "usage: kill JOB_ID"),
        ("kill 1 2", "usage: kill JOB_ID"),
        ("jobs -a", "usage: jobs"),
        ("session x", "usage: session"),
        ("stats now", "usage: stats"),
        ("members -lan", "usage: members [-wan]"),
        ("members -wan x", "usage: members [-wan]"),
        (
            "monitor -x",
            "usage: monitor [-l TRACE|DEBUG|INFO|WARN|ERR]",
        ),
        (
            "monitor -l",
            "usage: monitor [-l TRACE|DEBUG|INFO|WARN|ERR]",
        ),
        (
            "monitor -l INFO extra",
            "usage: monitor [-l TRACE|DEBUG|INFO|WARN|ERR]",
        ),
    ];
    for (job, (line, message)) in (1..).zip(cases) {
        assert_eq!(exec_items(&mut sim, line), [usage(job, message)], "{line}");
    }
    assert_eq!(sim.agent.job_count(), 0);
}

#[test]
fn session_shows_this_session() {
    let mut sim = Sim::new();
    sim.advance_ms(3_000);
    let (sid, _) = sim.init_session();
    let created = sim.unix_ms();
    sim.join_session(&sid);
    sim.async_exec(&sid, "monitor &");
    let v = sim.exec_in(&sid, "session");
    assert_eq!(
        serde_json::to_string(&v["body"]["results"]).unwrap(),
        format!(
            r#"[{{"consumers":2,"createTime":{created},"jobId":2,"jobs":2,"pid":{PID},"sessionId":"{sid}","type":"session"}},{{"jobId":2,"statusCode":0,"type":"status"}}]"#
        )
    );
}

#[test]
fn echo_joins_its_arguments_with_one_space() {
    let mut sim = Sim::new();
    let cases = [
        ("echo", ""),
        ("echo a", "a"),
        ("echo  a   b\tc ", "a b c"),
        (r#"echo "a  b" 'c  d' e\ \ f"#, "a  b c  d e  f"),
        (
            r#"echo 'say "hi"' "it's" "\"q\"" \\"#,
            r#"say "hi" it's "q" \"#,
        ),
        ("echo ''", ""),
        ("echo é ü", "é ü"),
    ];
    for (job, (line, want)) in (1..).zip(cases) {
        assert_eq!(
            exec_items(&mut sim, line),
            [
                format!(
                    r#"{{"jobId":{job},"message":{},"type":"message"}}"#,
                    Value::from(want)
                ),
                ok(job)
            ],
            "{line}"
        );
    }
}

#[test]
fn the_seeds_quoted_watch_expression_is_one_argument() {
    let mut sim = Sim::new();
    // Two spaces survive only inside one quoted argument.
    let items = exec_items(
        &mut sim,
        r#"echo demo.MathGame primeFactors "{params,  returnObj,  throwExp}" -n 5"#,
    );
    assert_eq!(
        items[0],
        r#"{"jobId":1,"message":"demo.MathGame primeFactors {params,  returnObj,  throwExp} -n 5","type":"message"}"#
    );
    // A host command receives the words exactly.
    sim.register("watch");
    let (sid, _) = sim.init_session();
    sim.async_exec(
        &sid,
        r#"watch demo.MathGame primeFactors "{params, returnObj, throwExp}" -n 5  -x 3"#,
    );
    let started = sim.started_jobs();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].1, "watch");
    assert_eq!(
        started[0].2,
        [
            "demo.MathGame",
            "primeFactors",
            "{params, returnObj, throwExp}",
            "-n",
            "5",
            "-x",
            "3"
        ]
    );
}

#[test]
fn unknown_commands_and_bad_lines_fail_to_exec() {
    let mut sim = Sim::new();
    for (line, message) in [
        ("nosuch", "Exec command failed:nosuch: command not found"),
        (
            "nosuch a b",
            "Exec command failed:nosuch: command not found",
        ),
        ("  ", "Exec command failed:'command' is required"),
        ("&", "Exec command failed:'command' is required"),
        (
            "echo 'open",
            "Exec command failed:unterminated quote in command line",
        ),
        ("Version", "Exec command failed:Version: command not found"),
    ] {
        let v = sim.api(&format!(
            r#"{{"action":"exec","command":{}}}"#,
            Value::from(line)
        ));
        assert_eq!(v["state"], "FAILED", "{line}");
        assert_eq!(v["message"], message, "{line}");
        assert_eq!(v["body"]["command"], line);
    }
    assert_eq!(sim.agent.session_count(), 0);
    assert_eq!(sim.agent.job_count(), 0);
}

// ----- stats and members --------------------------------------------------------------

#[test]
fn stats_shows_the_agents_counters_as_sections_of_strings() {
    let mut sim = Sim::new();
    let body = r#"{"action":"exec","command":"stats"}"#;
    let items = exec_items(&mut sim, "stats");
    let request_len = tandem_tests::http::post_api(body).len();
    assert_eq!(
        items,
        [
            format!(
                concat!(
                    r#"{{"jobId":1,"stats":{{"#,
                    r#""agent":{{"bytes_discarded":"0","connections_accepted":"1","connections_closed":"0","connections_refused":"0","connections_stalled":"0","jobs":"1","jobs_started":"1","name":"tandem","reloads":"0","sessions":"1","sessions_created":"1"}},"#,
                    r#""build":{{"version":"{v}"}},"#,
                    r#""gossip":{{"bad_datagrams":"0","coordinate_samples":"0","coordinates_rejected":"0","datagrams_dropped":"0","datagrams_in":"0","datagrams_out":"0","decrypt_failures":"0","events_dropped":"0","members_refused":"0","stranger_claims":"0"}},"#,
                    r#""http":{{"api_failed":"0","api_interrupted":"0","api_refused":"0","api_succeeded":"0","bytes_in":"{n}","bytes_out":"0","consumers_expired":"0","errors":"0","requests":"1","sessions_evicted":"0","sessions_expired":"0"}},"#,
                    r#""rpc":{{"decode_errors":"0","records_dropped":"0","replies":"0","requests":"0"}},"#,
                    r#""runtime":{{"pid":"{pid}","runtime":"sim"}}"#,
                    r#"}},"type":"stats"}}"#
                ),
                v = VERSION,
                n = request_len,
                pid = PID
            ),
            ok(1)
        ]
    );
    // Counters move: the first exec is now answered and counted.
    let v = sim.api(r#"{"action":"exec","command":"stats"}"#);
    let stats = &v["body"]["results"][0]["stats"];
    assert_eq!(stats["http"]["api_succeeded"], "1");
    assert_eq!(stats["http"]["requests"], "2");
    assert_eq!(stats["agent"]["jobs_started"], "2");
    assert_eq!(stats["agent"]["connections_accepted"], "2");
}

#[test]
fn members_lists_one_member_this_node() {
    let mut sim = Sim::with_config(Config {
        node_name: "node-a".into(),
        ..Config::default()
    });
    assert_eq!(
        exec_items(&mut sim, "members"),
        [
            format!(
                r#"{{"jobId":1,"members":[{{"Addr":"127.0.0.1","DelegateCur":5,"DelegateMax":5,"DelegateMin":2,"Name":"node-a","Port":8301,"ProtocolCur":2,"ProtocolMax":5,"ProtocolMin":1,"Status":"alive","Tags":{{"build":"{VERSION}","dc":"dc1","role":"node","vsn":"2"}}}}],"type":"members"}}"#
            ),
            ok(1)
        ]
    );
}

// ----- monitor ------------------------------------------------------------------------

fn log_item(job: u32, level: &str, text: &str) -> String {
    format!(
        r#"{{"jobId":{job},"level":"{level}","log":"2026/11/21 00:00:01 [{level}] {text}","type":"log"}}"#
    )
}

#[test]
fn monitor_replays_recent_records_at_or_above_its_level_then_streams_live_ones() {
    let mut sim = Sim::new();
    sim.advance_ms(1_500);
    for (level, text) in [
        (Level::Warn, "w1"),
        (Level::Info, "i1"),
        (Level::Debug, "d1"),
        (Level::Err, "e1"),
    ] {
        sim.agent.log_record(level, text, sim.now);
    }
    sim.drain();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    sim.async_exec(&sid, "monitor -l warn");
    for (level, text) in [
        (Level::Info, "i2"),
        (Level::Err, "e2"),
        (Level::Warn, "w2"),
        (Level::Trace, "t2"),
    ] {
        sim.agent.log_record(level, text, sim.now);
    }
    sim.drain();
    sim.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    sim.agent.log_record(Level::Err, "after", sim.now);
    sim.drain();
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            r#"{"command":"monitor -l warn","jobId":1,"state":"SCHEDULED","type":"command"}"#
                .to_string(),
            r#"{"inputStatus":"ALLOW_INTERRUPT","jobId":0,"type":"input_status"}"#.to_string(),
            log_item(1, "WARN", "w1"),
            log_item(1, "ERR", "e1"),
            log_item(1, "ERR", "e2"),
            log_item(1, "WARN", "w2"),
            r#"{"interrupted":true,"jobId":1,"statusCode":0,"type":"status"}"#.to_string(),
            r#"{"inputStatus":"ALLOW_INPUT","jobId":0,"type":"input_status"}"#.to_string(),
        ]
    );
}

#[test]
fn monitor_defaults_to_info() {
    let mut sim = Sim::new();
    sim.advance_ms(1_000);
    for (level, text) in [(Level::Debug, "d"), (Level::Info, "i"), (Level::Err, "e")] {
        sim.agent.log_record(level, text, sim.now);
    }
    let c = sim.connect();
    sim.post(
        c,
        r#"{"action":"exec","command":"monitor","execTimeout":10}"#,
    );
    sim.advance_ms(10);
    assert_eq!(
        result_items(sim.responses(c)[0].text()),
        [
            log_item(1, "INFO", "i"),
            log_item(1, "ERR", "e"),
            r#"{"interrupted":true,"jobId":1,"statusCode":0,"type":"status"}"#.to_string(),
        ]
    );
}

#[test]
fn monitor_with_an_unknown_level_ends_with_minus_10() {
    let mut sim = Sim::new();
    assert_eq!(
        exec_items(&mut sim, "monitor -l LOUD"),
        [usage(1, "Unknown log level: LOUD")]
    );
    assert_eq!(sim.agent.job_count(), 0);
    assert_eq!(sim.agent.session_count(), 0);
}
