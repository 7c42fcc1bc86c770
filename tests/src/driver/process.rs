//! The process conformance drivers: the real `tandem` (smol) and `tandem-mio` binaries,
//! started as `agent` on ephemeral loopback ports with the case's configuration in a
//! temporary `-config-file`, spoken to over real sockets.
//!
//! The binaries belong to other packages, so cargo does not build them for this one: the
//! first driver in a test process runs `cargo build -p tandem-smol -p tandem-mio --bins`
//! once (quick when they are fresh, and it keeps a stale binary from being tested), into
//! the target directory and profile this test binary was built in. Every agent is killed
//! and reaped on drop, so a failing case leaves no process behind; its stderr is printed
//! then, to show what the agent saw.

use std::io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tandem_core::{Config, Limits, Listener, Timing};

use super::{Conn, DEADLINE, Driver, Received};

/// Which runtime's binary to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `tandem` from `runtime-smol`.
    Smol,
    /// `tandem-mio` from `runtime-mio`.
    Mio,
}

impl Runtime {
    /// The binary's file name.
    pub fn binary_name(self) -> &'static str {
        match self {
            Runtime::Smol => "tandem",
            Runtime::Mio => "tandem-mio",
        }
    }

    /// The driver name used in failure messages.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Smol => "smol",
            Runtime::Mio => "mio",
        }
    }

    /// The runtime the agent reports in `version` and `stats` (its crate's `RUNTIME`:
    /// package and version; every package has the workspace's version).
    pub fn reported_name(self) -> String {
        let package = match self {
            Runtime::Smol => "tandem-smol",
            Runtime::Mio => "tandem-mio",
        };
        format!("{package} {}", env!("CARGO_PKG_VERSION"))
    }
}

/// Lines the agent wrote to stderr, filled by a reader thread.
#[derive(Default)]
struct Log {
    lines: Mutex<(Vec<String>, bool)>,
    grew: Condvar,
}

/// One client socket.
struct Client {
    /// `None` once reset.
    stream: Option<TcpStream>,
    /// Bytes read while a send waited for the agent to take more, handed out first.
    early: Vec<u8>,
    /// The end of the connection, if a waiting send saw it.
    ended: Option<Received>,
}

/// A running agent process.
pub struct Process {
    runtime: Runtime,
    child: Child,
    http: SocketAddr,
    rpc: SocketAddr,
    lan: SocketAddr,
    log: Arc<Log>,
    started: Instant,
    /// Client sockets by [`Conn`] id.
    conns: Vec<Client>,
    /// The temporary directory of the configuration file [`Process::start`] wrote.
    config_dir: Option<PathBuf>,
}

impl Process {
    /// Starts `<binary> agent` with `config` and waits until it listens.
    pub fn start(runtime: Runtime, config: &Config) -> Process {
        let config_dir = temp_dir();
        let config_path = config_dir.join("agent.json");
        std::fs::write(&config_path, config_file(config).to_string()).expect("write config");
        let flag = format!("-config-file={}", config_path.display());
        Process::spawn(runtime, &[&flag], Some(config_dir), |_| {})
    }

    /// Starts `<binary> agent -http-addr 127.0.0.1:0 -rpc-addr 127.0.0.1:0 -lan-port 0
    /// -wan-port 0 <flags>` (no configuration file unless `flags` names one) and waits
    /// until it listens: what an end-to-end test of the command line runs.
    pub fn start_flags(runtime: Runtime, flags: &[&str]) -> Process {
        Process::spawn(runtime, flags, None, |_| {})
    }

    /// [`Process::start_flags`], with a last say on the command (limits, environment).
    pub fn start_with(
        runtime: Runtime,
        flags: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Process {
        Process::spawn(runtime, flags, None, adjust)
    }

    fn spawn(
        runtime: Runtime,
        flags: &[&str],
        config_dir: Option<PathBuf>,
        adjust: impl FnOnce(&mut Command),
    ) -> Process {
        let bin = binary(runtime);
        let mut command = Command::new(&bin);
        command
            .arg("agent")
            .args(["-http-addr", "127.0.0.1:0", "-rpc-addr", "127.0.0.1:0"])
            // Tests run in parallel: no fixed gossip ports either.
            .args(["-lan-port", "0", "-wan-port", "0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut command);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Log::default());
        let reader = Arc::clone(&log);
        // The pipe must be drained all the time, or the agent blocks on a full stderr.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                reader.lines.lock().unwrap().0.push(line);
                reader.grew.notify_all();
            }
            reader.lines.lock().unwrap().1 = true;
            reader.grew.notify_all();
        });
        let mut p = Process {
            runtime,
            child,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            rpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            lan: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            started: Instant::now(),
            conns: Vec::new(),
            config_dir,
        };
        // The HTTP line comes last, so every address is known once it is in.
        p.http = p.addr_in("agent: HTTP API listening on ");
        p.rpc = p.addr_in("agent: RPC listening on ");
        p.lan = p.addr_in("agent: gossip LAN listening on ");
        p.started = Instant::now();
        p
    }

    /// Which runtime this is.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// Where the HTTP API listens (for tests that need a raw socket).
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Where the agent RPC listens.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc
    }

    /// Every stderr line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().0.clone()
    }

    fn addr_in(&self, needle: &str) -> SocketAddr {
        let line = self.wait_log(needle);
        let at = line.find(needle).expect("needle in line") + needle.len();
        line[at..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("no address in {line:?}: {e}"))
    }

    /// Waits until a stderr line contains `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_after(0, needle)
    }

    /// Waits until a stderr line at index `from` or later contains `needle`; returns it.
    pub fn wait_log_after(&self, from: usize, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.0.iter().skip(from).find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !lines.1 && !left.is_zero(),
                "{}: no stderr line containing {needle:?}{}; stderr:\n{}",
                self.runtime.name(),
                if lines.1 { " (the agent exited)" } else { "" },
                lines.0.join("\n")
            );
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// The WAN gossip address of a `-server` agent.
    pub fn wan_addr(&self) -> SocketAddr {
        // Logged before the HTTP line, so it is in once the agent has started.
        self.addr_in("agent: gossip WAN listening on ")
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold `child`,
        // and only `wait_exit` and `Drop` reap it).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// `kill -9`: the agent dies without a word to anyone; reaped here.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let status = self.wait_exit(DEADLINE);
        assert_eq!(status.code(), None, "killed by a signal: {status}");
    }

    /// Waits for the agent to exit (by itself, or after a signal); its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: agent still running after {within:?}; stderr:\n{}",
                self.runtime.name(),
                self.log_lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stream(&self, c: &Conn) -> &TcpStream {
        self.conns[c.id()]
            .stream
            .as_ref()
            .expect("a connection that was not reset")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.config_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- {} agent stderr ---\n{}",
                self.runtime.name(),
                self.log_lines().join("\n")
            );
        }
    }
}

impl Driver for Process {
    fn name(&self) -> &'static str {
        self.runtime.name()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn lan_addr(&self) -> SocketAddr {
        self.lan
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn connect(&mut self, to: Listener) -> Conn {
        let addr = match to {
            Listener::Http => self.http,
            Listener::Rpc => self.rpc,
            Listener::Peer => self.lan,
        };
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        self.conns.push(Client {
            stream: Some(stream),
            early: Vec::new(),
            ended: None,
        });
        Conn::new(self.conns.len() - 1)
    }

    fn send(&mut self, c: &Conn, bytes: &[u8]) {
        let name = self.runtime.name();
        let client = &mut self.conns[c.id()];
        let stream = client
            .stream
            .as_ref()
            .expect("a connection that was not reset");
        // Write without blocking: an agent that stops reading because its answers wait for
        // this client (the slow-reader bound) needs them read, as a real client would.
        stream.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + DEADLINE;
        let mut chunk = [0u8; 16 * 1024];
        let mut off = 0;
        while off < bytes.len() {
            match (&*stream).write(&bytes[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "{name}: the agent took no bytes for {DEADLINE:?}"
                    );
                    match (&*stream).read(&mut chunk) {
                        _ if client.ended.is_some() => std::thread::sleep(Duration::from_millis(1)),
                        Ok(0) => client.ended = Some(Received::Eof),
                        Ok(n) => client.early.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                            client.ended = Some(Received::Reset);
                        }
                        Err(e) => panic!("{name}: read while sending: {e}"),
                    }
                }
                // The agent closed; the client learns it from what it reads next.
                Err(e)
                    if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) =>
                {
                    break;
                }
                Err(e) => panic!("{name}: send: {e}"),
            }
        }
        stream.set_nonblocking(false).expect("blocking");
    }

    fn shutdown_write(&mut self, c: &Conn) {
        self.stream(c).shutdown(Shutdown::Write).expect("shutdown");
    }

    fn reset(&mut self, c: &Conn) {
        let stream = self.conns[c.id()].stream.take().expect("reset once");
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt(2) on a socket we own, with a pointer to a live `linger` and
        // its exact size. An abortive close is not available from std on stable.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::from_ref(&linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
        // Closing with a zero linger sends RST instead of FIN.
        drop(stream);
    }

    fn receive(&mut self, c: &Conn, within: Duration) -> Received {
        let client = &mut self.conns[c.id()];
        if !client.early.is_empty() {
            return Received::Bytes(std::mem::take(&mut client.early));
        }
        if let Some(end) = client.ended.take() {
            return end;
        }
        let mut stream = self.stream(c);
        // A zero timeout means "block forever" to the socket.
        stream
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut chunk = [0u8; 16 * 1024];
        let got = loop {
            // EINTR after a stop and continue of the process (signal(7)): read again.
            match stream.read(&mut chunk) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                r => break r,
            }
        };
        match got {
            Ok(0) => Received::Eof,
            Ok(n) => Received::Bytes(chunk[..n].to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Received::Quiet
            }
            // The agent closed with bytes of ours unread: the kernel resets the connection.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Received::Reset,
            Err(e) => panic!("{}: read: {e}", self.runtime.name()),
        }
    }

    fn wait(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The config file for `config`: every field the file knows, written out. The fields are
/// destructured exhaustively so a new one fails to compile here instead of being dropped.
pub fn config_file(config: &Config) -> Value {
    let Config {
        node_name,
        log_level,
        limits,
        timing,
        host: _, // the runtime's own facts
        rpc_auth,
        http_auth,
        http_local_trust,
        console,
        server,
        datacenter,
        tags,
        lan_addr: _, // the runtime binds ephemeral ports and advertises what it bound
        wan_addr: _,
        cluster,
        event_handlers,
        skip_leave_on_interrupt,
        leave_on_terminate,
        rejoin_after_leave,
        replay_on_join,
        state_files: _, // from flags
        enable_remote_exec,
    } = config;
    // Of the cluster's configuration, only the keyring is in the file (`keyring`, the
    // first key primary); gossip tuning is not.
    let keyring: Option<Vec<String>> = cluster.as_ref().map(|c| {
        assert!(
            tandem_core::cluster::ClusterConfig {
                keyring: Default::default(),
                ..c.clone()
            } == Default::default(),
            "gossip tuning is not part of the config file"
        );
        c.keyring.keys().iter().map(|k| k.to_base64()).collect()
    });
    let Limits {
        max_connections,
        overflow_connections,
        max_head,
        max_headers,
        max_body,
        max_tx,
        consumer_queue,
        history,
        max_sessions,
        max_consumers,
        max_jobs,
        max_host_jobs,
        exec_results,
        log_ring,
        max_command,
        rpc_max_frame,
        rpc_max_str,
        rpc_max_container,
        rpc_max_values,
        event_handler_queue,
        event_handler_output,
    } = limits;
    let Timing {
        pull_timeout_ms,
        pull_batch_ms,
        consumer_timeout_ms,
        session_timeout_ms,
        unused_session_timeout_ms,
        exec_timeout_ms,
        head_timeout_ms,
        body_timeout_ms,
        idle_timeout_ms,
        rpc_handshake_timeout_ms,
        write_stall_timeout_ms,
        event_handler_timeout_ms,
    } = timing;
    json!({
        "node_name": node_name,
        "log_level": log_level.as_str(),
        "limits": {
            "max_connections": max_connections,
            "overflow_connections": overflow_connections,
            "max_head": max_head,
            "max_headers": max_headers,
            "max_body": max_body,
            "max_tx": max_tx,
            "consumer_queue": consumer_queue,
            "history": history,
            "max_sessions": max_sessions,
            "max_consumers": max_consumers,
            "max_jobs": max_jobs,
            "max_host_jobs": max_host_jobs,
            "exec_results": exec_results,
            "log_ring": log_ring,
            "max_command": max_command,
            "rpc_max_frame": rpc_max_frame,
            "rpc_max_str": rpc_max_str,
            "rpc_max_container": rpc_max_container,
            "rpc_max_values": rpc_max_values,
            "event_handler_queue": event_handler_queue,
            "event_handler_output": event_handler_output,
        },
        "timing": {
            "pull_timeout_ms": pull_timeout_ms,
            "pull_batch_ms": pull_batch_ms,
            "consumer_timeout_ms": consumer_timeout_ms,
            "session_timeout_ms": session_timeout_ms,
            "unused_session_timeout_ms": unused_session_timeout_ms,
            "exec_timeout_ms": exec_timeout_ms,
            "head_timeout_ms": head_timeout_ms,
            "body_timeout_ms": body_timeout_ms,
            "idle_timeout_ms": idle_timeout_ms,
            "rpc_handshake_timeout_ms": rpc_handshake_timeout_ms,
            "write_stall_timeout_ms": write_stall_timeout_ms,
            "event_handler_timeout_ms": event_handler_timeout_ms,
        },
        "rpc_auth": rpc_auth,
        "http_auth": http_auth
            .as_ref()
            .map(|a| json!({"username": a.username, "password": a.password})),
        "http_local_trust": http_local_trust,
        "console": console,
        "server": server,
        "datacenter": datacenter,
        "tags": tags,
        "event_handlers": event_handlers,
        "skip_leave_on_interrupt": skip_leave_on_interrupt,
        "leave_on_terminate": leave_on_terminate,
        "rejoin_after_leave": rejoin_after_leave,
        "keyring": keyring,
        "enable_remote_exec": enable_remote_exec,
        "replay_on_join": replay_on_join,
    })
}

/// Variables that would point a CLI client somewhere else than the test's agent.
const CLIENT_ENV: [&str; 6] = [
    "TANDEM_RPC_ADDR",
    "TANDEM_RPC_AUTH",
    "TANDEM_HTTP_ADDR",
    "TANDEM_HTTP_AUTH",
    "SERF_RPC_ADDR",
    "SERF_RPC_AUTH",
];

/// A CLI client command (`tandem members`, `serf monitor`) with the client variables
/// removed, so only its arguments say which agent it talks to.
pub fn client_command(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::null());
    for v in CLIENT_ENV {
        c.env_remove(v);
    }
    c
}

/// What a finished command printed, and its exit code.
#[derive(Debug)]
pub struct Out {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Out {
    /// Asserts exit code 0; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        &self.stdout
    }
}

fn temp_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tandem-conformance-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The path of `runtime`'s binary, built (once per test process) if needed.
pub fn binary(runtime: Runtime) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(build_binaries);
    match dir {
        Ok(dir) => dir.join(runtime.binary_name()),
        Err(e) => panic!("{e}"),
    }
}

/// Builds both agent binaries into the profile directory this test binary runs from
/// (`<target>/<profile>/deps/<test>` → `<target>/<profile>`; a binary of this crate, such
/// as `conn_churn`, runs from `<target>/<profile>` itself); returns that directory.
fn build_binaries() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("no directory above {}", exe.display()))?;
    let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent()
            .ok_or_else(|| format!("no profile directory above {}", exe.display()))?
    } else {
        dir
    }
    .to_path_buf();
    build_agents(&profile_dir, false)?;
    Ok(profile_dir)
}

/// `cargo build -p tandem-smol -p tandem-mio --bins` into the target directory and profile
/// `profile_dir` (`<target>/<profile>`) belongs to, then checks both binaries are there.
/// `show_output` lets cargo's progress through to stderr (else it is shown on failure).
pub fn build_agents(profile_dir: &Path, show_output: bool) -> Result<(), String> {
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("no target directory above {}", profile_dir.display()))?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds tests/");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "-p", "tandem-smol", "-p", "tandem-mio", "--bins"])
        .env("CARGO_TARGET_DIR", target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if show_output {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    }
    let out = cmd
        .output()
        .map_err(|e| format!("run cargo build for the agent binaries: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p tandem-smol -p tandem-mio --bins failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for runtime in [Runtime::Smol, Runtime::Mio] {
        let bin = profile_dir.join(runtime.binary_name());
        if !bin.is_file() {
            return Err(format!("cargo built no {}", bin.display()));
        }
    }
    Ok(())
}
