//! Host commands: the commands that need the host (here, /proc), registered with the agent
//! and run as effects. `Effect::StartJob` spawns [`run`]; it feeds items to
//! `Agent::job_output` and ends with `Agent::job_finished`. `Effect::CancelJob` drops the
//! task, which stops it at its next `.await`.
//!
//! Backpressure: an item refused with `JobError::Full` is kept and offered again after the
//! agent rings `Effect::JobWritable`, so no result is lost; `JobError::Gone` ends the job
//! quietly (the agent already wrote its `status`).

use std::rc::Rc;
use std::time::Duration;

use async_io::Timer;
use tandem_core::{Agent, CommandInfo, JobError, JobId, RegisterError};
use tandem_runtime::procfs;

use crate::agent::{Bell, Runtime};

/// The host commands: name, summary, usage.
const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "sysinfo",
        "Show the agent process's memory, threads, open files, uptime and the system load",
        "sysinfo",
    ),
    (
        "dashboard",
        "Sample what sysinfo shows every interval, COUNT times or until interrupted",
        "dashboard [-i MS] [-n COUNT]",
    ),
];

const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);

/// Registers the host commands with the agent.
pub(crate) fn register(agent: &mut Agent) -> Result<(), RegisterError> {
    for &(name, summary, usage) in COMMANDS {
        agent.register_command(CommandInfo::new(name, summary, usage))?;
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

    fn usage(&self, name: &str) -> End {
        let usage = COMMANDS.iter().find(|c| c.0 == name).map_or(name, |c| c.2);
        End::Status(-10, Some(format!("usage: {usage}")))
    }
}

fn sample_failed(e: &std::io::Error) -> End {
    End::Status(1, Some(format!("cannot read process information: {e}")))
}

async fn sysinfo(ctx: &JobCtx<'_>, args: &[String]) -> End {
    if !args.is_empty() {
        return ctx.usage("sysinfo");
    }
    let sample = match procfs::sample() {
        Ok(s) => s,
        Err(e) => return sample_failed(&e),
    };
    match ctx.emit(&sample.to_item("sysinfo")).await {
        Ok(()) => End::Status(0, None),
        Err(end) => end,
    }
}

/// `dashboard [-i MS] [-n COUNT]`: the interval (> 0) and the optional sample count (> 0).
fn parse_dashboard(args: &[String]) -> Option<(Duration, Option<u64>)> {
    let mut interval = DEFAULT_INTERVAL;
    let mut count = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next()?;
        match flag.as_str() {
            "-i" | "--interval" => {
                interval = Duration::from_millis(value.parse().ok().filter(|&ms| ms > 0)?);
            }
            "-n" | "--number-of-execution" => {
                count = Some(value.parse().ok().filter(|&n| n > 0)?);
            }
            _ => return None,
        }
    }
    Some((interval, count))
}

async fn dashboard(ctx: &JobCtx<'_>, args: &[String]) -> End {
    let Some((interval, count)) = parse_dashboard(args) else {
        return ctx.usage("dashboard");
    };
    let mut taken = 0u64;
    loop {
        let sample = match procfs::sample() {
            Ok(s) => s,
            Err(e) => return sample_failed(&e),
        };
        if let Err(end) = ctx.emit(&sample.to_item("dashboard")).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn dashboard_arguments() {
        let ms = Duration::from_millis;
        assert_eq!(parse_dashboard(&[]), Some((ms(1000), None)));
        assert_eq!(
            parse_dashboard(&words("-i 50 -n 3")),
            Some((ms(50), Some(3)))
        );
        assert_eq!(
            parse_dashboard(&words("--interval 20 --number-of-execution 1")),
            Some((ms(20), Some(1)))
        );
        for bad in ["-i", "-i 0", "-i x", "-n 0", "-n -1", "-x 1", "extra"] {
            assert_eq!(parse_dashboard(&words(bad)), None, "{bad}");
        }
    }
}
