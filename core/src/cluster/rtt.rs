//! Round trips for network coordinates: a small ping and ack of tandem's own on the LAN
//! gossip socket, and the coordinates they teach.
//!
//! Serf piggybacks its coordinate on memberlist's probe ack and measures the probe's round
//! trip. foca's probes carry no payload, so every LAN `probe_period` this node sends one
//! COORD PING, carrying its coordinate, to one live member chosen at random; the member
//! answers with a COORD ACK carrying its own. The round trip is measured on the core's
//! clock, from the ping's queueing to the ack's arrival; it and the ack's coordinate update
//! this node's [`Vivaldi`] (as Serf's `NotifyPingComplete`). Each side keeps the other's
//! latest coordinate, which is what `get-coordinate` answers (Serf's coordinate cache), and
//! forgets it when the member is reaped. One ping is outstanding at a time; an ack that
//! does not answer it (late, duplicated, forged, from elsewhere) teaches nothing.
//!
//! ```text
//! COORD PING := 0x06 version:u8 nonce:u32 coordinate
//! COORD ACK  := 0x07 version:u8 nonce:u32 coordinate
//! coordinate := dims:u8 (vec:f64){dims} error:f64 adjustment:f64 height:f64
//! ```
//!
//! Floats are IEEE 754 binary64, big-endian; `version` is [`COORD_VERSION`] and `dims` is
//! [`DIMENSIONS`]. A frame with another version or dimension count, or a coordinate with a
//! component that is NaN, infinite or out of range (a vector component or the adjustment
//! beyond ±[`MAX_RTT`], a height outside `0..=MAX_RTT`, an error outside `0..=error_max`)
//! is rejected and counted ([`super::ClusterStats::coordinates_rejected`]): a hostile peer
//! can neither poison this node's coordinate nor plant one for itself. A node that does not
//! know these frames (an older tandem) counts them as bad datagrams and never answers, so
//! the pinger just learns nothing from it.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::SocketAddr;

use rand::RngExt as _;
use rand::rngs::Xoshiro256PlusPlus;

use super::coordinate::{Coordinate, DIMENSIONS, MAX_RTT, Vivaldi, VivaldiConfig};
use super::member::SelfState;
use super::timer::Task;
use super::wire::{CodecError, Reader};
use super::{Cluster, Pool};
use crate::time::Instant;

pub(crate) const FRAME_COORD_PING: u8 = 0x06;
pub(crate) const FRAME_COORD_ACK: u8 = 0x07;
/// The version of the COORD frames (Serf's `PingVersion` is 1 too).
pub const COORD_VERSION: u8 = 1;
/// Bytes of an encoded COORD frame.
pub const COORD_FRAME_LEN: usize = 1 + 1 + 4 + 1 + 8 * (DIMENSIONS + 3);

/// Whether a datagram (decrypted) is a COORD frame.
pub(crate) fn is_coord(data: &[u8]) -> bool {
    matches!(data.first(), Some(&(FRAME_COORD_PING | FRAME_COORD_ACK)))
}

/// A decoded COORD frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CoordFrame {
    pub(crate) ack: bool,
    pub(crate) nonce: u32,
    pub(crate) coord: Coordinate,
}

/// Why a COORD frame was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CoordReject {
    /// It did not decode (truncated, trailing bytes, another version or dimension count).
    Codec(CodecError),
    /// A component is NaN, infinite or out of range.
    Value,
}

impl CoordFrame {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(if self.ack {
            FRAME_COORD_ACK
        } else {
            FRAME_COORD_PING
        });
        out.push(COORD_VERSION);
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.push(DIMENSIONS as u8);
        for v in &self.coord.vec {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for v in [self.coord.error, self.coord.adjustment, self.coord.height] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Decodes a whole datagram (its kind byte included) and checks the coordinate.
    pub(crate) fn decode(data: &[u8], cfg: &VivaldiConfig) -> Result<CoordFrame, CoordReject> {
        let mut r = Reader::new(data);
        let ack = match r.u8().map_err(CoordReject::Codec)? {
            FRAME_COORD_PING => false,
            FRAME_COORD_ACK => true,
            _ => return Err(CoordReject::Codec(CodecError::BadTag)),
        };
        let head = (|| {
            let version = r.u8()?;
            let nonce = r.u32()?;
            let dims = r.u8()?;
            if version != COORD_VERSION || usize::from(dims) != DIMENSIONS {
                return Err(CodecError::BadTag);
            }
            let mut f = || r.u64().map(f64::from_bits);
            let mut coord = Coordinate::new(cfg);
            for v in &mut coord.vec {
                *v = f()?;
            }
            coord.error = f()?;
            coord.adjustment = f()?;
            coord.height = f()?;
            Ok((nonce, coord))
        })();
        let (nonce, coord) = head.map_err(CoordReject::Codec)?;
        r.end().map_err(CoordReject::Codec)?;
        if !plausible(&coord, cfg) {
            return Err(CoordReject::Value);
        }
        Ok(CoordFrame { ack, nonce, coord })
    }
}

/// Finite, and within what Vivaldi can produce from RTTs of at most [`MAX_RTT`].
fn plausible(c: &Coordinate, cfg: &VivaldiConfig) -> bool {
    let bound = MAX_RTT.as_secs_f64();
    c.is_valid()
        && c.vec.iter().all(|v| v.abs() <= bound)
        && c.adjustment.abs() <= bound
        && (0.0..=bound).contains(&c.height)
        && (0.0..=cfg.error_max).contains(&c.error)
}

/// The LAN pool's coordinate state.
pub(crate) struct Coords {
    pub(crate) vivaldi: Vivaldi<SocketAddr>,
    /// The latest coordinate of each member heard from (by address).
    pub(crate) peers: BTreeMap<SocketAddr, Coordinate>,
    /// The ping in flight: to whom, its nonce, when it was queued.
    pending: Option<(SocketAddr, u32, Instant)>,
    rng: Xoshiro256PlusPlus,
    /// COORD frames rejected (see the module docs).
    pub(crate) rejected: u64,
    /// Round trips that updated this node's coordinate.
    pub(crate) samples: u64,
}

impl Coords {
    pub(crate) fn new(rng: Xoshiro256PlusPlus) -> Self {
        Coords {
            vivaldi: Vivaldi::new(VivaldiConfig::default()),
            peers: BTreeMap::new(),
            pending: None,
            rng,
            rejected: 0,
            samples: 0,
        }
    }
}

impl Cluster {
    /// This node's network coordinate (LAN).
    pub fn coordinate(&self) -> Coordinate {
        *self.coords.vivaldi.coordinate()
    }

    /// The coordinate of the LAN member named `name` (this node's own included), as Serf's
    /// `GetCachedCoordinate`: `None` for a name not known, or not heard from yet, and for
    /// every name when coordinates are off.
    pub fn coordinate_of(&self, name: &str) -> Option<Coordinate> {
        if !self.cfg.coordinates {
            return None;
        }
        if name == self.cfg.node_name {
            return Some(self.coordinate());
        }
        let p = &self.lan;
        p.gossip.with(|g| {
            p.records
                .iter()
                .filter(|(_, r)| !r.is_self && !r.pruned)
                .filter(|(a, _)| g.metas.get(*a).is_some_and(|m| m.name == name))
                .find_map(|(a, _)| self.coords.peers.get(a).copied())
        })
    }

    /// Times this node's coordinate turned invalid and was reset (Serf's
    /// `coordinate_resets`).
    pub fn coordinate_resets(&self) -> u64 {
        self.coords.vivaldi.resets()
    }

    /// Members whose coordinates this node holds (bounded by the members it knows).
    pub fn coordinates_held(&self) -> usize {
        self.coords.peers.len()
    }

    pub(super) fn schedule_coord_ping(&mut self, now: Instant) {
        if self.cfg.coordinates {
            let at = now + self.lan.timing.probe_period;
            self.timers.schedule(at, Task::CoordPing);
        }
    }

    /// Every probe period: forgets coordinates of members no longer known, gives up on an
    /// unanswered ping, and pings one live member.
    pub(super) fn coord_ping_tick(&mut self, now: Instant) {
        self.schedule_coord_ping(now);
        let p = &self.lan;
        let records = &p.records;
        self.coords.peers.retain(|a, _| records.contains_key(a));
        self.coords.pending = None;
        if self.state == SelfState::Left {
            return;
        }
        let live: Vec<SocketAddr> = p
            .records
            .iter()
            .filter(|(_, r)| r.active && !r.is_self)
            .map(|(a, _)| *a)
            .collect();
        if live.is_empty() {
            return;
        }
        let to = live[self.coords.rng.random_range(0..live.len())];
        let nonce = self.coords.rng.random::<u32>();
        let frame = CoordFrame {
            ack: false,
            nonce,
            coord: self.coordinate(),
        };
        if self.out.push(Pool::Lan, to, |b| frame.encode(b)) {
            self.coords.pending = Some((to, nonce, now));
        }
    }

    /// A COORD PING or ACK arrived on the LAN socket.
    pub(super) fn on_coord(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        let frame = match CoordFrame::decode(data, self.coords.vivaldi.config()) {
            Ok(f) => f,
            Err(_) => {
                self.coords.rejected += 1;
                return;
            }
        };
        if !self.cfg.coordinates || self.state == SelfState::Left {
            return;
        }
        // Only members' coordinates are kept: memory stays bounded by the member table.
        let member = self
            .lan
            .records
            .get(&from)
            .is_some_and(|r| !r.is_self && !r.pruned);
        if !frame.ack {
            let ack = CoordFrame {
                ack: true,
                nonce: frame.nonce,
                coord: self.coordinate(),
            };
            self.out.push(Pool::Lan, from, |b| ack.encode(b));
            if member {
                self.coords.peers.insert(from, frame.coord);
            }
            return;
        }
        let Some((to, nonce, sent)) = self.coords.pending else {
            return;
        };
        if to != from || nonce != frame.nonce || !member {
            return;
        }
        self.coords.pending = None;
        let rtt = now.saturating_duration_since(sent);
        let Coords { vivaldi, rng, .. } = &mut self.coords;
        match vivaldi.update(&from, &frame.coord, rtt, rng) {
            Ok(_) => {
                self.coords.samples += 1;
                self.coords.peers.insert(from, frame.coord);
            }
            Err(_) => self.coords.rejected += 1,
        }
    }

    /// A member was reaped: its coordinate and samples go too.
    pub(super) fn forget_coordinate(&mut self, addr: SocketAddr) {
        self.coords.peers.remove(&addr);
        self.coords.vivaldi.forget(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> CoordFrame {
        let mut coord = Coordinate::new(&VivaldiConfig::default());
        coord.vec[3] = -0.0125;
        coord.error = 0.4;
        coord.adjustment = -0.0003;
        coord.height = 0.0002;
        CoordFrame {
            ack: true,
            nonce: 0xdead_beef,
            coord,
        }
    }

    #[test]
    fn coord_frames_round_trip_in_their_documented_size() {
        let cfg = VivaldiConfig::default();
        for ack in [false, true] {
            let f = CoordFrame { ack, ..frame() };
            let mut buf = Vec::new();
            f.encode(&mut buf);
            assert_eq!(buf.len(), COORD_FRAME_LEN);
            assert_eq!(
                &buf[..7],
                &[if ack { 7 } else { 6 }, 1, 0xde, 0xad, 0xbe, 0xef, 8]
            );
            assert_eq!(CoordFrame::decode(&buf, &cfg), Ok(f));
        }
    }

    #[test]
    fn hostile_coord_frames_are_rejected() {
        let cfg = VivaldiConfig::default();
        let mut good = Vec::new();
        frame().encode(&mut good);
        let float_at = |i: usize| 7 + 8 * i;
        let with = |i: usize, v: f64| {
            let mut b = good.clone();
            b[float_at(i)..float_at(i) + 8].copy_from_slice(&v.to_be_bytes());
            b
        };
        let value = Err(CoordReject::Value);
        for i in 0..DIMENSIONS + 3 {
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0e300, -11.0] {
                assert_eq!(CoordFrame::decode(&with(i, bad), &cfg), value, "{i} {bad}");
            }
        }
        // Error above error_max, negative height.
        assert_eq!(CoordFrame::decode(&with(8, 1.6), &cfg), value);
        assert_eq!(CoordFrame::decode(&with(10, -1e-9), &cfg), value);
        let codec = |e| Err(CoordReject::Codec(e));
        // Another version, another dimension count, truncated, trailing bytes.
        let mut v2 = good.clone();
        v2[1] = 2;
        assert_eq!(CoordFrame::decode(&v2, &cfg), codec(CodecError::BadTag));
        let mut d3 = good.clone();
        d3[6] = 3;
        assert_eq!(CoordFrame::decode(&d3, &cfg), codec(CodecError::BadTag));
        for n in 0..good.len() {
            assert!(CoordFrame::decode(&good[..n], &cfg).is_err(), "{n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(CoordFrame::decode(&long, &cfg), codec(CodecError::Trailing));
    }
}
