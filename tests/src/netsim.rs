//! A deterministic network simulation for gossip: N nodes on a virtual network with seeded
//! latency, loss, duplication, reordering and partitions, and a virtual clock that jumps to
//! the earliest deadline among all nodes and all datagrams in flight (quinn's `Pair::drive`,
//! smoltcp's `tests/netsim.rs`).
//!
//! Nodes are anything implementing [`SimNode`]: the cluster engine alone
//! ([`tandem_core::cluster::Cluster`]) today, the whole `Agent` once it carries the pools.
//! Every node input is followed by a drain of its datagrams and events and a re-read of its
//! deadline, as the call contract asks. Everything random comes from one seed, and ties are
//! broken by sequence numbers, so a run is a pure function of its seed and its inputs;
//! [`Net::trace`] hashes every datagram delivered and every event emitted to prove it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tandem_core::Instant;
use tandem_core::cluster::{Cluster, ClusterConfig, ClusterEvent, MemberStatus, Pool};

/// What the simulation needs from a node: the gossip half of the sans-IO call contract.
pub trait SimNode {
    /// What the node reports (hashed into the trace, kept if the net records events).
    type Event: Hash;
    /// A datagram arrived on the node's `pool` socket.
    fn handle_datagram(&mut self, pool: Pool, from: SocketAddr, data: &[u8], now: Instant);
    /// The next datagram to send: `(pool, to, bytes)`.
    fn poll_datagram(&mut self) -> Option<(Pool, SocketAddr, Vec<u8>)>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// When the node wants [`SimNode::handle_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Timers due at `now` fire.
    fn handle_timeout(&mut self, now: Instant);
}

impl SimNode for Cluster {
    type Event = ClusterEvent;
    fn handle_datagram(&mut self, pool: Pool, from: SocketAddr, data: &[u8], now: Instant) {
        Cluster::handle_datagram(self, pool, from, data, now);
    }
    fn poll_datagram(&mut self) -> Option<(Pool, SocketAddr, Vec<u8>)> {
        Cluster::poll_datagram(self)
    }
    fn poll_event(&mut self) -> Option<ClusterEvent> {
        Cluster::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Cluster::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Cluster::handle_timeout(self, now);
    }
}

/// The network's behaviour. Probabilities are in `[0, 1]`.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Seeds every random choice the network makes.
    pub seed: u64,
    /// One-way latency, uniform in `[min, max]`.
    pub latency: (Duration, Duration),
    /// A datagram is lost with this probability.
    pub loss: f64,
    /// A datagram is delivered twice with this probability.
    pub duplicate: f64,
    /// A datagram is held back by up to `reorder_delay` more with this probability, so
    /// later datagrams overtake it.
    pub reorder: f64,
    /// See `reorder`.
    pub reorder_delay: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            seed: 1,
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
        }
    }
}

/// Counters of what the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams nodes sent.
    pub sent: u64,
    /// Bytes of those datagrams.
    pub sent_bytes: u64,
    /// Datagrams handed to a node.
    pub delivered: u64,
    /// Lost at random.
    pub lost: u64,
    /// Extra copies.
    pub duplicated: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
    /// Sent to an address no live node has.
    pub unroutable: u64,
}

/// splitmix64: small, seedable, and good enough for fault injection.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
    /// Uniform in `[lo, hi]`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo).as_micros() as u64 + 1;
        lo + Duration::from_micros(self.next_u64() % span)
    }
}

/// FNV-1a, a hasher whose output depends on nothing but its input.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

struct Flight {
    at: Instant,
    seq: u64,
    from: usize,
    to: usize,
    pool: Pool,
    from_addr: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Flight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Flight {}
impl PartialOrd for Flight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Flight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Slot<N: SimNode> {
    node: N,
    alive: bool,
    /// The node's address in each pool (LAN, WAN).
    addrs: [Option<SocketAddr>; 2],
    deadline: Option<Instant>,
    events: Vec<N::Event>,
    group: u32,
}

fn pool_index(pool: Pool) -> usize {
    match pool {
        Pool::Lan => 0,
        Pool::Wan => 1,
    }
}

/// The simulated network and its nodes.
pub struct Net<N: SimNode> {
    /// The virtual clock.
    pub now: Instant,
    cfg: NetConfig,
    rng: SimRng,
    slots: Vec<Slot<N>>,
    routes: HashMap<SocketAddr, (usize, Pool)>,
    inflight: BinaryHeap<Reverse<Flight>>,
    /// Node deadlines; an entry is stale unless it equals the node's current deadline.
    wakeups: BinaryHeap<Reverse<(Instant, usize)>>,
    seq: u64,
    trace: Fnv,
    /// Keep each node's events for [`Net::events`] (they are hashed either way).
    pub record_events: bool,
    /// What the network did.
    pub stats: NetStats,
    /// One-way latency per (sender, receiver) index pair, and up to how much jitter is
    /// added to it: replaces `NetConfig::latency` when set ([`Net::set_pair_latency`]).
    pair_latency: Option<(Vec<Vec<Duration>>, Duration)>,
}

impl<N: SimNode> Net<N> {
    /// An empty network at `start`.
    pub fn new(cfg: NetConfig, start: Instant) -> Self {
        Net {
            now: start,
            rng: SimRng::new(cfg.seed),
            cfg,
            slots: Vec::new(),
            routes: HashMap::new(),
            inflight: BinaryHeap::new(),
            wakeups: BinaryHeap::new(),
            seq: 0,
            trace: Fnv::default(),
            record_events: true,
            stats: NetStats::default(),
            pair_latency: None,
        }
    }

    /// From now on a datagram from node `i` to node `j` takes `one_way[i][j]` plus a
    /// uniform jitter in `[0, jitter]` (a known latency matrix, for network coordinates);
    /// pairs outside the matrix keep `NetConfig::latency`.
    pub fn set_pair_latency(&mut self, one_way: Vec<Vec<Duration>>, jitter: Duration) {
        self.pair_latency = Some((one_way, jitter));
    }

    /// Adds a node reachable at `lan` (and `wan`); returns its index.
    pub fn add(&mut self, node: N, lan: SocketAddr, wan: Option<SocketAddr>) -> usize {
        let i = self.slots.len();
        self.routes.insert(lan, (i, Pool::Lan));
        if let Some(w) = wan {
            self.routes.insert(w, (i, Pool::Wan));
        }
        self.slots.push(Slot {
            node,
            alive: true,
            addrs: [Some(lan), wan],
            deadline: None,
            events: Vec::new(),
            group: 0,
        });
        self.after_input(i);
        i
    }

    /// Nodes, dead ones included.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True with no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &N {
        &self.slots[i].node
    }

    /// Node `i`'s address in `pool`.
    pub fn addr(&self, i: usize, pool: Pool) -> Option<SocketAddr> {
        self.slots[i].addrs[pool_index(pool)]
    }

    /// Whether node `i` is still driven.
    pub fn is_alive(&self, i: usize) -> bool {
        self.slots[i].alive
    }

    /// Indices of the nodes still driven.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].alive)
            .collect()
    }

    /// Runs `f` on node `i` at the current time (a command), then drains it.
    pub fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut N, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.slots[i].node, now);
        self.after_input(i);
        r
    }

    /// Stops driving node `i`, as if its process was killed: it receives nothing and its
    /// timers never fire.
    pub fn kill(&mut self, i: usize) {
        self.slots[i].alive = false;
    }

    /// Stops driving node `i` and loses every datagram it sent that is still in flight, as
    /// if its process ended before they left the host (a `kill` right after a reply).
    pub fn crash(&mut self, i: usize) {
        self.kill(i);
        let before = self.inflight.len();
        self.inflight.retain(|Reverse(f)| f.from != i);
        self.stats.lost += (before - self.inflight.len()) as u64;
    }

    /// Replaces node `i` with a fresh `node` at the same addresses (a restart) and drives it
    /// again.
    pub fn restart(&mut self, i: usize, node: N) {
        let slot = &mut self.slots[i];
        slot.node = node;
        slot.alive = true;
        slot.deadline = None;
        self.after_input(i);
    }

    /// Splits the network: nodes in different groups cannot reach each other (checked at
    /// delivery, so datagrams in flight across the cut are lost too). Nodes not listed
    /// form one more group.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for s in &mut self.slots {
            s.group = 0;
        }
        for (g, members) in groups.iter().enumerate() {
            for &i in *members {
                self.slots[i].group = g as u32 + 1;
            }
        }
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        for s in &mut self.slots {
            s.group = 0;
        }
    }

    /// The events node `i` emitted so far (if `record_events`).
    pub fn events(&self, i: usize) -> &[N::Event] {
        &self.slots[i].events
    }

    /// Takes the events node `i` emitted so far.
    pub fn take_events(&mut self, i: usize) -> Vec<N::Event> {
        std::mem::take(&mut self.slots[i].events)
    }

    /// A hash of every datagram delivered (time, endpoints, bytes) and every event emitted,
    /// in order.
    pub fn trace(&self) -> u64 {
        self.trace.finish()
    }

    /// The earliest thing that will happen: a delivery or a node deadline.
    pub fn next_instant(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, i))) = self.wakeups.peek().copied() {
            let slot = &self.slots[i];
            if slot.alive && slot.deadline == Some(at) {
                break;
            }
            self.wakeups.pop();
        }
        let timer = self.wakeups.peek().map(|Reverse((at, _))| *at);
        let flight = self.inflight.peek().map(|Reverse(f)| f.at);
        match (timer, flight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to the next instant anything happens, if it is no later than `limit`, and
    /// processes everything due then: deliveries first, then timers. Otherwise moves the
    /// clock to `limit`. Returns whether anything was processed.
    pub fn step(&mut self, limit: Instant) -> bool {
        let Some(at) = self.next_instant().filter(|at| *at <= limit) else {
            self.now = self.now.max(limit);
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        while self.inflight.peek().is_some_and(|Reverse(f)| f.at <= now) {
            let Some(Reverse(f)) = self.inflight.pop() else {
                break;
            };
            self.deliver(f);
        }
        while let Some(Reverse((at, i))) = self.wakeups.peek().copied() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            let slot = &mut self.slots[i];
            if !slot.alive || slot.deadline != Some(at) {
                continue;
            }
            slot.deadline = None;
            slot.node.handle_timeout(now);
            self.after_input(i);
        }
        true
    }

    /// Runs until `t`.
    pub fn run_until(&mut self, t: Instant) {
        while self.step(t) {}
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Runs until `cond` holds, checking it every `every` of virtual time, for at most
    /// `timeout`. Returns the virtual time it took, or `None`.
    pub fn run_until_cond(
        &mut self,
        timeout: Duration,
        every: Duration,
        mut cond: impl FnMut(&Self) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let end = start + timeout;
        loop {
            if cond(self) {
                return Some(self.now - start);
            }
            if self.now >= end {
                return None;
            }
            let t = (self.now + every).min(end);
            self.run_until(t);
        }
    }

    fn deliver(&mut self, f: Flight) {
        let dst = &self.slots[f.to];
        if !dst.alive {
            self.stats.unroutable += 1;
            return;
        }
        if dst.group != self.slots[f.from].group {
            self.stats.partitioned += 1;
            return;
        }
        self.stats.delivered += 1;
        f.at.hash(&mut self.trace);
        (f.from, f.to).hash(&mut self.trace);
        f.data.hash(&mut self.trace);
        let now = self.now;
        self.slots[f.to]
            .node
            .handle_datagram(f.pool, f.from_addr, &f.data, now);
        self.after_input(f.to);
    }

    /// The call contract: after any input, drain datagrams and events, re-read the deadline.
    fn after_input(&mut self, i: usize) {
        while let Some((pool, to, data)) = self.slots[i].node.poll_datagram() {
            self.send(i, pool, to, data);
        }
        while let Some(ev) = self.slots[i].node.poll_event() {
            (i, &ev).hash(&mut self.trace);
            if self.record_events {
                self.slots[i].events.push(ev);
            }
        }
        let slot = &mut self.slots[i];
        let deadline = slot.node.poll_timeout();
        if deadline != slot.deadline {
            slot.deadline = deadline;
            if let Some(at) = deadline {
                self.wakeups.push(Reverse((at, i)));
            }
        }
    }

    fn send(&mut self, from: usize, pool: Pool, to: SocketAddr, data: Vec<u8>) {
        self.stats.sent += 1;
        self.stats.sent_bytes += data.len() as u64;
        let Some(from_addr) = self.slots[from].addrs[pool_index(pool)] else {
            self.stats.unroutable += 1;
            return;
        };
        let Some(&(dst, dst_pool)) = self.routes.get(&to) else {
            self.stats.unroutable += 1;
            return;
        };
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let pair = self
                .pair_latency
                .as_ref()
                .and_then(|(m, jitter)| Some((*m.get(from)?.get(dst)?, *jitter)));
            let mut delay = match pair {
                Some((base, jitter)) => base + self.rng.between(Duration::ZERO, jitter),
                None => self.rng.between(self.cfg.latency.0, self.cfg.latency.1),
            };
            if self.rng.chance(self.cfg.reorder) {
                delay += self.rng.between(Duration::ZERO, self.cfg.reorder_delay);
            }
            self.seq += 1;
            self.inflight.push(Reverse(Flight {
                at: self.now + delay,
                seq: self.seq,
                from,
                to: dst,
                pool: dst_pool,
                from_addr,
                data: data.clone(),
            }));
        }
    }
}

// ----- clusters on the simulated network ---------------------------------------------------

/// Node `i`'s LAN gossip address: `10.a.b.c:8301`.
pub fn lan_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0a00_0000u32 | (i as u32 + 1));
    SocketAddr::from((ip, 8301))
}

/// Node `i`'s WAN gossip address: same host, port 8302.
pub fn wan_addr(i: usize) -> SocketAddr {
    SocketAddr::new(lan_addr(i).ip(), 8302)
}

/// Node `i`'s name.
pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// A client configuration for node `i` (names, addresses and one test tag).
pub fn cluster_config(i: usize) -> ClusterConfig {
    let mut c = ClusterConfig {
        node_name: node_name(i),
        lan_addr: lan_addr(i),
        wan_addr: wan_addr(i),
        build: "0.1.0:sim".into(),
        ..ClusterConfig::default()
    };
    c.tags.insert("index".into(), i.to_string());
    c
}

/// The virtual time simulated clusters start at.
pub const START: Instant = Instant::from_millis(1_000);

/// `n` clusters on a network, not yet joined; `tweak` edits each node's configuration.
/// Node `i` is seeded with `seed + i`.
pub fn cluster_net(
    n: usize,
    net: NetConfig,
    seed: u64,
    tweak: impl Fn(usize, &mut ClusterConfig),
) -> Net<Cluster> {
    let mut sim = Net::new(net, START);
    for i in 0..n {
        let mut cfg = cluster_config(i);
        tweak(i, &mut cfg);
        let wan = cfg.server.then_some(cfg.wan_addr);
        let lan = cfg.lan_addr;
        let node = Cluster::new(cfg, seed.wrapping_add(i as u64), START);
        sim.add(node, lan, wan);
    }
    sim
}

/// Every node except `seed_node` joins `seed_node` on the LAN pool.
pub fn join_all(sim: &mut Net<Cluster>, seed_node: usize) {
    let target = lan_addr(seed_node);
    for i in 0..sim.len() {
        if i != seed_node {
            sim.with(i, |c, now| c.join(Pool::Lan, &[target], now))
                .expect("join");
        }
    }
}

/// Whether every live node sees every live node `alive` in `pool` and nothing else.
pub fn converged(sim: &Net<Cluster>, pool: Pool) -> bool {
    let live = sim.alive();
    let n = live.len();
    // Cheap gate first: foca's active count, then the full view.
    live.iter().all(|&i| sim.node(i).active_members(pool) == n)
        && live.iter().all(|&i| {
            let c = sim.node(i).status_counts(pool);
            c.alive == n && c.total() == n
        })
}

/// Whether every live node shows node `target` with `status` in `pool`.
pub fn all_see(sim: &Net<Cluster>, pool: Pool, target: usize, status: MemberStatus) -> bool {
    let Some(addr) = sim.addr(target, pool) else {
        return false;
    };
    sim.alive()
        .iter()
        .filter(|&&i| i != target)
        .all(|&i| sim.node(i).member_status(pool, addr) == Some(status))
}

/// Whether no live node shows node `target` in `pool`.
pub fn none_see(sim: &Net<Cluster>, pool: Pool, target: usize) -> bool {
    let Some(addr) = sim.addr(target, pool) else {
        return true;
    };
    sim.alive()
        .iter()
        .filter(|&&i| i != target)
        .all(|&i| sim.node(i).member_status(pool, addr).is_none())
}

// ----- the convergence table -------------------------------------------------------------

/// One row of the convergence table: how long a cluster of `nodes` takes, on a network
/// losing `loss_percent` of datagrams, to converge after joins and to detect a failure.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvergenceRow {
    /// Cluster size.
    pub nodes: usize,
    /// Datagram loss in percent.
    pub loss_percent: u32,
    /// Virtual time from the joins until every node sees every node alive.
    pub join: Option<Duration>,
    /// Virtual time from killing one node until every other node sees it failed.
    pub failure: Option<Duration>,
    /// Virtual time simulated in all.
    pub simulated: Duration,
}

/// How long the convergence run waits for each phase.
const JOIN_LIMIT: Duration = Duration::from_secs(600);
const FAILURE_LIMIT: Duration = Duration::from_secs(300);
/// The resolution of the table.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Runs the convergence scenario: `nodes` fresh agents, each joining node 0 at the same
/// instant; then the last node is killed. Deterministic for its arguments.
pub fn convergence_run(nodes: usize, loss_percent: u32) -> ConvergenceRow {
    let seed = (nodes as u64) * 1000 + u64::from(loss_percent);
    let net = NetConfig {
        seed,
        latency: (Duration::from_millis(1), Duration::from_millis(10)),
        loss: f64::from(loss_percent) / 100.0,
        ..NetConfig::default()
    };
    let mut sim = cluster_net(nodes, net, seed, |_, _| {});
    sim.record_events = false;
    let start = sim.now;
    join_all(&mut sim, 0);
    let join = sim.run_until_cond(JOIN_LIMIT, CHECK_EVERY, |s| converged(s, Pool::Lan));
    let victim = nodes - 1;
    let mut failure = None;
    if join.is_some() {
        // Let the cluster settle before the failure.
        sim.run_for(Duration::from_secs(5));
        sim.kill(victim);
        failure = sim.run_until_cond(FAILURE_LIMIT, CHECK_EVERY, |s| {
            let live = s.alive();
            let n = live.len();
            live.iter()
                .all(|&i| s.node(i).active_members(Pool::Lan) == n)
                && all_see(s, Pool::Lan, victim, MemberStatus::Failed)
        });
    }
    ConvergenceRow {
        nodes,
        loss_percent,
        join,
        failure,
        simulated: sim.now - start,
    }
}

fn secs_cell(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1}", d.as_secs_f64()),
        None => "—".into(),
    }
}

/// One table line of the snapshot (simulated seconds only, so it is deterministic).
pub fn convergence_line(row: &ConvergenceRow) -> String {
    format!(
        "| {} | {} % | {} | {} |",
        row.nodes,
        row.loss_percent,
        secs_cell(row.join),
        secs_cell(row.failure)
    )
}

/// The snapshot kept in `tests/snapshots/convergence.md`.
pub fn convergence_snapshot(rows: &[ConvergenceRow]) -> String {
    let mut s = String::from(
        "# Cluster convergence (simulated)\n\n\
         Generated by `cargo bench -p tandem-tests --bench convergence`; the N = 10 and\n\
         N = 100 rows are re-checked by `tests/tests/cluster_convergence_snapshot.rs`.\n\
         Each node joins node 0 at the same instant; latency 1–10 ms; default LAN timing\n\
         (probe 1 s, gossip 200 ms, suspicion 4 × max(1, log10 n) s). *Join*: virtual\n\
         seconds until every node sees every node alive. *Failure*: virtual seconds from\n\
         killing one node until every other node shows it `failed`. Resolution 0.1 s;\n\
         — means not within the limit (600 s join, 300 s failure).\n\n\
         | nodes | loss | join (s) | failure (s) |\n\
         |---:|---:|---:|---:|\n",
    );
    for row in rows {
        s.push_str(&convergence_line(row));
        s.push('\n');
    }
    s
}
