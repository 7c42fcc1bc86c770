//! The member view Consul and Serf clients read, and the one table of status transitions
//! that decides which member event each change produces.
//!
//! A member's status is derived, never stored: foca says whether it is active (alive or
//! suspect), and the freshest leave record for its identity says whether it meant to go.
//!
//! | active | leave record covering identity  | status    |
//! |--------|--------------------------------|-----------|
//! | yes    | none, or forced by a peer      | `alive`   |
//! | yes    | its own                        | `leaving` |
//! | no     | any                            | `left`    |
//! | no     | none                           | `failed`  |
//!
//! This node is always in its own list: `alive`, `leaving` during a leave, `left` after.
//! A member is shown once its meta (name, tags) is known; until then it has no name to
//! show.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::net::IpAddr;

use super::event::MemberEvent;
use super::identity::NodeId;
use super::wire::{Leave, Meta};
use crate::time::Instant;

/// Serf's protocol range `[min, max, cur]` as members report it; tandem speaks one
/// protocol and reports what Serf 0.9.4 sends (specs/consul-serf-rpc.md, 5.3).
pub const PROTOCOL: [u8; 3] = [1, 5, 2];
/// Serf's delegate protocol range `[min, max, cur]`, as Serf 0.9.4 sends it (the CLI's
/// "Protocol Version: 5, Available Protocol Range: [2, 5]").
pub const DELEGATE: [u8; 3] = [2, 5, 5];

/// A member's status, in Serf's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberStatus {
    /// Answering probes.
    Alive,
    /// Announced it is leaving, still answering.
    Leaving,
    /// Left gracefully, or was force-left after failing.
    Left,
    /// Stopped answering without announcing a leave.
    Failed,
}

impl MemberStatus {
    /// `alive`, `leaving`, `left` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }

    pub(crate) fn is_up(self) -> bool {
        matches!(self, MemberStatus::Alive | MemberStatus::Leaving)
    }
}

/// One member as `members` shows it (Serf's `Member`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemberView {
    /// Node name (`name.dc` in the WAN pool).
    pub name: String,
    /// Gossip address.
    pub addr: IpAddr,
    /// Gossip port.
    pub port: u16,
    /// Tags, `role`/`dc`/`build`/`vsn` included.
    pub tags: BTreeMap<String, String>,
    /// Status.
    pub status: MemberStatus,
    /// `ProtocolMin`.
    pub protocol_min: u8,
    /// `ProtocolMax`.
    pub protocol_max: u8,
    /// `ProtocolCur`.
    pub protocol_cur: u8,
    /// `DelegateMin`.
    pub delegate_min: u8,
    /// `DelegateMax`.
    pub delegate_max: u8,
    /// `DelegateCur`.
    pub delegate_cur: u8,
}

impl MemberView {
    pub(crate) fn new(meta: &Meta, status: MemberStatus) -> Self {
        let [protocol_min, protocol_max, protocol_cur] = PROTOCOL;
        let [delegate_min, delegate_max, delegate_cur] = DELEGATE;
        MemberView {
            name: meta.name.clone(),
            addr: meta.id.addr.ip(),
            port: meta.id.addr.port(),
            tags: meta.tags.clone(),
            status,
            protocol_min,
            protocol_max,
            protocol_cur,
            delegate_min,
            delegate_max,
            delegate_cur,
        }
    }
}

/// Where this node is in leaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SelfState {
    Active,
    Leaving,
    Left,
}

/// What the event stream last said about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) status: MemberStatus,
    pub(crate) fresh: (u16, u32),
}

/// The cluster's record of one member (this node included).
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) id: NodeId,
    pub(crate) active: bool,
    pub(crate) is_self: bool,
    pub(crate) down_since: Option<Instant>,
    pub(crate) shown: Option<Shown>,
    /// Removed from the list by `force-leave -prune`; kept until reaped so a late
    /// notification does not bring it back.
    pub(crate) pruned: bool,
    /// Down without a leave record yet: `member-failed` waits while peers are asked, and
    /// until then the member is still shown `alive`, so `members` and the events agree.
    pub(crate) hold: bool,
}

impl Record {
    pub(crate) fn new(id: NodeId, is_self: bool) -> Self {
        Record {
            id,
            active: true,
            is_self,
            down_since: None,
            shown: None,
            pruned: false,
            hold: false,
        }
    }

    /// The status table above.
    pub(crate) fn status(&self, leave: Option<&Leave>, me: SelfState) -> MemberStatus {
        if self.is_self {
            return match me {
                SelfState::Active => MemberStatus::Alive,
                SelfState::Leaving => MemberStatus::Leaving,
                SelfState::Left => MemberStatus::Left,
            };
        }
        let leave = leave.filter(|l| l.covers(self.id));
        match (self.active, leave) {
            (true, Some(l)) if !l.forced => MemberStatus::Leaving,
            (true, _) => MemberStatus::Alive,
            (false, Some(_)) => MemberStatus::Left,
            // Held: its leave record may still be on the way (see `Record::hold`).
            (false, None) if self.hold => MemberStatus::Alive,
            (false, None) => MemberStatus::Failed,
        }
    }
}

/// The event a change from `before` to `now` produces: the one place member events are
/// decided.
pub(crate) fn transition(before: Option<Shown>, now: Shown) -> Option<MemberEvent> {
    use MemberStatus::*;
    let Some(before) = before else {
        // A member first seen down was never announced; show it without an event.
        return now.status.is_up().then_some(MemberEvent::Join);
    };
    match (before.status, now.status) {
        (Alive | Leaving, Failed) => Some(MemberEvent::Failed),
        (Alive | Leaving | Failed, Left) => Some(MemberEvent::Leave),
        (Failed | Left, Alive | Leaving) => Some(MemberEvent::Join),
        _ if before.fresh != now.fresh && now.status.is_up() => Some(MemberEvent::Update),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberStatus::*;
    use core::net::SocketAddr;

    fn id(bump: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, 2], 8301)), bump)
    }

    fn leave(bump: u16, forced: bool) -> Leave {
        Leave {
            id: id(bump),
            prune: false,
            forced,
        }
    }

    #[test]
    fn status_follows_the_table() {
        let mut r = Record::new(id(1), false);
        let me = SelfState::Active;
        assert_eq!(r.status(None, me), Alive);
        assert_eq!(r.status(Some(&leave(1, false)), me), Leaving);
        assert_eq!(
            r.status(Some(&leave(1, true)), me),
            Alive,
            "force-leave of a live node"
        );
        assert_eq!(
            r.status(Some(&leave(0, false)), me),
            Alive,
            "a previous life left"
        );
        r.active = false;
        assert_eq!(r.status(None, me), Failed);
        r.hold = true;
        assert_eq!(
            r.status(None, me),
            Alive,
            "down, but `member-failed` is held back"
        );
        assert_eq!(
            r.status(Some(&leave(1, false)), me),
            Left,
            "held, then it left"
        );
        r.hold = false;
        assert_eq!(r.status(Some(&leave(1, false)), me), Left);
        assert_eq!(r.status(Some(&leave(1, true)), me), Left);
        assert_eq!(r.status(Some(&leave(0, true)), me), Failed);
        let s = Record::new(id(0), true);
        assert_eq!(s.status(None, SelfState::Leaving), Leaving);
        assert_eq!(s.status(None, SelfState::Left), Left);
    }

    #[test]
    fn transitions_give_serfs_events() {
        let sh = |status, v| Shown {
            status,
            fresh: (0, v),
        };
        assert_eq!(transition(None, sh(Alive, 1)), Some(MemberEvent::Join));
        assert_eq!(transition(None, sh(Failed, 1)), None);
        assert_eq!(transition(Some(sh(Alive, 1)), sh(Alive, 1)), None);
        assert_eq!(
            transition(Some(sh(Alive, 1)), sh(Alive, 2)),
            Some(MemberEvent::Update)
        );
        assert_eq!(transition(Some(sh(Alive, 1)), sh(Leaving, 1)), None);
        assert_eq!(
            transition(Some(sh(Leaving, 1)), sh(Left, 1)),
            Some(MemberEvent::Leave)
        );
        assert_eq!(
            transition(Some(sh(Alive, 1)), sh(Failed, 1)),
            Some(MemberEvent::Failed)
        );
        assert_eq!(
            transition(Some(sh(Failed, 1)), sh(Left, 1)),
            Some(MemberEvent::Leave)
        );
        assert_eq!(
            transition(Some(sh(Left, 1)), sh(Alive, 2)),
            Some(MemberEvent::Join)
        );
        assert_eq!(
            transition(Some(sh(Failed, 1)), sh(Failed, 2)),
            None,
            "no updates when down"
        );
    }

    #[test]
    fn view_carries_serfs_fixed_fields() {
        let meta = Meta {
            id: id(3),
            version: 1,
            name: "b".into(),
            tags: BTreeMap::new(),
        };
        let v = MemberView::new(&meta, Alive);
        assert_eq!(
            (v.name.as_str(), v.port, v.status.as_str()),
            ("b", 8301, "alive")
        );
        assert_eq!(
            [
                v.protocol_min,
                v.protocol_max,
                v.protocol_cur,
                v.delegate_min,
                v.delegate_max,
                v.delegate_cur
            ],
            [1, 5, 2, 2, 5, 5]
        );
    }
}
