//! Connection churn (issue 14 item 6): how many connections per second each runtime's
//! agent accepts, answers and closes when every request comes on a connection of its own.
//!
//! ```sh
//! cargo run --release -p tandem-tests --bin conn_churn -- --seconds 12 --threads 4
//! ```
//!
//! Both agents (`tandem agent` and `tandem-mio agent`, built in this executable's profile,
//! on ephemeral loopback ports, every limit at its default) run at once; the load is
//! interleaved: `--rounds` rounds, each giving every runtime `--seconds / --rounds` in turn,
//! so both see the same machine load as closely as a shared machine allows. In a runtime's
//! turn, `--threads` client threads each loop: connect, send one request, read the whole
//! answer, close (the client closes first, as a one-shot HTTP client does). The request is
//! `POST /api {"action":"exec","command":"version"}` (a one-time session, a job, the answer)
//! or, with `--404`, `GET /` (answered `404` without touching a session).
//!
//! Printed per runtime: connections completed, connections per second, failures (a
//! refused connection, a reset, an answer other than the expected status) and the agent's
//! CPU time (user + system, from /proc) during its turns; then the ratio of the two rates.
//! Exit status: 0, or 1 when any connection failed, 2 for bad arguments.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tandem_tests::driver::Driver as _;
use tandem_tests::driver::process::{Process, Runtime};
use tandem_tests::http::{post_api, take_responses};

const USAGE: &str = "usage: conn_churn [--seconds N] [--threads N] [--rounds N] [--batch N] [--404] [--server-closes]";

/// How long one connection may take before it counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Plan {
    seconds: f64,
    threads: usize,
    rounds: u32,
    not_found: bool,
    server_closes: bool,
    batch: usize,
}

fn parse_args() -> Result<Plan, String> {
    let mut plan = Plan {
        seconds: 12.0,
        threads: 4,
        rounds: 4,
        not_found: false,
        server_closes: false,
        batch: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<f64, String> {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v > 0.0)
                .ok_or_else(|| format!("{name} takes a positive number"))
        };
        match arg.as_str() {
            "--seconds" => plan.seconds = value("--seconds")?,
            "--threads" => plan.threads = value("--threads")? as usize,
            "--rounds" => plan.rounds = value("--rounds")? as u32,
            "--404" => plan.not_found = true,
            "--server-closes" => plan.server_closes = true,
            "--batch" => plan.batch = value("--batch")? as usize,
            "--help" | "-h" => return Err("help".into()),
            // `cargo bench`-style flags passed through.
            other if other.starts_with("--bench") => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Plan {
        threads: plan.threads.max(1),
        rounds: plan.rounds.max(1),
        batch: plan.batch.max(1),
        ..plan
    })
}

/// What one runtime's turns added up to.
#[derive(Default)]
struct Tally {
    done: u64,
    failed: u64,
    busy: Duration,
    cpu_ticks: u64,
    first_failure: Option<String>,
}

fn main() -> ExitCode {
    let plan = match parse_args() {
        Ok(p) => p,
        Err(e) if e == "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("conn_churn: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtimes = [Runtime::Smol, Runtime::Mio];
    let agents: Vec<Process> = runtimes
        .iter()
        .map(|&rt| Process::start_flags(rt, &[]))
        .collect();
    let (mut request, status): (Vec<u8>, u16) = if plan.not_found {
        (b"GET / HTTP/1.1\r\nHost: churn\r\n\r\n".to_vec(), 404)
    } else {
        (post_api(r#"{"action":"exec","command":"version"}"#), 200)
    };
    if plan.server_closes {
        // `Connection: close` right after the request line; the client reads to the end.
        let at = request.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
        request.splice(at..at, b"Connection: close\r\n".iter().copied());
    }
    let request = Arc::new(request);
    let turn = Duration::from_secs_f64(plan.seconds / f64::from(plan.rounds));
    println!(
        "conn_churn: {} client threads, {} rounds of {:.1} s per runtime, request {}, {} closes first",
        plan.threads,
        plan.rounds,
        turn.as_secs_f64(),
        if plan.not_found {
            "GET / (404)"
        } else {
            "POST /api exec version"
        },
        if plan.server_closes {
            "the agent (Connection: close)"
        } else {
            "the client"
        }
    );
    let mut tallies: Vec<Tally> = runtimes.iter().map(|_| Tally::default()).collect();
    for _ in 0..plan.rounds {
        for (agent, tally) in agents.iter().zip(&mut tallies) {
            let cpu_before = cpu_ticks(agent.pid());
            let started = Instant::now();
            let (done, failed, first) = churn(
                agent.http_addr(),
                &request,
                status,
                plan.server_closes,
                plan.batch,
                plan.threads,
                turn,
            );
            tally.busy += started.elapsed();
            tally.cpu_ticks += cpu_ticks(agent.pid()).saturating_sub(cpu_before);
            tally.done += done;
            tally.failed += failed;
            if tally.first_failure.is_none() {
                tally.first_failure = first;
            }
        }
    }
    // /proc reports CPU time in USER_HZ ticks, 100 a second on Linux whatever the kernel's
    // own tick rate.
    let hz = 100.0;
    let mut rates = Vec::new();
    println!("| | connections | per second | failed | agent CPU (s) | CPU per 1000 conns (ms) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (rt, t) in runtimes.iter().zip(&tallies) {
        let rate = t.done as f64 / t.busy.as_secs_f64();
        let cpu = t.cpu_ticks as f64 / hz;
        rates.push(rate);
        println!(
            "| {} | {} | {:.0} | {} | {:.2} | {:.1} |",
            rt.name(),
            t.done,
            rate,
            t.failed,
            cpu,
            cpu * 1e6 / t.done.max(1) as f64
        );
        if let Some(f) = &t.first_failure {
            println!("  {}: first failure: {f}", rt.name());
        }
    }
    println!("smol / mio: {:.2}", rates[0] / rates[1]);
    if tallies.iter().any(|t| t.failed > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `threads` clients churning connections against `addr` for `turn`.
fn churn(
    addr: SocketAddr,
    request: &Arc<Vec<u8>>,
    status: u16,
    to_eof: bool,
    batch: usize,
    threads: usize,
    turn: Duration,
) -> (u64, u64, Option<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, done, failed) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failed));
            let request = Arc::clone(request);
            std::thread::spawn(move || {
                let mut first = None;
                let mut buf = Vec::with_capacity(4096);
                let mut open = Vec::with_capacity(batch);
                while !stop.load(Ordering::Relaxed) {
                    // `batch` connections opened and sent their request before any answer
                    // is read (1: one connection at a time).
                    open.clear();
                    for _ in 0..batch {
                        match send(addr, &request) {
                            Ok(s) => open.push(s),
                            Err(e) => {
                                first.get_or_insert(e);
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    for s in open.drain(..) {
                        match answer(s, status, to_eof, &mut buf) {
                            Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                first.get_or_insert(e);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                }
                first
            })
        })
        .collect();
    std::thread::sleep(turn);
    stop.store(true, Ordering::Relaxed);
    let mut first = None;
    for c in clients {
        if let Some(e) = c.join().expect("client thread") {
            first.get_or_insert(e);
        }
    }
    (
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        first,
    )
}

/// Connects and sends the request.
fn send(addr: SocketAddr, request: &[u8]) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| format!("write: {e}"))?;
    Ok(s)
}

/// Reads the answer whole (and, `to_eof`, on to the agent's close); dropping the stream
/// closes it.
fn answer(mut s: TcpStream, status: u16, to_eof: bool, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if !to_eof && let Some(r) = take_responses(buf).into_iter().next() {
            return check(r.status, status);
        }
        match s.read(&mut chunk) {
            Ok(0) if to_eof => {
                return match take_responses(buf).into_iter().next() {
                    Some(r) => check(r.status, status),
                    None => Err("closed before the answer".into()),
                };
            }
            Ok(0) => return Err("closed before the answer".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn check(got: u16, want: u16) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("status {got}"))
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // state is field 3 of the whole line, index 0 here; utime 14 → 11, stime 15 → 12.
    num(11) + num(12)
}
