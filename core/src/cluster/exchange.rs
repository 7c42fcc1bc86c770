//! The datagrams the cluster exchanges besides foca's own, and the repairs they carry.
//!
//! foca's gossip is lossy by design: an update is sent a few times and then dropped. What
//! the member view needs to be right (every member's meta, every leave record, user
//! events) is repaired here with PULL/PUSH exchanges:
//!
//! - a meta missing or stale (foca reported a member, or a FOCA datagram advertised a
//!   newer meta version) is pulled from its owner after a grace period, in one listed
//!   PULL when many are missing at once;
//! - a joiner pulls every meta and leave record from the member that answered it, then
//!   syncs again after 2, 4 and 8 probe periods; every node syncs with a random member
//!   every `sync_interval` (memberlist's push-pull), retrying while unanswered;
//! - a member that went down without a leave record is asked about at two random members
//!   before `member-failed` is emitted;
//! - a member whose leave record we hold is declared down by us when it should be silent.
//!
//! PULLs are answered for live members only, at most once per half pull interval each, and
//! PUSHes are taken from live members (or a join's addresses) only.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::net::SocketAddr;

use rand::RngExt as _;

use super::codec;
use super::gossip::fresher;
use super::identity::{self, NodeId};
use super::member::SelfState;
use super::pool::Want;
use super::timer::Task;
use super::wire::{
    self, Item, Pull, PushHeader, WANT_EVENTS, WANT_GONE, WANT_JOIN, WANT_LEAVES, WANT_METAS,
    WANT_REPLAY,
};
use super::{BULK_PULL, Cluster, PULLS_PER_TICK, Pool, SYNC_TRIES};
use crate::time::Instant;

impl Cluster {
    pub(super) fn on_foca(
        &mut self,
        pool: Pool,
        from: SocketAddr,
        meta_version: u32,
        packet: &[u8],
        now: Instant,
    ) {
        let mut addrs = core::mem::take(&mut self.addr_scratch);
        addrs.clear();
        let peeked = codec::peek(packet, |a| addrs.push(a));
        let admitted = match &peeked {
            Ok(pk) => self.admits(pool, pk.header.src.addr, &addrs),
            Err(_) => false,
        };
        self.addr_scratch = addrs;
        let me = self.pool(pool).map(|p| p.me().addr);
        let src = match peeked {
            Ok(pk) if Some(pk.header.src.addr) == me => {
                // Our own datagram came back: a join named one of our own addresses
                // (another IP of this host, or a wildcard bind's loopback).
                self.fail_join_target(pool, from, super::TargetFailure::Own);
                self.stats.bad_datagrams += 1;
                return;
            }
            Ok(pk) if admitted => pk.header.src,
            Ok(_) => {
                self.stats.members_refused += 1;
                return;
            }
            Err(_) => {
                self.stats.bad_datagrams += 1;
                return;
            }
        };
        // A sender that is no member cannot make anyone suspect or down: its suspect and
        // down claims about others are dropped, and so are its leave records about
        // others, user events and queries (see `Gossip::receive`). Its word that a member
        // is alive, and metas, still spread (they are how a crowd joining at once learns
        // itself, and a member refutes a stale copy of itself). SWIM lets anyone talk, so
        // this is as far as plaintext goes: a sender spoofing a member's address is
        // believed; encryption keeps strangers out entirely.
        let vouched = self.vouched(pool, from, src.addr);
        let keep = |a: SocketAddr, state: foca::State| {
            vouched || a == src.addr || state == foca::State::Alive
        };
        let mut stripped = core::mem::take(&mut self.strip_scratch);
        let packet = match codec::strip_members(packet, keep, &mut stripped) {
            Ok(true) => {
                self.stats.stranger_claims += 1;
                stripped.as_slice()
            }
            _ => packet,
        };
        if let Some(p) = self.pool(pool).filter(|_| !vouched) {
            p.gossip.with(|g| g.stranger = Some(src.addr));
        }
        let r = self.foca_call(pool, now, |f, io| f.handle_data(packet, io));
        if let Some(p) = self.pool(pool) {
            p.gossip.with(|g| g.stranger = None);
        }
        self.strip_scratch = stripped;
        match r {
            Some(Ok(())) => {}
            Some(Err(_)) => self.stats.foca_errors += 1,
            None => {
                self.stats.bad_datagrams += 1;
                return;
            }
        }
        self.settle(pool, now);
        self.mark_join_answer(pool, from, src.addr, now);
        self.check_advertised(pool, src, meta_version, now);
    }

    /// Whether the sender of a packet is one whose word on other members counts: a member
    /// shown in the member list (it told us its name), or an address a join or a reconnect
    /// of ours announced to (whose answer is how we learn the cluster).
    pub(super) fn vouched(&self, pool: Pool, from: SocketAddr, src: SocketAddr) -> bool {
        let Some(p) = self.pool(pool) else {
            return false;
        };
        let is = |a: &SocketAddr| *a == from || *a == src;
        p.records
            .get(&src)
            .is_some_and(|r| !r.is_self && !r.pruned && r.shown.is_some())
            || p.join_addrs.iter().any(is)
            || self
                .joins
                .iter()
                .any(|j| j.pool == pool && j.targets.iter().any(|(t, _)| is(t)))
    }

    /// Whether a packet from `src` carrying members `addrs` keeps the pool within
    /// `max_members`. Exact only near the limit, where it is worth the walk.
    pub(super) fn admits(&self, pool: Pool, src: SocketAddr, addrs: &[SocketAddr]) -> bool {
        let max = self.cfg.limits.max_members;
        let Some(p) = self.pool(pool) else {
            return false;
        };
        let known = p.foca.iter_membership_state().len();
        if known + 1 + addrs.len() <= max {
            return true;
        }
        let me = p.me().addr;
        let mut members: BTreeSet<SocketAddr> = p
            .foca
            .iter_membership_state()
            .map(|m| m.id().addr)
            .collect();
        for a in core::iter::once(&src).chain(addrs) {
            if *a != me {
                members.insert(*a);
            }
        }
        members.len() <= max
    }

    /// Compares the meta version a member advertises with ours of it.
    pub(super) fn check_advertised(&mut self, pool: Pool, src: NodeId, version: u32, now: Instant) {
        let grace = self.cfg.pull_interval;
        let Some(p) = self.pool(pool) else {
            return;
        };
        if src.addr == p.me().addr {
            return;
        }
        let theirs = (src.bump, version);
        match p.have(&src.addr) {
            None => self.want(pool, src.addr, theirs, now + grace * 3, false),
            Some(have) => match fresher(have, theirs) {
                // A broadcast may still be on its way; ask if it does not come.
                Ordering::Less => self.want(pool, src.addr, theirs, now + grace, false),
                // It restarted and forgot its versions: tell it what we hold.
                Ordering::Greater if have.0 == src.bump => {
                    self.want(pool, src.addr, have, now, true);
                }
                _ => {}
            },
        }
    }

    /// Wants the meta of a member foca reports, unless we hold one for its identity.
    pub(super) fn want_meta_of(&mut self, pool: Pool, id: NodeId, now: Instant) {
        // Longer than for a stale version: a new member's meta usually comes with its
        // broadcast or the next sync, and a crowd joining at once must not pull one by one.
        let grace = self.cfg.pull_interval * 3;
        let Some(p) = self.pool(pool) else {
            return;
        };
        let stale = p
            .have(&id.addr)
            .is_none_or(|h| identity::bump_cmp(h.0, id.bump) == Ordering::Less);
        if stale {
            self.want(pool, id.addr, (id.bump, 0), now + grace, false);
        }
    }

    pub(super) fn want(
        &mut self,
        pool: Pool,
        addr: SocketAddr,
        need: (u16, u32),
        at: Instant,
        force: bool,
    ) {
        let max = self.cfg.limits.max_members;
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        if p.wanted.len() >= max && !p.wanted.contains_key(&addr) {
            return;
        }
        let w = p.wanted.entry(addr).or_insert(Want {
            need,
            at,
            force,
            sent: None,
        });
        if fresher(need, w.need) == Ordering::Greater {
            w.need = need;
        }
        w.at = w.at.min(at);
        w.force |= force;
        let at = w.at;
        if p.pull_at.is_none_or(|t| at < t) {
            p.pull_at = Some(at);
            self.timers.schedule(at, Task::Pull(pool));
        }
    }

    pub(super) fn pull_tick(&mut self, pool: Pool, now: Instant) {
        let interval = self.cfg.pull_interval;
        let mut sends: Vec<(SocketAddr, Pull)> = Vec::new();
        {
            let Some(p) = self.pool_mut(pool) else {
                return;
            };
            p.pull_at = None;
            let me = p.me();
            let version = p.version;
            let due: Vec<SocketAddr> = p
                .wanted
                .iter()
                .filter(|(_, w)| w.at <= now)
                .map(|(a, _)| *a)
                .take(PULLS_PER_TICK)
                .collect();
            for addr in due {
                let have = p.have(&addr);
                let alive = p.records.get(&addr).is_some_and(|r| r.active && !r.is_self);
                let Some(w) = p.wanted.get_mut(&addr) else {
                    continue;
                };
                let needed = w.force || have.is_none_or(|h| fresher(h, w.need) == Ordering::Less);
                if !alive || !needed {
                    p.wanted.remove(&addr);
                    continue;
                }
                if let Some(sent) = w.sent.filter(|s| now < *s + interval) {
                    w.at = sent + interval;
                    continue;
                }
                w.sent = Some(now);
                w.force = false;
                w.at = now + interval;
                sends.push((
                    addr,
                    Pull {
                        requester: me,
                        requester_version: version,
                        known: have.unwrap_or((0, 0)),
                        wants: 0,
                    },
                ));
            }
        }
        if sends.len() > BULK_PULL {
            // Many metas missing at once (a crowd joined): ask one member of each batch for
            // all the batch's metas it knows, in one datagram, where one pull each would
            // take two datagrams each. Those it does not know are asked for next tick.
            for batch in sends.chunks(wire::PULL_MAX_LISTED + 1) {
                let i = self.rng.random_range(0..batch.len());
                let Some(&(to, pull)) = batch.get(i) else {
                    continue;
                };
                let listed: Vec<SocketAddr> =
                    batch.iter().map(|(a, _)| *a).filter(|a| *a != to).collect();
                self.stats.pulls_sent += 1;
                self.out
                    .push(pool, to, |b| wire::encode_pull(b, &pull, &listed));
            }
        } else {
            for (to, pull) in sends {
                self.send_pull(pool, to, &pull);
            }
        }
        if let Some(p) = self.pool_mut(pool)
            && let Some(at) = p.wanted.values().map(|w| w.at).min()
        {
            let at = at.max(now);
            p.pull_at = Some(at);
            self.timers.schedule(at, Task::Pull(pool));
        }
    }

    pub(super) fn send_pull(&mut self, pool: Pool, to: SocketAddr, pull: &Pull) {
        self.stats.pulls_sent += 1;
        self.out.push(pool, to, |b| wire::encode_pull(b, pull, &[]));
    }

    pub(super) fn on_pull(
        &mut self,
        pool: Pool,
        from: SocketAddr,
        pull: Pull,
        listed: &[SocketAddr],
        now: Instant,
    ) {
        let interval = self.cfg.pull_interval;
        let sync_interval = self.cfg.sync_interval;
        let max = self.cfg.limits.max_members;
        let Some(p) = self.pool_mut(pool) else {
            self.stats.bad_datagrams += 1;
            return;
        };
        let requester = pull.requester.addr;
        // Answer members only (no reflection for strangers), once per half interval each.
        let member = p
            .records
            .get(&requester)
            .is_some_and(|r| r.active && !r.is_self);
        let recent = p
            .answered
            .get(&requester)
            .is_some_and(|t| now < *t + interval / 2);
        if !member || recent {
            return;
        }
        if p.answered.len() >= max {
            p.answered.retain(|_, t| now < *t + interval);
        }
        p.answered.insert(requester, now);
        let me = p.me();
        if pull.known.0 == me.bump && pull.known.1 > p.version {
            self.refute(pool, pull.known.1, now);
            self.settle(pool, now);
        }
        self.check_advertised(pool, pull.requester, pull.requester_version, now);
        let Some(p) = self.pool(pool) else {
            return;
        };
        let max_len = p.plain_max();
        let (header, items) = p.gossip.with(|g| {
            let mut items: Vec<Vec<u8>> = Vec::new();
            let mut add = |item: Item| {
                let mut b = Vec::new();
                item.encode(&mut b);
                items.push(b);
            };
            if pull.wants & WANT_METAS != 0 {
                for (addr, rec) in &p.records {
                    if let (true, Some(m)) = (rec.active, g.metas.get(addr)) {
                        add(Item::Meta(m.clone()));
                    }
                }
            } else {
                for addr in core::iter::once(&me.addr).chain(listed) {
                    if let Some(m) = g.metas.get(addr) {
                        add(Item::Meta(m.clone()));
                    }
                }
            }
            if pull.wants & WANT_LEAVES != 0 {
                for l in g.leaves.values() {
                    add(Item::Leave(*l));
                }
            }
            if pull.wants & WANT_EVENTS != 0 {
                // Only young events: a node that joined since must not have old ones
                // replayed (Serf replays only on request).
                let replay = pull.wants & WANT_REPLAY != 0;
                for (at, u) in &g.events.recent {
                    if replay || now < *at + sync_interval * 2 {
                        add(Item::User(u.clone()));
                    }
                }
            }
            let header = PushHeader {
                wants: pull.wants,
                event_clock: g.events.clock,
            };
            (header, items)
        });
        self.stats.pulls_answered += 1;
        let out = &mut self.out;
        // Joins and syncs are answered even when empty: the asker waits for an answer.
        let always = pull.wants & (WANT_JOIN | WANT_EVENTS) != 0;
        wire::pack_push(header, items.into_iter(), max_len, always, |d| {
            out.push(pool, from, |b| b.extend_from_slice(d));
        });
    }

    pub(super) fn on_push(
        &mut self,
        pool: Pool,
        from: SocketAddr,
        header: PushHeader,
        items: &[&[u8]],
        now: Instant,
    ) {
        // Only members (and the addresses a join is waiting on) are listened to.
        let joining = self
            .joins
            .iter()
            .any(|j| j.pool == pool && j.targets.iter().any(|(t, _)| *t == from));
        let Some(p) = self
            .pool(pool)
            .filter(|p| joining || p.records.get(&from).is_some_and(|r| r.active && !r.is_self))
        else {
            self.stats.bad_datagrams += 1;
            return;
        };
        let me = p.me();
        let gossip = p.gossip.clone();
        // A join's answer sets the event floor only if it comes right after the node got
        // in (one round trip after the Feed): a late one (its Feed was lost, and the node
        // got in through others) must not hide events that happened after it was in.
        let first_look = p
            .first_connected
            .is_none_or(|t| now <= t + p.timing.probe_rtt);
        let mut bad = 0;
        let mut alive: Vec<NodeId> = Vec::new();
        gossip.with(|g| {
            g.now = now;
            if header.wants & WANT_JOIN != 0 && first_look {
                g.events.clock = g.events.clock.max(header.event_clock);
                // Serf without `Replay`: events from before we joined are not ours.
                if header.wants & WANT_REPLAY == 0 {
                    g.events.min_time = g.events.min_time.max(header.event_clock);
                }
            }
            for raw in items {
                // Direct answers are not re-broadcast: they are news to us alone.
                match Item::decode(raw) {
                    Ok(item) => {
                        if let Item::Meta(m) = &item
                            && m.id.addr != me.addr
                        {
                            alive.push(m.id);
                        }
                        g.receive(item, false);
                    }
                    Err(_) => bad += 1,
                }
            }
        });
        self.stats.bad_datagrams += bad;
        if header.wants & WANT_GONE != 0 {
            // The sender is going silent now: if its leave record covers the identity we
            // know, it is down (see `leave_due_tick`).
            self.settle(pool, now);
            self.leave_due_tick(pool, from, now);
        }
        if header.wants & WANT_EVENTS != 0 {
            let every = self.cfg.sync_interval;
            if let Some(p) = self.pool_mut(pool).filter(|p| p.sync_tries > 0) {
                p.sync_tries = 0;
                // Just after a join, sync again soon (2, 4, 8 probe periods): nodes that
                // join together know little yet when they first ask.
                let next = if p.sync_boost > 0 {
                    p.sync_boost -= 1;
                    p.timing.probe_period * (1 << (3 - p.sync_boost.min(2)))
                } else {
                    every
                };
                p.sync_at = Some(now + next);
                self.timers.schedule(now + next, Task::Sync(pool));
            }
        }
        // Metas come from the sender's live members: teach foca the ones it missed (a
        // join's Feed holds only what fits a packet, and updates stop after a few
        // transmissions). Alive at incarnation 0 changes nothing foca knows better.
        let mut addrs = core::mem::take(&mut self.addr_scratch);
        addrs.clear();
        addrs.extend(alive.iter().map(|id| id.addr));
        let admitted = self.admits(pool, me.addr, &addrs);
        self.addr_scratch = addrs;
        if admitted && !alive.is_empty() {
            let members = alive.into_iter().map(foca::Member::alive);
            let _ = self.foca_call(pool, now, |f, io| f.apply_many(members, false, io));
        } else if !admitted {
            self.stats.members_refused += 1;
        }
        self.settle(pool, now);
    }

    /// Pulls everything from one random live member: memberlist's push-pull, which repairs
    /// what lossy broadcasts missed.
    pub(super) fn sync_tick(&mut self, pool: Pool, now: Instant) {
        let every = self.cfg.sync_interval;
        let interval = self.cfg.pull_interval;
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        if p.sync_at.is_some_and(|t| t > now) {
            // A sooner sync replaced this one.
            return;
        }
        p.sync_at = None;
        // Pulls and answers are datagrams: until one answers, ask another member every
        // pull interval, a few times (an answer moves the next sync a full interval on).
        p.sync_tries = if p.sync_tries >= SYNC_TRIES {
            1
        } else {
            p.sync_tries + 1
        };
        let next = if p.sync_tries < SYNC_TRIES {
            interval
        } else {
            every
        };
        self.schedule_sync(pool, now + next);
        if self.state != SelfState::Active {
            return;
        }
        let peers = self.random_peers(pool, 1, None);
        for to in peers {
            self.send_state_pull(pool, to, WANT_METAS | WANT_LEAVES | WANT_EVENTS);
        }
    }

    pub(super) fn schedule_sync(&mut self, pool: Pool, at: Instant) {
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        if p.sync_at.is_none_or(|t| at < t) {
            p.sync_at = Some(at);
            self.timers.schedule(at, Task::Sync(pool));
        }
    }

    /// A member announced its leave: it goes silent after the propagation delay. If foca
    /// still has it alive well after that (its own `Down` gossip missed us, and probing
    /// would take a round of the whole cluster), declare that identity down ourselves.
    pub(super) fn expect_silence(&mut self, pool: Pool, addr: SocketAddr, now: Instant) {
        let Some(p) = self.pool(pool) else {
            return;
        };
        let own_leave = p
            .gossip
            .with(|g| g.leaves.get(&addr).is_some_and(|l| !l.forced));
        if own_leave && p.records.get(&addr).is_some_and(|r| r.active && !r.is_self) {
            let at = now + self.cfg.leave_propagate_delay + p.timing.probe_period * 2;
            self.timers.schedule(at, Task::LeaveDue(pool, addr));
        }
    }

    pub(super) fn leave_due_tick(&mut self, pool: Pool, addr: SocketAddr, now: Instant) {
        let Some(p) = self.pool(pool) else {
            return;
        };
        let Some(id) = p.records.get(&addr).filter(|r| r.active).map(|r| r.id) else {
            return;
        };
        let left = p.gossip.with(|g| {
            g.leaves
                .get(&addr)
                .is_some_and(|l| !l.forced && l.covers(id))
        });
        if left {
            let down = core::iter::once(foca::Member::down(id));
            let _ = self.foca_call(pool, now, |f, io| f.apply_many(down, true, io));
            self.settle(pool, now);
        }
    }

    /// A member went down a moment ago without a leave record: ask two random members for
    /// their leave records, in case its leave broadcast missed us.
    pub(super) fn explain_tick(&mut self, pool: Pool, addr: SocketAddr, now: Instant) {
        let Some(p) = self.pool(pool) else {
            return;
        };
        let unexplained = p.records.get(&addr).is_some_and(|r| {
            !r.active
                && p.gossip
                    .with(|g| g.leaves.get(&addr).is_none_or(|l| !l.covers(r.id)))
        });
        if !unexplained {
            return;
        }
        for to in self.random_peers(pool, 2, Some(addr)) {
            self.send_state_pull(pool, to, WANT_LEAVES);
        }
        let _ = now;
    }

    /// Up to `n` distinct random live members of `pool`, never this node or `except`.
    pub(super) fn random_peers(
        &mut self,
        pool: Pool,
        n: usize,
        except: Option<SocketAddr>,
    ) -> Vec<SocketAddr> {
        let Some(p) = self.pool(pool) else {
            return Vec::new();
        };
        let mut live: Vec<SocketAddr> = p
            .records
            .iter()
            .filter(|(a, r)| r.active && !r.is_self && Some(**a) != except)
            .map(|(a, _)| *a)
            .collect();
        let mut chosen = Vec::new();
        while chosen.len() < n && !live.is_empty() {
            let i = self.rng.random_range(0..live.len());
            chosen.push(live.swap_remove(i));
        }
        chosen
    }

    pub(super) fn send_state_pull(&mut self, pool: Pool, to: SocketAddr, wants: u8) {
        let Some(p) = self.pool(pool) else {
            return;
        };
        let pull = Pull {
            requester: p.me(),
            requester_version: p.version,
            known: p.have(&to).unwrap_or((0, 0)),
            wants,
        };
        self.send_pull(pool, to, &pull);
    }
}
