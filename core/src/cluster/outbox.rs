//! The bounded ring of datagrams waiting for the runtime to send.
//!
//! A full ring drops the newest datagram and counts it: gossip is lossy by design and
//! recovers, while blocking would stall every timer behind a slow socket. Sent buffers are
//! kept for reuse, so a warm cluster allocates nothing per datagram.
//!
//! Every datagram the cluster sends passes through [`Outbox::push`], which seals it with the
//! keyring's primary key when gossip is encrypted (`keyring.rs`): nothing leaves in
//! plaintext by another path.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::SocketAddr;

use super::Pool;
use super::keyring::Crypt;

/// Buffers kept for reuse.
const FREE_BUFFERS: usize = 64;

#[derive(Debug)]
pub(crate) struct Outbox {
    queue: VecDeque<(Pool, SocketAddr, Vec<u8>)>,
    free: Vec<Vec<u8>>,
    cap: usize,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
    /// The keys: seals what is queued (and opens what arrives, for the cluster).
    pub(crate) crypt: Crypt,
}

impl Outbox {
    pub(crate) fn new(cap: usize, crypt: Crypt) -> Self {
        Outbox {
            queue: VecDeque::new(),
            free: Vec::new(),
            cap,
            sent: 0,
            dropped: 0,
            crypt,
        }
    }

    /// Queues a datagram written by `write`; false if the ring was full.
    pub(crate) fn push(
        &mut self,
        pool: Pool,
        to: SocketAddr,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        if self.queue.len() >= self.cap {
            self.dropped += 1;
            return false;
        }
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        write(&mut buf);
        if !self.crypt.seal(&mut buf) {
            self.dropped += 1;
            if self.free.len() < FREE_BUFFERS {
                self.free.push(buf);
            }
            return false;
        }
        self.queue.push_back((pool, to, buf));
        self.sent += 1;
        true
    }

    pub(crate) fn peek(&self) -> Option<(Pool, SocketAddr, &[u8])> {
        self.queue.front().map(|(p, a, b)| (*p, *a, &b[..]))
    }

    pub(crate) fn pop(&mut self) {
        if let Some((_, _, buf)) = self.queue.pop_front()
            && self.free.len() < FREE_BUFFERS
        {
            self.free.push(buf);
        }
    }

    pub(crate) fn take(&mut self) -> Option<(Pool, SocketAddr, Vec<u8>)> {
        self.queue.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn plain(cap: usize) -> Outbox {
        let rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
        Outbox::new(cap, Crypt::new(&super::super::Keyring::default(), rng))
    }

    #[test]
    fn full_ring_drops_the_newest_and_counts() {
        let to = SocketAddr::from(([127, 0, 0, 1], 1));
        let mut o = plain(2);
        assert!(o.push(Pool::Lan, to, |b| b.push(1)));
        assert!(o.push(Pool::Lan, to, |b| b.push(2)));
        assert!(!o.push(Pool::Lan, to, |b| b.push(3)));
        assert_eq!((o.len(), o.dropped), (2, 1));
        assert_eq!(o.peek(), Some((Pool::Lan, to, &[1u8][..])));
        o.pop();
        assert_eq!(o.take(), Some((Pool::Lan, to, Vec::from([2u8]))));
        assert!(o.push(Pool::Wan, to, |b| b.push(4)));
        assert_eq!(
            o.peek(),
            Some((Pool::Wan, to, &[4u8][..])),
            "a reused buffer starts empty"
        );
    }
}
