//! The cluster's timers: foca's timers of both pools and the cluster's own, in the core's
//! one timer queue implementation ([`crate::time::TimerQueue`]).
//!
//! foca must see its timers in order (caio/foca#26: an indirect probe delivered after the
//! next probe tick ends the cycle early with `IncompleteProbeCycle`). Entries are ordered by
//! deadline, then by foca's own `Timer` order for equal deadlines (`SendIndirectProbe`
//! before `ProbeRandomMember`, ...), cluster timers after foca's, then by insertion, so a
//! run is reproducible from its inputs alone.

use core::net::SocketAddr;

use super::identity::NodeId;
use super::{JoinId, Pool};
use crate::time::{Rank, TimerQueue};

/// The cluster's queue.
pub(crate) type Timers = TimerQueue<Task>;

/// What an entry is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    /// A foca timer, handed back to that pool's foca.
    Foca(Pool, foca::Timer<NodeId>),
    /// Re-announce to a join's unanswered addresses, or report it at its deadline.
    Join(JoinId),
    /// The leave has propagated: go silent.
    Leave,
    /// Ask for metas still missing or stale.
    Pull(Pool),
    /// Reap members down for longer than `reap_after`.
    Reap(Pool),
    /// Reconnect while the pool has no live member.
    Reconnect(Pool),
    /// Pull all state from a random member.
    Sync(Pool),
    /// Ask about a member that went down without a leave record.
    Explain(Pool, SocketAddr),
    /// A member that announced its leave should be silent by now.
    LeaveDue(Pool, SocketAddr),
    /// Stop holding back a down member's `member-failed`.
    Release(Pool, SocketAddr),
    /// A query this node started is over (its LTime).
    QueryDone(u64),
    /// A received query can no longer be responded to (its local handle).
    QueryExpire(u64),
    /// Ping a member for a round trip and its network coordinate (`rtt.rs`).
    CoordPing,
}

impl Rank for Task {
    /// foca's order for timers due at the same instant (its private `Timer::seq`, which
    /// its `Ord` implements), then the cluster's own.
    fn rank(&self) -> u8 {
        match self {
            Task::Foca(_, t) => match t {
                foca::Timer::SendIndirectProbe { .. } => 0,
                foca::Timer::ProbeRandomMember(_) => 1,
                foca::Timer::ChangeSuspectToDown { .. } => 2,
                foca::Timer::PeriodicAnnounce(_) => 3,
                foca::Timer::PeriodicGossip(_) => 4,
                foca::Timer::RemoveDown(_) => 5,
                foca::Timer::PeriodicAnnounceDown(_) => 6,
            },
            Task::Join(_) => 7,
            Task::Leave => 8,
            Task::Pull(_) => 9,
            Task::Reap(_) => 10,
            Task::Reconnect(_) => 11,
            Task::Sync(_) => 12,
            Task::Explain(..) => 13,
            Task::LeaveDue(..) => 14,
            Task::Release(..) => 15,
            Task::QueryDone(_) => 16,
            Task::QueryExpire(_) => 17,
            Task::CoordPing => 18,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Instant;
    use alloc::vec::Vec;

    #[test]
    fn equal_deadlines_follow_focas_order_then_insertion() {
        let id = NodeId::new(SocketAddr::from(([10, 0, 0, 1], 1)), 0);
        let mut q = Timers::default();
        let t = Instant::from_millis(1000);
        q.schedule(t, Task::Reap(Pool::Lan));
        q.schedule(t, Task::Foca(Pool::Lan, foca::Timer::ProbeRandomMember(0)));
        q.schedule(
            t,
            Task::Foca(
                Pool::Lan,
                foca::Timer::SendIndirectProbe {
                    probed_id: id,
                    token: 0,
                },
            ),
        );
        q.schedule(t, Task::Pull(Pool::Wan));
        q.schedule(t, Task::Pull(Pool::Lan));
        q.schedule(Instant::from_millis(999), Task::Leave);
        assert_eq!(q.pop_due(Instant::from_millis(998)), None);
        let order: Vec<Task> = core::iter::from_fn(|| q.pop_due(t).map(|(_, task)| task)).collect();
        assert_eq!(
            order,
            [
                Task::Leave,
                Task::Foca(
                    Pool::Lan,
                    foca::Timer::SendIndirectProbe {
                        probed_id: id,
                        token: 0
                    }
                ),
                Task::Foca(Pool::Lan, foca::Timer::ProbeRandomMember(0)),
                Task::Pull(Pool::Wan),
                Task::Pull(Pool::Lan),
                Task::Reap(Pool::Lan),
            ]
        );
        assert_eq!(q.len(), 0);
    }
}
