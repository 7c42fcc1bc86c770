//! The `/api` actions (spec §2–4): request parsing, the common pre-dispatch checks, the eight
//! actions, and their envelopes. Every wire text of the error catalogue (§4.10) is in
//! [`msg`] or written next to the action that produces it.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::Parked;
use crate::cluster_jobs::Target;
use crate::json::{Obj, object};
use crate::session::jobs::{ExecSink, Sink};
use crate::session::{InputStatus, Session, SessionKey, items, key_of, key_str, uuid};
use crate::time::{Instant, Timer};
use crate::{Agent, ConnId, Level};

/// The largest results list and command-line buffer an answered `exec` leaves for the next.
const SPARE_RESULTS: usize = 16;
const SPARE_LINE: usize = 256;

/// A `pull_results` answer carries at most this many items (Arthas: 20).
pub(crate) const PULL_MAX_ITEMS: usize = 20;

/// The `state` of an envelope (spec §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Scheduled,
    Succeeded,
    Interrupted,
    Failed,
    Refused,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Scheduled => "SCHEDULED",
            State::Succeeded => "SUCCEEDED",
            State::Interrupted => "INTERRUPTED",
            State::Failed => "FAILED",
            State::Refused => "REFUSED",
        }
    }
}

/// The fixed messages of the catalogue (spec §4.10).
pub(crate) mod msg {
    pub(crate) const EMPTY_BODY: &str =
        "Process request error: parse request failed: request body is empty";
    pub(crate) const PARSE_FAILED: &str = "Process request error: parse request failed: ";
    pub(crate) const ACTION_REQUIRED: &str = "'action' is required";
    pub(crate) const UNKNOWN_ACTION: &str = "unknown action: ";
    pub(crate) const SESSION_REQUIRED: &str = "'sessionId' is required";
    pub(crate) const SESSION_NOT_FOUND: &str = "session not found: ";
    pub(crate) const CONSUMER_REQUIRED: &str = "'consumerId' is required";
    pub(crate) const CONSUMER_NOT_FOUND: &str = "consumer not found: ";
    pub(crate) const NO_FOREGROUND_JOB: &str = "no foreground job is running";
    pub(crate) const JOB_RUNNING: &str = "Another job is running.";
    pub(crate) const EXEC_FAILED: &str = "Exec command failed:";
    pub(crate) const ASYNC_EXEC_FAILED: &str = "Async exec command failed:";
    pub(crate) const TIME_EXPIRED: &str = "The job is exceeded time limit, force interrupt";
    pub(crate) const UNSUPPORTED_METHOD: &str = "Unsupported http method: ";
    pub(crate) const WELCOME: &str = "Welcome to tandem!";
}

/// A string field that borrows from the body unless it had escapes.
#[derive(Debug)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(String::from(v))))
            }
            // fastjson reads a number where a String is declared as its text.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(format!("{v}"))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(format!("{v}"))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(format!("{v}"))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(if v { "true" } else { "false" })))
            }
        }
        d.deserialize_any(V)
    }
}

/// Accepts a JSON object and nothing else, to word the parse error for other bodies.
struct ObjectOnly;

impl<'de> Deserialize<'de> for ObjectOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ObjectOnly;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<ObjectOnly, A::Error> {
                while m.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(ObjectOnly)
            }
        }
        d.deserialize_map(V)
    }
}

/// `execTimeout`: a number or a numeric string (spec §2).
#[derive(Debug)]
struct Timeout(i64);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timeout;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timeout, E> {
                Ok(Timeout(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timeout, E> {
                Ok(Timeout(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timeout, E> {
                Ok(Timeout(v as i64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timeout, E> {
                let t = v.trim();
                if t.is_empty() {
                    return Ok(Timeout(0));
                }
                t.parse::<i64>()
                    .map(Timeout)
                    .map_err(|_| E::custom(format!("execTimeout is not a number: {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiRequest<'a> {
    #[serde(borrow, default)]
    action: Option<Text<'a>>,
    #[serde(borrow, default)]
    request_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    session_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    consumer_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    command: Option<Text<'a>>,
    #[serde(default)]
    exec_timeout: Option<Timeout>,
    /// A cluster-wide job's node expression (anchored).
    #[serde(borrow, default)]
    nodes: Option<Text<'a>>,
    /// A cluster-wide job's tag expressions (anchored).
    #[serde(default)]
    tags: Option<alloc::collections::BTreeMap<String, String>>,
}

/// What `exec` and `async_exec` run: the command line, the cluster target if any, and
/// `execTimeout` as given.
struct JobRequest<'a> {
    command: Option<&'a str>,
    target: Option<Target>,
    timeout: i64,
}

fn text<'a>(t: &'a Option<Text<'_>>) -> Option<&'a str> {
    t.as_ref().map(|t| &*t.0)
}

/// Blank counts as absent (the web console sends `""`).
fn present<'a>(t: &'a Option<Text<'_>>) -> Option<&'a str> {
    text(t).filter(|s| !s.trim().is_empty())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Exec,
    AsyncExec,
    InterruptJob,
    PullResults,
    InitSession,
    JoinSession,
    CloseSession,
    SessionInfo,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        const ALL: [(&str, Action); 8] = [
            ("EXEC", Action::Exec),
            ("ASYNC_EXEC", Action::AsyncExec),
            ("INTERRUPT_JOB", Action::InterruptJob),
            ("PULL_RESULTS", Action::PullResults),
            ("INIT_SESSION", Action::InitSession),
            ("JOIN_SESSION", Action::JoinSession),
            ("CLOSE_SESSION", Action::CloseSession),
            ("SESSION_INFO", Action::SessionInfo),
        ];
        let s = s.trim();
        ALL.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|&(_, a)| a)
    }
}

/// The envelope fields besides `body` (spec §3.1), written in key order.
#[derive(Default)]
pub(crate) struct Env<'a> {
    pub(crate) consumer_id: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) session_id: Option<&'a str>,
}

pub(crate) fn envelope(
    out: &mut Vec<u8>,
    state: State,
    env: &Env<'_>,
    body: Option<&mut dyn FnMut(&mut Obj<'_>)>,
) {
    object(out, |o| {
        if let Some(body) = body {
            o.obj("body", body);
        }
        o.opt_str("consumerId", env.consumer_id);
        o.opt_str("message", env.message);
        o.opt_str("requestId", env.request_id);
        o.opt_str("sessionId", env.session_id);
        o.str("state", state.as_str());
    });
}

/// The answer to any method but POST on `/api`.
pub(crate) fn refused_method(out: &mut Vec<u8>, method: &str) {
    let message = format!("{}{method}", msg::UNSUPPORTED_METHOD);
    let env = Env {
        message: Some(&message),
        ..Env::default()
    };
    envelope(out, State::Refused, &env, None);
}

impl Agent {
    fn count_state(&mut self, state: State) {
        let s = &mut self.stats;
        match state {
            State::Scheduled | State::Succeeded => s.api_succeeded += 1,
            State::Interrupted => s.api_interrupted += 1,
            State::Failed => s.api_failed += 1,
            State::Refused => s.api_refused += 1,
        }
    }

    /// Answers now with an envelope.
    fn reply(
        &mut self,
        conn: ConnId,
        state: State,
        env: &Env<'_>,
        body: Option<&mut dyn FnMut(&mut Obj<'_>)>,
    ) {
        self.count_state(state);
        self.scratch.clear();
        envelope(&mut self.scratch, state, env, body);
        self.respond_scratch(conn);
    }

    fn fail(&mut self, conn: ConnId, request_id: Option<&str>, message: &str) {
        let env = Env {
            message: Some(message),
            request_id,
            ..Env::default()
        };
        self.reply(conn, State::Failed, &env, None);
    }

    /// Dispatches one `POST /api` body.
    pub(crate) fn api(&mut self, conn: ConnId, body: &[u8], now: Instant) {
        if body.trim_ascii().is_empty() {
            return self.fail(conn, None, msg::EMPTY_BODY);
        }
        if body.trim_ascii_start().first() != Some(&b'{') {
            // serde would take a JSON array positionally; fastjson takes objects only.
            let e = match serde_json::from_slice::<ObjectOnly>(body) {
                Err(e) => e,
                Ok(ObjectOnly) => return self.fail(conn, None, msg::EMPTY_BODY),
            };
            return self.fail(conn, None, &format!("{}{e}", msg::PARSE_FAILED));
        }
        let req: ApiRequest<'_> = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return self.fail(conn, None, &format!("{}{e}", msg::PARSE_FAILED)),
        };
        let rid = text(&req.request_id);
        let Some(action) = present(&req.action) else {
            return self.fail(conn, rid, msg::ACTION_REQUIRED);
        };
        let Some(action) = Action::parse(action) else {
            return self.fail(conn, rid, &format!("{}{action}", msg::UNKNOWN_ACTION));
        };
        if action == Action::InitSession {
            return self.init_session(conn, rid, now);
        }
        let key = match (present(&req.session_id), action) {
            (None, Action::Exec) => None,
            (None, _) => return self.fail(conn, rid, msg::SESSION_REQUIRED),
            (Some(id), _) => match self.touch_session(id, now) {
                Some(key) => Some(key),
                None => {
                    return self.fail(conn, rid, &format!("{}{id}", msg::SESSION_NOT_FOUND));
                }
            },
        };
        let command = text(&req.command);
        let target = match action {
            Action::Exec | Action::AsyncExec => {
                match Target::parse(present(&req.nodes), req.tags.as_ref()) {
                    Ok(t) => t,
                    Err(e) => {
                        let failed = match action {
                            Action::Exec => msg::EXEC_FAILED,
                            _ => msg::ASYNC_EXEC_FAILED,
                        };
                        return self.fail(conn, rid, &format!("{failed}{e}"));
                    }
                }
            }
            _ => None,
        };
        let timeout = req.exec_timeout.map_or(0, |t| t.0);
        let job = JobRequest {
            command,
            target,
            timeout,
        };
        match (action, key) {
            (Action::Exec, key) => self.exec(conn, rid, key, job, now),
            (_, None) => self.fail(conn, rid, msg::SESSION_REQUIRED),
            (Action::AsyncExec, Some(key)) => self.async_exec(conn, rid, key, job, now),
            (Action::PullResults, Some(key)) => {
                let consumer = present(&req.consumer_id);
                self.pull_results(conn, rid, key, consumer, now);
            }
            (Action::InterruptJob, Some(key)) => self.interrupt_job(conn, rid, key, now),
            (Action::JoinSession, Some(key)) => self.join_session(conn, rid, key, now),
            (Action::CloseSession, Some(key)) => {
                self.close_session(key, now);
                self.reply(
                    conn,
                    State::Succeeded,
                    &Env {
                        request_id: rid,
                        ..Env::default()
                    },
                    None,
                );
            }
            (Action::SessionInfo, Some(key)) => self.session_info(conn, rid, key, now),
            (Action::InitSession, Some(_)) => {}
        }
    }

    /// Finds a session by id and records the access (spec §4.1 step 7).
    fn touch_session(&mut self, id: &str, now: Instant) -> Option<SessionKey> {
        let key = key_of(id)?;
        let s = self.sessions.get_mut(&key)?;
        s.last_access = now;
        s.used = true;
        Some(key)
    }

    /// Creates a session and schedules its expiry; `None` at the session limit.
    ///
    /// The policy against a flood of `init_session`: one-time sessions (`exec` without a
    /// `sessionId`) have their own room, one per HTTP connection, so they are never refused
    /// because `init_session` filled the table; a session nobody has used expires after
    /// `unused_session_timeout_ms`; and at `max_sessions` the longest-idle unused session
    /// is closed to make room for the new one.
    fn new_session(&mut self, one_time: bool, now: Instant) -> Option<SessionKey> {
        if one_time {
            if self.one_time_sessions >= self.cfg.limits.max_connections {
                return None;
            }
        } else if self.sessions.len().saturating_sub(self.one_time_sessions)
            >= self.cfg.limits.max_sessions
            && !self.evict_unused_session(now)
        {
            return None;
        }
        let mut key = uuid(self.random16());
        while self.sessions.contains_key(&key) {
            key = uuid(self.random16());
        }
        let created = self.wall.unix_ms(now);
        self.sessions
            .insert(key, Session::new(key, created, now, one_time));
        self.stats.sessions_created += 1;
        if one_time {
            self.one_time_sessions += 1;
        } else {
            let expiry = self.cfg.timing.session_expiry(false);
            let t = self.timers.schedule(now + expiry, Timer::Session(key));
            self.set_session_timer(key, t);
        }
        Some(key)
    }

    /// Closes the longest-idle session nobody has used; false when every session is used.
    fn evict_unused_session(&mut self, now: Instant) -> bool {
        let Some(key) = self
            .sessions
            .values()
            .filter(|s| !s.used && !s.one_time)
            .min_by_key(|s| s.last_access)
            .map(|s| s.key)
        else {
            return false;
        };
        self.stats.sessions_evicted += 1;
        let text = format!(
            "http: session {} evicted: never used, and the session table is full",
            key_str(&key)
        );
        self.log(Level::Info, &text, now);
        self.close_session(key, now);
        true
    }

    /// Removes a session from the table (its timers are the caller's business).
    pub(crate) fn remove_session(&mut self, key: SessionKey) -> Option<Session> {
        let s = self.sessions.remove(&key)?;
        if s.one_time {
            self.one_time_sessions -= 1;
        }
        Some(s)
    }

    fn too_many_sessions(&self) -> String {
        format!("too many sessions (limit {})", self.cfg.limits.max_sessions)
    }

    /// Adds a consumer to a session and schedules its expiry; returns its id.
    fn new_consumer(&mut self, key: SessionKey, now: Instant) -> Option<(u32, String)> {
        let random = self.random16();
        let max = self.cfg.limits.max_consumers;
        let s = self.sessions.get_mut(&key)?;
        if s.consumers.len() >= max {
            return None;
        }
        let c = s.add_consumer(random, now);
        let (number, id) = (c.number, c.id.clone());
        c.timer = Some(self.timers.schedule(
            now + self.cfg.timing.consumer_timeout(),
            Timer::Consumer(key, number),
        ));
        Some((number, id))
    }

    fn publish(&mut self, key: SessionKey, item: items::Item) {
        let limits = &self.cfg.limits;
        if let Some(s) = self.sessions.get_mut(&key) {
            s.publish(item, limits.history, limits.consumer_queue, &mut self.wake);
        }
    }

    fn set_input_status(&mut self, key: SessionKey, status: InputStatus) {
        let limits = &self.cfg.limits;
        if let Some(s) = self.sessions.get_mut(&key) {
            s.set_input_status(status, &self.status_items, limits, &mut self.wake);
        }
    }

    fn init_session(&mut self, conn: ConnId, rid: Option<&str>, now: Instant) {
        let Some(key) = self.new_session(false, now) else {
            let m = self.too_many_sessions();
            return self.fail(conn, rid, &m);
        };
        let Some((_, consumer)) = self.new_consumer(key, now) else {
            return self.fail(conn, rid, msg::CONSUMER_NOT_FOUND);
        };
        self.publish(key, items::message(0, msg::WELCOME));
        let welcome = self.welcome_item(now);
        self.publish(key, welcome);
        self.set_input_status(key, InputStatus::AllowInput);
        let text = format!("http: session {} created", key_str(&key));
        self.log(Level::Debug, &text, now);
        let env = Env {
            consumer_id: Some(&consumer),
            request_id: rid,
            session_id: Some(key_str(&key)),
            ..Env::default()
        };
        self.reply(conn, State::Succeeded, &env, None);
    }

    fn welcome_item(&self, now: Instant) -> items::Item {
        let mut time = String::new();
        let _ = self.wall.local(now).write_welcome(&mut time);
        let mut pid = Vec::new();
        crate::json::write_u64(&mut pid, self.cfg.host.pid.into());
        items::build(|o| {
            o.u64("jobId", 0);
            o.str("node", &self.cfg.node_name);
            // A string, as Arthas writes it.
            o.str("pid", core::str::from_utf8(&pid).unwrap_or("0"));
            o.str("time", &time);
            o.str("type", "welcome");
            o.str("version", crate::VERSION);
        })
    }

    fn join_session(&mut self, conn: ConnId, rid: Option<&str>, key: SessionKey, now: Instant) {
        let Some((number, consumer)) = self.new_consumer(key, now) else {
            let m = format!(
                "too many consumers in this session (limit {})",
                self.cfg.limits.max_consumers
            );
            return self.fail(conn, rid, &m);
        };
        let cap = self.cfg.limits.consumer_queue;
        if let Some(s) = self.sessions.get_mut(&key) {
            s.replay_into(number, cap, &self.status_items);
        }
        let env = Env {
            consumer_id: Some(&consumer),
            request_id: rid,
            session_id: Some(key_str(&key)),
            ..Env::default()
        };
        self.reply(conn, State::Succeeded, &env, None);
    }

    fn pull_results(
        &mut self,
        conn: ConnId,
        rid: Option<&str>,
        key: SessionKey,
        consumer: Option<&str>,
        now: Instant,
    ) {
        let Some(consumer) = consumer else {
            return self.fail(conn, rid, msg::CONSUMER_REQUIRED);
        };
        let Some(c) = self
            .sessions
            .get(&key)
            .and_then(|s| s.consumer_by_id(consumer))
        else {
            return self.fail(conn, rid, &format!("{}{consumer}", msg::CONSUMER_NOT_FOUND));
        };
        let number = c.number;
        if c.pull.is_some() {
            // Another pull holds this consumer: answer empty at once, as Arthas does after
            // failing to take the consumer's lock, and take nothing from the queue.
            let env = Env {
                consumer_id: Some(consumer),
                request_id: rid,
                session_id: Some(key_str(&key)),
                ..Env::default()
            };
            return self.reply(
                conn,
                State::Succeeded,
                &env,
                Some(&mut |b: &mut Obj<'_>| {
                    b.arr("results", |_| {});
                }),
            );
        }
        if let Some(c) = self
            .sessions
            .get_mut(&key)
            .and_then(|s| s.consumer_mut(number))
        {
            c.pull = Some(conn);
            c.last_pull = now;
        }
        let timeout = self
            .timers
            .schedule(now + self.cfg.timing.pull_timeout(), Timer::Pull(conn));
        if let Some(c) = self.conns.get_mut(conn) {
            c.http.parked = Some(Parked::Pull {
                session: key,
                consumer: number,
                started: now,
                first_item: None,
                request_id: rid.map(String::from),
                timers: [Some(timeout), None],
            });
        }
        // Items may be waiting already; `process_conn` looks at the parked pull next.
    }

    /// Writes the answer of a parked pull, taking at most 20 entries from the queue.
    pub(crate) fn answer_pull(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        number: u32,
        rid: Option<&str>,
        now: Instant,
    ) {
        let Some(s) = self.sessions.get_mut(&key) else {
            let m = format!("{}{}", msg::SESSION_NOT_FOUND, key_str(&key));
            return self.fail(conn, rid, &m);
        };
        s.last_access = now;
        let Some(c) = s.consumer_mut(number) else {
            return self.fail(conn, rid, msg::CONSUMER_NOT_FOUND);
        };
        c.pull = None;
        c.last_pull = now;
        let mut out = core::mem::take(&mut self.scratch);
        out.clear();
        // Lend the id out while the queue is drained into the same envelope.
        let id = core::mem::take(&mut c.id);
        let env = Env {
            consumer_id: Some(&id),
            request_id: rid,
            session_id: Some(key_str(&key)),
            ..Env::default()
        };
        envelope(
            &mut out,
            State::Succeeded,
            &env,
            Some(&mut |b: &mut Obj<'_>| {
                b.arr("results", |a| c.take(PULL_MAX_ITEMS, |item| a.raw(item)));
            }),
        );
        c.id = id;
        self.scratch = out;
        self.count_state(State::Succeeded);
        self.respond_scratch(conn);
        self.notify_writable(key);
    }

    fn exec(
        &mut self,
        conn: ConnId,
        rid: Option<&str>,
        key: Option<SessionKey>,
        job: JobRequest<'_>,
        now: Instant,
    ) {
        let JobRequest {
            command,
            target,
            timeout,
        } = job;
        let key = match key {
            Some(k) => k,
            None => match self.new_session(true, now) {
                Some(k) => k,
                None => {
                    let m = self.too_many_sessions();
                    return self.fail(conn, rid, &m);
                }
            },
        };
        let timeout_ms = self.timeout_ms(timeout);
        if let Some(r) = self.refuse_if_busy(conn, rid, key, command) {
            return r;
        }
        let sink = Sink::Exec(ExecSink {
            conn,
            request_id: rid.map(String::from),
            results: core::mem::take(&mut self.spare_results),
            dropped: 0,
            timeout_ms,
            timed_out: false,
            timer: None,
        });
        let job = match self.create_job(key, command.unwrap_or(""), sink, target.is_some()) {
            Ok(job) => job,
            Err(e) => {
                let m = format!("{}{e}", msg::EXEC_FAILED);
                self.command_reply(conn, State::Failed, rid, key, command, Some(&m));
                if self.sessions.get(&key).is_some_and(|s| s.one_time) {
                    self.remove_session(key);
                }
                return;
            }
        };
        self.enter_job(key, job);
        if let Some(c) = self.conns.get_mut(conn) {
            c.http.parked = Some(Parked::Exec { job });
        }
        let t = self.timers.schedule(
            now + core::time::Duration::from_millis(timeout_ms),
            Timer::ExecTimeout(job),
        );
        if let Some(crate::session::jobs::Job {
            sink: Sink::Exec(e),
            ..
        }) = self.jobs.get_mut(&job)
        {
            e.timer = Some(t);
        }
        match target {
            Some(t) => self.start_cluster_job(job, &t, timeout_ms, now),
            None => self.run_job(job, now),
        }
    }

    /// `execTimeout` in milliseconds: absent or ≤ 0 is the configured default.
    fn timeout_ms(&self, timeout: i64) -> u64 {
        u64::try_from(timeout)
            .ok()
            .filter(|&t| t > 0)
            .unwrap_or(self.cfg.timing.exec_timeout_ms)
    }

    /// REFUSED while the session has a foreground job (spec §4.3 step 3).
    fn refuse_if_busy(
        &mut self,
        conn: ConnId,
        rid: Option<&str>,
        key: SessionKey,
        command: Option<&str>,
    ) -> Option<()> {
        let busy = self.sessions.get(&key)?.foreground.is_some();
        busy.then(|| {
            self.command_reply(
                conn,
                State::Refused,
                rid,
                key,
                command,
                Some(msg::JOB_RUNNING),
            );
        })
    }

    /// The envelope of exec/async_exec errors: `sessionId` and `body:{command}` included.
    fn command_reply(
        &mut self,
        conn: ConnId,
        state: State,
        rid: Option<&str>,
        key: SessionKey,
        command: Option<&str>,
        message: Option<&str>,
    ) {
        let env = Env {
            message,
            request_id: rid,
            session_id: Some(key_str(&key)),
            ..Env::default()
        };
        self.reply(
            conn,
            state,
            &env,
            Some(&mut |b: &mut Obj<'_>| {
                b.opt_str("command", command);
            }),
        );
    }

    /// Makes a new job the foreground job (unless it asked for the background).
    fn enter_job(&mut self, key: SessionKey, job: u32) {
        let background = self.jobs.get(&job).is_some_and(|j| j.background);
        self.set_input_status(key, InputStatus::AllowInterrupt);
        if background {
            self.set_input_status(key, InputStatus::AllowInput);
        } else if let Some(s) = self.sessions.get_mut(&key) {
            s.foreground = Some(job);
        }
    }

    /// Writes the answer of an `exec` whose job ended, and forgets the job.
    pub(crate) fn answer_exec(&mut self, conn: ConnId, job: u32, _now: Instant) {
        let Some(job) = self.finish_exec(job) else {
            return;
        };
        let Sink::Exec(e) = &job.sink else {
            return;
        };
        let state = if e.timed_out {
            State::Interrupted
        } else {
            State::Succeeded
        };
        let env = Env {
            message: e.timed_out.then_some(msg::TIME_EXPIRED),
            request_id: e.request_id.as_deref(),
            session_id: Some(key_str(&job.session)),
            ..Env::default()
        };
        self.reply(
            conn,
            state,
            &env,
            Some(&mut |b: &mut Obj<'_>| {
                b.str("command", &job.line);
                b.u64("jobId", job.id.into());
                b.str(
                    "jobStatus",
                    if job.ended { "TERMINATED" } else { "RUNNING" },
                );
                b.arr("results", |a| e.results.iter().for_each(|i| a.raw(i)));
                b.bool("timeExpired", e.timed_out);
                if e.timed_out {
                    b.u64("timeout", e.timeout_ms);
                }
            }),
        );
        // Its buffers serve the next `exec` (kept only when small).
        if let Sink::Exec(mut e) = job.sink
            && e.results.capacity() <= SPARE_RESULTS
        {
            e.results.clear();
            self.spare_results = e.results;
        }
        if job.line.capacity() <= SPARE_LINE {
            self.spare_line = job.line;
        }
    }

    fn async_exec(
        &mut self,
        conn: ConnId,
        rid: Option<&str>,
        key: SessionKey,
        job: JobRequest<'_>,
        now: Instant,
    ) {
        let JobRequest {
            command,
            target,
            timeout,
        } = job;
        if let Some(r) = self.refuse_if_busy(conn, rid, key, command) {
            return r;
        }
        let job = match self.create_job(key, command.unwrap_or(""), Sink::Stream, target.is_some())
        {
            Ok(job) => job,
            Err(e) => {
                self.publish(key, items::command(0, command.unwrap_or(""), Some(&e)));
                let m = format!("{}{e}", msg::ASYNC_EXEC_FAILED);
                return self.command_reply(conn, State::Failed, rid, key, command, Some(&m));
            }
        };
        self.publish(key, items::command(job, command.unwrap_or(""), None));
        self.enter_job(key, job);
        let env = Env {
            request_id: rid,
            session_id: Some(key_str(&key)),
            ..Env::default()
        };
        self.reply(
            conn,
            State::Scheduled,
            &env,
            Some(&mut |b: &mut Obj<'_>| {
                b.opt_str("command", command);
                b.u64("jobId", job.into());
                // Computed before the job starts, as in Arthas: always READY.
                b.str("jobStatus", "READY");
            }),
        );
        match target {
            Some(t) => {
                let timeout_ms = self.timeout_ms(timeout);
                self.start_cluster_job(job, &t, timeout_ms, now);
            }
            None => self.run_job(job, now),
        }
    }

    fn interrupt_job(&mut self, conn: ConnId, rid: Option<&str>, key: SessionKey, now: Instant) {
        let Some(job) = self.sessions.get(&key).and_then(|s| s.foreground) else {
            return self.fail(conn, rid, msg::NO_FOREGROUND_JOB);
        };
        self.interrupt(job, now);
        let env = Env {
            request_id: rid,
            ..Env::default()
        };
        self.reply(
            conn,
            State::Succeeded,
            &env,
            Some(&mut |b: &mut Obj<'_>| {
                b.u64("jobId", job.into());
                b.str("jobStatus", "TERMINATED");
            }),
        );
    }

    /// Ends every job of the session, answers its parked pulls with what is queued, and
    /// removes it.
    pub(crate) fn close_session(&mut self, key: SessionKey, now: Instant) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        let jobs = s.jobs.clone();
        for job in jobs {
            self.interrupt(job, now);
        }
        let pulls: Vec<(ConnId, u32)> = self
            .sessions
            .get(&key)
            .map(|s| {
                s.consumers
                    .iter()
                    .filter_map(|c| c.pull.map(|p| (p, c.number)))
                    .collect()
            })
            .unwrap_or_default();
        for (conn, number) in pulls {
            let parked = self.conns.get_mut(conn).and_then(|c| c.http.parked.take());
            if let Some(Parked::Pull {
                request_id, timers, ..
            }) = parked
            {
                timers.into_iter().for_each(|t| self.timers.cancel(t));
                self.answer_pull(conn, key, number, request_id.as_deref(), now);
            }
        }
        if let Some(s) = self.remove_session(key) {
            self.timers.cancel(s.timer);
            for c in &s.consumers {
                self.timers.cancel(c.timer);
            }
        }
        let text = format!("http: session {} closed", key_str(&key));
        self.log(Level::Debug, &text, now);
    }

    fn session_info(&mut self, conn: ConnId, rid: Option<&str>, key: SessionKey, now: Instant) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        let created = s.created_ms;
        let last = self.wall.unix_ms(s.last_access);
        let _ = now;
        let pid = self.cfg.host.pid;
        let env = Env {
            request_id: rid,
            session_id: Some(key_str(&key)),
            ..Env::default()
        };
        self.reply(
            conn,
            State::Succeeded,
            &env,
            Some(&mut |b: &mut Obj<'_>| {
                b.u64("createTime", created);
                b.u64("lastAccessTime", last);
                b.u64("pid", pid.into());
            }),
        );
    }

    /// A consumer's expiry timer: removed after `consumer_timeout` without a pull.
    pub(crate) fn consumer_timer(&mut self, key: SessionKey, number: u32, now: Instant) {
        let timeout = self.cfg.timing.consumer_timeout();
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(c) = s.consumer_mut(number) else {
            return;
        };
        let due = c.last_pull + timeout;
        if c.pull.is_some() {
            c.timer = Some(
                self.timers
                    .schedule(now + timeout, Timer::Consumer(key, number)),
            );
        } else if now >= due {
            s.consumers.retain(|c| c.number != number);
            self.stats.consumers_expired += 1;
            self.notify_writable(key);
        } else {
            c.timer = Some(self.timers.schedule(due, Timer::Consumer(key, number)));
        }
    }

    /// A session's expiry timer: closed after `session_timeout` without access (after
    /// `unused_session_timeout_ms` if it was never used), unless a foreground job runs or a
    /// pull is parked.
    pub(crate) fn session_timer(&mut self, key: SessionKey, now: Instant) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        let timeout = self.cfg.timing.session_expiry(s.used);
        let busy = s.foreground.is_some() || s.consumers.iter().any(|c| c.pull.is_some());
        let due = s.last_access + timeout;
        if busy {
            let t = self.timers.schedule(now + timeout, Timer::Session(key));
            self.set_session_timer(key, t);
        } else if now >= due {
            self.stats.sessions_expired += 1;
            let text = format!("http: session {} expired", key_str(&key));
            self.log(Level::Info, &text, now);
            self.close_session(key, now);
        } else {
            let t = self.timers.schedule(due, Timer::Session(key));
            self.set_session_timer(key, t);
        }
    }

    fn set_session_timer(&mut self, key: SessionKey, t: crate::time::TimerKey) {
        if let Some(s) = self.sessions.get_mut(&key) {
            s.timer = Some(t);
        }
    }
}
