//! Printing log records to stderr.
//!
//! The core formats every record (`2026/11/21 10:00:00 [INFO] agent: …`, Consul's layout):
//! those it emits itself as `Output::Log`, and the runtime's own, which go in through
//! `Agent::log_record` (so `monitor` streams them) and come back formatted. So stderr and
//! `monitor` always show the same line.

use std::io::Write as _;

/// Writes one line to stderr. A closed or full stderr must not take the agent down, so
/// errors are ignored (`eprintln!` would panic).
pub(crate) fn print_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.write_all(b"\n");
}
