//! The cluster's configuration: who this node is, how each pool gossips, and every bound.
//!
//! Defaults follow memberlist's `DefaultLANConfig`/`DefaultWANConfig` (probe every 1 s / 5 s,
//! gossip every 200 ms / 500 ms) and Serf's agent defaults (reap after 24 h, 1 s leave
//! propagation). Suspicion timeout and retransmissions scale with log10 of the cluster size,
//! as in memberlist; the cluster re-derives them as members come and go.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::net::{Ipv4Addr, SocketAddr};
use core::num::{NonZeroU8, NonZeroUsize};
use core::time::Duration;

use super::keyring::Keyring;
use super::wire::FOCA_PREFIX;

/// How one pool (LAN or WAN) gossips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolTiming {
    /// A random member is probed this often.
    pub probe_period: Duration,
    /// A probe not answered within this starts the indirect probe; must be below
    /// `probe_period`.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly.
    pub indirect_probes: u8,
    /// A suspect is declared failed after `suspicion_mult × max(1, log10 n) × probe_period`.
    pub suspicion_mult: u32,
    /// Each update is sent `retransmit_mult × ⌈log10(n + 1)⌉` times.
    pub retransmit_mult: u32,
    /// Pending updates are gossiped this often...
    pub gossip_interval: Duration,
    /// ...to this many random members.
    pub gossip_fanout: u8,
    /// Ask one random member for more members this often (finds members a join missed).
    pub announce_interval: Duration,
    /// Try to reach failed members this often (heals partitions).
    pub announce_down_interval: Duration,
    /// Largest datagram sent or accepted, framing (and encryption, 29 bytes) included.
    pub max_packet_size: usize,
}

impl PoolTiming {
    /// memberlist's LAN profile.
    pub fn lan() -> Self {
        PoolTiming {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            indirect_probes: 3,
            suspicion_mult: 4,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            announce_interval: Duration::from_secs(30),
            announce_down_interval: Duration::from_secs(65),
            max_packet_size: 1400,
        }
    }

    /// memberlist's WAN profile.
    pub fn wan() -> Self {
        PoolTiming {
            probe_period: Duration::from_secs(5),
            probe_rtt: Duration::from_secs(3),
            indirect_probes: 3,
            suspicion_mult: 6,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(500),
            gossip_fanout: 4,
            announce_interval: Duration::from_secs(60),
            announce_down_interval: Duration::from_secs(125),
            max_packet_size: 1400,
        }
    }

    /// How long a suspect stays suspect in a cluster of `members` (this node included).
    pub fn suspicion_timeout(&self, members: usize) -> Duration {
        let log = log10_milli(members).max(1000);
        let micros = u128::from(self.suspicion_mult)
            .saturating_mul(u128::from(log))
            .saturating_mul(self.probe_period.as_micros())
            / 1000;
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// How many times each update is sent in a cluster of `members`.
    /// memberlist's `retransmitLimit`, which rounds the logarithm up.
    pub fn max_transmissions(&self, members: usize) -> u8 {
        let log_ceil = log10_milli(members.saturating_add(1)).div_ceil(1000);
        let tx = u64::from(self.retransmit_mult).saturating_mul(log_ceil);
        u8::try_from(tx.max(1)).unwrap_or(u8::MAX)
    }

    /// foca's configuration for a cluster of `members`, when sealing adds `overhead` bytes
    /// to each datagram.
    pub(crate) fn foca_config(
        &self,
        members: usize,
        remove_down_after: Duration,
        overhead: usize,
    ) -> foca::Config {
        let mut c = foca::Config::simple();
        c.probe_period = self.probe_period.max(Duration::from_millis(2));
        c.probe_rtt = self
            .probe_rtt
            .clamp(Duration::from_millis(1), c.probe_period / 2);
        c.num_indirect_probes = nz(usize::from(self.indirect_probes));
        c.max_transmissions =
            NonZeroU8::new(self.max_transmissions(members)).unwrap_or(NonZeroU8::MIN);
        c.suspect_to_down_after = self
            .suspicion_timeout(members)
            .max(Duration::from_millis(1));
        // Members are reaped by the cluster after `reap_after`; foca forgets them with it.
        c.remove_down_after = Some(remove_down_after);
        c.max_packet_size = nz(self
            .max_packet_size
            .saturating_sub(FOCA_PREFIX + overhead)
            .max(256));
        c.notify_down_members = true;
        c.periodic_announce = Some(periodic(self.announce_interval, 1));
        c.periodic_announce_to_down_members = Some(periodic(self.announce_down_interval, 2));
        c.periodic_gossip = Some(periodic(
            self.gossip_interval,
            usize::from(self.gossip_fanout),
        ));
        c
    }
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

fn periodic(every: Duration, members: usize) -> foca::PeriodicParams {
    foca::PeriodicParams {
        frequency: every.max(Duration::from_millis(1)),
        num_members: nz(members),
    }
}

/// `1000 × log10(n)` without floating point (no_std has no `log10`): the integer part of
/// log2 from the bit length, 16 fractional bits by repeated squaring, then × log10(2).
pub(crate) fn log10_milli(n: usize) -> u64 {
    let n = u64::try_from(n)
        .unwrap_or(u64::MAX)
        .min(u64::from(u32::MAX));
    if n <= 1 {
        return 0;
    }
    let int = n.ilog2();
    // The mantissa n / 2^int in [1, 2), as Q30.
    let mut m: u64 = (n << 30) >> int;
    let mut frac: u64 = 0;
    for bit in (0..16).rev() {
        m = (m * m) >> 30;
        if m >= 2 << 30 {
            m >>= 1;
            frac |= 1 << bit;
        }
    }
    let log2_q16 = (u64::from(int) << 16) | frac;
    // × log10(2) = 0.30103, rounded: the truncated fraction would make log10(100) 1.999.
    (log2_q16 * 30103 + 50 * 65536) / (100 * 65536)
}

/// Bounds on what the cluster holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterLimits {
    /// Members per pool (foca's table, metas, leave records). Packets that would add
    /// members beyond it are dropped.
    pub max_members: usize,
    /// Outgoing datagrams queued; beyond it the newest is dropped and counted.
    pub max_datagrams: usize,
    /// Events queued for [`super::Cluster::poll_event`]; beyond it the newest is dropped
    /// and counted.
    pub max_events: usize,
    /// Joins in progress at once.
    pub max_joins: usize,
    /// User events older than this many LTimes are ignored (Serf's event buffer, 512);
    /// so are queries (Serf's query buffer, 512).
    pub event_window: u64,
    /// Queries this node started and still collects answers for; more are refused.
    pub max_queries: usize,
    /// Received queries still open for a response (their deadline not passed); beyond it
    /// the oldest can no longer be responded to.
    pub max_pending_queries: usize,
}

impl Default for ClusterLimits {
    fn default() -> Self {
        ClusterLimits {
            max_members: 8192,
            max_datagrams: 4096,
            max_events: 4096,
            max_joins: 16,
            event_window: 512,
            max_queries: 256,
            max_pending_queries: 1024,
        }
    }
}

/// The cluster's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's name in the LAN pool; the WAN pool uses `name.datacenter` (Consul).
    pub node_name: String,
    /// The `dc` tag.
    pub datacenter: String,
    /// A server (`role` tag `consul`) is in the WAN pool too; a client (`node`) is not.
    pub server: bool,
    /// The LAN gossip address peers reach this node at (Serf's 8301). It is the node's
    /// identity: bind the LAN socket so datagrams leave from it.
    pub lan_addr: SocketAddr,
    /// The WAN gossip address (8302), used by servers only.
    pub wan_addr: SocketAddr,
    /// The `build` tag (Consul cuts it at the first `:`).
    pub build: String,
    /// The `vsn` tag (Consul's protocol version).
    pub vsn: String,
    /// User tags. `role`, `dc`, `build` and `vsn` are set from the fields above and win.
    pub tags: BTreeMap<String, String>,
    /// LAN pool timing.
    pub lan: PoolTiming,
    /// WAN pool timing.
    pub wan: PoolTiming,
    /// The cluster size timing is derived for before members are known (the live member
    /// count takes over when larger).
    pub expected_members: usize,
    /// Failed and left members are reaped (dropped from the member list, `member-reap`)
    /// this long after they went down (Serf: `reconnect_timeout`/`tombstone_timeout`, 24 h).
    pub reap_after: Duration,
    /// Between announcing a leave and going silent, so peers show `left`, not `failed`.
    pub leave_propagate_delay: Duration,
    /// A join reports after this long at most.
    pub join_timeout: Duration,
    /// Unanswered join addresses are retried this often within `join_timeout`.
    pub join_retry: Duration,
    /// While the pool has no live member, failed members and the last join addresses are
    /// retried this often (Serf's `reconnect_interval`).
    pub reconnect_interval: Duration,
    /// Every this long, all state (metas, leave records, recent user events) is pulled
    /// from one random live member, repairing what lossy broadcasts missed (memberlist's
    /// push-pull interval).
    pub sync_interval: Duration,
    /// A missing or stale meta is asked for after this long (giving the broadcast a
    /// chance first), and again every this long.
    pub pull_interval: Duration,
    /// A query without a timeout stays open `gossip_interval × query_timeout_mult ×
    /// ⌈log10(N + 1)⌉` for N members (Serf's `QueryTimeoutMult`, 16).
    pub query_timeout_mult: u32,
    /// Largest query as it travels, name, payload and filters included (Serf's
    /// `QuerySizeLimit`, 1,024 bytes); a larger one is refused.
    pub query_size_limit: usize,
    /// Largest ack or response as it travels (Serf's `QueryResponseSizeLimit`, 1,024
    /// bytes); a larger response is refused.
    pub query_response_size_limit: usize,
    /// Bounds.
    pub limits: ClusterLimits,
    /// The gossip keys (empty: plaintext). Unlike the rest, a new keyring takes effect on
    /// a running cluster ([`super::Cluster::set_keyring`]).
    pub keyring: Keyring,
    /// Measure round trips to members and keep network coordinates (`get-coordinate`,
    /// `rtt`); off is Serf's `DisableCoordinates`: no COORD pings are sent or answered.
    pub coordinates: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_name: String::from("tandem"),
            datacenter: String::from("dc1"),
            server: false,
            lan_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8301)),
            wan_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8302)),
            build: String::from(crate::VERSION),
            vsn: String::from("2"),
            tags: BTreeMap::new(),
            lan: PoolTiming::lan(),
            wan: PoolTiming::wan(),
            expected_members: 1,
            reap_after: Duration::from_secs(24 * 60 * 60),
            leave_propagate_delay: Duration::from_secs(1),
            join_timeout: Duration::from_secs(5),
            join_retry: Duration::from_secs(1),
            reconnect_interval: Duration::from_secs(30),
            sync_interval: Duration::from_secs(30),
            pull_interval: Duration::from_secs(1),
            query_timeout_mult: 16,
            query_size_limit: 1024,
            query_response_size_limit: 1024,
            limits: ClusterLimits::default(),
            keyring: Keyring::default(),
            coordinates: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log10_is_close() {
        for (n, want) in [
            (1, 0),
            (2, 301),
            (10, 1000),
            (11, 1041),
            (100, 2000),
            (1001, 3000),
        ] {
            let got = log10_milli(n);
            assert!(got.abs_diff(want) <= 1, "log10({n}) = {got}, want {want}");
        }
    }

    #[test]
    fn timing_scales_like_memberlist() {
        let lan = PoolTiming::lan();
        assert_eq!(lan.suspicion_timeout(3), Duration::from_secs(4));
        assert_eq!(lan.suspicion_timeout(100), Duration::from_secs(8));
        assert_eq!(lan.max_transmissions(1), 4);
        assert_eq!(lan.max_transmissions(50), 8);
        assert_eq!(lan.max_transmissions(999), 12);
        let c = lan.foca_config(1000, Duration::from_secs(60), 0);
        assert_eq!(c.max_packet_size.get(), 1400 - FOCA_PREFIX);
        let sealed = lan.foca_config(1000, Duration::from_secs(60), 29);
        assert_eq!(sealed.max_packet_size.get(), 1400 - FOCA_PREFIX - 29);
        assert_eq!(c.suspect_to_down_after, Duration::from_secs(12));
    }
}
