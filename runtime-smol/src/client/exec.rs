//! `tandem exec COMMAND [ARGS...]`: runs a command through the agent's HTTP API, as a script would
//! with curl: `init_session`, `async_exec`, then `pull_results` until the job's `status`
//! item, then `close_session`. Each result item of the job is printed as one line of JSON
//! as it arrives.
//!
//! With `-nodes RE` and/or `-tag KEY=RE` (repeatable) the job is cluster-wide
//! (docs/cluster-jobs.md): each item is printed as `NODE: {json}`, then the summary and
//! the job's status, and the exit code is 1 when any node failed or timed out.
//!
//! Exit codes: 0 when the job's `statusCode` is 0, 1 for any other status or error, and
//! 130 after Ctrl-C (SIGINT/SIGTERM), which sends `interrupt_job`, prints the items that
//! still arrive up to the job's (interrupted) `status`, and closes the session.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{HttpClient, HttpError};
use super::interrupt::{EXIT_INTERRUPTED, Interrupts};
use super::{Command, ENV_HTTP_ADDR, ENV_HTTP_AUTH, Invocation, env, fail, stream_out};
use crate::cli::{DEFAULT_HTTP_ADDR, FlagSpec};
use tandem_core::HttpAuth;
use tandem_runtime::agent_options::parse_http_auth;

/// After an interrupt, how long to wait for the job's `status` before giving up on it.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

pub(super) const EXEC: Command = Command {
    name: "exec",
    synopsis: "Runs a command through the agent's HTTP API",
    usage: "\
Usage: tandem exec [options] COMMAND [ARGS...]

  Runs COMMAND in a new session of the agent's HTTP API and prints each result
  item of its job as one line of JSON as it arrives, ending with the job's status
  item. The words of COMMAND and ARGS are joined with spaces, as ssh joins a
  remote command (`tandem exec dashboard -i 500` runs `dashboard -i 500`; quote
  a word that must stay one). exec's own flags may also follow COMMAND; after
  `--` every word belongs to the command.

  With -nodes and/or -tag the command runs on every member that matches (a
  cluster-wide job; the members must run with -enable-remote-exec): each item is
  printed after its node's name and a colon, then the summary and the job's
  status follow.

  Exits 0 when the job's statusCode is 0, 1 otherwise (for a cluster-wide job:
  when any node failed or timed out). Ctrl-C interrupts the job (interrupt_job)
  on every node, closes the session and exits 130.",
    flags: &[
        FlagSpec {
            name: "http-addr",
            value: Some("127.0.0.1:8563"),
            help: "HTTP API address of the tandem agent. Defaults to $TANDEM_HTTP_ADDR, else \
                   127.0.0.1:8563.",
        },
        FlagSpec {
            name: "nodes",
            value: Some("REGEX"),
            help: "Run on every member whose name matches REGEX (anchored; \".*\" is all).",
        },
        FlagSpec {
            name: "tag",
            value: Some("KEY=REGEX"),
            help: "Run on every member whose tag KEY matches REGEX (anchored); repeatable, \
                   all must match.",
        },
        FlagSpec {
            name: "http-auth",
            value: Some("USER:PASS"),
            help: "HTTP Basic credentials of the agent (its -http-auth; no colon: a password \
                   for user tandem). Defaults to $TANDEM_HTTP_AUTH.",
        },
    ],
    rpc: false,
    flags_after_first_arg: true,
    run: exec,
};

/// `-http-auth`, else `$TANDEM_HTTP_AUTH`, in the agent's `-http-auth` syntax.
fn http_auth(inv: &Invocation) -> Result<Option<HttpAuth>, String> {
    if let Some(value) = inv.value("http-auth") {
        return parse_http_auth("http-auth", value.to_string())
            .map(Some)
            .map_err(|e| e.to_string());
    }
    match env(ENV_HTTP_AUTH) {
        Some(value) => parse_http_auth("http-auth", value)
            .map(Some)
            .map_err(|e| format!("{ENV_HTTP_AUTH}: {e}")),
        None => Ok(None),
    }
}

/// A failed API action: its `message`, or the whole answer when it has none.
fn api_error(answer: &Value) -> String {
    answer["message"]
        .as_str()
        .map_or_else(|| answer.to_string(), String::from)
}

fn exec(inv: &Invocation) -> i32 {
    if inv.args.is_empty() {
        return fail(&format!("a COMMAND is expected\n{}", EXEC.help_hint()));
    }
    // As ssh does with a remote command: the words, as typed, joined with spaces.
    let command = inv.args.join(" ");
    let mut target = serde_json::Map::new();
    if let Some(nodes) = inv.value("nodes") {
        target.insert("nodes".into(), Value::from(nodes));
    }
    let mut tags = serde_json::Map::new();
    for tag in inv.values("tag") {
        let Some((k, re)) = tag.split_once('=') else {
            return fail(&format!("-tag {tag:?}: expected KEY=REGEX"));
        };
        tags.insert(k.into(), Value::from(re));
    }
    if !tags.is_empty() {
        target.insert("tags".into(), Value::Object(tags));
    }
    let addr = inv
        .value("http-addr")
        .map(String::from)
        .or_else(|| env(ENV_HTTP_ADDR))
        .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string());
    let auth = match http_auth(inv) {
        Ok(auth) => auth,
        Err(e) => return fail(&e),
    };
    let interrupts = match Interrupts::install() {
        Ok(i) => i,
        Err(e) => return fail(&format!("Error handling signals: {e}")),
    };
    let mut api = HttpClient::new(&addr, auth.as_ref());
    let init = match api.post_api(&json!({"action": "init_session"})) {
        Ok(a) if a["state"] == "SUCCEEDED" => a,
        Ok(a) => return fail(&format!("Error creating a session: {}", api_error(&a))),
        Err(e @ HttpError::Dial(..)) => {
            return fail(&format!("Error connecting to tandem agent: {e}"));
        }
        Err(e) => return fail(&format!("Error creating a session: {e}")),
    };
    let (Some(session), Some(consumer)) = (init["sessionId"].as_str(), init["consumerId"].as_str())
    else {
        return fail(&format!("Error creating a session: {init}"));
    };
    let code = run_job(
        &mut api,
        &addr,
        auth,
        session,
        consumer,
        &command,
        target,
        &interrupts,
    );
    // Best effort: a session left behind times out on the agent anyway.
    let _ = api.post_api(&json!({"action": "close_session", "sessionId": session}));
    if interrupts.interrupted() {
        EXIT_INTERRUPTED
    } else {
        code
    }
}

/// Starts the job and prints its items up to its `status`; returns the exit code.
#[allow(clippy::too_many_arguments)]
fn run_job(
    api: &mut HttpClient,
    addr: &str,
    auth: Option<HttpAuth>,
    session: &str,
    consumer: &str,
    command: &str,
    target: serde_json::Map<String, Value>,
    interrupts: &Interrupts,
) -> i32 {
    let mut request = json!({
        "action": "async_exec",
        "command": command,
        "sessionId": session,
    });
    let cluster = !target.is_empty();
    if let Some(r) = request.as_object_mut() {
        r.extend(target);
    }
    let scheduled = match api.post_api(&request) {
        Ok(a) if a["state"] == "SCHEDULED" => a,
        Ok(a) => return fail(&format!("Error running command: {}", api_error(&a))),
        Err(e) => return fail(&format!("Error running command: {e}")),
    };
    let Some(job) = scheduled["body"]["jobId"].as_u64() else {
        return fail(&format!("Error running command: {scheduled}"));
    };
    // The interrupt goes on its own connection: the main one is parked in a pull.
    let interrupt = json!({"action": "interrupt_job", "sessionId": session});
    let interrupt_addr = addr.to_string();
    interrupts.on_interrupt(move || {
        let _ = HttpClient::new(&interrupt_addr, auth.as_ref()).post_api(&interrupt);
    });
    let pull = json!({
        "action": "pull_results",
        "sessionId": session,
        "consumerId": consumer,
    });
    let mut interrupted_at = None;
    loop {
        let answer = match api.post_api(&pull) {
            Ok(a) if a["state"] == "SUCCEEDED" => a,
            Ok(a) => return fail(&format!("Error pulling results: {}", api_error(&a))),
            Err(e) => return fail(&format!("Error pulling results: {e}")),
        };
        let items = answer["body"]["results"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for item in items.iter().filter(|i| i["jobId"] == job) {
            let line = match item["node"].as_str() {
                Some(node) if cluster => format!("{node}: {item}"),
                _ => item.to_string(),
            };
            if stream_out(&line).is_err() {
                // Nobody reads stdout any more: stop the job (the caller closes the session).
                let _ = api.post_api(&json!({"action": "interrupt_job", "sessionId": session}));
                return 1;
            }
            // A cluster-wide job's nodes end with their own status (with `node`); the
            // job's own status comes last.
            if item["type"] == "status" && item.get("node").is_none() {
                return i32::from(item["statusCode"] != 0);
            }
        }
        if interrupts.interrupted() {
            let at = *interrupted_at.get_or_insert_with(Instant::now);
            if at.elapsed() > INTERRUPT_GRACE {
                return fail("Error: the job did not end after interrupt_job");
            }
        }
    }
}
