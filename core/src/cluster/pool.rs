//! One gossip pool: a foca instance with its shared gossip state, the member records the
//! view is built from, and the bookkeeping for pulling metas. Also the short-lived adapter
//! that turns foca's callbacks into the cluster's timer queue and datagram ring.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use foca::{Foca, Notification, OwnedNotification, Runtime, Timer};
use rand::rngs::Xoshiro256PlusPlus;

use super::Pool;
use super::codec::NodeCodec;
use super::config::PoolTiming;
use super::gossip::{Gossip, Handler, Shared};
use super::identity::NodeId;
use super::keyring::Crypt;
use super::member::Record;
use super::outbox::Outbox;
use super::timer::{Task, Timers};
use super::wire::{FRAME_FOCA, Meta};
use crate::time::{Instant, TimerKey};

pub(crate) type FocaT = Foca<NodeId, NodeCodec, Xoshiro256PlusPlus, Handler>;

/// A meta to ask its owner for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Want {
    /// The freshness that satisfies it.
    pub(crate) need: (u16, u32),
    /// Not before this instant.
    pub(crate) at: Instant,
    /// Ask even if what we hold is fresher (the owner restarted below its old version).
    pub(crate) force: bool,
    /// When it was last asked.
    pub(crate) sent: Option<Instant>,
}

pub(crate) struct PoolState {
    pub(crate) timing: PoolTiming,
    pub(crate) foca: FocaT,
    pub(crate) gossip: Shared<Gossip>,
    /// Members by address, this node included.
    pub(crate) records: BTreeMap<SocketAddr, Record>,
    pub(crate) wanted: BTreeMap<SocketAddr, Want>,
    pub(crate) pull_at: Option<Instant>,
    /// When each requester's last PULL was answered (rate limit).
    pub(crate) answered: BTreeMap<SocketAddr, Instant>,
    pub(crate) reap_at: Option<Instant>,
    /// The next sync.
    pub(crate) sync_at: Option<Instant>,
    /// Syncs sent this round and not answered yet (0: none pending).
    pub(crate) sync_tries: u32,
    /// Quick syncs left after a join.
    pub(crate) sync_boost: u32,
    /// The next reconnect check.
    pub(crate) reconnect_at: Option<Instant>,
    /// foca is connected (between its `Active` and `Idle`/`Defunct`/`Rejoin`).
    pub(crate) connected: bool,
    /// When foca first connected.
    pub(crate) first_connected: Option<Instant>,
    /// (max transmissions, suspicion timeout) foca is configured with.
    pub(crate) tuned: (u8, Duration),
    /// The last join's addresses, for reconnecting.
    pub(crate) join_addrs: Vec<SocketAddr>,
    /// Until when this node counts as a newcomer (a join of it was answered shortly
    /// before): a newcomer that finds its name held by a live member yields it.
    pub(crate) newcomer_until: Option<Instant>,
    /// Our meta's version.
    pub(crate) version: u32,
    /// Our name in this pool.
    pub(crate) name: String,
    /// Bytes sealing adds to each datagram (0: gossip is not sealed).
    pub(crate) overhead: usize,
    /// foca's pending `RemoveDown` timer per member address (see [`Io::submit_after`]).
    pub(crate) remove_down: BTreeMap<SocketAddr, TimerKey>,
}

impl PoolState {
    /// The pool of `me` named `name`, gossiping with `timing`; the rest comes from `cfg`.
    pub(crate) fn new(
        me: NodeId,
        name: String,
        timing: PoolTiming,
        rng: Xoshiro256PlusPlus,
        cfg: &super::ClusterConfig,
    ) -> Self {
        let (members, reap_after, limits) =
            (cfg.expected_members.max(1), cfg.reap_after, &cfg.limits);
        let overhead = Crypt::overhead_of(&cfg.keyring);
        let gossip = Shared::new(Gossip::new(me, limits.max_members, limits.event_window));
        let tuned = (
            timing.max_transmissions(members),
            timing.suspicion_timeout(members),
        );
        let foca = Foca::with_custom_broadcast(
            me,
            timing.foca_config(members, reap_after, overhead),
            rng,
            NodeCodec,
            Handler(gossip.clone()),
        );
        let mut records = BTreeMap::new();
        records.insert(me.addr, Record::new(me, true));
        PoolState {
            timing,
            foca,
            gossip,
            records,
            wanted: BTreeMap::new(),
            pull_at: None,
            answered: BTreeMap::new(),
            reap_at: None,
            sync_at: None,
            sync_tries: 0,
            sync_boost: 0,
            reconnect_at: None,
            connected: false,
            first_connected: None,
            newcomer_until: None,
            tuned,
            join_addrs: Vec::new(),
            version: 1,
            name,
            overhead,
            remove_down: BTreeMap::new(),
        }
    }

    /// The largest plaintext datagram: what is left of `max_packet_size` after sealing.
    pub(crate) fn plain_max(&self) -> usize {
        self.timing.max_packet_size.saturating_sub(self.overhead)
    }

    pub(crate) fn me(&self) -> NodeId {
        *self.foca.identity()
    }

    /// The freshness of the meta we hold for `addr`.
    pub(crate) fn have(&self, addr: &SocketAddr) -> Option<(u16, u32)> {
        self.gossip.with(|g| g.metas.get(addr).map(Meta::freshness))
    }
}

/// foca's [`Runtime`], built per call over disjoint parts of the cluster: foca's effects
/// become timer entries, framed datagrams and queued notifications, with no allocation
/// beyond the datagram buffers the ring reuses.
pub(crate) struct Io<'a> {
    pub(crate) pool: Pool,
    pub(crate) now: Instant,
    pub(crate) version: u32,
    pub(crate) timers: &'a mut Timers,
    /// The pool's [`PoolState::remove_down`].
    pub(crate) remove_down: &'a mut BTreeMap<SocketAddr, TimerKey>,
    pub(crate) out: &'a mut Outbox,
    pub(crate) notes: &'a mut VecDeque<OwnedNotification<NodeId>>,
}

impl Runtime<NodeId> for Io<'_> {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        self.notes.push_back(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        let version = self.version;
        self.out.push(self.pool, to.addr, |b| {
            b.push(FRAME_FOCA);
            b.extend_from_slice(&version.to_be_bytes());
            b.extend_from_slice(data);
        });
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        let down = match &event {
            Timer::RemoveDown(id) => Some(id.addr),
            _ => None,
        };
        let key = self
            .timers
            .schedule(self.now + after, Task::Foca(self.pool, event));
        // foca holds one member per address and asks for `RemoveDown` only for the identity
        // it just put down there, so an earlier `RemoveDown` of another identity of that
        // address can find nothing to remove. Kept, it would sit in the queue for
        // `reap_after` (24 h): one entry per restart of a peer (the soak's RSS creep).
        if let Some(addr) = down
            && let Some(old) = self.remove_down.insert(addr, key)
        {
            self.timers.cancel(Some(old));
        }
    }
}
