//! Throughput and heap allocations of the core's HTTP path, with no sockets: requests go in
//! through `handle_stream`, responses come out of `tx_pending`, the clock is virtual.
//!
//! Run: `cargo bench -p tandem-tests --bench http_core` (figures go to BENCHMARKS.md).
//! Each scenario runs a warm-up, then a measured loop; allocations are counted by a global
//! allocator wrapper during the measured loop only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tandem_core::{Agent, Config, ConnId, Instant, Listener, Output};
use tandem_tests::http::post_api;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A minimal runtime: one agent, a virtual clock, responses counted and discarded.
struct Bench {
    agent: Agent,
    now: Instant,
    responses: u64,
}

impl Bench {
    fn new() -> Self {
        let now = Instant::from_millis(1);
        Bench {
            agent: Agent::new(Config::default(), 1, now),
            now,
            responses: 0,
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.agent.poll_output() {
            if let Output::Transmit(c) = out {
                let pending = self.agent.tx_pending(c);
                // Count responses by their status lines, as a client would.
                self.responses += pending.windows(9).filter(|w| *w == b"HTTP/1.1 ").count() as u64;
                let n = pending.len();
                self.agent.tx_consume(c, n, self.now);
            }
        }
    }

    fn send(&mut self, c: ConnId, bytes: &[u8]) {
        let n = self.agent.handle_stream(c, bytes, self.now);
        assert_eq!(n, bytes.len());
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.agent.handle_timeout(self.now);
        self.drain();
    }

    /// One request/response exchange on `c`; returns the response body.
    fn call(&mut self, c: ConnId, body: &str) -> String {
        let n = self.agent.handle_stream(c, &post_api(body), self.now);
        assert!(n > 0);
        let mut out = Vec::new();
        while let Some(o) = self.agent.poll_output() {
            if let Output::Transmit(c) = o {
                out.extend_from_slice(self.agent.tx_pending(c));
                let n = self.agent.tx_pending(c).len();
                self.agent.tx_consume(c, n, self.now);
            }
        }
        let text = String::from_utf8(out).expect("utf-8");
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    }
}

struct Figure {
    name: &'static str,
    requests: u64,
    secs: f64,
    allocs: u64,
    bytes: u64,
}

fn measure(name: &'static str, requests: u64, mut f: impl FnMut(u64)) -> Figure {
    // Warm-up: buffers reach their steady sizes, the allocator's free lists fill.
    for i in 0..requests / 10 {
        f(i);
    }
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let b0 = BYTES.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    for i in 0..requests {
        f(i);
    }
    let secs = t0.elapsed().as_secs_f64();
    Figure {
        name,
        requests,
        secs,
        allocs: ALLOCS.load(Ordering::Relaxed) - a0,
        bytes: BYTES.load(Ordering::Relaxed) - b0,
    }
}

fn field(body: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    v[key].as_str().expect("field").to_string()
}

fn main() {
    let n: u64 = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let mut figures = Vec::new();

    // 404 on a keep-alive connection: framing and response writing only.
    {
        let mut b = Bench::new();
        let c = b.agent.accept(Listener::Http, None, b.now).expect("accept");
        let req = b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}".to_vec();
        figures.push(measure("POST /nope -> 404 (codec only)", n, |_| {
            b.send(c, &req)
        }));
        assert!(b.responses >= n);
    }

    // exec version without a session: one-time session, job, results, response.
    {
        let mut b = Bench::new();
        let c = b.agent.accept(Listener::Http, None, b.now).expect("accept");
        let req = post_api(r#"{"action":"exec","command":"version"}"#);
        figures.push(measure("exec version (one-time session)", n, |_| {
            b.send(c, &req)
        }));
        assert!(b.responses >= n);
        assert_eq!(b.agent.session_count(), 0);
    }

    // exec version in a session.
    {
        let mut b = Bench::new();
        let c = b.agent.accept(Listener::Http, None, b.now).expect("accept");
        let sid = field(&b.call(c, r#"{"action":"init_session"}"#), "sessionId");
        let req = post_api(&format!(
            r#"{{"action":"exec","command":"version","sessionId":"{sid}"}}"#
        ));
        figures.push(measure("exec version (in a session)", n, |_| {
            b.send(c, &req)
        }));
        assert!(b.responses >= n);
    }

    // pull_results answered at once: 20 items queued by four `async_exec echo` jobs
    // (5 items each), then one pull takes them.
    {
        let mut b = Bench::new();
        let c = b.agent.accept(Listener::Http, None, b.now).expect("accept");
        let init = b.call(c, r#"{"action":"init_session"}"#);
        let (sid, cid) = (field(&init, "sessionId"), field(&init, "consumerId"));
        // Drain the welcome items first.
        b.send(
            c,
            &post_api(&format!(
                r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid}"}}"#
            )),
        );
        b.advance(Duration::from_millis(200));
        let echo = post_api(&format!(
            r#"{{"action":"async_exec","command":"echo hi","sessionId":"{sid}"}}"#
        ));
        let pull = post_api(&format!(
            r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid}"}}"#
        ));
        let m = n / 5;
        let before = b.responses;
        figures.push(measure(
            "pull_results, 20 items ready (+4 async_exec)",
            m,
            |_| {
                for _ in 0..4 {
                    b.send(c, &echo);
                }
                b.send(c, &pull);
            },
        ));
        assert!(b.responses - before >= m * 5, "every pull answered at once");
    }

    // pull_results on an empty queue: parks, times out after 2 s of virtual time, answers
    // with an empty list.
    {
        let mut b = Bench::new();
        let c = b.agent.accept(Listener::Http, None, b.now).expect("accept");
        let init = b.call(c, r#"{"action":"init_session"}"#);
        let (sid, cid) = (field(&init, "sessionId"), field(&init, "consumerId"));
        let pull = post_api(&format!(
            r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid}"}}"#
        ));
        b.send(c, &pull);
        b.advance(Duration::from_millis(200));
        let before = b.responses;
        figures.push(measure(
            "pull_results long-poll, empty, 2 s timeout",
            n,
            |_| {
                b.send(c, &pull);
                b.advance(Duration::from_secs(2));
            },
        ));
        assert!(b.responses - before >= n);
    }

    println!("| scenario | requests | req/s | allocations/request | bytes allocated/request |");
    println!("|---|---:|---:|---:|---:|");
    for f in &figures {
        let per = |v: u64| v as f64 / f.requests as f64;
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.0} |",
            f.name,
            f.requests,
            f.requests as f64 / f.secs,
            per(f.allocs),
            per(f.bytes)
        );
    }
}
