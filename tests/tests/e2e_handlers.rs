//! End-to-end event handlers of both runtimes' binaries: three agents on 127.0.0.1, each
//! with an `-event-handler` script that appends what it is given (Serf's variables and
//! stdin) to a file; after joins, a user event, a graceful leave and a `kill -9`, each
//! file holds exactly the events Serf would have given that node, in order.
//!
//! Waits poll with a deadline and assert nothing about timing. Every process is killed and
//! reaped on drop.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;
#[macro_use]
mod e2e_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e_support::{Agent, ConfigFile, Runtime, TempDir};

runtimes! {
    handler_scripts_see_joins_a_user_event_a_leave_and_a_failure_in_order;
    a_bad_event_handler_is_a_startup_error;
    a_reload_replaces_the_event_handlers;
    a_query_handlers_output_comes_back_as_the_response;
}

/// How long the events may take to reach the scripts (joins, failure detection included).
const WITHIN: Duration = Duration::from_secs(40);

/// A handler that records each event as a block: a line of variables, stdin, `--`.
fn recorder(file: &Path) -> String {
    format!(
        "{{ echo \"$SERF_EVENT self=$SERF_SELF_NAME role=$SERF_SELF_ROLE dc=$SERF_TAG_DC \
         user=$SERF_USER_EVENT\"; cat; echo --; }} >> {}",
        file.display()
    )
}

/// The recorded blocks of a file, with `127.0.0.1` kept and each member line's tags cut
/// to the role (the build tag differs by version).
fn blocks(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    // Only complete blocks: a script may be writing the last one right now.
    let done = text.rfind("--\n").map_or(0, |i| i + 3);
    text[..done]
        .split("--\n")
        .filter(|b| !b.is_empty())
        .map(|b| {
            b.lines()
                .map(|l| {
                    let fields: Vec<&str> = l.split('\t').collect();
                    if fields.len() == 4 {
                        format!("{} {} {}", fields[0], fields[1], fields[2])
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

fn wait_blocks(file: &Path, n: usize, agent: &Agent) -> Vec<String> {
    let start = Instant::now();
    loop {
        let b = blocks(file);
        if b.len() >= n {
            return b;
        }
        assert!(
            start.elapsed() < WITHIN,
            "{} events in {}, want {n}: {b:#?}\nagent log:\n{}",
            b.len(),
            file.display(),
            agent.log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn join_line(node: &str) -> String {
    format!("{node} 127.0.0.1 node")
}

fn handler_scripts_see_joins_a_user_event_a_leave_and_a_failure_in_order(rt: Runtime) {
    let dir = TempDir::new(rt.name());
    let files: Vec<PathBuf> = (1..=3).map(|i| dir.0.join(format!("h{i}.log"))).collect();
    let h: Vec<String> = files.iter().map(|f| recorder(f)).collect();
    // `*=`: the script itself has `=` in it, which Serf would read as a filter.
    let a1 = Agent::start(
        rt,
        &["-node", "h1", "-event-handler", &format!("*={}", h[0])],
    );
    let to = format!("127.0.0.1:{}", a1.lan_port());
    let mut a2 = Agent::start(
        rt,
        &[
            "-node",
            "h2",
            "-event-handler",
            &format!("member-join,user={}", h[1]),
            "-join",
            &to,
        ],
    );
    // h2 knows h1 before h3 comes.
    wait_blocks(&files[1], 1, &a2);
    let mut a3 = Agent::start(
        rt,
        &[
            "-node",
            "h3",
            "-event-handler",
            &format!("user:deploy={}", h[2]),
            "-event-handler",
            &format!("user:other={}", h[2]),
            "-join",
            &to,
        ],
    );
    wait_blocks(&files[0], 2, &a1);
    wait_blocks(&files[1], 2, &a2);
    let out = a1.cli("event", &["deploy", "v1"]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    wait_blocks(&files[2], 1, &a3);
    // A graceful leave of h3, then a crash of h2.
    assert_eq!(a3.cli("leave", &[]).ok(), "Graceful leave complete\n");
    assert_eq!(a3.wait_exit(Duration::from_secs(10)).code(), Some(0));
    wait_blocks(&files[0], 4, &a1);
    a2.kill9();
    let all1 = wait_blocks(&files[0], 5, &a1);

    let var =
        |ev: &str, node: &str, user: &str| format!("{ev} self={node} role=node dc=dc1 user={user}");
    assert_eq!(
        all1,
        [
            format!("{}|{}", var("member-join", "h1", ""), join_line("h2")),
            format!("{}|{}", var("member-join", "h1", ""), join_line("h3")),
            format!("{}|v1", var("user", "h1", "deploy")),
            format!("{}|{}", var("member-leave", "h1", ""), join_line("h3")),
            format!("{}|{}", var("member-failed", "h1", ""), join_line("h2")),
        ]
    );
    assert_eq!(
        blocks(&files[1]),
        [
            format!("{}|{}", var("member-join", "h2", ""), join_line("h1")),
            format!("{}|{}", var("member-join", "h2", ""), join_line("h3")),
            format!("{}|v1", var("user", "h2", "deploy")),
        ]
    );
    assert_eq!(
        blocks(&files[2]),
        [format!("{}|v1", var("user", "h3", "deploy"))]
    );
    // Handler runs are logged at DEBUG only; failures would be at ERR.
    assert!(
        !a1.log_lines()
            .iter()
            .any(|l| l.contains("Error invoking script")),
        "{:#?}",
        a1.log_lines()
    );
}

fn a_bad_event_handler_is_a_startup_error(rt: Runtime) {
    let out = e2e_support::run(rt, &["agent", "-event-handler", "member-jion=x.sh"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains(
            "invalid value \"member-jion=x.sh\" for flag -event-handler: Invalid event \
             script: Event 'member-jion' invoking 'x.sh'"
        ),
        "{out:#?}"
    );
}

fn a_reload_replaces_the_event_handlers(rt: Runtime) {
    let dir = TempDir::new(&format!("reload-{}", rt.name()));
    let (old, new) = (dir.0.join("old.log"), dir.0.join("new.log"));
    let cfg = ConfigFile::new(&format!(
        r#"{{"event_handlers": [{}]}}"#,
        serde_json::to_string(&format!("user={}", recorder(&old))).unwrap()
    ));
    let a1 = Agent::start(rt, &["-node", "r1", "-config-file", cfg.path()]);
    assert_eq!(a1.cli("event", &["one"]).code, Some(0));
    wait_blocks(&old, 1, &a1);
    cfg.write(&format!(
        r#"{{"event_handlers": [{}]}}"#,
        serde_json::to_string(&format!("user={}", recorder(&new))).unwrap()
    ));
    assert_eq!(a1.cli("reload", &[]).code, Some(0));
    assert_eq!(a1.cli("event", &["two"]).code, Some(0));
    let b = wait_blocks(&new, 1, &a1);
    assert_eq!(b, ["user self=r1 role=node dc=dc1 user=two"]);
    assert_eq!(blocks(&old).len(), 1, "the old handler is gone");
}

fn a_query_handlers_output_comes_back_as_the_response(rt: Runtime) {
    let q1 = Agent::start(rt, &["-node", "q1"]);
    let to = format!("127.0.0.1:{}", q1.lan_port());
    let q2 = Agent::start(
        rt,
        &[
            "-node",
            "q2",
            "-event-handler",
            "query:load=echo \"$SERF_QUERY_NAME\"; cat",
            "-join",
            &to,
        ],
    );
    q2.wait_log("agent: joined: 1 nodes");
    let out = q1.cli("query", &["-timeout", "5s", "-format", "json", "load", "x"]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Responses"]["q2"], "load\nx\n", "{v}");
    assert!(v["Responses"].get("q1").is_none(), "{v}");
}
