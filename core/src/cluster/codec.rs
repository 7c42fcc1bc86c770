//! foca's wire format for [`NodeId`]: a hand-written, allocation-free binary codec.
//!
//! ```text
//! identity  := family:u8 (4|6) ip:[u8; 4|16] port:u16 bump:u16        (9 or 21 bytes)
//! header    := src:identity src_incarnation:u16 dst:identity message
//! message   := tag:u8 [fields]   Ping/Ack: probe:u8; PingReq..ForwardedAck: identity probe:u8
//! member    := identity incarnation:u16 state:u8 (0 alive, 1 suspect, 2 down)
//! ```
//!
//! All integers are big-endian. Decoding never panics and never allocates: every read is
//! bounds-checked against the input, and an identity or member is a fixed-size value, so a
//! hostile packet can at most make foca push `max_packet_size / 12` members into its
//! reused scratch buffer. Encoding writes a whole item or nothing, as foca requires.

use bytes::{Buf, BufMut};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use foca::{Header, Member, Message, State};

use super::identity::NodeId;
use super::wire::{CodecError, Reader};

/// Longest encoded identity.
pub(crate) const MAX_ID_LEN: usize = 21;
/// Longest encoded header: two identities, incarnation, tag, and an identity and probe
/// number in the message.
const MAX_HEADER_LEN: usize = 3 * MAX_ID_LEN + 2 + 1 + 1;
/// Longest encoded member.
const MAX_MEMBER_LEN: usize = MAX_ID_LEN + 3;

/// The codec foca is instantiated with.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NodeCodec;

/// A fixed stack buffer items are encoded into before being copied out whole.
struct Scratch<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Scratch<N> {
    fn new() -> Self {
        Scratch {
            buf: [0; N],
            len: 0,
        }
    }
    fn put(&mut self, bytes: &[u8]) {
        // Every caller stays within N by construction (the MAX_*_LEN constants); a
        // truncated write would only produce a packet the peer rejects.
        let end = (self.len + bytes.len()).min(N);
        let n = end - self.len;
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..end), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.len = end;
    }
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
    fn id(&mut self, id: &NodeId) {
        match id.addr.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.put(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.put(&ip.octets());
            }
        }
        self.u16(id.addr.port());
        self.u16(id.bump);
    }
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
    fn write_to(&self, mut buf: impl BufMut) -> Result<(), CodecError> {
        if buf.remaining_mut() < self.len {
            return Err(CodecError::BufferFull);
        }
        buf.put_slice(self.bytes());
        Ok(())
    }
}

/// Reads an identity.
pub(crate) fn read_id(r: &mut Reader<'_>) -> Result<NodeId, CodecError> {
    let ip = match r.u8()? {
        4 => {
            let b = r.array::<4>()?;
            IpAddr::V4(Ipv4Addr::from(b))
        }
        6 => {
            let b = r.array::<16>()?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return Err(CodecError::BadTag),
    };
    let port = r.u16()?;
    let bump = r.u16()?;
    Ok(NodeId::new(SocketAddr::new(ip, port), bump))
}

/// Writes an identity into `out`.
pub(crate) fn write_id(out: &mut alloc::vec::Vec<u8>, id: &NodeId) {
    let mut s = Scratch::<MAX_ID_LEN>::new();
    s.id(id);
    out.extend_from_slice(s.bytes());
}

fn read_header(r: &mut Reader<'_>) -> Result<Header<NodeId>, CodecError> {
    let src = read_id(r)?;
    let src_incarnation = r.u16()?;
    let dst = read_id(r)?;
    let message = match r.u8()? {
        0 => Message::Ping(r.u8()?),
        1 => Message::Ack(r.u8()?),
        2 => {
            let target = read_id(r)?;
            Message::PingReq {
                target,
                probe_number: r.u8()?,
            }
        }
        3 => {
            let origin = read_id(r)?;
            Message::IndirectPing {
                origin,
                probe_number: r.u8()?,
            }
        }
        4 => {
            let target = read_id(r)?;
            Message::IndirectAck {
                target,
                probe_number: r.u8()?,
            }
        }
        5 => {
            let origin = read_id(r)?;
            Message::ForwardedAck {
                origin,
                probe_number: r.u8()?,
            }
        }
        6 => Message::Announce,
        7 => Message::Feed,
        8 => Message::Gossip,
        9 => Message::Broadcast,
        10 => Message::TurnUndead,
        _ => return Err(CodecError::BadTag),
    };
    Ok(Header {
        src,
        src_incarnation,
        dst,
        message,
    })
}

fn read_member(r: &mut Reader<'_>) -> Result<Member<NodeId>, CodecError> {
    let id = read_id(r)?;
    let incarnation = r.u16()?;
    let state = match r.u8()? {
        0 => State::Alive,
        1 => State::Suspect,
        2 => State::Down,
        _ => return Err(CodecError::BadTag),
    };
    Ok(Member::new(id, incarnation, state))
}

/// Decodes one item from the front of `buf` and advances it past what was read.
fn decode_with<T>(
    mut buf: impl Buf,
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    // foca hands us contiguous slices, so the first chunk is the whole input.
    let mut r = Reader::new(buf.chunk());
    let item = f(&mut r)?;
    let used = r.position();
    buf.advance(used);
    Ok(item)
}

/// What [`peek`] learns from a packet without handing it to foca.
#[derive(Debug)]
pub(crate) struct Peek {
    pub(crate) header: Header<NodeId>,
}

/// Decodes a foca packet's header and checks every piggybacked member decodes, calling
/// `member` with each member's address. Used to bound the member table before foca sees
/// the packet.
pub(crate) fn peek(data: &[u8], mut member: impl FnMut(SocketAddr)) -> Result<Peek, CodecError> {
    let mut r = Reader::new(data);
    let header = read_header(&mut r)?;
    let carries_members = !matches!(
        header.message,
        Message::Announce | Message::TurnUndead | Message::Broadcast
    );
    if carries_members && r.remaining() >= 2 {
        let n = r.u16()?;
        for _ in 0..n {
            member(read_member(&mut r)?.id().addr);
        }
    }
    Ok(Peek { header })
}

/// Rewrites a foca packet into `out` without the piggybacked members (address and state)
/// `keep` refuses, the
/// header and whatever follows the members (custom broadcasts) unchanged. Returns whether
/// any member was dropped (`out` is written only then). Used to make what a stranger says
/// about others count for nothing.
pub(crate) fn strip_members(
    data: &[u8],
    mut keep: impl FnMut(SocketAddr, State) -> bool,
    out: &mut alloc::vec::Vec<u8>,
) -> Result<bool, CodecError> {
    let mut r = Reader::new(data);
    let header = read_header(&mut r)?;
    let carries_members = !matches!(
        header.message,
        Message::Announce | Message::TurnUndead | Message::Broadcast
    );
    if !carries_members || r.remaining() < 2 {
        return Ok(false);
    }
    let head_len = r.position();
    let n = r.u16()?;
    let mut kept: u16 = 0;
    let mut dropped = false;
    out.clear();
    out.extend_from_slice(data.get(..head_len).unwrap_or_default());
    out.extend_from_slice(&[0, 0]);
    for _ in 0..n {
        let start = r.position();
        let member = read_member(&mut r)?;
        if keep(member.id().addr, member.state()) {
            kept += 1;
            out.extend_from_slice(data.get(start..r.position()).unwrap_or_default());
        } else {
            dropped = true;
        }
    }
    out.extend_from_slice(r.rest());
    if let Some(count) = out.get_mut(head_len..head_len + 2) {
        count.copy_from_slice(&kept.to_be_bytes());
    }
    Ok(dropped)
}

impl foca::Codec<NodeId> for NodeCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        let mut s = Scratch::<MAX_HEADER_LEN>::new();
        s.id(&header.src);
        s.u16(header.src_incarnation);
        s.id(&header.dst);
        match &header.message {
            Message::Ping(n) => {
                s.u8(0);
                s.u8(*n);
            }
            Message::Ack(n) => {
                s.u8(1);
                s.u8(*n);
            }
            Message::PingReq {
                target,
                probe_number,
            } => {
                s.u8(2);
                s.id(target);
                s.u8(*probe_number);
            }
            Message::IndirectPing {
                origin,
                probe_number,
            } => {
                s.u8(3);
                s.id(origin);
                s.u8(*probe_number);
            }
            Message::IndirectAck {
                target,
                probe_number,
            } => {
                s.u8(4);
                s.id(target);
                s.u8(*probe_number);
            }
            Message::ForwardedAck {
                origin,
                probe_number,
            } => {
                s.u8(5);
                s.id(origin);
                s.u8(*probe_number);
            }
            Message::Announce => s.u8(6),
            Message::Feed => s.u8(7),
            Message::Gossip => s.u8(8),
            Message::Broadcast => s.u8(9),
            Message::TurnUndead => s.u8(10),
        }
        s.write_to(buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        decode_with(buf, read_header)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        let mut s = Scratch::<MAX_MEMBER_LEN>::new();
        s.id(member.id());
        s.u16(member.incarnation());
        s.u8(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        s.write_to(buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        decode_with(buf, read_member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use foca::Codec as _;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{Rng as _, RngExt as _, SeedableRng as _};

    fn v4(last: u8, port: u16, bump: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, last], port)), bump)
    }

    fn v6(bump: u16) -> NodeId {
        let ip = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0xdead, 0xbeef);
        NodeId::new(SocketAddr::new(IpAddr::V6(ip), 7946), bump)
    }

    fn all_messages() -> Vec<Message<NodeId>> {
        Vec::from([
            Message::Ping(7),
            Message::Ack(255),
            Message::PingReq {
                target: v6(3),
                probe_number: 1,
            },
            Message::IndirectPing {
                origin: v4(9, 1, 2),
                probe_number: 2,
            },
            Message::IndirectAck {
                target: v4(1, 8301, 0),
                probe_number: 3,
            },
            Message::ForwardedAck {
                origin: v6(u16::MAX),
                probe_number: 4,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ])
    }

    #[test]
    fn headers_round_trip() {
        let mut c = NodeCodec;
        for message in all_messages() {
            let header = Header {
                src: v6(9),
                src_incarnation: 0xabcd,
                dst: v4(2, 8301, 1),
                message,
            };
            let mut buf = Vec::new();
            c.encode_header(&header, &mut buf).unwrap();
            let mut slice = &buf[..];
            assert_eq!(c.decode_header(&mut slice).unwrap(), header);
            assert!(slice.is_empty(), "decode consumed everything");
        }
    }

    #[test]
    fn identity_encodes_in_9_or_21_bytes() {
        let mut out = Vec::new();
        write_id(&mut out, &v4(1, 8301, 2));
        assert_eq!(out, [4, 10, 0, 0, 1, 0x20, 0x6d, 0, 2]);
        out.clear();
        write_id(&mut out, &v6(0));
        assert_eq!(out.len(), MAX_ID_LEN);
    }

    #[test]
    fn members_round_trip_and_never_write_partially() {
        let mut c = NodeCodec;
        for (i, state) in [State::Alive, State::Suspect, State::Down]
            .into_iter()
            .enumerate()
        {
            let m = Member::new(v4(i as u8, 8301, 5), 77, state);
            let mut buf = Vec::new();
            c.encode_member(&m, &mut buf).unwrap();
            assert_eq!(buf.len(), 12);
            let mut slice = &buf[..];
            assert_eq!(c.decode_member(&mut slice).unwrap(), m);
            // One byte short: nothing is written.
            let mut small = Vec::with_capacity(16);
            let mut limited = (&mut small).limit(11);
            assert_eq!(
                c.encode_member(&m, &mut limited),
                Err(CodecError::BufferFull)
            );
            assert!(small.is_empty());
        }
    }

    #[test]
    fn truncated_and_bad_tags_are_errors() {
        let mut c = NodeCodec;
        let header = Header {
            src: v4(1, 1, 1),
            src_incarnation: 1,
            dst: v4(2, 2, 2),
            message: Message::PingReq {
                target: v4(3, 3, 3),
                probe_number: 9,
            },
        };
        let mut buf = Vec::new();
        c.encode_header(&header, &mut buf).unwrap();
        for cut in 0..buf.len() {
            let mut slice = &buf[..cut];
            assert_eq!(
                c.decode_header(&mut slice),
                Err(CodecError::Truncated),
                "cut {cut}"
            );
        }
        let mut bad = buf.clone();
        bad[0] = 5;
        assert_eq!(c.decode_header(&mut &bad[..]), Err(CodecError::BadTag));
        let mut bad = buf;
        bad[9 + 2 + 9] = 11;
        assert_eq!(c.decode_header(&mut &bad[..]), Err(CodecError::BadTag));
    }

    /// Random and mutated packets never panic the codec, and whatever decodes re-encodes
    /// to the same bytes. Runs a few hundred thousand inputs in well under a second.
    #[test]
    fn hostile_bytes_never_panic() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0xC0DEC);
        let mut c = NodeCodec;
        let mut valid = Vec::new();
        for message in all_messages() {
            let mut buf = Vec::new();
            let header = Header {
                src: v4(1, 8301, 0),
                src_incarnation: 3,
                dst: v6(1),
                message,
            };
            c.encode_header(&header, &mut buf).unwrap();
            buf.extend_from_slice(&2u16.to_be_bytes());
            for i in 0..2 {
                c.encode_member(&Member::alive(v4(i, 8301, i as u16)), &mut buf)
                    .unwrap();
            }
            valid.push(buf);
        }
        let mut decoded = 0u32;
        let mut data = Vec::new();
        for round in 0..300_000u32 {
            data.clear();
            if round % 2 == 0 {
                let len = rng.random_range(0..80);
                data.resize(len, 0);
                rng.fill_bytes(&mut data);
            } else {
                let base = &valid[rng.random_range(0..valid.len())];
                data.extend_from_slice(base);
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..data.len());
                    data[i] = rng.random();
                }
                data.truncate(rng.random_range(0..=data.len()));
            }
            let mut slice = &data[..];
            if let Ok(h) = c.decode_header(&mut slice) {
                decoded += 1;
                let mut again = Vec::new();
                c.encode_header(&h, &mut again).unwrap();
                assert_eq!(again[..], data[..again.len()]);
                while let Ok(m) = c.decode_member(&mut slice) {
                    let _ = m;
                }
            }
            let _ = peek(&data, |_| {});
        }
        assert!(
            decoded > 1000,
            "mutations should often still decode: {decoded}"
        );
    }
}
