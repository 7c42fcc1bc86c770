//! The runtime's clocks: the monotonic clock mapped onto the core's [`Instant`] (microseconds
//! since the runtime started), and the wall clock read once at start for `HostInfo`.
//!
//! The core never reads a clock, so this is the only place time comes from. The mapping is
//! monotonic because `std::time::Instant` is, and `now` never goes backwards.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_core::Instant;

/// The runtime's clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: std::time::Instant,
    /// Wall time at `start`, in Unix milliseconds.
    unix_ms: u64,
    utc_offset_secs: i32,
}

impl Clock {
    /// Reads both clocks now. `Instant::ZERO` of the core is this moment.
    pub fn start() -> Self {
        let start = std::time::Instant::now();
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Clock {
            start,
            unix_ms,
            utc_offset_secs: local_utc_offset_secs(),
        }
    }

    /// The core's `now`.
    pub fn now(self) -> Instant {
        let micros = self.start.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The std instant of a core deadline, for arming a timer or a poll timeout. A deadline
    /// too far away to represent is taken as "an hour from now": the timer re-arms anyway.
    pub fn deadline_to_std(self, at: Instant) -> std::time::Instant {
        self.start
            .checked_add(Duration::from_micros(at.as_micros()))
            .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(3600))
    }

    /// Wall time at `Instant::ZERO`, in Unix milliseconds.
    pub fn unix_ms_at_start(&self) -> u64 {
        self.unix_ms
    }

    /// Local time's offset from UTC at start, in seconds.
    pub fn utc_offset_secs(&self) -> i32 {
        self.utc_offset_secs
    }
}

/// The local UTC offset from the C library (which honours `TZ` and /etc/localtime). Read
/// once: a DST change while the agent runs is not followed, as in many daemons.
#[cfg(unix)]
fn local_utc_offset_secs() -> i32 {
    // SAFETY: `time(NULL)` has no preconditions. `localtime_r` writes only into the `tm` we
    // own and is the thread-safe variant; a null return means failure and is checked.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        i32::try_from(tm.tm_gmtoff).unwrap_or(0)
    }
}

#[cfg(not(unix))]
fn local_utc_offset_secs() -> i32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_trip_through_std_instants() {
        let clock = Clock::start();
        let now = clock.now();
        let deadline = now + Duration::from_millis(250);
        let std_at = clock.deadline_to_std(deadline);
        // Converting the std instant back never lands before the core's deadline, so a timer
        // that fires on time never makes `handle_timeout` see an early `now`.
        let back = Instant::from_micros(
            u64::try_from(std_at.duration_since(clock.start).as_micros()).unwrap_or(u64::MAX),
        );
        assert_eq!(back, deadline);
    }
}
