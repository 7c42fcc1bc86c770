//! Running CLI processes for the client tests (`tandem members`, `serf monitor`,
//! `python3 script.py`): short ones with a deadline, long ones as [`Spawned`] with their
//! stdout read on a thread. Every process is killed and reaped on drop, so a failing
//! (panicking) test leaves none behind. Agents come from `support::RunningAgent`.

#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long one CLI invocation or one wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub use tandem_tests::driver::process::{Out, client_command as command};

/// Runs a command to its end (at most [`DEADLINE`]).
pub fn run(mut cmd: Command) -> Out {
    let mut child = Spawned::new(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()));
    let status = child.wait_exit(DEADLINE);
    Out {
        code: status.code(),
        stdout: child.stdout_text(),
        stderr: child.stderr_text(),
    }
}

/// Runs `tandem ARGS`.
pub fn tandem(args: &[&str]) -> Out {
    run(command(crate::support::BIN, args))
}

/// Lines a reader thread collected.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
    done: Mutex<bool>,
}

/// Reads `pipe` line by line on a thread; after `limit` lines it closes the pipe, as
/// `| head -n LIMIT` would.
fn collect(pipe: impl std::io::Read + Send + 'static, limit: Option<usize>) -> Arc<Lines> {
    let lines = Arc::new(Lines::default());
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe)
            .lines()
            .take(limit.unwrap_or(usize::MAX))
        {
            let Ok(line) = line else { break };
            sink.lines.lock().unwrap().push(line);
            sink.grew.notify_all();
        }
        *sink.done.lock().unwrap() = true;
        sink.grew.notify_all();
    });
    lines
}

/// A running process whose stdout and stderr are collected line by line.
pub struct Spawned {
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
}

impl Spawned {
    /// Spawns `cmd` (its stdout and stderr are piped here).
    pub fn new(cmd: &mut Command) -> Spawned {
        Spawned::with_stdout_limit(cmd, None)
    }

    /// Spawns `cmd`, closing its stdout after `limit` lines (`| head -n LIMIT`).
    pub fn with_stdout_limit(cmd: &mut Command, limit: Option<usize>) -> Spawned {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdout = collect(child.stdout.take().expect("piped stdout"), limit);
        let stderr = collect(child.stderr.take().expect("piped stderr"), None);
        Spawned {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits until a stdout line contains `needle`; returns it.
    pub fn wait_stdout(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        let mut lines = self.stdout.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no stdout line containing {needle:?} in time; stdout so far:\n{}\nstderr:\n{}",
                lines.join("\n"),
                self.stderr_text()
            );
            lines = self.stdout.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Sends a signal.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child, which has not been reaped (we hold `child`).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits for the process to exit by itself, then for its output to be read to the end.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "process still running after {within:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout_text(),
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        for lines in [&self.stdout, &self.stderr] {
            let mut done = lines.done.lock().unwrap();
            while !*done {
                done = lines.grew.wait_timeout(done, DEADLINE).unwrap().0;
            }
        }
        status
    }

    /// Everything on stdout so far.
    pub fn stdout_text(&self) -> String {
        text(&self.stdout)
    }

    /// Everything on stderr so far.
    pub fn stderr_text(&self) -> String {
        text(&self.stderr)
    }
}

fn text(lines: &Lines) -> String {
    let lines = lines.lines.lock().unwrap();
    let mut s = lines.join("\n");
    if !lines.is_empty() {
        s.push('\n');
    }
    s
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
