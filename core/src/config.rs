//! Configuration and limits. Every bound the agent enforces is here, with its default, so
//! the README's table and the code can be checked against one file.
//!
//! `Config` deserializes from the JSON config file (`-config-file`), with every field
//! optional; durations are given in milliseconds.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;
use serde::Deserialize;

use crate::log::Level;

/// Bounds on everything a client can make the agent hold.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct Limits {
    /// Open connections per listener. Beyond it an HTTP connection is answered
    /// `503 Service Unavailable` and closed (see `overflow_connections`). A new RPC
    /// connection closes the longest-idle one not yet admitted (without `handshake`, or
    /// `auth` when `rpc_auth` is set) or, without `rpc_auth`, the longest-idle one the agent
    /// owes nothing (no parked request, pending output, `monitor`, `stream` or running
    /// `query`); with none
    /// of those it is refused at `accept` (the runtime closes it at once).
    pub max_connections: usize,
    /// HTTP connections beyond `max_connections` still accepted just long enough to be
    /// answered `503` and closed. Beyond these too, HTTP connections are refused at
    /// `accept`, so a flood cannot grow the agent's memory through its refusals.
    pub overflow_connections: usize,
    /// Bytes of an HTTP request head (request line and headers); more gives 431.
    pub max_head: usize,
    /// Headers in one HTTP request; more gives 431.
    pub max_headers: usize,
    /// Bytes of an HTTP request body; more gives 413.
    pub max_body: usize,
    /// Bytes of output queued for one connection before the agent stops reading its
    /// requests (the slow-reader policy).
    pub max_tx: usize,
    /// Items a consumer queue holds; beyond it the oldest are dropped and a `gap` item
    /// counts them.
    pub consumer_queue: usize,
    /// Items of a session's history replayed to a joining consumer.
    pub history: usize,
    /// Live sessions made by `init_session`. At the limit the longest-idle session that no
    /// request has named since it was made is closed to make room; only when every session
    /// is in use is `init_session` refused. The one-time sessions of `exec` without a
    /// `sessionId` do not count: each lives while its request is answered, at most one per
    /// open HTTP connection, so a full table never refuses an `exec`.
    pub max_sessions: usize,
    /// Consumers per session.
    pub max_consumers: usize,
    /// Jobs (foreground and background) per session.
    pub max_jobs: usize,
    /// Host jobs (commands the runtime runs, such as `dashboard`) running at once, over
    /// every session. One more is refused at `exec`/`async_exec` with
    /// `too many host jobs running (limit N)`. It bounds what the host spends on them:
    /// `tandem-mio` runs each on a thread of its own, so `max_sessions * max_jobs` would
    /// otherwise be its thread bound.
    pub max_host_jobs: usize,
    /// Result items an `exec` collects for its response; a host job beyond it sees `Full`.
    pub exec_results: usize,
    /// Log records kept for `monitor` replay.
    pub log_ring: usize,
    /// Bytes of one command line.
    pub max_command: usize,
    /// Bytes of one RPC message (header or body); more closes the connection.
    pub rpc_max_frame: usize,
    /// Bytes of one msgpack string or bin, checked before anything is buffered.
    pub rpc_max_str: usize,
    /// Elements of one msgpack array or entries of one map.
    pub rpc_max_container: usize,
    /// Values in one RPC message, all nesting levels together.
    pub rpc_max_values: usize,
    /// Event handler runs waiting for their turn; more are dropped, logged and counted.
    pub event_handler_queue: usize,
    /// Bytes of a handler's output kept (its last ones; Serf: 8 KiB).
    pub event_handler_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            overflow_connections: 64,
            max_head: 8 * 1024,
            max_headers: 32,
            max_body: 1024 * 1024,
            max_tx: 1024 * 1024,
            consumer_queue: 1000,
            history: 50,
            max_sessions: 1024,
            max_consumers: 64,
            max_jobs: 64,
            max_host_jobs: 256,
            exec_results: 500,
            log_ring: 256,
            max_command: 4096,
            rpc_max_frame: 1024 * 1024,
            rpc_max_str: 256 * 1024,
            rpc_max_container: 4096,
            rpc_max_values: 65_536,
            event_handler_queue: 1024,
            event_handler_output: 8 * 1024,
        }
    }
}

/// Timing of the HTTP session API. All values in milliseconds in the config file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct Timing {
    /// An empty `pull_results` answers after this long (Arthas: 2000 ms).
    pub pull_timeout_ms: u64,
    /// A `pull_results` that has items answers this long after the first one
    /// (Arthas: about 100 ms).
    pub pull_batch_ms: u64,
    /// A consumer not pulled for this long is removed (Arthas: 5 minutes).
    pub consumer_timeout_ms: u64,
    /// A session not accessed for this long is closed (Arthas: 3 hours).
    pub session_timeout_ms: u64,
    /// A session that no request has named since `init_session` made it (nobody joined,
    /// pulled from or ran a command in it) is closed this long after it was made, so
    /// abandoned sessions do not hold a place for `session_timeout_ms`. 0: such sessions
    /// get `session_timeout_ms` like any other.
    pub unused_session_timeout_ms: u64,
    /// `exec`'s timeout when the request gives none (Arthas: 30000 ms).
    pub exec_timeout_ms: u64,
    /// An HTTP request head must be complete this long after its first byte arrived;
    /// otherwise the agent answers `408 Request Timeout` and closes (slowloris). 0 disables.
    pub head_timeout_ms: u64,
    /// An HTTP request body must be complete this long after its head was; otherwise the
    /// agent answers `408 Request Timeout` and closes. A total deadline, not a progress
    /// one (unlike nginx's `client_body_timeout`): a body trickled one byte at a time
    /// cannot hold a connection longer than this. 0 disables.
    pub body_timeout_ms: u64,
    /// An HTTP connection with nothing buffered, nothing parked and nothing left to write
    /// is closed after this long without activity (keep-alive idle); a request whose body
    /// is still arriving counts as idle since its last byte. 0 disables.
    pub idle_timeout_ms: u64,
    /// An RPC connection must complete `handshake`, and `auth` when `rpc_auth` is set,
    /// this long after it was accepted; otherwise it is closed. 0 disables.
    pub rpc_handshake_timeout_ms: u64,
    /// A connection with output pending that takes none of it for this long is closed and
    /// its output discarded (the slow-reader policy's last step, for both protocols). 0
    /// disables.
    pub write_stall_timeout_ms: u64,
    /// An event handler still running after this long has failed: it is stopped and the
    /// next one starts. 0 disables (Serf has no deadline).
    pub event_handler_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            pull_timeout_ms: 2000,
            pull_batch_ms: 100,
            consumer_timeout_ms: 5 * 60 * 1000,
            session_timeout_ms: 3 * 60 * 60 * 1000,
            unused_session_timeout_ms: 60_000,
            exec_timeout_ms: 30_000,
            head_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            rpc_handshake_timeout_ms: 10_000,
            write_stall_timeout_ms: 60_000,
            event_handler_timeout_ms: 60_000,
        }
    }
}

impl Timing {
    pub(crate) fn pull_timeout(&self) -> Duration {
        Duration::from_millis(self.pull_timeout_ms)
    }
    pub(crate) fn pull_batch(&self) -> Duration {
        Duration::from_millis(self.pull_batch_ms)
    }
    pub(crate) fn consumer_timeout(&self) -> Duration {
        Duration::from_millis(self.consumer_timeout_ms)
    }
    pub(crate) fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }
    /// The idle expiry of a session: shorter while it has never been used.
    pub(crate) fn session_expiry(&self, used: bool) -> Duration {
        let unused = self.unused_session_timeout_ms;
        if used || unused == 0 {
            self.session_timeout()
        } else {
            Duration::from_millis(unused.min(self.session_timeout_ms))
        }
    }
    pub(crate) fn head_timeout(&self) -> Option<Duration> {
        (self.head_timeout_ms > 0).then(|| Duration::from_millis(self.head_timeout_ms))
    }
    pub(crate) fn body_timeout(&self) -> Option<Duration> {
        (self.body_timeout_ms > 0).then(|| Duration::from_millis(self.body_timeout_ms))
    }
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }
    pub(crate) fn rpc_handshake_timeout(&self) -> Option<Duration> {
        (self.rpc_handshake_timeout_ms > 0)
            .then(|| Duration::from_millis(self.rpc_handshake_timeout_ms))
    }

    pub(crate) fn write_stall_timeout(&self) -> Option<Duration> {
        (self.write_stall_timeout_ms > 0)
            .then(|| Duration::from_millis(self.write_stall_timeout_ms))
    }
}

/// The credentials every HTTP request must carry (`Authorization: Basic`), Arthas's
/// `username`/`password`. In the config file: `"http_auth": {"username": "u", "password":
/// "p"}`; a missing `username` is `tandem` (as Arthas's is `arthas`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct HttpAuth {
    /// The user name, compared exactly (default `tandem`).
    #[serde(default = "default_http_user")]
    pub username: String,
    /// The password, compared exactly and in constant time.
    pub password: String,
}

/// The user name when only a password is configured.
pub const DEFAULT_HTTP_USER: &str = "tandem";

fn default_http_user() -> String {
    String::from(DEFAULT_HTTP_USER)
}

impl HttpAuth {
    /// Credentials for `username` and `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        HttpAuth {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization` header value a client sends with these credentials:
    /// `Basic ` and the standard base64 of `username:password`.
    pub fn authorization(&self) -> String {
        use base64::Engine as _;
        let plain = alloc::format!("{}:{}", self.username, self.password);
        let mut out = alloc::vec![0; plain.len().div_ceil(3) * 4];
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(plain.as_bytes(), &mut out)
            .unwrap_or(0);
        out.truncate(n);
        let mut header = String::from("Basic ");
        header.push_str(core::str::from_utf8(&out).unwrap_or(""));
        header
    }
}

impl core::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The password stays out of logs and panics.
        f.debug_struct("HttpAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the agent is told about its host at start. The core reads none of it itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct HostInfo {
    /// The process id shown in `welcome` and `session_info`.
    pub pid: u32,
    /// Wall-clock time at the `now` given to [`crate::Agent::new`], in Unix milliseconds.
    pub unix_ms: u64,
    /// Local time's offset from UTC in seconds, for the `welcome` item's local time.
    pub utc_offset_secs: i32,
    /// The runtime's name and version, shown in `version` and `stats`.
    pub runtime: String,
}

/// The agent's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct Config {
    /// This node's name (default: `tandem`).
    pub node_name: String,
    /// The lowest log level recorded in the log ring and emitted as [`crate::Output::Log`].
    pub log_level: Level,
    /// Bounds.
    pub limits: Limits,
    /// Timing of the HTTP API.
    pub timing: Timing,
    /// Host facts (not read from the config file).
    #[serde(skip)]
    pub host: HostInfo,
    /// The key RPC clients must give with `auth` (Serf's `rpc_auth`); none means open.
    pub rpc_auth: Option<String>,
    /// The credentials every HTTP request must carry (`Authorization: Basic`); none means
    /// open. Failures are answered `401 Unauthorized` and closed.
    pub http_auth: Option<HttpAuth>,
    /// With `http_auth`: an HTTP request from 127.0.0.1 or ::1 that presents no credentials
    /// is trusted (Arthas's `localConnectionNonAuth`, with ::1 counted as local too).
    /// Credentials presented and wrong are refused even locally.
    pub http_local_trust: bool,
    /// Serve the web console at `GET /` (with the `console` feature; without it there is
    /// no console to serve and `GET /` is a 404 either way). Default true.
    pub console: bool,
    /// Server mode: this node also joins the WAN pool (tag `role=consul`).
    pub server: bool,
    /// The datacenter, published as tag `dc`.
    pub datacenter: String,
    /// User tags, published with the built-in ones.
    pub tags: BTreeMap<String, String>,
    /// The LAN gossip address this node advertises.
    pub lan_addr: SocketAddr,
    /// The WAN gossip address this node advertises (servers only).
    pub wan_addr: SocketAddr,
    /// Gossip tuning (timing, limits); node, addresses, server mode and tags come from
    /// the fields above. `None` takes the cluster's defaults (memberlist's LAN/WAN profiles).
    #[serde(skip)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Event handlers in Serf's forms (`script`, `member-join=script`,
    /// `member-leave,member-failed=script`, `user:NAME=script`, `query=script`, …); the
    /// config file's `event_handlers`, with `-event-handler` flags added.
    pub event_handlers: Vec<String>,
    /// What the runtime does on SIGINT: leave the cluster gracefully first (`false`, the
    /// default, as Serf), or just shut down (`true`: peers then see the node `failed`).
    /// Serf's `skip_leave_on_interrupt`; the core reads it not.
    pub skip_leave_on_interrupt: bool,
    /// What the runtime does on SIGTERM: leave gracefully first (`true`), or just shut
    /// down (`false`, the default, as Serf). Serf's `leave_on_terminate`; the core reads it
    /// not.
    pub leave_on_terminate: bool,
    /// With `-snapshot`: a `leave` in the snapshot is ignored, so a node that left
    /// gracefully re-joins its previous cluster at the next start (Serf's
    /// `rejoin_after_leave`, flag `-rejoin`). Read at start.
    pub rejoin_after_leave: bool,
    /// Joins the agent starts itself (`-join`, `-retry-join`) replay the user events the
    /// members still hold, as the RPC `join` with `Replay` does (Serf's `replay_on_join`,
    /// flag `-replay`); by default only events after the join are delivered.
    pub replay_on_join: bool,
    /// The state files the runtime keeps (`-snapshot`, `-keyring-file`, `-tags-file`);
    /// the agent asks it to write them with `Effect::Persist`.
    #[serde(skip)]
    pub state_files: crate::StateFiles,
    /// Run registered commands for other members' cluster-wide jobs
    /// (`-enable-remote-exec`, config key `enable_remote_exec`). Off by default, as Consul
    /// ships remote exec disabled: a targeted node then answers `refused`.
    pub enable_remote_exec: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: String::from("tandem"),
            log_level: Level::Info,
            limits: Limits::default(),
            timing: Timing::default(),
            host: HostInfo::default(),
            rpc_auth: None,
            http_auth: None,
            http_local_trust: false,
            console: true,
            server: false,
            datacenter: String::from("dc1"),
            tags: BTreeMap::new(),
            lan_addr: SocketAddr::from(([127, 0, 0, 1], 8301)),
            wan_addr: SocketAddr::from(([127, 0, 0, 1], 8302)),
            cluster: None,
            event_handlers: Vec::new(),
            skip_leave_on_interrupt: false,
            leave_on_terminate: false,
            rejoin_after_leave: false,
            replay_on_join: false,
            state_files: crate::StateFiles::default(),
            enable_remote_exec: false,
        }
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const SECOND: u64 = 1000;
const HOUR: u64 = 3600 * SECOND;
const DAY: u64 = 24 * HOUR;

/// A configuration [`Config::validate`] refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A limit or timing outside its bounds.
    OutOfRange {
        /// The key as the config file spells it (`limits.max_body`).
        key: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// A credential that is set but empty: it would let anyone in while looking set.
    EmptyCredential {
        /// The key (`rpc_auth`, `http_auth.password`).
        key: &'static str,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::OutOfRange {
                key,
                value,
                min,
                max,
            } => write!(f, "{key}: {value} is out of range (from {min} to {max})"),
            ConfigError::EmptyCredential { key } => write!(f, "{key}: must not be empty"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

/// Saturating: a `usize` beyond `u64` is out of every range anyway.
fn wide(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl Limits {
    /// Every limit as (config key, value, smallest accepted, largest accepted). The bounds
    /// keep one client's worth of memory (and the agent's tables) within what a small host
    /// has; a minimum of 1 where 0 would leave nothing served.
    pub fn bounds(&self) -> [(&'static str, u64, u64, u64); 21] {
        [
            (
                "limits.max_connections",
                wide(self.max_connections),
                1,
                65_536,
            ),
            (
                "limits.overflow_connections",
                wide(self.overflow_connections),
                0,
                65_536,
            ),
            ("limits.max_head", wide(self.max_head), 1, MIB),
            ("limits.max_headers", wide(self.max_headers), 1, 1024),
            ("limits.max_body", wide(self.max_body), 1, 64 * MIB),
            ("limits.max_tx", wide(self.max_tx), 0, 64 * MIB),
            (
                "limits.consumer_queue",
                wide(self.consumer_queue),
                1,
                1_000_000,
            ),
            ("limits.history", wide(self.history), 0, 100_000),
            ("limits.max_sessions", wide(self.max_sessions), 1, 65_536),
            ("limits.max_consumers", wide(self.max_consumers), 1, 4096),
            ("limits.max_jobs", wide(self.max_jobs), 1, 65_536),
            ("limits.max_host_jobs", wide(self.max_host_jobs), 1, 4096),
            ("limits.exec_results", wide(self.exec_results), 1, 1_000_000),
            ("limits.log_ring", wide(self.log_ring), 0, 1_000_000),
            ("limits.max_command", wide(self.max_command), 1, MIB),
            (
                "limits.rpc_max_frame",
                wide(self.rpc_max_frame),
                1,
                64 * MIB,
            ),
            ("limits.rpc_max_str", wide(self.rpc_max_str), 1, 64 * MIB),
            (
                "limits.rpc_max_container",
                wide(self.rpc_max_container),
                1,
                1_000_000,
            ),
            (
                "limits.rpc_max_values",
                wide(self.rpc_max_values),
                1,
                10_000_000,
            ),
            (
                "limits.event_handler_queue",
                wide(self.event_handler_queue),
                0,
                65_536,
            ),
            (
                "limits.event_handler_output",
                wide(self.event_handler_output),
                0,
                MIB,
            ),
        ]
    }
}

impl Timing {
    /// Every timing as (config key, milliseconds, smallest accepted, largest accepted).
    /// A minimum of 0 marks the deadlines 0 disables.
    pub fn bounds(&self) -> [(&'static str, u64, u64, u64); 12] {
        [
            (
                "timing.pull_timeout_ms",
                self.pull_timeout_ms,
                1,
                10 * 60 * SECOND,
            ),
            ("timing.pull_batch_ms", self.pull_batch_ms, 0, 60 * SECOND),
            (
                "timing.consumer_timeout_ms",
                self.consumer_timeout_ms,
                1,
                DAY,
            ),
            (
                "timing.session_timeout_ms",
                self.session_timeout_ms,
                1,
                7 * DAY,
            ),
            (
                "timing.unused_session_timeout_ms",
                self.unused_session_timeout_ms,
                0,
                7 * DAY,
            ),
            ("timing.exec_timeout_ms", self.exec_timeout_ms, 1, DAY),
            ("timing.head_timeout_ms", self.head_timeout_ms, 0, HOUR),
            ("timing.body_timeout_ms", self.body_timeout_ms, 0, HOUR),
            ("timing.idle_timeout_ms", self.idle_timeout_ms, 0, DAY),
            (
                "timing.rpc_handshake_timeout_ms",
                self.rpc_handshake_timeout_ms,
                0,
                HOUR,
            ),
            (
                "timing.write_stall_timeout_ms",
                self.write_stall_timeout_ms,
                0,
                DAY,
            ),
            (
                "timing.event_handler_timeout_ms",
                self.event_handler_timeout_ms,
                0,
                DAY,
            ),
        ]
    }
}

impl Config {
    /// Checks every limit and timing against its bounds ([`Limits::bounds`],
    /// [`Timing::bounds`]) and refuses empty credentials. The runtimes call it on every
    /// configuration they load, at start (a refusal stops the start) and on reload (a
    /// refusal keeps the running configuration); an embedder should too. The agent itself
    /// stays defined under any values (a limit of 0 refuses cleanly), but values beyond
    /// these bounds let one client hold more than a small host has.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bounds = self.limits.bounds().into_iter().chain(self.timing.bounds());
        for (key, value, min, max) in bounds {
            if value < min || value > max {
                return Err(ConfigError::OutOfRange {
                    key,
                    value,
                    min,
                    max,
                });
            }
        }
        if self.rpc_auth.as_deref() == Some("") {
            return Err(ConfigError::EmptyCredential { key: "rpc_auth" });
        }
        if self
            .http_auth
            .as_ref()
            .is_some_and(|a| a.password.is_empty())
        {
            return Err(ConfigError::EmptyCredential {
                key: "http_auth.password",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_within_their_bounds() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn a_terabyte_max_body_is_refused_naming_the_key_and_bound() {
        let mut cfg = Config::default();
        cfg.limits.max_body = 1 << 40;
        let err = cfg.validate().unwrap_err();
        assert_eq!(
            alloc::string::ToString::to_string(&err),
            "limits.max_body: 1099511627776 is out of range (from 1 to 67108864)"
        );
    }

    #[test]
    fn every_bound_is_enforced_at_both_ends() {
        let n = Limits::default().bounds().len() + Timing::default().bounds().len();
        for i in 0..n {
            for (over, want) in [(true, "above"), (false, "below")] {
                let mut cfg = Config::default();
                let (key, _, min, max) = cfg
                    .limits
                    .bounds()
                    .into_iter()
                    .chain(cfg.timing.bounds())
                    .nth(i)
                    .unwrap();
                if !over && min == 0 {
                    continue;
                }
                let v = if over { max + 1 } else { min - 1 };
                set(&mut cfg, key, v);
                match cfg.validate() {
                    Err(ConfigError::OutOfRange { key: k, value, .. }) => {
                        assert_eq!((k, value), (key, v), "{key} {want}");
                    }
                    other => panic!("{key} {want} its bound: {other:?}"),
                }
                set(&mut cfg, key, if over { max } else { min });
                assert_eq!(cfg.validate(), Ok(()), "{key} at its bound");
            }
        }
    }

    /// Sets the field `key` names, through serde as the config file would: each section is
    /// rebuilt from its `bounds`, so a key there that is not a field fails here.
    fn set(cfg: &mut Config, key: &str, v: u64) {
        let section = |bounds: &[(&str, u64, u64, u64)]| {
            let mut map = serde_json::Map::new();
            for (k, value, _, _) in bounds {
                let value = if *k == key { v } else { *value };
                let field = k.split_once('.').unwrap().1;
                map.insert(field.into(), value.into());
            }
            serde_json::Value::Object(map)
        };
        cfg.limits = serde_json::from_value(section(&cfg.limits.bounds())).unwrap();
        cfg.timing = serde_json::from_value(section(&cfg.timing.bounds())).unwrap();
    }

    /// The field names of a struct, read from its `Debug` output.
    fn debug_fields(debug: &str) -> alloc::vec::Vec<String> {
        let inner = &debug[debug.find('{').unwrap() + 1..debug.rfind('}').unwrap()];
        inner
            .split(',')
            .map(|f| String::from(f.split(':').next().unwrap().trim()))
            .collect()
    }

    #[test]
    fn every_field_has_bounds() {
        let names = |bounds: &[(&str, u64, u64, u64)]| -> alloc::vec::Vec<String> {
            bounds
                .iter()
                .map(|b| String::from(b.0.split_once('.').unwrap().1))
                .collect()
        };
        let limits = Limits::default();
        let timing = Timing::default();
        assert_eq!(
            names(&limits.bounds()),
            debug_fields(&alloc::format!("{limits:?}"))
        );
        assert_eq!(
            names(&timing.bounds()),
            debug_fields(&alloc::format!("{timing:?}"))
        );
    }

    #[test]
    fn empty_credentials_are_refused() {
        let cfg = Config {
            rpc_auth: Some(String::new()),
            ..Config::default()
        };
        assert_eq!(
            cfg.validate(),
            Err(ConfigError::EmptyCredential { key: "rpc_auth" })
        );
        let cfg = Config {
            http_auth: Some(HttpAuth::new("", "")),
            ..Config::default()
        };
        assert_eq!(
            cfg.validate(),
            Err(ConfigError::EmptyCredential {
                key: "http_auth.password"
            })
        );
        let cfg = Config {
            rpc_auth: Some("k".into()),
            http_auth: Some(HttpAuth::new("", "p")),
            ..Config::default()
        };
        assert_eq!(cfg.validate(), Ok(()));
    }
}
