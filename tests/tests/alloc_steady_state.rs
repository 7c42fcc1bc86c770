//! Steady-state allocation counts of the core's hot paths, with a counting allocator.
//! These are counts, not timings: deterministic for a given build, so a regression that
//! makes a header-only RPC reply or an empty long-poll allocate shows up as a failure.
//! (Throughput lives in the benches.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use tandem_core::{Agent, Config, ConnId, Instant, Listener, Output};
use tandem_tests::http::post_api;

struct Counting;

thread_local! {
    // Per thread, so the test harness's other threads do not disturb the count.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

struct Driver {
    agent: Agent,
    now: Instant,
}

impl Driver {
    fn new() -> Self {
        let now = Instant::from_millis(1);
        Driver {
            agent: Agent::new(Config::default(), 3, now),
            now,
        }
    }

    fn feed(&mut self, c: ConnId, bytes: &[u8]) {
        assert_eq!(self.agent.handle_stream(c, bytes, self.now), bytes.len());
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(out) = self.agent.poll_output() {
            match out {
                Output::Transmit(c) => {
                    let n = self.agent.tx_pending(c).len();
                    self.agent.tx_consume(c, n, self.now);
                }
                Output::Close(_) => panic!("closed"),
                _ => {}
            }
        }
    }

    /// Allocations made by `rounds` repetitions of `f`, after as many warm-up rounds.
    fn count(&mut self, rounds: usize, mut f: impl FnMut(&mut Self)) -> u64 {
        for _ in 0..rounds {
            f(self);
        }
        let before = allocs();
        for _ in 0..rounds {
            f(self);
        }
        allocs() - before
    }
}

use tandem_tests::rpc_header;

/// An RPC connection past its handshake.
fn rpc_conn(d: &mut Driver) -> ConnId {
    let c = d.agent.accept(Listener::Rpc, None, d.now).unwrap();
    let mut hs = rpc_header("handshake", 1);
    hs.extend_from_slice(&[0x81, 0xa7, b'V', b'e', b'r', b's', b'i', b'o', b'n', 0x01]);
    d.feed(c, &hs);
    c
}

#[test]
fn header_only_rpc_replies_allocate_nothing() {
    let mut d = Driver::new();
    let c = rpc_conn(&mut d);
    let mut stop = rpc_header("stop", 2);
    stop.extend_from_slice(&[0x81, 0xa4, b'S', b't', b'o', b'p', 0x05]);
    let n = d.count(1000, |d| d.feed(c, &stop));
    assert_eq!(n, 0, "allocations for 1000 `stop` requests");
}

#[test]
fn http_errors_and_empty_long_polls_allocate_nothing() {
    let mut d = Driver::new();
    let c = d.agent.accept(Listener::Http, None, d.now).unwrap();
    let notfound = b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}".to_vec();
    assert_eq!(d.count(1000, |d| d.feed(c, &notfound)), 0, "404s");

    d.feed(c, &post_api(r#"{"action":"init_session"}"#));
    // Read the ids back out of the last response by asking session_info-free means: the
    // agent's stats say one session exists; find its ids through a pull on a new session.
    let r = {
        let c2 = d.agent.accept(Listener::Http, None, d.now).unwrap();
        assert!(
            d.agent
                .handle_stream(c2, &post_api(r#"{"action":"init_session"}"#), d.now)
                > 0
        );
        let mut out = Vec::new();
        while let Some(o) = d.agent.poll_output() {
            if let Output::Transmit(c) = o {
                out.extend_from_slice(d.agent.tx_pending(c));
                let n = d.agent.tx_pending(c).len();
                d.agent.tx_consume(c, n, d.now);
            }
        }
        // Done with it: left open, it would be closed idle during the 1000 s of polls.
        d.agent.handle_reset(c2, d.now);
        String::from_utf8(out).unwrap()
    };
    let body = r.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let pull = post_api(&format!(
        r#"{{"action":"pull_results","sessionId":"{}","consumerId":"{}"}}"#,
        v["sessionId"].as_str().unwrap(),
        v["consumerId"].as_str().unwrap()
    ));
    // Take the welcome items first.
    d.feed(c, &pull);
    d.now = d.now + Duration::from_millis(200);
    d.agent.handle_timeout(d.now);
    d.drain();
    let n = d.count(500, |d| {
        d.feed(c, &pull);
        d.now = d.now + Duration::from_secs(2);
        d.agent.handle_timeout(d.now);
        d.drain();
    });
    assert_eq!(n, 0, "allocations for 500 empty long-polls");
}

#[test]
fn idle_and_parked_connections_hold_no_receive_buffer() {
    let mut d = Driver::new();
    let idle = d.agent.accept(Listener::Http, None, d.now).unwrap();
    assert_eq!(d.agent.buffer_capacity(idle), 0, "a fresh connection");
    d.feed(idle, &post_api(r#"{"action":"exec","command":"version"}"#));
    // What is left is the transmit buffer kept for the next answer, no receive buffer.
    let after = d.agent.buffer_capacity(idle);
    assert!(
        after < 4096,
        "an idle keep-alive connection holds {after} bytes"
    );

    let c = d.agent.accept(Listener::Http, None, d.now).unwrap();
    let mut out = Vec::new();
    assert!(
        d.agent
            .handle_stream(c, &post_api(r#"{"action":"init_session"}"#), d.now)
            > 0
    );
    while let Some(o) = d.agent.poll_output() {
        if let Output::Transmit(c) = o {
            out.extend_from_slice(d.agent.tx_pending(c));
            let n = d.agent.tx_pending(c).len();
            d.agent.tx_consume(c, n, d.now);
        }
    }
    let text = String::from_utf8(out).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let pull = post_api(&format!(
        r#"{{"action":"pull_results","sessionId":"{}","consumerId":"{}"}}"#,
        v["sessionId"].as_str().unwrap(),
        v["consumerId"].as_str().unwrap()
    ));
    let parked = d.agent.accept(Listener::Http, None, d.now).unwrap();
    d.feed(parked, &pull);
    d.now = d.now + Duration::from_millis(200);
    d.agent.handle_timeout(d.now);
    d.drain();
    d.feed(parked, &pull);
    assert!(
        d.agent.buffer_capacity(parked) < 4096,
        "a parked pull holds {} bytes",
        d.agent.buffer_capacity(parked)
    );
}

#[test]
fn exec_version_allocates_its_two_items_and_little_else() {
    let mut d = Driver::new();
    let c = d.agent.accept(Listener::Http, None, d.now).unwrap();
    // One-time session: the version and status items, and the new session's job list.
    let once = post_api(r#"{"action":"exec","command":"version"}"#);
    let n = d.count(1000, |d| d.feed(c, &once));
    assert_eq!(n, 3 * 1000, "allocations for 1000 one-time `exec version`");

    // In a session: the two items only (the command line, its words, the results list
    // and the items' serialization buffer are reused or borrowed).
    let init = {
        let mut out = Vec::new();
        d.agent
            .handle_stream(c, &post_api(r#"{"action":"init_session"}"#), d.now);
        while let Some(o) = d.agent.poll_output() {
            if let Output::Transmit(c) = o {
                out.extend_from_slice(d.agent.tx_pending(c));
                let n = d.agent.tx_pending(c).len();
                d.agent.tx_consume(c, n, d.now);
            }
        }
        String::from_utf8(out).unwrap()
    };
    let v: serde_json::Value =
        serde_json::from_str(init.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let exec = post_api(&format!(
        r#"{{"action":"exec","command":"version","sessionId":"{}"}}"#,
        v["sessionId"].as_str().unwrap()
    ));
    let n = d.count(1000, |d| d.feed(c, &exec));
    assert_eq!(
        n,
        2 * 1000,
        "allocations for 1000 `exec version` in a session"
    );
}

#[test]
fn stats_allocates_only_its_tags_section() {
    let mut d = Driver::new();
    let c = rpc_conn(&mut d);
    let stats = rpc_header("stats", 2);
    // The `tags` section only: a borrowed map and the list of its entries.
    assert_eq!(
        d.count(1000, |d| d.feed(c, &stats)),
        2 * 1000,
        "RPC `stats`"
    );

    // `exec stats` in a one-time session: as `exec version`, its two items and the
    // session's job list; no per-counter strings.
    let h = d.agent.accept(Listener::Http, None, d.now).unwrap();
    let exec = post_api(r#"{"action":"exec","command":"stats"}"#);
    let n = d.count(1000, |d| d.feed(h, &exec));
    assert_eq!(n, 3 * 1000, "allocations for 1000 `exec stats`");
}
