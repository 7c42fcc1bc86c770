//! Connection timeouts on the virtual clock: the HTTP head-read deadline (slowloris, `408`),
//! the body deadline (`408`), the keep-alive idle deadline, and the RPC handshake (and auth)
//! deadline. Each fires exactly at its
//! deadline, is moved by activity where it should be, and never fires under a parked
//! long-poll or an `exec` waiting for its job. One timer entry per connection.

use tandem_core::{Config, Listener, Timing};
use tandem_tests::sim::Sim;

const TIMEOUT_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 15\r\nConnection: close\r\n\r\nRequest Timeout";

fn sim_with(timing: Timing) -> Sim {
    Sim::with_config(Config {
        timing,
        ..Config::default()
    })
}

fn exec_request() -> Vec<u8> {
    tandem_tests::http::post_api(r#"{"action":"exec","command":"version"}"#)
}

/// Where the body of `req` starts.
fn body_start(req: &[u8]) -> usize {
    req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
}

#[test]
fn the_defaults_are_documented() {
    let t = Timing::default();
    assert_eq!(t.head_timeout_ms, 10_000);
    assert_eq!(t.body_timeout_ms, 10_000);
    assert_eq!(t.idle_timeout_ms, 75_000);
    assert_eq!(t.rpc_handshake_timeout_ms, 10_000);
}

#[test]
fn an_incomplete_head_gets_408_exactly_at_its_deadline() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.advance_ms(3_000); // idle before the first byte does not count
    sim.send(c, b"POST /api HTTP/1.1\r\nHo");
    sim.advance_ms(9_999);
    assert!(!sim.is_closed(c));
    assert!(sim.received(c).is_empty());
    sim.advance_ms(1);
    assert_eq!(sim.received(c), TIMEOUT_408);
    assert!(sim.is_closed(c));
    assert_eq!(sim.agent.stats().http_timeouts, 1);
}

#[test]
fn dribbling_the_head_does_not_move_its_deadline() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let head = b"POST /api HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa";
    for (i, b) in head.iter().enumerate().take(10) {
        sim.send(c, &[*b]);
        if i < 9 {
            sim.advance_ms(1_000);
        }
    }
    // First byte at t0, tenth at t0 + 9 s: the deadline is t0 + 10 s all the same.
    sim.advance_ms(999);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
    assert_eq!(sim.received(c), TIMEOUT_408);
}

#[test]
fn a_complete_head_cancels_the_head_deadline() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let req = exec_request();
    sim.send(c, &req[..10]);
    sim.advance_ms(9_000);
    sim.send(c, &req[10..]);
    assert_eq!(sim.responses(c).len(), 1);
    sim.advance_ms(5_000);
    assert!(!sim.is_closed(c), "the head deadline outlived its request");
    // The next head gets a fresh deadline from its own first byte.
    sim.send(c, b"POST");
    sim.advance_ms(9_999);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
}

#[test]
fn an_idle_connection_closes_exactly_at_its_deadline() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.advance_ms(74_999);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
    assert!(sim.received(c).is_empty(), "an idle close writes nothing");
    assert_eq!(sim.agent.stats().idle_closes, 1);
}

#[test]
fn each_request_resets_the_idle_deadline() {
    let mut sim = Sim::new();
    let c = sim.connect();
    for _ in 0..5 {
        sim.advance_ms(60_000);
        sim.send(c, &exec_request());
        assert_eq!(sim.responses(c).len(), 1);
    }
    sim.advance_ms(74_999);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
}

#[test]
fn a_body_must_be_complete_exactly_at_its_deadline_however_it_trickles() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let req = exec_request();
    let body_start = body_start(&req);
    sim.advance_ms(2_000);
    sim.send(c, &req[..body_start - 1]);
    sim.advance_ms(3_000); // the head took 3 s: the body's 10 s start when it is complete
    sim.send(c, &req[body_start - 1..body_start + 1]);
    // A byte every second keeps the idle deadline away, not the body's.
    for i in 0..9 {
        sim.advance_ms(1_000);
        sim.send(c, &req[body_start + 1 + i..body_start + 2 + i]);
    }
    sim.advance_ms(999);
    assert!(!sim.is_closed(c));
    assert!(sim.received(c).is_empty());
    sim.advance_ms(1);
    assert_eq!(sim.received(c), TIMEOUT_408);
    assert!(sim.is_closed(c));
    assert_eq!(sim.agent.stats().http_timeouts, 1);
}

#[test]
fn a_body_in_time_is_served_and_the_next_request_gets_its_own_deadline() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let req = exec_request();
    let body_start = body_start(&req);
    sim.send(c, &req[..body_start + 1]);
    sim.advance_ms(9_999);
    sim.send(c, &req[body_start + 1..]);
    assert_eq!(sim.responses(c).len(), 1);
    sim.send(c, &req[..body_start]);
    sim.advance_ms(9_999);
    assert!(
        !sim.is_closed(c),
        "the old body deadline outlived its request"
    );
    sim.advance_ms(1);
    assert_eq!(sim.received(c), TIMEOUT_408);
}

#[test]
fn an_expect_continue_body_has_the_same_deadline() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        b"POST /api HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    );
    assert_eq!(sim.received(c), b"HTTP/1.1 100 Continue\r\n\r\n");
    sim.advance_ms(9_999);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert_eq!(sim.received(c), TIMEOUT_408);
    assert!(sim.is_closed(c));
}

#[test]
fn a_slow_body_counts_as_idle_since_its_last_byte() {
    // With the body deadline off, the idle one still bounds a stalled body.
    let mut sim = sim_with(Timing {
        body_timeout_ms: 0,
        ..Timing::default()
    });
    let c = sim.connect();
    let req = exec_request();
    let body_start = body_start(&req);
    sim.send(c, &req[..body_start + 1]);
    // The head is complete: no 408 at 10 s while the body trickles.
    for i in body_start + 1..req.len() - 1 {
        sim.advance_ms(20_000);
        sim.send(c, &req[i..=i]);
    }
    assert!(!sim.is_closed(c));
    sim.advance_ms(74_999);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
}

#[test]
fn a_parked_long_poll_is_never_idle() {
    let mut sim = sim_with(Timing {
        pull_timeout_ms: 200_000,
        ..Timing::default()
    });
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid); // the welcome item
    let c = sim.start_pull(&sid, &cid);
    sim.advance_ms(199_999);
    assert!(!sim.is_closed(c));
    assert!(sim.responses(c).is_empty());
    sim.advance_ms(1);
    assert_eq!(sim.responses(c).len(), 1);
    // Idle counts from the answer.
    sim.advance_ms(74_999);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
}

#[test]
fn an_exec_waiting_for_its_job_is_never_idle() {
    let mut sim = sim_with(Timing {
        exec_timeout_ms: 600_000,
        ..Timing::default()
    });
    sim.register("slow");
    let c = sim.connect();
    sim.post(c, r#"{"action":"exec","command":"slow"}"#);
    let jobs = sim.started_jobs();
    assert_eq!(jobs.len(), 1);
    sim.advance_ms(300_000);
    assert!(!sim.is_closed(c));
    assert!(sim.responses(c).is_empty());
    let now = sim.now;
    sim.agent.job_finished(jobs[0].0, 0, None, now);
    sim.drain();
    assert_eq!(sim.responses(c).len(), 1);
    sim.advance_ms(74_999);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
}

#[test]
fn an_rpc_connection_must_handshake_in_time() {
    let mut sim = Sim::new();
    let c = sim.connect_to(Listener::Rpc);
    sim.advance_ms(9_999);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1);
    assert!(sim.is_closed(c));
    assert!(sim.received(c).is_empty());

    // A handshake in time cancels the deadline; an RPC connection is never idle-closed.
    let c = sim.connect_to(Listener::Rpc);
    sim.advance_ms(9_000);
    let mut hs = tandem_tests::rpc_header("handshake", 1);
    hs.extend_from_slice(&[0x81, 0xa7, b'V', b'e', b'r', b's', b'i', b'o', b'n', 0x01]);
    sim.send(c, &hs);
    assert!(!sim.received(c).is_empty());
    sim.advance_ms(3_600_000);
    assert!(!sim.is_closed(c));
}

#[test]
fn zero_disables_each_timeout() {
    let mut sim = sim_with(Timing {
        head_timeout_ms: 0,
        body_timeout_ms: 0,
        idle_timeout_ms: 0,
        rpc_handshake_timeout_ms: 0,
        ..Timing::default()
    });
    let idle = sim.connect();
    let head = sim.connect();
    sim.send(head, b"POST /api HTTP/1.1\r\n");
    let body = sim.connect();
    sim.send(
        body,
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{",
    );
    let rpc = sim.connect_to(Listener::Rpc);
    sim.advance_ms(24 * 3_600_000);
    assert!(!sim.is_closed(idle) && !sim.is_closed(head) && !sim.is_closed(rpc));
    assert!(!sim.is_closed(body));
    assert_eq!(sim.agent.timer_count(), 0);
}

#[test]
fn one_timer_entry_per_connection() {
    let mut sim = Sim::new();
    let base = sim.agent.timer_count();
    let conns: Vec<_> = (0..100).map(|_| sim.connect()).collect();
    assert_eq!(sim.agent.timer_count(), base + 100);
    for (i, &c) in conns.iter().enumerate() {
        if i % 2 == 0 {
            sim.send(c, &exec_request());
        } else {
            sim.send(c, b"POST /api");
        }
    }
    assert_eq!(sim.agent.timer_count(), base + 100);
    for &c in &conns[..50] {
        sim.reset(c);
    }
    assert_eq!(sim.agent.timer_count(), base + 50);
    sim.advance_ms(80_000);
    assert!(conns.iter().all(|&c| sim.is_closed(c)));
    assert_eq!(sim.agent.timer_count(), base);
}
