//! Cluster-wide jobs (docs/cluster-jobs.md): one session's `exec`/`async_exec` with a
//! `nodes`/`tags` target runs a registered host command on every matching member and
//! streams every node's results back, each node accounted for exactly once.
//!
//! Two roles live here. The **origin** owns the session's job ([`ClusterJob`]): it sends the
//! `_tandem_exec` query, accepts one peer stream ([`Listener::Peer`]) per target, turns
//! their frames into items tagged with `node`, and ends the job once every node has an
//! outcome (or at the ack deadline / job deadline / interrupt). A **target** ([`Served`])
//! dials the origin ([`Effect::Connect`]), proves it saw the query (`hello`), runs the host
//! command once the origin answers `start`, and streams items and an `end`. The origin's
//! own part is a `Served` too, whose sink is the job itself rather than a stream.
//!
//! Invariants: a cluster job's node has at most one outcome and one status item; a peer
//! connection's role moves `Hello → Origin | Target → Done` only, and every path that
//! closes it sets `Done` first, so a close or reset is accounted once; served jobs count in
//! `host_jobs` from creation to their end.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use rand::Rng as _;

use crate::cluster::{MemberStatus, Pool, QueryParams};
use crate::command::Resolved;
use crate::conn::Listener;
use crate::json::Obj;
use crate::log::Level;
use crate::rpc::msgpack::{Reader, Scan, Scanner};
use crate::rpc::wire;
use crate::session::items::{self, Item};
use crate::session::jobs::{Job, Sink};
use crate::time::{Instant, Timer, TimerKey};
use crate::{Agent, ConnId, Effect, JobError, JobId, Output};

/// The internal query that starts a cluster job on its targets.
pub(crate) const EXEC_QUERY: &str = "_tandem_exec";
/// User queries may not use this prefix (RPC `query` refuses it as it refuses `_serf_`).
pub(crate) const INTERNAL_PREFIX: &str = "_tandem_";
/// Compiled size bound of a target expression (a hostile one costs at most this).
const REGEX_LIMIT: usize = 1 << 16;
/// Tag filters one target may carry.
pub(crate) const MAX_TAG_FILTERS: usize = 64;
/// Longest target expression accepted, in bytes.
pub(crate) const MAX_EXPR: usize = 1024;
/// The error texts of a node's `status` item.
pub(crate) mod error {
    pub(crate) const REFUSED: &str = "refused";
    pub(crate) const UNKNOWN_COMMAND: &str = "unknown command";
    pub(crate) const TIMEOUT: &str = "timeout";
    pub(crate) const UNREACHABLE: &str = "unreachable";
    pub(crate) const INTERRUPTED: &str = "interrupted";
    pub(crate) const BUSY: &str = "busy";
    pub(crate) const FAILED: &str = "failed";
    pub(crate) const PROTOCOL: &str = "protocol error";
}

/// Which of a cluster job's timers fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobTimer {
    /// Targets that neither acked nor connected by now are unreachable.
    Ack,
    /// The job's deadline (`execTimeout`) for an `async_exec`.
    Deadline,
    /// A served job's own deadline on a target.
    Served,
}

/// An anchored regular expression with its source.
#[derive(Clone, Debug)]
pub(crate) struct Expr {
    source: String,
    re: regex_automata::meta::Regex,
}

fn build(expr: &str) -> Result<regex_automata::meta::Regex, String> {
    regex_automata::meta::Regex::builder()
        .configure(
            regex_automata::meta::Config::new()
                .nfa_size_limit(Some(REGEX_LIMIT))
                .onepass_size_limit(Some(REGEX_LIMIT))
                .hybrid_cache_capacity(REGEX_LIMIT.max(2048)),
        )
        .build(expr)
        .map_err(|e| format!("{e}"))
}

impl Expr {
    /// Compiles `source` anchored at both ends. It must compile on its own first: a
    /// balanced expression cannot close the group that anchors it (`a)|(b`).
    pub(crate) fn new(source: &str) -> Result<Expr, String> {
        if source.len() > MAX_EXPR {
            return Err(format!("longer than {MAX_EXPR} bytes"));
        }
        build(source)?;
        let re = build(&format!("^(?:{source})$"))?;
        Ok(Expr {
            source: String::from(source),
            re,
        })
    }

    fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

/// What a cluster job runs on: nodes whose name matches `nodes` and whose tags match every
/// tag expression (a missing tag is `""`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Target {
    pub(crate) nodes: Option<Expr>,
    pub(crate) tags: Vec<(String, Expr)>,
}

impl Target {
    /// The target of an API request's `nodes` and `tags`, if it names one; the error is the
    /// `<msg>` of `Exec command failed:<msg>`.
    pub(crate) fn parse(
        nodes: Option<&str>,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Result<Option<Target>, String> {
        if nodes.is_none() && tags.is_none() {
            return Ok(None);
        }
        let nodes = nodes
            .map(|n| Expr::new(n).map_err(|e| format!("bad nodes expression: {e}")))
            .transpose()?;
        let tags = tags.map(|t| t.iter()).into_iter().flatten();
        let mut filters = Vec::new();
        for (k, v) in tags {
            if filters.len() >= MAX_TAG_FILTERS {
                return Err(format!("more than {MAX_TAG_FILTERS} tag filters"));
            }
            let e = Expr::new(v).map_err(|e| format!("bad tags expression for {k:?}: {e}"))?;
            filters.push((k.clone(), e));
        }
        Ok(Some(Target {
            nodes,
            tags: filters,
        }))
    }

    pub(crate) fn matches(&self, name: &str, tags: &BTreeMap<String, String>) -> bool {
        self.nodes.as_ref().is_none_or(|e| e.is_match(name))
            && self.tags.iter().all(|(k, e)| {
                let v = tags.get(k).map_or("", String::as_str);
                e.is_match(v)
            })
    }
}

/// How a targeted node's part ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Answered,
    Failed,
    TimedOut,
}

#[derive(Debug, Default)]
struct NodeRun {
    acked: bool,
    conn: Option<ConnId>,
    outcome: Option<Outcome>,
}

/// The origin's state of a cluster job (the session's job is in `Agent::jobs`).
#[derive(Debug)]
pub(crate) struct ClusterJob {
    token: [u8; 16],
    nodes: BTreeMap<String, NodeRun>,
    query: Option<u64>,
    timers: Vec<TimerKey>,
    deadline_passed: bool,
    /// The origin's own part (a `Served` with a local sink).
    local: Option<u32>,
}

/// Where a served job's items go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServedSink {
    /// Over a peer stream to the origin.
    Peer(ConnId),
    /// Into this agent's cluster job (the origin's own part).
    Local(u32),
}

/// A host job run for a cluster job: on a target for a remote origin, or the origin's own
/// part.
#[derive(Debug)]
pub(crate) struct Served {
    sink: ServedSink,
    command: String,
    args: Vec<String>,
    started: bool,
    blocked: bool,
    timer: Option<TimerKey>,
}

/// A peer stream's role (kept in its connection).
#[derive(Debug, Default)]
pub(crate) enum PeerRole {
    /// Accepted; waiting for `hello`.
    #[default]
    Hello,
    /// Accepted and admitted: a target's stream for a cluster job of ours.
    Origin { job: u32, node: String },
    /// Dialed: our stream to an origin for a served job.
    Target { served: u32 },
    /// Accounted for; whatever arrives is ignored until the close completes.
    Done,
}

/// Per-connection state of a peer stream.
#[derive(Debug, Default)]
pub(crate) struct PeerConn {
    scanner: Scanner,
    pub(crate) role: PeerRole,
}

impl PeerConn {
    /// Admitted (or dialed): no handshake deadline applies.
    pub(crate) fn admitted(&self) -> bool {
        !matches!(self.role, PeerRole::Hello)
    }
}

/// The agent's cluster-job state.
#[derive(Debug, Default)]
pub(crate) struct ClusterJobs {
    jobs: BTreeMap<u32, ClusterJob>,
    served: BTreeMap<u32, Served>,
    /// Query LTime → cluster job, for acks.
    queries: BTreeMap<u64, u32>,
    /// Starts refused on this node (not enabled, unknown command, busy, non-member).
    pub(crate) refused: u64,
}

impl ClusterJobs {
    pub(crate) fn is_served(&self, job: u32) -> bool {
        self.served.contains_key(&job)
    }
}

/// The start a query carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Start<'a> {
    pub(crate) job: u64,
    pub(crate) token: &'a [u8],
    pub(crate) origin: &'a str,
    pub(crate) addr: &'a str,
    pub(crate) nodes: Option<&'a str>,
    pub(crate) tags: Vec<(&'a str, &'a str)>,
    pub(crate) command: &'a str,
    pub(crate) timeout_ms: u64,
}

impl<'a> Start<'a> {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        wire::map(out, 8);
        wire::str(out, "Job");
        wire::uint(out, self.job);
        wire::str(out, "Token");
        wire::bin(out, self.token);
        wire::str(out, "Origin");
        wire::str(out, self.origin);
        wire::str(out, "Addr");
        wire::str(out, self.addr);
        wire::str(out, "Nodes");
        match self.nodes {
            Some(n) => wire::str(out, n),
            None => wire::nil(out),
        }
        wire::str(out, "Tags");
        wire::map(out, self.tags.len());
        for (k, v) in &self.tags {
            wire::str(out, k);
            wire::str(out, v);
        }
        wire::str(out, "Command");
        wire::str(out, self.command);
        wire::str(out, "Timeout");
        wire::uint(out, self.timeout_ms);
    }

    /// Decodes a start; `None` for anything malformed (hostile gossip is dropped).
    pub(crate) fn decode(buf: &'a [u8]) -> Option<Start<'a>> {
        let mut s = Start::default();
        let mut r = Reader::new(buf);
        let n = r.map_len().ok()?;
        for _ in 0..n {
            match r.str().ok()? {
                "Job" => s.job = r.uint().ok()?,
                "Token" => s.token = r.bytes().ok()?,
                "Origin" => s.origin = r.str().ok()?,
                "Addr" => s.addr = r.str().ok()?,
                "Nodes" if r.at_nil() => r.skip().ok()?,
                "Nodes" => s.nodes = Some(r.str().ok()?),
                "Tags" => {
                    let m = r.map_len().ok()?;
                    if m as usize > MAX_TAG_FILTERS {
                        return None;
                    }
                    for _ in 0..m {
                        let k = r.str().ok()?;
                        s.tags.push((k, r.str().ok()?));
                    }
                }
                "Command" => s.command = r.str().ok()?,
                "Timeout" => s.timeout_ms = r.uint().ok()?,
                _ => r.skip().ok()?,
            }
        }
        (r.done() && s.token.len() == 16).then_some(s)
    }
}

/// One frame of a peer stream, decoded.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) kind: &'a str,
    pub(crate) job: u64,
    pub(crate) node: &'a str,
    pub(crate) token: &'a [u8],
    pub(crate) nonce: &'a [u8],
    pub(crate) mac: &'a [u8],
    pub(crate) item: &'a [u8],
    pub(crate) code: i64,
    pub(crate) error: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
}

impl<'a> Frame<'a> {
    /// Decodes one scanned frame; `None` for anything malformed (the stream is closed).
    pub(crate) fn decode(buf: &'a [u8]) -> Option<Frame<'a>> {
        let mut f = Frame::default();
        let mut r = Reader::new(buf);
        let n = r.map_len().ok()?;
        for _ in 0..n {
            match r.str().ok()? {
                "Type" => f.kind = r.str().ok()?,
                "Job" => f.job = r.uint().ok()?,
                "Node" => f.node = r.str().ok()?,
                "Token" => f.token = r.bytes().ok()?,
                "Nonce" => f.nonce = r.bytes().ok()?,
                "Mac" => f.mac = r.bytes().ok()?,
                "Item" => f.item = r.bytes().ok()?,
                "Code" => f.code = i64::try_from(r.int().ok()?).ok()?,
                "Error" | "Message" if r.at_nil() => r.skip().ok()?,
                "Error" => f.error = Some(r.str().ok()?),
                "Message" => f.message = Some(r.str().ok()?),
                _ => r.skip().ok()?,
            }
        }
        r.done().then_some(f)
    }
}

fn frame_kind(out: &mut Vec<u8>, len: usize, kind: &str) {
    wire::map(out, len);
    wire::str(out, "Type");
    wire::str(out, kind);
}

fn opt_field(out: &mut Vec<u8>, key: &str, v: Option<&str>) {
    wire::str(out, key);
    match v {
        Some(v) => wire::str(out, v),
        None => wire::nil(out),
    }
}

/// The `Mac` of a hello under `key`: the AES-GCM tag of sealing `token‖job‖node` with
/// `nonce` (empty without the `encryption` feature, which cannot build a keyring).
#[cfg(feature = "encryption")]
fn mac(
    key: &crate::cluster::GossipKey,
    nonce: &[u8],
    token: &[u8],
    job: u64,
    node: &str,
) -> Vec<u8> {
    let Ok(nonce) = <[u8; 12]>::try_from(nonce) else {
        return Vec::new();
    };
    let mut plain = Vec::with_capacity(token.len() + 8 + node.len());
    plain.extend_from_slice(token);
    plain.extend_from_slice(&job.to_be_bytes());
    plain.extend_from_slice(node.as_bytes());
    let ring = crate::cluster::Keyring::new(*key, []);
    ring.seal(nonce, &plain)
        .and_then(|s| s.get(s.len().saturating_sub(16)..).map(Vec::from))
        .unwrap_or_default()
}

/// Equal without an early exit (tokens and tags are secrets).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A node's `status` item.
fn node_status(
    job: u32,
    node: &str,
    code: i64,
    error: Option<&str>,
    message: Option<&str>,
) -> Item {
    items::build(|o| {
        o.opt_str("error", error);
        o.u64("jobId", job.into());
        o.opt_str("message", message);
        o.str("node", node);
        o.i64("statusCode", code);
        o.str("type", "status");
    })
}

fn names(o: &mut Obj<'_>, key: &'static str, nodes: &[&str]) {
    o.arr(key, |a| nodes.iter().for_each(|n| a.str(n)));
}

impl Agent {
    /// Starts a created cluster job: resolves its targets, sends the start query, runs the
    /// local part. The job may end within this call (no target, nothing to wait for).
    pub(crate) fn start_cluster_job(
        &mut self,
        id: u32,
        target: &Target,
        timeout_ms: u64,
        now: Instant,
    ) {
        let me = String::from(self.cluster_name());
        let mut targets: Vec<String> = self
            .cluster
            .members(Pool::Lan)
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive && target.matches(&m.name, &m.tags))
            .map(|m| m.name)
            .collect();
        if !targets.contains(&me) && target.matches(&me, &self.cluster.tags()) {
            targets.push(me.clone());
        }
        let mut cj = ClusterJob {
            token: self.random16(),
            nodes: targets
                .iter()
                .map(|n| (n.clone(), NodeRun::default()))
                .collect(),
            query: None,
            timers: Vec::new(),
            deadline_passed: false,
            local: None,
        };
        let line = self
            .jobs
            .get(&id)
            .map(|j| j.line.clone())
            .unwrap_or_default();
        let remote = targets.iter().any(|n| *n != me);
        let mut query_error = None;
        if remote {
            let addr = self
                .cluster
                .local_addr(Pool::Lan)
                .map(|a| format!("{a}"))
                .unwrap_or_default();
            let start = Start {
                job: id.into(),
                token: &cj.token,
                origin: &me,
                addr: &addr,
                nodes: target.nodes.as_ref().map(|e| e.source.as_str()),
                tags: target
                    .tags
                    .iter()
                    .map(|(k, e)| (k.as_str(), e.source.as_str()))
                    .collect(),
                command: &line,
                timeout_ms,
            };
            let mut payload = Vec::new();
            start.encode(&mut payload);
            let params = QueryParams {
                request_ack: true,
                relay_factor: 2,
                ..QueryParams::default()
            };
            match self.cluster.query(EXEC_QUERY, &payload, &params, now) {
                Ok(q) => {
                    cj.query = Some(q.0);
                    self.cluster_jobs.queries.insert(q.0, id);
                    let ack = now + self.cluster.default_query_timeout();
                    cj.timers.push(
                        self.timers
                            .schedule(ack, Timer::ClusterJob(id, JobTimer::Ack)),
                    );
                }
                Err(e) => query_error = Some(format!("{e}")),
            }
        }
        if matches!(self.jobs.get(&id).map(|j| &j.sink), Some(Sink::Stream)) {
            let at = now + Duration::from_millis(timeout_ms);
            cj.timers.push(
                self.timers
                    .schedule(at, Timer::ClusterJob(id, JobTimer::Deadline)),
            );
        }
        let text = format!(
            "agent: cluster job {id}: {line:?} on {} node(s)",
            targets.len()
        );
        self.log(Level::Info, &text, now);
        self.cluster_jobs.jobs.insert(id, cj);
        self.drain_cluster(now);
        if let Some(e) = query_error {
            let remote: Vec<String> = targets.iter().filter(|n| **n != me).cloned().collect();
            for n in remote {
                self.node_done(
                    id,
                    &n,
                    -1,
                    Some(error::UNREACHABLE),
                    Some(&e),
                    Outcome::Failed,
                    now,
                );
            }
        }
        if targets.contains(&me) {
            self.start_local_part(id, &me, &line, now);
        }
        self.check_complete(id, now);
    }

    /// The node name this agent has in its LAN pool.
    fn cluster_name(&self) -> &str {
        &self.cfg.node_name
    }

    /// The origin's own part: a host job whose items go straight into the cluster job.
    fn start_local_part(&mut self, id: u32, me: &str, line: &str, now: Instant) {
        let words = crate::command::split::split_command(line)
            .map(|c| (c.name.map(alloc::borrow::Cow::into_owned), c.args))
            .unwrap_or((None, Vec::new()));
        match self.refusal(words.0.as_deref()) {
            Some(e) => self.node_done(id, me, -1, Some(e), None, Outcome::Failed, now),
            None => {
                let served = self.new_served(ServedSink::Local(id), words.0, words.1);
                if let Some(cj) = self.cluster_jobs.jobs.get_mut(&id) {
                    cj.local = Some(served);
                }
                self.run_served(served);
            }
        }
    }

    /// Why this node would not run `command` for a cluster job, if it would not (the
    /// opt-in is checked by the caller: the origin's own part does not need it).
    fn refusal(&self, command: Option<&str>) -> Option<&'static str> {
        match command.and_then(|c| self.registry.resolve(c)) {
            Some(Resolved::Host(_)) => {}
            _ => return Some(error::UNKNOWN_COMMAND),
        }
        (self.host_jobs >= self.cfg.limits.max_host_jobs).then_some(error::BUSY)
    }

    fn new_served(&mut self, sink: ServedSink, command: Option<String>, args: Vec<String>) -> u32 {
        let id = self.next_job;
        self.next_job = self.next_job.wrapping_add(1).max(1);
        self.host_jobs += 1;
        self.cluster_jobs.served.insert(
            id,
            Served {
                sink,
                command: command.unwrap_or_default(),
                args,
                started: false,
                blocked: false,
                timer: None,
            },
        );
        id
    }

    fn run_served(&mut self, id: u32) {
        let Some(s) = self.cluster_jobs.served.get_mut(&id) else {
            return;
        };
        if s.started {
            return;
        }
        s.started = true;
        let command = core::mem::take(&mut s.command);
        let args = core::mem::take(&mut s.args);
        self.emit(Output::Effect(Effect::StartJob {
            job: JobId(id),
            command,
            args,
        }));
    }

    /// Ends a served job: removes it, frees its host slot, cancels the host's run if it
    /// started and `cancel`.
    fn drop_served(&mut self, id: u32, cancel: bool) -> Option<Served> {
        let s = self.cluster_jobs.served.remove(&id)?;
        self.host_jobs = self.host_jobs.saturating_sub(1);
        self.timers.cancel(s.timer);
        if cancel && s.started {
            self.emit(Output::Effect(Effect::CancelJob(JobId(id))));
        }
        Some(s)
    }

    /// Whether the cluster job's sink cannot take another item now (the condition that
    /// answers a local host job `Full`).
    fn cluster_job_full(&self, id: u32) -> bool {
        let limits = &self.cfg.limits;
        match self.jobs.get(&id) {
            Some(Job {
                sink: Sink::Stream,
                session,
                ..
            }) => self
                .sessions
                .get(session)
                .is_some_and(|s| s.any_consumer_full(limits.consumer_queue)),
            _ => false,
        }
    }

    /// An end item (node status, summary) of a cluster job: never evicted, never capped,
    /// like a host job's status.
    fn cluster_end_item(&mut self, id: u32, item: Item) {
        let history = self.cfg.limits.history;
        match self.jobs.get_mut(&id) {
            Some(Job {
                sink: Sink::Exec(e),
                ..
            }) => e.results.push(item),
            Some(Job {
                sink: Sink::Stream,
                session,
                ended: false,
                ..
            }) => {
                let key = *session;
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.publish_end(item, history, &mut self.wake);
                }
            }
            _ => {}
        }
    }

    /// A result item of `node`: tagged and delivered.
    fn node_item(
        &mut self,
        id: u32,
        node: &str,
        fields: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        fields.insert(String::from("node"), serde_json::Value::from(node));
        let item = crate::session::jobs::host_item(id, fields);
        self.job_item(id, item);
    }

    /// Records a node's outcome once, with its status item, and closes its stream.
    #[allow(clippy::too_many_arguments)]
    fn node_done(
        &mut self,
        id: u32,
        node: &str,
        code: i64,
        error: Option<&str>,
        message: Option<&str>,
        outcome: Outcome,
        now: Instant,
    ) {
        let Some(run) = self
            .cluster_jobs
            .jobs
            .get_mut(&id)
            .and_then(|cj| cj.nodes.get_mut(node))
        else {
            return;
        };
        if run.outcome.is_some() {
            return;
        }
        run.outcome = Some(outcome);
        let conn = run.conn.take();
        self.cluster_end_item(id, node_status(id, node, code, error, message));
        if let Some(conn) = conn {
            self.finish_peer(conn);
        }
        let _ = now;
    }

    /// Marks a peer stream accounted for and closes it (after its pending output).
    fn finish_peer(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.stream.role = PeerRole::Done;
        }
        self.close_conn(conn);
    }

    /// Ends the job once every node has an outcome.
    fn check_complete(&mut self, id: u32, now: Instant) {
        let done = self
            .cluster_jobs
            .jobs
            .get(&id)
            .is_some_and(|cj| cj.nodes.values().all(|n| n.outcome.is_some()));
        if done {
            self.end_job(id, 0, None, false, now);
        }
    }

    /// Called by `end_job` for a cluster job: accounts for every node still open (timeout
    /// or unreachable after a deadline, interrupted otherwise), stops every part, writes
    /// the summary. Returns the job's status code and message.
    pub(crate) fn close_cluster_job(&mut self, id: u32, now: Instant) -> (i32, Option<String>) {
        let exec_expired = matches!(
            self.jobs.get(&id),
            Some(Job { sink: Sink::Exec(e), .. }) if e.timed_out
        );
        let Some(cj) = self.cluster_jobs.jobs.get(&id) else {
            return (1, None);
        };
        let expired = cj.deadline_passed || exec_expired;
        let open: Vec<(String, bool)> = cj
            .nodes
            .iter()
            .filter(|(_, n)| n.outcome.is_none())
            .map(|(name, n)| (name.clone(), n.acked || n.conn.is_some()))
            .collect();
        for (name, heard) in open {
            let (outcome, e) = match (expired, heard) {
                (true, true) => (Outcome::TimedOut, error::TIMEOUT),
                (true, false) => (Outcome::Failed, error::UNREACHABLE),
                (false, _) => (Outcome::Failed, error::INTERRUPTED),
            };
            self.node_done(id, &name, -1, Some(e), None, outcome, now);
        }
        let Some(cj) = self.cluster_jobs.jobs.remove(&id) else {
            return (1, None);
        };
        for t in cj.timers {
            self.timers.cancel(Some(t));
        }
        if let Some(q) = cj.query {
            self.cluster_jobs.queries.remove(&q);
        }
        if let Some(local) = cj.local {
            self.drop_served(local, true);
        }
        let pick = |o: Outcome| -> Vec<&str> {
            cj.nodes
                .iter()
                .filter(|(_, n)| n.outcome == Some(o))
                .map(|(k, _)| k.as_str())
                .collect()
        };
        let (answered, failed, timed_out) = (
            pick(Outcome::Answered),
            pick(Outcome::Failed),
            pick(Outcome::TimedOut),
        );
        let targeted: Vec<&str> = cj.nodes.keys().map(String::as_str).collect();
        let summary = items::build(|o| {
            names(o, "answered", &answered);
            names(o, "failed", &failed);
            o.u64("jobId", id.into());
            names(o, "targeted", &targeted);
            names(o, "timedOut", &timed_out);
            o.str("type", "summary");
        });
        self.cluster_end_item(id, summary);
        let bad = failed.len() + timed_out.len();
        let text = format!(
            "agent: cluster job {id} ended: {} answered, {} failed, {} timed out",
            answered.len(),
            failed.len(),
            timed_out.len()
        );
        self.log(Level::Info, &text, now);
        if targeted.is_empty() {
            (1, Some(String::from("no member matches the target")))
        } else if bad > 0 {
            (
                1,
                Some(format!(
                    "{bad} of {} nodes failed or timed out",
                    targeted.len()
                )),
            )
        } else {
            (0, None)
        }
    }

    /// A cluster job's timer fired.
    pub(crate) fn cluster_job_timer(&mut self, id: u32, which: JobTimer, now: Instant) {
        match which {
            JobTimer::Ack => {
                let silent: Vec<String> = self
                    .cluster_jobs
                    .jobs
                    .get(&id)
                    .map(|cj| {
                        cj.nodes
                            .iter()
                            .filter(|(name, n)| {
                                n.outcome.is_none()
                                    && !n.acked
                                    && n.conn.is_none()
                                    && name.as_str() != self.cluster_name()
                            })
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for n in silent {
                    let m = "no acknowledgement before the query's deadline";
                    self.node_done(
                        id,
                        &n,
                        -1,
                        Some(error::UNREACHABLE),
                        Some(m),
                        Outcome::Failed,
                        now,
                    );
                }
                self.check_complete(id, now);
            }
            JobTimer::Deadline => {
                if let Some(cj) = self.cluster_jobs.jobs.get_mut(&id) {
                    cj.deadline_passed = true;
                    self.end_job(id, 0, None, false, now);
                }
            }
            JobTimer::Served => {
                let Some(s) = self.cluster_jobs.served.get(&id) else {
                    return;
                };
                match s.sink {
                    ServedSink::Peer(conn) => {
                        self.drop_served(id, true);
                        self.write_end(conn, -1, Some(error::TIMEOUT), None);
                        self.finish_peer(conn);
                    }
                    ServedSink::Local(_) => {}
                }
            }
        }
    }

    /// A query event that belongs to cluster jobs; true if it was taken.
    pub(crate) fn cluster_job_event(
        &mut self,
        event: &crate::cluster::ClusterEvent,
        now: Instant,
    ) -> bool {
        use crate::cluster::ClusterEvent;
        match event {
            ClusterEvent::Query(q) if q.name == EXEC_QUERY => {
                self.exec_query(&q.payload, now);
                true
            }
            ClusterEvent::QueryAck { query, from } => {
                let Some(&id) = self.cluster_jobs.queries.get(&query.0) else {
                    return false;
                };
                if let Some(n) = self
                    .cluster_jobs
                    .jobs
                    .get_mut(&id)
                    .and_then(|cj| cj.nodes.get_mut(from))
                {
                    n.acked = true;
                }
                true
            }
            ClusterEvent::QueryResponse { query, .. } => {
                self.cluster_jobs.queries.contains_key(&query.0)
            }
            ClusterEvent::QueryDone(query) => self.cluster_jobs.queries.remove(&query.0).is_some(),
            _ => false,
        }
    }

    /// A `_tandem_exec` query arrived: if this node is a target, dial the origin and say
    /// hello (and, when it will not run the command, why).
    fn exec_query(&mut self, payload: &[u8], now: Instant) {
        let Some(start) = Start::decode(payload) else {
            self.cluster_jobs.refused += 1;
            return;
        };
        let me = String::from(self.cluster_name());
        if start.origin == me {
            // Our own query: the local part runs without it.
            return;
        }
        let target = Target::parse(
            start.nodes,
            Some(
                &start
                    .tags
                    .iter()
                    .map(|(k, v)| (String::from(*k), String::from(*v)))
                    .collect(),
            ),
        );
        let Ok(Some(target)) = target else {
            self.cluster_jobs.refused += 1;
            return;
        };
        if !target.matches(&me, &self.cluster.tags()) {
            return;
        }
        // Results go only to a live member, at the address it has in our member list.
        let addr: Option<SocketAddr> = start.addr.parse().ok();
        let member = addr.is_some_and(|a| {
            self.cluster.members(Pool::Lan).iter().any(|m| {
                m.name == start.origin
                    && m.status == MemberStatus::Alive
                    && SocketAddr::new(m.addr, m.port) == a
            })
        });
        let (Some(addr), true) = (addr, member) else {
            self.cluster_jobs.refused += 1;
            let text = format!(
                "agent: refused a cluster job from {:?} at {}: not a live member",
                start.origin, start.addr
            );
            self.log(Level::Warn, &text, now);
            return;
        };
        let command = crate::command::split::split_command(start.command)
            .map(|c| (c.name.map(alloc::borrow::Cow::into_owned), c.args))
            .unwrap_or((None, Vec::new()));
        let refusal = if self.cfg.enable_remote_exec {
            self.refusal(command.0.as_deref())
        } else {
            Some(error::REFUSED)
        };
        let conn = self.conns.insert(Listener::Peer, Some(addr), now);
        let mut hello = Vec::new();
        frame_kind(
            &mut hello,
            4 + if self.cluster.encrypted() { 2 } else { 0 },
            "hello",
        );
        wire::str(&mut hello, "Job");
        wire::uint(&mut hello, start.job);
        wire::str(&mut hello, "Node");
        wire::str(&mut hello, &me);
        wire::str(&mut hello, "Token");
        wire::bin(&mut hello, start.token);
        #[cfg(feature = "encryption")]
        if self.cluster.encrypted() {
            let mut nonce = [0u8; 12];
            self.rng.fill_bytes(&mut nonce);
            let key = self.cluster.config().keyring.primary().copied();
            let tag = key
                .map(|k| mac(&k, &nonce, start.token, start.job, &me))
                .unwrap_or_default();
            wire::str(&mut hello, "Nonce");
            wire::bin(&mut hello, &nonce);
            wire::str(&mut hello, "Mac");
            wire::bin(&mut hello, &tag);
        }
        if let Some(c) = self.conns.get_mut(conn) {
            c.tx.extend_from_slice(&hello);
        }
        self.emit(Output::Effect(Effect::Connect { conn, addr }));
        self.emit(Output::Transmit(conn));
        match refusal {
            Some(e) => {
                self.cluster_jobs.refused += 1;
                let text = format!(
                    "agent: refused cluster job {} from {}: {e}",
                    start.job, start.origin
                );
                self.log(Level::Warn, &text, now);
                let message = (e == error::REFUSED).then_some(
                    "remote execution is not enabled on this node (-enable-remote-exec)",
                );
                self.write_end(conn, -1, Some(e), message);
                self.finish_peer(conn);
            }
            None => {
                let served = self.new_served(ServedSink::Peer(conn), command.0, command.1);
                let at = now
                    + Duration::from_millis(start.timeout_ms)
                    + self.cluster.default_query_timeout();
                let t = self
                    .timers
                    .schedule(at, Timer::ClusterJob(served, JobTimer::Served));
                if let Some(s) = self.cluster_jobs.served.get_mut(&served) {
                    s.timer = Some(t);
                }
                if let Some(c) = self.conns.get_mut(conn) {
                    c.stream.role = PeerRole::Target { served };
                }
            }
        }
    }

    fn write_frame(&mut self, conn: ConnId, f: impl FnOnce(&mut Vec<u8>)) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.closing {
            return;
        }
        let was_empty = c.tx_len() == 0;
        f(&mut c.tx);
        if was_empty {
            self.emit(Output::Transmit(conn));
            self.rearm.push(conn);
        }
    }

    fn write_end(&mut self, conn: ConnId, code: i64, error: Option<&str>, message: Option<&str>) {
        self.write_frame(conn, |tx| {
            frame_kind(tx, 4, "end");
            wire::str(tx, "Code");
            let _ = rmp::encode::write_sint(tx, code);
            opt_field(tx, "Error", error);
            opt_field(tx, "Message", message);
        });
    }

    /// `job_output` for a served job.
    pub(crate) fn served_output(
        &mut self,
        id: u32,
        value: &serde_json::Value,
        _now: Instant,
    ) -> Result<(), JobError> {
        let fields = crate::session::jobs::item_fields(value).ok_or(JobError::Invalid)?;
        let max_tx = self.cfg.limits.max_tx;
        let Some(s) = self.cluster_jobs.served.get(&id) else {
            return Err(JobError::Gone);
        };
        let sink = s.sink;
        let full = match sink {
            ServedSink::Peer(conn) => self.conns.get(conn).is_none_or(|c| c.tx_full(max_tx)),
            ServedSink::Local(job) => self.cluster_job_full(job),
        };
        if full {
            if let Some(s) = self.cluster_jobs.served.get_mut(&id) {
                s.blocked = true;
            }
            return Err(JobError::Full);
        }
        match sink {
            ServedSink::Peer(conn) => {
                let json = serde_json::to_vec(value).unwrap_or_default();
                self.write_frame(conn, |tx| {
                    frame_kind(tx, 2, "item");
                    wire::str(tx, "Item");
                    wire::bin(tx, &json);
                });
            }
            ServedSink::Local(job) => {
                let me = String::from(self.cluster_name());
                let mut fields = fields.clone();
                self.node_item(job, &me, &mut fields);
            }
        }
        Ok(())
    }

    /// `job_finished` for a served job.
    pub(crate) fn served_finished(
        &mut self,
        id: u32,
        code: i32,
        message: Option<&str>,
        now: Instant,
    ) {
        let Some(s) = self.drop_served(id, false) else {
            return;
        };
        match s.sink {
            ServedSink::Peer(conn) => {
                let e = (code != 0).then_some(error::FAILED);
                self.write_end(conn, code.into(), e, message);
                self.finish_peer(conn);
            }
            ServedSink::Local(job) => {
                if let Some(cj) = self.cluster_jobs.jobs.get_mut(&job) {
                    cj.local = None;
                }
                let me = String::from(self.cluster_name());
                let (outcome, e) = if code == 0 {
                    (Outcome::Answered, None)
                } else {
                    (Outcome::Failed, Some(error::FAILED))
                };
                self.node_done(job, &me, code.into(), e, message, outcome, now);
                self.check_complete(job, now);
            }
        }
    }

    /// Served jobs of a session's cluster jobs and the streams feeding them may go on: the
    /// session's consumers have room again.
    pub(crate) fn cluster_jobs_writable(&mut self, key: crate::session::SessionKey) {
        let ids: Vec<u32> = self
            .cluster_jobs
            .jobs
            .keys()
            .copied()
            .filter(|id| self.jobs.get(id).is_some_and(|j| j.session == key))
            .collect();
        for id in ids {
            let Some(cj) = self.cluster_jobs.jobs.get(&id) else {
                continue;
            };
            for n in cj.nodes.values() {
                if let Some(conn) = n.conn {
                    self.wake.push(conn);
                }
            }
            if let Some(local) = cj.local
                && let Some(s) = self.cluster_jobs.served.get_mut(&local)
                && s.blocked
            {
                s.blocked = false;
                self.out
                    .push_back(Output::Effect(Effect::JobWritable(JobId(local))));
            }
        }
    }

    /// The receive window of a peer stream: none while its cluster job's session is full
    /// (the back-pressure that reaches the target's host job as `Full`), else up to a frame.
    pub(crate) fn peer_window(&self, c: &crate::conn::Conn) -> usize {
        if let PeerRole::Origin { job, .. } = &c.stream.role
            && self.cluster_job_full(*job)
        {
            return c.rx_len;
        }
        let max = self.cfg.limits.rpc_max_frame;
        c.rx_grown().min(max.max(c.rx_len).max(1))
    }

    /// The one place a peer stream's state advances.
    pub(crate) fn process_peer(&mut self, conn: ConnId, now: Instant) {
        let limits = self.msg_limits();
        loop {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            if c.closing {
                return;
            }
            if let PeerRole::Origin { job, .. } = &c.stream.role {
                let job = *job;
                if self.cluster_job_full(job) {
                    break;
                }
            }
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            let rx_len = c.rx_len;
            let n = match c.stream.scanner.scan(&c.rx[..rx_len], &limits) {
                Scan::Incomplete => break,
                Scan::Invalid(_) => {
                    self.peer_broken(conn, error::PROTOCOL, now);
                    return;
                }
                Scan::Complete(n) => n,
            };
            c.stream.scanner = Scanner::default();
            let rx = core::mem::take(&mut c.rx);
            let ok = match Frame::decode(rx.get(..n).unwrap_or(&[])) {
                Some(f) => self.peer_frame(conn, &f, now),
                None => false,
            };
            if let Some(c) = self.conns.get_mut(conn) {
                c.rx = rx;
                c.rx_consume(n);
            }
            if !ok {
                self.peer_broken(conn, error::PROTOCOL, now);
                return;
            }
        }
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.closing {
            return;
        }
        if c.read_closed {
            self.peer_broken(conn, error::UNREACHABLE, now);
            return;
        }
        let window = self.peer_window(c);
        let max_tx = self.cfg.limits.max_tx;
        let served = match c.stream.role {
            PeerRole::Target { served } if !c.tx_full(max_tx) => Some(served),
            _ => None,
        };
        if let Some(c) = self.conns.get_mut(conn)
            && c.read_paused
            && window > c.rx_len
        {
            c.read_paused = false;
            self.out.push_back(Output::ResumeRead(conn));
        }
        if let Some(id) = served
            && let Some(s) = self.cluster_jobs.served.get_mut(&id)
            && s.blocked
        {
            s.blocked = false;
            self.out
                .push_back(Output::Effect(Effect::JobWritable(JobId(id))));
        }
    }

    /// One frame; false closes the stream as a protocol error.
    fn peer_frame(&mut self, conn: ConnId, f: &Frame<'_>, now: Instant) -> bool {
        let role = self
            .conns
            .get_mut(conn)
            .map(|c| core::mem::take(&mut c.stream.role))
            .unwrap_or(PeerRole::Done);
        let (role, ok) = match (role, f.kind) {
            (PeerRole::Hello, "hello") => (self.hello(conn, f), true),
            (PeerRole::Origin { job, node }, "item") => {
                let item = serde_json::from_slice::<serde_json::Value>(f.item);
                let fields = item
                    .as_ref()
                    .ok()
                    .and_then(crate::session::jobs::item_fields);
                match fields {
                    Some(fields) => {
                        self.node_item(job, &node, &mut fields.clone());
                        (PeerRole::Origin { job, node }, true)
                    }
                    None => (PeerRole::Origin { job, node }, false),
                }
            }
            (PeerRole::Origin { job, node }, "end") => {
                let (outcome, e) = match (f.error, f.code) {
                    (None, 0) => (Outcome::Answered, None),
                    (None, _) => (Outcome::Failed, Some(error::FAILED)),
                    (Some(e), _) => (Outcome::Failed, Some(canonical_error(e))),
                };
                self.node_done(job, &node, f.code, e, f.message, outcome, now);
                self.check_complete(job, now);
                (PeerRole::Done, true)
            }
            (PeerRole::Target { served }, "start") => {
                self.run_served(served);
                (PeerRole::Target { served }, true)
            }
            (PeerRole::Target { served }, "refused") => {
                self.drop_served(served, true);
                let text = format!(
                    "agent: the origin refused a cluster job stream: {}",
                    f.error.unwrap_or("")
                );
                self.log(Level::Warn, &text, now);
                self.finish_peer(conn);
                (PeerRole::Done, true)
            }
            (PeerRole::Done, _) => (PeerRole::Done, true),
            (role, _) => (role, false),
        };
        if let Some(c) = self.conns.get_mut(conn)
            && matches!(c.stream.role, PeerRole::Hello)
        {
            c.stream.role = role;
        }
        ok
    }

    /// Admits a target's stream, or refuses it (and closes). Returns the stream's role.
    fn hello(&mut self, conn: ConnId, f: &Frame<'_>) -> PeerRole {
        let job = u32::try_from(f.job).ok();
        let check = match job.and_then(|j| self.cluster_jobs.jobs.get(&j)) {
            None => Err("no such cluster job"),
            Some(cj) => match cj.nodes.get(f.node) {
                None => Err("not a target of this job"),
                Some(n) if n.outcome.is_some() || n.conn.is_some() => {
                    Err("this node is already accounted for")
                }
                Some(_) if !same(f.token, &cj.token) => Err("wrong token"),
                Some(_) if !self.hello_mac_ok(f) => Err("wrong cluster key"),
                Some(_) => Ok(()),
            },
        };
        let (Ok(()), Some(job)) = (check, job) else {
            let e = check.err().unwrap_or("no such cluster job");
            self.write_frame(conn, |tx| {
                frame_kind(tx, 2, "refused");
                wire::str(tx, "Error");
                wire::str(tx, e);
            });
            self.finish_peer(conn);
            return PeerRole::Done;
        };
        if let Some(n) = self
            .cluster_jobs
            .jobs
            .get_mut(&job)
            .and_then(|cj| cj.nodes.get_mut(f.node))
        {
            n.conn = Some(conn);
            n.acked = true;
        }
        self.write_frame(conn, |tx| frame_kind(tx, 1, "start"));
        PeerRole::Origin {
            job,
            node: String::from(f.node),
        }
    }

    #[cfg(feature = "encryption")]
    fn hello_mac_ok(&self, f: &Frame<'_>) -> bool {
        let ring = &self.cluster.config().keyring;
        if !ring.is_enabled() {
            return true;
        }
        ring.keys().iter().any(|k| {
            let want = mac(k, f.nonce, f.token, f.job, f.node);
            !want.is_empty() && same(&want, f.mac)
        })
    }

    #[cfg(not(feature = "encryption"))]
    fn hello_mac_ok(&self, _f: &Frame<'_>) -> bool {
        true
    }

    /// A peer stream broke (EOF, reset, bad frame): account for what it carried, close it.
    fn peer_broken(&mut self, conn: ConnId, why: &str, now: Instant) {
        let role = self
            .conns
            .get_mut(conn)
            .map(|c| core::mem::take(&mut c.stream.role))
            .unwrap_or(PeerRole::Done);
        self.peer_lost(role, why, now);
        self.finish_peer(conn);
    }

    /// A peer stream's role ended without its end: the node is unreachable (origin), or the
    /// served job is cancelled (target).
    pub(crate) fn peer_lost(&mut self, role: PeerRole, why: &str, now: Instant) {
        match role {
            PeerRole::Origin { job, node } => {
                let m = if why == error::PROTOCOL {
                    "the stream broke the protocol"
                } else {
                    "connection lost"
                };
                let e = if why == error::PROTOCOL {
                    error::PROTOCOL
                } else {
                    error::UNREACHABLE
                };
                if let Some(n) = self
                    .cluster_jobs
                    .jobs
                    .get_mut(&job)
                    .and_then(|cj| cj.nodes.get_mut(&node))
                {
                    n.conn = None;
                }
                self.node_done(job, &node, -1, Some(e), Some(m), Outcome::Failed, now);
                self.check_complete(job, now);
            }
            PeerRole::Target { served } => {
                self.drop_served(served, true);
            }
            PeerRole::Hello | PeerRole::Done => {}
        }
    }
}

/// An `Error` from a target, kept when it is one of ours (the summary's vocabulary), else
/// reported as `failed` (a peer does not choose our words).
fn canonical_error(e: &str) -> &'static str {
    [
        error::REFUSED,
        error::UNKNOWN_COMMAND,
        error::TIMEOUT,
        error::BUSY,
        error::INTERRUPTED,
    ]
    .into_iter()
    .find(|k| *k == e)
    .unwrap_or(error::FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_anchored_and_balanced() {
        let e = Expr::new("web-.*").unwrap();
        assert!(e.is_match("web-1"));
        assert!(!e.is_match("my-web-1"));
        assert!(Expr::new("a)|(b").is_err(), "must not escape the anchors");
        assert!(Expr::new("(").is_err());
        let big = "a".repeat(MAX_EXPR + 1);
        assert!(Expr::new(&big).is_err());
        let mut tags = BTreeMap::new();
        tags.insert(String::from("role"), String::from("edge"));
        let t = Target::parse(Some(".*"), Some(&tags)).unwrap().unwrap();
        let mut mine = BTreeMap::new();
        assert!(!t.matches("a", &mine), "a missing tag is empty");
        mine.insert(String::from("role"), String::from("edge-2"));
        assert!(!t.matches("a", &mine), "anchored");
        mine.insert(String::from("role"), String::from("edge"));
        assert!(t.matches("a", &mine));
        assert!(Target::parse(None, None).unwrap().is_none());
    }

    #[test]
    fn a_start_from_a_non_member_is_refused_and_dials_nobody() {
        let cfg = crate::Config {
            enable_remote_exec: true,
            ..crate::Config::default()
        };
        let mut agent = Agent::new(cfg, 7, Instant::ZERO);
        agent
            .register_command(crate::CommandInfo::new("work", "a host command", "work"))
            .unwrap();
        while agent.poll_output().is_some() {}
        let mut payload = Vec::new();
        Start {
            job: 1,
            token: &[1; 16],
            origin: "mallory",
            addr: "192.0.2.66:7946",
            nodes: Some(".*"),
            tags: Vec::new(),
            command: "work",
            timeout_ms: 5000,
        }
        .encode(&mut payload);
        let now = Instant::from_millis(10);
        agent.exec_query(&payload, now);
        assert_eq!(agent.cluster_jobs.refused, 1);
        assert_eq!(agent.connection_count(crate::Listener::Peer), 0);
        let mut logged = false;
        while let Some(out) = agent.poll_output() {
            match out {
                Output::Effect(crate::Effect::Connect { addr, .. }) => {
                    panic!("dialled {addr} for a non-member")
                }
                Output::Effect(crate::Effect::StartJob { .. }) => panic!("ran the command"),
                _ => {}
            }
        }
        for r in agent.log_records() {
            logged |= r.line.contains("not a live member");
        }
        assert!(logged, "the refusal is logged");
    }

    #[test]
    fn starts_and_frames_round_trip_and_truncations_are_refused() {
        let start = Start {
            job: 7,
            token: &[9; 16],
            origin: "a",
            addr: "10.0.0.1:8301",
            nodes: Some("b|c"),
            tags: Vec::from([("role", "edge")]),
            command: "sysinfo -x",
            timeout_ms: 5000,
        };
        let mut buf = Vec::new();
        start.encode(&mut buf);
        assert_eq!(Start::decode(&buf), Some(start));
        for cut in 0..buf.len() {
            assert!(Start::decode(&buf[..cut]).is_none(), "cut at {cut}");
        }
        let mut end = Vec::new();
        frame_kind(&mut end, 4, "end");
        wire::str(&mut end, "Code");
        let _ = rmp::encode::write_sint(&mut end, -3);
        opt_field(&mut end, "Error", Some("timeout"));
        opt_field(&mut end, "Message", None);
        let f = Frame::decode(&end).unwrap();
        assert_eq!(
            (f.kind, f.code, f.error, f.message),
            ("end", -3, Some("timeout"), None)
        );
        assert!(Frame::decode(&end[..end.len() - 1]).is_none());
    }

    #[test]
    fn foreign_error_words_are_not_repeated() {
        assert_eq!(canonical_error("timeout"), "timeout");
        assert_eq!(canonical_error("<script>"), "failed");
    }
}
