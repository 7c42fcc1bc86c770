//! `agent`'s command line, the same in every runtime: its flag table, [`AgentOptions`], and
//! the configuration they describe (the config file with the flags on top, re-read on
//! SIGHUP, with credentials generated for listeners bound beyond loopback).

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use tandem_core::cluster::{ClusterLimits, GossipKey, Keyring};
use tandem_core::{
    Agent, Config, DEFAULT_HTTP_USER, EventScript, HttpAuth, Instant, Level, Snapshot,
};

use crate::flags::{FlagError, FlagSpec, parse_flags, parse_go_duration, usage};
use crate::persist::StatePaths;

/// Default address of the HTTP API (Arthas' port on loopback).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8563";
/// Default address of the agent RPC (Consul's RPC port on loopback).
pub const DEFAULT_RPC_ADDR: &str = "127.0.0.1:8400";
/// Default gossip port of the LAN pool (Serf LAN).
pub const DEFAULT_LAN_PORT: u16 = 8301;
/// Default time between `-retry-join` attempts (Serf's).
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// Default gossip port of the WAN pool (Serf WAN, servers only).
pub const DEFAULT_WAN_PORT: u16 = 8302;

/// `PROGRAM agent`'s usage text (for `-help`, and after a bad command line): the synopsis
/// with the program's name, then the flag table.
pub fn agent_usage(program: &str) -> String {
    let synopsis = format!("Usage: {program} agent [options]\n\n{AGENT_DESCRIPTION}");
    usage(&synopsis, AGENT_FLAGS)
}

const AGENT_DESCRIPTION: &str = concat!(
    "  Starts the tandem agent and runs until an interrupt (SIGINT) or SIGTERM is received, or\n",
    "  until a graceful `leave` has reached the cluster. SIGHUP re-reads the -config-file and\n",
    "  applies it (the gossip addresses, -server and -datacenter stay as they were at start).",
);

/// The flags of `agent`, in the order its usage lists them.
pub const AGENT_FLAGS: &[FlagSpec] = &[
    FlagSpec {
        name: "http-addr",
        value: Some("<address>"),
        help: "Address the HTTP API (POST /api) listens on. Default 127.0.0.1:8563; \
               port 0 picks a free port (the log says which).",
    },
    FlagSpec {
        name: "rpc-addr",
        value: Some("<address>"),
        help: "Address the agent RPC (msgpack, Consul/Serf) listens on. Default \
               127.0.0.1:8400; port 0 picks a free port (the log says which).",
    },
    FlagSpec {
        name: "rpc-auth",
        value: Some("<key>"),
        help: "Key RPC clients must give (Serf's `auth` command) before any other command. \
               Overrides rpc_auth of the config file.",
    },
    FlagSpec {
        name: "http-auth",
        value: Some("<user:password>"),
        help: "Credentials every HTTP request must carry (Authorization: Basic), split at \
               the first colon; a value without one is a password for the user tandem. \
               Failures get 401. Overrides http_auth of the config file.",
    },
    FlagSpec {
        name: "http-local-trust",
        value: None,
        help: "With -http-auth: trust HTTP requests from 127.0.0.1 or ::1 that present no \
               credentials (wrong ones are still refused). Overrides http_local_trust of \
               the config file.",
    },
    FlagSpec {
        name: "insecure",
        value: None,
        help: "Serve the HTTP API or the RPC on a non-loopback address without credentials. \
               Without it, such a listener gets a random password (HTTP, user tandem) or \
               key (RPC), logged once at WARN.",
    },
    FlagSpec {
        name: "bind",
        value: Some("<address>"),
        help: "IP address the gossip sockets (UDP) bind to, and that this node advertises \
               to the cluster. Default 127.0.0.1 (or the config file's lan_addr).",
    },
    FlagSpec {
        name: "lan-port",
        value: Some("<port>"),
        help: "UDP port of the LAN gossip pool. Default 8301; 0 picks a free port (the log \
               says which).",
    },
    FlagSpec {
        name: "wan-port",
        value: Some("<port>"),
        help: "UDP port of the WAN gossip pool (with -server only). Default 8302; 0 picks a \
               free port (the log says which).",
    },
    FlagSpec {
        name: "server",
        value: None,
        help: "Server mode: the node also gossips in the WAN pool and carries the tag \
               role=consul.",
    },
    FlagSpec {
        name: "datacenter",
        value: Some("<name>"),
        help: "Datacenter of this node, published as the tag dc. Default dc1.",
    },
    FlagSpec {
        name: "join",
        value: Some("<address>"),
        help: "Address of a LAN member to join at start (ip, ip:port or host[:port]; the \
               port defaults to the LAN port). Repeatable. The outcome is logged.",
    },
    FlagSpec {
        name: "retry-join",
        value: Some("<address>"),
        help: "Address of a LAN member to join at start, as -join, but retried every \
               -retry-interval until a join succeeds (each attempt is logged). Repeatable.",
    },
    FlagSpec {
        name: "retry-interval",
        value: Some("<duration>"),
        help: "Time between -retry-join attempts (Go syntax: 30s, 1m). Default 30s.",
    },
    FlagSpec {
        name: "retry-max",
        value: Some("<count>"),
        help: "Failed -retry-join retries before the agent gives up and exits with status 1. \
               Default 0: retry forever.",
    },
    FlagSpec {
        name: "join-wan",
        value: Some("<address>"),
        help: "Address of a WAN member to join at start (servers only). Repeatable.",
    },
    FlagSpec {
        name: "encrypt",
        value: Some("<key>"),
        help: "Gossip encryption key: base64 of 16, 24 or 32 bytes (`tandem keygen` makes \
               one). Every LAN and WAN datagram is sealed with AES-GCM; nodes without the \
               key cannot join or read membership. Overrides encrypt of the config file \
               (whose keyring adds keys accepted on receive).",
    },
    FlagSpec {
        name: "tag",
        value: Some("<key=value>"),
        help: "A tag of this node, published to the cluster. Repeatable; added to tags of the \
               config file. Not with -tags-file.",
    },
    FlagSpec {
        name: "tags-file",
        value: Some("<path>"),
        help: "JSON file of this node's tags: loaded at start when it exists (instead of the \
               config file's tags), rewritten whenever tags change at run time (RPC tags), so \
               they survive a restart.",
    },
    FlagSpec {
        name: "snapshot",
        value: Some("<path>"),
        help: "Snapshot file (Serf's format): members seen alive and the Lamport clocks are \
               appended as they change (compacted when it grows), and read at start: the \
               node re-joins the members it lists and does not replay old user events and \
               queries. After a graceful leave it does not re-join (see -rejoin).",
    },
    FlagSpec {
        name: "replay",
        value: None,
        help: "Joins at start (-join, -retry-join) replay the user events the members still \
               hold, as `join -replay` does (Serf's replay_on_join; overrides the config \
               file's).",
    },
    FlagSpec {
        name: "rejoin",
        value: None,
        help: "With -snapshot: re-join the snapshot's members at start even after a \
               graceful leave (Serf's rejoin_after_leave; overrides the config file's).",
    },
    FlagSpec {
        name: "keyring-file",
        value: Some("<path>"),
        help: "JSON list of base64 gossip keys, primary first (Serf's keyring file): loaded \
               at start (it must exist; not with -encrypt or the config file's encrypt or \
               keyring), rewritten whenever install-key, use-key or remove-key (`tandem \
               keys`) change the keyring, so rotated keys survive a restart. Overrides \
               keyring_file of the config file.",
    },
    FlagSpec {
        name: "event-handler",
        value: Some("<handler>"),
        help: "Script to run on events, as Serf: `script` (every event), \
               `member-join=script`, `member-leave,member-failed=script`, `user=script`, \
               `user:NAME=script`, `query=script`, `query:NAME=script`. Runs as /bin/sh -c \
               with SERF_* variables and the members or payload on stdin, one at a time. \
               Repeatable; added to event_handlers of the config file.",
    },
    FlagSpec {
        name: "skip-leave-on-interrupt",
        value: None,
        help: "On SIGINT, shut down without leaving the cluster first (peers then see this \
               node failed). By default SIGINT leaves gracefully, as Serf's agent does. \
               Overrides skip_leave_on_interrupt of the config file.",
    },
    FlagSpec {
        name: "leave-on-terminate",
        value: None,
        help: "On SIGTERM, leave the cluster gracefully before shutting down (by default \
               SIGTERM shuts down at once, as Serf's agent does). Overrides \
               leave_on_terminate of the config file.",
    },
    FlagSpec {
        name: "enable-remote-exec",
        value: None,
        help: "Run registered commands for other members' cluster-wide jobs (exec with \
               nodes/tags). Off by default: this node then answers them refused. Overrides \
               enable_remote_exec of the config file.",
    },
    FlagSpec {
        name: "config-file",
        value: Some("<path>"),
        help: "JSON file with the agent's configuration (node_name, log_level, limits, \
               timing, rpc_auth, http_auth, http_local_trust, console, server, datacenter, tags, \
               lan_addr, wan_addr, encrypt, keyring, encrypt_verify_incoming, \
               encrypt_verify_outgoing, event_handlers, skip_leave_on_interrupt, \
               leave_on_terminate, enable_remote_exec, rejoin_after_leave, replay_on_join; \
               read at start only: snapshot_path, tags_file, retry_join, retry_interval, \
               retry_max). Flags override it. Re-read on SIGHUP.",
    },
    FlagSpec {
        name: "node",
        value: Some("<name>"),
        help: "Name of this node. Overrides node_name of the config file.",
    },
    FlagSpec {
        name: "log-level",
        value: Some("<level>"),
        help: "Log level: TRACE, DEBUG, INFO, WARN or ERR (any case). Overrides log_level \
               of the config file. Default INFO.",
    },
];

/// The options of `agent` (`tandem agent`, `tandem-mio agent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentOptions {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// Where the agent RPC listens.
    pub rpc_addr: SocketAddr,
    /// The JSON config file, re-read on SIGHUP.
    pub config_file: Option<PathBuf>,
    /// `-node`: overrides the file's `node_name`.
    pub node: Option<String>,
    /// `-log-level`: overrides the file's `log_level`.
    pub log_level: Option<Level>,
    /// `-rpc-auth`: overrides the file's `rpc_auth`.
    pub rpc_auth: Option<String>,
    /// `-http-auth`: overrides the file's `http_auth`.
    pub http_auth: Option<HttpAuth>,
    /// `-http-local-trust`: overrides the file's `http_local_trust`.
    pub http_local_trust: Option<bool>,
    /// `-insecure`: no generated credentials for non-loopback listeners.
    pub insecure: bool,
    /// Credentials generated for non-loopback listeners, once, and kept across reloads.
    pub generated: Generated,
    /// `-bind`: the gossip sockets' IP (overrides the IP of the file's `lan_addr` and
    /// `wan_addr`).
    pub bind: Option<IpAddr>,
    /// `-lan-port`: overrides the port of the file's `lan_addr`.
    pub lan_port: Option<u16>,
    /// `-wan-port`: overrides the port of the file's `wan_addr`.
    pub wan_port: Option<u16>,
    /// `-server`: overrides the file's `server`.
    pub server: Option<bool>,
    /// `-datacenter`: overrides the file's `datacenter`.
    pub datacenter: Option<String>,
    /// `-join`, in order: LAN members to join at start.
    pub join: Vec<String>,
    /// `-join-wan`, in order: WAN members to join at start.
    pub join_wan: Vec<String>,
    /// `-retry-join`, in order: LAN members to join at start, retried until one join
    /// succeeds.
    pub retry_join: Vec<String>,
    /// `-retry-interval`: time between `-retry-join` attempts (default 30 s).
    pub retry_interval: Duration,
    /// `-retry-max`: failed retries before giving up (0: never).
    pub retry_max: u32,
    /// `-encrypt`: the primary gossip key (overrides the file's `encrypt`).
    pub encrypt: Option<GossipKey>,
    /// `-event-handler`, in order: added to the file's `event_handlers`.
    pub event_handlers: Vec<String>,
    /// `-skip-leave-on-interrupt`: overrides the file's `skip_leave_on_interrupt`.
    pub skip_leave_on_interrupt: Option<bool>,
    /// `-leave-on-terminate`: overrides the file's `leave_on_terminate`.
    pub leave_on_terminate: Option<bool>,
    /// `-enable-remote-exec`: overrides the file's `enable_remote_exec`.
    pub enable_remote_exec: Option<bool>,
    /// The state files' paths (`-snapshot`, `-keyring-file`, `-tags-file`).
    pub state: StatePaths,
    /// `-tag`, in order.
    pub tags: Vec<(String, String)>,
    /// `-rejoin`: overrides the file's `rejoin_after_leave`.
    pub rejoin: Option<bool>,
    /// The INFO line saying a keyring was restored from the keyring file (Serf's), set by
    /// the first [`AgentOptions::load_config`] that read one.
    restored_keyring: std::sync::OnceLock<String>,
    /// `-replay`: overrides the file's `replay_on_join`.
    pub replay: Option<bool>,
    /// The flags given, so the config file's settings of the same things yield to them.
    given: Vec<&'static str>,
}

impl AgentOptions {
    /// Parses `agent`'s arguments. `Ok(None)` means help was asked for.
    pub fn parse(args: &[String]) -> Result<Option<AgentOptions>, FlagError> {
        let parsed = parse_flags(AGENT_FLAGS, args)?;
        if parsed.help {
            return Ok(None);
        }
        if !parsed.rest.is_empty() {
            return Err(FlagError::ExtraArguments(parsed.rest));
        }
        let mut opts = AgentOptions {
            http_addr: resolve("http-addr", DEFAULT_HTTP_ADDR)?,
            rpc_addr: resolve("rpc-addr", DEFAULT_RPC_ADDR)?,
            config_file: None,
            node: None,
            log_level: None,
            rpc_auth: None,
            http_auth: None,
            http_local_trust: None,
            insecure: false,
            generated: Generated::default(),
            bind: None,
            lan_port: None,
            wan_port: None,
            server: None,
            datacenter: None,
            join: Vec::new(),
            join_wan: Vec::new(),
            retry_join: Vec::new(),
            retry_interval: DEFAULT_RETRY_INTERVAL,
            retry_max: 0,
            encrypt: None,
            event_handlers: Vec::new(),
            skip_leave_on_interrupt: None,
            leave_on_terminate: None,
            enable_remote_exec: None,
            state: StatePaths::default(),
            tags: Vec::new(),
            rejoin: None,
            restored_keyring: std::sync::OnceLock::new(),
            replay: None,
            given: Vec::new(),
        };
        for (flag, value) in parsed.flags {
            opts.given.push(flag);
            match flag {
                "server" => opts.server = Some(parse_bool(flag, value.as_deref())?),
                "http-local-trust" => {
                    opts.http_local_trust = Some(parse_bool(flag, value.as_deref())?);
                }
                "insecure" => opts.insecure = parse_bool(flag, value.as_deref())?,
                "skip-leave-on-interrupt" => {
                    opts.skip_leave_on_interrupt = Some(parse_bool(flag, value.as_deref())?);
                }
                "leave-on-terminate" => {
                    opts.leave_on_terminate = Some(parse_bool(flag, value.as_deref())?);
                }
                "rejoin" => opts.rejoin = Some(parse_bool(flag, value.as_deref())?),
                "enable-remote-exec" => {
                    opts.enable_remote_exec = Some(parse_bool(flag, value.as_deref())?);
                }
                "replay" => opts.replay = Some(parse_bool(flag, value.as_deref())?),
                _ => {}
            }
            if matches!(
                flag,
                "server"
                    | "http-local-trust"
                    | "insecure"
                    | "skip-leave-on-interrupt"
                    | "leave-on-terminate"
                    | "rejoin"
                    | "enable-remote-exec"
                    | "replay"
            ) {
                continue;
            }
            let value = value.unwrap_or_default();
            match flag {
                "bind" => {
                    opts.bind = Some(value.parse().map_err(|_| FlagError::Invalid {
                        flag,
                        value: value.clone(),
                        reason: "expected an IP address".into(),
                    })?);
                }
                "lan-port" => opts.lan_port = Some(parse_port(flag, &value)?),
                "wan-port" => opts.wan_port = Some(parse_port(flag, &value)?),
                "datacenter" if value.is_empty() => {
                    return Err(FlagError::Invalid {
                        flag,
                        value,
                        reason: "must not be empty".into(),
                    });
                }
                "datacenter" => opts.datacenter = Some(value),
                "join" => opts.join.push(value),
                "join-wan" => opts.join_wan.push(value),
                "retry-join" => opts.retry_join.push(value),
                "retry-interval" => match parse_go_duration(&value) {
                    Some(d) if !d.is_zero() => opts.retry_interval = d,
                    _ => {
                        return Err(FlagError::Invalid {
                            flag,
                            value,
                            reason: "expected a positive duration such as 30s or 1m".into(),
                        });
                    }
                },
                "retry-max" => {
                    opts.retry_max = value.parse().map_err(|_| FlagError::Invalid {
                        flag,
                        value: value.clone(),
                        reason: "expected a count (0: retry forever)".into(),
                    })?;
                }
                "tag" => match value.split_once('=') {
                    Some((k, v)) if !k.is_empty() => opts.tags.push((k.into(), v.into())),
                    _ => {
                        return Err(FlagError::Invalid {
                            flag,
                            value,
                            reason: "expected key=value".into(),
                        });
                    }
                },
                "tags-file" => opts.state.tags = Some(PathBuf::from(value)),
                "snapshot" => opts.state.snapshot = Some(PathBuf::from(value)),
                "keyring-file" => opts.state.keyring = Some(PathBuf::from(value)),
                "event-handler" => {
                    if let Err(e) = EventScript::parse(&value) {
                        return Err(FlagError::Invalid {
                            flag,
                            value,
                            reason: e.to_string(),
                        });
                    }
                    opts.event_handlers.push(value);
                }
                "encrypt" => {
                    opts.encrypt =
                        Some(
                            GossipKey::from_base64(&value).map_err(|e| FlagError::Invalid {
                                flag,
                                value: String::from("<redacted>"),
                                reason: e.to_string(),
                            })?,
                        );
                }
                "http-addr" => opts.http_addr = resolve(flag, &value)?,
                "rpc-addr" => opts.rpc_addr = resolve(flag, &value)?,
                "config-file" => opts.config_file = Some(PathBuf::from(value)),
                "node" => opts.node = Some(value),
                "rpc-auth" => opts.rpc_auth = Some(value),
                "http-auth" => opts.http_auth = Some(parse_http_auth(flag, value)?),
                "log-level" => {
                    opts.log_level = Some(Level::parse(&value).ok_or(FlagError::Invalid {
                        flag,
                        value,
                        reason: "expected TRACE, DEBUG, INFO, WARN or ERR".into(),
                    })?);
                }
                _ => {}
            }
        }
        if opts.state.keyring.is_none()
            && let Some(path) = &opts.config_file
        {
            // The config file's `keyring_file`, read once at start like the flag (a file
            // that cannot be read is reported by `load_config`).
            let file = std::fs::read(path).ok();
            let value = file.and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok());
            if let Some(p) = value.as_ref().and_then(|v| v.get("keyring_file")) {
                opts.state.keyring = p.as_str().map(PathBuf::from);
            }
        }
        Ok(Some(opts))
    }

    /// The INFO lines to log at start (`agent: Restored keyring with N keys from PATH`).
    pub fn start_notes(&self) -> Vec<String> {
        self.restored_keyring.get().cloned().into_iter().collect()
    }

    /// The configuration these options describe: the config file (if any), then the flags
    /// on top, as Consul layers them. Called at start and again on SIGHUP.
    pub fn load_config(&self) -> Result<Config, String> {
        let (mut cfg, file_keys) = match &self.config_file {
            Some(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let cfg = parse_config(&text)
                    .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
                let keys = FileKeys::parse(&text)
                    .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
                (cfg, keys)
            }
            None => (Config::default(), FileKeys::default()),
        };
        if let Some(node) = &self.node {
            cfg.node_name.clone_from(node);
        }
        if let Some(level) = self.log_level {
            cfg.log_level = level;
        }
        if let Some(key) = &self.rpc_auth {
            cfg.rpc_auth = Some(key.clone());
        }
        if let Some(auth) = &self.http_auth {
            cfg.http_auth = Some(auth.clone());
        }
        if let Some(trust) = self.http_local_trust {
            cfg.http_local_trust = trust;
        }
        if !self.insecure {
            // A listener others can reach is never open by accident.
            if cfg.http_auth.is_none() && !self.http_addr.ip().is_loopback() {
                let password = self.generated.http.get_or_try(random_secret)?;
                cfg.http_auth = Some(HttpAuth::new(DEFAULT_HTTP_USER, password));
            }
            if cfg.rpc_auth.is_none() && !self.rpc_addr.ip().is_loopback() {
                cfg.rpc_auth = Some(self.generated.rpc.get_or_try(random_secret)?);
            }
        }
        if let Some(server) = self.server {
            cfg.server = server;
        }
        if let Some(skip) = self.skip_leave_on_interrupt {
            cfg.skip_leave_on_interrupt = skip;
        }
        if let Some(leave) = self.leave_on_terminate {
            cfg.leave_on_terminate = leave;
        }
        if let Some(enable) = self.enable_remote_exec {
            cfg.enable_remote_exec = enable;
        }
        if let Some(dc) = &self.datacenter {
            cfg.datacenter.clone_from(dc);
        }
        if let Some(rejoin) = self.rejoin {
            cfg.rejoin_after_leave = rejoin;
        }
        if let Some(replay) = self.replay {
            cfg.replay_on_join = replay;
        }
        cfg.state_files = self.state.files();
        if let Some(path) = &self.state.tags {
            // Serf: one source of tags when a tags file is used.
            if !self.tags.is_empty() {
                return Err("Tags config not allowed while using tag files".into());
            }
            match std::fs::read(path) {
                Ok(text) => {
                    cfg.tags = serde_json::from_slice(&text)
                        .map_err(|e| format!("Failed to decode tags file: {e}"))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("Failed to read tags file: {e}")),
            }
        }
        for (k, v) in &self.tags {
            cfg.tags.insert(k.clone(), v.clone());
        }
        // Serf appends the flags' handlers to the file's.
        cfg.event_handlers
            .extend(self.event_handlers.iter().cloned());
        EventScript::parse_all(&cfg.event_handlers).map_err(|e| e.to_string())?;
        let keyring = match &self.state.keyring {
            Some(path) => {
                // Serf: the keyring file is the one source of keys.
                if self.encrypt.is_some()
                    || file_keys.encrypt.is_some()
                    || !file_keys.keyring.is_empty()
                {
                    return Err("Encryption key not allowed while using a keyring".into());
                }
                let keys = load_keyring_file(path)?;
                let line = format!(
                    "agent: Restored keyring with {} keys from {}",
                    keys.len(),
                    path.display()
                );
                let _ = self.restored_keyring.set(line);
                file_keys.keyring_of(keys)
            }
            None => file_keys.keyring(self.encrypt),
        };
        if keyring.is_enabled() {
            cfg.cluster.get_or_insert_with(Default::default).keyring = keyring;
        }
        // The addresses to bind; the runtime replaces them with the bound ones (port 0).
        cfg.lan_addr = SocketAddr::new(
            self.bind.unwrap_or(cfg.lan_addr.ip()),
            self.lan_port.unwrap_or(cfg.lan_addr.port()),
        );
        cfg.wan_addr = SocketAddr::new(
            self.bind.unwrap_or(cfg.wan_addr.ip()),
            self.wan_port.unwrap_or(cfg.wan_addr.port()),
        );
        // Flags and file alike: a value beyond its bound, or an empty credential, is
        // refused whole (at start the agent does not start; a reload keeps what runs).
        cfg.validate().map_err(|e| match &self.config_file {
            Some(path) => format!("invalid configuration ({}): {e}", path.display()),
            None => format!("invalid configuration: {e}"),
        })?;
        Ok(cfg)
    }

    /// The config file's settings of what the runtime does at start, Serf's keys:
    /// `snapshot_path`, `tags_file`, `retry_join` (added to `-retry-join`),
    /// `retry_interval` (Go duration), `retry_max`. A flag wins over the file's value.
    /// Read once, before the agent starts (a reload does not change them).
    pub fn with_file_settings(mut self) -> Result<AgentOptions, String> {
        let Some(path) = &self.config_file else {
            return Ok(self);
        };
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file =
            FileStart::parse(&text).map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
        let given = |flag: &str| self.given.contains(&flag);
        if !given("snapshot") {
            self.state.snapshot = file.snapshot_path.map(PathBuf::from);
        }
        if !given("tags-file") {
            self.state.tags = file.tags_file.map(PathBuf::from);
        }
        // Serf appends the file's addresses to the flags'.
        self.retry_join.extend(file.retry_join);
        if let (false, Some(text)) = (given("retry-interval"), file.retry_interval) {
            self.retry_interval = parse_go_duration(&text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!("retry_interval: {text:?} is not a positive duration such as 30s")
                })?;
        }
        if let (false, Some(max)) = (given("retry-max"), file.retry_max) {
            self.retry_max = max;
        }
        Ok(self)
    }

    /// The snapshot file (`-snapshot`) as `Agent::restore_snapshot` takes it, read with
    /// the configuration's `rejoin_after_leave` and member bound; `None` without one.
    pub fn read_snapshot(&self, cfg: &Config) -> Result<Option<Snapshot>, String> {
        let max_members = cfg.cluster.as_ref().map_or_else(
            || ClusterLimits::default().max_members,
            |c| c.limits.max_members,
        );
        self.state
            .read_snapshot(cfg.rejoin_after_leave, max_members)
    }

    /// What the agent does once its listeners are up, the same in both runtimes: restore
    /// the snapshot (whose members it re-joins), then `-join`, `-join-wan` and
    /// `-retry-join` (the core joins, retries and logs the outcomes).
    pub fn start(&self, agent: &mut Agent, snapshot: Option<Snapshot>, now: Instant) {
        if let Some(snapshot) = snapshot {
            agent.restore_snapshot(snapshot, now);
        }
        for (addrs, wan) in [(&self.join, false), (&self.join_wan, true)] {
            if !addrs.is_empty() {
                let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
                agent.join(&addrs, wan, now);
            }
        }
        if !self.retry_join.is_empty() {
            let addrs: Vec<&str> = self.retry_join.iter().map(String::as_str).collect();
            let (interval, max) = (self.retry_interval, self.retry_max);
            agent.retry_join(&addrs, false, interval, max, now);
        }
    }

    /// The WARN lines announcing generated credentials (after [`AgentOptions::load_config`]
    /// generated them): the runtime logs them once, at start.
    pub fn generated_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(password) = self.generated.http.get() {
            out.push(format!(
                "agent: HTTP API bound to {} without credentials; generated password: \
                 {password} (user {DEFAULT_HTTP_USER}); give -http-auth, or -insecure to \
                 serve it open",
                self.http_addr
            ));
        }
        if let Some(key) = self.generated.rpc.get() {
            out.push(format!(
                "agent: RPC bound to {} without credentials; generated auth key: {key}; give \
                 -rpc-auth, or -insecure to serve it open",
                self.rpc_addr
            ));
        }
        out
    }

    /// The configuration to apply on SIGHUP or `reload`: [`AgentOptions::load_config`],
    /// keeping what the cluster was started with (bound gossip addresses, server mode,
    /// datacenter), which a running agent cannot change.
    pub fn reload_config(&self, running: &Config) -> Result<Config, String> {
        let mut cfg = self.load_config()?;
        cfg.lan_addr = running.lan_addr;
        cfg.wan_addr = running.wan_addr;
        cfg.server = running.server;
        cfg.datacenter.clone_from(&running.datacenter);
        Ok(cfg)
    }
}

/// The config file's keys that are the runtime's ([`FileKeys`], [`FileStart`]), not the
/// core's `Config`'s.
const FILE_ONLY_KEYS: &[&str] = &[
    "encrypt",
    "keyring",
    "encrypt_verify_incoming",
    "encrypt_verify_outgoing",
    "keyring_file",
    "snapshot_path",
    "tags_file",
    "retry_join",
    "retry_interval",
    "retry_max",
];

/// Reads Serf's keyring file: a JSON list of base64 keys, primary first. The errors are
/// Serf's agent's.
fn load_keyring_file(path: &std::path::Path) -> Result<Vec<GossipKey>, String> {
    let text = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("stat {}: no such file or directory", path.display())
        }
        _ => format!("Failed to read keyring file: {e}"),
    })?;
    let list: Vec<String> =
        serde_json::from_slice(&text).map_err(|e| format!("Failed to decode keyring file: {e}"))?;
    let mut keys = Vec::with_capacity(list.len());
    for text in &list {
        let raw = tandem_core::cluster::go_base64_decode(text).map_err(|at| {
            format!("Failed to decode key from keyring: illegal base64 data at input byte {at}")
        })?;
        let key = GossipKey::new(&raw).map_err(|e| match e {
            tandem_core::cluster::KeyError::Length(_) => {
                "Failed to restore keyring: key size must be 16, 24 or 32 bytes".to_string()
            }
            other => format!("Failed to restore keyring: {other}"),
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("Keyring file contains no keys".into());
    }
    if keys.len() > tandem_core::cluster::MAX_KEYS {
        return Err(format!(
            "Failed to restore keyring: more than {} keys",
            tandem_core::cluster::MAX_KEYS
        ));
    }
    Ok(keys)
}

/// The config file's settings of what the runtime does at start
/// ([`AgentOptions::with_file_settings`]); Serf's names.
#[derive(Debug, Default)]
struct FileStart {
    snapshot_path: Option<String>,
    tags_file: Option<String>,
    retry_join: Vec<String>,
    retry_interval: Option<String>,
    retry_max: Option<u32>,
}

impl FileStart {
    fn parse(text: &[u8]) -> Result<FileStart, String> {
        use serde_json::Value;
        let value: Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let field = |name: &str| value.get(name).filter(|v| !v.is_null());
        let string = |name: &str| -> Result<Option<String>, String> {
            field(name)
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .ok_or(format!("{name}: expected a string"))
                })
                .transpose()
        };
        let retry_join = match field("retry_join") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or("retry_join: expected a list of addresses")?,
            Some(_) => return Err("retry_join: expected a list of addresses".into()),
        };
        let retry_max = field("retry_max")
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or("retry_max: expected a count")
            })
            .transpose()?;
        Ok(FileStart {
            snapshot_path: string("snapshot_path")?,
            tags_file: string("tags_file")?,
            retry_join,
            retry_interval: string("retry_interval")?,
            retry_max,
        })
    }
}

/// The config file's JSON as the core's `Config`. A key that neither the core nor the
/// runtime reads is refused by name, its section included (`limits.max_sesions`), at start
/// and on reload alike: a misspelt setting is an error, not a default silently kept.
fn parse_config(text: &[u8]) -> Result<Config, String> {
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(text);
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let ignoring = serde_ignored::Deserializer::new(&mut de, &mut note);
    let cfg: Config = serde_path_to_error::deserialize(ignoring).map_err(|e| {
        // The section the error is in; a syntax error has no key (`?`) to name.
        let path = e.path().to_string();
        let path = path.trim_end_matches('?').trim_end_matches('.');
        let e = e.into_inner();
        if path.is_empty() {
            e.to_string()
        } else {
            format!("{path}: {e}")
        }
    })?;
    de.end().map_err(|e| e.to_string())?;
    match unknown
        .iter()
        .find(|k| !FILE_ONLY_KEYS.contains(&k.as_str()))
    {
        Some(key) => Err(format!("unknown configuration key {key:?}")),
        None => Ok(cfg),
    }
}

/// The config file's gossip keys, Consul's keys: `encrypt` (the primary key), `keyring`
/// (more keys accepted on receive; the first is primary when there is no `encrypt`),
/// `encrypt_verify_incoming` and `encrypt_verify_outgoing` (both default true).
#[derive(Debug)]
struct FileKeys {
    encrypt: Option<GossipKey>,
    keyring: Vec<GossipKey>,
    verify_incoming: bool,
    verify_outgoing: bool,
}

impl Default for FileKeys {
    fn default() -> Self {
        FileKeys {
            encrypt: None,
            keyring: Vec::new(),
            verify_incoming: true,
            verify_outgoing: true,
        }
    }
}

impl FileKeys {
    fn parse(text: &[u8]) -> Result<FileKeys, String> {
        let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let mut keys = FileKeys::default();
        let key = |field: &str, v: &serde_json::Value| {
            let text = v
                .as_str()
                .ok_or_else(|| format!("{field}: expected a base64 string"))?;
            GossipKey::from_base64(text).map_err(|e| format!("{field}: {e}"))
        };
        if let Some(v) = value.get("encrypt").filter(|v| !v.is_null()) {
            keys.encrypt = Some(key("encrypt", v)?);
        }
        match value.get("keyring") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(list)) => {
                for (i, v) in list.iter().enumerate() {
                    keys.keyring.push(key(&format!("keyring[{i}]"), v)?);
                }
            }
            Some(_) => return Err("keyring: expected a list of base64 keys".into()),
        }
        for (field, slot) in [
            ("encrypt_verify_incoming", &mut keys.verify_incoming),
            ("encrypt_verify_outgoing", &mut keys.verify_outgoing),
        ] {
            match value.get(field) {
                None | Some(serde_json::Value::Null) => {}
                Some(v) => {
                    *slot = v
                        .as_bool()
                        .ok_or(format!("{field}: expected true or false"))?
                }
            }
        }
        Ok(keys)
    }

    /// The keyring: `flag` (`-encrypt`) or the file's `encrypt` first, then `keyring`.
    fn keyring(&self, flag: Option<GossipKey>) -> Keyring {
        let keys: Vec<GossipKey> = flag
            .or(self.encrypt)
            .into_iter()
            .chain(self.keyring.iter().copied())
            .collect();
        self.keyring_of(keys)
    }

    /// A keyring of `keys` (primary first) with the file's verify flags.
    fn keyring_of(&self, keys: Vec<GossipKey>) -> Keyring {
        let mut keys = keys.into_iter();
        let Some(primary) = keys.next() else {
            return Keyring::default();
        };
        let mut ring = Keyring::new(primary, keys);
        ring.verify_incoming = self.verify_incoming;
        ring.verify_outgoing = self.verify_outgoing;
        ring
    }
}

/// Secrets generated for listeners bound beyond loopback without credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Generated {
    http: Secret,
    rpc: Secret,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generated")
            .field("http", &self.http.get().is_some())
            .field("rpc", &self.rpc.get().is_some())
            .finish()
    }
}

/// A secret made at most once (the first load that needs it); reloads keep it.
#[derive(Clone, Default, PartialEq, Eq)]
struct Secret(std::sync::OnceLock<String>);

impl Secret {
    fn get(&self) -> Option<&String> {
        self.0.get()
    }

    fn get_or_try(&self, make: fn() -> Result<String, String>) -> Result<String, String> {
        if let Some(s) = self.0.get() {
            return Ok(s.clone());
        }
        let made = make()?;
        Ok(self.0.get_or_init(|| made).clone())
    }
}

/// 128 bits of OS randomness as 32 hex digits.
fn random_secret() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("cannot read OS randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `-http-auth`'s `user:password` (split at the first colon), the agent's and `tandem
/// exec`'s alike; no colon: a password for the user `tandem`. An empty password is refused.
pub fn parse_http_auth(flag: &'static str, value: String) -> Result<HttpAuth, FlagError> {
    let auth = match value.split_once(':') {
        Some((user, pass)) => HttpAuth::new(user, pass),
        None => HttpAuth::new(DEFAULT_HTTP_USER, value.as_str()),
    };
    if auth.password.is_empty() {
        return Err(FlagError::Invalid {
            flag,
            value,
            reason: "the password must not be empty".into(),
        });
    }
    Ok(auth)
}

/// A boolean flag's value as Go's `strconv.ParseBool` reads it; no value is `true`.
fn parse_bool(flag: &'static str, value: Option<&str>) -> Result<bool, FlagError> {
    match value {
        None | Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(FlagError::Invalid {
            flag,
            value: other.to_string(),
            reason: "parse error".into(),
        }),
    }
}

fn parse_port(flag: &'static str, value: &str) -> Result<u16, FlagError> {
    value.parse().map_err(|_| FlagError::Invalid {
        flag,
        value: value.to_string(),
        reason: "expected a port number (0-65535)".into(),
    })
}

fn resolve(flag: &'static str, value: &str) -> Result<SocketAddr, FlagError> {
    let invalid = |reason: String| FlagError::Invalid {
        flag,
        value: value.to_string(),
        reason,
    };
    value
        .to_socket_addrs()
        .map_err(|e| invalid(e.to_string()))?
        .next()
        .ok_or_else(|| invalid("no address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn agent_flags_take_one_or_two_dashes_and_inline_values() {
        let opts = AgentOptions::parse(&words(
            "-http-addr 127.0.0.1:0 --rpc-addr=127.0.0.1:0 --node n1 -log-level=debug --config-file=/x.json",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(opts.http_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(opts.rpc_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(opts.node.as_deref(), Some("n1"));
        assert_eq!(opts.log_level, Some(Level::Debug));
        assert_eq!(opts.config_file, Some(PathBuf::from("/x.json")));
    }

    #[test]
    fn agent_defaults_to_the_arthas_port_on_loopback() {
        let opts = AgentOptions::parse(&[]).unwrap().unwrap();
        assert_eq!(opts.http_addr, DEFAULT_HTTP_ADDR.parse().unwrap());
        assert_eq!(opts.rpc_addr, DEFAULT_RPC_ADDR.parse().unwrap());
        assert_eq!(opts.log_level, None);
    }

    #[test]
    fn bad_command_lines_are_errors_in_gos_words() {
        let err = |s: &str| AgentOptions::parse(&words(s)).unwrap_err().to_string();
        assert_eq!(err("-bogus"), "flag provided but not defined: -bogus");
        assert_eq!(err("-node"), "flag needs an argument: -node");
        assert_eq!(
            err("-log-level LOUD"),
            "invalid value \"LOUD\" for flag -log-level: expected TRACE, DEBUG, INFO, WARN or ERR"
        );
        assert_eq!(err("extra"), "unexpected extra arguments: extra");
        assert!(err("-http-addr nonsense").starts_with("invalid value \"nonsense\""));
    }

    #[test]
    fn event_handlers_come_from_the_file_then_the_flags_and_bad_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("tandem-eh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.json");
        std::fs::write(&file, r#"{"event_handlers": ["user:deploy=d.sh"]}"#).unwrap();
        let args = vec![
            "-config-file".to_string(),
            file.display().to_string(),
            "-event-handler".into(),
            "member-join,member-leave=m.sh".into(),
            "-event-handler=all.sh".into(),
        ];
        let opts = AgentOptions::parse(&args).unwrap().unwrap();
        let cfg = opts.load_config().unwrap();
        assert_eq!(
            cfg.event_handlers,
            [
                "user:deploy=d.sh",
                "member-join,member-leave=m.sh",
                "all.sh"
            ]
        );
        assert_eq!(
            AgentOptions::parse(&words("-event-handler member-jion=x"))
                .unwrap_err()
                .to_string(),
            "invalid value \"member-jion=x\" for flag -event-handler: Invalid event script: \
             Event 'member-jion' invoking 'x'"
        );
        std::fs::write(&file, r#"{"event_handlers": ["bogus=x"]}"#).unwrap();
        let opts = AgentOptions::parse(&words(&format!("-config-file {}", file.display())))
            .unwrap()
            .unwrap();
        assert_eq!(
            opts.load_config().unwrap_err(),
            "Invalid event script: Event 'bogus' invoking 'x'"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tags_come_from_flags_or_from_the_tags_file() {
        let opts = AgentOptions::parse(&words("-tag a=1 -tag b=x=y"))
            .unwrap()
            .unwrap();
        let cfg = opts.load_config().unwrap();
        assert_eq!(cfg.tags.get("a").map(String::as_str), Some("1"));
        assert_eq!(cfg.tags.get("b").map(String::as_str), Some("x=y"));
        assert_eq!(
            AgentOptions::parse(&words("-tag nokey"))
                .unwrap_err()
                .to_string(),
            "invalid value \"nokey\" for flag -tag: expected key=value"
        );
        let dir = std::env::temp_dir().join(format!("tandem-tags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tags.json");
        let flag = format!("-tags-file {}", file.display());
        // No file yet: no tags, and the agent will write it.
        let opts = AgentOptions::parse(&words(&flag)).unwrap().unwrap();
        let cfg = opts.load_config().unwrap();
        assert!(cfg.tags.is_empty());
        assert!(cfg.state_files.tags);
        std::fs::write(&file, r#"{"team": "infra"}"#).unwrap();
        let cfg = opts.load_config().unwrap();
        assert_eq!(cfg.tags.get("team").map(String::as_str), Some("infra"));
        let both = AgentOptions::parse(&words(&format!("{flag} -tag a=1")))
            .unwrap()
            .unwrap();
        assert_eq!(
            both.load_config().unwrap_err(),
            "Tags config not allowed while using tag files"
        );
        std::fs::write(&file, "nonsense").unwrap();
        assert!(
            opts.load_config()
                .unwrap_err()
                .starts_with("Failed to decode tags file: ")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn serfs_start_keys_come_from_the_config_file_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("tandem-start-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.json");
        std::fs::write(
            &file,
            r#"{"snapshot_path": "/var/tandem/snap", "tags_file": "/var/tandem/tags.json",
                "retry_join": ["10.0.0.1", "10.0.0.2:8301"], "retry_interval": "5s",
                "retry_max": 3, "rejoin_after_leave": true, "replay_on_join": true}"#,
        )
        .unwrap();
        let with = |flags: &str| {
            let words = words(&format!("-config-file {} {flags}", file.display()));
            AgentOptions::parse(&words)
                .unwrap()
                .unwrap()
                .with_file_settings()
        };
        let opts = with("").unwrap();
        assert_eq!(opts.state.snapshot, Some(PathBuf::from("/var/tandem/snap")));
        assert_eq!(
            opts.state.tags,
            Some(PathBuf::from("/var/tandem/tags.json"))
        );
        assert_eq!(opts.retry_join, ["10.0.0.1", "10.0.0.2:8301"]);
        assert_eq!(opts.retry_interval, Duration::from_secs(5));
        assert_eq!(opts.retry_max, 3);
        let cfg = opts.load_config().unwrap();
        assert!(cfg.rejoin_after_leave && cfg.replay_on_join);
        assert!(cfg.state_files.snapshot && cfg.state_files.tags);
        // Flags win; -retry-join adds to the file's list, as Serf merges them.
        let opts = with(
            "-snapshot /tmp/s -tags-file /tmp/t -retry-join 10.0.0.9 -retry-interval 1m \
             -retry-max 0 -rejoin=false -replay=false",
        )
        .unwrap();
        assert_eq!(opts.state.snapshot, Some(PathBuf::from("/tmp/s")));
        assert_eq!(opts.state.tags, Some(PathBuf::from("/tmp/t")));
        assert_eq!(opts.retry_join, ["10.0.0.9", "10.0.0.1", "10.0.0.2:8301"]);
        assert_eq!(opts.retry_interval, Duration::from_secs(60));
        assert_eq!(opts.retry_max, 0);
        let cfg = opts.load_config().unwrap();
        assert!(!cfg.rejoin_after_leave && !cfg.replay_on_join);
        // Bad values are errors naming the key.
        for (json, why) in [
            (r#"{"retry_interval": "soon"}"#, "retry_interval"),
            (r#"{"retry_interval": "0s"}"#, "retry_interval"),
            (r#"{"retry_join": "10.0.0.1"}"#, "retry_join"),
            (r#"{"retry_max": -1}"#, "retry_max"),
            (r#"{"snapshot_path": 7}"#, "snapshot_path"),
        ] {
            std::fs::write(&file, json).unwrap();
            let err = with("").unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
        // Without a file nothing changes; the keys are no unknown keys.
        let opts = AgentOptions::parse(&words("-snapshot /tmp/s"))
            .unwrap()
            .unwrap()
            .with_file_settings()
            .unwrap();
        assert_eq!(opts.state.snapshot, Some(PathBuf::from("/tmp/s")));
        std::fs::write(&file, r#"{"snapshot_path": "/x", "colour": 1}"#).unwrap();
        let err = with("").unwrap().load_config().unwrap_err();
        assert!(
            err.contains("unknown configuration key \"colour\""),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retry_join_flags_parse_with_serfs_defaults_and_bad_values_are_refused() {
        let opts = AgentOptions::parse(&[]).unwrap().unwrap();
        assert_eq!(opts.retry_interval, Duration::from_secs(30));
        assert_eq!(opts.retry_max, 0);
        let opts = AgentOptions::parse(&words(
            "-retry-join a:1 -retry-join 10.0.0.2 -retry-interval 1m30s -retry-max 3",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(opts.retry_join, ["a:1", "10.0.0.2"]);
        assert_eq!(opts.retry_interval, Duration::from_secs(90));
        assert_eq!(opts.retry_max, 3);
        for bad in [
            "-retry-interval 0",
            "-retry-interval 5",
            "-retry-max -1",
            "-retry-max x",
        ] {
            assert!(AgentOptions::parse(&words(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn rpc_auth_sets_the_configs_key() {
        let opts = AgentOptions::parse(&words("-rpc-auth s3cret"))
            .unwrap()
            .unwrap();
        assert_eq!(
            opts.load_config().unwrap().rpc_auth.as_deref(),
            Some("s3cret")
        );
        let open = AgentOptions::parse(&[]).unwrap().unwrap();
        assert_eq!(open.load_config().unwrap().rpc_auth, None);
    }

    #[test]
    fn gossip_flags_set_the_cluster_config() {
        let opts = AgentOptions::parse(&words(
            "-bind 127.0.0.2 -lan-port 0 -wan-port=9302 -server -datacenter dc7 \
             -join a -join 127.0.0.1:7 -join-wan b",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(opts.join, ["a", "127.0.0.1:7"]);
        assert_eq!(opts.join_wan, ["b"]);
        let cfg = opts.load_config().unwrap();
        assert_eq!(cfg.lan_addr, "127.0.0.2:0".parse().unwrap());
        assert_eq!(cfg.wan_addr, "127.0.0.2:9302".parse().unwrap());
        assert!(cfg.server);
        assert_eq!(cfg.datacenter, "dc7");
        let client = AgentOptions::parse(&words("-server=false"))
            .unwrap()
            .unwrap()
            .load_config()
            .unwrap();
        assert!(!client.server);
    }

    #[test]
    fn gossip_defaults_are_serfs_ports_on_loopback() {
        let cfg = AgentOptions::parse(&[])
            .unwrap()
            .unwrap()
            .load_config()
            .unwrap();
        assert_eq!(
            cfg.lan_addr,
            SocketAddr::from(([127, 0, 0, 1], DEFAULT_LAN_PORT))
        );
        assert_eq!(
            cfg.wan_addr,
            SocketAddr::from(([127, 0, 0, 1], DEFAULT_WAN_PORT))
        );
        assert!(!cfg.server);
        assert_eq!(cfg.datacenter, "dc1");
    }

    #[test]
    fn bad_gossip_flags_are_errors() {
        let err = |s: &str| AgentOptions::parse(&words(s)).unwrap_err().to_string();
        assert_eq!(
            err("-bind localhost"),
            "invalid value \"localhost\" for flag -bind: expected an IP address"
        );
        assert_eq!(
            err("-lan-port 70000"),
            "invalid value \"70000\" for flag -lan-port: expected a port number (0-65535)"
        );
        assert_eq!(
            err("-server=maybe"),
            "invalid value \"maybe\" for flag -server: parse error"
        );
        assert_eq!(
            err("-datacenter="),
            "invalid value \"\" for flag -datacenter: must not be empty"
        );
    }

    #[test]
    fn the_files_gossip_addresses_are_the_defaults_of_the_flags() {
        let dir =
            std::env::temp_dir().join(format!("tandem-runtime-gossip-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cfg.json");
        std::fs::write(
            &path,
            r#"{"lan_addr":"127.0.0.3:7301","wan_addr":"127.0.0.3:7302","server":true,
                "datacenter":"east","tags":{"rack":"r1"}}"#,
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let cfg = |flags: &str| {
            AgentOptions::parse(&words(&format!("-config-file {file} {flags}")))
                .unwrap()
                .unwrap()
                .load_config()
                .unwrap()
        };
        let plain = cfg("");
        assert_eq!(plain.lan_addr, "127.0.0.3:7301".parse().unwrap());
        assert_eq!(plain.wan_addr, "127.0.0.3:7302".parse().unwrap());
        assert!(plain.server);
        assert_eq!(plain.datacenter, "east");
        assert_eq!(plain.tags["rack"], "r1");
        let flagged = cfg("-bind 127.0.0.4 -lan-port 0 -server=false -datacenter west");
        assert_eq!(flagged.lan_addr, "127.0.0.4:0".parse().unwrap());
        assert_eq!(flagged.wan_addr, "127.0.0.4:7302".parse().unwrap());
        assert!(!flagged.server);
        assert_eq!(flagged.datacenter, "west");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reload_keeps_the_clusters_identity() {
        let opts = AgentOptions::parse(&words("-server -datacenter dc2"))
            .unwrap()
            .unwrap();
        let mut running = opts.load_config().unwrap();
        running.lan_addr = "127.0.0.1:40001".parse().unwrap();
        running.wan_addr = "127.0.0.1:40002".parse().unwrap();
        let reloaded = opts.reload_config(&running).unwrap();
        assert_eq!(reloaded.lan_addr, running.lan_addr);
        assert_eq!(reloaded.wan_addr, running.wan_addr);
        assert!(reloaded.server);
        assert_eq!(reloaded.datacenter, "dc2");
    }

    #[test]
    fn the_agent_usage_lists_every_flag() {
        let text = agent_usage("tandem");
        for flag in [
            "-bind=",
            "-lan-port=",
            "-wan-port=",
            "-server\n",
            "-datacenter=",
            "-join=",
            "-join-wan=",
            "-encrypt=",
            "-node=",
            "-http-addr=",
            "-rpc-addr=",
        ] {
            assert!(text.contains(flag), "{flag} missing from:\n{text}");
        }
    }

    #[test]
    fn the_agent_usage_differs_between_runtimes_only_in_the_program_name() {
        let smol = agent_usage("tandem");
        assert!(smol.starts_with(
            "Usage: tandem agent [options]\n\n  Starts the tandem agent and runs until an \
             interrupt (SIGINT) or SIGTERM is received, or\n  until a graceful `leave`"
        ));
        assert!(smol.contains("start).\n\nOptions:\n\n  -http-addr=<address>\n      Address"));
        assert_eq!(
            agent_usage("tandem-mio"),
            smol.replacen("Usage: tandem agent", "Usage: tandem-mio agent", 1)
        );
    }

    #[test]
    fn http_auth_flags_set_the_config() {
        let cfg = AgentOptions::parse(&words("-http-auth admin:pa:ss -http-local-trust"))
            .unwrap()
            .unwrap()
            .load_config()
            .unwrap();
        assert_eq!(cfg.http_auth, Some(HttpAuth::new("admin", "pa:ss")));
        assert!(cfg.http_local_trust);
        let cfg = AgentOptions::parse(&words("-http-auth secret"))
            .unwrap()
            .unwrap()
            .load_config()
            .unwrap();
        assert_eq!(cfg.http_auth, Some(HttpAuth::new("tandem", "secret")));
        assert!(!cfg.http_local_trust);
        let err = AgentOptions::parse(&words("-http-auth admin:")).unwrap_err();
        assert!(err.to_string().contains("must not be empty"), "{err}");
    }

    #[test]
    fn non_loopback_listeners_get_a_generated_secret_once() {
        let loopback = AgentOptions::parse(&[]).unwrap().unwrap();
        let cfg = loopback.load_config().unwrap();
        assert_eq!((cfg.http_auth, cfg.rpc_auth), (None, None));
        assert!(loopback.generated_warnings().is_empty());

        let open = AgentOptions::parse(&words("-http-addr 0.0.0.0:0 -rpc-addr 0.0.0.0:0"))
            .unwrap()
            .unwrap();
        let first = open.load_config().unwrap();
        let auth = first.http_auth.clone().unwrap();
        assert_eq!(auth.username, "tandem");
        assert_eq!(auth.password.len(), 32);
        let key = first.rpc_auth.clone().unwrap();
        assert_ne!(auth.password, key);
        // A reload keeps them.
        let again = open.reload_config(&first).unwrap();
        assert_eq!(again.http_auth, first.http_auth);
        assert_eq!(again.rpc_auth, first.rpc_auth);
        let warnings = open.generated_warnings();
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains(&auth.password) && warnings[0].contains("0.0.0.0:0"));
        assert!(warnings[1].contains(&key));
        assert!(!format!("{open:?}").contains(&key), "a secret in Debug");

        // Given credentials, or -insecure: nothing is generated.
        let given = AgentOptions::parse(&words(
            "-http-addr 0.0.0.0:0 -rpc-addr 0.0.0.0:0 -http-auth u:p -rpc-auth k",
        ))
        .unwrap()
        .unwrap();
        let cfg = given.load_config().unwrap();
        assert_eq!(cfg.http_auth, Some(HttpAuth::new("u", "p")));
        assert_eq!(cfg.rpc_auth.as_deref(), Some("k"));
        assert!(given.generated_warnings().is_empty());
        let insecure = AgentOptions::parse(&words("-http-addr 0.0.0.0:0 -insecure"))
            .unwrap()
            .unwrap();
        assert_eq!(insecure.load_config().unwrap().http_auth, None);
    }

    const K1: &str = "cg8StVXbQJ0gPvMd9o7yrg==";
    const K2: &str = "4le7lQ6gdMk3lwc7sAL/mq3j5JfCk8l1AdVaVyebO6I=";
    const K3: &str = "HvY8ubRZMgafUOWvrOadwOckVa1wN3QWAo46FVKbVN8=";

    fn keyring(cfg: &Config) -> Keyring {
        cfg.cluster.clone().unwrap_or_default().keyring
    }

    fn key(text: &str) -> GossipKey {
        GossipKey::from_base64(text).unwrap()
    }

    #[test]
    fn the_keyring_file_is_loaded_with_serfs_rules_and_errors() {
        let dir = std::env::temp_dir().join(format!("tandem-keyring-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ring_path = dir.join("keyring.json");
        let ring_file = ring_path.display().to_string();
        let flag = format!("-keyring-file {ring_file}");
        let opts = |extra: &str| {
            AgentOptions::parse(&words(&format!("{flag} {extra}")))
                .unwrap()
                .unwrap()
        };
        // Serf: the file must exist.
        assert_eq!(
            opts("").load_config().unwrap_err(),
            format!("stat {ring_file}: no such file or directory")
        );
        std::fs::write(&ring_path, format!("[\"{K2}\", \"{K1}\"]")).unwrap();
        let loaded = opts("");
        let cfg = loaded.load_config().unwrap();
        assert_eq!(keyring(&cfg).keys(), [key(K2), key(K1)], "primary first");
        assert!(cfg.state_files.keyring);
        assert_eq!(
            loaded.start_notes(),
            [format!(
                "agent: Restored keyring with 2 keys from {ring_file}"
            )]
        );
        // Never together with another source of keys.
        let refused = "Encryption key not allowed while using a keyring";
        assert_eq!(
            opts(&format!("-encrypt {K3}")).load_config().unwrap_err(),
            refused
        );
        let cfg_path = dir.join("cfg.json");
        let cfg_file = cfg_path.display().to_string();
        for json in [
            format!(r#"{{"encrypt":"{K3}"}}"#),
            format!(r#"{{"keyring":["{K3}"]}}"#),
        ] {
            std::fs::write(&cfg_path, json).unwrap();
            let err = opts(&format!("-config-file {cfg_file}")).load_config();
            assert_eq!(err.unwrap_err(), refused);
        }
        // The config file's keyring_file, when no flag names one.
        std::fs::write(
            &cfg_path,
            format!(r#"{{"keyring_file":"{ring_file}","encrypt_verify_incoming":false}}"#),
        )
        .unwrap();
        let from_file = AgentOptions::parse(&words(&format!("-config-file {cfg_file}")))
            .unwrap()
            .unwrap();
        assert_eq!(
            from_file.state.keyring.as_deref(),
            Some(ring_path.as_path())
        );
        let ring = keyring(&from_file.load_config().unwrap());
        assert_eq!(ring.primary(), Some(&key(K2)));
        assert!(!ring.verify_incoming, "the verify flags still apply");
        for (content, want) in [
            ("[]", "Keyring file contains no keys".to_string()),
            ("{", "Failed to decode keyring file: ".to_string()),
            (
                r#"["notbase64!"]"#,
                "Failed to decode key from keyring: illegal base64 data at input byte 9"
                    .to_string(),
            ),
            (
                r#"["AAAA"]"#,
                "Failed to restore keyring: key size must be 16, 24 or 32 bytes".to_string(),
            ),
        ] {
            std::fs::write(&ring_path, content).unwrap();
            let err = opts("").load_config().unwrap_err();
            assert!(err.starts_with(&want), "{content}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn encrypt_and_the_files_keyring_make_the_gossip_keyring() {
        let plain = AgentOptions::parse(&[]).unwrap().unwrap();
        assert!(!keyring(&plain.load_config().unwrap()).is_enabled());

        let flag = AgentOptions::parse(&words(&format!("-encrypt {K1}")))
            .unwrap()
            .unwrap();
        let ring = keyring(&flag.load_config().unwrap());
        assert_eq!(ring.keys(), [key(K1)]);
        assert!(ring.verify_incoming && ring.verify_outgoing);
        assert!(!format!("{flag:?}").contains(K1), "a key in Debug");

        let dir = std::env::temp_dir().join(format!("tandem-runtime-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cfg.json");
        let file = path.to_str().unwrap();
        let load = |json: &str, flags: &str| {
            std::fs::write(&path, json).unwrap();
            AgentOptions::parse(&words(&format!("-config-file {file} {flags}")))
                .unwrap()
                .unwrap()
                .load_config()
        };
        let json = format!(r#"{{"encrypt":"{K2}","keyring":["{K1}","{K2}"]}}"#);
        let ring = keyring(&load(&json, "").unwrap());
        assert_eq!(
            ring.keys(),
            [key(K2), key(K1)],
            "primary first, no duplicates"
        );
        // -encrypt replaces the file's primary; the keyring stays accepted.
        let ring = keyring(&load(&json, &format!("-encrypt {K3}")).unwrap());
        assert_eq!(ring.keys(), [key(K3), key(K1), key(K2)]);
        // Without `encrypt`, the keyring's first key is primary.
        let ring = keyring(&load(&format!(r#"{{"keyring":["{K1}"]}}"#), "").unwrap());
        assert_eq!(ring.primary(), Some(&key(K1)));
        let json = format!(
            r#"{{"encrypt":"{K1}","encrypt_verify_incoming":false,"encrypt_verify_outgoing":false}}"#
        );
        let ring = keyring(&load(&json, "").unwrap());
        assert!(!ring.verify_incoming && !ring.verify_outgoing);

        for (json, want) in [
            (
                r#"{"encrypt":"AAAA"}"#.to_string(),
                "encrypt: the key is 3 bytes",
            ),
            (
                r#"{"encrypt":"%%%"}"#.to_string(),
                "encrypt: the key is not valid base64",
            ),
            (
                r#"{"encrypt":7}"#.to_string(),
                "encrypt: expected a base64 string",
            ),
            (
                format!(r#"{{"keyring":["{K1}","x"]}}"#),
                "keyring[1]: the key is not valid",
            ),
            (r#"{"keyring":"x"}"#.to_string(), "keyring: expected a list"),
            (
                format!(r#"{{"encrypt":"{K1}","encrypt_verify_incoming":"no"}}"#),
                "encrypt_verify_incoming: expected true or false",
            ),
        ] {
            let err = load(&json, "").unwrap_err();
            assert!(
                err.starts_with("cannot parse ") && err.contains(want),
                "{json}: {err}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_encrypt_flag_is_a_clear_error() {
        let err = |s: &str| AgentOptions::parse(&words(s)).unwrap_err().to_string();
        assert_eq!(
            err("-encrypt AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            "invalid value \"<redacted>\" for flag -encrypt: the key is 20 bytes; it must be \
             16, 24 or 32 bytes (AES-128, -192 or -256)"
        );
        assert_eq!(
            err("-encrypt not-base64"),
            "invalid value \"<redacted>\" for flag -encrypt: the key is not valid base64"
        );
    }

    #[test]
    fn help_is_not_an_error() {
        assert_eq!(AgentOptions::parse(&words("-help")).unwrap(), None);
        assert_eq!(AgentOptions::parse(&words("-h")).unwrap(), None);
        assert_eq!(AgentOptions::parse(&words("--help")).unwrap(), None);
    }

    #[test]
    fn unknown_config_keys_are_refused_by_name_in_every_section() {
        let dir = std::env::temp_dir().join(format!(
            "tandem-runtime-unknown-keys-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cfg.json");
        let mut opts = AgentOptions::parse(&[]).unwrap().unwrap();
        opts.config_file = Some(path.clone());
        let p = path.display();
        for (text, error) in [
            (
                r#"{"node_nmae":"x"}"#,
                format!(r#"cannot parse {p}: unknown configuration key "node_nmae""#),
            ),
            (
                r#"{"limits":{"max_sesions":5}}"#,
                format!("cannot parse {p}: limits.max_sesions: unknown field `max_sesions`"),
            ),
            (
                r#"{"timing":{"pull_timeout":5}}"#,
                format!("cannot parse {p}: timing.pull_timeout: unknown field `pull_timeout`"),
            ),
            (
                r#"{"http_auth":{"password":"p","user":"u"}}"#,
                format!("cannot parse {p}: http_auth.user: unknown field `user`"),
            ),
            (
                "{ not json",
                format!("cannot parse {p}: key must be a string at line 1 column 3"),
            ),
            (
                r#"{"host":{"pid":1}}"#,
                format!(r#"cannot parse {p}: unknown configuration key "host""#),
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let got = opts.load_config().unwrap_err();
            assert!(got.starts_with(&error), "{text}: {got}");
            let running = Config::default();
            assert_eq!(
                opts.reload_config(&running).unwrap_err(),
                got,
                "on reload too"
            );
        }
        // The runtime's own keys and free-form tags are no unknown keys.
        std::fs::write(
            &path,
            r#"{"encrypt_verify_incoming":true,"encrypt_verify_outgoing":true,"keyring":[],"tags":{"any":"x"}}"#,
        )
        .unwrap();
        assert_eq!(opts.load_config().unwrap().tags["any"], "x");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = std::env::temp_dir().join(format!("tandem-runtime-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cfg.json");
        std::fs::write(
            &path,
            r#"{"node_name":"from-file","log_level":"WARN","timing":{"pull_timeout_ms":500}}"#,
        )
        .unwrap();
        let mut opts = AgentOptions::parse(&words("-node from-flag"))
            .unwrap()
            .unwrap();
        opts.config_file = Some(path.clone());
        let cfg = opts.load_config().unwrap();
        assert_eq!(cfg.node_name, "from-flag");
        assert_eq!(cfg.log_level, Level::Warn);
        assert_eq!(cfg.timing.pull_timeout_ms, 500);
        std::fs::write(&path, "{not json").unwrap();
        assert!(opts.load_config().unwrap_err().starts_with("cannot parse"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Options reading `text` as their config file (in a directory of their own).
    fn with_file(tag: &str, text: &str) -> (AgentOptions, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "tandem-runtime-validate-{tag}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cfg.json");
        std::fs::write(&path, text).unwrap();
        let mut opts = AgentOptions::parse(&[]).unwrap().unwrap();
        opts.config_file = Some(path.clone());
        (opts, dir)
    }

    #[test]
    fn a_limit_beyond_its_bound_is_refused_at_start_and_on_reload() {
        let (opts, dir) = with_file("bound", r#"{"limits":{"max_body":1099511627776}}"#);
        let err = opts.load_config().unwrap_err();
        assert!(err.starts_with("invalid configuration ("), "{err}");
        assert!(
            err.ends_with("limits.max_body: 1099511627776 is out of range (from 1 to 67108864)"),
            "{err}"
        );
        let running = Config::default();
        assert_eq!(opts.reload_config(&running).unwrap_err(), err);
        let path = opts.config_file.clone().unwrap();
        std::fs::write(&path, r#"{"timing":{"exec_timeout_ms":0}}"#).unwrap();
        let err = opts.load_config().unwrap_err();
        assert!(err.ends_with("timing.exec_timeout_ms: 0 is out of range (from 1 to 86400000)"));
        std::fs::write(&path, r#"{"limits":{"max_body":67108864}}"#).unwrap();
        assert_eq!(opts.load_config().unwrap().limits.max_body, 64 << 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_credentials_in_the_file_are_refused_like_the_flags() {
        for (text, key) in [
            (
                r#"{"http_auth":{"username":"","password":""}}"#,
                "http_auth.password",
            ),
            (r#"{"http_auth":{"password":""}}"#, "http_auth.password"),
            (r#"{"rpc_auth":""}"#, "rpc_auth"),
        ] {
            let (opts, dir) = with_file("creds", text);
            let err = opts.load_config().unwrap_err();
            assert!(
                err.ends_with(&format!("{key}: must not be empty")),
                "{text}: {err}"
            );
            assert!(opts.reload_config(&Config::default()).is_err());
            let _ = std::fs::remove_dir_all(&dir);
        }
        // The flag refuses an empty -rpc-auth the same way.
        let opts = AgentOptions::parse(&["-rpc-auth=".to_string()])
            .unwrap()
            .unwrap();
        assert_eq!(
            opts.load_config().unwrap_err(),
            "invalid configuration: rpc_auth: must not be empty"
        );
    }
}
