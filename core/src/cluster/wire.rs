//! Datagram framing and the items the cluster disseminates, with their limits.
//!
//! Every gossip datagram starts with a kind byte:
//!
//! ```text
//! frame := 0x01 meta_version:u32 foca_packet                       FOCA: foca's own bytes
//!        | 0x02 requester:identity meta_version:u32                PULL: "send me state"
//!               known_bump:u16 known_version:u32 wants:u8 n:u8 (listed:identity){n}
//!        | 0x03 wants:u8 event_clock:u64 count:u8 (len:u16 item){count}   PUSH: the answer
//!
//! wants := bit 0 METAS (every live member's meta; without it, the receiver's own and
//!          the `listed` members' metas)
//!        | bit 1 LEAVES (every leave record) | bit 2 EVENTS (recent user events)
//!        | bit 3 JOIN (the answer's `event_clock` is the joiner's new event floor)
//!        | bit 4 GONE (on an unsolicited PUSH of a leave record: the sender goes silent now)
//!        | bit 5 REPLAY (with EVENTS: every recent user event, old ones too: Serf's Replay)
//!
//! item   := 0x01 id:identity version:u32 name:str8 n:u8 (key:str8 value:str8){n}   META
//!         | 0x02 id:identity prune:u8 forced:u8                                     LEAVE
//!         | 0x03 origin:identity ltime:u64 coalesce:u8 name:str16 payload:bin16     USER
//!         | 0x04 query (see `query.rs`)                                             QUERY
//! ```
//!
//! Queries add two frames (`query.rs`): `0x04` RESPONSE (an ack or a response, sent
//! straight to the query's origin) and `0x05` RELAY (a RESPONSE for a member to pass on to
//! the origin, Serf's relay factor).
//!
//! `meta_version` on FOCA frames is the sender's current meta version: a receiver that holds
//! an older one (a missed tag update) or a newer one (a restarted sender) asks it with a
//! PULL. Items travel as foca custom broadcasts, and in PUSH answers: a joiner pulls every
//! meta and leave record once, every node pulls everything from a random member every
//! `sync_interval` (memberlist's push-pull), and a member that went down without a leave
//! record is asked about at two random members, which repairs what a lossy broadcast missed. Strings are UTF-8 with a length prefix; every length is checked against the
//! input before anything is allocated, so decoding allocates at most the datagram's size.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddr;

use super::codec::{read_id, write_id};
use super::identity::NodeId;

pub(crate) const FRAME_FOCA: u8 = 0x01;
pub(crate) const FRAME_PULL: u8 = 0x02;
pub(crate) const FRAME_PUSH: u8 = 0x03;
pub(crate) const FRAME_RESPONSE: u8 = 0x04;
pub(crate) const FRAME_RELAY: u8 = 0x05;

const ITEM_META: u8 = 0x01;
const ITEM_LEAVE: u8 = 0x02;
const ITEM_USER: u8 = 0x03;
pub(crate) const ITEM_QUERY: u8 = 0x04;

/// Bytes before foca's packet in a FOCA frame.
pub(crate) const FOCA_PREFIX: usize = 5;

/// Serf's limit on a user event's name plus payload (`UserEventSizeLimit`).
pub const USER_EVENT_LIMIT: usize = 512;
/// memberlist's limit on a node's encoded tags (`MetaMaxSize`).
pub const TAGS_LIMIT: usize = 512;
/// Longest node name (a DNS label is 63; Consul allows longer names, memberlist none).
pub const NAME_LIMIT: usize = 255;

/// Why bytes did not decode (or an item did not fit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The input ended inside an item.
    Truncated,
    /// An unknown kind, family or state byte.
    BadTag,
    /// A string is not UTF-8.
    BadUtf8,
    /// A length or count is over its limit.
    TooLong,
    /// The output buffer cannot take the whole item.
    BufferFull,
    /// Bytes left over after the last item.
    Trailing,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecError::Truncated => "truncated gossip data",
            CodecError::BadTag => "unknown tag in gossip data",
            CodecError::BadUtf8 => "gossip string is not UTF-8",
            CodecError::TooLong => "gossip item over its limit",
            CodecError::BufferFull => "gossip buffer full",
            CodecError::Trailing => "trailing bytes in gossip data",
        })
    }
}

impl core::error::Error for CodecError {}

/// A bounds-checked cursor over input bytes.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    pub(crate) fn position(&self) -> usize {
        self.pos
    }
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn flag(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::BadTag),
        }
    }
    pub(crate) fn str_n(&mut self, len: usize, limit: usize) -> Result<&'a str, CodecError> {
        if len > limit {
            return Err(CodecError::TooLong);
        }
        core::str::from_utf8(self.take(len)?).map_err(|_| CodecError::BadUtf8)
    }
    pub(crate) fn str8(&mut self, limit: usize) -> Result<&'a str, CodecError> {
        let len = usize::from(self.u8()?);
        self.str_n(len, limit)
    }
    pub(crate) fn end(&self) -> Result<(), CodecError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(CodecError::Trailing)
        }
    }
}

pub(crate) fn put_str8(out: &mut Vec<u8>, s: &str) {
    // Callers check lengths against NAME_LIMIT / TAGS_LIMIT first.
    out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(s.as_bytes().get(..255).unwrap_or(s.as_bytes()));
}

/// Encoded size of a tag set (the part [`TAGS_LIMIT`] applies to).
pub(crate) fn tags_len(tags: &BTreeMap<String, String>) -> usize {
    tags.iter().map(|(k, v)| 2 + k.len() + v.len()).sum()
}

/// What a member says about itself: name and tags, versioned per identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) id: NodeId,
    pub(crate) version: u32,
    pub(crate) name: String,
    pub(crate) tags: BTreeMap<String, String>,
}

impl Meta {
    /// Newer means a later identity, or the same identity with a higher version.
    pub(crate) fn freshness(&self) -> (u16, u32) {
        (self.id.bump, self.version)
    }
}

/// A leave record: this identity left (of its own will, or by a `force-leave`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Leave {
    pub(crate) id: NodeId,
    /// Remove the member from the member list (`force-leave -prune`).
    pub(crate) prune: bool,
    /// Sent by another node's `force-leave`, not by the member itself.
    pub(crate) forced: bool,
}

impl Leave {
    /// Whether this record speaks for identity `id` of the member: its own, or an older
    /// one (a member that renewed and then left left in every earlier life too; one that
    /// renewed after a force-leave did not).
    pub(crate) fn covers(&self, id: NodeId) -> bool {
        self.id.addr == id.addr
            && super::identity::bump_cmp(self.id.bump, id.bump) != core::cmp::Ordering::Less
    }
}

/// A user event as it travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UserItem {
    pub(crate) origin: NodeId,
    pub(crate) ltime: u64,
    pub(crate) coalesce: bool,
    pub(crate) name: String,
    pub(crate) payload: Vec<u8>,
}

/// One decoded item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    Meta(Meta),
    Leave(Leave),
    User(UserItem),
    Query(super::query::QueryItem),
}

impl Item {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Item::Meta(m) => {
                out.push(ITEM_META);
                write_id(out, &m.id);
                out.extend_from_slice(&m.version.to_be_bytes());
                put_str8(out, &m.name);
                out.push(u8::try_from(m.tags.len()).unwrap_or(u8::MAX));
                for (k, v) in &m.tags {
                    put_str8(out, k);
                    put_str8(out, v);
                }
            }
            Item::Leave(l) => {
                out.push(ITEM_LEAVE);
                write_id(out, &l.id);
                out.push(u8::from(l.prune));
                out.push(u8::from(l.forced));
            }
            Item::User(u) => {
                out.push(ITEM_USER);
                write_id(out, &u.origin);
                out.extend_from_slice(&u.ltime.to_be_bytes());
                out.push(u8::from(u.coalesce));
                let name_len = u16::try_from(u.name.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&name_len.to_be_bytes());
                out.extend_from_slice(u.name.as_bytes());
                let payload_len = u16::try_from(u.payload.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&payload_len.to_be_bytes());
                out.extend_from_slice(&u.payload);
            }
            Item::Query(q) => q.encode(out),
        }
    }

    /// Decodes one whole item; trailing bytes are an error.
    pub(crate) fn decode(data: &[u8]) -> Result<Item, CodecError> {
        let mut r = Reader::new(data);
        let item = match r.u8()? {
            ITEM_META => {
                let id = read_id(&mut r)?;
                let version = r.u32()?;
                let name = String::from(r.str8(NAME_LIMIT)?);
                let n = r.u8()?;
                let mut tags = BTreeMap::new();
                let mut budget = TAGS_LIMIT;
                let mut prev: Option<&str> = None;
                for _ in 0..n {
                    let k = r.str8(255)?;
                    let v = r.str8(255)?;
                    budget = budget
                        .checked_sub(2 + k.len() + v.len())
                        .ok_or(CodecError::TooLong)?;
                    // Keys in strictly increasing order: one encoding per tag set.
                    if prev.is_some_and(|p| p >= k) {
                        return Err(CodecError::BadTag);
                    }
                    prev = Some(k);
                    tags.insert(String::from(k), String::from(v));
                }
                Item::Meta(Meta {
                    id,
                    version,
                    name,
                    tags,
                })
            }
            ITEM_LEAVE => Item::Leave(Leave {
                id: read_id(&mut r)?,
                prune: r.flag()?,
                forced: r.flag()?,
            }),
            ITEM_USER => {
                let origin = read_id(&mut r)?;
                let ltime = r.u64()?;
                let coalesce = r.flag()?;
                let name_len = usize::from(r.u16()?);
                let name = String::from(r.str_n(name_len, USER_EVENT_LIMIT)?);
                let payload_len = usize::from(r.u16()?);
                if name_len + payload_len > USER_EVENT_LIMIT {
                    return Err(CodecError::TooLong);
                }
                let payload = Vec::from(r.take(payload_len)?);
                Item::User(UserItem {
                    origin,
                    ltime,
                    coalesce,
                    name,
                    payload,
                })
            }
            ITEM_QUERY => Item::Query(super::query::QueryItem::decode(&mut r)?),
            _ => return Err(CodecError::BadTag),
        };
        r.end()?;
        Ok(item)
    }
}

/// A PULL request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pull {
    pub(crate) requester: NodeId,
    pub(crate) requester_version: u32,
    /// The freshness of the receiver's meta as the requester knows it, `(0, 0)` if unknown.
    pub(crate) known: (u16, u32),
    /// What to answer with: [`WANT_METAS`], [`WANT_LEAVES`], [`WANT_EVENTS`], [`WANT_JOIN`].
    pub(crate) wants: u8,
}

pub(crate) const WANT_METAS: u8 = 1;
pub(crate) const WANT_LEAVES: u8 = 2;
pub(crate) const WANT_EVENTS: u8 = 4;
pub(crate) const WANT_JOIN: u8 = 8;
/// On an unsolicited PUSH: the sender is going silent now (its leave has propagated).
pub(crate) const WANT_GONE: u8 = 16;
/// With EVENTS on a join: every recent event, not only young ones, and the joiner keeps
/// its event floor (Serf's `Replay`). A node that does not know the bit sends young ones.
pub(crate) const WANT_REPLAY: u8 = 32;

/// A PUSH answer's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PushHeader {
    /// The `wants` of the PULL it answers.
    pub(crate) wants: u8,
    /// The sender's user-event clock.
    pub(crate) event_clock: u64,
}

/// A decoded datagram.
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    Foca {
        meta_version: u32,
        packet: &'a [u8],
    },
    /// A PULL and the members whose metas it lists.
    Pull(Pull, Vec<SocketAddr>),
    /// The raw items; decode each with [`Item::decode`].
    Push(PushHeader, Vec<&'a [u8]>),
    /// A query's ack or response, for its origin.
    Response(super::query::Response<'a>),
    /// A response to pass on to `dest` (the whole RESPONSE frame, as received).
    Relay {
        dest: SocketAddr,
        frame: &'a [u8],
    },
}

/// Most items in one PUSH datagram.
const PUSH_MAX_ITEMS: usize = 64;

impl<'a> Frame<'a> {
    pub(crate) fn decode(data: &'a [u8]) -> Result<Frame<'a>, CodecError> {
        let mut r = Reader::new(data);
        match r.u8()? {
            FRAME_FOCA => {
                let meta_version = r.u32()?;
                Ok(Frame::Foca {
                    meta_version,
                    packet: r.rest(),
                })
            }
            FRAME_PULL => {
                let requester = read_id(&mut r)?;
                let requester_version = r.u32()?;
                let known = (r.u16()?, r.u32()?);
                let wants = r.u8()?;
                let n = usize::from(r.u8()?);
                if n > PULL_MAX_LISTED {
                    return Err(CodecError::TooLong);
                }
                let mut listed = Vec::with_capacity(n);
                for _ in 0..n {
                    listed.push(read_id(&mut r)?.addr);
                }
                r.end()?;
                let pull = Pull {
                    requester,
                    requester_version,
                    known,
                    wants,
                };
                Ok(Frame::Pull(pull, listed))
            }
            FRAME_PUSH => {
                let header = PushHeader {
                    wants: r.u8()?,
                    event_clock: r.u64()?,
                };
                let n = usize::from(r.u8()?);
                if n > PUSH_MAX_ITEMS {
                    return Err(CodecError::TooLong);
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = usize::from(r.u16()?);
                    items.push(r.take(len)?);
                }
                r.end()?;
                Ok(Frame::Push(header, items))
            }
            FRAME_RESPONSE => Ok(Frame::Response(super::query::Response::decode(&mut r)?)),
            FRAME_RELAY => {
                let dest = read_id(&mut r)?.addr;
                let frame = r.rest();
                // Only a well-formed response is passed on (never a relay of a relay).
                let mut inner = Reader::new(frame);
                if inner.u8()? != FRAME_RESPONSE {
                    return Err(CodecError::BadTag);
                }
                super::query::Response::decode(&mut inner)?;
                Ok(Frame::Relay { dest, frame })
            }
            _ => Err(CodecError::BadTag),
        }
    }
}

/// Most members one PULL lists.
pub(crate) const PULL_MAX_LISTED: usize = 64;

pub(crate) fn encode_pull(out: &mut Vec<u8>, pull: &Pull, listed: &[SocketAddr]) {
    out.push(FRAME_PULL);
    write_id(out, &pull.requester);
    out.extend_from_slice(&pull.requester_version.to_be_bytes());
    out.extend_from_slice(&pull.known.0.to_be_bytes());
    out.extend_from_slice(&pull.known.1.to_be_bytes());
    out.push(pull.wants);
    let listed = listed.get(..PULL_MAX_LISTED).unwrap_or(listed);
    out.push(u8::try_from(listed.len()).unwrap_or(u8::MAX));
    for addr in listed {
        write_id(out, &NodeId::new(*addr, 0));
    }
}

/// Bytes before the items in a PUSH datagram.
const PUSH_HEADER: usize = 1 + 1 + 8 + 1;

/// Packs encoded items into PUSH datagrams of at most `max_len` bytes each, calling `emit`
/// with each finished datagram. Items that do not fit alone are skipped. With `always`, an
/// empty answer is still sent (a join needs the header's clock).
pub(crate) fn pack_push(
    header: PushHeader,
    items: impl Iterator<Item = Vec<u8>>,
    max_len: usize,
    always: bool,
    mut emit: impl FnMut(&[u8]),
) {
    let mut buf: Vec<u8> = Vec::from([FRAME_PUSH, header.wants]);
    buf.extend_from_slice(&header.event_clock.to_be_bytes());
    buf.push(0);
    let count_at = PUSH_HEADER - 1;
    let mut count = 0usize;
    let mut sent = false;
    for item in items {
        let need = 2 + item.len();
        if PUSH_HEADER + need > max_len {
            continue;
        }
        if buf.len() + need > max_len || count == PUSH_MAX_ITEMS {
            emit(&buf);
            sent = true;
            buf.truncate(PUSH_HEADER);
            count = 0;
        }
        let len = u16::try_from(item.len()).unwrap_or(u16::MAX);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&item);
        count += 1;
        if let Some(c) = buf.get_mut(count_at) {
            *c = u8::try_from(count).unwrap_or(u8::MAX);
        }
    }
    if count > 0 || (always && !sent) {
        emit(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::SocketAddr;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{Rng as _, RngExt as _, SeedableRng as _};

    fn id(n: u8) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, n], 8301)), u16::from(n))
    }

    fn samples() -> Vec<Item> {
        let mut tags = BTreeMap::new();
        tags.insert("role".into(), "node".into());
        tags.insert("dc".into(), "dc1".into());
        Vec::from([
            Item::Meta(Meta {
                id: id(1),
                version: 7,
                name: "node-1".into(),
                tags,
            }),
            Item::Leave(Leave {
                id: id(2),
                prune: true,
                forced: false,
            }),
            Item::User(UserItem {
                origin: id(3),
                ltime: 42,
                coalesce: true,
                name: "deploy".into(),
                payload: Vec::from(*b"v1.2"),
            }),
        ])
    }

    #[test]
    fn items_round_trip() {
        for item in samples() {
            let mut buf = Vec::new();
            item.encode(&mut buf);
            assert_eq!(Item::decode(&buf), Ok(item));
            buf.push(0);
            assert_eq!(Item::decode(&buf), Err(CodecError::Trailing));
        }
    }

    #[test]
    fn over_limit_items_are_refused() {
        let item = Item::User(UserItem {
            origin: id(1),
            ltime: 1,
            coalesce: false,
            name: "n".repeat(12),
            payload: Vec::from([0u8; 501]),
        });
        let mut buf = Vec::new();
        item.encode(&mut buf);
        assert_eq!(Item::decode(&buf), Err(CodecError::TooLong));
    }

    #[test]
    fn frames_round_trip() {
        let pull = Pull {
            requester: id(4),
            requester_version: 3,
            known: (1, 9),
            wants: WANT_METAS | WANT_JOIN,
        };
        let mut buf = Vec::new();
        let listed = [id(7).addr, id(8).addr];
        encode_pull(&mut buf, &pull, &listed);
        assert!(matches!(Frame::decode(&buf), Ok(Frame::Pull(p, l)) if p == pull && l == listed));

        let encoded: Vec<Vec<u8>> = samples()
            .iter()
            .map(|i| {
                let mut b = Vec::new();
                i.encode(&mut b);
                b
            })
            .collect();
        let header = PushHeader {
            wants: WANT_JOIN | WANT_METAS,
            event_clock: 77,
        };
        let mut frames = Vec::new();
        pack_push(header, encoded.clone().into_iter(), 70, false, |f| {
            frames.push(Vec::from(f))
        });
        assert!(frames.len() >= 2, "small datagrams split the items");
        let mut back = Vec::new();
        for f in &frames {
            assert!(f.len() <= 70);
            match Frame::decode(f) {
                Ok(Frame::Push(h, items)) => {
                    assert_eq!(h, header);
                    back.extend(items.iter().map(|i| Vec::from(*i)));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, encoded);
        let mut empty = Vec::new();
        pack_push(header, core::iter::empty(), 70, false, |f| {
            empty.push(Vec::from(f))
        });
        assert!(empty.is_empty(), "nothing to say");
        pack_push(header, core::iter::empty(), 70, true, |f| {
            empty.push(Vec::from(f))
        });
        let decoded = Frame::decode(&empty[0]);
        assert!(matches!(decoded, Ok(Frame::Push(h, i)) if h == header && i.is_empty()));
    }

    #[test]
    fn hostile_frames_and_items_never_panic() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0xF4A3E);
        let mut valid = Vec::new();
        for item in samples() {
            let mut b = Vec::new();
            item.encode(&mut b);
            valid.push(b);
        }
        let mut data = Vec::new();
        for round in 0..200_000u32 {
            data.clear();
            if round % 2 == 0 {
                let len = rng.random_range(0..64);
                data.resize(len, 0);
                rng.fill_bytes(&mut data);
            } else {
                data.extend_from_slice(&valid[rng.random_range(0..valid.len())]);
                let i = rng.random_range(0..data.len());
                data[i] = rng.random();
                data.truncate(rng.random_range(0..=data.len()));
            }
            if let Ok(item) = Item::decode(&data) {
                let mut again = Vec::new();
                item.encode(&mut again);
                assert_eq!(again, data);
            }
            let _ = Frame::decode(&data);
        }
    }
}
