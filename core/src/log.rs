//! The agent's log: levels in Consul's words, the wall clock the runtime lends us, and a
//! bounded ring of recent records that `monitor` replays before streaming live ones.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt::{self, Write as _};
use serde::Deserialize;

use crate::time::Instant;

/// Log levels, lowest first. Names are Consul's (`ERR`, not `ERROR`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum Level {
    /// Everything.
    #[serde(alias = "trace", alias = "TRACE")]
    Trace,
    /// Debugging detail.
    #[serde(alias = "debug", alias = "DEBUG")]
    Debug,
    /// Normal operation.
    #[default]
    #[serde(alias = "info", alias = "INFO")]
    Info,
    /// Something looks wrong.
    #[serde(alias = "warn", alias = "WARN")]
    Warn,
    /// Something failed.
    #[serde(alias = "err", alias = "ERR", alias = "error", alias = "ERROR")]
    Err,
}

impl Level {
    /// The level as Consul writes it: `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Err => "ERR",
        }
    }

    /// Parses a level name, case-insensitively (`ERROR` is taken as `ERR`).
    pub fn parse(s: &str) -> Option<Level> {
        const ALL: [(&str, Level); 6] = [
            ("TRACE", Level::Trace),
            ("DEBUG", Level::Debug),
            ("INFO", Level::Info),
            ("WARN", Level::Warn),
            ("ERR", Level::Err),
            ("ERROR", Level::Err),
        ];
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, l)| l)
    }
}

/// The wall clock, anchored by the runtime: a Unix time and the monotonic instant it was
/// read at. The core derives wall time from it and never reads a clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    unix_ms: u64,
    at: Instant,
    utc_offset_secs: i32,
}

impl WallClock {
    pub(crate) fn new(unix_ms: u64, at: Instant, utc_offset_secs: i32) -> Self {
        WallClock {
            unix_ms,
            at,
            utc_offset_secs,
        }
    }

    /// Unix milliseconds at `now`.
    pub(crate) fn unix_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.at).as_millis();
        self.unix_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// Local civil time at `now`.
    pub(crate) fn local(&self, now: Instant) -> Civil {
        let ms = i64::try_from(self.unix_ms(now)).unwrap_or(i64::MAX);
        Civil::from_unix_ms(ms.saturating_add(i64::from(self.utc_offset_secs) * 1000))
    }
}

/// A civil date and time, for the two formats the protocols print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    milli: u32,
}

impl Civil {
    /// Howard Hinnant's `civil_from_days`, so no date crate is needed for two formats.
    pub(crate) fn from_unix_ms(ms: i64) -> Civil {
        let secs = ms.div_euclid(1000);
        let milli = ms.rem_euclid(1000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            milli,
        }
    }

    /// `yyyy-MM-dd HH:mm:ss.SSS`, the `welcome` item's format (Arthas 4.x).
    pub(crate) fn write_welcome(&self, out: &mut impl fmt::Write) -> fmt::Result {
        write!(
            out,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.milli
        )
    }

    /// `yyyy/MM/dd HH:mm:ss`, the prefix of Consul's log lines.
    pub(crate) fn write_log(&self, out: &mut impl fmt::Write) -> fmt::Result {
        write!(
            out,
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// One log record: its level and the formatted line (`2026/11/21 10:00:00 [INFO] agent: …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Severity.
    pub level: Level,
    /// The whole line as `monitor` prints it.
    pub line: Arc<str>,
}

/// Lines longer than this are cut, so one record cannot blow a consumer's budget.
pub(crate) const MAX_LINE: usize = 1024;

pub(crate) fn format_line(civil: Civil, level: Level, text: &str) -> String {
    let mut line = String::with_capacity(32 + text.len().min(MAX_LINE));
    let _ = civil.write_log(&mut line);
    let _ = write!(line, " [{}] ", level.as_str());
    let mut budget = MAX_LINE;
    // A multi-line entry (a multierror) stays one record with its inner newlines, as
    // Serf's log writer keeps them; records are framed strings, so nothing is forged.
    for c in text.trim_end_matches(['\n', '\r']).chars() {
        budget = match budget.checked_sub(c.len_utf8()) {
            Some(b) => b,
            None => break,
        };
        line.push(c);
    }
    line
}

/// The ring of recent records.
#[derive(Debug)]
pub(crate) struct LogRing {
    records: VecDeque<LogRecord>,
    capacity: usize,
}

impl LogRing {
    pub(crate) fn new(capacity: usize) -> Self {
        LogRing {
            records: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn push(&mut self, record: LogRecord) {
        if self.capacity == 0 {
            return;
        }
        while self.records.len() >= self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &LogRecord> {
        self.records.iter()
    }

    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.records.len() > capacity {
            self.records.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_matches_known_dates() {
        let c = Civil::from_unix_ms(1_596_703_453_237);
        let mut s = String::new();
        c.write_welcome(&mut s).unwrap();
        assert_eq!(s, "2020-08-06 08:44:13.237");
        let mut s = String::new();
        Civil::from_unix_ms(951_782_400_000)
            .write_log(&mut s)
            .unwrap();
        assert_eq!(s, "2000/02/29 00:00:00");
        let mut s = String::new();
        Civil::from_unix_ms(-1).write_welcome(&mut s).unwrap();
        assert_eq!(s, "1969-12-31 23:59:59.999");
    }

    #[test]
    fn lines_are_one_line_and_bounded() {
        let civil = Civil::from_unix_ms(0);
        let line = format_line(civil, Level::Warn, "a\n\tb\n");
        assert_eq!(line, "1970/01/01 00:00:00 [WARN] a\n\tb");
        let long = "é".repeat(2000);
        assert!(format_line(civil, Level::Info, &long).len() <= MAX_LINE + 32);
    }

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!(Level::parse("warn"), Some(Level::Warn));
        assert_eq!(Level::parse("ERROR"), Some(Level::Err));
        assert_eq!(Level::parse("loud"), None);
    }
}
