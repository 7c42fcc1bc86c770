//! Joining, leaving and reconnecting: the parts of the lifecycle foca leaves to its user.
//!
//! foca answers an announce with a Feed but keeps no record of joins, so a join here is a
//! set of addresses announced to every `join_retry` until each answered or `join_timeout`
//! passed. A leave is a leave record (gossiped and pushed to every member), a propagation
//! delay, then silence. And foca only reaches out while connected, so a node that lost
//! every member, or renewed its identity and was not heard yet, announces itself again.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;

use rand::RngExt as _;

use super::identity::NodeId;
use super::member::SelfState;
use super::timer::Task;
use super::wire::{
    self, Item, Leave, PushHeader, WANT_EVENTS, WANT_GONE, WANT_JOIN, WANT_LEAVES, WANT_METAS,
    WANT_REPLAY,
};
use super::{Cluster, JoinAttempt, JoinError, JoinId, JoinOutcome, Pool, Target, TargetFailure};
use crate::time::Instant;

impl Cluster {
    pub(super) fn schedule_join(&mut self, id: JoinId, now: Instant) {
        let retry = self.cfg.join_retry;
        if let Some(j) = self.joins.iter().find(|j| j.id == id) {
            let at = (now + retry).min(j.deadline);
            self.timers.schedule(at, Task::Join(id));
        }
    }

    pub(super) fn announce_unanswered(&mut self, id: JoinId, now: Instant) {
        let Some(j) = self.joins.iter().find(|j| j.id == id) else {
            return;
        };
        let pool = j.pool;
        let targets: Vec<SocketAddr> = j
            .targets
            .iter()
            .filter(|(_, state)| *state == Target::Pending)
            .map(|(a, _)| *a)
            .collect();
        for t in targets {
            let _ = self.foca_call(pool, now, |f, io| f.announce(NodeId::new(t, 0), io));
        }
        self.settle(pool, now);
    }

    pub(super) fn join_tick(&mut self, id: JoinId, now: Instant) {
        let Some(deadline) = self.joins.iter().find(|j| j.id == id).map(|j| j.deadline) else {
            return;
        };
        if now >= deadline {
            self.finish_join(id);
        } else {
            self.announce_unanswered(id, now);
            self.schedule_join(id, now);
        }
    }

    /// A FOCA datagram from `from` (identity address `src`) answers pending joins to it;
    /// each newly answered address is asked for every meta it knows.
    pub(super) fn mark_join_answer(
        &mut self,
        pool: Pool,
        from: SocketAddr,
        src: SocketAddr,
        now: Instant,
    ) {
        let mut newly = Vec::new();
        let mut finished = Vec::new();
        for j in self.joins.iter_mut().filter(|j| j.pool == pool) {
            for (t, state) in &mut j.targets {
                if *state == Target::Pending && (*t == from || *t == src) {
                    *state = Target::Answered;
                    newly.push((from, j.replay));
                }
            }
            if j.settled() {
                finished.push(j.id);
            }
        }
        for id in finished {
            self.finish_join(id);
        }
        newly.dedup();
        let joined = !newly.is_empty();
        for (to, replay) in newly {
            let replay = if replay { WANT_EVENTS | WANT_REPLAY } else { 0 };
            self.send_state_pull(pool, to, WANT_METAS | WANT_LEAVES | WANT_JOIN | replay);
        }
        if joined {
            // Nodes that join together learn little from each other's answers: sync again
            // once the join's gossip has settled.
            let until = now + self.cfg.join_timeout;
            if let Some(p) = self.pool_mut(pool) {
                p.newcomer_until = Some(until);
                p.sync_boost = 2;
                let at = now + p.timing.probe_period * 2;
                self.schedule_sync(pool, at);
            }
        }
        let _ = src;
    }

    pub(super) fn finish_join_if_answered(&mut self, id: JoinId) -> bool {
        let done = self
            .joins
            .iter()
            .find(|j| j.id == id)
            .is_some_and(JoinAttempt::settled);
        if done {
            self.finish_join(id);
        }
        done
    }

    /// Gives up on `addr` in every join of `pool` still waiting for it, and finishes the
    /// joins that leaves with nothing to wait for. True if any join was waiting for it.
    pub(super) fn fail_join_target(
        &mut self,
        pool: Pool,
        addr: SocketAddr,
        why: TargetFailure,
    ) -> bool {
        let mut hit = false;
        let mut finished = Vec::new();
        for j in self.joins.iter_mut().filter(|j| j.pool == pool) {
            for (t, state) in &mut j.targets {
                if *state == Target::Pending && *t == addr {
                    *state = Target::Failed(why);
                    hit = true;
                }
            }
            if j.settled() {
                finished.push(j.id);
            }
        }
        for id in finished {
            self.finish_join(id);
        }
        hit
    }

    pub(super) fn finish_join(&mut self, id: JoinId) {
        let Some(i) = self.joins.iter().position(|j| j.id == id) else {
            return;
        };
        let j = self.joins.swap_remove(i);
        let joined = j
            .targets
            .iter()
            .filter(|(_, s)| *s == Target::Answered)
            .count();
        // Silence is all a joiner sees when the two sides' gossip keys differ (neither
        // opens the other's datagrams), so the error says where to look, as memberlist's
        // "No installed keys could decrypt the message" does.
        let silent = if self.out.crypt.enabled() {
            "no response (is its gossip encrypted with one of this agent's keys?)"
        } else {
            "no response (if its gossip is encrypted, this agent needs the key)"
        };
        let failures: Vec<String> = j
            .targets
            .iter()
            .filter_map(|(a, s)| {
                let why = match s {
                    Target::Answered => return None,
                    Target::Pending => silent,
                    Target::Failed(TargetFailure::Refused) => "connection refused",
                    Target::Failed(TargetFailure::Own) => "it is this agent's own address",
                };
                Some(format!("Failed to join {a}: {why}"))
            })
            .collect();
        let error = (joined == 0 && !failures.is_empty()).then(|| JoinError {
            failures: failures.clone(),
        });
        self.done_joins.push_back(JoinOutcome {
            id,
            pool: j.pool,
            joined: u32::try_from(joined).unwrap_or(u32::MAX),
            failures,
            error,
        });
    }

    pub(super) fn leave_tick(&mut self, now: Instant) {
        if self.state != SelfState::Leaving {
            return;
        }
        for pool in self.pools() {
            self.tell_everyone_we_leave(pool, true);
            let _ = self.foca_call(pool, now, |f, io| f.leave_cluster(io));
            self.settle(pool, now);
        }
        self.state = SelfState::Left;
        for pool in self.pools() {
            if let Some(me) = self.local_addr(pool) {
                self.sync(pool, me);
            }
        }
    }

    /// Sends our leave record straight to every live member (a PUSH each), as well as
    /// gossiping it: a leave is announced once and the node then goes silent, so it must
    /// not hinge on a few lossy broadcasts. Sent at the start, and again when going silent
    /// with `gone` set, which lets receivers mark us down at once instead of waiting for
    /// foca's gossip or probes.
    pub(super) fn tell_everyone_we_leave(&mut self, pool: Pool, gone: bool) {
        let Some(p) = self.pool(pool) else {
            return;
        };
        let me = p.me();
        let mut item = Vec::new();
        Item::Leave(Leave {
            id: me,
            prune: false,
            forced: false,
        })
        .encode(&mut item);
        let header = PushHeader {
            wants: if gone { WANT_GONE } else { 0 },
            event_clock: p.gossip.with(|g| g.events.clock),
        };
        let max_len = p.plain_max();
        let peers: Vec<SocketAddr> = p
            .records
            .iter()
            .filter(|(_, r)| r.active && !r.is_self)
            .map(|(a, _)| *a)
            .collect();
        let out = &mut self.out;
        for to in peers {
            wire::pack_push(
                header,
                core::iter::once(item.clone()),
                max_len,
                false,
                |d| {
                    out.push(pool, to, |b| b.extend_from_slice(d));
                },
            );
        }
    }

    /// Schedules the reconnect check at `at`, unless one is due sooner.
    pub(super) fn schedule_reconnect(&mut self, pool: Pool, at: Instant) {
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        if p.reconnect_at.is_none_or(|t| at < t) {
            p.reconnect_at = Some(at);
            self.timers.schedule(at, Task::Reconnect(pool));
        }
    }

    /// While foca is not connected (never joined, every member gone, or renewed after
    /// being declared down and not yet heard under the new identity), announce to a few
    /// known members, failed ones and the last join's addresses: foca itself only reaches
    /// out while connected, so a lost rejoin gossip would otherwise strand it for good.
    /// Checks every two probe periods while disconnected, every `reconnect_interval` else.
    pub(super) fn reconnect_tick(&mut self, pool: Pool, now: Instant) {
        let every = self.cfg.reconnect_interval;
        let active = self.state == SelfState::Active;
        let Some(p) = self.pool_mut(pool) else {
            return;
        };
        if p.reconnect_at.is_some_and(|t| t > now) {
            // A later check replaced this one.
            return;
        }
        p.reconnect_at = None;
        let soon = p.timing.probe_period * 2;
        if !active || p.connected {
            self.schedule_reconnect(pool, now + every);
            return;
        }
        let mut candidates: Vec<SocketAddr> = p.gossip.with(|g| {
            p.records
                .iter()
                .filter(|(addr, r)| {
                    !r.is_self
                        && !r.pruned
                        && (r.active || g.leaves.get(*addr).is_none_or(|l| !l.covers(r.id)))
                })
                .map(|(a, _)| *a)
                .collect()
        });
        for a in &p.join_addrs {
            if !candidates.contains(a) {
                candidates.push(*a);
            }
        }
        let next = if candidates.is_empty() { every } else { soon };
        for _ in 0..3 {
            if candidates.is_empty() {
                break;
            }
            let i = self.rng.random_range(0..candidates.len());
            let target = candidates.swap_remove(i);
            let _ = self.foca_call(pool, now, |f, io| f.announce(NodeId::new(target, 0), io));
        }
        self.settle(pool, now);
        self.schedule_reconnect(pool, now + next);
    }
}

impl JoinAttempt {
    /// No address is waiting for an answer any more.
    fn settled(&self) -> bool {
        self.targets.iter().all(|(_, s)| *s != Target::Pending)
    }
}
