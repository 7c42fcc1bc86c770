//! Host commands: the commands that need the host (here, /proc), registered with the agent
//! and run as effects. `Effect::StartJob` spawns [`run`]; it feeds items to
//! `Agent::job_output` and ends with `Agent::job_finished`. `Effect::CancelJob` drops the
//! task, which stops it at its next `.await`.
//!
//! Backpressure: an item refused with `JobError::Full` is kept and offered again after the
//! agent rings `Effect::JobWritable`, so no result is lost; `JobError::Gone` ends the job
//! quietly (the agent already wrote its `status`).

use std::rc::Rc;

use async_io::Timer;
use tandem_core::{Agent, JobError, JobId, RegisterError};
use tandem_runtime::host::{BUILTINS, Builtin, DASHBOARD, SYSINFO, parse_dashboard, sample_item};

use crate::agent::{Bell, Runtime};

/// Registers the host commands with the agent.
pub(crate) fn register(agent: &mut Agent) -> Result<(), RegisterError> {
    for builtin in BUILTINS {
        agent.register_command(builtin.info())?;
    }
    Ok(())
}

/// How a job ends.
enum End {
    /// Report `job_finished` with this status code and message.
    Status(i32, Option<String>),
    /// The agent already ended the job (interrupted, or its session closed).
    Gone,
}

/// Runs one host job to its end.
pub(crate) async fn run(
    rt: Rc<Runtime>,
    job: JobId,
    command: String,
    args: Vec<String>,
    writable: Bell,
) {
    let job_ctx = JobCtx {
        rt: &rt,
        job,
        writable,
    };
    let end = match command.as_str() {
        "sysinfo" => sysinfo(&job_ctx, &args).await,
        "dashboard" => dashboard(&job_ctx, &args).await,
        other => End::Status(1, Some(format!("{other}: no host implementation"))),
    };
    rt.job_done(job);
    if let End::Status(code, message) = end {
        rt.input(|agent, now| agent.job_finished(job, code, message.as_deref(), now));
        rt.log(
            tandem_core::Level::Debug,
            &format!("host: job {} finished with status {code}", job.0),
        );
    }
}

/// What a running job needs to talk to the agent.
struct JobCtx<'a> {
    rt: &'a Rc<Runtime>,
    job: JobId,
    writable: Bell,
}

impl JobCtx<'_> {
    /// Hands one item to the agent, waiting while it answers `Full`.
    async fn emit(&self, item: &serde_json::Value) -> Result<(), End> {
        loop {
            let job = self.job;
            match self.rt.input(|agent, now| agent.job_output(job, item, now)) {
                Ok(()) => return Ok(()),
                // A `JobWritable` rung during that same drain is already in the bell.
                Err(JobError::Full) => self.writable.wait().await,
                Err(JobError::Gone) => return Err(End::Gone),
                Err(JobError::Invalid) => {
                    return Err(End::Status(
                        1,
                        Some("internal error: invalid result item".into()),
                    ));
                }
            }
        }
    }
}

fn usage(builtin: Builtin) -> End {
    End::Status(-10, Some(format!("usage: {}", builtin.usage)))
}

async fn sysinfo(ctx: &JobCtx<'_>, args: &[String]) -> End {
    if !args.is_empty() {
        return usage(SYSINFO);
    }
    let item = match sample_item("sysinfo") {
        Ok(item) => item,
        Err(message) => return End::Status(1, Some(message)),
    };
    match ctx.emit(&item).await {
        Ok(()) => End::Status(0, None),
        Err(end) => end,
    }
}

async fn dashboard(ctx: &JobCtx<'_>, args: &[String]) -> End {
    let Some((interval, count)) = parse_dashboard(args) else {
        return usage(DASHBOARD);
    };
    let mut taken = 0u64;
    loop {
        let item = match sample_item("dashboard") {
            Ok(item) => item,
            Err(message) => return End::Status(1, Some(message)),
        };
        if let Err(end) = ctx.emit(&item).await {
            return end;
        }
        taken += 1;
        if count.is_some_and(|n| taken >= n) {
            return End::Status(0, None);
        }
        // The next sample is an interval after this one was taken in, not on a fixed
        // grid: a consumer that was full does not get a burst of stale samples.
        Timer::after(interval).await;
    }
}
