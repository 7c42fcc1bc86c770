//! The slow-reader policy's last step and the connection limit's answer, on the virtual
//! clock: a connection whose reader takes none of its pending output for
//! `timing.write_stall_timeout_ms` is closed and the output discarded (HTTP and RPC alike;
//! progress of a single byte restarts the clock), and an HTTP connection over
//! `limits.max_connections` is answered `503` and closed while RPC ones are refused, with
//! `limits.overflow_connections` bounding how many such answers are outstanding.

#[path = "conformance_rpc_support/mod.rs"]
mod support;

use std::time::Duration;

use support::{call, handshaken, map, req_with};
use tandem_core::{Config, Level, Limits, Listener, Refused, Timing};
use tandem_tests::Sim;
use tandem_tests::http::post_api;

const STALL_MS: u64 = 60_000;

const UNAVAILABLE_503: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 41\r\nConnection: close\r\n\r\nService Unavailable: too many connections";

fn version_request() -> Vec<u8> {
    post_api(r#"{"action":"exec","command":"version"}"#)
}

fn sim_with_timing(timing: Timing) -> Sim {
    Sim::with_config(Config {
        timing,
        ..Config::default()
    })
}

fn sim_with_limits(limits: Limits) -> Sim {
    Sim::with_config(Config {
        limits,
        ..Config::default()
    })
}

fn stats_agent(sim: &mut Sim) -> serde_json::Value {
    let v = sim.api(r#"{"action":"exec","command":"stats"}"#);
    v["body"]["results"][0]["stats"]["agent"].clone()
}

// ----- write stall ------------------------------------------------------------------------

#[test]
fn the_default_stall_timeout_is_documented() {
    assert_eq!(Timing::default().write_stall_timeout_ms, STALL_MS);
}

#[test]
fn an_http_reader_that_takes_nothing_is_closed_at_the_stall_deadline() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.set_reading(c, false);
    sim.send(c, &version_request());
    let pending = sim.agent.tx_pending(c).len();
    assert!(pending > 0, "the answer waits for the reader");
    sim.advance_ms(STALL_MS - 1);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c), "closed exactly at the stall deadline");
    assert!(
        sim.received(c).is_empty(),
        "the output is discarded, not flushed"
    );
    assert_eq!(sim.agent.stats().stall_closes, 1);
    assert_eq!(sim.agent.stats().bytes_discarded, pending as u64);
    assert!(
        sim.logs
            .iter()
            .any(|r| r.line.contains("closed a connection whose reader stalled")),
        "the close is logged"
    );
    let agent = stats_agent(&mut sim);
    assert_eq!(agent["connections_stalled"], "1");
    assert_eq!(agent["bytes_discarded"], pending.to_string());
}

#[test]
fn progress_of_one_byte_restarts_the_stall_clock() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.set_reading(c, false);
    sim.send(c, &version_request());
    sim.advance_ms(STALL_MS - 1);
    let now = sim.now;
    sim.agent.tx_consume(c, 1, now);
    sim.drain();
    sim.advance_ms(STALL_MS - 1);
    assert!(!sim.is_closed(c), "the deadline moved with the progress");
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
    assert_eq!(sim.agent.stats().stall_closes, 1);
}

#[test]
fn output_that_is_taken_leaves_no_stall_deadline_behind() {
    let mut sim = sim_with_timing(Timing {
        idle_timeout_ms: 0,
        ..Timing::default()
    });
    let c = sim.connect();
    sim.set_reading(c, false);
    sim.send(c, &version_request());
    sim.advance_ms(STALL_MS / 2);
    sim.set_reading(c, true);
    assert_eq!(sim.responses(c).len(), 1);
    sim.advance_ms(10 * STALL_MS);
    assert!(!sim.is_closed(c));
    // New output starts a new clock, from when it appeared.
    sim.set_reading(c, false);
    sim.send(c, &version_request());
    sim.advance_ms(STALL_MS - 1);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
}

#[test]
fn a_zero_stall_timeout_disables_it() {
    let mut sim = sim_with_timing(Timing {
        write_stall_timeout_ms: 0,
        idle_timeout_ms: 0,
        ..Timing::default()
    });
    let c = sim.connect();
    sim.set_reading(c, false);
    sim.send(c, &version_request());
    sim.advance_ms(100 * STALL_MS);
    assert!(!sim.is_closed(c));
    sim.set_reading(c, true);
    assert_eq!(
        sim.responses(c).len(),
        1,
        "the answer was kept for the reader"
    );
}

#[test]
fn a_stalled_rpc_monitor_is_closed_and_the_others_keep_streaming() {
    let mut sim = Sim::with_config(Config {
        log_level: Level::Debug,
        ..Config::default()
    });
    let monitor = |seq| req_with("monitor", seq, &map(&[("LogLevel", "warn".into())]));
    let stalled = handshaken(&mut sim);
    let healthy = handshaken(&mut sim);
    call(&mut sim, stalled, &monitor(1));
    call(&mut sim, healthy, &monitor(1));
    sim.set_reading(stalled, false);
    // A record every 10 s: the stalled reader's output piles up, the healthy one takes its.
    let mut healthy_saw = Vec::new();
    for i in 0..7 {
        let now = sim.now;
        sim.agent.log_record(Level::Warn, &format!("tick {i}"), now);
        sim.drain();
        healthy_saw.extend(sim.received(healthy));
        if i < 6 {
            assert!(!sim.is_closed(stalled), "open at {i}0 s");
        }
        sim.advance(Duration::from_secs(10));
    }
    // The first record appeared at t0, so the deadline was t0 + 60 s.
    assert!(sim.is_closed(stalled), "the stalled monitor was closed");
    assert!(!sim.is_closed(healthy));
    assert_eq!(sim.agent.stats().stall_closes, 1);
    // The healthy monitor got every record, and the close's own warning.
    let saw = String::from_utf8_lossy(&healthy_saw).into_owned();
    for i in 0..7 {
        assert!(saw.contains(&format!("[WARN] tick {i}")), "{saw}");
    }
    assert!(
        saw.contains("closed a connection whose reader stalled"),
        "{saw}"
    );
    assert_eq!(sim.agent.connection_count(Listener::Rpc), 1);
}

#[test]
fn an_unhandshaken_rpc_connection_keeps_its_handshake_deadline_under_a_stall() {
    // The earlier of the two deadlines wins: the handshake one (10 s) here.
    let mut sim = Sim::new();
    let c = sim.connect_to(Listener::Rpc);
    sim.set_reading(c, false);
    sim.advance_ms(10_000);
    assert!(sim.is_closed(c));
    assert_eq!(sim.agent.stats().stall_closes, 0);
    assert_eq!(sim.agent.stats().idle_closes, 1);
}

// ----- connections over the limit ---------------------------------------------------------

#[test]
fn the_default_connection_limits_are_documented() {
    let l = Limits::default();
    assert_eq!(l.max_connections, 1024);
    assert_eq!(l.overflow_connections, 64);
}

#[test]
fn an_http_connection_over_the_limit_is_answered_503_and_closed() {
    let mut sim = sim_with_limits(Limits {
        max_connections: 2,
        ..Limits::default()
    });
    let a = sim.connect();
    let b = sim.connect();
    let over = sim.connect();
    assert_eq!(
        String::from_utf8_lossy(&sim.received(over)),
        UNAVAILABLE_503,
        "answered before it sends anything"
    );
    assert!(sim.is_closed(over));
    assert_eq!(sim.closes.iter().filter(|&&c| c == over).count(), 1);
    assert!(
        sim.logs
            .iter()
            .any(|r| r.line.contains("over max_connections: answered 503")),
        "the refusal is logged"
    );
    // The two served connections are unaffected.
    for c in [a, b] {
        sim.send(c, &version_request());
        assert_eq!(sim.responses(c)[0].status, 200);
    }
    assert_eq!(sim.agent.stats().connections_refused, 1);
    // Once one closes, a new connection is served again.
    sim.reset(a);
    let again = sim.connect();
    sim.send(again, &version_request());
    assert_eq!(sim.responses(again)[0].status, 200);
}

#[test]
fn an_rpc_connection_over_the_limit_is_refused_at_accept() {
    let mut sim = sim_with_limits(Limits {
        max_connections: 1,
        ..Limits::default()
    });
    // A connection the agent owes something (an idle one would make room, see
    // `hardening_rpc_admission`).
    let first = sim.rpc_monitoring();
    assert_eq!(
        sim.try_connect_to(Listener::Rpc),
        Err(Refused::TooManyConnections)
    );
    // The limit is per listener: HTTP is still served.
    let http = sim.connect();
    sim.send(http, &version_request());
    assert_eq!(sim.responses(http)[0].status, 200);
    assert_eq!(sim.agent.stats().connections_refused, 1);
    sim.reset(first);
    assert!(sim.try_connect_to(Listener::Rpc).is_ok());
}

#[test]
fn http_overflow_does_not_count_against_rpc() {
    // Found by `agent_ops`: with an HTTP connection answered 503 still open, the RPC
    // listener subtracted the HTTP overflow from its own count (an overflow panic in debug
    // builds, a refused RPC connection in release ones).
    let mut sim = sim_with_limits(Limits {
        max_connections: 1,
        ..Limits::default()
    });
    let _served = sim.connect();
    let now = sim.now;
    let over = sim.agent.accept(Listener::Http, None, now);
    assert!(over.is_ok(), "answered 503");
    let rpc = sim.agent.accept(Listener::Rpc, None, now);
    assert!(rpc.is_ok(), "the RPC listener has its own limit: {rpc:?}");
    // A second one takes the place of the first, which never handshook (see
    // `hardening_rpc_admission`): nothing was refused.
    assert!(sim.agent.accept(Listener::Rpc, None, now).is_ok());
    assert_eq!(sim.agent.stats().rpc_evictions, 1);
    assert_eq!(
        sim.agent.stats().connections_refused,
        1,
        "only the HTTP 503"
    );
}

#[test]
fn overflow_answers_are_bounded_then_refused_at_accept() {
    let mut sim = sim_with_limits(Limits {
        max_connections: 1,
        overflow_connections: 2,
        ..Limits::default()
    });
    let _served = sim.connect();
    // Answers the runtime has not finished closing count against the overflow bound: call
    // `accept` directly, as a runtime still flushing the first two would see it.
    let now = sim.now;
    let one = sim.agent.accept(Listener::Http, None, now);
    let two = sim.agent.accept(Listener::Http, None, now);
    assert!(one.is_ok() && two.is_ok());
    assert_eq!(
        sim.agent.accept(Listener::Http, None, now),
        Err(Refused::TooManyConnections),
        "beyond the overflow bound a connection is refused at accept"
    );
    assert_eq!(sim.agent.stats().connections_refused, 3);
    // Releasing an overflow connection frees its place, not a served one.
    let one = one.expect("accepted to be answered");
    sim.agent.handle_reset(one, now);
    let three = sim
        .agent
        .accept(Listener::Http, None, now)
        .expect("a place was freed");
    assert!(
        sim.agent.tx_pending(three).starts_with(b"HTTP/1.1 503 "),
        "still over the limit: answered 503"
    );
    assert_eq!(sim.agent.connection_count(Listener::Http), 3);
}

// ----- end to end: a real socket that stops reading ---------------------------------------

mod end_to_end {
    use std::io::{ErrorKind, Read as _, Write as _};
    use std::net::TcpStream;
    use std::time::Duration;

    use tandem_core::{Config, Limits, Timing};
    use tandem_tests::driver::base_config;
    use tandem_tests::driver::process::{Process, Runtime};
    use tandem_tests::http::post_api;

    /// A client pipelines `exec echo` requests and never reads. The agent's answers fill
    /// the kernel's buffers, then `max_tx`, so it stops reading; after the stall timeout it
    /// closes the connection and throws the answers away. The client's writes then fail,
    /// its reads end, and another client is served throughout.
    fn a_client_that_never_reads_is_closed_after_the_stall_timeout(runtime: Runtime) {
        let config = Config {
            limits: Limits {
                max_tx: 64 * 1024,
                ..Limits::default()
            },
            timing: Timing {
                write_stall_timeout_ms: 300,
                ..Timing::default()
            },
            ..base_config()
        };
        let agent = Process::start(runtime, &config);
        let stream = TcpStream::connect(agent.http_addr()).expect("connect");
        let mut writer = stream.try_clone().expect("clone");
        let request = post_api(&format!(
            r#"{{"action":"exec","command":"echo {}"}}"#,
            "x".repeat(512)
        ));
        // Bounded: 100 000 answers of about 700 bytes are far beyond any kernel buffer.
        let sender = std::thread::spawn(move || {
            (0..100_000u32).find(|_| writer.write_all(&request).is_err())
        });
        agent.wait_log("agent: closed a connection whose reader stalled");
        let sent = sender.join().expect("sender thread");
        assert!(
            sent.is_some(),
            "{}: the writes never failed, so the agent never closed",
            runtime.name()
        );
        // What the kernel had already taken is readable, then the connection ends.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match (&stream).read(&mut chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "{}: the stalled connection did not end: {e}",
                    runtime.name()
                ),
            }
        }
        // Another client is served, and the close is counted.
        let mut other = TcpStream::connect(agent.http_addr()).expect("connect");
        other
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let stats = post_api(r#"{"action":"exec","command":"stats"}"#);
        other.write_all(&stats).expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\"connections_stalled\"") {
            let n = match other.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                r => r.expect("read"),
            };
            assert!(n > 0, "{}: closed before answering", runtime.name());
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains(r#""connections_stalled":"1""#),
            "{}: {text}",
            runtime.name()
        );
    }

    #[test]
    fn smol() {
        a_client_that_never_reads_is_closed_after_the_stall_timeout(Runtime::Smol);
    }

    #[test]
    fn mio() {
        a_client_that_never_reads_is_closed_after_the_stall_timeout(Runtime::Mio);
    }
}
