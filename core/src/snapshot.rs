//! Serf's snapshot (`-snapshot PATH`): an append-only log of the members this node saw
//! alive and of its Lamport clocks, so a restarted node finds its cluster again and does
//! not replay old user events and queries to its handlers.
//!
//! The format is Serf's (`serf/snapshot.go`), one record a line:
//!
//! ```text
//! alive: NAME ADDR:PORT     a member joined (the name may hold spaces; the address is last)
//! not-alive: NAME           it left or failed
//! clock: N                  the member Lamport clock
//! event-clock: N            the latest user-event LTime seen
//! query-clock: N            the latest query LTime seen
//! leave                     this node left gracefully: forget the above (unless -rejoin)
//! # comment
//! ```
//!
//! The core never touches the file. At start the runtime reads it and feeds its bytes to a
//! [`SnapshotReader`] (in chunks: a line never needs more than [`SNAPSHOT_LINE_LIMIT`]
//! bytes of memory, and the members kept are bounded), then hands the result to
//! [`Agent::restore_snapshot`]. While running, the agent asks for appends with
//! [`Effect::Persist`] and, once the file outgrows Serf's bound (256 bytes a live member,
//! at least 128 KiB), for a compacted replacement.
//!
//! Hostile content gets a defined answer: a line that is overlong, not UTF-8, unknown, or
//! whose name, address or clock does not parse is skipped and counted (the first few are
//! logged), never a panic; clocks above `i64::MAX` are refused as no real Lamport time.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::net::SocketAddr;

use crate::Agent;
use crate::cluster::{MemberEvent, MemberView, NAME_LIMIT};
use crate::log::Level;
use crate::persist::{FileWrite, StateFile};
use crate::time::Instant;

/// The longest snapshot line read; longer ones are skipped (a name is at most
/// [`NAME_LIMIT`] bytes and an address about 50).
pub const SNAPSHOT_LINE_LIMIT: usize = 1024;
/// Serf's floor for compaction: a snapshot smaller than this is never rewritten.
pub const SNAPSHOT_MIN_COMPACT_SIZE: u64 = 128 * 1024;
/// Serf's estimate of a live member's bytes, times its compaction threshold (2).
const COMPACT_BYTES_PER_NODE: u64 = 128 * 2;
/// Unreadable lines logged one by one at start; the rest are only counted.
const LOGGED_BAD_LINES: u64 = 8;
/// The largest clock accepted from a file.
const MAX_CLOCK: u64 = i64::MAX as u64;

/// What a snapshot file says, as [`SnapshotReader`] read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The members last seen alive, by name.
    pub alive: BTreeMap<String, SocketAddr>,
    /// The member clock (`clock:`).
    pub clock: u64,
    /// The latest user-event LTime (`event-clock:`).
    pub event_clock: u64,
    /// The latest query LTime (`query-clock:`).
    pub query_clock: u64,
    /// A `leave` line was read and ignored (`-rejoin`).
    pub leave_ignored: bool,
    /// A `leave` line cleared what came before it.
    pub left: bool,
    /// Lines skipped as unreadable.
    pub bad_lines: u64,
    /// The first few of them (cut to 80 characters), for the log.
    pub bad_examples: Vec<String>,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// Reads a snapshot file fed in chunks of any size, in bounded memory.
#[derive(Debug)]
pub struct SnapshotReader {
    snap: Snapshot,
    line: Vec<u8>,
    /// The current line passed [`SNAPSHOT_LINE_LIMIT`]: skip to its end.
    overlong: bool,
    rejoin_after_leave: bool,
    max_members: usize,
}

impl SnapshotReader {
    /// A reader. `rejoin_after_leave` (Serf's, `-rejoin`): a `leave` line is ignored
    /// instead of clearing the members and clocks. At most `max_members` names are kept
    /// (further `alive` lines for new names are skipped as bad).
    pub fn new(rejoin_after_leave: bool, max_members: usize) -> Self {
        SnapshotReader {
            snap: Snapshot::default(),
            line: Vec::new(),
            overlong: false,
            rejoin_after_leave,
            max_members,
        }
    }

    /// Reads whole `bytes` (a test's or a fuzzer's file).
    pub fn read_all(bytes: &[u8], rejoin_after_leave: bool, max_members: usize) -> Snapshot {
        let mut r = SnapshotReader::new(rejoin_after_leave, max_members);
        r.feed(bytes);
        r.finish()
    }

    /// The next bytes of the file.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        self.snap.bytes = self.snap.bytes.saturating_add(bytes.len() as u64);
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n');
            let (part, rest) = match end {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            if !self.overlong {
                if self.line.len() + part.len() > SNAPSHOT_LINE_LIMIT {
                    self.overlong = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if end.is_some() {
                if self.overlong {
                    self.bad(b"(a line over the length limit)");
                } else {
                    let line = core::mem::take(&mut self.line);
                    self.line_done(&line);
                    self.line = line;
                    self.line.clear();
                }
                self.overlong = false;
            }
            bytes = rest;
        }
    }

    /// The end of the file. A last line without its newline (a write cut short by a
    /// crash) is skipped, as Serf does.
    pub fn finish(mut self) -> Snapshot {
        if self.overlong || !self.line.is_empty() {
            self.bad(b"(an unterminated last line)");
        }
        self.snap
    }

    fn bad(&mut self, line: &[u8]) {
        self.snap.bad_lines += 1;
        if self.snap.bad_lines <= LOGGED_BAD_LINES {
            let text = String::from_utf8_lossy(line);
            self.snap
                .bad_examples
                .push(text.chars().take(80).flat_map(char::escape_debug).collect());
        }
    }

    fn line_done(&mut self, raw: &[u8]) {
        let Ok(line) = core::str::from_utf8(raw) else {
            return self.bad(raw);
        };
        let ok = if let Some(info) = line.strip_prefix("alive: ") {
            self.alive(info)
        } else if let Some(name) = line.strip_prefix("not-alive: ") {
            self.snap.alive.remove(name);
            true
        } else if let Some(n) = line.strip_prefix("clock: ") {
            clock(n).map(|n| self.snap.clock = n).is_some()
        } else if let Some(n) = line.strip_prefix("event-clock: ") {
            clock(n).map(|n| self.snap.event_clock = n).is_some()
        } else if let Some(n) = line.strip_prefix("query-clock: ") {
            clock(n).map(|n| self.snap.query_clock = n).is_some()
        } else if line.starts_with("coordinate: ") || line.starts_with('#') {
            // Serf ignores persisted coordinates too: they re-converge.
            true
        } else if line == "leave" {
            if self.rejoin_after_leave {
                self.snap.leave_ignored = true;
            } else {
                let s = &mut self.snap;
                s.alive.clear();
                (s.clock, s.event_clock, s.query_clock) = (0, 0, 0);
                s.left = true;
            }
            true
        } else {
            false
        };
        if !ok {
            self.bad(raw);
        }
    }

    fn alive(&mut self, info: &str) -> bool {
        let Some((name, addr)) = info.rsplit_once(' ') else {
            return false;
        };
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            return false;
        };
        if name.is_empty() || name.len() > NAME_LIMIT || name.chars().any(char::is_control) {
            return false;
        }
        if self.snap.alive.len() >= self.max_members && !self.snap.alive.contains_key(name) {
            return false;
        }
        self.snap.alive.insert(String::from(name), addr);
        self.snap.left = false;
        true
    }
}

/// A clock as Serf writes it (decimal `u64`), at most `i64::MAX`.
fn clock(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|&n| n <= MAX_CLOCK)
}

/// The agent's side of `-snapshot`: what the file holds, so compaction can rewrite it.
#[derive(Debug, Default)]
pub(crate) struct SnapshotState {
    alive: BTreeMap<String, SocketAddr>,
    clock: u64,
    event_clock: u64,
    query_clock: u64,
    /// The file's size as far as the agent's writes go.
    size: u64,
    /// After the leave line: nothing more is recorded (Serf's `leaving`).
    left: bool,
    /// A write failed: the next one rewrites the whole file.
    broken: bool,
    rejoin_after_leave: bool,
}

impl SnapshotState {
    pub(crate) fn new(rejoin_after_leave: bool) -> Self {
        SnapshotState {
            rejoin_after_leave,
            ..SnapshotState::default()
        }
    }

    /// Serf's `snapshotMaxSize`.
    fn max_size(&self) -> u64 {
        (self.alive.len() as u64)
            .saturating_mul(COMPACT_BYTES_PER_NODE)
            .max(SNAPSHOT_MIN_COMPACT_SIZE)
    }

    /// The compacted file: the live members, then the clocks.
    fn compacted(&self) -> Vec<u8> {
        let mut out = String::new();
        for (name, addr) in &self.alive {
            let _ = writeln!(out, "alive: {name} {addr}");
        }
        let _ = writeln!(out, "clock: {}", self.clock);
        let _ = writeln!(out, "event-clock: {}", self.event_clock);
        let _ = writeln!(out, "query-clock: {}", self.query_clock);
        if self.left {
            out.push_str("leave\n");
        }
        out.into_bytes()
    }
}

impl Agent {
    /// Restores what the snapshot file said, right after [`Agent::new`] and before any
    /// join (Serf reads it as it starts): the event and query clocks go past the
    /// snapshot's, so user events and queries seen before the restart are not handed to
    /// handlers again; unreadable lines are logged and counted; an oversized file is
    /// compacted; and, when the snapshot lists members, the agent re-joins the cluster
    /// through them one at a time (in random order, itself excepted) until one answers,
    /// as Serf does. Only for an agent whose [`crate::Config::state_files`] has the snapshot.
    pub fn restore_snapshot(&mut self, snap: Snapshot, now: Instant) {
        if self.snapshot.is_none() {
            return;
        }
        if snap.bad_lines > 0 {
            for line in &snap.bad_examples {
                let text = alloc::format!("serf: Unrecognized snapshot line: {line}");
                self.log(Level::Warn, &text, now);
            }
            let text = alloc::format!("serf: skipped {} unreadable snapshot lines", snap.bad_lines);
            self.log(Level::Warn, &text, now);
        }
        if snap.leave_ignored {
            self.log(
                Level::Info,
                "serf: Ignoring previous leave in snapshot",
                now,
            );
        }
        let Some(state) = &mut self.snapshot else {
            return;
        };
        state.alive = snap.alive;
        state.clock = snap.clock;
        state.event_clock = snap.event_clock;
        state.query_clock = snap.query_clock;
        state.size = snap.bytes;
        self.cluster
            .restore_clocks(snap.event_clock, snap.query_clock);
        let mut previous: Vec<(String, SocketAddr)> = state
            .alive
            .iter()
            .filter(|(name, _)| **name != self.cfg.node_name)
            .map(|(n, a)| (n.clone(), *a))
            .collect();
        if state.size > state.max_size() || snap.bad_lines > 0 {
            self.compact_snapshot();
        }
        // Serf shuffles them so restarted nodes do not all ask the same member.
        for i in (1..previous.len()).rev() {
            let j = rand::RngExt::random_range(&mut self.rng, 0..=i);
            previous.swap(i, j);
        }
        if !previous.is_empty() {
            previous.reverse();
            self.rejoin_next(previous, now);
        }
        self.settle(now);
    }

    /// The members the snapshot lists as alive (for tests and `info`).
    pub fn snapshot_members(&self) -> Option<&BTreeMap<String, SocketAddr>> {
        self.snapshot.as_ref().map(|s| &s.alive)
    }

    /// Tries the next previously known node (`previous` is popped from the end).
    pub(crate) fn rejoin_next(&mut self, mut previous: Vec<(String, SocketAddr)>, now: Instant) {
        let Some((name, addr)) = previous.pop() else {
            return self.log(
                Level::Warn,
                "serf: Failed to re-join any previously known node",
                now,
            );
        };
        let text =
            alloc::format!("serf: Attempting re-join to previously known node: {name}: {addr}");
        self.log(Level::Info, &text, now);
        let target = alloc::format!("{addr}");
        let waiter = crate::members::JoinWaiter::Log {
            failures: Vec::new(),
            then: crate::members::AfterJoin::Rejoin {
                node: alloc::format!("{name}: {addr}"),
                rest: previous,
            },
        };
        // Serf's re-join does not ignore old events: those the members hold that are newer
        // than the snapshot's clocks (the node was down when they happened) are delivered.
        self.start_join(&[target.as_str()], false, true, waiter, now);
    }

    /// Records a LAN member event (Serf's `processMemberEvent`).
    pub(crate) fn snapshot_member_event(&mut self, kind: MemberEvent, members: &[MemberView]) {
        let Some(state) = self.snapshot.as_mut().filter(|s| !s.left) else {
            return;
        };
        let mut lines = String::new();
        for m in members.iter().filter(|m| m.name != self.cfg.node_name) {
            match kind {
                MemberEvent::Join => {
                    let addr = SocketAddr::new(m.addr, m.port);
                    state.alive.insert(m.name.clone(), addr);
                    let _ = writeln!(lines, "alive: {} {addr}", m.name);
                }
                MemberEvent::Leave | MemberEvent::Failed => {
                    state.alive.remove(&m.name);
                    let _ = writeln!(lines, "not-alive: {}", m.name);
                }
                MemberEvent::Update | MemberEvent::Reap => {}
            }
        }
        self.append_snapshot(lines);
    }

    /// Records the event and query clocks when they moved (Serf's `event-clock` and
    /// `query-clock` lines: the latest LTime seen, one below the clock).
    pub(crate) fn snapshot_clocks(&mut self) {
        let Some(state) = self.snapshot.as_mut().filter(|s| !s.left) else {
            return;
        };
        let mut lines = String::new();
        let event = self.cluster.event_ltime().saturating_sub(1);
        if event > state.event_clock {
            state.event_clock = event;
            let _ = writeln!(lines, "event-clock: {event}");
        }
        let query = self.cluster.query_ltime().saturating_sub(1);
        if query > state.query_clock {
            state.query_clock = query;
            let _ = writeln!(lines, "query-clock: {query}");
        }
        self.append_snapshot(lines);
    }

    /// This node leaves gracefully: the `leave` line, after which nothing more is
    /// recorded; the members are forgotten unless `rejoin_after_leave` (Serf).
    pub(crate) fn snapshot_leave(&mut self) {
        self.snapshot_clocks();
        let Some(state) = self.snapshot.as_mut().filter(|s| !s.left) else {
            return;
        };
        if !state.rejoin_after_leave {
            state.alive.clear();
        }
        state.left = true;
        self.append_snapshot(String::from("leave\n"));
    }

    /// A write of the snapshot failed: the next one rewrites it whole.
    pub(crate) fn snapshot_write_failed(&mut self) {
        if let Some(state) = &mut self.snapshot {
            state.broken = true;
        }
    }

    fn append_snapshot(&mut self, lines: String) {
        let Some(state) = &mut self.snapshot else {
            return;
        };
        if lines.is_empty() {
            return;
        }
        state.size = state.size.saturating_add(lines.len() as u64);
        if state.broken || state.size > state.max_size() {
            // The state already holds what `lines` say.
            return self.compact_snapshot();
        }
        self.persist(StateFile::Snapshot, FileWrite::Append, lines.into_bytes());
    }

    /// Replaces the file with its compacted form (Serf's `compact`).
    fn compact_snapshot(&mut self) {
        let Some(state) = &mut self.snapshot else {
            return;
        };
        let bytes = state.compacted();
        state.size = bytes.len() as u64;
        state.broken = false;
        self.persist(StateFile::Snapshot, FileWrite::Replace, bytes);
    }
}
