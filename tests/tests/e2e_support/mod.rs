//! Shared by the `e2e_*` suites: every case there runs on both runtimes' binaries (`tandem`
//! and `tandem-mio`, started by [`Process`] on ephemeral loopback ports), so what the two
//! must do alike is written once. [`runtimes!`] makes the `smol` and `mio` tests of a case;
//! [`Agent`] is a [`Process`] with the blocking [`Client`] the cases speak HTTP and the
//! agent RPC through; [`ConfigFile`] is a configuration file a case writes and rewrites.
//!
//! Waits poll with a deadline ([`DEADLINE`]); none is a timing assertion. Every process is
//! killed and reaped on drop, so a failing case leaves none behind.
#![allow(dead_code)] // each suite uses its own part

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
pub use tandem_tests::driver::DEADLINE;
use tandem_tests::driver::Driver as _;
pub use tandem_tests::driver::process::{Out, Process, Runtime, binary, client_command};
pub use tandem_tests::http::{Response, post_api, take_responses};

use crate::rpc_support::{V, decode, handshake};

/// Generates, for each case `fn case(rt: Runtime)`, `mod case { smol, mio }`, so
/// `cargo test -p tandem-tests --test e2e_http mio` runs one runtime and `… sigterm` one
/// case on both.
#[allow(unused_macros)] // a suite uses one of the two
macro_rules! runtimes {
    ($($case:ident;)*) => {$(
        mod $case {
            use $crate::e2e_support::Runtime;

            #[test]
            fn smol() {
                super::$case(Runtime::Smol);
            }

            #[test]
            fn mio() {
                super::$case(Runtime::Mio);
            }
        }
    )*};
}

/// For a `harness = false` suite (`tandem_tests::tools::run_trials` as its runner): the
/// [`Test`](tandem_tests::tools::Test)s `case::smol` and `case::mio` of each case
/// `fn case(rt: Runtime)`, named as [`runtimes!`] names them.
#[allow(unused_macros)]
macro_rules! runtime_tests {
    ($($case:ident;)*) => {
        vec![$(
            tandem_tests::tools::Test::new(
                concat!(stringify!($case), "::smol"),
                || $case($crate::e2e_support::Runtime::Smol),
            ),
            tandem_tests::tools::Test::new(
                concat!(stringify!($case), "::mio"),
                || $case($crate::e2e_support::Runtime::Mio),
            ),
        )*]
    };
}

/// How long one CLI invocation may take.
pub const CLI_DEADLINE: Duration = Duration::from_secs(15);

/// A running agent of either runtime, started with command-line flags.
pub struct Agent(Process);

impl Agent {
    /// `<binary> agent -http-addr 127.0.0.1:0 -rpc-addr 127.0.0.1:0 -lan-port 0 -wan-port 0
    /// <flags>`, once it listens.
    pub fn start(rt: Runtime, flags: &[&str]) -> Agent {
        Agent(Process::start_flags(rt, flags))
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// The bound HTTP port.
    pub fn port(&self) -> u16 {
        self.http_addr().port()
    }

    /// The bound LAN gossip port (UDP).
    pub fn lan_port(&self) -> u16 {
        self.0.lan_addr().port()
    }

    /// The bound WAN gossip port (UDP) of a `-server` agent.
    pub fn wan_port(&self) -> u16 {
        self.wan_addr().port()
    }

    /// A new connection to the HTTP API.
    pub fn connect(&self) -> Client {
        Client::connect(self.http_addr())
    }

    /// A new connection to the agent RPC.
    pub fn connect_rpc(&self) -> Client {
        Client::connect(self.rpc_addr())
    }

    /// A new RPC connection, handshaken with Seq 0.
    pub fn rpc(&self) -> Client {
        let mut c = self.connect_rpc();
        c.send(&handshake(0));
        c.reply_ok(0);
        c
    }

    /// `POST /api` with `body` on a fresh connection; the parsed JSON answer.
    pub fn api(&self, body: &str) -> Value {
        let mut c = self.connect();
        c.send(&post_api(body));
        let r = c.response();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
        r.json()
    }

    /// Runs the `tandem` CLI (the smol binary: `tandem-mio` has none) against this agent's
    /// RPC: `tandem CMD -rpc-addr=… ARGS…`.
    pub fn cli(&self, cmd: &str, args: &[&str]) -> Out {
        let addr = format!("-rpc-addr={}", self.rpc_addr());
        let mut all = vec![cmd, addr.as_str()];
        all.extend_from_slice(args);
        tandem(&all)
    }
}

impl Deref for Agent {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.0
    }
}

impl DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.0
    }
}

/// Runs `rt`'s binary with `args` to its end: [`run_program`].
pub fn run(rt: Runtime, args: &[&str]) -> Out {
    run_program(&binary(rt), args)
}

/// Runs `program ARGS` to its end (killed and failed after [`CLI_DEADLINE`]), with no
/// client variables that could point it elsewhere.
pub fn run_program(program: &Path, args: &[&str]) -> Out {
    let mut child = client_command(program, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + CLI_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still running after {CLI_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs the `tandem` CLI.
pub fn tandem(args: &[&str]) -> Out {
    run(Runtime::Smol, args)
}

/// One blocking client connection (HTTP or the agent RPC).
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes bytes in one `write_all`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads until the peer closes; returns everything read and not yet taken.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.buf);
        self.stream.read_to_end(&mut all).expect("read to EOF");
        all
    }

    /// Reads more into the buffer; fails on the close, naming `what` was awaited.
    fn fill(&mut self, what: &str) {
        let mut chunk = [0u8; 8192];
        // A read on a socket with a timeout can end in EINTR after the process was stopped
        // and continued (signal(7)), with no handler installed: read again.
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => break r.expect("read"),
            }
        };
        assert!(
            n > 0,
            "connection closed before a whole {what}: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Reads until one whole HTTP response is in; returns it (later bytes stay buffered).
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
            self.fill("response");
        }
    }

    /// Reads one whole msgpack value (an RPC reply header, a body, a stream record).
    pub fn value(&mut self) -> V {
        loop {
            if let Some((v, used)) = decode(&self.buf) {
                self.buf.drain(..used);
                return v;
            }
            self.fill("msgpack value");
        }
    }

    /// Reads an RPC reply header; asserts its `Seq` and an empty `Error`.
    #[track_caller]
    pub fn reply_ok(&mut self, seq: u64) {
        let header = self.value();
        assert_eq!(header.get("Seq").u64(), seq, "{header:?}");
        assert_eq!(header.get("Error").str(), "", "{header:?}");
    }
}

/// A configuration file in a fresh temporary directory, removed on drop.
pub struct ConfigFile(PathBuf);

impl ConfigFile {
    pub fn new(json: &str) -> ConfigFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tandem-e2e-{}-{n}", std::process::id()));
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

/// A scratch directory of its own, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("tandem-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `results` of an API answer's body.
pub fn results(v: &Value) -> Vec<Value> {
    v["body"]["results"].as_array().cloned().unwrap_or_default()
}

/// The `type` of each item.
pub fn types(items: &[Value]) -> Vec<&str> {
    items.iter().filter_map(|i| i["type"].as_str()).collect()
}

/// A `pull_results` body.
pub fn pull_body(sid: &str, cid: &str) -> String {
    format!(r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid}"}}"#)
}

/// Whether `name` is an executable on `PATH`.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| Path::new(&dir).join(name).is_file())
    })
}

/// Fails with an install hint when a tool the test needs is missing.
pub fn require_tool(name: &str) {
    assert!(
        on_path(name),
        "`{name}` is required by this end-to-end test but is not on PATH: \
         install it (apt-get install -y {name})"
    );
}
