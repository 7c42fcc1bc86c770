//! Interop with the real Serf CLI (Debian's `serf` package, 0.9.4 reporting 0.8.2-dev):
//! `serf … -rpc-addr=127.0.0.1:PORT` against `tandem agent`. The CLI is a Go client with
//! no read timeout, so a reply body the agent forgets hangs it: every invocation here runs
//! under a deadline and a hang fails the test.
//!
//! The tests provision `serf` themselves ([`tandem_tests::tools::serf`]: apt-get when root);
//! without it they are reported as `ignored` with the reason (failed under `CI=true`), as
//! with `TANDEM_SKIP_SERF=1`. `harness = false`: [`run_trials`] is the runner.
//! Membership is local-only for now (one member, joins fail); the assertions pin what
//! tandem does today.

mod client_support;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use client_support::{Out, Spawned, command, run, tandem};
use serde_json::Value;
use support::RunningAgent;
use tandem_tests::tools::{self, Test, run_trials};

fn main() {
    run_trials(vec![
        Test::new(
            "serf_members_lists_the_tandem_node",
            serf_members_lists_the_tandem_node,
        ),
        Test::new(
            "serf_members_json_decodes_tandems_member",
            serf_members_json_decodes_tandems_member,
        ),
        Test::new(
            "serf_info_prints_tandems_stats",
            serf_info_prints_tandems_stats,
        ),
        Test::new(
            "serf_join_to_an_unreachable_address_fails_with_exit_one",
            serf_join_to_an_unreachable_address_fails_with_exit_one,
        ),
        Test::new(
            "serf_force_leave_of_an_unknown_node_succeeds",
            serf_force_leave_of_an_unknown_node_succeeds,
        ),
        Test::new(
            "serf_tags_set_shows_in_members_of_both_clis",
            serf_tags_set_shows_in_members_of_both_clis,
        ),
        Test::new("serf_event_is_dispatched", serf_event_is_dispatched),
        Test::new(
            "serf_monitor_streams_logs_and_events_and_stops_on_sigint",
            serf_monitor_streams_logs_and_events_and_stops_on_sigint,
        ),
        Test::new(
            "serf_monitor_with_an_unknown_level_fails_without_hanging",
            serf_monitor_with_an_unknown_level_fails_without_hanging,
        ),
        Test::new(
            "serf_leave_shuts_the_agent_down",
            serf_leave_shuts_the_agent_down,
        ),
        Test::new(
            "serf_rpc_auth_against_an_agent_with_a_key",
            serf_rpc_auth_against_an_agent_with_a_key,
        ),
    ]);
}

fn addr_flag(agent: &RunningAgent) -> String {
    format!("-rpc-addr=127.0.0.1:{}", agent.rpc_port)
}

/// `serf CMD -rpc-addr=… ARGS…`.
fn serf(agent: &RunningAgent, cmd: &str, args: &[&str]) -> Out {
    let addr = addr_flag(agent);
    let mut all = vec![cmd, addr.as_str()];
    all.extend_from_slice(args);
    run(command(tools::serf(), &all))
}

/// A `serf members` line: name, address, status and the tags (Serf prints them in Go's
/// random map order, so they are compared as a map).
fn member_row(line: &str) -> (Vec<&str>, BTreeMap<&str, &str>) {
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert!(cols.len() >= 4, "{line:?}");
    let tags = cols[3]
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    (cols[..3].to_vec(), tags)
}

fn serf_members_lists_the_tandem_node() {
    tools::serf(); // provisioned, or the test ends as skipped (failed under CI=true)
    let agent = RunningAgent::start(&["-node", "n1"]);
    let out = serf(&agent, "members", &[]);
    let text = out.ok();
    assert_eq!(text.lines().count(), 1, "{text}");
    let (cols, tags) = member_row(text.lines().next().unwrap_or_default());
    let addr = format!("127.0.0.1:{}", agent.lan_port);
    assert_eq!(cols, ["n1", addr.as_str(), "alive"]);
    assert_eq!(tags["role"], "node");
    assert_eq!(tags["dc"], "dc1");
    assert_eq!(tags["vsn"], "2");
    assert_eq!(tags["build"], tandem_core::VERSION);
    // serf always sends members-filtered; its regexes are applied by the agent.
    let filtered = serf(
        &agent,
        "members",
        &["-status=alive", "-name=n.*", "-tag", "role=node"],
    );
    assert!(filtered.ok().starts_with("n1 "), "{filtered:#?}");
    let none = serf(&agent, "members", &["-status=left"]);
    assert_eq!(
        none.ok(),
        "\n",
        "serf prints an empty line and exits 0 for no match"
    );
}

fn serf_members_json_decodes_tandems_member() {
    tools::serf();
    let agent = RunningAgent::start(&["-node", "n1"]);
    let out = serf(&agent, "members", &["-format", "json"]);
    let v: Value = serde_json::from_str(out.ok()).expect("JSON");
    let m = &v["members"][0];
    assert_eq!(m["name"], "n1");
    assert_eq!(m["addr"], format!("127.0.0.1:{}", agent.lan_port));
    assert_eq!(m["port"], agent.lan_port);
    assert_eq!(m["status"], "alive");
    assert_eq!(m["tags"]["role"], "node");
    // Serf reads the protocol range from the Delegate* fields.
    assert_eq!(m["protocol"]["min"], 2);
    assert_eq!(m["protocol"]["max"], 5);
}

fn serf_info_prints_tandems_stats() {
    tools::serf();
    let agent = RunningAgent::start(&["-node", "n1"]);
    let text = serf(&agent, "info", &[]).ok().to_string();
    assert!(text.contains("agent:\n\tbytes_discarded = 0\n"), "{text}");
    assert!(text.contains("\n\tconnections_accepted = "), "{text}");
    assert!(text.contains("\tname = n1\n"), "{text}");
    assert!(text.contains("serf_lan:\n"), "{text}");
    // The JSON form shows every value arrived as a string, as Go's map[string]string
    // decoder demands.
    let json: Value =
        serde_json::from_str(serf(&agent, "info", &["-format=json"]).ok()).expect("JSON");
    let sections = json.as_object().expect("sections");
    assert!(sections.contains_key("agent") && sections.contains_key("serf_lan"));
    for (name, entries) in sections {
        for (k, v) in entries.as_object().expect("entries") {
            assert!(v.is_string(), "{name}.{k} = {v}");
        }
    }
}

fn serf_join_to_an_unreachable_address_fails_with_exit_one() {
    tools::serf();
    let agent = RunningAgent::start(&[]);
    let out = serf(&agent, "join", &["127.0.0.1:1"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    // The reply's body came with the error (serf would hang otherwise).
    // Serf's CLI prints its errors to stdout.
    assert!(
        out.stdout.starts_with(
            "Error joining the cluster: 1 error occurred:\n\t* Failed to join 127.0.0.1:1: "
        ),
        "{out:#?}"
    );
}

fn serf_force_leave_of_an_unknown_node_succeeds() {
    tools::serf();
    let agent = RunningAgent::start(&[]);
    assert_eq!(serf(&agent, "force-leave", &["nosuch"]).ok(), "");
    assert_eq!(serf(&agent, "force-leave", &["-prune", "nosuch"]).ok(), "");
}

fn serf_tags_set_shows_in_members_of_both_clis() {
    tools::serf();
    let agent = RunningAgent::start(&["-node", "n1"]);
    let out = serf(&agent, "tags", &["-set", "a=b", "-set", "web=1"]);
    assert_eq!(out.ok(), "Successfully updated agent tags\n");
    let members = serf(&agent, "members", &[]);
    let (_, tags) = member_row(members.ok().trim_end());
    assert_eq!(tags["a"], "b");
    assert_eq!(tags["web"], "1");
    assert_eq!(
        serf(&agent, "tags", &["-delete", "web"]).ok(),
        "Successfully updated agent tags\n"
    );
    let addr = format!("127.0.0.1:{}", agent.rpc_port);
    let detailed = tandem(&["members", "-detailed", "-rpc-addr", &addr]);
    assert!(
        detailed.ok().contains(",a=b,") || detailed.ok().contains("  a=b,"),
        "{detailed:#?}"
    );
    assert!(!detailed.ok().contains("web=1"), "{detailed:#?}");
}

fn serf_event_is_dispatched() {
    tools::serf();
    let agent = RunningAgent::start(&[]);
    let out = serf(&agent, "event", &["deploy", "x"]);
    assert_eq!(
        out.ok(),
        "Event 'deploy' dispatched! Coalescing enabled: true\n"
    );
    let out = serf(&agent, "event", &["-coalesce=false", "deploy"]);
    assert_eq!(
        out.ok(),
        "Event 'deploy' dispatched! Coalescing enabled: false\n"
    );
}

fn serf_monitor_streams_logs_and_events_and_stops_on_sigint() {
    tools::serf();
    let agent = RunningAgent::start(&[]);
    let addr = addr_flag(&agent);
    // serf monitor sends `stream {"Type":"*"}` (Seq 2) and `monitor` (Seq 3): records of
    // both interleave on one connection.
    let mut monitor = Spawned::new(&mut command(tools::serf(), &["monitor", &addr]));
    monitor.wait_stdout("[INFO] agent: HTTP API listening on");
    let rpc = format!("127.0.0.1:{}", agent.rpc_port);
    tandem(&["reload", "-rpc-addr", &rpc]).ok();
    monitor.wait_stdout("[INFO] agent: reload requested, reloading configuration");
    serf(&agent, "event", &["deploy", "v2"]).ok();
    monitor.wait_stdout("Event Info:");
    monitor.wait_stdout("Name: \"deploy\"");
    // On SIGINT serf sends `stop` for both Seqs and waits for each reply.
    monitor.signal(libc::SIGINT);
    let status = monitor.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "stderr: {}", monitor.stderr_text());
}

fn serf_monitor_with_an_unknown_level_fails_without_hanging() {
    tools::serf();
    let agent = RunningAgent::start(&[]);
    let out = serf(&agent, "monitor", &["-log-level=bogus"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stdout
            .contains("Error starting monitor: Unknown log level: BOGUS"),
        "{out:#?}"
    );
}

fn serf_leave_shuts_the_agent_down() {
    tools::serf();
    let mut agent = RunningAgent::start(&[]);
    assert_eq!(serf(&agent, "leave", &[]).ok(), "Graceful leave complete\n");
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

fn serf_rpc_auth_against_an_agent_with_a_key() {
    tools::serf();
    let agent = RunningAgent::start(&["-node", "n1", "-rpc-auth", "s3cret"]);
    let none = serf(&agent, "members", &[]);
    assert_eq!(none.code, Some(1));
    // One error, not Serf's duplicate: tandem drops the refused request's body.
    assert_eq!(
        none.stdout,
        "Error retrieving members: Authentication required\n"
    );
    let wrong = serf(&agent, "members", &["-rpc-auth=nope"]);
    assert_eq!(wrong.code, Some(1));
    assert_eq!(
        wrong.stdout,
        "Error connecting to Serf agent: Invalid authentication token\n"
    );
    let right = serf(&agent, "members", &["-rpc-auth=s3cret"]);
    assert!(right.ok().starts_with("n1 "), "{right:#?}");
    let from_env = run({
        let mut c = command(tools::serf(), &["members", &addr_flag(&agent)]);
        c.env("SERF_RPC_AUTH", "s3cret");
        c
    });
    assert!(from_env.ok().starts_with("n1 "), "{from_env:#?}");
}
