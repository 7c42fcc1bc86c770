//! Printing log records to stderr.
//!
//! The core formats the records it emits (`Output::Log`, whose `line` is final). The
//! runtime's own records (listening, signals, reloads) go to the core with
//! `Agent::log_record` so `monitor` streams them, but that call does not hand the formatted
//! line back, so they are formatted here in the core's layout
//! (`2026/11/21 10:00:00 [INFO] agent: …`, Consul's) to keep stderr uniform.

use std::io::Write as _;

use tandem_core::Level;

/// Writes one line to stderr. A closed or full stderr must not take the agent down, so
/// errors are ignored (`eprintln!` would panic).
pub(crate) fn print_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.write_all(b"\n");
}

/// `yyyy/MM/dd HH:mm:ss [LEVEL] text`, local time, one line whatever `text` holds.
pub(crate) fn format_line(unix_ms: u64, utc_offset_secs: i32, level: Level, text: &str) -> String {
    let local_secs = i64::try_from(unix_ms / 1000)
        .unwrap_or(i64::MAX)
        .saturating_add(i64::from(utc_offset_secs));
    let (y, mo, d) = civil_from_days(local_secs.div_euclid(86_400));
    let sod = local_secs.rem_euclid(86_400);
    let mut line = format!(
        "{y:04}/{mo:02}/{d:02} {:02}:{:02}:{:02} [{}] ",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        level.as_str()
    );
    // One record is one line: a newline in the text would forge a second record.
    line.extend(
        text.chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
    );
    line
}

/// Howard Hinnant's `civil_from_days`: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_use_the_core_layout() {
        assert_eq!(
            format_line(1_596_703_453_237, 0, Level::Info, "agent: up"),
            "2020/08/06 08:44:13 [INFO] agent: up"
        );
        assert_eq!(
            format_line(951_782_400_000, 3600, Level::Err, "a\nb"),
            "2000/02/29 01:00:00 [ERR] a b"
        );
    }
}
