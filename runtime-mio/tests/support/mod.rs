//! End-to-end harness: runs the real `tandem-mio` binary on ephemeral loopback ports, reads
//! its stderr on a thread, and speaks HTTP and the agent RPC to it over real sockets.
//! (Adapted from `runtime-smol`'s harness, which is bound to the `tandem` binary.)
//!
//! Every agent is killed and reaped by [`RunningAgent`]'s `Drop`, so a failing (panicking)
//! test leaves no process behind. Waits poll with a deadline; none is a timing assertion.

#![allow(dead_code)] // each test file uses its own part of the harness

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use tandem_tests::http::{Response, post_api, take_responses};

/// The `tandem-mio` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_tandem-mio");

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Lines the agent wrote to stderr, shared with the reader thread.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A `tandem-mio agent` child process.
pub struct RunningAgent {
    child: Child,
    /// The bound HTTP port, read from the "listening on" line.
    pub port: u16,
    /// The bound agent RPC port.
    pub rpc_port: u16,
    /// The bound LAN gossip port (UDP).
    pub lan_port: u16,
    log: Arc<Log>,
}

impl RunningAgent {
    /// Starts `tandem-mio agent -http-addr 127.0.0.1:0 -rpc-addr 127.0.0.1:0 -lan-port 0
    /// <extra>` and waits until it listens.
    pub fn start(extra: &[&str]) -> RunningAgent {
        Self::start_with(extra, |_| {})
    }

    /// [`RunningAgent::start`], with a last say on the command (limits, environment).
    pub fn start_with(extra: &[&str], adjust: impl FnOnce(&mut Command)) -> RunningAgent {
        let mut command = Command::new(BIN);
        command
            .args([
                "agent",
                "-http-addr",
                "127.0.0.1:0",
                "-rpc-addr",
                "127.0.0.1:0",
                // Tests run in parallel: no fixed gossip port either.
                "-lan-port",
                "0",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut command);
        let mut child = command.spawn().expect("spawn tandem-mio");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Log::default());
        let reader_log = Arc::clone(&log);
        // The pipe must be drained all the time, or the agent blocks on a full stderr.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                reader_log.lines.lock().unwrap().push(line);
                reader_log.grew.notify_all();
            }
        });
        let mut agent = RunningAgent {
            child,
            port: 0,
            rpc_port: 0,
            lan_port: 0,
            log,
        };
        // The HTTP line comes last, so both ports are known once it is seen.
        agent.port = agent.port_in("agent: HTTP API listening on ");
        agent.rpc_port = agent.port_in("agent: RPC listening on ");
        agent.lan_port = agent.port_in("agent: gossip LAN listening on ");
        agent
    }

    fn port_in(&self, needle: &str) -> u16 {
        let line = self.wait_log(needle);
        line.rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"))
    }

    /// The bound WAN gossip port (UDP) of a `-server` agent.
    pub fn wan_port(&self) -> u16 {
        // Printed before the HTTP line, so it is in once `start` returns.
        self.port_in("agent: gossip WAN listening on ")
    }

    /// `kill -9`: the agent dies without a word to anyone; reaped here.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let status = self.wait_exit(DEADLINE);
        assert_eq!(status.code(), None, "killed by a signal: {status}");
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// Waits until a stderr line contains `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_after(0, needle)
    }

    /// Waits until a stderr line at index `from` or later contains `needle`.
    pub fn wait_log_after(&self, from: usize, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().skip(from).find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no stderr line containing {needle:?} in time; stderr so far:\n{}",
                lines.join("\n")
            );
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold `child`).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits for the agent to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent still running after {within:?}; stderr:\n{}",
                self.log_lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new connection to the HTTP API.
    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// A new connection to the agent RPC.
    pub fn connect_rpc(&self) -> Client {
        Client::connect(self.rpc_port)
    }

    /// `POST /api` with `body` on a fresh connection; the parsed JSON answer.
    pub fn api(&self, body: &str) -> serde_json::Value {
        let mut c = self.connect();
        c.send(&post_api(body));
        let r = c.response();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
        r.json()
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client connection.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads until the peer closes; returns everything read.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.buf);
        self.stream.read_to_end(&mut all).expect("read to EOF");
        all
    }

    /// Writes bytes in one `write_all`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads until one whole response is in; returns it (later bytes stay buffered).
    pub fn response(&mut self) -> Response {
        loop {
            let mut got = take_responses(&mut self.buf);
            if !got.is_empty() {
                let first = got.remove(0);
                // Put back what came after the first response, re-serialized as sent.
                let mut rest: Vec<u8> = got.into_iter().flat_map(|r| r.raw).collect();
                rest.extend_from_slice(&self.buf);
                self.buf = rest;
                return first;
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).expect("read a response");
            assert!(
                n > 0,
                "connection closed before a whole response: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A config file in a fresh temporary directory, removed on drop.
pub struct ConfigFile(PathBuf);

impl ConfigFile {
    pub fn new(json: &str) -> ConfigFile {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tandem-mio-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.json");
        std::fs::write(&path, json).unwrap();
        ConfigFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    pub fn write(&self, json: &str) {
        std::fs::write(&self.0, json).unwrap();
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

// ----- the agent RPC ---------------------------------------------------------------------

/// An RPC request: the header `{"Command": command, "Seq": seq}`, then the body if any.
pub fn rpc_request(command: &str, seq: u64, body: Option<rmpv::Value>) -> Vec<u8> {
    let header = rmpv::Value::Map(vec![
        ("Command".into(), command.into()),
        ("Seq".into(), seq.into()),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &header).unwrap();
    if let Some(body) = body {
        rmpv::encode::write_value(&mut out, &body).unwrap();
    }
    out
}

/// A msgpack map with string keys.
pub fn mp_map(entries: &[(&str, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Map(
        entries
            .iter()
            .map(|(k, v)| (rmpv::Value::from(*k), v.clone()))
            .collect(),
    )
}

/// The value under `key` of a msgpack map.
pub fn mp_get<'a>(map: &'a rmpv::Value, key: &str) -> &'a rmpv::Value {
    map.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key:?} in {map}"))
}

impl Client {
    /// Reads one whole msgpack value (a reply header, a body, a stream record).
    pub fn value(&mut self) -> rmpv::Value {
        loop {
            let mut cursor: &[u8] = &self.buf;
            if let Ok(v) = rmpv::decode::read_value(&mut cursor) {
                let used = self.buf.len() - cursor.len();
                self.buf.drain(..used);
                return v;
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).expect("read a msgpack value");
            assert!(
                n > 0,
                "connection closed before a whole value: {:?}",
                self.buf
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads a reply header; asserts its `Seq` and an empty `Error`.
    pub fn reply_ok(&mut self, seq: u64) {
        let header = self.value();
        assert_eq!(mp_get(&header, "Seq").as_u64(), Some(seq), "{header}");
        assert_eq!(mp_get(&header, "Error").as_str(), Some(""), "{header}");
    }
}
