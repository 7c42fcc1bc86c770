//! What members say about themselves, learned from custom broadcasts: metas (name and
//! tags), leave records, and user events.
//!
//! foca owns its [`foca::BroadcastHandler`] and offers no way back to it, so the state the
//! handler learns lives in a [`Shared`] cell that the [`super::Cluster`] holds too. Each
//! foca call runs the handler synchronously; the handler stores what is new and notes it in
//! [`Gossip::inbox`], which the cluster drains right after the call. Nothing holds the cell
//! across a foca call, so it is never borrowed twice.
//!
//! Novelty is decided here, once, for every path an item arrives by (foca broadcast, PUSH
//! answer, local command): an item is new when it is fresher than what is stored, and only
//! new items are re-broadcast, which is what ends their dissemination.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;
use core::net::SocketAddr;

use super::identity::{NodeId, bump_cmp};
use super::wire::{Item, Leave, Meta, UserItem};
use crate::time::Instant;

/// A cell shared by the cluster and the broadcast handler foca owns. With `std` it is a
/// mutex, so a [`super::Cluster`] is `Send`; without, a `RefCell`.
#[cfg(feature = "std")]
pub(crate) struct Shared<T>(alloc::sync::Arc<std::sync::Mutex<T>>);

#[cfg(feature = "std")]
impl<T> Shared<T> {
    pub(crate) fn new(value: T) -> Self {
        Shared(alloc::sync::Arc::new(std::sync::Mutex::new(value)))
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // A poisoned lock only means a panic elsewhere; the data is still consistent
        // because every mutation here is a single short closure.
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

#[cfg(not(feature = "std"))]
pub(crate) struct Shared<T>(alloc::rc::Rc<core::cell::RefCell<T>>);

#[cfg(not(feature = "std"))]
impl<T> Shared<T> {
    pub(crate) fn new(value: T) -> Self {
        Shared(alloc::rc::Rc::new(core::cell::RefCell::new(value)))
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

/// Compares (bump, counter) freshness, bumps as serial numbers.
pub(crate) fn fresher<C: Ord>(a: (u16, C), b: (u16, C)) -> Ordering {
    bump_cmp(a.0, b.0).then(a.1.cmp(&b.1))
}

/// Something new the handler stored, for the cluster to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A fresher meta for this address.
    Meta(SocketAddr),
    /// A fresher leave record for this address.
    Leave(SocketAddr),
    /// A user event seen for the first time.
    User(UserItem),
    /// A query seen for the first time.
    Query(super::query::QueryItem),
    /// A peer holds a meta about us at least this fresh: ours must go above it.
    SelfStale(u32),
}

/// Recent user events kept whole, for anti-entropy answers.
const RECENT_EVENTS: usize = 64;

/// The user-event Lamport clock and the recently seen events (Serf's event buffer).
#[derive(Debug)]
pub(crate) struct EventLog {
    /// The next LTime this node would use.
    pub(crate) clock: u64,
    /// Events before this LTime are ignored: they happened before we joined (Serf's
    /// `eventMinTime`, without `Replay`).
    pub(crate) min_time: u64,
    seen: BTreeSet<(u64, SocketAddr)>,
    /// The latest events with when they arrived, oldest first.
    pub(crate) recent: VecDeque<(Instant, UserItem)>,
    window: u64,
    cap: usize,
}

impl EventLog {
    fn new(window: u64, cap: usize) -> Self {
        EventLog {
            // Serf starts its event clock at 1, so the first event's LTime is 1 (and a
            // join's LTime 0 is never news).
            clock: 1,
            min_time: 0,
            seen: BTreeSet::new(),
            recent: VecDeque::new(),
            window,
            cap,
        }
    }

    /// Records an event; false if it was seen already, is older than the window, or
    /// happened before we joined.
    fn witness(&mut self, ltime: u64, origin: SocketAddr) -> bool {
        if ltime.saturating_add(self.window) < self.clock
            || ltime < self.min_time
            || self.seen.contains(&(ltime, origin))
        {
            return false;
        }
        self.seen.insert((ltime, origin));
        self.clock = self.clock.max(ltime.saturating_add(1));
        forget_old(
            &mut self.seen,
            self.clock.saturating_sub(self.window),
            self.cap,
        );
        true
    }
}

/// Drops the entries of a seen-set (keyed by LTime first) older than `oldest`, and the
/// oldest beyond `cap`: Serf's ring buffers of recent events and queries, as a set.
pub(crate) fn forget_old<K: Ord + Copy>(seen: &mut BTreeSet<(u64, K)>, oldest: u64, cap: usize) {
    while let Some(&first) = seen.first() {
        if first.0 >= oldest && seen.len() <= cap {
            break;
        }
        seen.pop_first();
    }
}

/// Identifies a broadcast in foca's queue, so a fresher one replaces a staler one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ItemKey {
    Meta {
        addr: SocketAddr,
        fresh: (u16, u32),
    },
    Leave {
        addr: SocketAddr,
        fresh: (u16, bool),
    },
    User {
        origin: SocketAddr,
        ltime: u64,
    },
    Query {
        ltime: u64,
        id: u32,
    },
}

impl foca::Invalidates for ItemKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (ItemKey::Meta { addr: a, fresh: x }, ItemKey::Meta { addr: b, fresh: y }) => {
                a == b && fresher(*x, *y) != Ordering::Less
            }
            (ItemKey::Leave { addr: a, fresh: x }, ItemKey::Leave { addr: b, fresh: y }) => {
                a == b && fresher(*x, *y) != Ordering::Less
            }
            (x @ ItemKey::User { .. }, y @ ItemKey::User { .. }) => x == y,
            (x @ ItemKey::Query { .. }, y @ ItemKey::Query { .. }) => x == y,
            _ => false,
        }
    }
}

/// A pool's gossip-learned state.
#[derive(Debug)]
pub(crate) struct Gossip {
    /// Our identity in this pool.
    pub(crate) me: NodeId,
    /// Metas by member address, ours included.
    pub(crate) metas: BTreeMap<SocketAddr, Meta>,
    /// The freshest leave record by member address.
    pub(crate) leaves: BTreeMap<SocketAddr, Leave>,
    pub(crate) events: EventLog,
    /// The query clock and the queries seen (Serf's query buffer).
    pub(crate) queries: super::query::QueryLog,
    /// New items since the cluster last looked.
    pub(crate) inbox: Vec<Inbound>,
    /// The time of the input being handled (set by the cluster before each foca call).
    pub(crate) now: Instant,
    /// foca's broadcast queue has room: without it, new items are still taken in but not
    /// passed on (a flood of new user events must not grow the queue without bound).
    pub(crate) room: bool,
    /// Set while a packet from a sender that is no member is handled: only what it says
    /// about itself (its meta) is taken (see `Cluster::vouched`).
    pub(crate) stranger: Option<SocketAddr>,
    max_members: usize,
}

impl Gossip {
    pub(crate) fn new(me: NodeId, max_members: usize, event_window: u64) -> Self {
        Gossip {
            me,
            metas: BTreeMap::new(),
            leaves: BTreeMap::new(),
            events: EventLog::new(event_window, max_members.max(64)),
            queries: super::query::QueryLog::new(event_window, max_members.max(64)),
            inbox: Vec::new(),
            now: Instant::ZERO,
            room: true,
            stranger: None,
            max_members,
        }
    }

    /// Stores `item` if it is new; returns its broadcast key then. `local` items come from
    /// this node's own commands and are always new.
    pub(crate) fn receive(&mut self, item: Item, local: bool) -> Option<ItemKey> {
        if let Some(stranger) = self.stranger.filter(|_| !local) {
            // A stranger cannot say that another member left, nor fire events or queries
            // (see `Cluster::on_foca`); metas spread from anyone, as their owner refutes.
            let counts = match &item {
                Item::Meta(_) => true,
                Item::Leave(l) => l.id.addr == stranger,
                Item::User(_) | Item::Query(_) => false,
            };
            if !counts {
                return None;
            }
        }
        match item {
            Item::Meta(m) => {
                let addr = m.id.addr;
                let fresh = m.freshness();
                if !local && addr == self.me.addr {
                    // Only we speak for ourselves; a fresher copy of us means we restarted
                    // and the cluster remembers our previous life: go above it.
                    let ours = self.metas.get(&addr).map_or((0, 0), Meta::freshness);
                    // Our own broadcasts echo back to us: equal is not stale.
                    if m.id.bump == self.me.bump && fresher(fresh, ours) == Ordering::Greater {
                        self.inbox.push(Inbound::SelfStale(m.version));
                    }
                    return None;
                }
                match self.metas.get(&addr) {
                    Some(old) if !local && fresher(fresh, old.freshness()) != Ordering::Greater => {
                        return None;
                    }
                    None if self.metas.len() >= self.max_members => return None,
                    _ => {}
                }
                self.metas.insert(addr, m);
                self.inbox.push(Inbound::Meta(addr));
                Some(ItemKey::Meta { addr, fresh })
            }
            Item::Leave(l) => {
                let addr = l.id.addr;
                let fresh = (l.id.bump, l.prune);
                if !local && addr == self.me.addr {
                    // A force-leave aimed at us while we run: we are not leaving. Stop it
                    // here; peers that see us alive ignore forced records anyway.
                    return None;
                }
                match self.leaves.get(&addr) {
                    Some(old)
                        if !local
                            && fresher(fresh, (old.id.bump, old.prune)) != Ordering::Greater =>
                    {
                        return None;
                    }
                    None if self.leaves.len() >= self.max_members => return None,
                    _ => {}
                }
                self.leaves.insert(addr, l);
                self.inbox.push(Inbound::Leave(addr));
                Some(ItemKey::Leave { addr, fresh })
            }
            Item::User(u) => {
                let key = ItemKey::User {
                    origin: u.origin.addr,
                    ltime: u.ltime,
                };
                if !self.events.witness(u.ltime, u.origin.addr) {
                    return None;
                }
                if self.events.recent.len() >= RECENT_EVENTS {
                    self.events.recent.pop_front();
                }
                self.events.recent.push_back((self.now, u.clone()));
                self.inbox.push(Inbound::User(u));
                (self.room || local).then_some(key)
            }
            Item::Query(q) => {
                let key = ItemKey::Query {
                    ltime: q.ltime,
                    id: q.id,
                };
                if !self.queries.witness(q.ltime, q.id) {
                    return None;
                }
                self.inbox.push(Inbound::Query(q));
                (self.room || local).then_some(key)
            }
        }
    }
}

/// Why the handler refused a broadcast item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadItem(pub(crate) super::wire::CodecError);

impl fmt::Display for BadItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl core::error::Error for BadItem {}

/// The handler foca owns: decodes items and lets [`Gossip`] decide.
pub(crate) struct Handler(pub(crate) Shared<Gossip>);

impl foca::BroadcastHandler<NodeId> for Handler {
    type Key = ItemKey;
    type Error = BadItem;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<ItemKey>, BadItem> {
        let item = Item::decode(data).map_err(BadItem)?;
        Ok(self.0.with(|g| g.receive(item, sender.is_none())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use foca::Invalidates as _;

    fn id(n: u8, bump: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, n], 8301)), bump)
    }

    fn meta(n: u8, bump: u16, version: u32, name: &str) -> Item {
        Item::Meta(Meta {
            id: id(n, bump),
            version,
            name: String::from(name),
            tags: BTreeMap::new(),
        })
    }

    #[test]
    fn only_fresher_metas_are_new() {
        let mut g = Gossip::new(id(1, 0), 16, 64);
        assert!(g.receive(meta(2, 0, 1, "b"), false).is_some());
        assert!(
            g.receive(meta(2, 0, 1, "b"), false).is_none(),
            "same version"
        );
        assert!(
            g.receive(meta(2, 0, 0, "old"), false).is_none(),
            "older version"
        );
        assert!(g.receive(meta(2, 0, 2, "b2"), false).is_some());
        assert!(
            g.receive(meta(2, 1, 0, "rejoined"), false).is_some(),
            "newer bump"
        );
        assert_eq!(g.metas[&id(2, 0).addr].name, "rejoined");
        assert_eq!(
            g.inbox,
            [
                Inbound::Meta(id(2, 0).addr),
                Inbound::Meta(id(2, 0).addr),
                Inbound::Meta(id(2, 0).addr)
            ]
        );
    }

    #[test]
    fn a_fresher_copy_of_ourselves_asks_for_refutation() {
        let mut g = Gossip::new(id(1, 0), 16, 64);
        assert!(g.receive(meta(1, 0, 1, "me"), true).is_some());
        assert!(g.receive(meta(1, 0, 5, "my past"), false).is_none());
        assert_eq!(g.inbox.last(), Some(&Inbound::SelfStale(5)));
        assert_eq!(g.metas[&id(1, 0).addr].name, "me");
        g.inbox.clear();
        assert!(g.receive(meta(1, 0, 1, "me"), false).is_none());
        assert!(g.inbox.is_empty(), "our own echo is not stale");
    }

    #[test]
    fn user_events_are_new_once_and_old_ones_are_dropped() {
        let mut g = Gossip::new(id(1, 0), 16, 4);
        let ev = |lt| {
            Item::User(UserItem {
                origin: id(2, 0),
                ltime: lt,
                coalesce: false,
                name: String::from("e"),
                payload: Vec::new(),
            })
        };
        assert!(g.receive(ev(10), false).is_some());
        assert!(g.receive(ev(10), false).is_none());
        assert_eq!(g.events.clock, 11);
        assert!(g.receive(ev(8), false).is_some(), "inside the window");
        assert!(g.receive(ev(3), false).is_none(), "older than the window");
        g.events.min_time = 12;
        assert!(g.receive(ev(11), false).is_none(), "before we joined");
        assert!(g.receive(ev(12), false).is_some());
        assert_eq!(g.events.recent.len(), 3);
    }

    #[test]
    fn table_is_bounded() {
        let mut g = Gossip::new(id(1, 0), 2, 4);
        assert!(g.receive(meta(2, 0, 1, "b"), false).is_some());
        assert!(g.receive(meta(3, 0, 1, "c"), false).is_some());
        assert!(g.receive(meta(4, 0, 1, "d"), false).is_none());
        assert_eq!(g.metas.len(), 2);
    }

    #[test]
    fn keys_invalidate_staler_versions_of_the_same_member() {
        let a = id(2, 0).addr;
        let k = |bump, version| ItemKey::Meta {
            addr: a,
            fresh: (bump, version),
        };
        assert!(k(0, 2).invalidates(&k(0, 1)));
        assert!(k(0, 2).invalidates(&k(0, 2)));
        assert!(!k(0, 1).invalidates(&k(0, 2)));
        assert!(k(1, 0).invalidates(&k(0, 9)));
        let other = ItemKey::Meta {
            addr: id(3, 0).addr,
            fresh: (0, 1),
        };
        assert!(!k(0, 9).invalidates(&other));
    }
}
