//! `tandem exec 'COMMAND'`: runs a command through the agent's HTTP API, as a script would
//! with curl: `init_session`, `async_exec`, then `pull_results` until the job's `status`
//! item, then `close_session`. Each result item of the job is printed as one line of JSON
//! as it arrives.
//!
//! Exit codes: 0 when the job's `statusCode` is 0, 1 for any other status or error, and
//! 130 after Ctrl-C (SIGINT/SIGTERM), which sends `interrupt_job`, prints the items that
//! still arrive up to the job's (interrupted) `status`, and closes the session.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::HttpClient;
use super::interrupt::{EXIT_INTERRUPTED, Interrupts};
use super::{Command, ENV_HTTP_ADDR, Invocation, env, fail, stream_out};
use crate::cli::{DEFAULT_HTTP_ADDR, FlagSpec};

/// After an interrupt, how long to wait for the job's `status` before giving up on it.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

pub(super) const EXEC: Command = Command {
    name: "exec",
    synopsis: "Runs a command through the agent's HTTP API",
    usage: "\
Usage: tandem exec [options] 'COMMAND [ARGS]'

  Runs COMMAND (one argument; quote it) in a new session of the agent's HTTP API
  and prints each result item of its job as one line of JSON as it arrives,
  ending with the job's status item. Flags may also follow COMMAND.

  Exits 0 when the job's statusCode is 0, 1 otherwise. Ctrl-C interrupts the job
  (interrupt_job), closes the session and exits 130.",
    flags: &[FlagSpec {
        name: "http-addr",
        value: Some("127.0.0.1:8563"),
        help: "HTTP API address of the tandem agent. Defaults to $TANDEM_HTTP_ADDR, else \
               127.0.0.1:8563.",
    }],
    rpc: false,
    flags_after_first_arg: true,
    run: exec,
};

/// A failed API action: its `message`, or the whole answer when it has none.
fn api_error(answer: &Value) -> String {
    answer["message"]
        .as_str()
        .map_or_else(|| answer.to_string(), String::from)
}

fn exec(inv: &Invocation) -> i32 {
    let [command] = inv.args.as_slice() else {
        return fail(&format!(
            "exactly one COMMAND argument is expected (quote it)\n\n{}",
            EXEC.help()
        ));
    };
    let addr = inv
        .value("http-addr")
        .map(String::from)
        .or_else(|| env(ENV_HTTP_ADDR))
        .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string());
    let interrupts = match Interrupts::install() {
        Ok(i) => i,
        Err(e) => return fail(&format!("Error handling signals: {e}")),
    };
    let mut api = HttpClient::new(&addr);
    let init = match api.post_api(&json!({"action": "init_session"})) {
        Ok(a) if a["state"] == "SUCCEEDED" => a,
        Ok(a) => return fail(&format!("Error creating a session: {}", api_error(&a))),
        Err(e) => return fail(&format!("Error connecting to tandem agent: {e}")),
    };
    let (Some(session), Some(consumer)) = (init["sessionId"].as_str(), init["consumerId"].as_str())
    else {
        return fail(&format!("Error creating a session: {init}"));
    };
    let code = run_job(&mut api, &addr, session, consumer, command, &interrupts);
    // Best effort: a session left behind times out on the agent anyway.
    let _ = api.post_api(&json!({"action": "close_session", "sessionId": session}));
    if interrupts.interrupted() {
        EXIT_INTERRUPTED
    } else {
        code
    }
}

/// Starts the job and prints its items up to its `status`; returns the exit code.
fn run_job(
    api: &mut HttpClient,
    addr: &str,
    session: &str,
    consumer: &str,
    command: &str,
    interrupts: &Interrupts,
) -> i32 {
    let scheduled = match api.post_api(&json!({
        "action": "async_exec",
        "command": command,
        "sessionId": session,
    })) {
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
        let _ = HttpClient::new(&interrupt_addr).post_api(&interrupt);
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
            if stream_out(&item.to_string()).is_err() {
                // Nobody reads stdout any more: stop the job (the caller closes the session).
                let _ = api.post_api(&json!({"action": "interrupt_job", "sessionId": session}));
                return 1;
            }
            if item["type"] == "status" {
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
