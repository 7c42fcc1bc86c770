//! End-to-end tests of the `tandem` CLI client against a real `tandem agent`: the RPC
//! commands (`members`, `info`, `tags`, `event`, `reload`, `leave`, `monitor`, `join`,
//! `force-leave`, auth) and `exec` over the HTTP API. Real processes, real sockets on
//! 127.0.0.1 with ephemeral ports; see `client_support/mod.rs` for the process harness.

mod client_support;
mod support;

use std::time::Duration;

use client_support::{Spawned, command, tandem};
use serde_json::Value;
use support::{BIN, RunningAgent};

fn rpc_addr(agent: &RunningAgent) -> String {
    format!("127.0.0.1:{}", agent.rpc_port)
}

/// `tandem CMD -rpc-addr ADDR ARGS…`.
fn rpc(agent: &RunningAgent, cmd: &str, args: &[&str]) -> client_support::Out {
    let addr = rpc_addr(agent);
    let mut all = vec![cmd, "-rpc-addr", addr.as_str()];
    all.extend_from_slice(args);
    tandem(&all)
}

// ----- members -----------------------------------------------------------------------

#[test]
fn members_prints_consuls_table() {
    let agent = RunningAgent::start(&["-node", "n1"]);
    let out = rpc(&agent, "members", &[]);
    // Build is the widest cell of its column once the version is longer than "Build".
    let build = tandem_core::VERSION;
    let w = build.len().max("Build".len());
    let addr = format!("127.0.0.1:{}", agent.lan_port);
    let a = addr.len();
    assert_eq!(
        out.ok(),
        format!(
            "Node  {:<a$}  Status  Type    {:<w$}  Protocol  DC\n\
             n1    {addr:<a$}  alive   client  {build:<w$}  2         dc1\n",
            "Address", "Build"
        )
    );
}

#[test]
fn members_json_is_an_array_with_the_wire_names() {
    let agent = RunningAgent::start(&["-node", "n1"]);
    let out = rpc(&agent, "members", &["-format=json"]);
    let v: Value = serde_json::from_str(out.ok()).expect("JSON");
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["Name"], "n1");
    assert_eq!(list[0]["Addr"], "127.0.0.1");
    assert_eq!(list[0]["Port"], agent.lan_port);
    assert_eq!(list[0]["Status"], "alive");
    assert_eq!(list[0]["Tags"]["role"], "node");
    assert_eq!(list[0]["Tags"]["build"], tandem_core::VERSION);
}

#[test]
fn members_status_filter_is_anchored_and_exits_two_when_nothing_matches() {
    let agent = RunningAgent::start(&[]);
    assert!(
        rpc(&agent, "members", &["-status", "alive"])
            .ok()
            .contains("alive")
    );
    assert!(
        rpc(&agent, "members", &["-status=al.*"])
            .ok()
            .contains("alive")
    );
    for status in ["left", "aliv", "live", "failed|left"] {
        let out = rpc(&agent, "members", &["-status", status]);
        assert_eq!(out.code, Some(2), "{status}: {out:#?}");
        assert_eq!(out.stdout, "", "{status}");
    }
    let out = rpc(&agent, "members", &["-status", "("]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "Failed to compile status regexp: error parsing regexp: unclosed group: `(`\n"
    );
    let out = rpc(&agent, "members", &["-status", "a{2,1}"]);
    assert_eq!(
        out.stderr,
        "Failed to compile status regexp: error parsing regexp: invalid repetition count \
         range, the start must be <= the end: `a{2,1}`\n"
    );
    // The WAN pool of a client is empty: nothing matches.
    assert_eq!(rpc(&agent, "members", &["-wan"]).code, Some(2));
}

#[test]
fn a_bad_flag_prints_the_error_and_where_help_is() {
    for (args, error) in [
        (
            &["members", "-bogus"][..],
            "flag provided but not defined: -bogus",
        ),
        (
            &["event", "-coalesce=maybe", "x"][..],
            "invalid value \"maybe\" for flag -coalesce: parse error",
        ),
        (&["leave", "now"][..], "unexpected extra arguments: now"),
    ] {
        let out = tandem(args);
        assert_eq!(out.code, Some(1), "{args:?}");
        assert_eq!(
            out.stderr,
            format!("{error}\nRun 'tandem {} -help' for usage.\n", args[0])
        );
        assert_eq!(out.stdout, "");
    }
}

// ----- info, tags, event, reload ----------------------------------------------------------

#[test]
fn info_prints_sorted_sections_with_tab_indented_entries() {
    let agent = RunningAgent::start(&["-node", "n1"]);
    let out = rpc(&agent, "info", &[]);
    let text = out.ok();
    let sections: Vec<&str> = text.lines().filter(|l| !l.starts_with('\t')).collect();
    assert!(sections.iter().all(|s| s.ends_with(':')), "{text}");
    assert!(sections.is_sorted(), "{sections:?}");
    assert!(
        sections.contains(&"agent:") && sections.contains(&"serf_lan:"),
        "{text}"
    );
    assert!(text.contains("agent:\n"), "{text}");
    assert!(text.contains("\tname = n1\n"), "{text}");
    assert!(text.contains("\tmembers = 1\n"), "{text}");
}

#[test]
fn tags_set_and_delete_show_in_members_detailed() {
    let agent = RunningAgent::start(&["-node", "n1"]);
    let out = rpc(&agent, "tags", &["-set", "web=1", "-set=zone=a"]);
    assert_eq!(out.ok(), "Successfully updated agent tags\n");
    let detailed = rpc(&agent, "members", &["-detailed"]);
    let row = detailed.ok().lines().nth(1).unwrap_or_default().to_string();
    assert!(row.starts_with("n1  "), "{row}");
    assert!(
        row.ends_with(&format!(
            "alive   build={},dc=dc1,role=node,vsn=2,web=1,zone=a",
            tandem_core::VERSION
        )),
        "{row}"
    );
    rpc(&agent, "tags", &["-delete", "web"]).ok();
    let detailed = rpc(&agent, "members", &["-detailed"]);
    assert!(!detailed.ok().contains("web=1"), "{detailed:#?}");
    assert!(detailed.ok().contains("zone=a"), "{detailed:#?}");
    // Nothing to do is a usage error; a tag without '=' is refused before connecting.
    assert_eq!(rpc(&agent, "tags", &[]).code, Some(1));
    let bad = rpc(&agent, "tags", &["-set", "novalue"]);
    assert_eq!(bad.code, Some(1));
    assert_eq!(bad.stderr, "Invalid tag 'novalue' provided\n");
}

#[test]
fn event_is_dispatched_and_oversized_ones_are_refused() {
    let agent = RunningAgent::start(&[]);
    let out = rpc(&agent, "event", &["deploy", "v1"]);
    assert_eq!(
        out.ok(),
        "Event 'deploy' dispatched! Coalescing enabled: true\n"
    );
    let out = rpc(&agent, "event", &["-coalesce=false", "deploy"]);
    assert_eq!(
        out.ok(),
        "Event 'deploy' dispatched! Coalescing enabled: false\n"
    );
    let big = "x".repeat(600);
    let out = rpc(&agent, "event", &["deploy", &big]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "Error sending event: user event exceeds configured limit of 512 bytes before encoding\n"
    );
    assert_eq!(rpc(&agent, "event", &[]).code, Some(1));
}

#[test]
fn reload_is_acknowledged_and_the_agent_logs_it() {
    let agent = RunningAgent::start(&[]);
    let out = rpc(&agent, "reload", &[]);
    assert_eq!(out.ok(), "Configuration reload triggered\n");
    agent.wait_log("[INFO] agent: reload requested, reloading configuration");
    agent.wait_log("[INFO] agent: configuration reloaded");
}

// ----- join, force-leave, leave -------------------------------------------------------------

#[test]
fn join_to_an_unreachable_address_fails_with_exit_one() {
    let agent = RunningAgent::start(&[]);
    let out = rpc(&agent, "join", &["127.0.0.1:1"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_eq!(out.stdout, "");
    // Membership is local-only for now: the core says why the join failed.
    assert!(
        out.stderr.starts_with(
            "Error joining the cluster: 1 error occurred:\n\t* Failed to join 127.0.0.1:1: "
        ),
        "{out:#?}"
    );
    let wan = rpc(&agent, "join", &["-wan", "127.0.0.1:1"]);
    assert_eq!(wan.code, Some(1));
    assert_eq!(
        wan.stderr,
        "Error joining the cluster: Must be a server to join WAN cluster\n"
    );
    let none = rpc(&agent, "join", &[]);
    assert_eq!(none.code, Some(1));
    assert!(
        none.stderr
            .starts_with("At least one address to join must be specified.\n")
    );
}

#[test]
fn force_leave_of_an_unknown_node_succeeds_quietly() {
    let agent = RunningAgent::start(&[]);
    let out = rpc(&agent, "force-leave", &["nosuch"]);
    assert_eq!(out.ok(), "");
    assert_eq!(rpc(&agent, "force-leave", &["-prune", "nosuch"]).ok(), "");
    let none = rpc(&agent, "force-leave", &[]);
    assert_eq!(none.code, Some(1));
    assert!(
        none.stderr
            .starts_with("A node name must be specified to force leave.")
    );
}

#[test]
fn leave_completes_and_the_agent_exits_zero() {
    let mut agent = RunningAgent::start(&[]);
    let out = rpc(&agent, "leave", &[]);
    assert_eq!(out.ok(), "Graceful leave complete\n");
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).code(), Some(0));
    agent.wait_log("agent: left the cluster, shutting down");
}

#[test]
fn an_unreachable_agent_is_a_connection_error() {
    // Port 1 on loopback: nothing listens there.
    let out = tandem(&["members", "-rpc-addr", "127.0.0.1:1"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "Error connecting to tandem agent: dial tcp 127.0.0.1:1: connect: connection refused\n"
    );
}

#[test]
fn the_rpc_address_comes_from_the_environment_when_no_flag_is_given() {
    let agent = RunningAgent::start(&["-node", "from-env"]);
    let out = client_support::run({
        let mut c = command(BIN, &["members"]);
        c.env("TANDEM_RPC_ADDR", rpc_addr(&agent));
        c
    });
    assert!(out.ok().contains("from-env"), "{out:#?}");
}

// ----- auth --------------------------------------------------------------------------------

#[test]
fn rpc_auth_on_both_sides() {
    let agent = RunningAgent::start(&["-rpc-auth", "s3cret"]);
    let none = rpc(&agent, "members", &[]);
    assert_eq!(none.code, Some(1));
    assert_eq!(
        none.stderr,
        "Error retrieving members: Authentication required\n"
    );
    let wrong = rpc(&agent, "members", &["-rpc-auth", "nope"]);
    assert_eq!(wrong.code, Some(1));
    assert_eq!(
        wrong.stderr,
        "Error connecting to tandem agent: Invalid authentication token\n"
    );
    assert!(
        rpc(&agent, "members", &["-rpc-auth=s3cret"])
            .ok()
            .contains("alive")
    );
    let from_env = client_support::run({
        let mut c = command(BIN, &["info", "-rpc-addr", &rpc_addr(&agent)]);
        c.env("TANDEM_RPC_AUTH", "s3cret");
        c
    });
    assert!(from_env.ok().contains("agent:"));
}

// ----- monitor -----------------------------------------------------------------------------

fn spawn_monitor(agent: &RunningAgent, args: &[&str]) -> Spawned {
    let addr = rpc_addr(agent);
    let mut all = vec!["monitor", "-rpc-addr", addr.as_str()];
    all.extend_from_slice(args);
    Spawned::new(&mut command(BIN, &all))
}

#[test]
fn monitor_streams_live_lines_and_stops_cleanly_on_sigint() {
    let agent = RunningAgent::start(&[]);
    let mut monitor = spawn_monitor(&agent, &[]);
    // The replayed backlog shows the monitor is registered.
    monitor.wait_stdout("[INFO] agent: HTTP API listening on");
    rpc(&agent, "reload", &[]).ok();
    monitor.wait_stdout("[INFO] agent: reload requested, reloading configuration");
    monitor.signal(libc::SIGINT);
    let status = monitor.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "stderr: {}", monitor.stderr_text());
    assert_eq!(monitor.stderr_text(), "");
}

#[test]
fn monitor_filters_by_level_and_refuses_unknown_levels() {
    let agent = RunningAgent::start(&["-log-level", "debug"]);
    let out = rpc(&agent, "monitor", &["-log-level", "bogus"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "Error starting monitor: Unknown log level: BOGUS\n"
    );
    let mut monitor = spawn_monitor(&agent, &["-log-level=debug"]);
    // The runtime's DEBUG records pass at this level.
    monitor.wait_stdout("[DEBUG] rpc: accepted connection from 127.0.0.1:");
    monitor.signal(libc::SIGTERM);
    assert_eq!(monitor.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn monitor_exits_one_when_the_agent_goes_away() {
    let mut agent = RunningAgent::start(&[]);
    let mut monitor = spawn_monitor(&agent, &[]);
    monitor.wait_stdout("[INFO] agent: HTTP API listening on");
    rpc(&agent, "leave", &[]).ok();
    monitor.wait_stdout("[INFO] agent: left the cluster, shutting down");
    assert_eq!(monitor.wait_exit(Duration::from_secs(10)).code(), Some(1));
    assert!(
        monitor
            .stderr_text()
            .starts_with("Remote side ended the monitor!"),
        "{}",
        monitor.stderr_text()
    );
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

// ----- exec (HTTP API) -----------------------------------------------------------------------

fn exec(agent: &RunningAgent, line: &str) -> client_support::Out {
    let addr = format!("127.0.0.1:{}", agent.port);
    tandem(&["exec", line, "-http-addr", &addr])
}

fn items(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn exec_version_prints_the_jobs_items_as_json_lines() {
    let agent = RunningAgent::start(&[]);
    let out = exec(&agent, "version");
    let items = items(out.ok());
    let types: Vec<&str> = items.iter().filter_map(|i| i["type"].as_str()).collect();
    assert_eq!(types, ["command", "version", "status"], "{items:?}");
    assert_eq!(items[0]["command"], "version");
    assert_eq!(items[0]["state"], "SCHEDULED");
    let job = &items[0]["jobId"];
    assert!(items.iter().all(|i| &i["jobId"] == job));
    assert_eq!(items[1]["version"], tandem_core::VERSION);
    assert_eq!(items[2]["statusCode"], 0);
    // Keys come out sorted, as the agent writes them.
    assert_eq!(
        out.stdout.lines().nth(1),
        Some(
            format!(
                r#"{{"jobId":{job},"type":"version","version":"{}"}}"#,
                tandem_core::VERSION
            )
            .as_str()
        )
    );
}

#[test]
fn exec_dashboard_with_a_count_prints_that_many_samples_then_the_status() {
    let agent = RunningAgent::start(&[]);
    let out = exec(&agent, "dashboard -i 50 -n 2");
    let items = items(out.ok());
    let samples = items.iter().filter(|i| i["type"] == "dashboard").count();
    assert_eq!(samples, 2, "{items:?}");
    let last = items.last().expect("items");
    assert_eq!(last["type"], "status");
    assert_eq!(last["statusCode"], 0);
    assert!(
        items
            .iter()
            .all(|i| i["pid"].is_null() || i["pid"] == agent.pid())
    );
}

#[test]
fn exec_failures_exit_one() {
    let agent = RunningAgent::start(&[]);
    // A usage error ends the job with a non-zero status.
    let out = exec(&agent, "sysinfo extra");
    assert_eq!(out.code, Some(1), "{out:#?}");
    let items = items(&out.stdout);
    let status = items.last().expect("a status item");
    assert_eq!(status["type"], "status");
    assert_eq!(status["statusCode"], -10);
    // An unknown command is refused by async_exec itself.
    let out = exec(&agent, "bogus");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.starts_with("Error running command: "),
        "{out:#?}"
    );
    let out = tandem(&["exec", "version", "-http-addr", "127.0.0.1:1"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .starts_with("Error connecting to tandem agent: dial tcp 127.0.0.1:1:"),
        "{out:#?}"
    );
}

#[test]
fn exec_joins_its_words_as_typed_and_takes_its_flags_among_them() {
    let agent = RunningAgent::start(&[]);
    let addr = format!("127.0.0.1:{}", agent.port);
    // `tandem exec echo hi there`, as `ssh host echo hi there` would run it.
    let out = tandem(&["exec", "echo", "hi", "there", "-http-addr", &addr]);
    let echo = items(out.ok());
    assert_eq!(echo[0]["command"], "echo hi there", "{echo:?}");
    let said: Vec<&Value> = echo
        .iter()
        .map(|i| &i["message"])
        .filter(|m| !m.is_null())
        .collect();
    assert_eq!(said, ["hi there"], "{echo:?}");
    // The command's own dashes stay the command's: -i and -n are dashboard's.
    let out = tandem(&[
        "exec",
        "-http-addr",
        &addr,
        "dashboard",
        "-i",
        "20",
        "-n",
        "2",
    ]);
    let dashboard = items(out.ok());
    assert_eq!(dashboard[0]["command"], "dashboard -i 20 -n 2");
    let samples = dashboard.iter().filter(|i| i["type"] == "dashboard");
    assert_eq!(samples.count(), 2);
    let out = tandem(&["exec", "-http-addr", &addr]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.starts_with("a COMMAND is expected"), "{out:#?}");
}

#[test]
fn exec_authenticates_with_http_auth_or_tandem_http_auth() {
    let agent = RunningAgent::start(&["-http-auth", "ops:s3cret"]);
    let addr = format!("127.0.0.1:{}", agent.port);
    let version = |out: &client_support::Out| items(out.ok())[1]["version"].clone();
    let out = tandem(&["exec", "version", "-http-addr", &addr]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "Error creating a session: unexpected HTTP status 401 Unauthorized: the agent \
         requires credentials: give -http-auth USER:PASS or set TANDEM_HTTP_AUTH\n"
    );
    let out = tandem(&[
        "exec",
        "-http-auth",
        "ops:s3cret",
        "-http-addr",
        &addr,
        "version",
    ]);
    assert_eq!(version(&out), tandem_core::VERSION);
    let out = tandem(&[
        "exec",
        "-http-auth",
        "ops:wrong",
        "-http-addr",
        &addr,
        "version",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .ends_with("the agent refused these credentials\n"),
        "{out:#?}"
    );
    let mut cmd = command(BIN, &["exec", "version", "-http-addr", &addr]);
    cmd.env("TANDEM_HTTP_AUTH", "ops:s3cret");
    assert_eq!(version(&client_support::run(cmd)), tandem_core::VERSION);
    let mut cmd = command(BIN, &["exec", "version", "-http-addr", &addr]);
    cmd.env("TANDEM_HTTP_AUTH", "ops:");
    let out = client_support::run(cmd);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "TANDEM_HTTP_AUTH: invalid value \"ops:\" for flag -http-auth: the password must not \
         be empty\n"
    );
    // No colon: a password for user tandem, as the agent's flag reads it.
    let agent = RunningAgent::start(&["-http-auth", "pw"]);
    let addr = format!("127.0.0.1:{}", agent.port);
    let out = tandem(&["exec", "version", "-http-auth", "pw", "-http-addr", &addr]);
    assert_eq!(version(&out), tandem_core::VERSION);
}

#[test]
fn exec_with_credentials_interrupts_with_them_too() {
    let agent = RunningAgent::start(&["-http-auth", "ops:s3cret", "-log-level", "debug"]);
    let addr = format!("127.0.0.1:{}", agent.port);
    let mut exec = Spawned::new(&mut command(
        BIN,
        &[
            "exec",
            "-http-auth",
            "ops:s3cret",
            "-http-addr",
            &addr,
            "dashboard",
            "-i",
            "50",
        ],
    ));
    exec.wait_stdout(r#""type":"dashboard""#);
    exec.signal(libc::SIGINT);
    let status = exec.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "stderr: {}", exec.stderr_text());
    let items = items(&exec.stdout_text());
    assert_eq!(items.last().expect("items")["interrupted"], true);
}

#[test]
fn exec_interrupted_by_sigint_ends_the_job_and_exits_130() {
    let agent = RunningAgent::start(&["-log-level", "debug"]);
    let addr = format!("127.0.0.1:{}", agent.port);
    let mut exec = Spawned::new(&mut command(
        BIN,
        &["exec", "dashboard -i 50", "-http-addr", &addr],
    ));
    exec.wait_stdout(r#""type":"dashboard""#);
    exec.signal(libc::SIGINT);
    let status = exec.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "stderr: {}", exec.stderr_text());
    let items = items(&exec.stdout_text());
    let last = items.last().expect("items");
    assert_eq!(last["type"], "status");
    assert_eq!(last["interrupted"], true);
    // The runtime stopped the sampling task, and the session was closed.
    agent.wait_log(&format!("host: job {} cancelled", last["jobId"]));
    let stats = rpc(&agent, "info", &[]);
    assert!(stats.ok().contains("\tsessions = 0\n"), "{}", stats.stdout);
}

#[test]
fn exec_whose_reader_goes_away_interrupts_the_job_and_exits_one() {
    let agent = RunningAgent::start(&["-log-level", "debug"]);
    let addr = format!("127.0.0.1:{}", agent.port);
    // `tandem exec 'dashboard -i 20' | head -n 2`
    let mut exec = Spawned::with_stdout_limit(
        &mut command(BIN, &["exec", "dashboard -i 20", "-http-addr", &addr]),
        Some(2),
    );
    let status = exec.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "stderr: {}", exec.stderr_text());
    let items = items(&exec.stdout_text());
    assert_eq!(items[0]["type"], "command");
    agent.wait_log(&format!("host: job {} cancelled", items[0]["jobId"]));
}
