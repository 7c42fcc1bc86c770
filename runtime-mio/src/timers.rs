//! The runtime's own timers. mio has none: the loop's only clock is the timeout it gives
//! `Poll::poll`, which is the earliest of the core's deadline (`Agent::poll_timeout`) and
//! the deadlines kept here.
//!
//! What lives here is the runtime's business, not the protocol's: the back-off after a
//! failed `accept`, the bound on flushing a closing connection, and the linger of a closed
//! socket. Like the core's queue, an entry names the object it is for and is cancelled by
//! its owner when that object goes away, so the table is bounded by the live objects; an
//! entry that fires for an object already gone is ignored by the caller.

use std::collections::BTreeMap;
use std::time::Instant;

use tandem_core::{ConnId, Listener};

/// What a timer entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RtTimer {
    /// The listener's accept back-off is over: accept again.
    AcceptRetry(Listener),
    /// A closing connection did not take its last bytes in time: drop it.
    CloseFlush(ConnId),
    /// A closed socket has lingered long enough (slot, serial of its occupant).
    Linger(usize, u64),
}

/// Names one entry, so its owner can cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey {
    at: Instant,
    seq: u64,
}

/// Entries ordered by deadline, then by scheduling order.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    entries: BTreeMap<TimerKey, RtTimer>,
    seq: u64,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, timer: RtTimer) -> TimerKey {
        self.seq += 1;
        let key = TimerKey { at, seq: self.seq };
        self.entries.insert(key, timer);
        key
    }

    pub(crate) fn cancel(&mut self, key: Option<TimerKey>) {
        if let Some(key) = key {
            self.entries.remove(&key);
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.entries.first_key_value().map(|(k, _)| k.at)
    }

    /// Removes and returns the earliest entry due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<RtTimer> {
        match self.entries.first_key_value() {
            Some((k, _)) if k.at <= now => self.entries.pop_first().map(|(_, t)| t),
            _ => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_fire_in_deadline_order_and_cancelled_ones_never() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        timers.schedule(ms(20), RtTimer::AcceptRetry(Listener::Http));
        let gone = timers.schedule(ms(5), RtTimer::Linger(1, 1));
        timers.schedule(ms(10), RtTimer::Linger(2, 2));
        timers.cancel(Some(gone));
        timers.cancel(None);
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.next(), Some(ms(10)));
        assert_eq!(timers.pop_due(ms(9)), None);
        assert_eq!(timers.pop_due(ms(30)), Some(RtTimer::Linger(2, 2)));
        assert_eq!(
            timers.pop_due(ms(30)),
            Some(RtTimer::AcceptRetry(Listener::Http))
        );
        assert_eq!(timers.pop_due(ms(30)), None);
        assert_eq!(timers.next(), None);
    }
}
