//! Conformance of the agent RPC's asynchronous records (spec `consul-serf-rpc.md` §1
//! "Streams", §3, §5.7, §5.8, §8.2, §8.13): `monitor` (backlog replay, level filter, one
//! per connection, `stop`), `event` delivered to `stream`s by filter, and the slow-reader
//! bound: records beyond `limits.max_tx` are dropped and counted, never buffered.

#[path = "conformance_rpc_support/mod.rs"]
mod support;

use support::{
    V, assert_bytes, assert_go_encoded, call, connect, enc, handshake, handshaken, hex,
    line_at_start, log, log_record, map, reply, reply_with, req, req_with, sim_with, to_hex,
    values,
};
use tandem_core::{ConnId, Level, Listener, Output};
use tandem_tests::Sim;

fn monitor(seq: u64, level: &str) -> Vec<u8> {
    req_with("monitor", seq, &map(&[("LogLevel", level.into())]))
}

fn stop(seq: u64, what: u64) -> Vec<u8> {
    req_with("stop", seq, &map(&[("Stop", what.into())]))
}

/// An agent that records every level, so the monitor's own filter is what is tested.
fn tracing_sim() -> Sim {
    sim_with(|c| c.log_level = Level::Trace)
}

/// Logs at the simulation's start instant and checks the line format
/// (`YYYY/MM/DD hh:mm:ss [LEVEL] text`, §3).
#[track_caller]
fn log_line(sim: &mut Sim, level: Level, text: &str) -> String {
    let line = log(sim, level, text).expect("recorded");
    assert_eq!(line, line_at_start(level.as_str(), text));
    line
}

// ----- monitor (§5.7) ------------------------------------------------------------------

#[test]
fn monitor_is_acknowledged_with_the_serf_transcript_bytes() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    // {"Command":"monitor","Seq":1} {"LogLevel":"debug"}
    let got = call(
        &mut sim,
        c,
        &hex("82a7436f6d6d616e64a76d6f6e69746f72a353657101 81a84c6f674c6576656ca56465627567"),
    );
    assert_bytes(&got, &hex("82a54572726f72a0a353657101"));
}

#[test]
fn monitor_replays_recent_records_at_or_above_its_level_then_streams_live_ones() {
    let mut sim = tracing_sim();
    let _ = log_line(&mut sim, Level::Debug, "agent: one");
    let _ = log_line(&mut sim, Level::Info, "agent: two");
    let three = log_line(&mut sim, Level::Warn, "agent: three");
    let four = log_line(&mut sim, Level::Err, "agent: four");
    let c = handshaken(&mut sim);
    let mut want = reply(1, "");
    want.extend(log_record(1, &three));
    want.extend(log_record(1, &four));
    assert_bytes(&call(&mut sim, c, &monitor(1, "warn")), &want);

    let _ = log_line(&mut sim, Level::Info, "agent: five");
    assert!(sim.received(c).is_empty(), "INFO is below WARN");
    let six = log_line(&mut sim, Level::Err, "agent: six");
    assert_bytes(&sim.received(c), &log_record(1, &six));
}

#[test]
fn monitor_replay_is_bounded_by_the_log_ring() {
    let mut sim = sim_with(|c| c.limits.log_ring = 3);
    let lines: Vec<String> = (0..5)
        .map(|i| log_line(&mut sim, Level::Info, &format!("agent: record {i}")))
        .collect();
    let c = handshaken(&mut sim);
    let mut want = reply(2, "");
    for line in &lines[2..] {
        want.extend(log_record(2, line));
    }
    assert_bytes(&call(&mut sim, c, &monitor(2, "info")), &want);
}

#[test]
fn monitor_records_interleave_with_replies_on_the_same_connection() {
    let mut sim = tracing_sim();
    let c = handshaken(&mut sim);
    sim.send(c, &monitor(1, "debug"));
    let mut got = sim.received(c);
    let a = log_line(&mut sim, Level::Debug, "agent: a");
    sim.send(c, &req("members-wan", 2));
    let b = log_line(&mut sim, Level::Info, "agent: b");
    sim.send(c, &stop(3, 1));
    let _ = log_line(&mut sim, Level::Err, "agent: c");
    got.extend(sim.received(c));

    let mut want = reply(1, "");
    want.extend(log_record(1, &a));
    want.extend(reply_with(2, "", &map(&[("Members", V::A(vec![]))])));
    want.extend(log_record(1, &b));
    want.extend(reply(3, ""));
    assert_bytes(&got, &want);
}

#[test]
fn monitor_level_names_are_consuls_in_any_case() {
    for level in [
        "trace", "TRACE", "Debug", "debug", "info", "INFO", "warn", "WaRn", "err", "ERR",
    ] {
        let mut sim = Sim::new();
        let c = handshaken(&mut sim);
        let got = call(&mut sim, c, &monitor(4, level));
        assert!(got == reply(4, ""), "{level}: {}", to_hex(&got));
    }
}

#[test]
fn monitor_with_an_unknown_level_names_it_uppercased_and_keeps_the_connection() {
    for (level, error) in [
        ("bogus", "Unknown log level: BOGUS"),
        ("ERROR", "Unknown log level: ERROR"),
        ("error", "Unknown log level: ERROR"),
        ("warning", "Unknown log level: WARNING"),
        ("", "Unknown log level: "),
    ] {
        let mut sim = Sim::new();
        let c = handshaken(&mut sim);
        let got = call(&mut sim, c, &monitor(5, level));
        assert!(got == reply(5, error), "{level:?}: {}", to_hex(&got));
        assert!(!sim.is_closed(c));
        // No monitor was registered: a valid one may follow.
        assert_bytes(&call(&mut sim, c, &monitor(6, "info")), &reply(6, ""));
    }
}

#[test]
fn monitor_with_a_missing_or_nil_level_is_an_unknown_empty_level() {
    for body in [hex("80"), hex("c0")] {
        let mut sim = Sim::new();
        let c = handshaken(&mut sim);
        let mut request = req("monitor", 5);
        request.extend(body);
        assert_bytes(
            &call(&mut sim, c, &request),
            &reply(5, "Unknown log level: "),
        );
    }
}

#[test]

fn monitor_uppercases_a_non_ascii_level_as_go_does() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &monitor(5, "débug"));
    assert_bytes(&got, &reply(5, "Unknown log level: DÉBUG"));
}

#[test]
fn a_second_monitor_on_a_connection_is_refused_and_the_first_keeps_running() {
    let mut sim = tracing_sim();
    let c = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, c, &monitor(1, "warn")), &reply(1, ""));
    // §5.7: {"Error":"Monitor already exists","Seq":2}
    let got = call(&mut sim, c, &monitor(2, "INFO"));
    assert_bytes(&got, &reply(2, "Monitor already exists"));
    assert_bytes(
        &got,
        &hex("82a54572726f72b64d6f6e69746f7220616c726561647920657869737473a353657102"),
    );
    // The level is checked first.
    let got = call(&mut sim, c, &monitor(3, "bogus"));
    assert_bytes(&got, &reply(3, "Unknown log level: BOGUS"));
    // Still the first monitor: its Seq and its level.
    let _ = log_line(&mut sim, Level::Info, "agent: below warn");
    let w = log_line(&mut sim, Level::Warn, "agent: warn");
    assert_bytes(&sim.received(c), &log_record(1, &w));
}

#[test]
fn monitors_on_two_connections_each_get_the_record_with_their_own_seq() {
    let mut sim = Sim::new();
    let a = handshaken(&mut sim);
    let b = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, a, &monitor(7, "info")), &reply(7, ""));
    assert_bytes(&call(&mut sim, b, &monitor(9, "err")), &reply(9, ""));
    let i = log_line(&mut sim, Level::Info, "agent: i");
    let e = log_line(&mut sim, Level::Err, "agent: e");
    let mut want_a = log_record(7, &i);
    want_a.extend(log_record(7, &e));
    assert_bytes(&sim.received(a), &want_a);
    assert_bytes(&sim.received(b), &log_record(9, &e));
}

#[test]
fn stop_of_another_seq_keeps_the_monitor_and_stop_of_its_seq_ends_it() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, c, &monitor(1, "info")), &reply(1, ""));
    // §5.7: stop 99 succeeds and the monitor keeps running.
    assert_bytes(&call(&mut sim, c, &stop(3, 99)), &reply(3, ""));
    let x = log_line(&mut sim, Level::Info, "agent: x");
    assert_bytes(&sim.received(c), &log_record(1, &x));
    // §5.7: stop 1, then no further records.
    assert_bytes(
        &call(
            &mut sim,
            c,
            &hex("82a7436f6d6d616e64a473746f70a353657104 81a453746f7001"),
        ),
        &hex("82a54572726f72a0a353657104"),
    );
    for i in 0..5 {
        let _ = log_line(&mut sim, Level::Err, &format!("agent: after stop {i}"));
    }
    assert!(sim.received(c).is_empty());
    // The slot is free again: a new monitor replays and streams under its own Seq.
    let got = call(&mut sim, c, &monitor(5, "err"));
    let vals = values(&got);
    assert_eq!(vals[0], map(&[("Error", "".into()), ("Seq", 5u64.into())]));
    assert_eq!(vals.len(), 1 + 2 * 5, "header, then 5 replayed records");
}

#[test]
fn the_agents_log_level_is_the_floor_for_every_monitor() {
    // The agent's own log level is the floor: a TRACE monitor on an INFO agent gets no DEBUG.
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, c, &monitor(1, "trace")), &reply(1, ""));
    assert_eq!(log(&mut sim, Level::Debug, "agent: hidden"), None);
    assert!(sim.received(c).is_empty());
}

#[test]
fn log_records_are_written_as_go_writes_them() {
    // Lines of 32 bytes or more go out as str8 (§4.1): `81 a3"Log" d9 <len> …`.
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, c, &monitor(1, "info")), &reply(1, ""));
    let line = log_line(&mut sim, Level::Info, "agent: Serf agent starting");
    let got = sim.received(c);
    let mut want = hex("82a54572726f72a0a353657101 81a34c6f67 d9");
    want.push(line.len() as u8);
    want.extend(line.as_bytes());
    assert_bytes(&got, &want);
}

#[test]

fn a_multi_line_entry_is_one_record_with_its_inner_newlines() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, c, &monitor(1, "info")), &reply(1, ""));
    let text = "agent: 1 error occurred:\n\t* Failed to join 127.0.0.1\n";
    let _ = log(&mut sim, Level::Err, text);
    let want = line_at_start(
        "ERR",
        "agent: 1 error occurred:\n\t* Failed to join 127.0.0.1",
    );
    assert_bytes(&sim.received(c), &log_record(1, &want));
}

// ----- event and stream (§3, §5.8) -----------------------------------------------------

fn stream(seq: u64, filter: &str) -> Vec<u8> {
    req_with("stream", seq, &map(&[("Type", filter.into())]))
}

fn event(seq: u64, name: &str, payload: &[u8], coalesce: bool) -> Vec<u8> {
    req_with(
        "event",
        seq,
        &map(&[
            ("Coalesce", coalesce.into()),
            ("Name", name.into()),
            ("Payload", V::B(payload.to_vec())),
        ]),
    )
}

/// A user event record body, keys in Go's order (§3).
fn user_event(coalesce: bool, ltime: u64, name: &str, payload: &[u8]) -> V {
    map(&[
        ("Coalesce", coalesce.into()),
        ("Event", "user".into()),
        ("LTime", ltime.into()),
        ("Name", name.into()),
        ("Payload", V::B(payload.to_vec())),
    ])
}

/// Decodes records (header, body pairs) into (Seq, body).
#[track_caller]
fn records(bytes: &[u8]) -> Vec<(u64, V)> {
    assert_go_encoded(bytes);
    let vals = values(bytes);
    assert!(
        vals.len().is_multiple_of(2),
        "header and body pairs: {vals:?}"
    );
    vals.chunks(2)
        .map(|p| {
            assert_eq!(p[0].get("Error").str(), "");
            (p[0].get("Seq").u64(), p[1].clone())
        })
        .collect()
}

#[test]
fn an_event_reaches_a_user_stream_on_another_connection_with_the_serf_record_bytes() {
    let mut sim = Sim::new();
    let s = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, s, &stream(10, "user")), &reply(10, ""));
    let a = handshaken(&mut sim);
    // §5.8: {"Command":"event","Seq":1} {"Name":"deploy","Payload":bin"9c45b87","Coalesce":true}
    let mut request = req("event", 1);
    request.extend(hex(
        "83a44e616d65a66465706c6f79a75061796c6f6164c40739633435623837a8436f616c65736365c3",
    ));
    assert_bytes(&call(&mut sim, a, &request), &reply(1, ""));
    // §5.8's record with this agent's first LTime (1 where the transcript had 3).
    assert_bytes(
        &sim.received(s),
        &hex("82a54572726f72a0a35365710a \
             85a8436f616c65736365c3a54576656e74a475736572a54c54696d6501a44e616d65a66465706c6f79\
             a75061796c6f6164c40739633435623837"),
    );
}

#[test]
fn each_matching_stream_gets_its_own_copy_and_others_get_none() {
    let mut sim = Sim::new();
    let s = handshaken(&mut sim);
    let filters = [
        (10, "*", true),
        (11, "user", true),
        (12, "user:deploy", true),
        (13, "user:other", false),
        (14, "member-join", false),
        (15, "user:deploy,member-update", true),
        (16, "", true),
        (17, "query", false),
        (18, "member-join, user:deploy", true),
    ];
    for (seq, filter, _) in filters {
        assert_bytes(&call(&mut sim, s, &stream(seq, filter)), &reply(seq, ""));
    }
    let a = handshaken(&mut sim);
    assert_bytes(
        &call(&mut sim, a, &event(1, "deploy", b"v2", false)),
        &reply(1, ""),
    );
    let mut got = records(&sim.received(s));
    got.sort_by_key(|(seq, _)| *seq);
    let want: Vec<(u64, V)> = filters
        .iter()
        .filter(|f| f.2)
        .map(|f| (f.0, user_event(false, 1, "deploy", b"v2")))
        .collect();
    assert_eq!(got, want);
    assert!(sim.received(a).is_empty(), "the sender has no stream");
}

#[test]
fn event_ltime_counts_up_from_one() {
    let mut sim = Sim::new();
    let s = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, s, &stream(2, "*")), &reply(2, ""));
    let a = handshaken(&mut sim);
    for seq in 1..=3 {
        assert_bytes(
            &call(&mut sim, a, &event(seq, "e", b"", true)),
            &reply(seq, ""),
        );
    }
    let got = records(&sim.received(s));
    let ltimes: Vec<u64> = got.iter().map(|(_, b)| b.get("LTime").u64()).collect();
    assert_eq!(ltimes, [1, 2, 3]);
}

#[test]
fn event_payload_given_as_a_string_or_nil_is_delivered_as_bin() {
    let mut sim = Sim::new();
    let s = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, s, &stream(2, "user")), &reply(2, ""));
    let a = handshaken(&mut sim);
    let as_str = req_with(
        "event",
        1,
        &map(&[("Name", "n".into()), ("Payload", "text".into())]),
    );
    assert_bytes(&call(&mut sim, a, &as_str), &reply(1, ""));
    let nil = req_with(
        "event",
        2,
        &map(&[("Name", "".into()), ("Payload", V::Nil)]),
    );
    assert_bytes(&call(&mut sim, a, &nil), &reply(2, ""));
    let got = records(&sim.received(s));
    assert_eq!(
        got,
        [
            (2, user_event(false, 1, "n", b"text")),
            (2, user_event(false, 2, "", b"")),
        ]
    );
    // An empty Payload is bin8 of length 0 (`c4 00`), as Go writes it.
    assert!(enc(&got[1].1).ends_with(&hex("a75061796c6f6164c400")));
}

#[test]
fn an_event_over_512_bytes_of_name_and_payload_is_refused_and_not_delivered() {
    let mut sim = Sim::new();
    let s = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, s, &stream(2, "*")), &reply(2, ""));
    let a = handshaken(&mut sim);
    let limit = "user event exceeds configured limit of 512 bytes before encoding";
    let got = call(&mut sim, a, &event(3, "e", &[7; 512], false));
    assert_bytes(&got, &reply(3, limit));
    // The name counts too.
    let got = call(&mut sim, a, &event(4, &"n".repeat(300), &[7; 213], false));
    assert_bytes(&got, &reply(4, limit));
    assert!(!sim.is_closed(a));
    assert!(sim.received(s).is_empty());
    // Refused events take no LTime.
    assert_bytes(
        &call(&mut sim, a, &event(5, "ok", b"x", false)),
        &reply(5, ""),
    );
    assert_eq!(
        records(&sim.received(s)),
        [(2, user_event(false, 1, "ok", b"x"))]
    );
}

#[test]
fn a_stream_seq_already_in_use_is_refused() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, c, &stream(10, "*")), &reply(10, ""));
    let got = call(&mut sim, c, &stream(10, "user"));
    assert_bytes(&got, &reply(10, "Stream with given sequence exists"));
    // 33 bytes: str8.
    assert_eq!(&got[7..9], [0xd9, 33]);
    assert!(!sim.is_closed(c));
}

#[test]
fn an_invalid_stream_filter_is_refused_and_registers_nothing() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    for (seq, filter) in [
        (8, "bogus-event"),
        (9, "user:deploy,bogus"),
        (10, "member-joins"),
        (11, "users"),
    ] {
        let got = call(&mut sim, c, &stream(seq, filter));
        assert!(
            got == reply(seq, "Invalid event filter"),
            "{filter}: {}",
            to_hex(&got)
        );
        assert!(!sim.is_closed(c));
    }
    // Seq 8 was not taken by the refused stream.
    assert_bytes(&call(&mut sim, c, &stream(8, "user")), &reply(8, ""));
}

#[test]
fn stop_ends_a_stream_and_leaves_the_others() {
    let mut sim = Sim::new();
    let s = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, s, &stream(10, "*")), &reply(10, ""));
    assert_bytes(&call(&mut sim, s, &stream(11, "user")), &reply(11, ""));
    assert_bytes(&call(&mut sim, s, &stop(12, 10)), &reply(12, ""));
    let a = handshaken(&mut sim);
    assert_bytes(
        &call(&mut sim, a, &event(1, "e", b"", false)),
        &reply(1, ""),
    );
    assert_eq!(
        records(&sim.received(s)),
        [(11, user_event(false, 1, "e", b""))]
    );
    // The stopped Seq can be used again.
    assert_bytes(&call(&mut sim, s, &stream(10, "user:e")), &reply(10, ""));
}

#[test]
fn stop_ends_both_a_monitor_and_a_stream_sharing_its_seq() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, c, &monitor(5, "info")), &reply(5, ""));
    assert_bytes(&call(&mut sim, c, &stream(5, "*")), &reply(5, ""));
    assert_bytes(&call(&mut sim, c, &stop(6, 5)), &reply(6, ""));
    let _ = log_line(&mut sim, Level::Err, "agent: quiet");
    let a = handshaken(&mut sim);
    assert_bytes(
        &call(&mut sim, a, &event(1, "e", b"", false)),
        &reply(1, ""),
    );
    assert!(sim.received(c).is_empty());
}

// ----- slow readers (§1, §8.10) --------------------------------------------------------

/// A client that reads only when told to. It drives `sim.agent` directly (the `Sim` driver
/// reads everything at once) and follows the call contract: it offers unsent bytes only
/// after `ResumeRead`.
struct SlowClient {
    c: ConnId,
    unsent: Vec<u8>,
    received: Vec<u8>,
    closed: bool,
}

impl SlowClient {
    fn open(sim: &mut Sim) -> Self {
        let now = sim.now;
        let c = sim.agent.accept(Listener::Rpc, None, now).expect("accept");
        let mut client = SlowClient {
            c,
            unsent: Vec::new(),
            received: Vec::new(),
            closed: false,
        };
        client.pump(sim);
        client
    }

    fn send(&mut self, sim: &mut Sim, bytes: &[u8]) {
        self.unsent.extend_from_slice(bytes);
        self.offer(sim);
        self.pump(sim);
    }

    fn offer(&mut self, sim: &mut Sim) {
        let now = sim.now;
        let n = sim.agent.handle_stream(self.c, &self.unsent, now);
        self.unsent.drain(..n);
    }

    /// Acts on outputs, except that it does not write (`Transmit` is left pending).
    fn pump(&mut self, sim: &mut Sim) {
        while let Some(out) = sim.agent.poll_output() {
            match out {
                Output::ResumeRead(c) if c == self.c => self.offer(sim),
                Output::Close(c) if c == self.c => {
                    self.received.extend_from_slice(sim.agent.tx_pending(c));
                    self.closed = true;
                    let now = sim.now;
                    sim.agent.handle_reset(c, now);
                }
                _ => {}
            }
        }
    }

    fn log(&mut self, sim: &mut Sim, level: Level, text: &str) -> String {
        let now = sim.now;
        let line = sim.agent.log_record(level, text, now).expect("recorded");
        self.pump(sim);
        line.line.to_string()
    }

    fn pending(&self, sim: &Sim) -> usize {
        sim.agent.tx_pending(self.c).len()
    }

    /// Reads until the agent has nothing more to write; returns what was read.
    fn read(&mut self, sim: &mut Sim) -> Vec<u8> {
        let start = self.received.len();
        loop {
            let pending = sim.agent.tx_pending(self.c).to_vec();
            if pending.is_empty() {
                break;
            }
            self.received.extend_from_slice(&pending);
            let now = sim.now;
            sim.agent.tx_consume(self.c, pending.len(), now);
            self.pump(sim);
        }
        self.received[start..].to_vec()
    }
}

#[test]
fn a_slow_monitor_reader_has_records_dropped_and_counted_not_buffered() {
    let max_tx = 4096;
    let mut sim = sim_with(|c| c.limits.max_tx = max_tx);
    let mut client = SlowClient::open(&mut sim);
    client.send(&mut sim, &handshake(0));
    client.send(&mut sim, &monitor(1, "info"));
    let mut want = hex(support::HANDSHAKE_OK);
    want.extend(reply(1, ""));
    assert_bytes(&client.read(&mut sim), &want);

    // The client stops reading; the agent logs far more than max_tx.
    let lines: Vec<String> = (0..1000)
        .map(|i| client.log(&mut sim, Level::Info, &format!("agent: record {i:04}")))
        .collect();
    let record_len = log_record(1, &lines[0]).len();
    let pending = client.pending(&sim);
    assert!(
        pending >= max_tx && pending < max_tx + record_len,
        "pending {pending} bytes, max_tx {max_tx}, record {record_len}"
    );
    let delivered = pending / record_len;
    assert_eq!(pending % record_len, 0, "whole records only");
    assert_eq!(
        sim.agent.stats().rpc_records_dropped,
        (1000 - delivered) as u64
    );

    // A request sent meanwhile waits for the reader, then is answered in order.
    client.send(&mut sim, &req("members-wan", 2));
    assert_eq!(client.pending(&sim), pending, "no reply while over max_tx");
    let mut want: Vec<u8> = lines[..delivered]
        .iter()
        .flat_map(|l| log_record(1, l))
        .collect();
    want.extend(reply_with(2, "", &map(&[("Members", V::A(vec![]))])));
    assert_bytes(&client.read(&mut sim), &want);

    // Caught up: records flow again, and stop works as usual.
    let after = client.log(&mut sim, Level::Info, "agent: after");
    assert_bytes(&client.read(&mut sim), &log_record(1, &after));
    client.send(&mut sim, &stop(3, 1));
    let _ = client.log(&mut sim, Level::Info, "agent: stopped");
    assert_bytes(&client.read(&mut sim), &reply(3, ""));
    assert!(!client.closed);
}

#[test]
fn a_slow_reader_pipelining_requests_is_bounded_by_max_tx_and_rpc_max_frame() {
    let (max_tx, max_frame) = (4096, 4096);
    let mut sim = sim_with(|c| {
        c.limits.max_tx = max_tx;
        c.limits.rpc_max_frame = max_frame;
    });
    let mut client = SlowClient::open(&mut sim);
    client.send(&mut sim, &handshake(0));
    assert_bytes(&client.read(&mut sim), &hex(support::HANDSHAKE_OK));

    let n = 2000u64;
    let requests: Vec<u8> = (1..=n).flat_map(|seq| req("members-wan", seq)).collect();
    let answer = |seq: u64| reply_with(seq, "", &map(&[("Members", V::A(vec![]))]));
    client.send(&mut sim, &requests);

    // Output stops near max_tx; input stops at one frame beyond what was answered.
    let pending = client.pending(&sim);
    let answered = values(sim.agent.tx_pending(client.c)).len() as u64 / 2;
    assert!(
        pending >= max_tx && pending < max_tx + answer(n).len(),
        "pending {pending}"
    );
    let taken = requests.len() - client.unsent.len();
    let consumed: usize = (1..=answered).map(|s| req("members-wan", s).len()).sum();
    assert!(
        taken - consumed <= max_frame,
        "buffered {} bytes of requests, more than one frame",
        taken - consumed
    );
    assert!(!client.unsent.is_empty(), "backpressure reached the client");

    // Once the client reads, every request is answered, in order.
    let got = client.read(&mut sim);
    let want: Vec<u8> = (1..=n).flat_map(answer).collect();
    assert!(
        client.unsent.is_empty(),
        "{} bytes never taken",
        client.unsent.len()
    );
    assert_eq!(got.len(), want.len());
    assert_bytes(&got, &want);
    assert!(!client.closed);
    assert_eq!(sim.agent.stats().rpc_records_dropped, 0);
}

#[test]
fn a_replayed_backlog_is_bounded_by_max_tx_too() {
    let max_tx = 4096;
    let mut sim = sim_with(|c| c.limits.max_tx = max_tx);
    let lines: Vec<String> = (0..200)
        .map(|i| log_line(&mut sim, Level::Info, &format!("agent: backlog {i:04}")))
        .collect();
    let mut client = SlowClient::open(&mut sim);
    client.send(&mut sim, &handshake(0));
    client.send(&mut sim, &monitor(1, "info"));
    let record_len = log_record(1, &lines[0]).len();
    let head = support::HANDSHAKE_OK.len() / 2 + reply(1, "").len();
    let pending = client.pending(&sim);
    assert!(
        pending >= max_tx && pending < max_tx + record_len,
        "pending {pending}"
    );
    let replayed = (pending - head) / record_len;
    assert_eq!(
        sim.agent.stats().rpc_records_dropped,
        (200 - replayed) as u64
    );
    let mut want = hex(support::HANDSHAKE_OK);
    want.extend(reply(1, ""));
    want.extend(lines[..replayed].iter().flat_map(|l| log_record(1, l)));
    assert_bytes(&client.read(&mut sim), &want);
}

#[test]
fn a_slow_stream_reader_has_events_dropped_and_counted_not_buffered() {
    let max_tx = 4096;
    let mut sim = sim_with(|c| c.limits.max_tx = max_tx);
    let mut s = SlowClient::open(&mut sim);
    s.send(&mut sim, &handshake(0));
    s.send(&mut sim, &stream(2, "user"));
    let mut want = hex(support::HANDSHAKE_OK);
    want.extend(reply(2, ""));
    assert_bytes(&s.read(&mut sim), &want);
    let mut a = SlowClient::open(&mut sim);
    a.send(&mut sim, &handshake(0));
    assert_bytes(&a.read(&mut sim), &hex(support::HANDSHAKE_OK));

    // `s` stops reading; `a` sends 100 events of 64 bytes.
    let n = 100u64;
    for seq in 1..=n {
        a.send(&mut sim, &event(seq, "e", &[0; 64], false));
        assert_bytes(&a.read(&mut sim), &reply(seq, ""));
    }
    let record = |ltime: u64| reply_with(2, "", &user_event(false, ltime, "e", &[0; 64]));
    let record_len = record(1).len();
    let pending = s.pending(&sim);
    assert!(
        pending >= max_tx && pending < max_tx + record_len,
        "pending {pending}"
    );
    let delivered = (pending / record_len) as u64;
    assert_eq!(sim.agent.stats().rpc_records_dropped, n - delivered);
    let want: Vec<u8> = (1..=delivered).flat_map(record).collect();
    assert_bytes(&s.read(&mut sim), &want);

    // Caught up: the next event arrives.
    a.send(&mut sim, &event(n + 1, "e", &[0; 64], false));
    assert_bytes(&a.read(&mut sim), &reply(n + 1, ""));
    assert_bytes(&s.read(&mut sim), &record(n + 1));
}

#[test]
fn a_closed_monitor_connection_gets_nothing_and_costs_nothing() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    sim.send(c, &handshake(0));
    sim.send(c, &monitor(1, "info"));
    let _ = sim.received(c);
    sim.reset(c);
    assert_eq!(sim.agent.connection_count(Listener::Rpc), 0);
    let _ = log_line(&mut sim, Level::Info, "agent: nobody listens");
    assert_eq!(sim.agent.stats().rpc_records_dropped, 0);
}
