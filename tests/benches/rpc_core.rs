//! Throughput and heap allocations of the core's RPC path, with no sockets: requests go in
//! through `handle_stream`, replies come out of `tx_pending`.
//!
//! Run: `cargo bench -p tandem-tests --bench rpc_core` (figures go to BENCHMARKS.md).
//! "sequential" sends one request and drains the reply before the next; "pipelined" sends
//! 64 requests in one write and drains once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use tandem_core::{Agent, Config, ConnId, Instant, Listener, Output};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn header(cmd: &str, seq: u64) -> Vec<u8> {
    let mut v = Vec::new();
    rmp::encode::write_map_len(&mut v, 2).unwrap();
    rmp::encode::write_str(&mut v, "Command").unwrap();
    rmp::encode::write_str(&mut v, cmd).unwrap();
    rmp::encode::write_str(&mut v, "Seq").unwrap();
    rmp::encode::write_uint(&mut v, seq).unwrap();
    v
}

fn stop_request(seq: u64) -> Vec<u8> {
    let mut v = header("stop", seq);
    rmp::encode::write_map_len(&mut v, 1).unwrap();
    rmp::encode::write_str(&mut v, "Stop").unwrap();
    rmp::encode::write_uint(&mut v, 99).unwrap();
    v
}

struct Bench {
    agent: Agent,
    now: Instant,
    conn: ConnId,
    replied: u64,
}

impl Bench {
    fn new() -> Self {
        let now = Instant::from_millis(1);
        let mut agent = Agent::new(Config::default(), 1, now);
        let conn = agent.accept(Listener::Rpc, None, now).unwrap();
        let mut b = Bench {
            agent,
            now,
            conn,
            replied: 0,
        };
        let mut hs = header("handshake", 0);
        rmp::encode::write_map_len(&mut hs, 1).unwrap();
        rmp::encode::write_str(&mut hs, "Version").unwrap();
        rmp::encode::write_uint(&mut hs, 1).unwrap();
        b.send(&hs);
        b
    }

    fn send(&mut self, bytes: &[u8]) {
        let n = self.agent.handle_stream(self.conn, bytes, self.now);
        assert_eq!(n, bytes.len());
        while let Some(out) = self.agent.poll_output() {
            match out {
                Output::Transmit(c) => {
                    let n = self.agent.tx_pending(c).len();
                    // Every reply starts with the fixmap(2) of its header.
                    self.replied += self
                        .agent
                        .tx_pending(c)
                        .iter()
                        .filter(|&&b| b == 0x82)
                        .count() as u64;
                    self.agent.tx_consume(c, n, self.now);
                }
                Output::Close(_) => panic!("connection closed"),
                _ => {}
            }
        }
    }
}

fn run(name: &str, requests: u64, batch: usize, request: &[u8]) {
    let mut b = Bench::new();
    let mut buf = Vec::new();
    for _ in 0..batch {
        buf.extend_from_slice(request);
    }
    let rounds = requests / batch as u64;
    for _ in 0..rounds / 10 {
        b.send(&buf);
    }
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    for _ in 0..rounds {
        b.send(&buf);
    }
    let secs = t0.elapsed().as_secs_f64();
    let allocs = ALLOCS.load(Ordering::Relaxed) - a0;
    let n = rounds * batch as u64;
    assert!(b.replied >= n);
    println!(
        "| {name} | {n} | {:.0} | {:.2} |",
        n as f64 / secs,
        allocs as f64 / n as f64
    );
}

fn main() {
    let n: u64 = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    println!("| request | requests | req/s | allocations/request |");
    println!("|---|---:|---:|---:|");
    let stop = stop_request(7);
    run("stop (header-only reply), sequential", n, 1, &stop);
    run("stop (header-only reply), pipelined x64", n, 64, &stop);
    let stats = header("stats", 8);
    run("stats, sequential", n / 10, 1, &stats);
    let members = header("members", 9);
    run("members (1 member), sequential", n / 10, 1, &members);
    run("members (1 member), pipelined x64", n / 10, 64, &members);
}
