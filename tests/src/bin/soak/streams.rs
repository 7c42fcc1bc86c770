//! The agent RPC load and its accounting: Consul `monitor` subscribers, Serf `stream`
//! subscribers, a sender of numbered user events that also calls `members-lan`, `members`
//! and `stats`, and the wind-down checks.
//!
//! A subscriber subscribes, reads records for 3–20 s, sends `stop` and reads up to its
//! reply (no record of the stream may follow it). Then it is checked against what the load
//! did meanwhile. Anything the agent must have logged or emitted between the subscription's
//! reply and the `stop` must be there exactly once and in order:
//! - a `monitor` (DEBUG): the `http: session ID created` / `closed` line of every session
//!   the load created or closed in that window;
//! - a `stream`: every numbered `user:soak` event sent in that window, in number order,
//!   and, per peer, the `member-*` events of every membership change the churn caused in
//!   it (as a subsequence: other events, such as `member-update`, may come between),
//!   allowing each event 200 ms after the member view showed the change (the view shows
//!   what the last event announced, so only delivery separates them).
//!
//! A record the agent dropped for a slow reader is counted in `stats` as
//! `rpc.records_dropped`; a missing record is a failure unless that counter accounts for
//! it. The readers never stop reading, so none should be dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Rpc, V, check_header, header, map, str_field};
use crate::ctx::{AGENT_NAME, Ctx, End, Rng, SESSION_TIMEOUT, add};

type R<T> = Result<T, String>;

/// Serf's member events and this run's user events.
const STREAM_FILTER: &str =
    "member-join,member-leave,member-failed,member-update,member-reap,user:soak";
/// How long after `members-lan` shows a membership change its `member-*` event may still
/// be on its way to a stream subscriber: the view shows what the last event announced, so
/// the event was emitted before; only its delivery on another connection can lag.
const EVENT_LAG: Duration = Duration::from_millis(200);
/// The user events' name.
const EVENT_NAME: &str = "soak";

/// Subscribes monitors one after another until the load stops.
pub fn monitor(ctx: &Arc<Ctx>, m: usize) {
    let mut rng = Rng::new(ctx.plan.seed, 200 + m as u64);
    while !ctx.stopping() {
        if let Err(e) = subscription(ctx, &mut rng, Sub::Monitor) {
            ctx.fail(format!("monitor {m}: {e}"));
            ctx.sleep(Duration::from_secs(1));
        }
    }
}

/// Subscribes streams one after another until the load stops.
pub fn stream(ctx: &Arc<Ctx>, s: usize) {
    let mut rng = Rng::new(ctx.plan.seed, 300 + s as u64);
    while !ctx.stopping() {
        if let Err(e) = subscription(ctx, &mut rng, Sub::Stream) {
            ctx.fail(format!("stream {s}: {e}"));
            ctx.sleep(Duration::from_secs(1));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sub {
    Monitor,
    Stream,
}

fn subscription(ctx: &Ctx, rng: &mut Rng, kind: Sub) -> R<()> {
    let mut rpc = Rpc::connect(ctx.rpc)?;
    let (command, body) = match kind {
        Sub::Monitor => ("monitor", map(&[("LogLevel", "DEBUG".into())])),
        Sub::Stream => ("stream", map(&[("Type", STREAM_FILTER.into())])),
    };
    let seq = rpc.send(command, Some(&body))?;
    check_header(&rpc.must_value(command)?, seq, command)?;
    let sub = Instant::now();
    add(
        match kind {
            Sub::Monitor => &ctx.n.monitor_subs,
            Sub::Stream => &ctx.n.stream_subs,
        },
        1,
    );
    let until = sub + Duration::from_millis(rng.range(3_000, 20_000));
    let mut records = Vec::new();
    while !ctx.stopping() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(h) = rpc.value(left.min(Duration::from_millis(200)))? {
            check_header(&h, seq, "a record")?;
            records.push(rpc.must_value("a record's body")?);
        }
    }
    let stop_sent = Instant::now();
    let stop = rpc.send("stop", Some(&map(&[("Stop", V::U(seq))])))?;
    loop {
        let h = rpc.must_value("stop")?;
        match header(&h) {
            Some(("", s)) if s == seq => records.push(rpc.must_value("a record's body")?),
            Some(("", s)) if s == stop => break,
            _ => return Err(format!("{command}: {h:?} while waiting for stop's reply")),
        }
    }
    if let Some(v) = rpc.value(Duration::from_millis(200))? {
        return Err(format!("{command}: {v:?} after stop's reply"));
    }
    match kind {
        Sub::Monitor => {
            add(&ctx.n.monitor_records, records.len() as u64);
            check_monitor(ctx, &records, sub, stop_sent)
        }
        Sub::Stream => {
            add(&ctx.n.stream_records, records.len() as u64);
            check_stream(ctx, &records, sub, stop_sent)
        }
    }
}

/// Missing records: a failure unless `rpc.records_dropped` can account for them.
fn missing(ctx: &Ctx, what: &str, missing: &[String]) -> R<()> {
    if missing.is_empty() {
        return Ok(());
    }
    add(&ctx.n.stream_missing, missing.len() as u64);
    let dropped = stats(ctx)
        .ok()
        .and_then(|s| stat(&s, "rpc", "records_dropped"));
    let total = ctx
        .n
        .stream_missing
        .load(std::sync::atomic::Ordering::Relaxed);
    match dropped {
        Some(d) if d >= total => {
            eprintln!(
                "soak: {} {what} records missing, accounted for by rpc.records_dropped {d}",
                missing.len()
            );
            Ok(())
        }
        _ => Err(format!(
            "{} {what} records missing (rpc.records_dropped {dropped:?}, {total} missing in \
             all): {}",
            missing.len(),
            missing
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ")
        )),
    }
}

fn check_monitor(ctx: &Ctx, records: &[V], sub: Instant, stop_sent: Instant) -> R<()> {
    // Each line's text after its `[LEVEL] ` tag, and where it came.
    let mut at: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let line = str_field(r, "Log").ok_or_else(|| format!("monitor record {r:?}"))?;
        let text = line.find("] ").map_or(line, |p| &line[p + 2..]);
        at.entry(text).or_default().push(i);
    }
    let marks = ctx.marks.lock().unwrap();
    let mut found = Vec::new();
    let mut lost = Vec::new();
    for m in marks.iter().filter(|m| m.send > sub && m.resp < stop_sent) {
        match at.get(m.text.as_str()).map(Vec::as_slice) {
            None => lost.push(m.text.clone()),
            Some([p]) => found.push((m.send, m.resp, *p)),
            Some(many) => {
                return Err(format!("monitor: {:?} came {} times", m.text, many.len()));
            }
        }
    }
    drop(marks);
    in_order(&found).map_err(|e| format!("monitor: {e}"))?;
    add(&ctx.n.monitor_lines_checked, found.len() as u64);
    missing(ctx, "monitor", &lost)
}

/// Things done one after another must come in that order: an item whose request was sent
/// after another's answer came must come after it. `found` is (send, answer, position).
fn in_order(found: &[(Instant, Instant, usize)]) -> R<()> {
    let mut by_send = found.to_vec();
    by_send.sort_by_key(|f| f.0);
    let mut by_resp = found.to_vec();
    by_resp.sort_by_key(|f| f.1);
    let (mut j, mut max_before) = (0, None::<usize>);
    for &(send, _, pos) in &by_send {
        while j < by_resp.len() && by_resp[j].1 < send {
            max_before = max_before.max(Some(by_resp[j].2));
            j += 1;
        }
        if let Some(b) = max_before
            && pos <= b
        {
            return Err(format!(
                "a record at {pos} came before one at {b} that was caused earlier"
            ));
        }
    }
    Ok(())
}

fn check_stream(ctx: &Ctx, records: &[V], sub: Instant, stop_sent: Instant) -> R<()> {
    let mut users: Vec<u64> = Vec::new();
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records {
        let event = str_field(r, "Event").ok_or_else(|| format!("stream record {r:?}"))?;
        if event == "user" {
            let payload = match r.try_get("Payload") {
                Some(V::B(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => return Err(format!("user event without a bin payload: {r:?}")),
            };
            if str_field(r, "Name") != Some(EVENT_NAME) {
                return Err(format!("a user event not asked for: {r:?}"));
            }
            users.push(
                payload
                    .parse()
                    .map_err(|_| format!("user event payload {payload:?}"))?,
            );
            continue;
        }
        let Some(V::A(ms)) = r.try_get("Members") else {
            return Err(format!("member event without Members: {r:?}"));
        };
        for m in ms {
            let name = str_field(m, "Name").ok_or_else(|| format!("member {m:?}"))?;
            members
                .entry(name.to_string())
                .or_default()
                .push(event.to_string());
        }
    }
    // User events: sent one after another, so numbered in the order the agent got them.
    if let Some(w) = users.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "stream: user event {} after {} (duplicated or out of order)",
            w[1], w[0]
        ));
    }
    let mut lost = Vec::new();
    let mut checked = 0;
    for e in ctx
        .user_events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.send > sub && e.resp < stop_sent)
    {
        if users.binary_search(&e.seq).is_ok() {
            checked += 1;
        } else {
            lost.push(format!("user event {}", e.seq));
        }
    }
    add(&ctx.n.user_events_checked, checked);
    // Member events: per peer, the changes caused in the window, in order.
    let mut expected: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let churn = ctx.churn.lock().unwrap();
    let mut in_window: Vec<_> = churn
        .iter()
        .filter(|c| c.start > sub && c.seen + EVENT_LAG < stop_sent)
        .collect();
    in_window.sort_by_key(|c| c.start);
    for c in in_window {
        expected.entry(c.name.clone()).or_default().push(c.kind);
    }
    drop(churn);
    let (mut matched, mut extra) = (0u64, 0u64);
    for (name, want) in &expected {
        let got = members.get(name).map(Vec::as_slice).unwrap_or_default();
        let mut it = got.iter();
        let mut n = 0;
        for kind in want {
            if it.by_ref().any(|g| g == kind) {
                n += 1;
            } else {
                lost.push(format!("{kind} of {name} (saw {got:?}, wanted {want:?})"));
                break;
            }
        }
        matched += n;
    }
    for (name, got) in &members {
        let want = expected.get(name).map_or(0, Vec::len);
        extra += (got.len().saturating_sub(want)) as u64;
    }
    add(&ctx.n.member_events_checked, matched);
    add(&ctx.n.member_events_extra, extra);
    missing(ctx, "stream", &lost)
}

/// Numbered user events every 100 ms, and `members-lan`, `members` and `stats` every
/// second, until the load stops.
pub fn caller(ctx: &Arc<Ctx>) {
    let mut rng = Rng::new(ctx.plan.seed, 400);
    let mut rpc = None;
    let mut seq = 0u64;
    let mut tick = 0u64;
    while ctx.sleep(Duration::from_millis(100)) {
        tick += 1;
        let r = (|| -> R<()> {
            if rpc.is_none() || rng.pct(2) {
                rpc = Some(Rpc::connect(ctx.rpc)?);
            }
            let rpc = rpc.as_mut().expect("connected");
            seq += 1;
            let body = map(&[
                ("Coalesce", V::Bool(false)),
                ("Name", EVENT_NAME.into()),
                ("Payload", V::B(seq.to_string().into_bytes())),
            ]);
            let send = Instant::now();
            rpc.call("event", Some(&body), false, "event")?;
            ctx.user_events.lock().unwrap().push(crate::ctx::SentEvent {
                seq,
                send,
                resp: Instant::now(),
            });
            add(&ctx.n.user_events, 1);
            if tick.is_multiple_of(10) {
                for command in ["members-lan", "members"] {
                    let m = rpc
                        .call(command, None, true, command)?
                        .expect("a body was asked for");
                    let me = match m.try_get("Members") {
                        Some(V::A(ms)) => ms
                            .iter()
                            .find(|m| str_field(m, "Name") == Some(AGENT_NAME))
                            .and_then(|m| str_field(m, "Status")),
                        _ => None,
                    };
                    if me != Some("alive") {
                        return Err(format!("{command}: {AGENT_NAME} not alive in {m:?}"));
                    }
                    add(&ctx.n.rpc_members, 1);
                }
                let s = rpc.call("stats", None, true, "stats")?.expect("a body");
                for (section, key) in [("agent", "sessions"), ("rpc", "records_dropped")] {
                    if stat(&s, section, key).is_none() {
                        return Err(format!("stats without {section}.{key}: {s:?}"));
                    }
                }
                add(&ctx.n.rpc_stats, 1);
            }
            Ok(())
        })();
        if let Err(e) = r {
            ctx.fail(format!("rpc caller: {e}"));
            rpc = None;
            ctx.sleep(Duration::from_secs(1));
        }
    }
}

fn stats(ctx: &Ctx) -> R<V> {
    let mut rpc = Rpc::connect(ctx.rpc)?;
    Ok(rpc.call("stats", None, true, "stats")?.expect("a body"))
}

/// A numeric value of `stats`.
fn stat(stats: &V, section: &str, key: &str) -> Option<u64> {
    let s = match stats {
        V::M(_) => stats.try_get(section)?,
        _ => return None,
    };
    str_field(s, key)?.parse().ok()
}

/// Once the load has stopped: every session (closed, or abandoned and expired) and every
/// job must be gone within the session timeout, and the stream records found missing must
/// be accounted for by `rpc.records_dropped`.
pub fn final_checks(ctx: &Ctx) -> End {
    let mut end = End::default();
    let started = Instant::now();
    let deadline = started + SESSION_TIMEOUT + Duration::from_secs(10);
    let mut last;
    loop {
        match stats(ctx) {
            Ok(s) => {
                let sessions = stat(&s, "agent", "sessions");
                let jobs = stat(&s, "agent", "jobs");
                end.records_dropped = stat(&s, "rpc", "records_dropped");
                end.sessions_expired = stat(&s, "http", "sessions_expired");
                end.connections_accepted = stat(&s, "agent", "connections_accepted");
                if sessions == Some(0) && jobs == Some(0) {
                    end.quiet_after = Some(started.elapsed().as_secs_f64());
                    break;
                }
                last = Some(format!("sessions {sessions:?}, jobs {jobs:?}"));
            }
            Err(e) => last = Some(e),
        }
        if Instant::now() >= deadline {
            ctx.fail(format!(
                "after the load stopped, sessions or jobs remained: {}",
                last.unwrap_or_default()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let lost = ctx
        .n
        .stream_missing
        .load(std::sync::atomic::Ordering::Relaxed);
    match end.records_dropped {
        Some(d) if d >= lost => {}
        d => ctx.fail(format!(
            "{lost} stream records missing, rpc.records_dropped {d:?}"
        )),
    }
    end
}
