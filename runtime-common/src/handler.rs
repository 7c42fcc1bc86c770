//! Running event handler scripts (`Effect::RunHandler`), the same in both runtimes.
//!
//! A script runs as `/bin/sh -c SCRIPT` in a process group of its own, with the agent's
//! environment plus Serf's variables, the effect's stdin written (then closed) by a helper
//! thread, and its stdout and stderr in one pipe, of which the last `max_output` bytes are
//! kept (Serf's circular buffer). Each run waits on a thread of its own ([`spawn_handler`]),
//! so the event loop never blocks; the answer goes to `deliver` there, and the runtime hands
//! it to `Agent::handler_finished` on its loop. [`HandlerKill`] (on `Effect::CancelHandler`)
//! kills the whole group, so a script's children cannot hold its output pipe open.

use std::collections::VecDeque;
use std::io::Write as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use tandem_core::{HandlerId, HandlerRun};

/// How a run ended: what `Agent::handler_finished` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerOutcome {
    /// The run.
    pub id: HandlerId,
    /// `Ok` for exit status 0, else Go's words (`exit status 2`, `signal: killed`) or why
    /// the script could not start.
    pub result: Result<(), String>,
    /// The last bytes of its stdout and stderr.
    pub output: Vec<u8>,
}

/// Stops a running script and everything it started.
#[derive(Clone, Debug)]
pub struct HandlerKill {
    pgid: i32,
    /// Set once the script has been waited for: its process group id may then be reused.
    reaped: Arc<Mutex<bool>>,
}

impl HandlerKill {
    /// Sends SIGKILL to the script's process group, unless it has already ended.
    pub fn kill(&self) {
        let reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            // SAFETY: kill(2) with a negative pid signals that process group; the group is
            // the unreaped child's own (process_group(0)), so its id cannot have been reused.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
        }
    }
}

/// Go's `ExitError` text for a status.
fn status_text(status: ExitStatus) -> Result<(), String> {
    if status.success() {
        return Ok(());
    }
    match (status.code(), status.signal()) {
        (Some(code), _) => Err(format!("exit status {code}")),
        (None, Some(libc::SIGKILL)) => Err("signal: killed".into()),
        (None, Some(sig)) => Err(format!("signal: {sig}")),
        (None, None) => Err(format!("{status}")),
    }
}

/// Reads `r` to its end, keeping the last `max` bytes.
fn read_tail(mut r: impl std::io::Read, max: usize) -> Vec<u8> {
    let mut kept: VecDeque<u8> = VecDeque::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                kept.extend(&buf[..n]);
                let over = kept.len().saturating_sub(max);
                kept.drain(..over);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kept.into()
}

/// Starts `run` and waits for it on a thread of its own; `deliver` gets the outcome there.
/// When the script cannot be started, the outcome comes back at once as the error.
pub fn spawn_handler(
    run: HandlerRun,
    deliver: impl FnOnce(HandlerOutcome) + Send + 'static,
) -> Result<HandlerKill, HandlerOutcome> {
    let id = run.id;
    let failed = |why: String| HandlerOutcome {
        id,
        result: Err(why),
        output: Vec::new(),
    };
    let (out_r, out_w) = std::io::pipe().map_err(|e| failed(e.to_string()))?;
    let err_w = out_w.try_clone().map_err(|e| failed(e.to_string()))?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&run.script)
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(out_w)
        .stderr(err_w)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| failed(e.to_string()))?;
    // The pipe's write ends live in `cmd` too: dropped, the read end sees EOF when the
    // script (and whatever it started) is done with it.
    drop(cmd);
    let pgid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let kill = HandlerKill {
        pgid,
        reaped: Arc::new(Mutex::new(false)),
    };
    let stdin = child.stdin.take();
    let input = run.stdin;
    let waiter = kill.clone();
    let max = run.max_output;
    let spawned = std::thread::Builder::new()
        .name("tandem-handler".into())
        .spawn(move || {
            if let Some(mut stdin) = stdin {
                // A script that does not read its stdin must not block the run: the write
                // happens beside it (a broken pipe is no failure, as in Serf).
                let _ = std::thread::Builder::new()
                    .name("tandem-handler-stdin".into())
                    .spawn(move || {
                        let _ = stdin.write_all(&input);
                    });
            }
            let output = read_tail(out_r, max);
            // Reaped under the lock `kill` takes, without blocking it: the output's end
            // usually is the script's, so the first look mostly finds it exited.
            let status = loop {
                {
                    let mut reaped = waiter.reaped.lock().unwrap_or_else(PoisonError::into_inner);
                    match child.try_wait() {
                        Ok(None) => {}
                        done => {
                            *reaped = true;
                            break done.map(|s| s.unwrap_or_default());
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            };
            let result = match status {
                Ok(status) => status_text(status),
                Err(e) => Err(e.to_string()),
            };
            deliver(HandlerOutcome { id, result, output });
        });
    match spawned {
        Ok(_) => Ok(kill),
        Err(e) => {
            kill.kill();
            Err(failed(format!("cannot start a handler thread: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn run(script: &str, stdin: &[u8]) -> HandlerRun {
        HandlerRun {
            id: HandlerId(7),
            script: script.into(),
            env: vec![("SERF_EVENT".into(), "user".into())],
            stdin: stdin.into(),
            max_output: 16,
        }
    }

    fn outcome(r: HandlerRun) -> (HandlerKill, mpsc::Receiver<HandlerOutcome>) {
        let (tx, rx) = mpsc::channel();
        let kill = spawn_handler(r, move |o| tx.send(o).unwrap()).unwrap();
        (kill, rx)
    }

    #[test]
    fn a_script_gets_env_and_stdin_and_its_output_tail_comes_back() {
        let (_, rx) = outcome(run(
            "read x; echo \"$SERF_EVENT $x\"; echo err >&2",
            b"hi\n",
        ));
        let o = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(o.id, HandlerId(7));
        assert_eq!(o.result, Ok(()));
        assert_eq!(o.output, b"user hi\nerr\n");
        let (_, rx) = outcome(run("printf 0123456789abcdefXYZ; exit 3", b""));
        let o = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(o.result, Err("exit status 3".into()));
        assert_eq!(o.output, b"3456789abcdefXYZ", "the last 16 bytes");
    }

    #[test]
    fn kill_stops_the_script_and_its_children() {
        let (kill, rx) = outcome(run("sleep 30 & sleep 30", b""));
        kill.kill();
        let o = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(o.result, Err("signal: killed".into()));
    }
}
