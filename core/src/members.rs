//! Membership as both protocols see it: the agent's glue to its [`Cluster`] (foca LAN and
//! WAN pools). The RPC commands `join`, `members*`, `force-leave`, `leave`, `tags`, `event`
//! and `stream`, and the HTTP-API commands `members`, `join`, `force-leave`, `leave` and
//! `events`, all go through here.
//!
//! The cluster is driven inside the agent's call contract: every datagram, tick or
//! command is followed by [`Agent::drain_cluster`], which turns the cluster's outputs into
//! the agent's (datagrams to send, member and user events for `stream`s, finished joins for
//! the requests waiting on them, the shutdown after a leave).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use crate::cluster::{
    Cluster, ClusterConfig, ClusterEvent, JoinOutcome, MemberEvent, MemberView, Pool,
};
use crate::command::Stat;
use crate::json::Obj;
use crate::log::Level;
use crate::rpc::msgpack::{DecodeError, Reader};
use crate::rpc::wire::{self, msg};
use crate::session::items;
use crate::time::Instant;
use crate::{Agent, ConnId, Effect, Output};

/// Who waits for a join's outcome.
#[derive(Debug)]
pub(crate) enum JoinWaiter {
    /// An RPC `join` (its connection is parked until the reply).
    Rpc {
        conn: ConnId,
        seq: u64,
        /// Addresses that failed before the cluster saw them (parse or resolve errors).
        failures: Vec<String>,
    },
    /// An HTTP-API `join` job.
    Job { job: u32, failures: Vec<String> },
    /// The embedding application (`-join` at start): the outcome is logged, then `then`.
    Log {
        failures: Vec<String>,
        then: AfterJoin,
    },
}

/// What follows a join the agent started itself.
#[derive(Debug)]
pub(crate) enum AfterJoin {
    /// Nothing (`-join`).
    Nothing,
    /// An attempt of `-retry-join`, which a failure schedules again.
    Retry,
    /// A re-join through a node of the snapshot (`node` as Serf logs it); a failure tries
    /// the next of `rest`.
    Rejoin {
        node: String,
        rest: Vec<(String, SocketAddr)>,
    },
}

/// A join waiting for host names to be resolved by the runtime.
#[derive(Debug)]
pub(crate) struct PendingResolve {
    pub(crate) pool: Pool,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) replay: bool,
    pub(crate) waiter: JoinWaiter,
}

/// Membership state the agent keeps beside its cluster.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    pub(crate) joins: BTreeMap<u32, JoinWaiter>,
    pub(crate) resolves: BTreeMap<u32, PendingResolve>,
    pub(crate) next_resolve: u32,
    /// `Effect::Shutdown` was emitted.
    pub(crate) shutdown: bool,
    /// RPC `leave` requests (connection, Seq) answered once the leave has spread.
    pub(crate) leave_waiters: Vec<(ConnId, u64)>,
    /// `leave` jobs of the HTTP API, ended the same way.
    pub(crate) leave_jobs: Vec<u32>,
    /// Undecodable gossip is logged at most once per [`GOSSIP_LOG_EVERY`]: when the next
    /// line may be written, and how many datagrams went unlogged since the last one.
    pub(crate) gossip_log_at: Option<Instant>,
    pub(crate) gossip_unlogged: u64,
    /// Queries started over the RPC: the connection and Seq their records go to, by the
    /// query's LTime.
    pub(crate) queries: BTreeMap<u64, (ConnId, u64)>,
    /// `-retry-join` until one attempt succeeds (or gives up).
    pub(crate) retry: Option<RetryJoin>,
    /// `-retry-join` gave up: the process should exit with an error.
    pub(crate) gave_up: bool,
    /// RPC key commands waiting for the members' answers, by the query's LTime.
    pub(crate) key_ops: BTreeMap<u64, crate::keys::KeyWaiter>,
    /// The cluster's keyring changes already written to the keyring file.
    pub(crate) keyring_persisted: u64,
}

/// `-retry-join`: what to join, how often and how many times (Serf's agent `retryJoin`).
#[derive(Debug)]
pub(crate) struct RetryJoin {
    pub(crate) addrs: Vec<String>,
    pub(crate) wan: bool,
    pub(crate) interval: core::time::Duration,
    /// Failed attempts allowed before giving up (0: forever).
    pub(crate) max: u32,
    /// Failed attempts so far.
    pub(crate) failed: u32,
}

/// How often undecodable gossip (a stranger, a wrong key, plaintext in an encrypted
/// cluster) is logged at most: a flood must not flood the log too.
pub(crate) const GOSSIP_LOG_EVERY: core::time::Duration = core::time::Duration::from_secs(10);

/// Builds the cluster's configuration from the agent's.
pub(crate) fn cluster_config(cfg: &crate::Config) -> ClusterConfig {
    let mut c = cfg.cluster.clone().unwrap_or_default();
    c.node_name = cfg.node_name.clone();
    c.datacenter = cfg.datacenter.clone();
    c.server = cfg.server;
    c.lan_addr = cfg.lan_addr;
    c.wan_addr = cfg.wan_addr;
    c.tags = cfg.tags.clone();
    c
}

fn pool_of(wan: bool) -> Pool {
    if wan { Pool::Wan } else { Pool::Lan }
}

/// Parses `ip`, `ip:port` or `[v6]:port`; a missing port is the pool's default.
fn parse_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, default_port))
    })
}

fn wire_member(m: &MemberView) -> (String, IpAddr, u16, Vec<(String, String)>, &'static str) {
    (
        m.name.clone(),
        m.addr,
        m.port,
        m.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        m.status.as_str(),
    )
}

/// Writes members as `{"Members":[…]}` in Go's encoding.
fn write_members(out: &mut Vec<u8>, ms: &[&MemberView]) {
    let owned: Vec<_> = ms.iter().map(|m| wire_member(m)).collect();
    let views: Vec<wire::Member<'_>> = owned
        .iter()
        .zip(ms)
        .map(|((name, addr, port, tags, status), m)| wire::Member {
            name,
            addr: *addr,
            port: *port,
            tags,
            status,
            protocol: [m.protocol_min, m.protocol_max, m.protocol_cur],
            delegate: [m.delegate_min, m.delegate_max, m.delegate_cur],
        })
        .collect();
    wire::members(out, &views);
}

/// A member as JSON, with Consul's field names.
pub(crate) fn write_member_json(m: &MemberView, o: &mut Obj<'_>) {
    let mut addr = String::new();
    let _ = core::fmt::Write::write_fmt(&mut addr, format_args!("{}", m.addr));
    o.str("Addr", &addr);
    o.u64("DelegateCur", m.delegate_cur.into());
    o.u64("DelegateMax", m.delegate_max.into());
    o.u64("DelegateMin", m.delegate_min.into());
    o.str("Name", &m.name);
    o.u64("Port", m.port.into());
    o.u64("ProtocolCur", m.protocol_cur.into());
    o.u64("ProtocolMax", m.protocol_max.into());
    o.u64("ProtocolMin", m.protocol_min.into());
    o.str("Status", m.status.as_str());
    o.obj("Tags", |t| {
        for (k, v) in &m.tags {
            t.dyn_str(k, v);
        }
    });
}

type R<T> = Result<T, DecodeError>;

impl Agent {
    pub(crate) fn new_cluster(cfg: &crate::Config, seed: u64, now: Instant) -> Cluster {
        let mut cluster = Cluster::new(cluster_config(cfg), seed, now);
        // Two starts with one seed (an embedder's constant) still seal with new nonces.
        cluster.mix_nonce_entropy(cfg.host.unix_ms);
        cluster
    }

    /// The members of a pool (WAN: empty unless this is a server).
    pub(crate) fn member_views(&self, wan: bool) -> Vec<MemberView> {
        let pool = pool_of(wan);
        if self.cluster.has_pool(pool) {
            self.cluster.members(pool)
        } else {
            Vec::new()
        }
    }

    /// The `serf_lan` / `serf_wan` section of `stats`.
    pub(crate) fn pool_stats(&self, p: Pool) -> [(&'static str, Stat<'static>); 5] {
        let c = self.cluster.status_counts(p);
        let n = |v: usize| Stat::Num(v as u64);
        // One keyring seals both pools.
        let encrypted = if self.cluster.encrypted() {
            "true"
        } else {
            "false"
        };
        [
            ("encrypted", Stat::Str(encrypted)),
            ("event_time", Stat::Num(self.cluster.event_ltime())),
            ("failed", n(c.failed)),
            ("left", n(c.left)),
            ("members", n(c.total())),
        ]
    }

    /// Serf's own `serf` section of `stats` (the LAN pool, with Serf's keys).
    pub(crate) fn serf_stats(&self) -> [(&'static str, Stat<'static>); 12] {
        let c = &self.cluster;
        let n = |v: usize| Stat::Num(v as u64);
        let counts = c.status_counts(Pool::Lan);
        [
            ("coordinate_resets", Stat::Num(c.coordinate_resets())),
            (
                "encrypted",
                Stat::Str(if c.encrypted() { "true" } else { "false" }),
            ),
            ("event_queue", Stat::Num(0)),
            ("event_time", Stat::Num(c.event_ltime())),
            ("failed", n(counts.failed)),
            // memberlist's awareness score; tandem has no such penalty: always healthy.
            ("health_score", Stat::Num(0)),
            // tandem gossips one queue of items (metas, leaves, user events, queries):
            // its backlog shows as Serf's intent queue, the other two as empty.
            ("intent_queue", n(c.broadcast_backlog())),
            ("left", n(counts.left)),
            // Member changes are ordered by identities and meta versions, not a clock.
            ("member_time", Stat::Num(0)),
            ("members", n(counts.total())),
            ("query_queue", Stat::Num(0)),
            ("query_time", Stat::Num(c.query_ltime())),
        ]
    }

    /// The `event_handlers` section of `stats`: `event:name` → script, as Serf keys them
    /// (`member-join:`, `user:deploy`), one per filter element; sorted, the last of equal
    /// keys wins. Nothing is allocated without handlers.
    pub(crate) fn handler_stats_keys(&self) -> BTreeMap<String, &str> {
        self.event_handlers()
            .iter()
            .map(|h| (alloc::format!("{}:{}", h.event, h.name), h.script.as_str()))
            .collect()
    }

    /// A gossip datagram arrived: hand it to the cluster, and log (rate-limited) when it
    /// could not be read, which is how a wrong or missing gossip key shows on the receiving
    /// side (memberlist's `Decrypt packet failed`).
    pub(crate) fn gossip_datagram(
        &mut self,
        pool: Pool,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        let before = self.cluster.stats();
        self.cluster.handle_datagram(pool, from, data, now);
        let after = self.cluster.stats();
        let undecryptable = after.decrypt_failures > before.decrypt_failures;
        if !undecryptable && after.bad_datagrams == before.bad_datagrams {
            return;
        }
        let m = &mut self.membership;
        if m.gossip_log_at.is_some_and(|at| now < at) {
            m.gossip_unlogged += 1;
            return;
        }
        m.gossip_log_at = Some(now + GOSSIP_LOG_EVERY);
        let unlogged = core::mem::take(&mut m.gossip_unlogged);
        let more = if unlogged > 0 {
            alloc::format!(" ({unlogged} more since the last report)")
        } else {
            String::new()
        };
        let text = if undecryptable {
            alloc::format!(
                "memberlist: Decrypt packet failed: No installed keys could decrypt the message from={from}{more}"
            )
        } else if self.cluster.encrypted() {
            alloc::format!("memberlist: Failed to decode packet from={from}{more}")
        } else {
            // Sealed datagrams read as garbage here: say what it may be.
            alloc::format!(
                "memberlist: Failed to decode packet from={from} (is its gossip encrypted? this agent's is not){more}"
            )
        };
        self.log(Level::Err, &text, now);
    }

    /// Turns what the cluster produced into the agent's outputs. Called after every
    /// cluster input.
    pub(crate) fn drain_cluster(&mut self, now: Instant) {
        if self.cluster.peek_datagram().is_some() && !self.datagram_announced {
            self.datagram_announced = true;
            self.out.push_back(Output::Datagram);
        }
        while let Some(event) = self.cluster.poll_event() {
            self.cluster_event(event, now);
        }
        while let Some(outcome) = self.cluster.poll_join() {
            self.join_finished(outcome, now);
        }
        self.snapshot_clocks();
        self.keyring_after_cluster(now);
        if let Some(c) = self
            .cluster
            .name_conflict()
            .filter(|_| !self.membership.shutdown)
        {
            self.membership.shutdown = true;
            let text = alloc::format!(
                "serf: Node name conflicts with another node at {}. Names must be unique! \
                 The name {:?} is held by a live member, so this node leaves it and shuts down",
                c.holder,
                c.name
            );
            self.log(Level::Err, &text, now);
            self.emit(Output::Effect(Effect::Shutdown));
        }
        if self.cluster.ready_to_shutdown() {
            // Serf answers `leave` once its leave has been broadcast: a caller that ends
            // the process right after the reply leaves peers showing `left`, not `failed`.
            for (conn, seq) in core::mem::take(&mut self.membership.leave_waiters) {
                self.rpc_reply(conn, seq, "", None);
                if let Some(c) = self.conns.get_mut(conn) {
                    c.rpc.parked = false;
                }
                self.wake.push(conn);
            }
            for id in core::mem::take(&mut self.membership.leave_jobs) {
                self.job_item(
                    id,
                    crate::session::items::message(id, "Graceful leave complete"),
                );
                self.end_job(id, 0, None, false, now);
            }
        }
        if self.cluster.ready_to_shutdown() && !self.membership.shutdown {
            self.membership.shutdown = true;
            self.log(Level::Info, "agent: left the cluster, shutting down", now);
            self.emit(Output::Effect(Effect::Shutdown));
        }
    }

    fn cluster_event(&mut self, event: ClusterEvent, now: Instant) {
        match event {
            ClusterEvent::Member {
                kind,
                pool,
                members,
            } => {
                let text = alloc::format!(
                    "serf: Event{}: {}",
                    match kind {
                        MemberEvent::Join => "MemberJoin",
                        MemberEvent::Leave => "MemberLeave",
                        MemberEvent::Failed => "MemberFailed",
                        MemberEvent::Update => "MemberUpdate",
                        MemberEvent::Reap => "MemberReap",
                    },
                    members
                        .iter()
                        .map(|m| alloc::format!("{} {}", m.name, m.addr))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                self.log(Level::Info, &text, now);
                if pool == Pool::Lan {
                    // Serf's agent logs every event it receives.
                    let text = alloc::format!("agent: Received event: {}", kind.as_str());
                    self.log(Level::Info, &text, now);
                    self.snapshot_member_event(kind, &members);
                    let refs: Vec<&MemberView> = members.iter().collect();
                    let mut body = Vec::new();
                    wire::map(&mut body, 2);
                    wire::str(&mut body, "Event");
                    wire::str(&mut body, kind.as_str());
                    body.extend_from_slice(&{
                        let mut m = Vec::new();
                        write_members(&mut m, &refs);
                        // `write_members` starts with its own fixmap(1); skip it.
                        m.split_off(1)
                    });
                    let targets = self.conns.rpc_streams(|f| f.member(kind.as_str()));
                    for (conn, seq) in targets {
                        self.rpc_record(conn, seq, &|tx: &mut Vec<u8>| tx.extend_from_slice(&body));
                    }
                    let item_kind = kind.as_str();
                    self.feed_event_jobs(
                        |f| f.member(item_kind),
                        |job| {
                            items::build(|o| {
                                o.str("event", item_kind);
                                o.u64("jobId", job.into());
                                o.arr("members", |a| {
                                    for m in &members {
                                        a.obj(|o| write_member_json(m, o));
                                    }
                                });
                                o.str("type", "event");
                            })
                        },
                    );
                    let event = crate::handlers::HandlerEvent::Member {
                        kind,
                        members: &members,
                    };
                    self.handle_event_for_handlers(event, now);
                }
            }
            event @ (ClusterEvent::Query(_)
            | ClusterEvent::QueryAck { .. }
            | ClusterEvent::QueryResponse { .. }
            | ClusterEvent::QueryDone(_)) => {
                if !self.key_query_event(&event) {
                    self.query_event(event, now);
                }
            }
            ClusterEvent::User(e) => {
                let text = alloc::format!("agent: Received event: user-event: {}", e.name);
                self.log(Level::Info, &text, now);
                let event = crate::handlers::HandlerEvent::User {
                    name: &e.name,
                    ltime: e.ltime,
                    payload: &e.payload,
                };
                self.handle_event_for_handlers(event, now);
                self.deliver_user_event(&e.name, &e.payload, e.coalesce, e.ltime);
                let (name, ltime, coalesce) = (e.name.clone(), e.ltime, e.coalesce);
                let payload = String::from_utf8_lossy(&e.payload).into_owned();
                self.feed_event_jobs(
                    |f| f.user(&name),
                    |job| {
                        items::build(|o| {
                            o.bool("coalesce", coalesce);
                            o.str("event", "user");
                            o.u64("jobId", job.into());
                            o.u64("ltime", ltime);
                            o.str("name", &name);
                            o.str("payload", &payload);
                            o.str("type", "event");
                        })
                    },
                );
            }
        }
    }

    fn join_finished(&mut self, outcome: JoinOutcome, now: Instant) {
        let Some(waiter) = self.membership.joins.remove(&outcome.id.0) else {
            return;
        };
        let mut failures = match &waiter {
            JoinWaiter::Rpc { failures, .. }
            | JoinWaiter::Job { failures, .. }
            | JoinWaiter::Log { failures, .. } => failures.clone(),
        };
        for failure in &outcome.failures {
            let text = alloc::format!("memberlist: {failure}");
            self.log(Level::Debug, &text, now);
        }
        if let Some(e) = &outcome.error {
            failures.extend(e.failures.iter().cloned());
        }
        let joined = outcome.joined;
        // Partial success is no error (Serf): the error names failures only when none joined.
        let error = if joined == 0 && !failures.is_empty() {
            crate::cluster::JoinError { failures }.to_string_alloc()
        } else {
            String::new()
        };
        self.finish_join_now(waiter, joined, error, now);
    }

    /// Serf's agent lines for a join's outcome, whoever asked for it.
    fn log_join(&mut self, joined: u32, error: &str, now: Instant) {
        if joined > 0 {
            let text = alloc::format!("agent: joined: {joined} nodes");
            self.log(Level::Info, &text, now);
        }
        if !error.is_empty() {
            let text = alloc::format!("agent: error joining: {}", error.trim_end());
            self.log(Level::Warn, &text, now);
        }
    }

    fn reply_join(&mut self, conn: ConnId, seq: u64, joined: u32, error: &str) {
        self.rpc_reply(
            conn,
            seq,
            error,
            Some(&|tx: &mut Vec<u8>| {
                wire::map(tx, 1);
                wire::str(tx, "Num");
                wire::uint(tx, joined.into());
            }),
        );
    }

    /// Starts a join of `addrs` (IPs, `ip:port`, or host names the runtime resolves); the
    /// waiter is answered when the cluster reports, or at once if nothing can be tried.
    /// `replay`: user events the members still hold are delivered here too (Serf's
    /// `Replay`), instead of only those after the join.
    pub(crate) fn start_join(
        &mut self,
        addrs: &[&str],
        wan: bool,
        replay: bool,
        waiter: JoinWaiter,
        now: Instant,
    ) {
        let pool = pool_of(wan);
        let text = alloc::format!("agent: joining: [{}] replay: {replay}", addrs.join(" "));
        self.log(Level::Info, &text, now);
        if wan && !self.cfg.server {
            return self.fail_join(waiter, msg::WAN_NEEDS_SERVER, now);
        }
        let port = if wan {
            self.cfg.wan_addr.port()
        } else {
            self.cfg.lan_addr.port()
        };
        let mut parsed = Vec::new();
        let mut names = Vec::new();
        for a in addrs {
            match parse_addr(a, port) {
                Some(sa) => parsed.push(sa),
                None => names.push(String::from(*a)),
            }
        }
        if names.is_empty() {
            return self.join_addrs(pool, &parsed, replay, waiter, now);
        }
        let id = self.membership.next_resolve;
        self.membership.next_resolve = id.wrapping_add(1);
        self.membership.resolves.insert(
            id,
            PendingResolve {
                pool,
                addrs: parsed,
                replay,
                waiter,
            },
        );
        self.emit(Output::Effect(Effect::Resolve {
            id: crate::ResolveId(id),
            names,
            default_port: port,
        }));
    }

    fn join_addrs(
        &mut self,
        pool: Pool,
        addrs: &[SocketAddr],
        replay: bool,
        waiter: JoinWaiter,
        now: Instant,
    ) {
        let has_failures = matches!(
            &waiter,
            JoinWaiter::Rpc { failures, .. } | JoinWaiter::Job { failures, .. } | JoinWaiter::Log { failures, .. } if !failures.is_empty()
        );
        if addrs.is_empty() && !has_failures {
            // Nothing to contact: Num 0, no error (Serf).
            return self.finish_join_now(waiter, 0, String::new(), now);
        }
        if addrs.is_empty() {
            let failures = match waiter {
                JoinWaiter::Rpc { ref failures, .. }
                | JoinWaiter::Job { ref failures, .. }
                | JoinWaiter::Log { ref failures, .. } => failures.clone(),
            };
            let error = crate::cluster::JoinError { failures }.to_string_alloc();
            return self.finish_join_now(waiter, 0, error, now);
        }
        match self.cluster.join_replay(pool, addrs, replay, now) {
            Ok(id) => {
                self.membership.joins.insert(id.0, waiter);
                self.drain_cluster(now);
            }
            Err(e) => {
                let text = e.to_string_alloc();
                self.fail_join(waiter, &text, now);
            }
        }
    }

    fn fail_join(&mut self, waiter: JoinWaiter, error: &str, now: Instant) {
        self.finish_join_now(waiter, 0, String::from(error), now);
    }

    /// Answers a join's waiter: the RPC reply, the `join` command's item and status (the
    /// item only on success; a failure ends the job with the error), or the log line.
    fn finish_join_now(&mut self, waiter: JoinWaiter, joined: u32, error: String, now: Instant) {
        self.log_join(joined, &error, now);
        match waiter {
            JoinWaiter::Rpc { conn, seq, .. } => {
                self.reply_join(conn, seq, joined, &error);
                if let Some(c) = self.conns.get_mut(conn) {
                    c.rpc.parked = false;
                }
                self.wake.push(conn);
            }
            JoinWaiter::Job { job, .. } => {
                if error.is_empty() {
                    let item = items::build(|o| {
                        o.u64("jobId", job.into());
                        o.u64("joined", joined.into());
                        o.str("type", "join");
                    });
                    self.job_item(job, item);
                    self.end_job(job, 0, None, false, now);
                } else {
                    self.end_job(job, 1, Some(error.trim_end()), false, now);
                }
            }
            JoinWaiter::Log { then, .. } => match then {
                AfterJoin::Nothing => {}
                AfterJoin::Retry => self.retry_join_finished(joined, &error, now),
                AfterJoin::Rejoin { node, rest } => {
                    if error.is_empty() {
                        let text =
                            alloc::format!("serf: Re-joined to previously known node: {node}");
                        self.log(Level::Info, &text, now);
                    } else {
                        self.rejoin_next(rest, now);
                    }
                }
            },
        }
    }

    /// Starts `-retry-join`: the first attempt now, the next ones every `interval` until one
    /// succeeds or `max` attempts (0: no limit) have failed after the first.
    pub(crate) fn start_retry_join(&mut self, retry: RetryJoin, now: Instant) {
        if retry.addrs.is_empty() {
            return;
        }
        self.membership.retry = Some(retry);
        self.retry_join_attempt(now);
    }

    /// One attempt of `-retry-join` (also its timer).
    pub(crate) fn retry_join_attempt(&mut self, now: Instant) {
        let Some(retry) = &self.membership.retry else {
            return;
        };
        let addrs = retry.addrs.clone();
        let wan = retry.wan;
        let replay = self.cfg.replay_on_join;
        let text = alloc::format!("agent: Joining cluster...(replay: {replay})");
        self.log(Level::Info, &text, now);
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let waiter = JoinWaiter::Log {
            failures: Vec::new(),
            then: AfterJoin::Retry,
        };
        self.start_join(&addrs, wan, replay, waiter, now);
    }

    /// An attempt of `-retry-join` ended: done, another one after the interval, or (after
    /// `max` failures) give up and shut down, as Serf's agent exits with an error.
    fn retry_join_finished(&mut self, joined: u32, error: &str, now: Instant) {
        let Some(retry) = &mut self.membership.retry else {
            return;
        };
        if error.is_empty() {
            self.membership.retry = None;
            let text = alloc::format!("agent: Join completed. Synced with {joined} initial agents");
            return self.log(Level::Info, &text, now);
        }
        retry.failed = retry.failed.saturating_add(1);
        if retry.max > 0 && retry.failed > retry.max {
            self.membership.retry = None;
            self.membership.gave_up = true;
            self.log(
                Level::Err,
                "agent: maximum retry join attempts made, exiting",
                now,
            );
            if !self.membership.shutdown {
                self.membership.shutdown = true;
                self.emit(Output::Effect(Effect::Shutdown));
            }
            return;
        }
        let interval = retry.interval;
        let text = alloc::format!(
            "agent: Join failed: {}, retrying in {}",
            error.trim_end(),
            go_duration(interval)
        );
        self.log(Level::Warn, &text, now);
        self.timers
            .schedule(now + interval, crate::time::Timer::RetryJoin);
    }

    /// The runtime resolved the host names of a join.
    pub(crate) fn resolved_names(
        &mut self,
        id: u32,
        results: &[(String, Result<Vec<SocketAddr>, String>)],
        now: Instant,
    ) {
        let Some(mut pending) = self.membership.resolves.remove(&id) else {
            return;
        };
        for (name, r) in results {
            let why = match r {
                Ok(addrs) if !addrs.is_empty() => {
                    pending.addrs.extend(addrs.iter().copied());
                    continue;
                }
                Ok(_) => "no addresses",
                Err(e) => e.as_str(),
            };
            let failure = alloc::format!("Failed to join {name}: {why}");
            let text = alloc::format!("memberlist: {failure}");
            self.log(Level::Debug, &text, now);
            let (JoinWaiter::Rpc { failures, .. }
            | JoinWaiter::Job { failures, .. }
            | JoinWaiter::Log { failures, .. }) = &mut pending.waiter;
            failures.push(failure);
        }
        let (pool, replay) = (pending.pool, pending.replay);
        self.join_addrs(pool, &pending.addrs, replay, pending.waiter, now);
    }

    /// Leave: tell the cluster, which tells peers and, after the propagation delay, says
    /// it is ready; `drain_cluster` then asks the runtime to shut down.
    pub(crate) fn begin_leave(&mut self, now: Instant) {
        if self.cluster.is_leaving() || self.cluster.ready_to_shutdown() {
            return;
        }
        self.log(Level::Info, "agent: graceful leave requested", now);
        self.snapshot_leave();
        self.cluster.leave(now);
        self.drain_cluster(now);
    }

    /// The RPC `leave`: answered once the leave has spread (at once if it already has),
    /// with the requests behind it waiting, as Serf's agent does.
    pub(crate) fn rpc_leave(&mut self, conn: ConnId, seq: u64, now: Instant) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.rpc.parked = true;
        }
        self.membership.leave_waiters.push((conn, seq));
        self.begin_leave(now);
        // Already left: answered by this drain.
        self.drain_cluster(now);
    }

    // ----- RPC commands ------------------------------------------------------------------

    pub(crate) fn rpc_members(
        &mut self,
        conn: ConnId,
        seq: u64,
        wan: bool,
        filter: Option<&crate::rpc::commands::MemberFilter>,
    ) {
        let views = self.member_views(wan);
        let kept: Vec<&MemberView> = views
            .iter()
            .filter(|m| filter.is_none_or(|f| f.matches(m)))
            .collect();
        let mut body = Vec::new();
        write_members(&mut body, &kept);
        self.rpc_reply(
            conn,
            seq,
            "",
            Some(&|tx: &mut Vec<u8>| tx.extend_from_slice(&body)),
        );
    }

    pub(crate) fn rpc_join(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        now: Instant,
    ) -> R<bool> {
        let mut existing: Vec<&str> = Vec::new();
        let mut wan = false;
        let mut replay = false;
        r.fields(&["Existing", "WAN", "Replay"], |k, r| {
            match k {
                "Existing" => {
                    let n = r.array_len()?;
                    for _ in 0..n {
                        existing.push(r.str()?);
                    }
                }
                "WAN" => wan = r.bool()?,
                "Replay" => replay = r.bool()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        // Requests behind a join wait for its reply: answers stay in order.
        if let Some(c) = self.conns.get_mut(conn) {
            c.rpc.parked = true;
        }
        let waiter = JoinWaiter::Rpc {
            conn,
            seq,
            failures: Vec::new(),
        };
        self.start_join(&existing, wan, replay, waiter, now);
        Ok(true)
    }

    pub(crate) fn rpc_force_leave(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        now: Instant,
    ) -> R<bool> {
        let mut node = "";
        let mut prune = false;
        r.fields(&["Node", "Prune"], |k, r| {
            match k {
                "Node" => node = r.str()?,
                "Prune" => prune = r.bool()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let result = self.cluster.force_leave(node, prune, now);
        self.drain_cluster(now);
        self.rpc_reply_result(conn, seq, result);
        Ok(true)
    }

    /// Replies to a cluster command: no body, its error text if it failed.
    fn rpc_reply_result(
        &mut self,
        conn: ConnId,
        seq: u64,
        result: Result<(), crate::cluster::ClusterError>,
    ) {
        let error = match result {
            Ok(()) => String::new(),
            Err(e) => e.to_string_alloc(),
        };
        self.rpc_reply(conn, seq, &error, None);
    }

    pub(crate) fn rpc_tags(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        now: Instant,
    ) -> R<bool> {
        let mut set: Vec<(String, String)> = Vec::new();
        let mut delete: Vec<String> = Vec::new();
        r.fields(&["DeleteTags", "Tags"], |k, r| {
            match k {
                "DeleteTags" => {
                    let n = r.array_len()?;
                    for _ in 0..n {
                        delete.push(r.str()?.into());
                    }
                }
                "Tags" => {
                    let n = r.map_len()?;
                    for _ in 0..n {
                        let k = r.str()?;
                        let v = r.str()?;
                        set.push((k.into(), v.into()));
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let result = self.cluster.set_tags(&set, &delete, now);
        self.drain_cluster(now);
        if result.is_ok() {
            self.persist_tags();
        }
        self.rpc_reply_result(conn, seq, result);
        Ok(true)
    }

    pub(crate) fn rpc_event(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        now: Instant,
    ) -> R<bool> {
        let mut name = "";
        let mut payload: &[u8] = &[];
        let mut coalesce = false;
        r.fields(&["Coalesce", "Name", "Payload"], |k, r| {
            match k {
                "Coalesce" => coalesce = r.bool()?,
                "Name" => name = r.str()?,
                "Payload" => payload = r.bytes()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        // Serf's `Agent.UserEvent` logs.
        let text = alloc::format!(
            "agent: Requesting user event send: {name}. Coalesced: {coalesce}. Payload: {:?}",
            String::from_utf8_lossy(payload)
        );
        self.log(Level::Debug, &text, now);
        let result = self.cluster.user_event(name, payload, coalesce, now);
        if let Err(e) = &result {
            let text = alloc::format!("agent: failed to send user event: {e}");
            self.log(Level::Warn, &text, now);
        }
        self.rpc_reply_result(conn, seq, result);
        self.drain_cluster(now);
        Ok(true)
    }

    /// Sends a user event to every `stream` that wants it.
    pub(crate) fn deliver_user_event(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
        ltime: u64,
    ) {
        let targets = self.conns.rpc_streams(|f| f.user(name));
        for (conn, seq) in targets {
            self.rpc_record(conn, seq, &|tx: &mut Vec<u8>| {
                wire::map(tx, 5);
                wire::str(tx, "Coalesce");
                wire::bool(tx, coalesce);
                wire::str(tx, "Event");
                wire::str(tx, "user");
                wire::str(tx, "LTime");
                wire::uint(tx, ltime);
                wire::str(tx, "Name");
                wire::str(tx, name);
                wire::str(tx, "Payload");
                wire::bin(tx, payload);
            });
        }
    }
}

/// `to_string` without pulling in `alloc::string::ToString` at every call site.
pub(crate) trait ToStringAlloc {
    fn to_string_alloc(&self) -> String;
}

impl<T: core::fmt::Display> ToStringAlloc for T {
    fn to_string_alloc(&self) -> String {
        alloc::format!("{self}")
    }
}

/// A duration as Go's `time.Duration` prints it (`30s`, `1m30s`, `500ms`, `1.5s`), for
/// Serf's log lines.
pub(crate) fn go_duration(d: core::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return String::from("0s");
    }
    if ms < 1000 {
        return alloc::format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let (s, frac) = (ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&alloc::format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&alloc::format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&alloc::format!("{s}s"));
    } else {
        let frac = alloc::format!("{frac:03}");
        out.push_str(&alloc::format!("{s}.{}s", frac.trim_end_matches('0')));
    }
    out
}

#[cfg(test)]
mod go_duration_tests {
    use core::time::Duration;

    #[test]
    fn prints_as_go_does() {
        let f = |ms| super::go_duration(Duration::from_millis(ms));
        assert_eq!(f(0), "0s");
        assert_eq!(f(500), "500ms");
        assert_eq!(f(30_000), "30s");
        assert_eq!(f(1_500), "1.5s");
        assert_eq!(f(90_000), "1m30s");
        assert_eq!(f(3_600_000), "1h0m0s");
    }
}
