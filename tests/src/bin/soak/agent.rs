//! Agent processes: the agent under test and the churning peers. Each is
//! `<binary> agent -http-addr 127.0.0.1:0 -rpc-addr 127.0.0.1:0 -lan-port 0 -wan-port 0
//! -config-file F` (the configuration written by the process conformance driver's
//! `config_file`), its stderr drained by a thread into a bounded tail, killed and reaped on
//! drop, so a failing or interrupted soak leaves no process behind.
//!
//! The binaries are built with the process driver's `build_agents`. The soak keeps this
//! small wrapper rather than the driver's `Process`: it needs a bounded stderr tail for
//! hours-long runs, RSS, and peers started and killed by the hundred.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tandem_core::Config;
use tandem_tests::driver::process::{Runtime, build_agents, config_file};

/// Stderr lines kept per agent (the tail, for failure reports).
const TAIL: usize = 400;
/// How long an agent may take to log that it listens.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Where the agent binaries are, and whether to build them first.
#[derive(Clone, Debug)]
pub struct Bins {
    /// `--bin-dir`; else the directory of this executable (`<target>/<profile>`).
    pub dir: Option<PathBuf>,
    /// Run `cargo build -p tandem-smol -p tandem-mio --bins` (in this executable's
    /// profile) first, so a stale agent is never soaked (`--no-build` skips it).
    pub build: bool,
}

impl Default for Bins {
    fn default() -> Bins {
        Bins {
            dir: None,
            build: true,
        }
    }
}

impl Bins {
    /// Settles the directory, building into it if asked.
    pub fn resolve(mut self) -> Result<Bins, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let own = exe
            .parent()
            .ok_or("no directory above this executable")?
            .to_path_buf();
        let dir = self.dir.clone().unwrap_or(own.clone());
        if self.build && self.dir.is_none() {
            eprintln!("soak: building the agents…");
            build_agents(&own, true)?;
        }
        for r in [Runtime::Smol, Runtime::Mio] {
            let bin = dir.join(r.binary_name());
            if !bin.is_file() {
                return Err(format!("no agent binary at {}", bin.display()));
            }
        }
        self.dir = Some(dir);
        Ok(self)
    }

    pub fn path(&self, runtime: Runtime) -> PathBuf {
        self.dir
            .as_ref()
            .expect("resolved")
            .join(runtime.binary_name())
    }
}

/// The stderr tail, and whether the pipe ended.
#[derive(Default)]
struct Log {
    state: Mutex<(VecDeque<String>, bool)>,
    grew: Condvar,
}

/// A running agent process.
pub struct Agent {
    pub name: String,
    pub runtime: Runtime,
    pub http: SocketAddr,
    pub rpc: SocketAddr,
    pub lan: SocketAddr,
    child: Child,
    exited: Option<ExitStatus>,
    log: Arc<Log>,
    dir: PathBuf,
}

impl Agent {
    /// Starts `runtime`'s agent with `config` and waits until it listens; its LAN gossip
    /// port is `lan_port` (0: ephemeral).
    pub fn start(
        bins: &Bins,
        runtime: Runtime,
        config: &Config,
        lan_port: u16,
    ) -> Result<Agent, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tandem-soak-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        let cfg = dir.join("agent.json");
        std::fs::write(&cfg, config_file(config).to_string())
            .map_err(|e| format!("write config: {e}"))?;
        let bin = bins.path(runtime);
        let mut child = Command::new(&bin)
            .arg("agent")
            .args(["-http-addr", "127.0.0.1:0", "-rpc-addr", "127.0.0.1:0"])
            .args(["-lan-port", &lan_port.to_string(), "-wan-port", "0"])
            .arg(format!("-config-file={}", cfg.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Log::default());
        let reader = Arc::clone(&log);
        // Drained all the time: an agent blocked on a full stderr pipe would stall.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = reader.state.lock().unwrap();
                if s.0.len() == TAIL {
                    s.0.pop_front();
                }
                s.0.push_back(line);
                reader.grew.notify_all();
            }
            reader.state.lock().unwrap().1 = true;
            reader.grew.notify_all();
        });
        let mut agent = Agent {
            name: config.node_name.clone(),
            runtime,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            rpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            lan: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            exited: None,
            log,
            dir,
        };
        // The HTTP line comes last, so every address is known once it is in; the first
        // lines are logged before any load, so the tail still holds them.
        agent.http = agent.addr_in("agent: HTTP API listening on ")?;
        agent.rpc = agent.addr_in("agent: RPC listening on ")?;
        agent.lan = agent.addr_in("agent: gossip LAN listening on ")?;
        Ok(agent)
    }

    fn addr_in(&self, needle: &str) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut s = self.log.state.lock().unwrap();
        loop {
            if let Some(l) = s.0.iter().find(|l| l.contains(needle)) {
                let at = l.find(needle).expect("found") + needle.len();
                return l[at..]
                    .trim()
                    .parse()
                    .map_err(|e| format!("no address in {l:?}: {e}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if s.1 || left.is_zero() {
                return Err(format!(
                    "{} ({}): no line {needle:?}{}; stderr:\n{}",
                    self.name,
                    self.runtime.name(),
                    if s.1 { " (it exited)" } else { "" },
                    Vec::from(s.0.clone()).join("\n")
                ));
            }
            s = self.log.grew.wait_timeout(s, left).unwrap().0;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmRSS` in KiB; `None` once the process is gone (a zombie has no `VmRSS` line).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// The last `n` stderr lines.
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = self.log.state.lock().unwrap();
        let skip = s.0.len().saturating_sub(n);
        s.0.iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        if let Ok(st) = self.child.wait() {
            self.exited.get_or_insert(st);
        }
    }

    /// Waits at most `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.exited {
                return Some(st);
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st);
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `VmRSS` of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
