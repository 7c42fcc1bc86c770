//! Cluster membership: Serf's member list, events and commands over foca's SWIM, sans IO.
//!
//! A [`Cluster`] holds a LAN pool and, on servers, a WAN pool; each pool is one foca
//! instance. foca answers "who is alive". What members say about themselves (name and
//! tags: a *meta*), leave records and user events travel as foca custom broadcasts, newest
//! version wins (`gossip.rs`). Because foca has no `left` state, a graceful leave
//! first broadcasts a leave record (and pushes it to every member), waits
//! `leave_propagate_delay`, then goes silent: peers that hold the record show `left`, not
//! `failed`. Because foca's gossip is lossy by design, PULL/PUSH exchanges repair what the
//! member view needs (`exchange.rs`): missing metas, a joiner's first view, a periodic
//! full sync, and the question "did it leave?" asked before `member-failed`.
//!
//! Files: `mod.rs` (the API, foca glue, member events), `exchange.rs` (datagrams besides
//! foca's), `lifecycle.rs` (join, leave, reconnect), `member.rs` (the view and the one table
//! of status transitions), `gossip.rs` (broadcast handler and what it learns), `wire.rs` and
//! `codec.rs` (bytes), `identity.rs`, `timer.rs` (the one ordered timer queue), `pool.rs`,
//! `outbox.rs`, `config.rs`, `event.rs` (events and errors with their wire text),
//! `keyring.rs` (gossip encryption: every datagram sealed on its way out, opened on its way
//! in).
//!
//! # The call contract
//!
//! The cluster consumes datagrams and timer ticks and never reads a clock, a socket or a
//! global RNG. After **any** input ([`Cluster::handle_datagram`], [`Cluster::handle_timeout`],
//! or a command: [`Cluster::join`], [`Cluster::leave`], [`Cluster::force_leave`],
//! [`Cluster::set_tags`], [`Cluster::user_event`]) the runtime drains, in this order:
//!
//! 1. [`Cluster::poll_datagram`] (or [`Cluster::peek_datagram`] + [`Cluster::pop_datagram`])
//!    until `None`, sending each to its address from the pool's socket;
//! 2. [`Cluster::poll_event`] and [`Cluster::poll_join`] until `None`;
//! 3. [`Cluster::poll_timeout`], to arm its timer.
//!
//! `now` never goes backwards; early or spurious [`Cluster::handle_timeout`] calls are
//! harmless. The same seed and the same inputs give the same outputs, byte for byte.
//!
//! # Bounds
//!
//! Every table is bounded by [`ClusterLimits`]: members per pool (packets that would add
//! more are dropped), queued datagrams and events (the newest is dropped and counted),
//! joins in progress, the user-event window. Decoding hostile datagrams never panics and
//! allocates at most the datagram's size.
//!
//! # What tandem reports
//!
//! Members report [`PROTOCOL`] `[1, 5, 2]` and [`DELEGATE`] `[2, 5, 5]` (what Serf 0.9.4
//! sends; tandem speaks one protocol and does not negotiate). Tags always include `role` (`consul`
//! for a server, `node` for a client), `dc`, `build` and `vsn`, which `consul members` reads.

mod codec;
mod config;
mod coordinate;
mod event;
mod exchange;
mod gossip;
mod identity;
mod keyring;
mod keys;
mod lifecycle;
mod member;
mod outbox;
mod pool;
mod query;
mod rtt;
mod timer;
mod wire;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::net::SocketAddr;

use foca::OwnedNotification;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng as _};

pub use config::{ClusterConfig, ClusterLimits, PoolTiming};
pub use coordinate::{Coordinate, DIMENSIONS, MAX_RTT, UpdateError, Vivaldi, VivaldiConfig};
pub use event::{ClusterError, ClusterEvent, JoinError, JoinOutcome, MemberEvent, UserEvent};
pub use keyring::{ENCRYPTION_OVERHEAD, ENCRYPTION_VERSION, GossipKey, KeyError, Keyring};
pub use keys::{
    KEY_REQUEST_TYPE, KEY_RESPONSE_TYPE, KeyOp, KeyQueryError, KeyResponse, MAX_KEYS,
    go_base64_decode,
};
pub use member::{DELEGATE, MemberStatus, MemberView, PROTOCOL};
pub use query::{
    INTERNAL_PREFIX, PING, PendingQuery, QueryError, QueryEvent, QueryId, QueryParams,
};
pub use rtt::{COORD_FRAME_LEN, COORD_VERSION};
pub use wire::{NAME_LIMIT, TAGS_LIMIT, USER_EVENT_LIMIT};

use gossip::{Inbound, fresher};
use identity::NodeId;
use keyring::Crypt;
use member::{Record, SelfState, Shown, transition};
use outbox::Outbox;
use pool::{FocaT, Io, PoolState};
use timer::{Task, Timers};
use wire::{Frame, Item, Leave, Meta, UserItem};

use crate::time::Instant;

/// A gossip pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pool {
    /// The datacenter's pool (Serf LAN, port 8301): every agent.
    Lan,
    /// The servers' pool across datacenters (Serf WAN, port 8302).
    Wan,
}

impl Pool {
    /// `LAN` or `WAN`, as Consul's keyring responses name pools.
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Lan => "LAN",
            Pool::Wan => "WAN",
        }
    }
}

/// This node found, right after joining, that a live member at another address already
/// holds its name ([`Cluster::name_conflict`]): it went silent and should shut down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameConflict {
    /// The pool.
    pub pool: Pool,
    /// The name.
    pub name: String,
    /// Where the member holding it is.
    pub holder: SocketAddr,
}

/// A join in progress, reported by [`Cluster::poll_join`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JoinId(pub u32);

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Datagrams handed to [`Cluster::handle_datagram`].
    pub datagrams_in: u64,
    /// Datagrams queued for sending.
    pub datagrams_out: u64,
    /// Datagrams dropped because the outgoing ring was full.
    pub datagrams_dropped: u64,
    /// Datagrams that did not decode (or came for a pool this node is not in).
    pub bad_datagrams: u64,
    /// Datagrams dropped because gossip is encrypted and no key opened them (a stranger,
    /// a wrong key, truncated, tampered with, or plaintext).
    pub decrypt_failures: u64,
    /// Packets foca refused, and foca timer errors.
    pub foca_errors: u64,
    /// Packets dropped because they would add members beyond `limits.max_members`.
    pub members_refused: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Meta PULLs sent.
    pub pulls_sent: u64,
    /// Meta PULLs answered.
    pub pulls_answered: u64,
    /// Join addresses given up on at once because the runtime reported them unreachable.
    pub unreachable_reports: u64,
    /// Packets from senders that are no members whose claims about other members were
    /// dropped (forged or premature gossip).
    pub stranger_claims: u64,
    /// Times a member was not shown because a live member at another address holds its
    /// name (a second node started with an existing node's name).
    pub name_conflicts: u64,
    /// COORD frames rejected: malformed, another version or dimension count, an invalid
    /// or implausible coordinate, or a sample Vivaldi refused (`rtt.rs`).
    pub coordinates_rejected: u64,
    /// Round trips that updated this node's network coordinate.
    pub coordinate_samples: u64,
}

/// How many members of a pool have each status (the `serf_lan` stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// `alive`, this node included while it is.
    pub alive: usize,
    /// `leaving`.
    pub leaving: usize,
    /// `left`.
    pub left: usize,
    /// `failed`.
    pub failed: usize,
}

impl StatusCounts {
    /// All members shown.
    pub fn total(&self) -> usize {
        self.alive + self.leaving + self.left + self.failed
    }
}

/// Most addresses one join tries: a longer list is refused ([`ClusterError::TooManyJoinAddrs`]),
/// never cut short. Every address of every join in progress is announced to each
/// `join_retry`, so this times `limits.max_joins` stays within the outgoing ring.
pub const MAX_JOIN_ADDRS: usize = 256;
/// More metas than this due at once are pulled in one listed PULL.
pub(crate) const BULK_PULL: usize = 8;
/// Most metas pulled per pull tick.
pub(crate) const PULLS_PER_TICK: usize = 4 * (wire::PULL_MAX_LISTED + 1);
/// Sync attempts per sync interval (the first and the retries while none is answered).
pub(crate) const SYNC_TRIES: u32 = 3;
/// Most addresses remembered for reconnecting.
const RECONNECT_ADDRS: usize = 16;

struct JoinAttempt {
    id: JoinId,
    pool: Pool,
    /// Each address and how it fared so far.
    targets: Vec<(SocketAddr, Target)>,
    deadline: Instant,
    /// Serf's `Replay`: old user events are asked for and delivered.
    replay: bool,
}

/// How one address of a join fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Announced to, not answered yet.
    Pending,
    /// A FOCA datagram came back from it.
    Answered,
    /// Given up on before the join's deadline.
    Failed(TargetFailure),
}

/// Why an address of a join was given up on before the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetFailure {
    /// It is this node's own gossip address (named as such, or our announce came back to
    /// us from it).
    Own,
    /// The runtime reported it unreachable ([`Cluster::handle_unreachable`]).
    Refused,
}

/// The cluster membership engine. See the [module docs](self) for the call contract.
///
/// Methods fall into four groups, as in quinn-proto's `Connection`: getters (`&self`),
/// `handle_*` inputs, commands from the agent (`join`, `leave`, `force_leave`,
/// `set_tags`, `user_event`), and the `poll_*` outputs.
pub struct Cluster {
    cfg: ClusterConfig,
    lan: PoolState,
    wan: Option<PoolState>,
    timers: Timers,
    out: Outbox,
    events: VecDeque<ClusterEvent>,
    joins: Vec<JoinAttempt>,
    done_joins: VecDeque<JoinOutcome>,
    next_join: u32,
    state: SelfState,
    /// Tags set at runtime over the configured ones, and configured tags deleted.
    runtime_tags: BTreeMap<String, String>,
    deleted_tags: BTreeSet<String>,
    stats: ClusterStats,
    /// foca's notifications from the current call, handled right after it.
    notes: VecDeque<OwnedNotification<NodeId>>,
    rng: Xoshiro256PlusPlus,
    /// Scratch for member addresses in a packet being admitted.
    addr_scratch: Vec<SocketAddr>,
    /// Scratch for the plaintext of an encrypted datagram.
    open_scratch: Vec<u8>,
    /// Scratch for a stranger's packet without its claims about others.
    strip_scratch: Vec<u8>,
    /// The latest `now` an input brought.
    last_now: Instant,
    /// This node joined a cluster where a live member already holds its name.
    name_conflict: Option<NameConflict>,
    queries: query::Queries,
    /// Network coordinates (LAN).
    coords: rtt::Coords,
    /// Keyring changes made by key queries (the agent persists the keyring when it moves).
    keyring_changes: u64,
    /// What key queries did, for the agent's log.
    keyring_notes: VecDeque<(crate::log::Level, String)>,
}

impl Cluster {
    /// A cluster of one: this node, alive, in the LAN pool and (for a server) the WAN pool.
    /// Its own `member-join` events are the first events. `seed` drives every random
    /// choice (foca's probe order, reconnect targets).
    pub fn new(config: ClusterConfig, seed: u64, now: Instant) -> Self {
        let mut parent = Xoshiro256PlusPlus::seed_from_u64(seed);
        let lan = PoolState::new(
            NodeId::new(config.lan_addr, 0),
            config.node_name.clone(),
            config.lan.clone(),
            Xoshiro256PlusPlus::from_rng(&mut parent),
            &config,
        );
        let wan = config.server.then(|| {
            PoolState::new(
                NodeId::new(config.wan_addr, 0),
                format!("{}.{}", config.node_name, config.datacenter),
                config.wan.clone(),
                Xoshiro256PlusPlus::from_rng(&mut parent),
                &config,
            )
        });
        // A random first meta version: a restart at the same identity then most likely
        // starts above its previous life, and refutes (see `refute`) when it does not.
        let first_version = parent.random_range(1..=1u32 << 30);
        // The nonce RNG is derived last (below), so the other derivations, and with them
        // every unencrypted trace, are what they were before encryption existed.
        let placeholder = Crypt::new(&Keyring::default(), Xoshiro256PlusPlus::seed_from_u64(0));
        let mut cluster = Cluster {
            out: Outbox::new(config.limits.max_datagrams, placeholder),
            lan,
            wan,
            timers: Timers::default(),
            events: VecDeque::new(),
            joins: Vec::new(),
            done_joins: VecDeque::new(),
            next_join: 1,
            state: SelfState::Active,
            runtime_tags: BTreeMap::new(),
            deleted_tags: BTreeSet::new(),
            stats: ClusterStats::default(),
            notes: VecDeque::new(),
            rng: Xoshiro256PlusPlus::from_rng(&mut parent),
            addr_scratch: Vec::new(),
            open_scratch: Vec::new(),
            strip_scratch: Vec::new(),
            last_now: now,
            name_conflict: None,
            queries: query::Queries::default(),
            coords: rtt::Coords::new(Xoshiro256PlusPlus::seed_from_u64(0)),
            keyring_changes: 0,
            keyring_notes: VecDeque::new(),
            cfg: config,
        };
        cluster.out.crypt = Crypt::new(
            &cluster.cfg.keyring,
            Xoshiro256PlusPlus::from_rng(&mut parent),
        );
        // Derived after the others, which stay what they were before coordinates existed.
        cluster.coords = rtt::Coords::new(Xoshiro256PlusPlus::from_rng(&mut parent));
        cluster.schedule_coord_ping(now);
        for pool in cluster.pools() {
            if let Some(p) = cluster.pool_mut(pool) {
                p.version = first_version;
            }
            cluster.broadcast_meta(pool, now);
            cluster.settle(pool, now);
            let every = cluster.cfg.reconnect_interval;
            cluster.schedule_reconnect(pool, now + every);
            // Nodes started together should not all sync at once.
            let sync = cluster.cfg.sync_interval;
            let jitter = cluster
                .rng
                .random_range(0..=sync.as_micros().max(1) as u64 / 2);
            let first = now + sync / 2 + core::time::Duration::from_micros(jitter);
            cluster.schedule_sync(pool, first);
        }
        cluster
    }

    // ----- getters -------------------------------------------------------------------

    /// The configuration in force.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Whether this node is in `pool` (the WAN pool is for servers only).
    pub fn has_pool(&self, pool: Pool) -> bool {
        self.pool(pool).is_some()
    }

    /// This node's address in `pool`.
    pub fn local_addr(&self, pool: Pool) -> Option<SocketAddr> {
        self.pool(pool).map(|p| p.me().addr)
    }

    /// This node's tags as members see them.
    pub fn tags(&self) -> BTreeMap<String, String> {
        self.tags_ref()
            .into_iter()
            .map(|(k, v)| (String::from(k), String::from(v)))
            .collect()
    }

    /// [`Cluster::tags`], borrowed: no string is copied.
    pub fn tags_ref(&self) -> BTreeMap<&str, &str> {
        let mut tags = BTreeMap::new();
        let role = if self.cfg.server { "consul" } else { "node" };
        tags.insert("role", role);
        tags.insert("dc", self.cfg.datacenter.as_str());
        tags.insert("build", self.cfg.build.as_str());
        tags.insert("vsn", self.cfg.vsn.as_str());
        for (k, v) in &self.cfg.tags {
            tags.insert(k, v);
        }
        for k in &self.deleted_tags {
            tags.remove(k.as_str());
        }
        for (k, v) in &self.runtime_tags {
            tags.insert(k, v);
        }
        tags
    }

    /// The members of `pool`, this node included, sorted by address. Empty for a pool this
    /// node is not in (Consul's `members-wan` on a client). Each shows the status its last
    /// member event announced, so the list and the events never disagree.
    pub fn members(&self, pool: Pool) -> Vec<MemberView> {
        let Some(p) = self.pool(pool) else {
            return Vec::new();
        };
        p.gossip.with(|g| {
            p.records
                .iter()
                .filter(|(_, r)| !r.pruned)
                .filter_map(|(addr, r)| Some(MemberView::new(g.metas.get(addr)?, r.shown?.status)))
                .collect()
        })
    }

    /// How many members of `pool` have each status, without building the views.
    pub fn status_counts(&self, pool: Pool) -> StatusCounts {
        let mut c = StatusCounts::default();
        let Some(p) = self.pool(pool) else {
            return c;
        };
        p.gossip.with(|g| {
            for (addr, r) in &p.records {
                let Some(shown) = r.shown.filter(|_| !r.pruned && g.metas.contains_key(addr))
                else {
                    continue;
                };
                match shown.status {
                    MemberStatus::Alive => c.alive += 1,
                    MemberStatus::Leaving => c.leaving += 1,
                    MemberStatus::Left => c.left += 1,
                    MemberStatus::Failed => c.failed += 1,
                }
            }
        });
        c
    }

    /// The status of the member at `addr` in `pool`, if it is shown.
    pub fn member_status(&self, pool: Pool, addr: SocketAddr) -> Option<MemberStatus> {
        let p = self.pool(pool)?;
        let shown = p.records.get(&addr).filter(|r| !r.pruned)?.shown?;
        p.gossip
            .with(|g| g.metas.contains_key(&addr))
            .then_some(shown.status)
    }

    /// Members foca considers alive or suspect, this node included (named or not). A cheap
    /// upper bound on the `alive` count.
    pub fn active_members(&self, pool: Pool) -> usize {
        self.pool(pool).map_or(0, |p| p.foca.num_members() + 1)
    }

    /// The user-event Lamport clock (Serf's `event_time`).
    pub fn event_ltime(&self) -> u64 {
        self.lan.gossip.with(|g| g.events.clock)
    }

    /// Restores the user-event and query clocks a snapshot recorded (the latest LTimes this
    /// node had seen before a restart): the clocks go past them, and events and queries up
    /// to them are not delivered again (Serf's `eventMinTime`/`queryMinTime`).
    pub fn restore_clocks(&mut self, event: u64, query: u64) {
        self.lan.gossip.with(|g| {
            let next = event.saturating_add(1);
            g.events.clock = g.events.clock.max(next);
            g.events.min_time = g.events.min_time.max(next);
            let next = query.saturating_add(1);
            g.queries.clock = g.queries.clock.max(next);
            g.queries.min_time = g.queries.min_time.max(next);
        });
    }

    /// Whether gossip is encrypted (the keyring has a key): Serf's `encrypted` stat.
    pub fn encrypted(&self) -> bool {
        self.out.crypt.enabled()
    }

    /// Counters.
    pub fn stats(&self) -> ClusterStats {
        ClusterStats {
            datagrams_out: self.out.sent,
            datagrams_dropped: self.out.dropped,
            coordinates_rejected: self.coords.rejected,
            coordinate_samples: self.coords.samples,
            ..self.stats
        }
    }

    /// Datagrams waiting in the outgoing ring.
    pub fn datagrams_queued(&self) -> usize {
        self.out.len()
    }

    /// Entries in the timer queue (bounded by live members; exposed for tests).
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// True while a leave is announced and propagating.
    pub fn is_leaving(&self) -> bool {
        self.state == SelfState::Leaving
    }

    /// Set when this node, right after joining, found its name held by a live member at
    /// another address (Serf's name conflict, which the newcomer loses): it has gone
    /// silent, as after a leave, and the agent shuts down.
    pub fn name_conflict(&self) -> Option<&NameConflict> {
        self.name_conflict.as_ref()
    }

    /// True once a [`Cluster::leave`] has propagated and this node went silent: drain
    /// [`Cluster::poll_datagram`] once more, then shut down.
    pub fn ready_to_shutdown(&self) -> bool {
        self.state == SelfState::Left
    }

    // ----- inputs --------------------------------------------------------------------

    /// A datagram arrived on `pool`'s socket from `from`.
    pub fn handle_datagram(&mut self, pool: Pool, from: SocketAddr, data: &[u8], now: Instant) {
        self.stats.datagrams_in += 1;
        self.last_now = self.last_now.max(now);
        if self.state == SelfState::Left {
            // Gone silent: foca would hear it is down and, its identity being renewable,
            // rejoin under a new one (foca has no "left").
            return;
        }
        let max = self.pool(pool).map_or(0, |p| p.timing.max_packet_size);
        if data.len() > max {
            self.stats.bad_datagrams += 1;
            return;
        }
        let mut scratch = core::mem::take(&mut self.open_scratch);
        match self.out.crypt.open(data, &mut scratch) {
            Ok(plain) if pool == Pool::Lan && rtt::is_coord(plain) => {
                self.on_coord(from, plain, now);
            }
            Ok(plain) => match Frame::decode(plain) {
                Ok(Frame::Foca {
                    meta_version,
                    packet,
                }) => self.on_foca(pool, from, meta_version, packet, now),
                Ok(Frame::Pull(pull, listed)) => self.on_pull(pool, from, pull, &listed, now),
                Ok(Frame::Push(header, items)) => self.on_push(pool, from, header, &items, now),
                Ok(Frame::Response(resp)) if pool == Pool::Lan => self.on_response(resp, now),
                Ok(Frame::Relay { dest, frame }) => self.on_relay(pool, dest, frame, now),
                Ok(Frame::Response(_)) => self.stats.bad_datagrams += 1,
                Err(_) => self.stats.bad_datagrams += 1,
            },
            Err(_) => self.stats.decrypt_failures += 1,
        }
        self.open_scratch = scratch;
    }

    /// The runtime learned that datagrams from `pool`'s socket to `addr` are not
    /// delivered: nothing listens there (ICMP port unreachable, which a connected UDP
    /// socket reports as `ECONNREFUSED`). Joins waiting for `addr` give it up at once with
    /// `connection refused` instead of after `join_timeout`; members are left to SWIM's
    /// probes (a report is no proof: anyone can forge the ICMP). Reports about addresses no
    /// join waits for change nothing.
    pub fn handle_unreachable(&mut self, pool: Pool, addr: SocketAddr, now: Instant) {
        if self.fail_join_target(pool, addr, TargetFailure::Refused) {
            self.stats.unreachable_reports += 1;
        }
        let _ = now;
    }

    /// Timers due at or before `now` fire, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        while let Some((_, task)) = self.timers.pop_due(now) {
            if let Task::Foca(pool, foca::Timer::RemoveDown(id)) = &task
                && let Some(p) = self.pool_mut(*pool)
            {
                // The one pending for this address (an earlier one was cancelled).
                p.remove_down.remove(&id.addr);
            }
            match task {
                Task::Foca(_, _) if self.state == SelfState::Left => {}
                Task::Foca(pool, timer) => {
                    let r = self.foca_call(pool, now, |f, io| f.handle_timer(timer, io));
                    if matches!(r, Some(Err(_))) {
                        self.stats.foca_errors += 1;
                    }
                    self.settle(pool, now);
                }
                Task::Join(id) => self.join_tick(id, now),
                Task::Leave => self.leave_tick(now),
                Task::Pull(pool) => self.pull_tick(pool, now),
                Task::Reap(pool) => self.reap_tick(pool, now),
                Task::Reconnect(pool) => self.reconnect_tick(pool, now),
                Task::Sync(pool) => self.sync_tick(pool, now),
                Task::Explain(pool, addr) => self.explain_tick(pool, addr, now),
                Task::LeaveDue(pool, addr) => self.leave_due_tick(pool, addr, now),
                Task::QueryDone(ltime) => self.query_done(ltime),
                Task::QueryExpire(handle) => self.query_expire(handle, now),
                Task::CoordPing => self.coord_ping_tick(now),
                Task::Release(pool, addr) => {
                    let held = self.pool_mut(pool).and_then(|p| p.records.get_mut(&addr));
                    if let Some(rec) = held.filter(|r| r.hold) {
                        rec.hold = false;
                        self.sync(pool, addr);
                    }
                }
            }
        }
    }

    // ----- commands ------------------------------------------------------------------

    /// Mixes `extra` (the runtime's wall-clock start, say) into the generator of sealing
    /// nonces, which is otherwise derived from the seed alone: an embedder that passes the
    /// same seed at every start would then reuse nonces under the same key, which AES-GCM
    /// does not survive. The same seed and `extra` still give the same outputs.
    pub fn mix_nonce_entropy(&mut self, extra: u64) {
        self.out.crypt.mix_entropy(extra);
    }

    /// Puts a new keyring in force at once: outgoing datagrams are sealed with its primary
    /// key, incoming ones opened with any of its keys. This is how keys rotate (install the
    /// new key everywhere, make it primary everywhere, remove the old one), and how
    /// encryption is turned on or off in a running cluster (with the verify flags off in
    /// between). foca's packet budget follows the sealing overhead.
    pub fn set_keyring(&mut self, keyring: Keyring) {
        self.out.crypt.set(&keyring);
        self.cfg.keyring = keyring;
        let overhead = self.out.crypt.overhead();
        let (expected, reap_after) = (self.cfg.expected_members, self.cfg.reap_after);
        for pool in self.pools() {
            let Some(p) = self.pool_mut(pool).filter(|p| p.overhead != overhead) else {
                continue;
            };
            p.overhead = overhead;
            let n = (p.foca.num_members() + 1).max(expected);
            // Only the packet size changes, which foca accepts.
            let _ = p
                .foca
                .set_config(p.timing.foca_config(n, reap_after, overhead));
        }
    }

    /// Joins the cluster `addrs` belong to: announces to each, again every `join_retry`
    /// until it answers or `join_timeout` passes. [`Cluster::poll_join`] then reports how
    /// many answered; partial success is no error. An empty list reports 0 at once.
    pub fn join(
        &mut self,
        pool: Pool,
        addrs: &[SocketAddr],
        now: Instant,
    ) -> Result<JoinId, ClusterError> {
        self.join_replay(pool, addrs, false, now)
    }

    /// [`Cluster::join`], with Serf's `Replay`: the members answering the join send every
    /// recent user event they hold, and those are delivered here (as events) instead of
    /// only the ones after the join. Events this node has seen or that precede its event
    /// floor (a restored snapshot's clock) are still not delivered again.
    pub fn join_replay(
        &mut self,
        pool: Pool,
        addrs: &[SocketAddr],
        replay: bool,
        now: Instant,
    ) -> Result<JoinId, ClusterError> {
        if pool == Pool::Wan && !self.cfg.server {
            return Err(ClusterError::NotServer);
        }
        if self.state != SelfState::Active {
            return Err(ClusterError::Left);
        }
        if self.joins.len() >= self.cfg.limits.max_joins {
            return Err(ClusterError::TooManyJoins);
        }
        let Some(p) = self.pool_mut(pool) else {
            return Err(ClusterError::NotServer);
        };
        let me = p.me().addr;
        let mut targets: Vec<(SocketAddr, Target)> = Vec::new();
        for a in addrs {
            if !targets.iter().any(|(t, _)| t == a) {
                // Our own address is no member to join: say so rather than count it.
                let state = if *a == me {
                    Target::Failed(TargetFailure::Own)
                } else {
                    Target::Pending
                };
                targets.push((*a, state));
            }
        }
        if targets.len() > MAX_JOIN_ADDRS {
            return Err(ClusterError::TooManyJoinAddrs {
                given: targets.len(),
            });
        }
        p.join_addrs = targets
            .iter()
            .filter(|(a, _)| *a != me)
            .map(|(a, _)| *a)
            .take(RECONNECT_ADDRS)
            .collect();
        let id = JoinId(self.next_join);
        self.next_join = self.next_join.wrapping_add(1);
        self.joins.push(JoinAttempt {
            id,
            pool,
            targets,
            deadline: now + self.cfg.join_timeout,
            replay,
        });
        if !self.finish_join_if_answered(id) {
            self.announce_unanswered(id, now);
            self.schedule_join(id, now);
        }
        Ok(id)
    }

    /// Leaves gracefully: broadcasts a leave record (peers show `leaving`), and after
    /// `leave_propagate_delay` goes silent (peers show `left`), then
    /// [`Cluster::ready_to_shutdown`] turns true. A second call does nothing.
    pub fn leave(&mut self, now: Instant) {
        if self.state != SelfState::Active {
            return;
        }
        self.state = SelfState::Leaving;
        for pool in self.pools() {
            let Some(p) = self.pool_mut(pool) else {
                continue;
            };
            let me = p.me();
            let record = Item::Leave(Leave {
                id: me,
                prune: false,
                forced: false,
            });
            add_broadcast(&mut p.foca, &record);
            let _ = self.foca_call(pool, now, |f, io| f.gossip(io));
            self.settle(pool, now);
            self.sync(pool, me.addr);
            self.tell_everyone_we_leave(pool, false);
        }
        let at = now + self.cfg.leave_propagate_delay;
        self.timers.schedule(at, Task::Leave);
    }

    /// Turns a failed member named `name` into `left`, in every pool, and tells the
    /// cluster; with `prune` it is also removed from the member list (`member-reap`). A
    /// member that is alive is left alone (it would refute, as in Serf), and an unknown
    /// name is no error.
    pub fn force_leave(
        &mut self,
        name: &str,
        prune: bool,
        now: Instant,
    ) -> Result<(), ClusterError> {
        for pool in self.pools() {
            let Some(p) = self.pool_mut(pool) else {
                continue;
            };
            let targets: Vec<NodeId> = p.gossip.with(|g| {
                p.records
                    .iter()
                    .filter(|(_, r)| !r.is_self && !r.active && !r.pruned)
                    .filter(|(addr, _)| g.metas.get(*addr).is_some_and(|m| m.name == name))
                    .map(|(_, r)| r.id)
                    .collect()
            });
            for id in targets {
                let record = Item::Leave(Leave {
                    id,
                    prune,
                    forced: true,
                });
                add_broadcast(&mut p.foca, &record);
            }
            self.settle(pool, now);
        }
        Ok(())
    }

    /// Changes this node's tags: deletes `delete`, then sets `set` (Serf's order). Peers
    /// see a `member-update`. Refused, changing nothing, if the tags would encode to more
    /// than [`TAGS_LIMIT`] bytes.
    pub fn set_tags(
        &mut self,
        set: &[(String, String)],
        delete: &[String],
        now: Instant,
    ) -> Result<(), ClusterError> {
        let (old_runtime, old_deleted) = (self.runtime_tags.clone(), self.deleted_tags.clone());
        for k in delete {
            self.runtime_tags.remove(k);
            self.deleted_tags.insert(k.clone());
        }
        for (k, v) in set {
            self.deleted_tags.remove(k);
            self.runtime_tags.insert(k.clone(), v.clone());
        }
        let tags = self.tags();
        let too_long = tags.iter().any(|(k, v)| k.len() > 255 || v.len() > 255);
        if too_long || wire::tags_len(&tags) > TAGS_LIMIT {
            self.runtime_tags = old_runtime;
            self.deleted_tags = old_deleted;
            return Err(ClusterError::TagsTooLarge);
        }
        for pool in self.pools() {
            if let Some(p) = self.pool_mut(pool) {
                p.version = p.version.wrapping_add(1);
            }
            self.broadcast_meta(pool, now);
            self.settle(pool, now);
        }
        Ok(())
    }

    /// Sends a user event to every node of the LAN pool, this one included (as a
    /// [`ClusterEvent::User`]). Refused if name plus payload exceed [`USER_EVENT_LIMIT`].
    pub fn user_event(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
        now: Instant,
    ) -> Result<(), ClusterError> {
        if name.len() + payload.len() > USER_EVENT_LIMIT {
            return Err(ClusterError::UserEventTooLarge);
        }
        if self.state == SelfState::Left {
            return Err(ClusterError::Left);
        }
        let p = &mut self.lan;
        p.gossip.with(|g| g.now = now);
        let item = Item::User(UserItem {
            origin: p.me(),
            ltime: p.gossip.with(|g| g.events.clock),
            coalesce,
            name: String::from(name),
            payload: Vec::from(payload),
        });
        add_broadcast(&mut p.foca, &item);
        self.settle(Pool::Lan, now);
        Ok(())
    }

    // ----- outputs -------------------------------------------------------------------

    /// The next datagram to send, without taking it: send `bytes` to `to` from `pool`'s
    /// socket, then [`Cluster::pop_datagram`]. On `WouldBlock`, leave it queued.
    #[must_use]
    pub fn peek_datagram(&self) -> Option<(Pool, SocketAddr, &[u8])> {
        self.out.peek()
    }

    /// Drops the datagram [`Cluster::peek_datagram`] returned (its buffer is reused).
    pub fn pop_datagram(&mut self) {
        self.out.pop();
    }

    /// The next datagram to send, taken: `(pool, to, bytes)`.
    #[must_use]
    pub fn poll_datagram(&mut self) -> Option<(Pool, SocketAddr, Vec<u8>)> {
        self.out.take()
    }

    /// The next member or user event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClusterEvent> {
        self.events.pop_front()
    }

    /// The next finished join. Never dropped: at most `limits.max_joins` are pending.
    #[must_use]
    pub fn poll_join(&mut self) -> Option<JoinOutcome> {
        self.done_joins.pop_front()
    }

    /// When [`Cluster::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ----- internals: pools and foca ----------------------------------------------------

    fn pools(&self) -> Vec<Pool> {
        let mut v = Vec::from([Pool::Lan]);
        if self.wan.is_some() {
            v.push(Pool::Wan);
        }
        v
    }

    fn pool(&self, pool: Pool) -> Option<&PoolState> {
        match pool {
            Pool::Lan => Some(&self.lan),
            Pool::Wan => self.wan.as_ref(),
        }
    }

    fn pool_mut(&mut self, pool: Pool) -> Option<&mut PoolState> {
        match pool {
            Pool::Lan => Some(&mut self.lan),
            Pool::Wan => self.wan.as_mut(),
        }
    }

    /// Runs `f` on the pool's foca with a runtime adapter over the cluster's queues.
    /// Callers follow it with [`Cluster::settle`].
    fn foca_call<R>(
        &mut self,
        pool: Pool,
        now: Instant,
        f: impl FnOnce(&mut FocaT, &mut Io<'_>) -> R,
    ) -> Option<R> {
        let max_backlog = self.cfg.limits.max_members + 256;
        let Cluster {
            lan,
            wan,
            timers,
            out,
            notes,
            ..
        } = self;
        let p = match pool {
            Pool::Lan => lan,
            Pool::Wan => wan.as_mut()?,
        };
        let room = p.foca.custom_broadcast_backlog() < max_backlog;
        p.gossip.with(|g| {
            g.now = now;
            g.room = room;
        });
        let mut io = Io {
            pool,
            now,
            version: p.version,
            timers,
            remove_down: &mut p.remove_down,
            out,
            notes,
        };
        Some(f(&mut p.foca, &mut io))
    }

    /// foca stopped probing: check on it soon (see `reconnect_tick`).
    fn disconnected(&mut self, pool: Pool, now: Instant) {
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        p.connected = false;
        let at = now + p.timing.probe_period * 2;
        self.schedule_reconnect(pool, at);
    }

    /// Handles what the last foca call (or local broadcast) left behind: notifications
    /// first (foca applies membership updates before custom broadcasts), then the items the
    /// handler stored, until neither produces more. Then re-derives foca's timing from the
    /// member count.
    fn settle(&mut self, pool: Pool, now: Instant) {
        loop {
            if let Some(note) = self.notes.pop_front() {
                self.on_note(pool, note, now);
                continue;
            }
            let batch = match self.pool(pool) {
                Some(p) => p.gossip.with(|g| core::mem::take(&mut g.inbox)),
                None => Vec::new(),
            };
            if batch.is_empty() {
                break;
            }
            for item in batch {
                self.on_inbound(pool, item, now);
            }
        }
        self.retune(pool);
    }

    fn retune(&mut self, pool: Pool) {
        let expected = self.cfg.expected_members;
        let reap_after = self.cfg.reap_after;
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        let n = (p.foca.num_members() + 1).max(expected);
        let tuned = (p.timing.max_transmissions(n), p.timing.suspicion_timeout(n));
        if tuned != p.tuned
            && p.foca
                .set_config(p.timing.foca_config(n, reap_after, p.overhead))
                .is_ok()
        {
            p.tuned = tuned;
        }
    }

    fn on_note(&mut self, pool: Pool, note: OwnedNotification<NodeId>, now: Instant) {
        let reap_after = self.cfg.reap_after;
        match note {
            OwnedNotification::MemberUp(id) => {
                let Some(p) = self.pool_mut(pool) else {
                    return;
                };
                let rec = p
                    .records
                    .entry(id.addr)
                    .or_insert_with(|| Record::new(id, false));
                if rec.is_self {
                    return;
                }
                rec.id = id;
                rec.active = true;
                rec.down_since = None;
                rec.hold = false;
                if rec.pruned {
                    // A new life after a prune is a new member.
                    rec.pruned = false;
                    rec.shown = None;
                }
                self.want_meta_of(pool, id, now);
                self.sync(pool, id.addr);
            }
            OwnedNotification::MemberDown(id) => {
                let Some(p) = self.pool_mut(pool) else {
                    return;
                };
                let explained = p
                    .gossip
                    .with(|g| g.leaves.get(&id.addr).is_some_and(|l| l.covers(id)));
                if let Some(rec) = p.records.get_mut(&id.addr).filter(|r| !r.is_self) {
                    rec.active = false;
                    rec.down_since = Some(now);
                    // If it left, its leave record may be in this very packet or still on
                    // its way: hold `member-failed` back a moment, ask around (see
                    // `explain_tick`), then decide.
                    rec.hold = !explained;
                    self.schedule_reap(pool, now + reap_after);
                    if !explained {
                        let wait = self.cfg.pull_interval / 4;
                        self.timers
                            .schedule(now + wait, Task::Explain(pool, id.addr));
                        self.timers
                            .schedule(now + wait * 2, Task::Release(pool, id.addr));
                    }
                }
                self.sync(pool, id.addr);
            }
            OwnedNotification::Rename(old, new) => {
                let Some(p) = self.pool_mut(pool) else {
                    return;
                };
                if let Some(rec) = p.records.get_mut(&old.addr).filter(|r| !r.is_self) {
                    rec.id = new;
                }
                self.want_meta_of(pool, new, now);
                self.sync(pool, new.addr);
            }
            OwnedNotification::Rejoin(new) => {
                self.disconnected(pool, now);
                // We were declared down while alive and came back as `new`: our meta and
                // records follow the new identity, and peers learn it with a fresh meta.
                let leaving = self.state == SelfState::Leaving;
                let Some(p) = self.pool_mut(pool) else {
                    return;
                };
                p.gossip.with(|g| g.me = new);
                if let Some(rec) = p.records.get_mut(&new.addr) {
                    rec.id = new;
                }
                if leaving {
                    // Suspected and renewed mid-leave: the leave must name the new identity.
                    let record = Item::Leave(Leave {
                        id: new,
                        prune: false,
                        forced: false,
                    });
                    add_broadcast(&mut p.foca, &record);
                }
                self.broadcast_meta(pool, now);
                if leaving {
                    // Peers that learn the new identity but hold only the old record would
                    // show `failed`: tell each of them directly.
                    self.tell_everyone_we_leave(pool, false);
                }
            }
            OwnedNotification::Active => {
                if let Some(p) = self.pool_mut(pool) {
                    p.connected = true;
                    p.first_connected.get_or_insert(now);
                }
            }
            OwnedNotification::Idle | OwnedNotification::Defunct => self.disconnected(pool, now),
        }
    }

    fn on_inbound(&mut self, pool: Pool, item: Inbound, now: Instant) {
        match item {
            Inbound::Meta(addr) => {
                if let Some(p) = self.pool_mut(pool) {
                    let have = p.have(&addr);
                    let done = p.wanted.get(&addr).is_some_and(|w| {
                        !w.force && have.is_some_and(|h| fresher(h, w.need) != Ordering::Less)
                    });
                    if done {
                        p.wanted.remove(&addr);
                    }
                }
                self.sync(pool, addr);
            }
            Inbound::Leave(addr) => {
                self.expect_silence(pool, addr, now);
                self.sync(pool, addr);
            }
            Inbound::User(u) => self.push_event(ClusterEvent::User(UserEvent {
                ltime: u.ltime,
                name: u.name,
                payload: u.payload,
                coalesce: u.coalesce,
            })),
            Inbound::Query(q) if pool == Pool::Lan => self.on_query(q, now),
            Inbound::Query(_) => {}
            Inbound::SelfStale(version) => self.refute(pool, version, now),
        }
    }

    /// A peer holds a meta of ours at a `version` above ours (from a previous life at this
    /// identity): go above it and re-broadcast.
    fn refute(&mut self, pool: Pool, version: u32, now: Instant) {
        if let Some(p) = self.pool_mut(pool)
            && version > p.version
        {
            p.version = version.wrapping_add(1);
            self.broadcast_meta(pool, now);
        }
    }

    /// Queues our meta as a custom broadcast (stored locally too).
    fn broadcast_meta(&mut self, pool: Pool, now: Instant) {
        let tags = self.tags();
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        let meta = Item::Meta(Meta {
            id: p.me(),
            version: p.version,
            name: p.name.clone(),
            tags,
        });
        add_broadcast(&mut p.foca, &meta);
        let _ = now;
    }

    /// Brings a member's shown status up to date and emits the event the change means:
    /// the only place member events are produced.
    fn sync(&mut self, pool: Pool, addr: SocketAddr) {
        let state = self.state;
        let last_now = self.last_now;
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        let Some(rec) = p.records.get_mut(&addr) else {
            return;
        };
        if rec.pruned {
            return;
        }
        let (meta, leave) = p
            .gossip
            .with(|g| (g.metas.get(&addr).cloned(), g.leaves.get(&addr).copied()));
        let Some(meta) = meta else {
            return;
        };
        if rec.active && !rec.is_self && meta.id.bump != rec.id.bump {
            // Back from the dead under a new identity: announce it once its new meta (a
            // broadcast, or a pull) says who it is now.
            return;
        }
        // Held (down, `member-failed` waiting): nothing changes until it is released or
        // its leave record arrives.
        let mut status = rec.status(leave.as_ref(), state);
        if rec.hold && !rec.active && status != MemberStatus::Left {
            return;
        }
        if matches!(status, MemberStatus::Failed | MemberStatus::Leaving)
            && rec.shown.is_some_and(|s| s.status == MemberStatus::Left)
        {
            // A member that left stays left until a new life of it is up. A newer identity
            // of its address heard of while it is down (foca's rename) does not make it
            // `failed`, as its leave record names only the older one; and a new life at an
            // identity the record still covers (a restart at the same address begins at
            // bump 0) is not `leaving`: foca renews it until it outranks the old one, and
            // then it is `alive`, with its `member-join`.
            status = MemberStatus::Left;
        }
        let was_up = rec.shown.is_some_and(|s| s.status.is_up());
        if status.is_up() && !rec.is_self && !was_up {
            // Serf refuses a name already held by a live member (memberlist's conflicting
            // address): the newcomer is not shown while the holder lives. It is shown, and
            // replaces the holder's entry, once the holder is down (see below).
            let holder = p.gossip.with(|g| {
                p.records
                    .iter()
                    .find(|&(a, r)| {
                        *a != addr
                            && !r.pruned
                            && (r.active || r.is_self)
                            && r.shown.is_some_and(|s| s.status.is_up())
                            && g.metas.get(a).is_some_and(|m| m.name == meta.name)
                    })
                    .map(|(_, r)| r.is_self)
            });
            if let Some(holder_is_us) = holder {
                // We hold the name here, but if we are the one who just joined, the
                // cluster held it first: we yield (Serf's minority shuts down).
                let newcomer = p.newcomer_until.is_some_and(|t| last_now < t);
                self.stats.name_conflicts += 1;
                if holder_is_us && newcomer && self.name_conflict.is_none() {
                    self.name_conflict = Some(NameConflict {
                        pool,
                        name: meta.name.clone(),
                        holder: addr,
                    });
                    self.state = SelfState::Left;
                }
                return;
            }
        }
        let Some(rec) = p.records.get_mut(&addr) else {
            return;
        };
        let now_shown = Shown {
            status,
            fresh: meta.freshness(),
        };
        let before = rec.shown;
        let kind = transition(before, now_shown);
        rec.shown = Some(now_shown);
        let prune = !rec.is_self
            && status == MemberStatus::Left
            && leave.is_some_and(|l| l.prune && l.covers(rec.id));
        if prune {
            rec.pruned = true;
        }
        let is_self = rec.is_self;
        if status.is_up() && !is_self {
            // Serf keeps one member per name: a node back at a new address (a restart on
            // another port) replaces its `left` or `failed` entry at the old one, which
            // goes without an event, as in memberlist.
            let stale: Vec<SocketAddr> = p.gossip.with(|g| {
                p.records
                    .iter()
                    .filter(|&(a, r)| *a != addr && !r.active && !r.is_self && !r.pruned)
                    .filter(|&(a, _)| g.metas.get(a).is_some_and(|m| m.name == meta.name))
                    .map(|(a, _)| *a)
                    .collect()
            });
            for a in stale {
                if let Some(r) = p.records.get_mut(&a) {
                    r.pruned = true;
                }
            }
        }
        // A holder going down frees its name for a live member refused it.
        let refused: Vec<SocketAddr> = if was_up && !status.is_up() {
            p.gossip.with(|g| {
                p.records
                    .iter()
                    .filter(|&(a, r)| *a != addr && r.active && !r.pruned && r.shown.is_none())
                    .filter(|&(a, _)| g.metas.get(a).is_some_and(|m| m.name == meta.name))
                    .map(|(a, _)| *a)
                    .collect()
            })
        } else {
            Vec::new()
        };
        let view = MemberView::new(&meta, status);
        if let Some(kind) = kind {
            self.push_event(ClusterEvent::Member {
                kind,
                pool,
                members: Vec::from([view.clone()]),
            });
        }
        for a in refused {
            self.sync(pool, a);
        }
        if prune && before.is_some() {
            self.push_event(ClusterEvent::Member {
                kind: MemberEvent::Reap,
                pool,
                members: Vec::from([view]),
            });
        }
    }

    fn push_event(&mut self, event: ClusterEvent) {
        if let ClusterEvent::User(new) = &event
            && new.coalesce
        {
            // Serf's coalescing: a queued event of the same name is replaced by a newer one.
            let queued = self.events.iter_mut().rev().find_map(|e| match e {
                ClusterEvent::User(old) if old.coalesce && old.name == new.name => Some(old),
                _ => None,
            });
            if let Some(old) = queued {
                if new.ltime > old.ltime {
                    *old = new.clone();
                }
                return;
            }
        }
        // A query's end is never dropped: whoever waits for it would wait forever (at most
        // `max_queries` are in flight).
        if self.events.len() >= self.cfg.limits.max_events
            && !matches!(event, ClusterEvent::QueryDone(_))
        {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn schedule_reap(&mut self, pool: Pool, at: Instant) {
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        if p.reap_at.is_none_or(|t| at < t) {
            p.reap_at = Some(at);
            self.timers.schedule(at, Task::Reap(pool));
        }
    }

    fn reap_tick(&mut self, pool: Pool, now: Instant) {
        let reap_after = self.cfg.reap_after;
        let state = self.state;
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        p.reap_at = None;
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (addr, rec) in &p.records {
            if let (false, Some(since)) = (rec.active || rec.is_self, rec.down_since) {
                let at = since + reap_after;
                if at <= now {
                    due.push(*addr);
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        let mut reaped = Vec::new();
        let gone = due.clone();
        for addr in due {
            let Some(rec) = p.records.remove(&addr) else {
                continue;
            };
            p.wanted.remove(&addr);
            p.answered.remove(&addr);
            let (meta, leave) = p
                .gossip
                .with(|g| (g.metas.remove(&addr), g.leaves.remove(&addr)));
            if let (Some(meta), Some(_), false) = (meta, rec.shown, rec.pruned) {
                reaped.push(MemberView::new(&meta, rec.status(leave.as_ref(), state)));
            }
        }
        if pool == Pool::Lan {
            for addr in gone {
                self.forget_coordinate(addr);
            }
        }
        for view in reaped {
            self.push_event(ClusterEvent::Member {
                kind: MemberEvent::Reap,
                pool,
                members: Vec::from([view]),
            });
        }
        if let Some(at) = next {
            self.schedule_reap(pool, at);
        }
    }
}

/// Queues an item of ours as a custom broadcast; foca runs it through the handler, which
/// stores it, so local commands take the same path as gossip.
fn add_broadcast(foca: &mut FocaT, item: &Item) {
    let mut buf = Vec::new();
    item.encode(&mut buf);
    // Items are within their limits by construction, far below a packet.
    let _ = foca.add_broadcast(&buf);
}

impl core::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.cfg.node_name)
            .field("lan", &self.lan.me())
            .field("wan", &self.wan.as_ref().map(PoolState::me))
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_can_move_between_threads() {
        fn is_send<T: Send>() {}
        is_send::<Cluster>();
    }

    #[test]
    fn a_new_cluster_shows_itself_and_announces_its_join() {
        let mut c = Cluster::new(ClusterConfig::default(), 1, Instant::ZERO);
        let me = c.members(Pool::Lan);
        assert_eq!(me.len(), 1);
        assert_eq!(
            (me[0].name.as_str(), me[0].status),
            ("tandem", MemberStatus::Alive)
        );
        assert_eq!(me[0].tags["role"], "node");
        match c.poll_event() {
            Some(ClusterEvent::Member {
                kind,
                pool,
                members,
            }) => {
                assert_eq!(
                    (kind, pool, members.len()),
                    (MemberEvent::Join, Pool::Lan, 1)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.poll_event(), None);
        assert!(
            c.members(Pool::Wan).is_empty(),
            "a client is in no WAN pool"
        );
        assert_eq!(
            c.join(Pool::Wan, &[], Instant::ZERO),
            Err(ClusterError::NotServer)
        );
    }

    #[test]
    fn hostile_datagrams_change_nothing() {
        use rand::Rng as _;
        let mut c = Cluster::new(ClusterConfig::default(), 2, Instant::ZERO);
        while c.poll_event().is_some() {}
        let from = SocketAddr::from(([10, 9, 9, 9], 8301));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut buf = [0u8; 200];
        for i in 0..20_000u32 {
            let len = rng.random_range(0..buf.len());
            rng.fill_bytes(&mut buf[..len]);
            // Valid frame kinds half the time, so the decoders behind them are reached.
            if i % 2 == 0 && len > 0 {
                buf[0] = [1, 2, 3, 4, 5, 6, 7][(i / 2 % 7) as usize];
            }
            c.handle_datagram(
                Pool::Lan,
                from,
                &buf[..len],
                Instant::from_millis(u64::from(i)),
            );
        }
        assert_eq!(c.members(Pool::Lan).len(), 1);
        assert_eq!(c.poll_event(), None);
        assert!(c.stats().bad_datagrams + c.stats().foca_errors > 0);
        assert!(c.stats().coordinates_rejected > 0);
        assert_eq!(c.coordinate(), Coordinate::new(&VivaldiConfig::default()));
    }
}
