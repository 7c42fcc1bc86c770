//! Jobs: one run of a command line in a session, from creation to its final `status` item.
//!
//! A job's results go to a sink: the session's stream (`async_exec`), or the response of
//! the `exec` that started it. Built-in commands run inside the core; host commands run
//! through effects and feed [`Agent::job_output`], which pushes back with `Full` instead of
//! dropping results. A job ends exactly once (`end_job`), which writes its `status`, frees
//! the foreground slot, and wakes the `exec` waiting for it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::items::{self, InputStatus, Item};
use super::{SessionKey, key_str};
use crate::command::split::{Command, SplitError, split_command};
use crate::command::{Builtin, Resolved};
use crate::log::{Level, LogRecord};
use crate::time::Instant;
use crate::{Agent, ConnId, Effect, JobError, JobId, Output};

/// Where a job's items go.
#[derive(Debug)]
pub(crate) enum Sink {
    /// The session's consumers.
    Stream,
    /// The response of an `exec`.
    Exec(ExecSink),
}

#[derive(Debug)]
pub(crate) struct ExecSink {
    pub(crate) conn: ConnId,
    pub(crate) request_id: Option<String>,
    pub(crate) results: Vec<Item>,
    /// Items a built-in streaming command produced beyond `Limits::exec_results`.
    pub(crate) dropped: u64,
    pub(crate) timeout_ms: u64,
    pub(crate) timed_out: bool,
    /// The `execTimeout` timer, cancelled when the response is written.
    pub(crate) timer: Option<crate::time::TimerKey>,
}

/// How a job runs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Run {
    /// A built-in that finishes within the call that starts it.
    Builtin(Builtin),
    /// `monitor`: streams log records at or above the level until interrupted.
    Monitor(Level),
    /// A host command running through effects.
    Host,
    /// `events`: streams cluster events that pass the filter until interrupted.
    Events(crate::rpc::commands::Filter),
    /// `join`: waits for the cluster's answer.
    Join,
    /// A cluster-wide job (`exec` with `nodes`/`tags`): its nodes' state is in
    /// `Agent::cluster_jobs`.
    Cluster,
}

#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: u32,
    pub(crate) session: SessionKey,
    pub(crate) line: String,
    /// The arguments after the command's name; for a host job, every word (the command
    /// first), as `Effect::StartJob` takes them.
    pub(crate) words: Vec<String>,
    pub(crate) background: bool,
    pub(crate) run: Run,
    pub(crate) sink: Sink,
    pub(crate) ended: bool,
    /// The host was answered `Full` and waits for `JobWritable`.
    pub(crate) blocked: bool,
}

impl Job {
    pub(crate) fn is_host(&self) -> bool {
        self.run == Run::Host
    }
}

impl Agent {
    /// Creates a job for `line` in a session. The error is the `<msg>` of
    /// `Exec command failed:<msg>`.
    pub(crate) fn create_job(
        &mut self,
        key: SessionKey,
        line: &str,
        sink: Sink,
        cluster: bool,
    ) -> Result<u32, String> {
        let limits = &self.cfg.limits;
        if line.len() > limits.max_command {
            return Err(format!(
                "command line too long: {} bytes (limit {})",
                line.len(),
                limits.max_command
            ));
        }
        let Command {
            name,
            args,
            background,
        } = split_command(line).map_err(|SplitError::UnterminatedQuote| {
            String::from("unterminated quote in command line")
        })?;
        let Some(name) = name else {
            return Err(String::from("'command' is required"));
        };
        let run = match self.registry.resolve(&name) {
            // Built-ins describe the agent answering, not the nodes.
            Some(Resolved::Builtin(_)) if cluster => {
                return Err(format!(
                    "{name}: a built-in command; cluster-wide jobs run registered host commands"
                ));
            }
            // A command only the targets know is theirs to refuse (`unknown command`).
            _ if cluster => Run::Cluster,
            Some(Resolved::Builtin(Builtin::Monitor)) => Run::Monitor(Level::Info),
            Some(Resolved::Builtin(Builtin::Events)) => {
                Run::Events(crate::rpc::commands::Filter(Vec::new()))
            }
            Some(Resolved::Builtin(Builtin::Join)) => Run::Join,
            Some(Resolved::Builtin(b)) => Run::Builtin(b),
            Some(Resolved::Host(_)) => Run::Host,
            None => return Err(format!("{name}: command not found")),
        };
        let max_jobs = limits.max_jobs;
        let session = self
            .sessions
            .get_mut(&key)
            .ok_or_else(|| format!("session not found: {}", key_str(&key)))?;
        if session.jobs.len() >= max_jobs {
            return Err(format!("too many jobs in this session (limit {max_jobs})"));
        }
        let host = run == Run::Host;
        if host && self.host_jobs >= limits.max_host_jobs {
            return Err(format!(
                "too many host jobs running (limit {})",
                limits.max_host_jobs
            ));
        }
        let id = self.next_job;
        self.next_job = self.next_job.wrapping_add(1).max(1);
        session.jobs.push(id);
        self.stats.jobs_started += 1;
        // Counted until the job ends (`end_job`), whether or not the host has let go of it.
        self.host_jobs += usize::from(host);
        let words = if host {
            let mut words = Vec::with_capacity(args.len() + 1);
            words.push(name.into_owned());
            words.extend(args);
            words
        } else {
            args
        };
        // The buffer of the last `exec` answered, reused.
        let mut job_line = core::mem::take(&mut self.spare_line);
        job_line.clear();
        job_line.push_str(line);
        self.jobs.insert(
            id,
            Job {
                id,
                session: key,
                line: job_line,
                words,
                background,
                run,
                sink,
                ended: false,
                blocked: false,
            },
        );
        Ok(id)
    }

    /// Starts a created job: a built-in runs now, a host command becomes an effect.
    pub(crate) fn run_job(&mut self, id: u32, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let mut words = core::mem::take(&mut job.words);
        match job.run {
            Run::Builtin(b) => self.run_builtin(id, b, &words, now),
            Run::Monitor(_) => self.start_monitor(id, &words, now),
            Run::Events(_) => self.start_events(id, &words, now),
            Run::Join => self.start_join_job(id, &words, now),
            // Started by `start_cluster_job`, which needs the target.
            Run::Cluster => {}
            Run::Host => {
                let command = if words.is_empty() {
                    String::new()
                } else {
                    words.remove(0)
                };
                self.emit(Output::Effect(Effect::StartJob {
                    job: JobId(id),
                    command,
                    args: words,
                }));
            }
        }
    }

    /// Sends an item of a job to its sink. Built-ins never wait: a full consumer queue
    /// turns into a gap, a full `exec` response into a count.
    pub(crate) fn job_item(&mut self, id: u32, item: Item) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.ended {
            return;
        }
        match &mut job.sink {
            Sink::Stream => {
                let limits = &self.cfg.limits;
                if let Some(s) = self.sessions.get_mut(&job.session) {
                    s.publish(item, limits.history, limits.consumer_queue, &mut self.wake);
                }
            }
            Sink::Exec(e) => {
                if e.results.len() < self.cfg.limits.exec_results {
                    e.results.push(item);
                } else {
                    e.dropped += 1;
                }
            }
        }
    }

    /// A host job's item: refused with `Full` rather than dropped.
    pub(crate) fn host_output(
        &mut self,
        id: u32,
        value: &serde_json::Value,
        now: Instant,
    ) -> Result<(), JobError> {
        let fields = item_fields(value).ok_or(JobError::Invalid)?;
        let Some(job) = self.jobs.get_mut(&id) else {
            return Err(JobError::Gone);
        };
        if job.ended || !job.is_host() {
            return Err(JobError::Gone);
        }
        let limits = &self.cfg.limits;
        let full = match &job.sink {
            Sink::Stream => self
                .sessions
                .get(&job.session)
                .is_some_and(|s| s.any_consumer_full(limits.consumer_queue)),
            Sink::Exec(e) => e.results.len() >= limits.exec_results,
        };
        if full {
            if let Sink::Exec(_) = job.sink {
                // Nobody drains an `exec` response before the job ends, so waiting would
                // only run into the timeout: end the job now and say why.
                let msg = alloc::format!(
                    "result limit reached: exec collects at most {} items",
                    limits.exec_results
                );
                self.end_job(id, 0, Some(&msg), true, now);
                return Err(JobError::Gone);
            }
            job.blocked = true;
            return Err(JobError::Full);
        }
        let item = host_item(id, fields);
        self.job_item(id, item);
        Ok(())
    }

    /// Ends a job once: its `status` item, the foreground slot, the waiting `exec`.
    pub(crate) fn end_job(
        &mut self,
        id: u32,
        code: i32,
        message: Option<&str>,
        interrupted: bool,
        now: Instant,
    ) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.ended {
            return;
        }
        // A cluster job accounts for its nodes first; their outcome decides its status.
        let cluster_status = (job.run == Run::Cluster).then(|| self.close_cluster_job(id, now));
        let (code, message) = match &cluster_status {
            Some((code, message)) => (*code, message.as_deref()),
            None => (code, message),
        };
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if let Sink::Exec(e) = &job.sink
            && e.dropped > 0
        {
            let gap = items::gap(e.dropped);
            if let Some(Job {
                sink: Sink::Exec(e),
                ..
            }) = self.jobs.get_mut(&id)
            {
                e.results.push(gap);
            }
        }
        let status = items::status(&mut self.scratch, id, code, message, interrupted);
        let history = self.cfg.limits.history;
        match self.jobs.get_mut(&id) {
            // The status always goes in, whatever the cap: it is the end marker.
            Some(Job {
                sink: Sink::Exec(e),
                ..
            }) => e.results.push(status),
            // A host job's accepted items must not be pushed out by its own end.
            Some(
                job @ Job {
                    sink: Sink::Stream,
                    run: Run::Host | Run::Cluster,
                    ..
                },
            ) => {
                if let Some(s) = self.sessions.get_mut(&job.session) {
                    s.publish_end(status, history, &mut self.wake);
                }
            }
            Some(_) => self.job_item(id, status),
            None => {}
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.ended = true;
        let key = job.session;
        let host = job.is_host();
        let cluster = job.run == Run::Cluster;
        self.host_jobs -= usize::from(host);
        let exec_conn = match &job.sink {
            Sink::Exec(e) => Some(e.conn),
            Sink::Stream => None,
        };
        if host && interrupted {
            self.emit(Output::Effect(Effect::CancelJob(JobId(id))));
        }
        let limits = &self.cfg.limits;
        if let Some(s) = self.sessions.get_mut(&key) {
            s.jobs.retain(|&j| j != id);
            if s.foreground == Some(id) && (host || cluster) {
                s.foreground = None;
                s.allow_input_after_host_job(&self.status_items, limits.history, &mut self.wake);
            } else if s.foreground == Some(id) {
                s.foreground = None;
                s.set_input_status(
                    InputStatus::AllowInput,
                    &self.status_items,
                    limits,
                    &mut self.wake,
                );
            }
        }
        match exec_conn {
            // The `exec` response takes the job's results; it removes the job.
            Some(conn) => self.wake.push(conn),
            None => {
                self.jobs.remove(&id);
            }
        }
        let _ = now;
    }

    pub(crate) fn interrupt(&mut self, id: u32, now: Instant) {
        self.end_job(id, 0, None, true, now);
    }

    pub(crate) fn exec_timed_out(&mut self, id: u32, now: Instant) {
        if let Some(Job {
            sink: Sink::Exec(e),
            ended: false,
            ..
        }) = self.jobs.get_mut(&id)
        {
            e.timed_out = true;
            self.interrupt(id, now);
        }
    }

    /// Forgets an answered (or abandoned) `exec` job and its one-time session.
    pub(crate) fn finish_exec(&mut self, id: u32) -> Option<Job> {
        let job = self.jobs.remove(&id)?;
        if let Sink::Exec(e) = &job.sink {
            self.timers.cancel(e.timer);
        }
        if self.sessions.get(&job.session).is_some_and(|s| s.one_time) {
            self.remove_session(job.session);
        }
        Some(job)
    }

    /// Tells blocked host jobs of a session that its consumers have room again.
    pub(crate) fn notify_writable(&mut self, key: SessionKey) {
        let cap = self.cfg.limits.consumer_queue;
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        if s.any_consumer_full(cap) {
            return;
        }
        for &id in &s.jobs {
            if let Some(job) = self.jobs.get_mut(&id)
                && job.blocked
                && matches!(job.sink, Sink::Stream)
            {
                job.blocked = false;
                self.out
                    .push_back(Output::Effect(Effect::JobWritable(JobId(id))));
            }
        }
        self.cluster_jobs_writable(key);
    }

    fn start_monitor(&mut self, id: u32, args: &[String], now: Instant) {
        let level = match args {
            [] => Level::Info,
            [flag, level] if flag == "-l" || flag == "--level" => match Level::parse(level) {
                Some(l) => l,
                None => {
                    let msg = format!("Unknown log level: {level}");
                    return self.end_job(id, -10, Some(&msg), false, now);
                }
            },
            _ => return self.usage_error(id, "monitor", now),
        };
        if let Some(job) = self.jobs.get_mut(&id) {
            job.run = Run::Monitor(level);
        }
        // Recent records first, then live ones (fed by `feed_monitors`).
        let recent: Vec<Item> = self
            .log
            .iter()
            .filter(|r| r.level >= level)
            .map(|r| monitor_item(id, r))
            .collect();
        for item in recent {
            self.job_item(id, item);
        }
    }

    fn start_events(&mut self, id: u32, args: &[String], now: Instant) {
        let filter = match args {
            [] => crate::rpc::commands::Filter::parse(""),
            [f] => crate::rpc::commands::Filter::parse(f),
            _ => return self.usage_error(id, "events", now),
        };
        let Some(filter) = filter else {
            return self.end_job(id, -10, Some("Invalid event filter"), false, now);
        };
        if let Some(job) = self.jobs.get_mut(&id) {
            job.run = Run::Events(filter);
        }
    }

    fn start_join_job(&mut self, id: u32, args: &[String], now: Instant) {
        let (wan, addrs) = match args {
            [flag, rest @ ..] if flag == "-wan" => (true, rest),
            rest => (false, rest),
        };
        if addrs.is_empty() {
            return self.usage_error(id, "join", now);
        }
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let waiter = crate::members::JoinWaiter::Job {
            job: id,
            failures: Vec::new(),
        };
        self.start_join(&addrs, wan, false, waiter, now);
    }

    /// Streams a cluster event to every running `events` job whose filter passes; `item`
    /// builds the item for a job id, `pass` asks the filter.
    pub(crate) fn feed_event_jobs(
        &mut self,
        pass: impl Fn(&crate::rpc::commands::Filter) -> bool,
        item: impl Fn(u32) -> Item,
    ) {
        let ids: Vec<u32> = self
            .jobs
            .values()
            .filter(|j| !j.ended && matches!(&j.run, Run::Events(f) if pass(f)))
            .map(|j| j.id)
            .collect();
        for id in ids {
            self.job_item(id, item(id));
        }
    }

    /// Streams a new log record to every running `monitor`.
    pub(crate) fn feed_monitors(&mut self, record: &LogRecord, _now: Instant) {
        let ids: Vec<u32> = self
            .jobs
            .values()
            .filter(|j| !j.ended && matches!(j.run, Run::Monitor(l) if record.level >= l))
            .map(|j| j.id)
            .collect();
        for id in ids {
            self.job_item(id, monitor_item(id, record));
        }
    }

    /// Ends a job with `-10` and the command's usage line.
    pub(crate) fn usage_error(&mut self, id: u32, name: &str, now: Instant) {
        let usage = self.registry.usage(name).unwrap_or(name);
        let msg = format!("usage: {usage}");
        self.end_job(id, -10, Some(&msg), false, now);
    }
}

fn monitor_item(job: u32, r: &LogRecord) -> Item {
    items::build(|o| {
        o.u64("jobId", job.into());
        o.str("level", r.level.as_str());
        o.str("log", &r.line);
        o.str("type", "log");
    })
}

/// A result item's fields, if it is one: a JSON object whose `type` is a string.
pub(crate) fn item_fields(
    value: &serde_json::Value,
) -> Option<&serde_json::Map<String, serde_json::Value>> {
    match value {
        serde_json::Value::Object(fields)
            if fields.get("type").is_some_and(serde_json::Value::is_string) =>
        {
            Some(fields)
        }
        _ => None,
    }
}

/// A host item with `jobId` set and keys in order. serde_json's map is sorted (no
/// `preserve_order`), so merging `jobId` in keeps the order; `null`s are left out as
/// Arthas leaves them out.
pub(crate) fn host_item(job: u32, fields: &serde_json::Map<String, serde_json::Value>) -> Item {
    let mut jobid = Vec::new();
    crate::json::write_u64(&mut jobid, job.into());
    let mut out = Vec::new();
    out.push(b'{');
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, k: &str, v: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        crate::json::write_str(out, k);
        out.push(b':');
        out.extend_from_slice(v);
    };
    let mut job_written = false;
    for (k, v) in fields {
        if k == "jobId" || v.is_null() {
            continue;
        }
        if !job_written && k.as_str() > "jobId" {
            put(&mut out, "jobId", &jobid);
            job_written = true;
        }
        let value = serde_json::to_vec(v).unwrap_or_default();
        put(&mut out, k, &value);
    }
    if !job_written {
        put(&mut out, "jobId", &jobid);
    }
    out.push(b'}');
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_items_get_their_job_id_in_key_order() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"type":"sysinfo","pid":7,"jobId":99,"a":null,"b":[1]}"#)
                .unwrap();
        let serde_json::Value::Object(m) = v else {
            unreachable!()
        };
        let item = host_item(5, &m);
        assert_eq!(
            core::str::from_utf8(&item).unwrap(),
            r#"{"b":[1],"jobId":5,"pid":7,"type":"sysinfo"}"#
        );
    }
}
