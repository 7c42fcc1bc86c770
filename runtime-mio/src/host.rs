//! Host commands: commands that need the host, run off the event loop on worker threads.
//!
//! The core asks for one with `Effect::StartJob`; [`crate::MioAgent`] looks the name up in its
//! table of [`HostCommand`]s and runs it on a thread of its own with a [`HostJob`] (at most
//! `Limits::max_host_jobs` such threads are alive at once, stopped jobs' threads that have
//! not returned yet included; a start beyond them ends at once with status 1). The job
//! hands each result item to the loop through a channel and wakes it with the `mio::Waker`;
//! the loop feeds the item to `Agent::job_output` and answers the job:
//!
//! - `Ok`: [`HostJob::emit`] returns and the job goes on;
//! - `Full`: the loop keeps the item and offers it again after `Effect::JobWritable`, while
//!   `emit` keeps waiting, so nothing is lost and a slow consumer slows the job down;
//! - `Gone`, or `Effect::CancelJob`: `emit` (or [`HostJob::sleep`]) returns [`Stopped`]
//!   and the job ends without reporting (the agent has already written its `status`).
//!
//! A job that returns [`Finished`] is reported with `Agent::job_finished`. Either way the
//! thread's last message says it is done, and only then does the loop forget the job (or
//! when the agent cancels it), so the loop's job table never outlives its threads' news.
//!
//! The built-in commands are `sysinfo` and `dashboard`; their table, arguments and items
//! come from `tandem_runtime::host`, as `tandem-smol`'s do.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;
use tandem_core::{CommandInfo, JobId};
use tandem_runtime::host::{DASHBOARD, SYSINFO, parse_dashboard, sample_item};

/// The function a host command runs on its worker thread: the job (to emit items through)
/// and the words after the command name.
pub type HostFn = dyn Fn(&HostJob, &[String]) -> Result<Finished, Stopped> + Send + Sync;

/// A host command: how `help` shows it, and what it runs.
#[derive(Clone)]
pub struct HostCommand {
    /// Name, summary and usage, registered with the agent.
    pub info: CommandInfo,
    /// The job's body, run on a worker thread.
    pub run: Arc<HostFn>,
}

impl std::fmt::Debug for HostCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCommand")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// How a host job ended by itself: the status reported with `Agent::job_finished`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// 0 for success, -10 for bad arguments, 1 for a failure.
    pub status_code: i32,
    /// Shown with the status.
    pub message: Option<String>,
}

impl Finished {
    /// Success.
    pub fn ok() -> Self {
        Finished {
            status_code: 0,
            message: None,
        }
    }

    /// Bad arguments: status -10 with `usage: …`.
    pub fn usage(usage: &str) -> Self {
        Finished {
            status_code: -10,
            message: Some(format!("usage: {usage}")),
        }
    }

    /// A failure: status 1 with a message.
    pub fn failed(message: impl Into<String>) -> Self {
        Finished {
            status_code: 1,
            message: Some(message.into()),
        }
    }
}

/// The agent ended the job (it was interrupted, timed out, filled its response, or its
/// session closed): stop producing and return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the job was stopped")
    }
}

impl std::error::Error for Stopped {}

/// What a worker thread tells the loop.
pub(crate) enum JobMsg {
    /// One result item; the job waits for the verdict.
    Item(JobId, serde_json::Value),
    /// The worker thread is done: with how the job ended by itself, or `None` when it
    /// stopped because the agent ended it.
    Done(JobId, Option<Finished>),
}

#[derive(Debug, Default)]
struct JobState {
    /// The loop cancelled the job, or the agent refused its output as gone.
    stopped: bool,
    /// The agent took the item in flight.
    taken: bool,
}

/// State shared by a job's thread and the loop.
#[derive(Debug, Default)]
pub(crate) struct JobShared {
    state: Mutex<JobState>,
    changed: Condvar,
}

impl JobShared {
    fn lock(&self) -> MutexGuard<'_, JobState> {
        // A poisoned lock only means a thread panicked while holding it; the flags are
        // still meaningful.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The item in flight was taken by the agent.
    pub(crate) fn taken(&self) {
        self.lock().taken = true;
        self.changed.notify_all();
    }

    /// The job must stop (cancelled, or refused as gone).
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }
}

/// A running host job, as its worker thread sees it.
pub struct HostJob {
    job: JobId,
    shared: Arc<JobShared>,
    to_loop: Sender<JobMsg>,
    waker: Option<Arc<Waker>>,
}

impl std::fmt::Debug for HostJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostJob").field("job", &self.job).finish()
    }
}

impl HostJob {
    pub(crate) fn new(
        job: JobId,
        shared: Arc<JobShared>,
        to_loop: Sender<JobMsg>,
        waker: Option<Arc<Waker>>,
    ) -> Self {
        HostJob {
            job,
            shared,
            to_loop,
            waker,
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.job
    }

    /// Whether the agent has ended the job.
    pub fn is_stopped(&self) -> bool {
        self.shared.lock().stopped
    }

    /// Hands one result item (a JSON object with a `"type"`) to the agent and waits until
    /// it is taken. While the consumer is full this keeps waiting, so a job never runs
    /// ahead of its readers.
    pub fn emit(&self, item: serde_json::Value) -> Result<(), Stopped> {
        {
            let mut s = self.shared.lock();
            if s.stopped {
                return Err(Stopped);
            }
            s.taken = false;
        }
        self.send(JobMsg::Item(self.job, item))?;
        let mut s = self.shared.lock();
        loop {
            // Taken wins over stopped: the item is the agent's either way.
            if s.taken {
                return Ok(());
            }
            if s.stopped {
                return Err(Stopped);
            }
            s = self
                .shared
                .changed
                .wait(s)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Sleeps for `d`, or until the agent ends the job.
    pub fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        let until = Instant::now() + d;
        let mut s = self.shared.lock();
        loop {
            if s.stopped {
                return Err(Stopped);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn send(&self, msg: JobMsg) -> Result<(), Stopped> {
        // A closed channel means the loop is gone: nobody wants the output any more.
        self.to_loop.send(msg).map_err(|_| Stopped)?;
        if let Some(waker) = &self.waker {
            // A failed wake leaves the message queued; the loop drains the channel on its
            // next turn anyway.
            let _ = waker.wake();
        }
        Ok(())
    }

    /// The worker thread's body: runs the command, reports how it ended.
    pub(crate) fn run(self, body: Arc<HostFn>, args: Vec<String>) {
        let end = catch_unwind(AssertUnwindSafe(|| body(&self, &args)))
            .unwrap_or_else(|_| Ok(Finished::failed("internal error: host command panicked")));
        let _ = self.send(JobMsg::Done(self.job, end.ok()));
    }
}

// ----- the built-in host commands --------------------------------------------------------

/// `sysinfo` and `dashboard`, as `tandem-smol` has them.
pub(crate) fn builtins() -> Vec<HostCommand> {
    vec![
        HostCommand {
            info: SYSINFO.info(),
            run: Arc::new(sysinfo),
        },
        HostCommand {
            info: DASHBOARD.info(),
            run: Arc::new(dashboard),
        },
    ]
}

fn sysinfo(job: &HostJob, args: &[String]) -> Result<Finished, Stopped> {
    if !args.is_empty() {
        return Ok(Finished::usage(SYSINFO.usage));
    }
    let item = match sample_item("sysinfo") {
        Ok(item) => item,
        Err(message) => return Ok(Finished::failed(message)),
    };
    job.emit(item)?;
    Ok(Finished::ok())
}

fn dashboard(job: &HostJob, args: &[String]) -> Result<Finished, Stopped> {
    let Some((interval, count)) = parse_dashboard(args) else {
        return Ok(Finished::usage(DASHBOARD.usage));
    };
    let mut taken = 0u64;
    loop {
        let item = match sample_item("dashboard") {
            Ok(item) => item,
            Err(message) => return Ok(Finished::failed(message)),
        };
        job.emit(item)?;
        taken += 1;
        if count.is_some_and(|n| taken >= n) {
            return Ok(Finished::ok());
        }
        // The next sample is an interval after this one was taken in, not on a fixed
        // grid: a consumer that was full does not get a burst of stale samples.
        job.sleep(interval)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn emit_waits_for_the_verdict_and_a_stop_wakes_a_sleeper() {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(JobShared::default());
        let job = HostJob::new(JobId(7), Arc::clone(&shared), tx, None);
        let worker = std::thread::spawn(move || {
            let first = job.emit(serde_json::json!({"type": "x"}));
            let slept = job.sleep(Duration::from_secs(60));
            (first, slept, job.emit(serde_json::json!({"type": "y"})))
        });
        let Ok(JobMsg::Item(JobId(7), item)) = rx.recv() else {
            panic!("no item")
        };
        assert_eq!(item["type"], "x");
        shared.taken();
        shared.stop();
        let (first, slept, second) = worker.join().unwrap();
        assert_eq!(first, Ok(()));
        assert_eq!(slept, Err(Stopped));
        assert_eq!(second, Err(Stopped));
    }

    #[test]
    fn a_panicking_command_is_reported_as_a_failure() {
        let (tx, rx) = mpsc::channel();
        let job = HostJob::new(JobId(1), Arc::default(), tx, None);
        job.run(Arc::new(|_: &HostJob, _: &[String]| panic!("boom")), vec![]);
        let Ok(JobMsg::Done(JobId(1), Some(f))) = rx.recv() else {
            panic!("not reported")
        };
        assert_eq!(f.status_code, 1);
    }
}
