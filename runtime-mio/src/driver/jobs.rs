//! The host job side of a [`MioAgent`]: `Effect::StartJob` spawns a worker thread, whose
//! items come back through the channel and the waker and are offered to the agent; items
//! refused `Full` are held until `Effect::JobWritable` (see [`crate::host`]).

use std::sync::Arc;

use tandem_core::{JobError, JobId, Level};

use super::MioAgent;
use crate::host::{Finished, HostJob, JobMsg, JobShared};

/// A host job running on a worker thread.
pub(super) struct RunningJob {
    pub(super) shared: Arc<JobShared>,
    /// An item the agent refused `Full`, offered again on `JobWritable`.
    pub(super) held: Option<serde_json::Value>,
    /// The agent refused its output as gone: the thread was told to stop. The entry stays
    /// until the thread says it is done, or the agent's `CancelJob` (which usually follows
    /// in the same drain) removes it.
    pub(super) stopped: bool,
}

impl MioAgent {
    // ----- host jobs -----------------------------------------------------------------

    pub(super) fn start_job(&mut self, job: JobId, command: String, args: Vec<String>) {
        self.record(
            Level::Debug,
            &format!("host: job {} started: {command} {}", job.0, args.join(" ")),
        );
        let Some(body) = self.host.get(&command).cloned() else {
            self.report_finished(
                job,
                Finished::failed(format!("{command}: no host implementation")),
            );
            return;
        };
        // The agent counts the jobs it has not ended (`Limits::max_host_jobs`); a stopped
        // job's thread may still be on its way out, and a command that ignores `Stopped`
        // could keep it for long, so the threads themselves are bounded too.
        let limit = self.agent.config().limits.max_host_jobs;
        let alive = self.worker_threads();
        if alive >= limit {
            self.report_finished(
                job,
                Finished::failed(format!(
                    "too many host jobs running (limit {limit}; {alive} worker threads \
                     have not returned yet)"
                )),
            );
            return;
        }
        let worker = Arc::clone(&self.workers);
        let shared = Arc::new(JobShared::default());
        let host_job = HostJob::new(
            job,
            Arc::clone(&shared),
            self.job_tx.clone(),
            self.waker.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("tandem-job-{}", job.0))
            .spawn(move || {
                host_job.run(body, args);
                drop(worker);
            });
        match spawned {
            // Detached: the thread ends when the job does, or at its next wait once
            // stopped. Its messages are read on this thread, after this insert.
            Ok(_) => {
                let (held, stopped) = (None, false);
                self.jobs.insert(
                    job,
                    RunningJob {
                        shared,
                        held,
                        stopped,
                    },
                );
            }
            Err(e) => self.report_finished(
                job,
                Finished::failed(format!("cannot start a worker thread: {e}")),
            ),
        }
    }

    /// Reads what the worker threads sent.
    pub(super) fn job_messages(&mut self) {
        while let Ok(msg) = self.job_rx.try_recv() {
            match msg {
                JobMsg::Item(job, item) => self.offer(job, Some(item)),
                JobMsg::Done(job, finished) => {
                    // A job cancelled or refused meanwhile is not reported: the agent has
                    // ended it already.
                    let running = self.jobs.remove(&job);
                    if let (Some(running), Some(finished)) = (running, finished)
                        && !running.stopped
                    {
                        self.report_finished(job, finished);
                    }
                }
            }
            self.settle();
        }
    }

    /// Offers a job's item (a new one, or the one held since `Full`) to the agent.
    pub(super) fn offer(&mut self, job: JobId, item: Option<serde_json::Value>) {
        let now = self.clock.now();
        let Some(running) = self.jobs.get_mut(&job) else {
            return; // stopped already: its thread was told
        };
        let Some(item) = item.or_else(|| running.held.take()) else {
            return;
        };
        match self.agent.job_output(job, &item, now) {
            Ok(()) => running.shared.taken(),
            Err(JobError::Full) => running.held = Some(item),
            Err(JobError::Gone) => {
                running.shared.stop();
                running.stopped = true;
            }
            Err(JobError::Invalid) => {
                running.shared.stop();
                running.stopped = true;
                self.report_finished(job, Finished::failed("internal error: invalid result item"));
            }
        }
    }

    fn report_finished(&mut self, job: JobId, finished: Finished) {
        let now = self.clock.now();
        self.agent
            .job_finished(job, finished.status_code, finished.message.as_deref(), now);
        self.record(
            Level::Debug,
            &format!(
                "host: job {} finished with status {}",
                job.0, finished.status_code
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    use tandem_core::{CommandInfo, Config, Effect, JobId, Limits};

    use crate::MioAgent;
    use crate::host::{Finished, HostCommand, HostJob, Stopped};

    #[test]
    fn a_stopped_job_whose_thread_lingers_still_counts_against_max_host_jobs() {
        let mut me = MioAgent::new(Config {
            limits: Limits {
                max_host_jobs: 1,
                ..Limits::default()
            },
            ..Config::default()
        })
        .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Barrier::new(2));
        let (counted, held) = (Arc::clone(&runs), Arc::clone(&release));
        // A command that ignores being stopped until the test lets it go.
        let stubborn = move |_: &HostJob, _: &[String]| -> Result<Finished, Stopped> {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                held.wait();
            }
            Ok(Finished::ok())
        };
        me.register_host_command(HostCommand {
            info: CommandInfo::new("stubborn", "waits", "stubborn"),
            run: Arc::new(stubborn),
        })
        .unwrap();
        let wait_for = |me: &MioAgent, threads: usize, runs_seen: usize| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while me.worker_threads() != threads || runs.load(Ordering::SeqCst) != runs_seen {
                assert!(Instant::now() < deadline, "{} threads", me.worker_threads());
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        me.start_job(JobId(1), "stubborn".into(), vec![]);
        wait_for(&me, 1, 1);
        // The agent ended the job, but its thread goes on: no second thread beside it.
        me.effect(Effect::CancelJob(JobId(1)));
        assert_eq!(me.job_count(), 0);
        me.start_job(JobId(2), "stubborn".into(), vec![]);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!((me.worker_threads(), runs.load(Ordering::SeqCst)), (1, 1));
        // Once it returns, its place is free again.
        release.wait();
        wait_for(&me, 0, 1);
        me.start_job(JobId(3), "stubborn".into(), vec![]);
        wait_for(&me, 0, 2);
    }
}
