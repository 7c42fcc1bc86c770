//! A member's identity as foca sees it: its gossip address plus a `bump` counter.
//!
//! The identity travels twice in every packet header, so it stays small (at most 21 bytes
//! encoded). Everything else a member says about itself (name, tags) travels as a custom
//! broadcast. `bump` makes the identity renewable: when the cluster declares this node down
//! while it is alive (a false suspicion, a restart at the same address, a force-leave of a
//! live node), foca renews it with `bump + 1` and rejoins at once.

use core::cmp::Ordering;
use core::net::SocketAddr;

/// One member identity: address and bump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeId {
    pub(crate) addr: SocketAddr,
    pub(crate) bump: u16,
}

impl NodeId {
    pub(crate) const fn new(addr: SocketAddr, bump: u16) -> Self {
        NodeId { addr, bump }
    }
}

/// Compares bumps as serial numbers (RFC 1982), so a bump that wrapped past `u16::MAX`
/// still counts as newer than the one before it.
pub(crate) fn bump_cmp(a: u16, b: u16) -> Ordering {
    match a.wrapping_sub(b) {
        0 => Ordering::Equal,
        d if d < 0x8000 => Ordering::Greater,
        _ => Ordering::Less,
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeId::new(self.addr, self.bump.wrapping_add(1)))
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        bump_cmp(self.bump, adversary.bump) == Ordering::Greater
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity as _;

    #[test]
    fn renewed_identity_wins_even_across_wraparound() {
        let addr = SocketAddr::from(([10, 0, 0, 1], 8301));
        for bump in [0, 1, 0x7fff, 0xfffe, u16::MAX] {
            let id = NodeId::new(addr, bump);
            let renewed = id.renew().unwrap();
            assert_eq!(renewed.addr, addr);
            assert!(renewed.win_addr_conflict(&id), "bump {bump}");
            assert!(!id.win_addr_conflict(&renewed), "bump {bump}");
        }
    }
}
