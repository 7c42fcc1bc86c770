//! Time as the core sees it: a monotonic [`Instant`] handed in by the runtime, and the one
//! ordered timer queue implementation every deadline lives in (the agent's entries in one
//! queue, the cluster's in another, merged by `Agent::poll_timeout`).
//!
//! The core never reads a clock. Each input carries `now`; the runtime arms a single timer
//! for [`crate::Agent::poll_timeout`] and calls [`crate::Agent::handle_timeout`] when it fires.
//! An entry names the object it is for; when it fires, the object is asked whether the
//! deadline still holds (so a spurious entry is harmless), and owners cancel entries they no
//! longer need, which keeps the queue bounded by the number of live objects.

use alloc::collections::BTreeMap;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point on the runtime's monotonic clock, in microseconds since an origin of its choosing.
///
/// Runtimes convert their own clock (`std::time::Instant`, a virtual clock in tests) into this
/// type; the origin only has to stay fixed for the agent's lifetime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);

    /// An instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// What a timer entry is for. Each variant names an object whose own state says whether the
/// deadline is still wanted when the entry fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A parked `pull_results` on this connection (empty-poll or batch deadline).
    Pull(crate::ConnId),
    /// The `execTimeout` of an `exec` waiting on this job.
    ExecTimeout(u32),
    /// Consumer idle expiry; the consumer is found by session key and consumer number.
    Consumer(crate::session::SessionKey, u32),
    /// Session idle expiry.
    Session(crate::session::SessionKey),
    /// A connection's own deadline: HTTP head read or keep-alive idle, RPC handshake. The
    /// connection's state says which (see `Agent::conn_deadline`).
    Conn(crate::ConnId),
    /// The deadline of the event handler run with this id.
    Handler(u32),
    /// The next attempt of `-retry-join`.
    RetryJoin,
    /// A deadline of a cluster job (origin) or of a job served for one (target).
    ClusterJob(u32, crate::cluster_jobs::JobTimer),
}

/// The order of entries due at the same instant, lowest first (ties then go by insertion).
/// The agent's entries are all equal; the cluster's follow foca's own order (see
/// `cluster::timer`).
pub(crate) trait Rank {
    fn rank(&self) -> u8 {
        0
    }
}

impl Rank for Timer {}

/// Names one scheduled entry, so its owner can cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey {
    at: Instant,
    rank: u8,
    seq: u64,
}

/// An ordered timer queue. Entries are ordered by deadline, then by [`Rank`], then by the
/// order they were scheduled in, so a run is reproducible from its inputs alone. Owners
/// cancel entries they no longer need, so the queue holds at most one or two entries per
/// live object.
#[derive(Debug)]
pub(crate) struct TimerQueue<T = Timer> {
    entries: BTreeMap<TimerKey, T>,
    seq: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            entries: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl TimerKey {
    /// The deadline.
    pub(crate) fn at(self) -> Instant {
        self.at
    }
}

impl<T: Rank> TimerQueue<T> {
    /// Adds an entry due at `at`.
    pub(crate) fn schedule(&mut self, at: Instant, timer: T) -> TimerKey {
        self.seq += 1;
        let key = TimerKey {
            at,
            rank: timer.rank(),
            seq: self.seq,
        };
        self.entries.insert(key, timer);
        key
    }

    /// Removes an entry, if it is still there.
    pub(crate) fn cancel(&mut self, key: Option<TimerKey>) {
        if let Some(key) = key {
            self.entries.remove(&key);
        }
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries.first_key_value().map(|(k, _)| k.at)
    }

    /// Removes and returns the first entry due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        match self.entries.first_key_value() {
            Some((k, _)) if k.at <= now => self.entries.pop_first().map(|(k, t)| (k.at, t)),
            _ => None,
        }
    }

    /// Entries queued.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_deadlines_fire_in_insertion_order() {
        let mut q = TimerQueue::default();
        let t = Instant::from_millis(5);
        q.schedule(t, Timer::ExecTimeout(2));
        q.schedule(Instant::from_millis(1), Timer::ExecTimeout(9));
        q.schedule(t, Timer::ExecTimeout(1));
        assert_eq!(q.next_deadline(), Some(Instant::from_millis(1)));
        assert_eq!(q.pop_due(Instant::from_millis(0)), None);
        let fired: alloc::vec::Vec<_> = core::iter::from_fn(|| q.pop_due(t)).collect();
        assert_eq!(
            fired,
            [
                (Instant::from_millis(1), Timer::ExecTimeout(9)),
                (t, Timer::ExecTimeout(2)),
                (t, Timer::ExecTimeout(1)),
            ]
        );
    }

    #[test]
    fn cancelled_entries_are_gone() {
        let mut q = TimerQueue::default();
        let a = q.schedule(Instant::from_millis(1), Timer::ExecTimeout(1));
        q.schedule(Instant::from_millis(2), Timer::ExecTimeout(2));
        q.cancel(Some(a));
        q.cancel(None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_deadline(), Some(Instant::from_millis(2)));
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let a = Instant::from_micros(10);
        assert_eq!(Instant::ZERO - a, Duration::ZERO);
        assert_eq!(a + Duration::MAX, Instant::from_micros(u64::MAX));
    }
}
