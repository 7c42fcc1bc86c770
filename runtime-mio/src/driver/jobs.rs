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
        let shared = Arc::new(JobShared::default());
        let host_job = HostJob::new(
            job,
            Arc::clone(&shared),
            self.job_tx.clone(),
            self.waker.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("tandem-job-{}", job.0))
            .spawn(move || host_job.run(body, args));
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
