//! Event handlers, Serf's `-event-handler`: which script runs for which event (member
//! events, user events, queries), with what environment and stdin; a query handler's
//! output is the node's response. The core decides; the runtime (or an embedding application) runs
//! the script on [`Effect::RunHandler`] and answers with [`Agent::handler_finished`].
//!
//! Invariants, as Serf keeps them: handlers run one at a time, in event order (Serf's agent
//! invokes them from its single event loop); the scripts that match an event run in the
//! order they were configured. Unlike Serf, each run has a deadline
//! (`timing.event_handler_timeout_ms`): at it the agent logs the failure, asks the runtime to
//! stop the script ([`Effect::CancelHandler`]) and starts the next, so one stuck script
//! cannot hold the queue. The queue is bounded (`limits.event_handler_queue`); an event that
//! finds it full is dropped, logged and counted.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::cluster::{MemberEvent, MemberView, PendingQuery};
use crate::log::Level;
use crate::time::{Instant, Timer, TimerKey};
use crate::{Agent, Effect, Output};

/// The event types a handler filter may name (Serf's `EventFilter.Valid`).
const EVENT_TYPES: [&str; 8] = [
    "member-join",
    "member-leave",
    "member-failed",
    "member-update",
    "member-reap",
    "user",
    "query",
    "*",
];

/// One parsed `-event-handler`: the script runs for events of type `event` (`*`: all), and
/// for `user`/`query` with a `name`, only for events of that name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventScript {
    /// `member-join`, …, `user`, `query` or `*`.
    pub event: String,
    /// For `user:NAME` and `query:NAME`: the name; empty matches every name.
    pub name: String,
    /// The shell command line (`/bin/sh -c SCRIPT`).
    pub script: String,
}

/// A handler definition Serf refuses: `Invalid event script: …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidEventScript(pub EventScript);

impl fmt::Display for InvalidEventScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invalid event script: {}", self.0)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for InvalidEventScript {}

impl fmt::Display for EventScript {
    /// Serf's `EventScript.String`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "Event '{}' invoking '{}'", self.event, self.script)
        } else {
            write!(
                f,
                "Event '{}:{}' invoking '{}'",
                self.event, self.name, self.script
            )
        }
    }
}

impl EventScript {
    /// Parses one `-event-handler` value as Serf's `ParseEventScript` does: `script`
    /// (every event), or `FILTER=script` split at the first `=`, where `FILTER` is a comma
    /// list of event types, `user:NAME` and `query:NAME`. One script per filter element.
    pub fn parse(spec: &str) -> Result<Vec<EventScript>, InvalidEventScript> {
        let (filter, script) = match spec.split_once('=') {
            Some((filter, script)) => (filter, script),
            None => ("", spec),
        };
        let filter = if filter.is_empty() { "*" } else { filter };
        let mut out = Vec::new();
        for part in filter.split(',') {
            let (event, name) = if let Some(name) = part.strip_prefix("user:") {
                ("user", name)
            } else if let Some(name) = part.strip_prefix("query:") {
                ("query", name)
            } else {
                (part, "")
            };
            let s = EventScript {
                event: event.into(),
                name: name.into(),
                script: script.into(),
            };
            if !EVENT_TYPES.contains(&event) {
                return Err(InvalidEventScript(s));
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Parses every definition, in order.
    pub fn parse_all<S: AsRef<str>>(specs: &[S]) -> Result<Vec<EventScript>, InvalidEventScript> {
        let mut out = Vec::new();
        for spec in specs {
            out.extend(EventScript::parse(spec.as_ref())?);
        }
        Ok(out)
    }

    /// Whether this script runs for an event of type `event` (and, for user events and
    /// queries, of this `name`): Serf's `EventFilter.Invoke`.
    fn invoked_by(&self, event: &str, name: &str) -> bool {
        if self.event == "*" {
            return true;
        }
        self.event == event && (self.name.is_empty() || self.name == name)
    }
}

/// Names one [`Effect::RunHandler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandlerId(pub u32);

/// A script to run: `/bin/sh -c script` with `env` added to the agent's own environment and
/// `stdin` written to its standard input (then closed). Its standard output and error go
/// into one buffer, of which the last `max_output` bytes are kept (Serf's 8 KiB circular
/// buffer); answer with [`Agent::handler_finished`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerRun {
    /// To pass back with the outcome.
    pub id: HandlerId,
    /// The shell command line.
    pub script: String,
    /// Serf's variables: `SERF_EVENT`, `SERF_SELF_NAME`, `SERF_SELF_ROLE`, `SERF_TAG_*`,
    /// and `SERF_USER_EVENT`/`SERF_USER_LTIME` or `SERF_QUERY_NAME`/`SERF_QUERY_LTIME`.
    pub env: Vec<(String, String)>,
    /// Member lines (`name\taddress\trole\ttags`) or the event's payload.
    pub stdin: Vec<u8>,
    /// The most output bytes worth keeping.
    pub max_output: usize,
}

/// An event as the handlers see it.
pub(crate) enum HandlerEvent<'a> {
    Member {
        kind: MemberEvent,
        members: &'a [MemberView],
    },
    User {
        name: &'a str,
        ltime: u64,
        payload: &'a [u8],
    },
    /// A query this node received; a script's output (exit 0, not empty) is the response.
    Query {
        name: &'a str,
        ltime: u64,
        payload: &'a [u8],
        handle: PendingQuery,
    },
}

impl HandlerEvent<'_> {
    /// Serf's `EventType().String()`.
    fn type_str(&self) -> &'static str {
        match self {
            HandlerEvent::Member { kind, .. } => kind.as_str(),
            HandlerEvent::User { .. } => "user",
            HandlerEvent::Query { .. } => "query",
        }
    }

    fn name(&self) -> &str {
        match self {
            HandlerEvent::Member { .. } => "",
            HandlerEvent::User { name, .. } | HandlerEvent::Query { name, .. } => name,
        }
    }
}

/// A run decided and waiting for its turn.
#[derive(Debug)]
struct Pending {
    script: String,
    event: &'static str,
    /// For a query: to respond with the output.
    query: Option<(PendingQuery, String)>,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
}

/// The run the runtime is doing now.
#[derive(Debug)]
struct Running {
    id: HandlerId,
    script: String,
    event: &'static str,
    query: Option<(PendingQuery, String)>,
    timer: Option<TimerKey>,
}

/// The agent's handler state.
#[derive(Debug, Default)]
pub(crate) struct Handlers {
    scripts: Vec<EventScript>,
    queue: VecDeque<Pending>,
    running: Option<Running>,
    next_id: u32,
}

/// Counters of handler runs, shown by `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// Runs started.
    pub runs: u64,
    /// Runs that failed: non-zero exit, could not start, or timed out.
    pub failures: u64,
    /// Runs stopped at their deadline (also in `failures`).
    pub timeouts: u64,
    /// Runs not queued because the queue was full.
    pub dropped: u64,
}

/// Serf's `eventClean`: tabs and newlines escaped, so a field stays on its line.
fn event_clean(v: &str) -> String {
    v.replace('\t', "\\t").replace('\n', "\\n")
}

/// A tag name as an environment variable suffix: upper case, every character outside
/// `[A-Z0-9_]` replaced by `_` (Serf's `sanitizeTagRegexp`).
fn env_tag_name(name: &str) -> String {
    name.chars()
        .flat_map(char::to_uppercase)
        .map(|c| {
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The stdin of a member event: one line per member, Serf's `memberEventStdin`.
fn member_lines(members: &[MemberView]) -> Vec<u8> {
    let mut out = String::new();
    for m in members {
        let tags: Vec<String> = m
            .tags
            .iter()
            .map(|(k, v)| alloc::format!("{k}={v}"))
            .collect();
        let role = m.tags.get("role").map_or("", String::as_str);
        let _ = fmt::Write::write_fmt(
            &mut out,
            format_args!(
                "{}\t{}\t{}\t{}\n",
                event_clean(&m.name),
                m.addr,
                event_clean(role),
                event_clean(&tags.join(","))
            ),
        );
    }
    out.into_bytes()
}

/// The stdin of a user event or query: the payload, with a newline added when it lacks one
/// (most shells' `read` needs it), Serf's `streamPayload`.
fn payload_stdin(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::from(payload);
    if out.last().is_some_and(|&b| b != b'\n') {
        out.push(b'\n');
    }
    out
}

impl Agent {
    /// The event handlers in force, one per filter element, in configured order.
    pub fn event_handlers(&self) -> &[EventScript] {
        &self.handlers.scripts
    }

    /// Counters of handler runs.
    pub fn handler_stats(&self) -> HandlerStats {
        self.handler_stats
    }

    /// The answer to [`Effect::RunHandler`]: `result` is `Ok` when the script exited 0,
    /// else why not (`exit status 1`, `signal: killed`, or why it could not start);
    /// `output` is what it wrote (its last `max_output` bytes). An answer for a run the agent
    /// already gave up on (its deadline passed) is ignored.
    pub fn handler_finished(
        &mut self,
        id: HandlerId,
        result: Result<(), &str>,
        output: &[u8],
        now: Instant,
    ) {
        if self.handlers.running.as_ref().is_some_and(|r| r.id == id)
            && let Some(run) = self.handlers.running.take()
        {
            self.timers.cancel(run.timer);
            let text = alloc::format!(
                "agent: Event '{}' script output: {}",
                run.event,
                String::from_utf8_lossy(output)
            );
            self.log(Level::Debug, &text, now);
            match (result, run.query) {
                (Err(why), _) => {
                    self.handler_stats.failures += 1;
                    let text =
                        alloc::format!("agent: Error invoking script '{}': {why}", run.script);
                    self.log(Level::Err, &text, now);
                }
                // Serf: a query handler that exits 0 with output responds with it; one
                // over the response limit is refused and logged, never cut short.
                (Ok(()), Some((query, name))) if !output.is_empty() => {
                    if let Err(e) = self.cluster.respond(query, output, now) {
                        let text =
                            alloc::format!("agent: Failed to respond to query '{name}': {e}");
                        self.log(Level::Warn, &text, now);
                    }
                    self.drain_cluster(now);
                }
                (Ok(()), _) => {}
            }
            self.next_handler(now);
        }
        self.settle(now);
    }

    /// Replaces the scripts (start, reload). Runs already decided still happen.
    pub(crate) fn set_event_handlers(&mut self, specs: &[String], now: Instant) {
        match EventScript::parse_all(specs) {
            Ok(scripts) => self.handlers.scripts = scripts,
            Err(e) => {
                // The runtimes refuse these at start; an embedder's bad one is logged and
                // the handlers stay as they were.
                let text = alloc::format!("agent: event handlers not changed: {e}");
                self.log(Level::Err, &text, now);
            }
        }
    }

    /// Queues the runs an event sets off, then starts one if none is running.
    pub(crate) fn handle_event_for_handlers(&mut self, event: HandlerEvent<'_>, now: Instant) {
        let (ty, name) = (event.type_str(), event.name());
        let scripts: Vec<String> = self
            .handlers
            .scripts
            .iter()
            .filter(|s| s.invoked_by(ty, name))
            .map(|s| s.script.clone())
            .collect();
        if scripts.is_empty() {
            return;
        }
        let env = self.handler_env(&event);
        let stdin = match &event {
            HandlerEvent::Member { members, .. } => member_lines(members),
            HandlerEvent::User { payload, .. } | HandlerEvent::Query { payload, .. } => {
                payload_stdin(payload)
            }
        };
        let query = match &event {
            HandlerEvent::Query { handle, name, .. } => Some((*handle, String::from(*name))),
            _ => None,
        };
        for script in scripts {
            if self.handlers.queue.len() >= self.cfg.limits.event_handler_queue {
                self.handler_stats.dropped += 1;
                let text =
                    alloc::format!("agent: event handler queue full: '{script}' not run for {ty}");
                self.log(Level::Warn, &text, now);
                continue;
            }
            self.handlers.queue.push_back(Pending {
                script,
                event: ty,
                query: query.clone(),
                env: env.clone(),
                stdin: stdin.clone(),
            });
            // Started at once when nothing runs, so the queue holds only waiting runs.
            if self.handlers.running.is_none() {
                self.next_handler(now);
            }
        }
    }

    /// Serf's environment for a script: the event, this node, its tags, the event's own.
    fn handler_env(&self, event: &HandlerEvent<'_>) -> Vec<(String, String)> {
        let tags = self.cluster.tags();
        let mut env = Vec::from([
            ("SERF_EVENT".into(), String::from(event.type_str())),
            ("SERF_SELF_NAME".into(), self.cfg.node_name.clone()),
            (
                "SERF_SELF_ROLE".into(),
                tags.get("role").cloned().unwrap_or_default(),
            ),
        ]);
        for (k, v) in &tags {
            env.push((alloc::format!("SERF_TAG_{}", env_tag_name(k)), v.clone()));
        }
        match event {
            HandlerEvent::User { name, ltime, .. } => {
                env.push(("SERF_USER_EVENT".into(), String::from(*name)));
                env.push(("SERF_USER_LTIME".into(), alloc::format!("{ltime}")));
            }
            HandlerEvent::Query { name, ltime, .. } => {
                env.push(("SERF_QUERY_NAME".into(), String::from(*name)));
                env.push(("SERF_QUERY_LTIME".into(), alloc::format!("{ltime}")));
            }
            HandlerEvent::Member { .. } => {}
        }
        env
    }

    /// Starts the next queued run, if any.
    fn next_handler(&mut self, now: Instant) {
        let Some(p) = self.handlers.queue.pop_front() else {
            return;
        };
        let id = HandlerId(self.handlers.next_id);
        self.handlers.next_id = self.handlers.next_id.wrapping_add(1);
        let timeout = Duration::from_millis(self.cfg.timing.event_handler_timeout_ms);
        let timer =
            (!timeout.is_zero()).then(|| self.timers.schedule(now + timeout, Timer::Handler(id.0)));
        self.handler_stats.runs += 1;
        let text = alloc::format!("agent: Event '{}' invoking '{}'", p.event, p.script);
        self.log(Level::Debug, &text, now);
        self.handlers.running = Some(Running {
            id,
            script: p.script.clone(),
            event: p.event,
            query: p.query,
            timer,
        });
        self.emit(Output::Effect(Effect::RunHandler(HandlerRun {
            id,
            script: p.script,
            env: p.env,
            stdin: p.stdin,
            max_output: self.cfg.limits.event_handler_output,
        })));
    }

    /// A run's deadline passed: it failed; the runtime stops it; the next one starts.
    pub(crate) fn handler_timed_out(&mut self, id: u32, now: Instant) {
        if self.handlers.running.as_ref().is_none_or(|r| r.id.0 != id) {
            return;
        }
        let Some(run) = self.handlers.running.take() else {
            return;
        };
        self.handler_stats.failures += 1;
        self.handler_stats.timeouts += 1;
        let text = alloc::format!(
            "agent: Error invoking script '{}': timed out after {} ms",
            run.script,
            self.cfg.timing.event_handler_timeout_ms
        );
        self.log(Level::Err, &text, now);
        self.emit(Output::Effect(Effect::CancelHandler(run.id)));
        self.next_handler(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn one(event: &str, name: &str, script: &str) -> EventScript {
        EventScript {
            event: event.into(),
            name: name.into(),
            script: script.into(),
        }
    }

    #[test]
    fn every_serf_form_parses() {
        assert_eq!(
            EventScript::parse("handler.sh").unwrap(),
            [one("*", "", "handler.sh")]
        );
        assert_eq!(
            EventScript::parse("member-join=j.sh").unwrap(),
            [one("member-join", "", "j.sh")]
        );
        assert_eq!(
            EventScript::parse("member-leave,member-failed=gone.sh").unwrap(),
            [
                one("member-leave", "", "gone.sh"),
                one("member-failed", "", "gone.sh")
            ]
        );
        assert_eq!(
            EventScript::parse("user=u.sh").unwrap(),
            [one("user", "", "u.sh")]
        );
        assert_eq!(
            EventScript::parse("user:deploy=d.sh a=b").unwrap(),
            [one("user", "deploy", "d.sh a=b")]
        );
        assert_eq!(
            EventScript::parse("query=q.sh").unwrap(),
            [one("query", "", "q.sh")]
        );
        assert_eq!(
            EventScript::parse("query:load=q.sh").unwrap(),
            [one("query", "load", "q.sh")]
        );
        assert_eq!(EventScript::parse("=x.sh").unwrap(), [one("*", "", "x.sh")]);
    }

    #[test]
    fn bad_definitions_get_serfs_error() {
        let err = |s: &str| EventScript::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("member-jion=x.sh"),
            "Invalid event script: Event 'member-jion' invoking 'x.sh'"
        );
        // As in Serf, an `=` inside a script without a filter makes its head the filter.
        assert_eq!(
            err("echo a=b"),
            "Invalid event script: Event 'echo a' invoking 'b'"
        );
        assert_eq!(
            err("member-join,,user=x"),
            "Invalid event script: Event '' invoking 'x'"
        );
    }

    #[test]
    fn odd_definitions_get_a_defined_answer() {
        // Serf's parse: an empty script or filter element is taken as given or refused,
        // never a panic.
        assert_eq!(EventScript::parse("").unwrap(), [one("*", "", "")]);
        assert_eq!(EventScript::parse("=").unwrap(), [one("*", "", "")]);
        assert_eq!(
            EventScript::parse("user:=x").unwrap(),
            [one("user", "", "x")]
        );
        assert!(EventScript::parse(",=x").is_err());
        assert!(EventScript::parse("\u{0}=x").is_err());
        assert!(EventScript::parse("user:ü\t=x=y").is_ok());
        let long = "member-join,".repeat(10_000) + "=x";
        assert!(
            EventScript::parse(&long).is_err(),
            "the trailing empty element"
        );
    }

    #[test]
    fn filters_match_as_serfs_invoke() {
        let s = one("user", "deploy", "x");
        assert!(s.invoked_by("user", "deploy"));
        assert!(!s.invoked_by("user", "other"));
        assert!(!s.invoked_by("member-join", ""));
        assert!(one("user", "", "x").invoked_by("user", "any"));
        assert!(one("*", "", "x").invoked_by("member-reap", ""));
        assert!(!one("member-join", "", "x").invoked_by("member-leave", ""));
    }

    #[test]
    fn tag_names_become_env_names_as_serf_sanitizes_them() {
        assert_eq!(env_tag_name("role"), "ROLE");
        assert_eq!(env_tag_name("my-tag.x"), "MY_TAG_X");
        assert_eq!(env_tag_name("a1_b"), "A1_B");
    }

    #[test]
    fn payloads_end_with_one_newline() {
        assert_eq!(payload_stdin(b""), b"");
        assert_eq!(payload_stdin(b"x"), b"x\n");
        assert_eq!(payload_stdin(b"x\n"), b"x\n");
    }

    #[test]
    fn member_lines_escape_tabs_and_newlines() {
        let mut tags = alloc::collections::BTreeMap::new();
        tags.insert(String::from("role"), String::from("web\tx"));
        tags.insert(String::from("dc"), String::from("dc1"));
        let m = MemberView {
            name: "n\n1".into(),
            addr: core::net::IpAddr::from([127, 0, 0, 1]),
            port: 8301,
            tags,
            status: crate::cluster::MemberStatus::Alive,
            protocol_min: 0,
            protocol_max: 0,
            protocol_cur: 0,
            delegate_min: 0,
            delegate_max: 0,
            delegate_cur: 0,
        };
        assert_eq!(
            String::from_utf8(member_lines(&[m])).unwrap(),
            "n\\n1\t127.0.0.1\tweb\\tx\tdc=dc1,role=web\\tx\n"
        );
    }
}
