//! Cluster-wide jobs on the simulated network: whole agents gossip over the virtual network
//! ([`crate::netsim`]), their peer streams ([`Listener::Peer`]) are carried between them as
//! a reliable, ordered TCP stand-in (bytes move as fast as the receiver takes them, so
//! back-pressure is real), and a scripted host answers their host jobs. Everything runs on
//! the virtual clock and one seed.
//!
//! Used by `tests/tests/cluster_jobs.rs` and `cargo bench -p tandem-tests --bench
//! cluster_jobs`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use tandem_core::{
    Agent, CommandInfo, Config, ConnId, Effect, Instant, JobError, JobId, Listener, Output, Pool,
};

use crate::http::{post_api, take_responses};
use crate::netsim::{Net, NetConfig, SimNode, lan_addr, node_name};
use crate::netsim_agent::AgentEvent;

/// The host command every simulated agent registers.
pub const WORK: &str = "work";

/// An agent with the outputs the harness still has to act on.
pub struct JobNode {
    /// The agent.
    pub agent: Agent,
    outputs: Vec<Output>,
}

impl SimNode for JobNode {
    type Event = AgentEvent;
    fn handle_datagram(&mut self, pool: Pool, from: SocketAddr, data: &[u8], now: Instant) {
        self.agent.handle_datagram(pool, from, data, now);
    }
    fn poll_datagram(&mut self) -> Option<(Pool, SocketAddr, Vec<u8>)> {
        self.agent.poll_datagram()
    }
    fn poll_event(&mut self) -> Option<AgentEvent> {
        loop {
            match self.agent.poll_output()? {
                Output::Datagram => continue,
                other => {
                    let text = format!("{other:?}");
                    self.outputs.push(other);
                    return Some(AgentEvent(text));
                }
            }
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.agent.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.agent.handle_timeout(now);
    }
}

/// What a node's host does with a `work` job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// Produces this many items, then finishes with status 0.
    Items(usize),
    /// Produces this many items, then runs until cancelled.
    Hang(usize),
    /// Produces this many items, then finishes with status 3.
    Fail(usize),
}

#[derive(Debug)]
struct HostRun {
    job: JobId,
    made: usize,
    blocked: bool,
}

/// A started host job, as the harness saw its `StartJob`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// The node's index.
    pub node: usize,
    /// Its job id there.
    pub job: JobId,
    /// The arguments.
    pub args: Vec<String>,
}

/// The simulated cluster.
pub struct JobCluster {
    /// The network and its agents.
    pub sim: Net<JobNode>,
    /// Per node, what its host does.
    pub scripts: Vec<Script>,
    /// Every `StartJob` seen.
    pub started: Vec<Started>,
    /// Every `CancelJob` seen: (node, job).
    pub cancelled: Vec<(usize, JobId)>,
    /// Streams dialed: (node, conn) → the other end.
    links: HashMap<(usize, ConnId), (usize, ConnId)>,
    /// Bytes a closed end had sent and its peer has not taken yet (the kernel's buffers),
    /// then EOF: (receiver, its conn, bytes).
    closed: Vec<(usize, ConnId, Vec<u8>)>,
    runs: Vec<Vec<HostRun>>,
    /// Bytes delivered over peer streams.
    pub stream_bytes: u64,
}

/// Agent `i`'s configuration: name, LAN address, `enable_remote_exec`.
pub fn job_config(i: usize, enable: bool) -> Config {
    Config {
        node_name: node_name(i),
        lan_addr: lan_addr(i),
        enable_remote_exec: enable,
        ..Config::default()
    }
}

impl JobCluster {
    /// `configs.len()` agents on `net`, each registering `work`, all joined to agent 0 and
    /// run until every one sees every other alive (at most 120 s of virtual time).
    pub fn new(configs: Vec<Config>, net: NetConfig, seed: u64) -> JobCluster {
        let n = configs.len();
        let mut sim = Net::new(net, crate::netsim::START);
        sim.record_events = false;
        for (i, cfg) in configs.into_iter().enumerate() {
            let mut agent = Agent::new(cfg, seed + i as u64, sim.now);
            agent
                .register_command(CommandInfo::new(WORK, "Test work", "work [ARGS]"))
                .expect("register");
            sim.add(
                JobNode {
                    agent,
                    outputs: Vec::new(),
                },
                lan_addr(i),
                None,
            );
        }
        let mut c = JobCluster {
            sim,
            scripts: vec![Script::Items(3); n],
            started: Vec::new(),
            cancelled: Vec::new(),
            links: HashMap::new(),
            closed: Vec::new(),
            runs: (0..n).map(|_| Vec::new()).collect(),
            stream_bytes: 0,
        };
        let seed_addr = lan_addr(0).to_string();
        for i in 1..n {
            c.sim
                .with(i, |node, now| node.agent.join(&[&seed_addr], false, now));
        }
        c.settle();
        let mut left = Duration::from_secs(120);
        while !c.converged() && !left.is_zero() {
            c.run_for(Duration::from_millis(200));
            left = left.saturating_sub(Duration::from_millis(200));
        }
        assert!(c.converged(), "the cluster did not converge");
        c
    }

    /// Every live agent sees every live agent alive.
    pub fn converged(&self) -> bool {
        let alive = self.sim.alive();
        alive.iter().all(|&i| {
            self.sim
                .node(i)
                .agent
                .cluster()
                .status_counts(Pool::Lan)
                .alive
                >= alive.len()
        })
    }

    /// Runs for `d` of virtual time, carrying streams and host jobs as it goes.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.sim.now + d;
        while self.sim.step(end) {
            self.settle();
        }
        self.settle();
    }

    /// Runs until `cond` holds or `limit` of virtual time passed; returns the time taken.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&mut JobCluster) -> bool,
    ) -> Option<Duration> {
        let start = self.sim.now;
        let end = start + limit;
        loop {
            if cond(self) {
                return Some(self.sim.now - start);
            }
            if self.sim.now >= end {
                return None;
            }
            let t = (self.sim.now + Duration::from_millis(10)).min(end);
            while self.sim.step(t) {
                self.settle();
            }
            self.settle();
        }
    }

    /// Kills node `i`: it is no longer driven, and its streams break (a reset, as the
    /// kernel of a killed process sends).
    pub fn kill(&mut self, i: usize) {
        self.sim.kill(i);
        let broken: Vec<((usize, ConnId), (usize, ConnId))> = self
            .links
            .iter()
            .filter(|(a, _)| a.0 == i)
            .map(|(a, b)| (*a, *b))
            .collect();
        for (a, b) in broken {
            self.links.remove(&a);
            self.links.remove(&b);
            self.sim.with(b.0, |n, now| n.agent.handle_reset(b.1, now));
        }
        self.runs[i].clear();
        self.settle();
    }

    /// Acts on every output and moves stream bytes until nothing more happens.
    pub fn settle(&mut self) {
        loop {
            let mut progress = false;
            for i in self.sim.alive() {
                let outputs = self.sim.with(i, |n, _| std::mem::take(&mut n.outputs));
                for out in outputs {
                    progress = true;
                    self.act(i, out);
                }
            }
            progress |= self.pump();
            progress |= self.host();
            if !progress {
                break;
            }
        }
    }

    fn act(&mut self, i: usize, out: Output) {
        match out {
            Output::Effect(Effect::Connect { conn, addr }) => {
                let to = (0..self.sim.len())
                    .find(|&j| self.sim.is_alive(j) && self.sim.addr(j, Pool::Lan) == Some(addr));
                let from = self.sim.addr(i, Pool::Lan);
                let accepted = to.map(|j| {
                    (
                        j,
                        self.sim
                            .with(j, |n, now| n.agent.accept(Listener::Peer, from, now)),
                    )
                });
                match accepted {
                    Some((j, Ok(other))) => {
                        self.links.insert((i, conn), (j, other));
                        self.links.insert((j, other), (i, conn));
                    }
                    _ => self.sim.with(i, |n, now| n.agent.handle_reset(conn, now)),
                }
            }
            Output::Close(conn) => {
                // Flush, then close: the other end reads what was sent, then EOF.
                let rest = self.sim.node(i).agent.tx_pending(conn).to_vec();
                let other = self.links.remove(&(i, conn));
                self.sim.with(i, |n, now| n.agent.handle_reset(conn, now));
                if let Some(other) = other {
                    self.links.remove(&other);
                    self.closed.push((other.0, other.1, rest));
                }
            }
            Output::Effect(Effect::StartJob { job, command, args }) => {
                assert_eq!(command, WORK, "only registered commands run");
                self.started.push(Started { node: i, job, args });
                self.runs[i].push(HostRun {
                    job,
                    made: 0,
                    blocked: false,
                });
            }
            Output::Effect(Effect::CancelJob(job)) => {
                self.cancelled.push((i, job));
                self.runs[i].retain(|r| r.job != job);
            }
            Output::Effect(Effect::JobWritable(job)) => {
                for r in &mut self.runs[i] {
                    if r.job == job {
                        r.blocked = false;
                    }
                }
            }
            _ => {}
        }
    }

    /// Moves bytes along every stream as far as the receivers take them.
    fn pump(&mut self) -> bool {
        let mut progress = false;
        let mut links: Vec<((usize, ConnId), (usize, ConnId))> =
            self.links.iter().map(|(a, b)| (*a, *b)).collect();
        links.sort();
        let mut k = 0;
        while k < self.closed.len() {
            let (to, conn) = (self.closed[k].0, self.closed[k].1);
            if !self.sim.is_alive(to) {
                self.closed.remove(k);
                continue;
            }
            let bytes = std::mem::take(&mut self.closed[k].2);
            let n = if bytes.is_empty() {
                0
            } else {
                self.sim
                    .with(to, |node, now| node.agent.handle_stream(conn, &bytes, now))
            };
            self.stream_bytes += n as u64;
            if n == bytes.len() {
                self.closed.remove(k);
                self.sim
                    .with(to, |node, now| node.agent.handle_eof(conn, now));
                progress = true;
                continue;
            }
            progress |= n > 0;
            self.closed[k].2 = bytes[n..].to_vec();
            k += 1;
        }
        for (a, b) in links {
            if !self.sim.is_alive(a.0) || !self.sim.is_alive(b.0) {
                continue;
            }
            let bytes = self.sim.node(a.0).agent.tx_pending(a.1).to_vec();
            if bytes.is_empty() {
                continue;
            }
            let n = self
                .sim
                .with(b.0, |node, now| node.agent.handle_stream(b.1, &bytes, now));
            if n > 0 {
                progress = true;
                self.stream_bytes += n as u64;
                self.sim
                    .with(a.0, |node, now| node.agent.tx_consume(a.1, n, now));
            }
        }
        progress
    }

    /// Host jobs produce what their script says.
    fn host(&mut self) -> bool {
        let mut progress = false;
        for i in self.sim.alive() {
            let script = self.scripts[i];
            let mut k = 0;
            while k < self.runs[i].len() {
                let r = &self.runs[i][k];
                let (job, made, blocked) = (r.job, r.made, r.blocked);
                let (items, finish) = match script {
                    Script::Items(n) => (n, Some(0)),
                    Script::Fail(n) => (n, Some(3)),
                    Script::Hang(n) => (n, None),
                };
                if blocked {
                    k += 1;
                    continue;
                }
                if made < items {
                    let item = serde_json::json!({
                        "type": "message",
                        "message": format!("{} line {made}", node_name(i)),
                    });
                    match self
                        .sim
                        .with(i, |n, now| n.agent.job_output(job, &item, now))
                    {
                        Ok(()) => self.runs[i][k].made += 1,
                        Err(JobError::Full) => self.runs[i][k].blocked = true,
                        Err(_) => {
                            self.runs[i].remove(k);
                            progress = true;
                            continue;
                        }
                    }
                    progress = true;
                    continue;
                }
                if let Some(code) = finish {
                    self.sim
                        .with(i, |n, now| n.agent.job_finished(job, code, None, now));
                    self.runs[i].remove(k);
                    progress = true;
                    continue;
                }
                k += 1;
            }
        }
        progress
    }

    /// Items node `i`'s running host jobs have produced so far.
    pub fn produced(&self, i: usize) -> usize {
        self.runs[i].iter().map(|r| r.made).sum()
    }

    /// Sends `POST /api` with `body` to agent `i` on a new connection; returns it.
    pub fn request(&mut self, i: usize, body: &str) -> ConnId {
        let req = post_api(body);
        let conn = self.sim.with(i, |n, now| {
            let c = n.agent.accept(Listener::Http, None, now).expect("accept");
            assert_eq!(n.agent.handle_stream(c, &req, now), req.len());
            c
        });
        self.settle();
        conn
    }

    /// The answer on an HTTP connection of agent `i`, once complete (taken off it).
    pub fn answer(&mut self, i: usize, conn: ConnId) -> Option<serde_json::Value> {
        let mut buf = self.sim.node(i).agent.tx_pending(conn).to_vec();
        let len = buf.len();
        let resp = take_responses(&mut buf).into_iter().next()?;
        let used = len - buf.len();
        self.sim
            .with(i, |n, now| n.agent.tx_consume(conn, used, now));
        Some(resp.json())
    }

    /// Sends a request and returns its immediate answer.
    pub fn api(&mut self, i: usize, body: &str) -> serde_json::Value {
        let conn = self.request(i, body);
        self.answer(i, conn).expect("an immediate answer")
    }
}

/// Items of a cluster job grouped by node, in arrival order (the summary and the job's
/// status under `""`).
pub fn by_node(items: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for it in items {
        let node = it["node"].as_str().unwrap_or("").to_string();
        out.entry(node).or_default().push(it.clone());
    }
    out
}

/// One row of the large-cluster table.
#[derive(Clone, Debug)]
pub struct JobsRow {
    /// Agents.
    pub nodes: usize,
    /// Datagram loss in percent.
    pub loss_percent: u32,
    /// Nodes that answered (status 0).
    pub answered: usize,
    /// Nodes accounted for in the summary (must be all).
    pub accounted: usize,
    /// Virtual time from the `exec` to its answer, which comes once the last node is
    /// accounted for.
    pub last_answer: Duration,
}

/// `nodes` agents with remote exec enabled at `loss_percent` datagram loss; agent 0 runs a
/// targeted `exec` of `work` on `.*` and the answer is checked to account for every node.
pub fn jobs_run(nodes: usize, loss_percent: u32) -> JobsRow {
    let seed = (nodes as u64) * 104_729 + u64::from(loss_percent);
    let net = NetConfig {
        seed,
        latency: (Duration::from_millis(1), Duration::from_millis(10)),
        loss: f64::from(loss_percent) / 100.0,
        ..NetConfig::default()
    };
    let configs = (0..nodes).map(|i| job_config(i, true)).collect();
    let mut c = JobCluster::new(configs, net, seed);
    c.run_for(Duration::from_secs(2));
    let conn = c.request(
        0,
        r#"{"action":"exec","command":"work","nodes":".*","execTimeout":60000}"#,
    );
    let mut answer = None;
    let total = c
        .run_until(Duration::from_secs(70), |c| {
            answer = answer.take().or_else(|| c.answer(0, conn));
            answer.is_some()
        })
        .expect("exec answered");
    let answer = answer.expect("answer");
    let results = answer["body"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let summary = results
        .iter()
        .find(|r| r["type"] == "summary")
        .cloned()
        .unwrap_or_default();
    let count = |k: &str| summary[k].as_array().map_or(0, Vec::len);
    JobsRow {
        nodes,
        loss_percent,
        answered: count("answered"),
        accounted: count("answered") + count("failed") + count("timedOut"),
        last_answer: total,
    }
}
