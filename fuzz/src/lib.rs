//! Fuzzing support for tandem-core: one runner per cargo-fuzz target, shared by the
//! libFuzzer binaries (`fuzz_targets/`) and by the corpus replay test
//! (`tests/tests/fuzz_corpus_replay.rs`), so `cargo test` replays every committed corpus
//! file through exactly the code the fuzzer ran.
//!
//! Every runner drives a real [`Agent`] through its public API the way a runtime does (one
//! input, then drain [`Agent::poll_output`]) and panics when an invariant breaks:
//!
//! - no panic inside the agent;
//! - every connection gets [`Output::Close`] at most once;
//! - `tx_pending` of every connection stays within `limits.max_tx` (the largest in force so
//!   far) plus [`TX_SLACK`], one response worth (see its doc);
//! - what a connection received parses: HTTP as complete responses whose JSON bodies parse,
//!   RPC as complete msgpack values;
//! - `agent_ops` runs every op sequence twice on fresh agents and requires identical
//!   outputs (the agent is deterministic given its seed and inputs);
//! - `msgpack_len` compares the agent's framing of an RPC message with a reference
//!   decoder (rmpv plus an independent recursive walker) — see [`msgpack_len`].
//!
//! See FUZZING.md for the input formats, the commands and the campaign log.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use tandem_core::cluster::{ClusterConfig, GossipKey, Keyring};
use tandem_core::{
    Agent, CommandInfo, Config, ConnId, Effect, Instant, JobId, Limits, Listener, Output, Pool,
};

/// The targets, as named in `fuzz/Cargo.toml` and `fuzz/corpus/`.
pub const TARGETS: [&str; 9] = [
    "http_stream",
    "rpc_stream",
    "msgpack_len",
    "api_json",
    "gossip_datagram",
    "agent_ops",
    "key_query",
    "peer_stream",
    "snapshot_file",
];

/// Runs one input through a target by name.
pub fn run_target(target: &str, data: &[u8]) {
    match target {
        "http_stream" => http_stream(data),
        "rpc_stream" => rpc_stream(data),
        "msgpack_len" => msgpack_len(data),
        "api_json" => api_json(data),
        "gossip_datagram" => gossip_datagram(data),
        "agent_ops" => agent_ops(data),
        "key_query" => key_query(data),
        "peer_stream" => peer_stream(data),
        "snapshot_file" => snapshot_file(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// `main` of a target built without libFuzzer: replays the files (or the files of the
/// directories) given as arguments.
pub fn replay_main(target: &str) {
    let mut n = 0;
    for arg in std::env::args().skip(1) {
        let path = std::path::PathBuf::from(arg);
        let files: Vec<_> = if path.is_dir() {
            let mut v: Vec<_> = std::fs::read_dir(&path)
                .expect("read corpus dir")
                .map(|e| e.expect("dir entry").path())
                .collect();
            v.sort();
            v
        } else {
            vec![path]
        };
        for f in files {
            let data = std::fs::read(&f).expect("read input");
            run_target(target, &data);
            n += 1;
        }
    }
    println!("{target}: {n} inputs ran clean");
}

/// How far `tx_pending` may exceed `limits.max_tx`: one response worth. The agent stops
/// reading requests (HTTP and RPC) while a connection holds `max_tx` or more, and drops RPC
/// stream records meanwhile, so at most the response being built when the limit was crossed
/// (plus one parked answer) lands beyond it. In these harnesses the largest single response
/// is bounded by their inputs: `exec_results` (at most 500 by default) host items of at most
/// ~100 bytes, a member list of the few peers a datagram run can add, a log ring replay of
/// 256 short records; 64 KiB covers each with margin.
pub const TX_SLACK: usize = 64 * 1024;

/// The host command the harnesses register (its jobs come back as `Effect::StartJob`).
pub const HOST_COMMAND: &str = "hostcmd";

/// The RPC handshake of spec §5.1 (`{"Command":"handshake","Seq":0}`, `{"Version":1}`).
pub const RPC_HANDSHAKE: &[u8] = b"\x82\xa7Command\xa9handshake\xa3Seq\x00\x81\xa7Version\x01";

/// The key of the agents built with `rpc_auth`.
pub const RPC_KEY: &str = "s3cret";

// ----- the harness -----------------------------------------------------------------------

/// An agent plus what a runtime would track, with invariant checks.
pub struct Harness {
    /// The agent under test.
    pub agent: Agent,
    /// Virtual time.
    pub now: Instant,
    /// Open (not yet reset) connections, in accept order.
    pub conns: Vec<ConnId>,
    /// Every connection the agent closed with `Output::Close`.
    closed: BTreeSet<ConnId>,
    /// Connections whose output is read only by explicit `read` calls.
    slow: BTreeSet<ConnId>,
    /// Bytes each connection received.
    pub received: BTreeMap<ConnId, Vec<u8>>,
    /// Host jobs started, in order.
    pub jobs: Vec<JobId>,
    /// Reset a connection as soon as the agent closes it (what runtimes do).
    reset_on_close: bool,
    /// Answer each host job with one item and a finish right away.
    auto_jobs: bool,
    pending_auto: Vec<JobId>,
    /// Event handler runs to answer.
    pending_handlers: Vec<tandem_core::HandlerId>,
    /// The largest `max_tx` in force so far.
    max_tx: usize,
    /// Every output, for the determinism check (only when `tracing`).
    pub trace: String,
    tracing: bool,
    /// Gossip datagrams sent.
    pub datagrams: usize,
}

impl Harness {
    /// A harness around a fresh agent (seed 42, `now` = 1 ms).
    pub fn new(config: Config, reset_on_close: bool) -> Self {
        let max_tx = config.limits.max_tx;
        let now = Instant::from_millis(1);
        let mut agent = Agent::new(config, 42, Instant::ZERO);
        agent
            .register_command(CommandInfo::new(
                HOST_COMMAND,
                "fuzz host command",
                "hostcmd",
            ))
            .expect("register host command");
        Harness {
            agent,
            now,
            conns: Vec::new(),
            closed: BTreeSet::new(),
            slow: BTreeSet::new(),
            received: BTreeMap::new(),
            jobs: Vec::new(),
            reset_on_close,
            auto_jobs: false,
            pending_auto: Vec::new(),
            pending_handlers: Vec::new(),
            max_tx,
            trace: String::new(),
            tracing: false,
            datagrams: 0,
        }
    }

    /// Accepts a connection; `None` when refused.
    pub fn accept(&mut self, listener: Listener) -> Option<ConnId> {
        let c = self.agent.accept(listener, None, self.now).ok();
        if let Some(c) = c {
            self.conns.push(c);
            self.received.entry(c).or_default();
        }
        self.trace(format_args!("accept {listener:?} -> {c:?}"));
        self.drain();
        c
    }

    fn trace(&mut self, what: core::fmt::Arguments<'_>) {
        if self.tracing {
            let _ = writeln!(self.trace, "{what}");
        }
    }

    /// Whether the agent closed this connection.
    pub fn is_closed(&self, c: ConnId) -> bool {
        self.closed.contains(&c)
    }

    /// Drains the outputs and checks the invariants.
    pub fn drain(&mut self) {
        loop {
            while let Some(out) = self.agent.poll_output() {
                if self.tracing {
                    let _ = writeln!(self.trace, "out {out:?}");
                }
                match out {
                    Output::Transmit(c) => {
                        if !self.slow.contains(&c) {
                            self.read(c, usize::MAX);
                        }
                    }
                    Output::Close(c) => {
                        assert!(self.closed.insert(c), "Output::Close twice for {c:?}");
                        // Flush what is pending, close, release.
                        self.read(c, usize::MAX);
                        if self.reset_on_close {
                            self.reset(c);
                        }
                    }
                    Output::Datagram => {
                        while let Some((pool, to, d)) = self.agent.poll_datagram() {
                            self.datagrams += 1;
                            if self.tracing {
                                let _ = writeln!(self.trace, "dgram {pool:?} {to} {d:?}");
                            }
                        }
                    }
                    Output::Effect(Effect::StartJob { job, .. }) => {
                        self.jobs.push(job);
                        if self.auto_jobs {
                            self.pending_auto.push(job);
                        }
                    }
                    Output::Effect(Effect::RunHandler(run)) => self.pending_handlers.push(run.id),
                    Output::Effect(_) | Output::ResumeRead(_) | Output::Log(_) => {}
                }
            }
            // Handler runs are answered at once, odd ones as failures with output (which
            // a query handler would send as its response).
            if let Some(id) = self.pending_handlers.pop() {
                let result = if id.0 % 2 == 0 {
                    Ok(())
                } else {
                    Err("exit status 1")
                };
                self.agent
                    .handler_finished(id, result, b"fuzz handler output", self.now);
                continue;
            }
            let Some(job) = self.pending_auto.pop() else {
                break;
            };
            let item = serde_json::json!({"type": "text", "text": "fuzz output"});
            let _ = self.agent.job_output(job, &item, self.now);
            self.agent.job_finished(job, 0, None, self.now);
        }
        self.check_tx();
    }

    fn check_tx(&self) {
        for &c in &self.conns {
            let n = self.agent.tx_pending(c).len();
            assert!(
                n <= self.max_tx + TX_SLACK,
                "{c:?}: {n} bytes pending, over max_tx {} + {TX_SLACK}",
                self.max_tx
            );
        }
    }

    /// The client reads up to `n` bytes of the connection's pending output.
    pub fn read(&mut self, c: ConnId, n: usize) {
        let pending = self.agent.tx_pending(c);
        let m = pending.len().min(n);
        if m == 0 {
            return;
        }
        self.received
            .entry(c)
            .or_default()
            .extend_from_slice(&pending[..m]);
        if self.tracing {
            let _ = writeln!(self.trace, "read {c:?} {:?}", &pending[..m]);
        }
        self.agent.tx_consume(c, m, self.now);
    }

    /// Offers bytes; returns how many the agent took (it may stop at backpressure, or take
    /// nothing from a closed connection).
    pub fn send(&mut self, c: ConnId, data: &[u8]) -> usize {
        let mut taken = 0;
        while taken < data.len() {
            let n = self.agent.handle_stream(c, &data[taken..], self.now);
            self.drain();
            if n == 0 {
                break;
            }
            taken += n;
        }
        self.trace(format_args!("send {c:?} {taken}/{}", data.len()));
        taken
    }

    /// Sends `data` in chunks whose sizes come from `seed` (0: one chunk), one ms apart.
    pub fn send_split(&mut self, c: ConnId, data: &[u8], seed: u8) {
        if seed == 0 {
            self.send(c, data);
            return;
        }
        let mut x = u32::from(seed).wrapping_mul(0x9e37_79b9) | 1;
        let mut at = 0;
        while at < data.len() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (1 + (x % 24) as usize).min(data.len() - at);
            let n = self.send(c, &data[at..at + len]);
            if n < len {
                return; // closed or blocked: the rest is never delivered
            }
            at += len;
            self.advance(1);
        }
    }

    /// The peer finished sending.
    pub fn eof(&mut self, c: ConnId) {
        self.agent.handle_eof(c, self.now);
        self.trace(format_args!("eof {c:?}"));
        self.drain();
    }

    /// The socket is gone (also what the runtime calls after `Output::Close`).
    pub fn reset(&mut self, c: ConnId) {
        self.conns.retain(|x| *x != c);
        self.agent.handle_reset(c, self.now);
        self.trace(format_args!("reset {c:?}"));
        self.drain();
    }

    /// Time passes: `ms` milliseconds, then due timers fire.
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.agent.handle_timeout(self.now);
        self.trace(format_args!("advance {ms}"));
        self.drain();
    }

    /// Jumps to the next deadline `rounds` times, firing it.
    pub fn run_timers(&mut self, rounds: usize) {
        for _ in 0..rounds {
            let Some(t) = self.agent.poll_timeout() else {
                return;
            };
            self.now = self.now.max(t);
            self.agent.handle_timeout(self.now);
            self.drain();
        }
    }

    /// A gossip datagram arrives.
    pub fn datagram(&mut self, pool: Pool, from: SocketAddr, data: &[u8]) {
        self.agent.handle_datagram(pool, from, data, self.now);
        self.trace(format_args!("datagram {pool:?} {from} {}", data.len()));
        self.drain();
    }

    /// The runtime reports datagrams to `to` undeliverable (ICMP port unreachable).
    pub fn unreachable(&mut self, pool: Pool, to: SocketAddr) {
        self.agent.handle_unreachable(pool, to, self.now);
        self.trace(format_args!("unreachable {pool:?} {to}"));
        self.drain();
    }

    /// Applies a configuration, as the outcome of a reload (which answers RPC `reload`s
    /// waiting for one).
    pub fn apply_config(&mut self, config: Config) {
        self.max_tx = self.max_tx.max(config.limits.max_tx);
        self.agent.reload_finished(Ok(config), self.now);
        self.trace(format_args!("reload"));
        self.drain();
    }

    /// Resets every open connection and checks that nothing is left.
    pub fn finish(&mut self) {
        while let Some(&c) = self.conns.first() {
            self.read(c, usize::MAX);
            self.drain();
            self.reset(c);
        }
        assert_eq!(self.agent.connection_count(Listener::Http), 0);
        assert_eq!(self.agent.connection_count(Listener::Rpc), 0);
    }
}

/// Small limits, so the fuzzer reaches every limit with short inputs.
pub fn small_limits() -> Limits {
    Limits {
        max_connections: 4,
        overflow_connections: 2,
        max_head: 256,
        max_headers: 8,
        max_body: 512,
        max_tx: 256,
        consumer_queue: 4,
        history: 3,
        max_sessions: 3,
        max_consumers: 2,
        max_jobs: 2,
        max_host_jobs: 3,
        exec_results: 3,
        log_ring: 8,
        max_command: 64,
        rpc_max_frame: 256,
        rpc_max_str: 64,
        rpc_max_container: 8,
        rpc_max_values: 64,
        event_handler_queue: 2,
        event_handler_output: 64,
    }
}

/// The gossip configuration: a server, so both pools exist.
pub fn server_config() -> Config {
    Config {
        server: true,
        ..Config::default()
    }
}

// ----- response checks -------------------------------------------------------------------

/// Parses what an HTTP connection received: complete responses, each with a
/// `Content-Length`, JSON bodies that parse (responses to HEAD carry none). Returns how many
/// responses there were.
pub fn check_http_responses(mut bytes: &[u8]) -> usize {
    let mut n = 0;
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(bytes) {
            Ok(httparse::Status::Complete(h)) => h,
            other => panic!(
                "bad HTTP response ({other:?}): {:?}",
                String::from_utf8_lossy(bytes)
            ),
        };
        let code = resp.code.unwrap_or(0);
        let mut len = None;
        let mut json = false;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value).expect("content-length is ascii");
                len = Some(
                    v.trim()
                        .parse::<usize>()
                        .expect("content-length is a number"),
                );
            }
            if h.name.eq_ignore_ascii_case("content-type") {
                json = h.value.windows(4).any(|w| w.eq_ignore_ascii_case(b"json"));
            }
        }
        let mut len = if (100..200).contains(&code) {
            0
        } else {
            len.expect("response has a Content-Length")
        };
        // A response to HEAD has a Content-Length but no body: it is followed by the next
        // status line or by nothing. (A JSON body never starts with `HTTP/1.`.)
        let rest = &bytes[head..];
        let head_reply = len > 0 && (rest.is_empty() || rest.starts_with(b"HTTP/1."));
        if head_reply {
            len = 0;
        }
        let body = bytes.get(head..head + len).unwrap_or_else(|| {
            panic!(
                "truncated response body: {:?}",
                String::from_utf8_lossy(bytes)
            )
        });
        if json
            && !head_reply
            && let Err(e) = serde_json::from_slice::<serde_json::Value>(body)
        {
            panic!(
                "response body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            );
        }
        bytes = &bytes[head + len..];
        if !(100..200).contains(&code) {
            n += 1;
        }
    }
    n
}

/// Decodes what an RPC connection received: complete msgpack values, each header a map with
/// `Error` and `Seq`. Returns the values.
pub fn check_rpc_replies(bytes: &[u8]) -> Vec<rmpv::Value> {
    let mut rd = bytes;
    let mut values = Vec::new();
    while !rd.is_empty() {
        match rmpv::decode::read_value(&mut rd) {
            Ok(v) => values.push(v),
            Err(e) => panic!("undecodable RPC output ({e}) at {}", bytes.len() - rd.len()),
        }
    }
    values
}

/// The `(Error, Seq)` of a reply header value, if it is one.
pub fn reply_header(v: &rmpv::Value) -> Option<(String, u64)> {
    let map = v.as_map()?;
    if map.len() != 2 {
        return None;
    }
    let mut err = None;
    let mut seq = None;
    for (k, v) in map {
        match k.as_str()? {
            "Error" => err = Some(v.as_str()?.to_string()),
            "Seq" => seq = Some(v.as_u64()?),
            _ => return None,
        }
    }
    Some((err?, seq?))
}

// ----- http_stream -----------------------------------------------------------------------

/// `http_stream`: byte 0 is control, the rest is one HTTP connection's bytes.
///
/// Control bits: 0 — go quiet until the deadlines fire (a stalled client: head and body
/// timeouts answer 408), then reset, instead of an EOF; 1 — small limits; 2..8 — the
/// chunking seed (0 delivers everything at once; otherwise chunks of 1–24 bytes, 1 ms apart).
/// After the end, the pending timers fire (parked `pull_results` answer) and every
/// connection is reset. The bytes received must parse as HTTP responses with JSON bodies.
pub fn http_stream(data: &[u8]) {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let mut cfg = Config::default();
    if ctl & 2 != 0 {
        cfg.limits = small_limits();
    }
    let mut h = Harness::new(cfg, true);
    let c = h
        .accept(Listener::Http)
        .expect("first connection is accepted");
    h.send_split(c, stream, ctl >> 2);
    end(&mut h, c, ctl & 1 != 0);
    h.finish();
    check_http_responses(&h.received[&c]);
}

/// How a stream target's client ends: with an EOF (then the pending timers fire), or it goes
/// quiet — the connection's deadlines fire (head, body, idle, RPC auth), as for a client that
/// stalls — and then its socket is gone.
fn end(h: &mut Harness, c: ConnId, quiet: bool) {
    if quiet {
        // 20 s in 5 s steps: past the default head, body and RPC handshake deadlines (10 s).
        for _ in 0..4 {
            h.advance(5_000);
        }
        h.reset(c);
    } else {
        h.eof(c);
        h.run_timers(6);
    }
}

// ----- rpc_stream ------------------------------------------------------------------------

/// `rpc_stream`: byte 0 is control, the rest is one RPC connection's bytes.
///
/// Control bits: 0 — go quiet until the deadlines fire, then reset, instead of an EOF; 1 —
/// prefix the handshake (spec
/// §5.1), and the `auth` when bit 3 is set; 2 — small limits; 3 — the agent requires
/// `rpc_auth` (`s3cret`); 4..8 — the chunking seed. Everything received must decode as
/// msgpack values.
pub fn rpc_stream(data: &[u8]) {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let mut cfg = Config::default();
    if ctl & 4 != 0 {
        cfg.limits = small_limits();
    }
    if ctl & 8 != 0 {
        cfg.rpc_auth = Some(RPC_KEY.into());
    }
    let mut h = Harness::new(cfg, true);
    let c = h
        .accept(Listener::Rpc)
        .expect("first connection is accepted");
    if ctl & 2 != 0 {
        h.send(c, RPC_HANDSHAKE);
        if ctl & 8 != 0 {
            h.send(c, &rpc_auth_request(1, RPC_KEY));
        }
    }
    h.send_split(c, stream, ctl >> 4);
    end(&mut h, c, ctl & 1 != 0);
    h.finish();
    check_rpc_replies(&h.received[&c]);
}

// ----- peer_stream -----------------------------------------------------------------------

/// `peer_stream`: byte 0 is control, the rest is one accepted cluster-job peer stream's
/// bytes (docs/cluster-jobs.md). Control bits: 0 — go quiet until the deadlines fire, then
/// reset, instead of an EOF; 2 — small limits; 4..8 — the chunking seed. Whatever the agent
/// answers must be whole msgpack frames, and no job may be left behind.
pub fn peer_stream(data: &[u8]) {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let mut cfg = Config::default();
    if ctl & 4 != 0 {
        cfg.limits = small_limits();
    }
    let mut h = Harness::new(cfg, true);
    let c = h
        .accept(Listener::Peer)
        .expect("first connection is accepted");
    h.send_split(c, stream, ctl >> 4);
    end(&mut h, c, ctl & 1 != 0);
    h.finish();
    // Answers are `start` or `refused` frames: maps of strings, whole.
    let got = &h.received[&c];
    let mut rest = &got[..];
    while !rest.is_empty() {
        rest = skip_str_map(rest);
    }
    assert_eq!(h.agent.job_count(), 0, "no job without a session");
}

/// The bytes after one msgpack map of string keys and string values.
fn skip_str_map(buf: &[u8]) -> &[u8] {
    let mut r = buf;
    let n = rmp::decode::read_map_len(&mut r).expect("a map");
    for _ in 0..2 * n {
        let len = rmp::decode::read_str_len(&mut r).expect("a string") as usize;
        r = r.get(len..).expect("a whole string");
    }
    r
}

fn rpc_header(out: &mut Vec<u8>, command: &str, seq: u64) {
    rmp::encode::write_map_len(out, 2).expect("vec write");
    rmp::encode::write_str(out, "Command").expect("vec write");
    rmp::encode::write_str(out, command).expect("vec write");
    rmp::encode::write_str(out, "Seq").expect("vec write");
    rmp::encode::write_uint(out, seq).expect("vec write");
}

fn rpc_auth_request(seq: u64, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    rpc_header(&mut out, "auth", seq);
    rmp::encode::write_map_len(&mut out, 1).expect("vec write");
    rmp::encode::write_str(&mut out, "AuthKey").expect("vec write");
    rmp::encode::write_str(&mut out, key).expect("vec write");
    out
}

// ----- msgpack_len -----------------------------------------------------------------------

/// What the reference walker makes of the value at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// A whole value of this many bytes.
    Complete(usize),
    /// The bytes end inside the value.
    Eof,
    /// `0xc1` where a marker belongs.
    Reserved,
    /// A string/bin longer than `max_str`, or a container longer than `max_container`.
    TooLarge,
    /// Deeper than the walker goes (4096 levels): no verdict.
    TooDeep,
}

/// An independent, recursive msgpack value walker (the oracle for the agent's stackless
/// scanner). It checks declared lengths against the limits when it reads them, as the
/// scanner does.
pub fn walk(b: &[u8], max_str: usize, max_container: usize) -> Walk {
    fn need(b: &[u8], pos: usize, n: usize) -> Result<usize, Walk> {
        if b.len() - pos < n {
            Err(Walk::Eof)
        } else {
            Ok(pos + n)
        }
    }
    fn be(b: &[u8], pos: usize, n: usize) -> Result<(usize, usize), Walk> {
        let end = need(b, pos, n)?;
        let v = b[pos..end]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x));
        Ok((v, end))
    }
    fn go(b: &[u8], pos: usize, depth: usize, ms: usize, mc: usize) -> Result<usize, Walk> {
        if depth > 4096 {
            return Err(Walk::TooDeep);
        }
        let m = *b.get(pos).ok_or(Walk::Eof)?;
        let pos = pos + 1;
        let payload = |len_bytes: usize| -> Result<usize, Walk> {
            let (len, at) = be(b, pos, len_bytes)?;
            if len > ms {
                return Err(Walk::TooLarge);
            }
            need(b, at, len)
        };
        let children = |count: usize, at: usize| -> Result<usize, Walk> {
            let mut at = at;
            for _ in 0..count {
                at = go(b, at, depth + 1, ms, mc)?;
            }
            Ok(at)
        };
        match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Ok(pos),
            0xc1 => Err(Walk::Reserved),
            0xa0..=0xbf => {
                let n = usize::from(m & 0x1f);
                if n > ms {
                    return Err(Walk::TooLarge);
                }
                need(b, pos, n)
            }
            0x80..=0x9f => {
                let n = usize::from(m & 0x0f);
                if n > mc {
                    return Err(Walk::TooLarge);
                }
                children(if m < 0x90 { 2 * n } else { n }, pos)
            }
            0xcc | 0xd0 => need(b, pos, 1),
            0xcd | 0xd1 => need(b, pos, 2),
            0xce | 0xd2 | 0xca => need(b, pos, 4),
            0xcf | 0xd3 | 0xcb => need(b, pos, 8),
            0xd9 | 0xc4 => payload(1),
            0xda | 0xc5 => payload(2),
            0xdb | 0xc6 => payload(4),
            0xd4 => need(b, pos, 2),
            0xd5 => need(b, pos, 3),
            0xd6 => need(b, pos, 5),
            0xd7 => need(b, pos, 9),
            0xd8 => need(b, pos, 17),
            0xc7 => ext(b, pos, 1),
            0xc8 => ext(b, pos, 2),
            0xc9 => ext(b, pos, 4),
            0xdc..=0xdf => {
                let len_bytes = if m & 1 == 0 { 2 } else { 4 };
                let (n, at) = be(b, pos, len_bytes)?;
                if n > mc {
                    return Err(Walk::TooLarge);
                }
                children(if m >= 0xde { 2 * n } else { n }, at)
            }
        }
    }
    /// ext 8/16/32: length, type byte, payload. Ext payloads are not held to `max_str`
    /// here (the scanner's treatment of them is left to `Walk::Complete` comparisons).
    fn ext(b: &[u8], pos: usize, len_bytes: usize) -> Result<usize, Walk> {
        let (len, at) = be(b, pos, len_bytes)?;
        need(b, at, len.saturating_add(1))
    }
    match go(b, 0, 0, max_str, max_container) {
        Ok(n) => Walk::Complete(n),
        Err(w) => w,
    }
}

/// Whether a value (or anything inside it) is an ext, whose limit handling the walker does
/// not model.
fn has_ext(v: &rmpv::Value) -> bool {
    match v {
        rmpv::Value::Ext(..) => true,
        rmpv::Value::Array(a) => a.iter().any(has_ext),
        rmpv::Value::Map(m) => m.iter().any(|(k, v)| has_ext(k) || has_ext(v)),
        _ => false,
    }
}

/// The model of the agent's answer to a header on a connection without a handshake.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// "Handshake required" with this Seq, then close.
    HandshakeRequired(u64),
    /// Close without a reply.
    Silent,
    /// The model does not say.
    Unknown,
}

fn header_verdict(v: &rmpv::Value, raw: &[u8]) -> Verdict {
    use rmpv::Value as V;
    // Only canonical encodings (smallest forms, as rmp writes them) get a verdict: the
    // model cannot see whether a positive Seq came as a signed int, which Go refuses.
    let mut canon = Vec::new();
    if rmpv::encode::write_value(&mut canon, v).is_err() || canon != raw {
        return Verdict::Unknown;
    }
    let field = |cmd: &mut Option<String>, seq: &mut u64, k: &str, val: &V| -> bool {
        match (k, val) {
            ("Command", V::String(s)) => match s.as_str() {
                Some(s) => {
                    *cmd = Some(s.to_string());
                    true
                }
                None => false,
            },
            ("Seq", V::Integer(i)) => match i.as_u64() {
                Some(i) => {
                    *seq = i;
                    true
                }
                None => false,
            },
            _ => false,
        }
    };
    let mut cmd = None;
    let mut seq = 0;
    match v {
        V::Nil => {}
        V::Boolean(_) | V::Integer(_) | V::F32(_) | V::F64(_) | V::String(_) | V::Binary(_) => {
            return Verdict::Silent;
        }
        V::Ext(..) => return Verdict::Unknown,
        V::Map(m) => {
            let mut seen = BTreeSet::new();
            for (k, val) in m {
                let Some(k) = k.as_str() else {
                    return Verdict::Unknown;
                };
                if !seen.insert(k) || !field(&mut cmd, &mut seq, k, val) {
                    return Verdict::Unknown;
                }
            }
        }
        V::Array(a) => {
            if a.len() > 2 {
                return Verdict::Unknown;
            }
            for (k, val) in ["Command", "Seq"].iter().zip(a) {
                if !field(&mut cmd, &mut seq, k, val) {
                    return Verdict::Unknown;
                }
            }
        }
    }
    if cmd.as_deref() == Some("handshake") {
        // The agent waits for the handshake's body.
        return Verdict::Unknown;
    }
    Verdict::HandshakeRequired(seq)
}

/// `msgpack_len`: the bytes are one RPC message, checked against reference decoders through
/// the RPC surface (the scanner itself is crate-private).
///
/// 1. As the first header of a fresh connection (then EOF): when the reference says the
///    value is incomplete, holds `0xc1` as a marker, declares a string or container over the
///    limits, or is a scalar, the agent must close without a byte; when it is a canonical
///    header (map or array of `Command` str ≠ `handshake` and `Seq` uint, or nil), the only
///    reply must be `{"Error":"Handshake required","Seq":seq}`.
/// 2. Framing length: after a handshake, on an agent requiring `rpc_auth`, a `join` header
///    is refused with "Authentication required" and its body is read and dropped — the body
///    is the first value of these bytes — then a `members` header with Seq 4242 follows.
///    When the walker (and rmpv) frame a whole value, the agent must answer Seq 4242, which
///    it can only find if its scanner framed exactly as many bytes; when the walker sees
///    `0xc1` or an oversized declaration first, the agent must not.
pub fn msgpack_len(data: &[u8]) {
    let limits = Limits::default();
    let walked = walk(data, limits.rpc_max_str, limits.rpc_max_container);
    let mut rd = data;
    let decoded = rmpv::decode::read_value_with_max_depth(&mut rd, 1024);
    if let (Walk::Complete(n), Ok(v)) = (walked, &decoded)
        && !has_ext(v)
    {
        assert_eq!(
            n,
            data.len() - rd.len(),
            "walker and rmpv disagree on the length"
        );
    }

    // 1. As a header on a fresh connection.
    let verdict = match (walked, &decoded) {
        (Walk::Eof | Walk::Reserved | Walk::TooLarge, _) => Verdict::Silent,
        (Walk::Complete(n), Ok(v)) if !has_ext(v) => header_verdict(v, &data[..n]),
        _ => Verdict::Unknown,
    };
    let mut h = Harness::new(Config::default(), true);
    let c = h.accept(Listener::Rpc).expect("accepted");
    h.send(c, data);
    h.eof(c);
    h.finish();
    let got = &h.received[&c];
    let replies = check_rpc_replies(got);
    match verdict {
        Verdict::Silent => assert!(
            got.is_empty(),
            "reference says no reply ({walked:?}), agent replied {replies:?}"
        ),
        Verdict::HandshakeRequired(seq) => {
            assert_eq!(
                replies.iter().map(reply_header).collect::<Vec<_>>(),
                vec![Some(("Handshake required".to_string(), seq))],
                "reference says Handshake required, Seq {seq}"
            );
            assert!(h.is_closed(c), "the connection must be closed");
        }
        Verdict::Unknown => {}
    }

    // 2. Framing length, through the discarded body of a refused command.
    let expect_sentinel = match (walked, &decoded) {
        (Walk::Complete(_), Ok(v)) if !has_ext(v) => Some(true),
        (Walk::Complete(_), Err(rmpv::decode::Error::DepthLimitExceeded)) => Some(true),
        (Walk::Reserved | Walk::TooLarge, _) => Some(false),
        _ => None,
    };
    let Some(expect) = expect_sentinel else {
        return;
    };
    // Only the first value is the discarded body; bytes after it would be read as headers.
    let body = match walked {
        Walk::Complete(n) => &data[..n],
        _ => data,
    };
    let mut stream = RPC_HANDSHAKE.to_vec();
    rpc_header(&mut stream, "join", 1);
    stream.extend_from_slice(body);
    rpc_header(&mut stream, "members", 4242);
    let cfg = Config {
        rpc_auth: Some(RPC_KEY.into()),
        ..Config::default()
    };
    let mut h = Harness::new(cfg, true);
    let c = h.accept(Listener::Rpc).expect("accepted");
    h.send(c, &stream);
    h.eof(c);
    h.finish();
    let replies = check_rpc_replies(&h.received[&c]);
    let headers: Vec<_> = replies.iter().filter_map(reply_header).collect();
    let sentinel = headers.iter().any(|(_, s)| *s == 4242);
    assert_eq!(
        sentinel, expect,
        "framing differs from the reference ({walked:?}): replies {headers:?}"
    );
    if expect {
        assert_eq!(
            headers,
            vec![
                (String::new(), 0),
                ("Authentication required".to_string(), 1),
                ("Authentication required".to_string(), 4242)
            ]
        );
    }
}

// ----- api_json --------------------------------------------------------------------------

/// Builds a `POST /api` request around a body.
pub fn api_request(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Every value of `"key":"value"` in the bytes, in order, without duplicates.
pub fn json_strings(bytes: &[u8], key: &str) -> Vec<String> {
    let pat = format!("\"{key}\":\"");
    let text = String::from_utf8_lossy(bytes);
    let mut out: Vec<String> = Vec::new();
    for (i, _) in text.match_indices(&pat) {
        let rest = &text[i + pat.len()..];
        if let Some(end) = rest.find('"') {
            let v = rest[..end].to_string();
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// `api_json`: the bytes are one JSON body for `POST /api`, in valid HTTP framing.
///
/// Before it, a session is made (`init_session` on another connection); `$SID` and `$CID`
/// in the body are replaced by its session and consumer ids, so the corpus reaches the
/// session actions. Host jobs (`hostcmd …`) answer one item and finish. After the request,
/// ten 31-second steps let parked requests and exec timeouts answer. There must be exactly
/// one response, and it must be HTTP with a JSON body.
pub fn api_json(data: &[u8]) {
    let mut h = Harness::new(Config::default(), true);
    h.auto_jobs = true;
    let s = h.accept(Listener::Http).expect("accepted");
    h.send(s, &api_request(br#"{"action":"init_session"}"#));
    let sid = json_strings(&h.received[&s], "sessionId")
        .pop()
        .expect("init_session answers a sessionId");
    let cid = json_strings(&h.received[&s], "consumerId")
        .pop()
        .expect("init_session answers a consumerId");
    let mut body = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"$SID") {
            body.extend_from_slice(sid.as_bytes());
            i += 4;
        } else if data[i..].starts_with(b"$CID") {
            body.extend_from_slice(cid.as_bytes());
            i += 4;
        } else {
            body.push(data[i]);
            i += 1;
        }
    }
    let c = h.accept(Listener::Http).expect("accepted");
    h.send(c, &api_request(&body));
    for _ in 0..10 {
        h.advance(31_000);
    }
    let got = h.received[&c].clone();
    h.finish();
    let n = check_http_responses(&got);
    assert_eq!(
        n,
        1,
        "one request, {n} responses: {:?}",
        String::from_utf8_lossy(&got)
    );
}

// ----- gossip_datagram -------------------------------------------------------------------

/// The address of fake peer `i` (0..8) in a pool.
pub fn peer_addr(pool: Pool, i: u8) -> SocketAddr {
    let port = match pool {
        Pool::Lan => 9301,
        Pool::Wan => 9302,
    } + 2 * u16::from(i % 8);
    SocketAddr::from(([127, 0, 0, 2], port))
}

/// `gossip_datagram`: records of `[ctl][len: u16 LE][len bytes]` into a server agent (both
/// pools). `ctl` bit 0 picks the pool (WAN when set), bits 1..4 the sender (one of 8 fake
/// peers), bits 4..8 how many 100 ms steps pass after it (timers fire). A truncated last
/// record delivers what is there. After the records, ten more timer rounds.
///
/// Every input runs twice: into a plaintext agent, and into an agent with gossip
/// encryption, each datagram sealed with its key first, so the codec behind the tag is
/// fuzzed through the decryption path as well.
pub fn gossip_datagram(data: &[u8]) {
    gossip_datagram_into(server_config(), None, data);
    let ring = gossip_keyring();
    gossip_datagram_into(encrypted_server_config(&ring), Some(&ring), data);
}

/// The key of the encrypted agent of `gossip_datagram`.
pub fn gossip_keyring() -> Keyring {
    let key = GossipKey::new(&[0x5a; 32]).expect("a 32-byte key");
    Keyring::new(key, [])
}

/// [`server_config`] with gossip sealed under `ring`.
pub fn encrypted_server_config(ring: &Keyring) -> Config {
    Config {
        cluster: Some(ClusterConfig {
            keyring: ring.clone(),
            ..ClusterConfig::default()
        }),
        ..server_config()
    }
}

fn gossip_datagram_into(config: Config, seal: Option<&Keyring>, data: &[u8]) {
    let mut h = Harness::new(config, true);
    let mut rest = data;
    let mut nonce = 0u64;
    while let Some((&ctl, r)) = rest.split_first() {
        let (len, r) = match r {
            [a, b, r @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), r),
            _ => (r.len(), &r[r.len()..]),
        };
        let len = len.min(r.len());
        let (dgram, r) = r.split_at(len);
        rest = r;
        let pool = if ctl & 1 == 0 { Pool::Lan } else { Pool::Wan };
        let from = peer_addr(pool, (ctl >> 1) & 7);
        match seal {
            Some(ring) => {
                nonce += 1;
                let mut n = [0u8; 12];
                n[..8].copy_from_slice(&nonce.to_le_bytes());
                let sealed = ring.seal(n, dgram).expect("the ring has a key");
                h.datagram(pool, from, &sealed);
            }
            None => h.datagram(pool, from, dgram),
        }
        let steps = u64::from(ctl >> 4);
        if steps > 0 {
            h.advance(100 * steps);
        }
    }
    h.run_timers(10);
    if seal.is_some() {
        // Every datagram was sealed with the agent's key: each must open.
        assert_eq!(h.agent.cluster().stats().decrypt_failures, 0);
    }
    h.finish();
}

/// Encodes gossip records in the `gossip_datagram` format.
pub fn gossip_record(out: &mut Vec<u8>, pool: Pool, sender: u8, steps: u8, data: &[u8]) {
    out.push(u8::from(pool == Pool::Wan) | ((sender & 7) << 1) | (steps.min(15) << 4));
    out.extend_from_slice(&(data.len().min(0xffff) as u16).to_le_bytes());
    out.extend_from_slice(&data[..data.len().min(0xffff)]);
}

// ----- agent_ops -------------------------------------------------------------------------

/// One op of `agent_ops`. Connection, session and job operands index the live ones
/// (modulo their count); ops on nothing are skipped.
#[derive(Arbitrary, Clone, Debug)]
pub enum Op {
    /// A client connects.
    Accept {
        /// On the RPC listener (else HTTP).
        rpc: bool,
    },
    /// Raw bytes on a connection.
    Bytes {
        /// Which connection.
        conn: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A well-formed API request.
    Api {
        /// Which connection.
        conn: u8,
        /// The request.
        req: ApiOp,
    },
    /// A well-formed RPC request.
    Rpc {
        /// Which connection.
        conn: u8,
        /// The request.
        req: RpcOp,
    },
    /// The client half-closes.
    Eof {
        /// Which connection.
        conn: u8,
    },
    /// The socket is gone (for a closed connection: the runtime releases it).
    Reset {
        /// Which connection.
        conn: u8,
    },
    /// A slow client reads some of its pending output.
    Read {
        /// Which connection.
        conn: u8,
        /// How many bytes.
        n: u16,
    },
    /// The client stops (or resumes) reading as output arrives.
    Slow {
        /// Which connection.
        conn: u8,
        /// Stop reading.
        slow: bool,
    },
    /// Time passes.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// The next deadline arrives.
    Timeout,
    /// A gossip datagram.
    Datagram {
        /// WAN pool (else LAN).
        wan: bool,
        /// The fake peer sending it.
        from: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A host job produces an item.
    JobOutput {
        /// Which started job.
        job: u8,
        /// What it produces.
        item: Item,
    },
    /// A host job ends.
    JobFinished {
        /// Which started job.
        job: u8,
        /// Its status.
        code: i8,
    },
    /// The configuration is reloaded with small limits.
    Reload {
        /// The limits.
        limits: SmallLimits,
        /// Require `rpc_auth`.
        auth: bool,
        /// A user tag (gossiped).
        tag: Option<u8>,
    },
    /// The runtime reports a peer's port unreachable (a join to it fails at once).
    Unreachable {
        /// WAN pool (else LAN).
        wan: bool,
        /// The fake peer.
        peer: u8,
    },
}

/// A host job's item.
#[derive(Arbitrary, Clone, Debug)]
pub enum Item {
    /// `{"type":"text","text":…}`.
    Text(String),
    /// An object without `type`.
    NoType(u32),
    /// Not an object.
    Number(i64),
    /// A big item.
    Big(u8),
}

/// An API request.
#[derive(Arbitrary, Clone, Debug)]
pub enum ApiOp {
    /// `init_session`.
    Init,
    /// `join_session`.
    Join(u8),
    /// `pull_results` (with a consumer id when one is known).
    Pull(u8, u8),
    /// `exec` of a command (one-time without a session when the flag is set).
    Exec(u8, Cmd, bool, Option<u16>),
    /// `async_exec`.
    AsyncExec(u8, Cmd),
    /// `interrupt_job`.
    Interrupt(u8),
    /// `close_session`.
    Close(u8),
    /// `session_info`.
    Info(u8),
    /// Any JSON text as the body.
    Raw(String),
}

/// A command line.
#[derive(Arbitrary, Clone, Debug)]
pub enum Cmd {
    /// The host command with an argument.
    Host(u8),
    /// A builtin.
    Builtin(u8),
    /// Any text.
    Text(String),
}

impl Cmd {
    fn line(&self) -> String {
        const BUILTINS: [&str; 10] = [
            "echo hi",
            "help",
            "jobs",
            "members",
            "stats",
            "version",
            "session",
            "kill 1",
            "monitor",
            "echo a | grep a",
        ];
        match self {
            Cmd::Host(a) => format!("{HOST_COMMAND} {a}"),
            Cmd::Builtin(i) => BUILTINS[usize::from(*i) % BUILTINS.len()].to_string(),
            Cmd::Text(t) => t.clone(),
        }
    }
}

/// An RPC request.
#[derive(Arbitrary, Clone, Debug)]
pub enum RpcOp {
    /// `handshake` with a version.
    Handshake(u8),
    /// `auth` with the right key or not.
    Auth(bool),
    /// A command without a body: members, members-lan, members-wan, stats, reload, leave.
    NoBody(u8),
    /// `monitor` at a level.
    Monitor(u8),
    /// `stop` of a Seq.
    Stop(u8),
    /// `stream` of a filter.
    Stream(u8),
    /// `event` with a name, payload and coalesce flag.
    Event(String, Vec<u8>, bool),
    /// `tags` setting one tag.
    Tags(u8, u8),
    /// `join` of addresses of fake peers (or names), WAN or not.
    Join(Vec<u8>, bool),
    /// `force-leave` of a node.
    ForceLeave(String),
    /// `members-filtered`.
    Filtered(String),
}

/// Small limits for `Reload`: every field at least 1 (limits are reached, not disabled),
/// unless bit 7 of `max_connections` is set, which lets every field be 0 (a configuration
/// file may say 0; each limit must still answer).
#[derive(Arbitrary, Clone, Debug)]
#[allow(missing_docs)]
pub struct SmallLimits {
    pub max_connections: u8,
    pub max_head: u8,
    pub max_headers: u8,
    pub max_body: u16,
    pub max_tx: u16,
    pub consumer_queue: u8,
    pub history: u8,
    pub max_sessions: u8,
    pub max_consumers: u8,
    pub max_jobs: u8,
    pub exec_results: u8,
    pub log_ring: u8,
    pub max_command: u8,
    pub rpc_max_frame: u16,
    pub rpc_max_str: u8,
    pub rpc_max_container: u8,
    pub rpc_max_values: u8,
}

impl SmallLimits {
    /// As limits.
    pub fn limits(&self) -> Limits {
        let zeros = self.max_connections & 0x80 != 0;
        let at_least = |v: usize, min: usize| if zeros { v } else { v.max(min) };
        Limits {
            max_connections: at_least(usize::from(self.max_connections % 8), 1),
            // From bits `max_connections` leaves unused, so committed inputs keep decoding.
            overflow_connections: usize::from(self.max_connections / 8 % 4),
            // (bit 7: see `zeros` above)
            max_head: at_least(usize::from(self.max_head) * 8, 16),
            max_headers: at_least(usize::from(self.max_headers % 16), 1),
            max_body: usize::from(self.max_body % 4096),
            max_tx: at_least(usize::from(self.max_tx % 8192), 1),
            consumer_queue: at_least(usize::from(self.consumer_queue % 16), 1),
            history: usize::from(self.history % 8),
            max_sessions: at_least(usize::from(self.max_sessions % 8), 1),
            max_consumers: at_least(usize::from(self.max_consumers % 4), 1),
            max_jobs: at_least(usize::from(self.max_jobs % 4), 1),
            // From bits `max_jobs` leaves unused, as `overflow_connections` above.
            max_host_jobs: at_least(usize::from(self.max_jobs / 4 % 8), 1),
            exec_results: at_least(usize::from(self.exec_results % 8), 1),
            log_ring: at_least(usize::from(self.log_ring % 32), 1),
            max_command: at_least(usize::from(self.max_command), 1),
            rpc_max_frame: at_least(usize::from(self.rpc_max_frame % 2048), 16),
            rpc_max_str: at_least(usize::from(self.rpc_max_str), 1),
            rpc_max_container: at_least(usize::from(self.rpc_max_container % 32), 1),
            rpc_max_values: at_least(usize::from(self.rpc_max_values), 4),
            event_handler_queue: 2,
            event_handler_output: 64,
        }
    }
}

fn api_body(op: &ApiOp, sessions: &[String], consumers: &[String]) -> Vec<u8> {
    let pick = |v: &[String], i: u8| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v[usize::from(i) % v.len()].clone()
        }
    };
    let s = |i: u8| pick(sessions, i);
    let j = match op {
        ApiOp::Init => serde_json::json!({"action": "init_session"}),
        ApiOp::Join(i) => serde_json::json!({"action": "join_session", "sessionId": s(*i)}),
        ApiOp::Pull(i, k) => serde_json::json!({
            "action": "pull_results", "sessionId": s(*i), "consumerId": pick(consumers, *k)
        }),
        ApiOp::Exec(i, cmd, onetime, timeout) => {
            let mut j = serde_json::json!({"action": "exec", "command": cmd.line()});
            if !onetime {
                j["sessionId"] = s(*i).into();
            }
            if let Some(t) = timeout {
                j["execTimeout"] = (*t).into();
            }
            j
        }
        ApiOp::AsyncExec(i, cmd) => serde_json::json!({
            "action": "async_exec", "sessionId": s(*i), "command": cmd.line()
        }),
        ApiOp::Interrupt(i) => serde_json::json!({"action": "interrupt_job", "sessionId": s(*i)}),
        ApiOp::Close(i) => serde_json::json!({"action": "close_session", "sessionId": s(*i)}),
        ApiOp::Info(i) => serde_json::json!({"action": "session_info", "sessionId": s(*i)}),
        ApiOp::Raw(t) => return t.clone().into_bytes(),
    };
    serde_json::to_vec(&j).expect("json")
}

fn rpc_request(op: &RpcOp, seq: u64) -> Vec<u8> {
    use rmp::encode as e;
    let mut o = Vec::new();
    let w = |o: &mut Vec<u8>, s: &str| e::write_str(o, s).expect("vec write");
    match op {
        RpcOp::Handshake(v) => {
            rpc_header(&mut o, "handshake", seq);
            e::write_map_len(&mut o, 1).expect("vec write");
            w(&mut o, "Version");
            e::write_uint(&mut o, u64::from(*v % 3)).expect("vec write");
        }
        RpcOp::Auth(good) => {
            return rpc_auth_request(seq, if *good { RPC_KEY } else { "nope" });
        }
        RpcOp::NoBody(i) => {
            const C: [&str; 6] = [
                "members",
                "members-lan",
                "members-wan",
                "stats",
                "reload",
                "leave",
            ];
            rpc_header(&mut o, C[usize::from(*i) % C.len()], seq);
        }
        RpcOp::Monitor(l) => {
            const L: [&str; 6] = ["trace", "debug", "INFO", "warn", "err", "bogus"];
            rpc_header(&mut o, "monitor", seq);
            e::write_map_len(&mut o, 1).expect("vec write");
            w(&mut o, "LogLevel");
            w(&mut o, L[usize::from(*l) % L.len()]);
        }
        RpcOp::Stop(s) => {
            rpc_header(&mut o, "stop", seq);
            e::write_map_len(&mut o, 1).expect("vec write");
            w(&mut o, "Stop");
            e::write_uint(&mut o, u64::from(*s % 8)).expect("vec write");
        }
        RpcOp::Stream(t) => {
            const T: [&str; 5] = [
                "*",
                "user",
                "user:deploy,member-update",
                "member-join",
                "bogus",
            ];
            rpc_header(&mut o, "stream", seq);
            e::write_map_len(&mut o, 1).expect("vec write");
            w(&mut o, "Type");
            w(&mut o, T[usize::from(*t) % T.len()]);
        }
        RpcOp::Event(name, payload, coalesce) => {
            rpc_header(&mut o, "event", seq);
            e::write_map_len(&mut o, 3).expect("vec write");
            w(&mut o, "Name");
            w(&mut o, name);
            w(&mut o, "Payload");
            e::write_bin(&mut o, payload).expect("vec write");
            w(&mut o, "Coalesce");
            e::write_bool(&mut o, *coalesce).expect("vec write");
        }
        RpcOp::Tags(k, v) => {
            rpc_header(&mut o, "tags", seq);
            e::write_map_len(&mut o, 2).expect("vec write");
            w(&mut o, "Tags");
            e::write_map_len(&mut o, 1).expect("vec write");
            w(&mut o, &format!("k{}", k % 4));
            w(&mut o, &format!("v{v}"));
            w(&mut o, "DeleteTags");
            e::write_array_len(&mut o, 1).expect("vec write");
            w(&mut o, &format!("k{}", v % 4));
        }
        RpcOp::Join(peers, wan) => {
            rpc_header(&mut o, "join", seq);
            e::write_map_len(&mut o, 2).expect("vec write");
            w(&mut o, "Existing");
            let peers = &peers[..peers.len().min(4)];
            e::write_array_len(&mut o, peers.len() as u32).expect("vec write");
            for p in peers {
                let pool = if *wan { Pool::Wan } else { Pool::Lan };
                let name = match p % 4 {
                    0 => "peer.invalid".to_string(),
                    1 => peer_addr(pool, *p).ip().to_string(),
                    _ => peer_addr(pool, *p).to_string(),
                };
                w(&mut o, &name);
            }
            w(&mut o, "Replay");
            e::write_bool(&mut o, *wan).expect("vec write");
        }
        RpcOp::ForceLeave(node) => {
            rpc_header(&mut o, "force-leave", seq);
            e::write_map_len(&mut o, 1).expect("vec write");
            w(&mut o, "Node");
            w(&mut o, node);
        }
        RpcOp::Filtered(name) => {
            rpc_header(&mut o, "members-filtered", seq);
            e::write_map_len(&mut o, 1).expect("vec write");
            w(&mut o, "Name");
            w(&mut o, name);
        }
    }
    o
}

/// Runs ops on a fresh agent and returns its trace.
pub fn run_ops(ops: &[Op]) -> String {
    let mut cfg = server_config();
    cfg.limits = small_limits();
    let mut h = Harness::new(cfg, false);
    h.tracing = true;
    let mut seq = 0u64;
    let mut all: Vec<ConnId> = Vec::new();
    for op in ops {
        let conn = |i: u8| -> Option<ConnId> {
            (!all.is_empty()).then(|| all[usize::from(i) % all.len()])
        };
        match op {
            Op::Accept { rpc } => {
                let l = if *rpc { Listener::Rpc } else { Listener::Http };
                if let Some(c) = h.accept(l) {
                    all.push(c);
                }
            }
            Op::Bytes { conn: i, data } => {
                if let Some(c) = conn(*i) {
                    h.send(c, data);
                }
            }
            Op::Api { conn: i, req } => {
                if let Some(c) = conn(*i) {
                    let mut seen = Vec::new();
                    for r in h.received.values() {
                        seen.extend_from_slice(r);
                    }
                    let sessions = json_strings(&seen, "sessionId");
                    let consumers = json_strings(&seen, "consumerId");
                    let body = api_body(req, &sessions, &consumers);
                    h.send(c, &api_request(&body));
                }
            }
            Op::Rpc { conn: i, req } => {
                if let Some(c) = conn(*i) {
                    seq += 1;
                    h.send(c, &rpc_request(req, seq));
                }
            }
            Op::Eof { conn: i } => {
                if let Some(c) = conn(*i) {
                    h.eof(c);
                }
            }
            Op::Reset { conn: i } => {
                if let Some(c) = conn(*i) {
                    h.reset(c);
                }
            }
            Op::Read { conn: i, n } => {
                if let Some(c) = conn(*i) {
                    h.read(c, usize::from(*n));
                    h.drain();
                }
            }
            Op::Slow { conn: i, slow } => {
                if let Some(c) = conn(*i) {
                    if *slow {
                        h.slow.insert(c);
                    } else {
                        h.slow.remove(&c);
                        h.read(c, usize::MAX);
                        h.drain();
                    }
                }
            }
            Op::Advance { ms } => h.advance(u64::from(*ms)),
            Op::Timeout => h.run_timers(1),
            Op::Datagram { wan, from, data } => {
                let pool = if *wan { Pool::Wan } else { Pool::Lan };
                h.datagram(pool, peer_addr(pool, *from), data);
            }
            Op::Unreachable { wan, peer } => {
                let pool = if *wan { Pool::Wan } else { Pool::Lan };
                h.unreachable(pool, peer_addr(pool, *peer));
            }
            Op::JobOutput { job, item } => {
                if !h.jobs.is_empty() {
                    let j = h.jobs[usize::from(*job) % h.jobs.len()];
                    let item = match item {
                        Item::Text(t) => serde_json::json!({"type": "text", "text": t}),
                        Item::NoType(n) => serde_json::json!({"n": n}),
                        Item::Number(n) => serde_json::json!(n),
                        Item::Big(n) => {
                            serde_json::json!({"type": "text", "text": "x".repeat(usize::from(*n))})
                        }
                    };
                    let r = h.agent.job_output(j, &item, h.now);
                    h.trace(format_args!("job_output {j:?} {r:?}"));
                    h.drain();
                }
            }
            Op::JobFinished { job, code } => {
                if !h.jobs.is_empty() {
                    let j = h.jobs[usize::from(*job) % h.jobs.len()];
                    h.agent
                        .job_finished(j, i32::from(*code), Some("finished"), h.now);
                    h.drain();
                }
            }
            Op::Reload { limits, auth, tag } => {
                let mut cfg = server_config();
                cfg.limits = limits.limits();
                if *auth {
                    cfg.rpc_auth = Some(RPC_KEY.into());
                }
                if let Some(t) = tag {
                    cfg.tags.insert(format!("t{}", t % 4), format!("v{t}"));
                    // Event handler definitions from the tag's bits, valid and not (a bad
                    // set is logged and the old one kept), so member and user events and
                    // queries reach the handler queue; its runs are answered in `drain`.
                    const FILTERS: [&str; 8] = [
                        "",
                        "*=",
                        "member-join,member-leave,member-failed=",
                        "user=",
                        "user:t1=",
                        "query=",
                        "member-jion=",
                        "=,",
                    ];
                    let f = FILTERS[usize::from(t / 4 % 8)];
                    cfg.event_handlers = vec![format!("{f}h{t}"), format!("query:t{t}=q")];
                    cfg.timing.event_handler_timeout_ms = u64::from(t % 3) * 500;
                    // Body deadlines the Advance ops cross: off, or 0.3 s to 0.9 s.
                    cfg.timing.body_timeout_ms = u64::from(t / 32 % 4) * 300;
                }
                // What the runtimes check before applying a file: defined for any values.
                let _ = cfg.validate();
                h.apply_config(cfg);
            }
        }
    }
    h.run_timers(4);
    h.finish();
    std::mem::take(&mut h.trace)
}

/// `agent_ops`: an `arbitrary` sequence of at most 64 ops (see [`Op`]) on a server agent
/// with small limits, run twice; both runs must give the same trace.
pub fn agent_ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while ops.len() < 64 {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
        if u.is_empty() {
            break;
        }
    }
    let a = run_ops(&ops);
    let b = run_ops(&ops);
    assert!(a == b, "two runs of the same ops differ");
}

// ----- seeds -----------------------------------------------------------------------------

/// Real gossip: a second server agent (at fake peer 0's addresses) joins the agent under
/// test on LAN and WAN; the datagrams it sends to it, as `gossip_datagram` inputs: the whole
/// exchange, then each datagram alone.
pub fn gossip_seeds() -> Vec<Vec<u8>> {
    let a_cfg = server_config();
    let (a_lan, a_wan) = (a_cfg.lan_addr, a_cfg.wan_addr);
    let mut a = Agent::new(a_cfg, 42, Instant::ZERO);
    let b_cfg = Config {
        node_name: "peer0".into(),
        lan_addr: peer_addr(Pool::Lan, 0),
        wan_addr: peer_addr(Pool::Wan, 0),
        ..server_config()
    };
    let (b_lan, b_wan) = (b_cfg.lan_addr, b_cfg.wan_addr);
    let mut b = Agent::new(b_cfg, 7, Instant::ZERO);
    let mut now = Instant::from_millis(1);
    b.join(&[&a_lan.to_string()], false, now);
    b.join(&[&a_wan.to_string()], true, now);
    let mut to_a: Vec<(Pool, Vec<u8>)> = Vec::new();
    for _ in 0..40 {
        while b.poll_output().is_some() {}
        while a.poll_output().is_some() {}
        let mut progress = false;
        while let Some((pool, to, d)) = b.poll_datagram() {
            if to == a_lan || to == a_wan {
                to_a.push((pool, d.clone()));
                a.handle_datagram(pool, if pool == Pool::Lan { b_lan } else { b_wan }, &d, now);
                progress = true;
            }
        }
        while let Some((pool, to, d)) = a.poll_datagram() {
            if to == b_lan || to == b_wan {
                b.handle_datagram(pool, if pool == Pool::Lan { a_lan } else { a_wan }, &d, now);
                progress = true;
            }
        }
        if !progress {
            now = now + Duration::from_millis(200);
            a.handle_timeout(now);
            b.handle_timeout(now);
        }
    }
    let mut seeds = Vec::new();
    let mut all = Vec::new();
    for (pool, d) in &to_a {
        gossip_record(&mut all, *pool, 0, 1, d);
        let mut one = Vec::new();
        gossip_record(&mut one, *pool, 0, 0, d);
        if !seeds.contains(&one) {
            seeds.push(one);
        }
    }
    seeds.insert(0, all);
    seeds
}

/// `key_query`: Serf's keyring queries with hostile bodies, both ways (`cluster/keys.rs`).
///
/// The input is records `[ctl][len][body: len bytes]`. `ctl & 3` picks the operation
/// (install, use, remove, list); each record's body goes out as that internal query's payload,
/// so this node (the only member) applies it as a member applies what the gossip brings,
/// whatever the bytes; bit 2 of the first record's `ctl` starts the node encrypted. Each
/// record's body is also folded into a [`KeyResponse`] as a member's answer, and its text
/// is tried as a base64 key at the origin. Checks: no panic; the node's own answers always
/// decode (no `Invalid`/`Failed to decode` message for it); the keyring never holds more
/// than [`MAX_KEYS`] keys and stays enabled once enabled (the primary cannot be removed).
pub fn key_query(data: &[u8]) {
    use tandem_core::cluster::{
        Cluster, ClusterEvent, KeyOp, KeyResponse, MAX_KEYS, QueryParams, go_base64_decode,
    };
    let ops = [KeyOp::Install, KeyOp::Use, KeyOp::Remove, KeyOp::List];
    let encrypted = data.first().is_some_and(|c| c & 4 != 0);
    let mut cfg = ClusterConfig {
        node_name: "fuzz".into(),
        lan_addr: peer_addr(Pool::Lan, 0),
        ..ClusterConfig::default()
    };
    if encrypted {
        cfg.keyring = gossip_keyring();
    }
    let mut now = Instant::from_millis(1);
    let mut cluster = Cluster::new(cfg, 3, now);
    let mut rest = data;
    while let Some((&ctl, r)) = rest.split_first() {
        let (len, r) = match r.split_first() {
            Some((&n, r)) => (usize::from(n), r),
            None => (0, r),
        };
        let (body, r) = r.split_at(len.min(r.len()));
        rest = r;
        let op = ops[usize::from(ctl & 3)];
        now = now + Duration::from_millis(10);
        if let Ok(id) = cluster.query(op.query_name(), body, &QueryParams::default(), now) {
            let mut resp = KeyResponse {
                num_nodes: 1,
                ..KeyResponse::default()
            };
            while let Some(e) = cluster.poll_event() {
                if let ClusterEvent::QueryResponse {
                    query,
                    from,
                    payload,
                } = e
                    && query == id
                {
                    resp.record(&from, &payload);
                }
            }
            assert_eq!(resp.num_resp, 1, "this node answers its own key query");
            for text in resp.messages.values() {
                assert!(
                    !text.starts_with("Invalid") && !text.starts_with("Failed to decode"),
                    "its own answer did not decode: {text}"
                );
            }
        }
        while cluster.poll_datagram().is_some() {}
        let ring = &cluster.config().keyring;
        assert!(ring.keys().len() <= MAX_KEYS);
        assert_eq!(
            ring.is_enabled(),
            encrypted,
            "keys come and go, encryption stays"
        );
        let mut folded = KeyResponse::default();
        folded.record("peer", body);
        assert_eq!(folded.num_resp, 1);
        let text = String::from_utf8_lossy(body);
        if let Ok(raw) = go_base64_decode(&text) {
            assert!(raw.len() <= text.len());
        }
        let _ = cluster.key_query(op, &text, now);
        while cluster.poll_event().is_some() {}
        while cluster.poll_datagram().is_some() {}
    }
}

/// `snapshot_file`: byte 0 is the control byte (bit 0: `rejoin_after_leave`; bits 1–7: the
/// chunk size the file is fed in, 0 meaning all at once); the rest is a `-snapshot` file.
/// It goes through [`tandem_core::SnapshotReader`] in those chunks and whole, then into an
/// agent keeping a snapshot ([`Agent::restore_snapshot`]). Checks: no panic; chunking does
/// not change what is read; at most 4 members are kept (the bound given) and clocks stay
/// within `i64::MAX`; at most 8 bad lines are kept for the log; and whatever the agent
/// writes back (a compaction) reads again without a bad line and with the same members and
/// clocks.
pub fn snapshot_file(data: &[u8]) {
    use tandem_core::{FileWrite, SnapshotReader, StateFile, StateFiles};
    const MAX_MEMBERS: usize = 4;
    let Some((&ctl, file)) = data.split_first() else {
        return;
    };
    let rejoin = ctl & 1 != 0;
    let chunk = usize::from(ctl >> 1);
    let whole = SnapshotReader::read_all(file, rejoin, MAX_MEMBERS);
    if chunk > 0 {
        let mut r = SnapshotReader::new(rejoin, MAX_MEMBERS);
        for c in file.chunks(chunk) {
            r.feed(c);
        }
        assert_eq!(r.finish(), whole, "chunks of {chunk} read otherwise");
    }
    assert!(whole.alive.len() <= MAX_MEMBERS);
    let max = i64::MAX as u64;
    assert!(whole.clock <= max && whole.event_clock <= max && whole.query_clock <= max);
    assert!(whole.bad_examples.len() <= 8);
    assert!(whole.bad_examples.len() as u64 <= whole.bad_lines);
    assert_eq!(whole.bytes, file.len() as u64);
    let config = Config {
        node_name: "fuzz".into(),
        rejoin_after_leave: rejoin,
        state_files: StateFiles {
            snapshot: true,
            ..StateFiles::default()
        },
        ..Config::default()
    };
    let now = Instant::from_millis(1);
    let mut agent = Agent::new(config, 5, now);
    agent.restore_snapshot(whole.clone(), now);
    let mut written: Option<Vec<u8>> = None;
    while let Some(out) = agent.poll_output() {
        if let Output::Effect(Effect::Persist { file, write, bytes }) = out {
            assert_eq!(file, StateFile::Snapshot);
            match (write, &mut written) {
                (FileWrite::Replace, w) => *w = Some(bytes),
                (FileWrite::Append, Some(w)) => w.extend_from_slice(&bytes),
                (FileWrite::Append, None) => {}
            }
        }
    }
    if let Some(bytes) = written {
        let again = SnapshotReader::read_all(&bytes, rejoin, MAX_MEMBERS);
        assert_eq!(again.bad_lines, 0, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(again.alive, whole.alive);
        assert_eq!(
            (again.clock, again.event_clock, again.query_clock),
            (whole.clock, whole.event_clock, whole.query_clock)
        );
    }
}
