//! Scale benchmark (issue #5 item 5): the agent's resident memory with 10,000 idle
//! keep-alive HTTP connections and with 5,000 parked `pull_results` long-polls, for both
//! runtimes side by side in one run, against the real binaries over loopback.
//!
//! Run (the agents are not built by the bench, as cargo holds the build lock meanwhile):
//!
//! ```sh
//! cargo build --release -p tandem-smol -p tandem-mio --bins
//! cargo bench -p tandem-tests --bench scale
//! ```
//!
//! Arguments (all optional): `smol` and/or `mio` to run one runtime only; `idle=N`,
//! `sessions=N`, `consumers=N` to change the sizes (defaults 10000, 50, 100: 50 sessions of
//! 100 consumers each give 5,000 parked polls). The binaries are looked up in
//! `$CARGO_TARGET_DIR/release`, else `../target/release` next to this crate.
//!
//! Per runtime:
//! 1. start `agent -http-addr 127.0.0.1:0 -rpc-addr 127.0.0.1:0 -lan-port 0 -config-file F`
//!    (F raises `max_connections`, `max_consumers`, the pull and consumer timeouts), with
//!    `RLIMIT_NOFILE` raised in this process first (the agent inherits it);
//! 2. baseline RSS once the agent is idle;
//! 3. open the idle connections in batches; each does one `exec version` (keep-alive), then
//!    stays open and silent; RSS;
//! 4. open one connection per consumer: `init_session` on the first of each session,
//!    `join_session` on the others; drain every consumer's welcome items with one pull; RSS
//!    ("ready": sessions, consumers and their connections, nothing parked);
//! 5. send one `pull_results` on each of those connections and check that none is answered
//!    (they park: `pull_timeout_ms` is 600000); RSS;
//! 6. `async_exec echo hi` in every session (pipelined on one more connection) and read
//!    every parked pull's answer: count them and time the last one.
//!
//! RSS is `VmRSS` (and `RssAnon`) from `/proc/PID/status`, read after the agent's CPU time
//! and RSS stopped moving (at most 5 s). The agent is killed (SIGKILL) before this process
//! closes its sockets.

use std::collections::VecDeque;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_tests::http::{Response, post_api, take_responses};

/// How long any single read or write may take.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long all the parked polls together may take to be answered.
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);
/// Connections opened (and requests sent) before their answers are read.
const BATCH: usize = 100;
/// The file-descriptor limit asked for, for this process and the agents.
const NOFILE: u64 = 65_536;
/// The longest wait for the agent to go quiet before reading its RSS.
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// Sampling period of that wait.
const SETTLE_STEP: Duration = Duration::from_millis(200);

type R<T> = Result<T, String>;

fn main() {
    let mut plan = Plan {
        runtimes: Vec::new(),
        idle: 10_000,
        sessions: 50,
        consumers: 100,
    };
    for arg in std::env::args().skip(1) {
        let num = |s: &str| s.parse::<usize>().expect("a number");
        match arg.split_once('=') {
            Some(("idle", n)) => plan.idle = num(n),
            Some(("sessions", n)) => plan.sessions = num(n).max(1),
            Some(("consumers", n)) => plan.consumers = num(n).max(1),
            _ if arg == "smol" || arg == "mio" => plan.runtimes.push(arg),
            // `cargo bench` passes `--bench`; ignore flags.
            _ if arg.starts_with('-') => {}
            _ => panic!("unknown argument {arg:?}"),
        }
    }
    if plan.runtimes.is_empty() {
        plan.runtimes = vec!["smol".into(), "mio".into()];
    }
    let nofile = raise_nofile(NOFILE);
    let parked = plan.sessions * plan.consumers;
    println!(
        "scale: {} idle connections, {} parked polls ({} sessions x {} consumers), RLIMIT_NOFILE {nofile}",
        plan.idle, parked, plan.sessions, plan.consumers
    );
    let mut results = Vec::new();
    for runtime in &plan.runtimes {
        let bin = binary(if runtime == "smol" {
            "tandem"
        } else {
            "tandem-mio"
        });
        println!("\n== {runtime}: {}", bin.display());
        let started = Instant::now();
        let result = run(&bin, &plan);
        match &result {
            Ok(_) => println!(
                "== {runtime}: done in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => println!("== {runtime}: FAILED: {e}"),
        }
        results.push((runtime.clone(), result));
    }
    print_table(&plan, &results);
    if results.iter().any(|(_, r)| r.is_err()) {
        std::process::exit(1);
    }
}

struct Plan {
    runtimes: Vec<String>,
    idle: usize,
    sessions: usize,
    consumers: usize,
}

/// What one runtime measured. RSS in KiB.
#[derive(Default)]
struct Measured {
    baseline: Rss,
    idle: Rss,
    ready: Rss,
    parked: Rss,
    answered_rss: Rss,
    idle_open_secs: f64,
    /// Idle connections still open (no EOF) when the polls were parked.
    idle_still_open: usize,
    setup_secs: f64,
    /// Polls not answered at once (should be all).
    parked_polls: usize,
    /// Parked polls answered with the job's items.
    answered: usize,
    /// From the first `async_exec` written to the last pull answer read.
    answer_ms: f64,
    threads: u64,
}

#[derive(Clone, Copy, Default)]
struct Rss {
    vm_kib: u64,
    anon_kib: u64,
}

fn run(bin: &Path, plan: &Plan) -> R<Measured> {
    let parked_n = plan.sessions * plan.consumers;
    let config = std::env::temp_dir().join(format!("tandem-scale-{}.json", std::process::id()));
    let max_connections = (plan.idle + parked_n + 100).max(20_000);
    std::fs::write(
        &config,
        format!(
            r#"{{"limits":{{"max_connections":{max_connections},"max_sessions":{},"max_consumers":{}}},"timing":{{"pull_timeout_ms":600000,"consumer_timeout_ms":3600000}}}}"#,
            plan.sessions + 1024,
            plan.consumers + 16,
        ),
    )
    .map_err(|e| format!("writing {}: {e}", config.display()))?;
    let agent = RunningAgent::start(bin, &config);
    let _ = std::fs::remove_file(&config);
    let agent = agent?;
    let mut m = Measured {
        baseline: agent.settled_rss()?,
        ..Measured::default()
    };
    println!("baseline: {}", m.baseline);

    // ----- idle keep-alive connections ------------------------------------------------
    let t = Instant::now();
    let mut idle: Vec<Conn> = Vec::with_capacity(plan.idle);
    let version = post_api(r#"{"action":"exec","command":"version"}"#);
    while idle.len() < plan.idle {
        let first = idle.len();
        for _ in first..(first + BATCH).min(plan.idle) {
            let mut c = Conn::connect(agent.port)?;
            c.send(&version)?;
            idle.push(c);
        }
        for c in &mut idle[first..] {
            let r = c.response()?;
            expect_state(&r, "SUCCEEDED", "exec version")?;
        }
    }
    m.idle_open_secs = t.elapsed().as_secs_f64();
    m.idle = agent.settled_rss()?;
    println!(
        "{} idle connections opened in {:.2} s: {}",
        idle.len(),
        m.idle_open_secs,
        m.idle
    );

    // ----- sessions, consumers, drained -----------------------------------------------
    let t = Instant::now();
    let mut polls: Vec<Poll> = Vec::with_capacity(parked_n);
    for _ in 0..plan.sessions {
        let mut lead = Conn::connect(agent.port)?;
        lead.send(&post_api(r#"{"action":"init_session"}"#))?;
        let init = lead.response()?;
        expect_state(&init, "SUCCEEDED", "init_session")?;
        let session = field(&init, "sessionId")?;
        let consumer = field(&init, "consumerId")?;
        polls.push(Poll {
            conn: lead,
            session: session.clone(),
            consumer,
        });
        let join = post_api(&format!(
            r#"{{"action":"join_session","sessionId":"{session}"}}"#
        ));
        let mut left = plan.consumers - 1;
        while left > 0 {
            let first = polls.len();
            for _ in 0..left.min(BATCH) {
                let mut c = Conn::connect(agent.port)?;
                c.send(&join)?;
                polls.push(Poll {
                    conn: c,
                    session: session.clone(),
                    consumer: String::new(),
                });
            }
            for p in &mut polls[first..] {
                let r = p.conn.response()?;
                expect_state(&r, "SUCCEEDED", "join_session")?;
                p.consumer = field(&r, "consumerId")?;
            }
            left -= polls.len() - first;
        }
    }
    // Every consumer has its welcome (or history) items: take them, so the next pull parks.
    // Fewer than 20 items in an answer means the queue is empty (nothing else runs).
    let mut undrained: Vec<usize> = (0..polls.len()).collect();
    for _round in 0..10 {
        for &i in &undrained {
            let p = &mut polls[i];
            p.conn.send(&p.pull())?;
        }
        let mut again = Vec::new();
        for &i in &undrained {
            let r = polls[i].conn.response()?;
            expect_state(&r, "SUCCEEDED", "pull_results (drain)")?;
            let items = result_items(&r)?;
            if items.is_empty() {
                return Err(format!("drain pull of consumer {i} came back empty"));
            }
            if items.len() >= 20 {
                again.push(i);
            }
        }
        undrained = again;
        if undrained.is_empty() {
            break;
        }
    }
    if !undrained.is_empty() {
        return Err(format!("{} consumers not drained", undrained.len()));
    }
    m.setup_secs = t.elapsed().as_secs_f64();
    m.ready = agent.settled_rss()?;
    println!(
        "{} consumers in {} sessions set up and drained in {:.2} s: {}",
        polls.len(),
        plan.sessions,
        m.setup_secs,
        m.ready
    );

    // ----- park ------------------------------------------------------------------------
    for p in &mut polls {
        let pull = p.pull();
        p.conn.send(&pull)?;
    }
    m.parked = agent.settled_rss()?;
    let mut early = 0;
    for p in &mut polls {
        if !p.conn.silent()? {
            early += 1;
        }
    }
    m.parked_polls = polls.len() - early;
    for c in &mut idle {
        if c.silent()? {
            m.idle_still_open += 1;
        }
    }
    m.threads = agent.status_field("Threads:").unwrap_or(0);
    println!(
        "{} pulls sent, {} parked (not answered), {} idle connections still open: {}",
        polls.len(),
        m.parked_polls,
        m.idle_still_open,
        m.parked
    );

    // ----- results arrive --------------------------------------------------------------
    let mut control = Conn::connect(agent.port)?;
    let mut execs = Vec::new();
    let mut sessions: Vec<String> = polls.iter().map(|p| p.session.clone()).collect();
    sessions.dedup();
    for s in &sessions {
        execs.extend(post_api(&format!(
            r#"{{"action":"async_exec","command":"echo hi","sessionId":"{s}"}}"#
        )));
    }
    let t = Instant::now();
    control.send(&execs)?;
    let mut failures = Vec::new();
    // One deadline for all the answers, so a stuck agent costs ANSWER_DEADLINE, not a
    // read timeout per poll.
    let deadline = t + ANSWER_DEADLINE;
    for (i, p) in polls.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = p
            .conn
            .stream
            .set_read_timeout(Some(left.max(Duration::from_millis(10))));
        match p.conn.response() {
            Ok(r) => match result_items(&r) {
                Ok(items) if items.iter().any(|v| v["message"] == "hi") => m.answered += 1,
                Ok(items) => failures.push(format!("pull {i}: no echo in {} items", items.len())),
                Err(e) => failures.push(format!("pull {i}: {e}")),
            },
            Err(e) => failures.push(format!("pull {i}: {e}")),
        }
    }
    m.answer_ms = t.elapsed().as_secs_f64() * 1000.0;
    for _ in &sessions {
        expect_state(&control.response()?, "SCHEDULED", "async_exec")?;
    }
    m.answered_rss = agent.settled_rss()?;
    println!(
        "{} of {} parked pulls answered, the last {:.0} ms after the first async_exec was sent: {}",
        m.answered,
        polls.len(),
        m.answer_ms,
        m.answered_rss
    );
    for f in failures.iter().take(5) {
        println!("  {f}");
    }
    // The agent goes first, so its side closes first (no TIME_WAIT on our ports).
    drop(agent);
    drop(polls);
    drop(idle);
    Ok(m)
}

fn print_table(plan: &Plan, results: &[(String, R<Measured>)]) {
    let parked = plan.sessions * plan.consumers;
    let kib = |k: u64| format!("{k}");
    let per = |after: u64, before: u64, n: usize| {
        if n == 0 {
            "-".into()
        } else {
            format!("{:.0}", (after as f64 - before as f64) * 1024.0 / n as f64)
        }
    };
    println!();
    print!("| measure |");
    for (name, _) in results {
        print!(" {name} |");
    }
    println!();
    print!("|---|");
    for _ in results {
        print!("---:|");
    }
    println!();
    let row = |label: &str, f: &dyn Fn(&Measured) -> String| {
        print!("| {label} |");
        for (_, r) in results {
            match r {
                Ok(m) => print!(" {} |", f(m)),
                Err(e) => print!(" failed: {e} |"),
            }
        }
        println!();
    };
    row("baseline VmRSS (KiB)", &|m| kib(m.baseline.vm_kib));
    row(
        &format!("VmRSS with {} idle keep-alive connections (KiB)", plan.idle),
        &|m| kib(m.idle.vm_kib),
    );
    row("**bytes per idle connection** (VmRSS)", &|m| {
        per(m.idle.vm_kib, m.baseline.vm_kib, plan.idle)
    });
    row("bytes per idle connection (RssAnon)", &|m| {
        per(m.idle.anon_kib, m.baseline.anon_kib, plan.idle)
    });
    row(
        &format!(
            "VmRSS + {} sessions, {parked} consumers on their own connections, drained (KiB)",
            plan.sessions
        ),
        &|m| kib(m.ready.vm_kib),
    );
    row("bytes per consumer with its connection (VmRSS)", &|m| {
        per(m.ready.vm_kib, m.idle.vm_kib, parked)
    });
    row(&format!("VmRSS with {parked} pulls parked (KiB)"), &|m| {
        kib(m.parked.vm_kib)
    });
    row(
        "**bytes per parked poll** (VmRSS, over the drained consumer)",
        &|m| per(m.parked.vm_kib, m.ready.vm_kib, parked),
    );
    row("bytes per parked poll (RssAnon)", &|m| {
        per(m.parked.anon_kib, m.ready.anon_kib, parked)
    });
    row(
        "bytes per parked poll, all in (connection + consumer + poll, VmRSS)",
        &|m| per(m.parked.vm_kib, m.idle.vm_kib, parked),
    );
    row("pulls parked / idle connections still open", &|m| {
        format!("{} / {}", m.parked_polls, m.idle_still_open)
    });
    row("parked pulls answered after async_exec", &|m| {
        format!("{} of {parked}", m.answered)
    });
    row("time until all answered (ms)", &|m| {
        format!("{:.0}", m.answer_ms)
    });
    row("VmRSS after the answers (KiB)", &|m| {
        kib(m.answered_rss.vm_kib)
    });
    row("opening the idle connections (s)", &|m| {
        format!("{:.2}", m.idle_open_secs)
    });
    row("agent threads", &|m| format!("{}", m.threads));
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {} KiB, RssAnon {} KiB",
            self.vm_kib, self.anon_kib
        )
    }
}

// ----- the agent ------------------------------------------------------------------------

/// An agent child process, killed and reaped on drop.
struct RunningAgent {
    child: Child,
    port: u16,
    /// stderr lines, kept for error messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl RunningAgent {
    fn start(bin: &Path, config: &Path) -> R<RunningAgent> {
        let mut child = Command::new(bin)
            .args([
                "agent",
                "-http-addr",
                "127.0.0.1:0",
                "-rpc-addr",
                "127.0.0.1:0",
                "-lan-port",
                "0",
                "-config-file",
            ])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        // Drained all along, or the agent would block on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("agent: HTTP API listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut agent = RunningAgent {
            child,
            port: 0,
            log,
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("agent did not listen: {}", agent.stderr()))?;
        agent.port = addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("bad address {addr:?}: {e}"))?
            .port();
        Ok(agent)
    }

    fn stderr(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn status(&self) -> R<String> {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).map_err(|e| {
            format!(
                "reading the agent's status: {e}; stderr:\n{}",
                self.stderr()
            )
        })
    }

    fn status_field(&self, name: &str) -> R<u64> {
        let status = self.status()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/PID/status"))
    }

    fn rss(&self) -> R<Rss> {
        Ok(Rss {
            vm_kib: self.status_field("VmRSS:")?,
            anon_kib: self.status_field("RssAnon:")?,
        })
    }

    /// utime + stime, in clock ticks.
    fn cpu_ticks(&self) -> R<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .map_err(|e| format!("reading the agent's stat: {e}"))?;
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // state is field 3; utime and stime are fields 14 and 15.
        Ok(f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0))
    }

    /// RSS once the agent has stopped working: CPU time and RSS unchanged over two samples
    /// in a row (or after [`SETTLE_MAX`]).
    fn settled_rss(&self) -> R<Rss> {
        let deadline = Instant::now() + SETTLE_MAX;
        let mut last = (self.cpu_ticks()?, self.rss()?.vm_kib);
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < deadline {
            std::thread::sleep(SETTLE_STEP);
            let now = (self.cpu_ticks()?, self.rss()?.vm_kib);
            quiet = if now == last { quiet + 1 } else { 0 };
            last = now;
        }
        self.rss()
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$CARGO_TARGET_DIR/release/NAME`, else `../target/release/NAME` from this crate.
fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let bin = target.join("release").join(name);
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release -p tandem-smol -p tandem-mio --bins` first",
        bin.display()
    );
    bin
}

// ----- the client -----------------------------------------------------------------------

/// One client connection (blocking, with timeouts).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    ready: VecDeque<Response>,
}

impl Conn {
    fn connect(port: u16) -> R<Conn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| format!("socket timeouts: {e}"))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            ready: VecDeque::new(),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> R<()> {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    /// The next response (waits at most [`IO_TIMEOUT`] per read).
    fn response(&mut self) -> R<Response> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(r);
            }
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed by the agent".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            self.ready.extend(take_responses(&mut self.buf));
        }
    }

    /// Nothing to read and not closed: the request is still parked / the connection idle.
    fn silent(&mut self) -> R<bool> {
        if !self.ready.is_empty() || !self.buf.is_empty() {
            return Ok(false);
        }
        self.stream
            .set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        let mut byte = [0u8; 1];
        let got = self.stream.peek(&mut byte);
        self.stream
            .set_nonblocking(false)
            .map_err(|e| format!("blocking: {e}"))?;
        match got {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
            _ => Ok(false),
        }
    }
}

/// A consumer and the connection its pulls go on.
struct Poll {
    conn: Conn,
    session: String,
    consumer: String,
}

impl Poll {
    fn pull(&self) -> Vec<u8> {
        post_api(&format!(
            r#"{{"action":"pull_results","sessionId":"{}","consumerId":"{}"}}"#,
            self.session, self.consumer
        ))
    }
}

fn expect_state(r: &Response, state: &str, what: &str) -> R<()> {
    if r.status == 200
        && serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|v| v["state"] == state)
    {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected {state}, got {}",
            String::from_utf8_lossy(&r.raw)
        ))
    }
}

fn field(r: &Response, name: &str) -> R<String> {
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v[name].as_str().map(str::to_string))
        .ok_or_else(|| format!("no {name} in {}", String::from_utf8_lossy(&r.body)))
}

fn result_items(r: &Response) -> R<Vec<serde_json::Value>> {
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["body"]["results"].as_array().cloned())
        .ok_or_else(|| format!("no results in {}", String::from_utf8_lossy(&r.body)))
}

// ----- the descriptor limit -------------------------------------------------------------

#[repr(C)]
struct RLimit {
    cur: u64,
    max: u64,
}

/// Linux's `RLIMIT_NOFILE`.
const RLIMIT_NOFILE: i32 = 7;

unsafe extern "C" {
    fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
    fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
}

/// Raises this process's descriptor limit to `want` (the hard limit too, which root may
/// do; otherwise as far as the hard limit goes). Children inherit it. Returns the limit.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = RLimit { cur: 0, max: 0 };
    // SAFETY: getrlimit writes one `struct rlimit` (two `rlim_t`, u64 on Linux) to `lim`.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.cur >= want {
        return lim.cur;
    }
    let both = RLimit {
        cur: want,
        max: want.max(lim.max),
    };
    // SAFETY: setrlimit reads one `struct rlimit` from `both`.
    if unsafe { setrlimit(RLIMIT_NOFILE, &both) } == 0 {
        return want;
    }
    let soft = RLimit {
        cur: lim.max,
        max: lim.max,
    };
    // SAFETY: as above.
    if unsafe { setrlimit(RLIMIT_NOFILE, &soft) } == 0 {
        lim.max
    } else {
        lim.cur
    }
}
