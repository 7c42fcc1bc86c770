//! Serf's queries: a request spread over the gossip to every member, answered by those that
//! pass its filters, with acks and responses sent straight back to the origin.
//!
//! A query travels as a custom broadcast (an [`Item::Query`](super::wire::Item)), like a
//! user event, and is new once per (LTime, ID), as in Serf's query buffer: the
//! [`QueryLog`] keeps the query clock and the ids seen in the last `event_window` LTimes.
//! A member that passes the filters acks it (when asked) and offers it to the agent as a
//! [`ClusterEvent::Query`]; [`Cluster::respond`] answers it once, before its deadline.
//! Acks and responses are RESPONSE datagrams to the origin's gossip address, and, with a
//! relay factor, also RELAY datagrams to that many other live members, which pass them on.
//! The origin reports each first ack and first response per member, then `QueryDone` at
//! the deadline; every deadline is an entry in the cluster's one timer queue.
//!
//! ```text
//! item     := 0x04 origin:identity ltime:u64 id:u32 flags:u8 relay:u8 timeout_us:u64
//!             name:str16 payload:bin16 n:u16 (node:str8){n} m:u16 (tag:str8 expr:str16){m}
//! RESPONSE := 0x04 ltime:u64 id:u32 flags:u8 from:str8 payload:bin16      flags bit 0: ack
//! RELAY    := 0x05 dest:identity RESPONSE
//! ```
//!
//! Internal queries (names starting `_serf_`) are answered here and never reach the agent:
//! `_serf_ping` is acked and nothing more, which is what `serf reachability` counts.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;

use rand::RngExt as _;

use super::codec::{read_id, write_id};
use super::identity::NodeId;
use super::member::SelfState;
use super::timer::Task;
use super::wire::{CodecError, FRAME_RELAY, FRAME_RESPONSE, ITEM_QUERY, NAME_LIMIT, Reader};
use super::{Cluster, ClusterEvent, Pool};
use crate::time::Instant;

/// The prefix of Serf's internal queries; user queries may not use it.
pub const INTERNAL_PREFIX: &str = "_serf_";
/// The internal query `serf reachability` sends: acked, never answered.
pub const PING: &str = "_serf_ping";

const FLAG_ACK: u8 = 1;
/// A received query stays open at most this long, whatever its sender asked.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Compiled size bound of a tag filter's expression (a hostile one costs at most this).
const FILTER_REGEX_LIMIT: usize = 1 << 16;

/// What a query asks for besides its name and payload (Serf's `QueryParam`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryParams {
    /// Only members with these names answer (empty: no filter).
    pub filter_nodes: Vec<String>,
    /// Only members whose tag matches the regular expression answer, per tag (a missing
    /// tag is ""). Unanchored, as in Serf (`regexp.MatchString`).
    pub filter_tags: Vec<(String, String)>,
    /// Members that pass the filters ack the query on receipt.
    pub request_ack: bool,
    /// Acks and responses are also relayed through this many other live members.
    pub relay_factor: u8,
    /// How long the query is open; zero is [`Cluster::default_query_timeout`].
    pub timeout: Duration,
}

/// A query this node started: its LTime, unique per origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// A query this node received and may respond to ([`Cluster::respond`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PendingQuery(pub u64);

/// A query received, as the agent's `stream` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryEvent {
    /// To respond with.
    pub handle: PendingQuery,
    /// The query's Lamport time.
    pub ltime: u64,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// A refused query or response. `Display` gives Serf's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// The encoded query is over the limit (bytes).
    TooLarge(usize),
    /// The encoded response is over the limit (bytes).
    ResponseTooLarge(usize),
    /// This node already responded to the query.
    AlreadySent,
    /// The query's deadline has passed.
    PastDeadline,
    /// No open query has that handle (never seen, or expired).
    NoSuchQuery,
    /// More queries in flight than `limits.max_queries`.
    TooMany,
    /// The node has left (or is leaving) the cluster.
    Left,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::TooLarge(n) => write!(f, "query exceeds limit of {n} bytes"),
            QueryError::ResponseTooLarge(n) => write!(f, "response exceeds limit of {n} bytes"),
            QueryError::AlreadySent => f.write_str("Response already sent"),
            QueryError::PastDeadline => f.write_str("Response is past the deadline"),
            QueryError::NoSuchQuery => f.write_str("No pending queries matching ID"),
            QueryError::TooMany => f.write_str("too many queries in flight"),
            QueryError::Left => f.write_str("agent has left the cluster"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for QueryError {}

/// A query as it travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueryItem {
    pub(crate) origin: NodeId,
    pub(crate) ltime: u64,
    pub(crate) id: u32,
    pub(crate) ack: bool,
    pub(crate) relay_factor: u8,
    pub(crate) timeout: Duration,
    pub(crate) name: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) filter_nodes: Vec<String>,
    pub(crate) filter_tags: Vec<(String, String)>,
}

fn put_u16_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
}

fn put_str16(out: &mut Vec<u8>, b: &[u8]) {
    let b = b.get(..usize::from(u16::MAX)).unwrap_or(b);
    put_u16_len(out, b.len());
    out.extend_from_slice(b);
}

fn take16<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], CodecError> {
    let len = usize::from(r.u16()?);
    r.take(len)
}

fn str16<'a>(r: &mut Reader<'a>) -> Result<&'a str, CodecError> {
    core::str::from_utf8(take16(r)?).map_err(|_| CodecError::BadUtf8)
}

impl QueryItem {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(ITEM_QUERY);
        write_id(out, &self.origin);
        out.extend_from_slice(&self.ltime.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(if self.ack { FLAG_ACK } else { 0 });
        out.push(self.relay_factor);
        let micros = u64::try_from(self.timeout.as_micros()).unwrap_or(u64::MAX);
        out.extend_from_slice(&micros.to_be_bytes());
        put_str16(out, self.name.as_bytes());
        put_str16(out, &self.payload);
        put_u16_len(out, self.filter_nodes.len());
        for n in &self.filter_nodes {
            super::wire::put_str8(out, n);
        }
        put_u16_len(out, self.filter_tags.len());
        for (k, expr) in &self.filter_tags {
            super::wire::put_str8(out, k);
            put_str16(out, expr.as_bytes());
        }
    }

    /// Decodes the rest of an item whose kind byte was read.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<QueryItem, CodecError> {
        let origin = read_id(r)?;
        let ltime = r.u64()?;
        let id = r.u32()?;
        let flags = r.u8()?;
        if flags & !FLAG_ACK != 0 {
            return Err(CodecError::BadTag);
        }
        let relay_factor = r.u8()?;
        let timeout = Duration::from_micros(r.u64()?);
        let name = String::from(str16(r)?);
        let payload = Vec::from(take16(r)?);
        // Counts are bounded by the input: each entry takes at least one byte.
        let n = usize::from(r.u16()?);
        if n > r.remaining() {
            return Err(CodecError::Truncated);
        }
        let mut filter_nodes = Vec::with_capacity(n);
        for _ in 0..n {
            filter_nodes.push(String::from(r.str8(NAME_LIMIT)?));
        }
        let m = usize::from(r.u16()?);
        if m > r.remaining() {
            return Err(CodecError::Truncated);
        }
        let mut filter_tags = Vec::with_capacity(m);
        for _ in 0..m {
            let k = String::from(r.str8(255)?);
            filter_tags.push((k, String::from(str16(r)?)));
        }
        Ok(QueryItem {
            origin,
            ltime,
            id,
            ack: flags & FLAG_ACK != 0,
            relay_factor,
            timeout,
            name,
            payload,
            filter_nodes,
            filter_tags,
        })
    }
}

/// An ack or a response, as it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Response<'a> {
    pub(crate) ltime: u64,
    pub(crate) id: u32,
    pub(crate) ack: bool,
    pub(crate) from: &'a str,
    pub(crate) payload: &'a [u8],
}

impl<'a> Response<'a> {
    /// Decodes the rest of a RESPONSE frame whose kind byte was read.
    pub(crate) fn decode(r: &mut Reader<'a>) -> Result<Response<'a>, CodecError> {
        let ltime = r.u64()?;
        let id = r.u32()?;
        let flags = r.u8()?;
        if flags & !FLAG_ACK != 0 {
            return Err(CodecError::BadTag);
        }
        let from = r.str8(NAME_LIMIT)?;
        let payload = take16(r)?;
        r.end()?;
        Ok(Response {
            ltime,
            id,
            ack: flags & FLAG_ACK != 0,
            from,
            payload,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(FRAME_RESPONSE);
        out.extend_from_slice(&self.ltime.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(if self.ack { FLAG_ACK } else { 0 });
        super::wire::put_str8(out, self.from);
        put_str16(out, self.payload);
    }
}

/// The query clock and the queries seen recently (Serf's `queryBuffer`): a query is new
/// once per (LTime, ID), and one older than the window, or from before this node joined,
/// is ignored.
#[derive(Debug)]
pub(crate) struct QueryLog {
    /// The next LTime this node would use.
    pub(crate) clock: u64,
    /// Queries before this LTime are ignored (Serf's `queryMinTime`).
    pub(crate) min_time: u64,
    seen: BTreeSet<(u64, u32)>,
    window: u64,
    cap: usize,
}

impl QueryLog {
    pub(crate) fn new(window: u64, cap: usize) -> Self {
        // Serf's query clock starts at 1 too.
        QueryLog {
            clock: 1,
            min_time: 0,
            seen: BTreeSet::new(),
            window,
            cap,
        }
    }

    /// Records a query; false if it was seen already or is too old.
    pub(crate) fn witness(&mut self, ltime: u64, id: u32) -> bool {
        // Serf witnesses the clock before it checks the query.
        self.clock = self.clock.max(ltime.saturating_add(1));
        if ltime < self.min_time
            || (self.clock > self.window && ltime < self.clock - self.window)
            || !self.seen.insert((ltime, id))
        {
            return false;
        }
        let oldest = self.clock.saturating_sub(self.window);
        super::gossip::forget_old(&mut self.seen, oldest, self.cap);
        true
    }
}

/// A query this node started.
#[derive(Debug)]
struct Outgoing {
    id: u32,
    acks: BTreeSet<String>,
    responses: BTreeSet<String>,
}

/// A query this node received, open for a response.
#[derive(Debug)]
struct Incoming {
    ltime: u64,
    id: u32,
    origin: SocketAddr,
    deadline: Instant,
    relay_factor: u8,
    responded: bool,
}

/// The cluster's query state.
#[derive(Debug, Default)]
pub(crate) struct Queries {
    outgoing: BTreeMap<u64, Outgoing>,
    incoming: BTreeMap<u64, Incoming>,
    next_handle: u64,
    /// Queries dropped because `max_pending_queries` were open.
    pub(crate) evicted: u64,
}

/// Whether this node passes a query's filters: its name among the listed ones, and every
/// tag filter matching (unanchored, as Serf's `regexp.MatchString`). A filter that does
/// not compile is not passed, as in Serf.
fn passes(name: &str, tags: &BTreeMap<String, String>, q: &QueryItem) -> bool {
    if !q.filter_nodes.is_empty() && !q.filter_nodes.iter().any(|n| n == name) {
        return false;
    }
    q.filter_tags.iter().all(|(tag, expr)| {
        let value = tags.get(tag).map_or("", String::as_str);
        regex_automata::meta::Regex::builder()
            .configure(
                regex_automata::meta::Config::new()
                    .nfa_size_limit(Some(FILTER_REGEX_LIMIT))
                    .onepass_size_limit(Some(FILTER_REGEX_LIMIT))
                    .hybrid_cache_capacity(FILTER_REGEX_LIMIT.max(2048)),
            )
            .build(expr)
            .is_ok_and(|re| re.is_match(value))
    })
}

/// ⌈log10(n)⌉ exactly, in integers (a fixed-point logarithm rounds log10(1001) to 3).
fn ceil_log10(n: u64) -> u32 {
    let mut log = 0;
    let mut power = 1u64;
    while power < n {
        power = power.saturating_mul(10);
        log += 1;
    }
    log
}

impl Cluster {
    /// How long a query without a timeout stays open: `gossip_interval ×
    /// query_timeout_mult × ⌈log10(N + 1)⌉` for N live LAN members (Serf's
    /// `DefaultQueryTimeout`).
    pub fn default_query_timeout(&self) -> Duration {
        let log = ceil_log10(self.active_members(Pool::Lan).saturating_add(1) as u64);
        self.lan
            .timing
            .gossip_interval
            .saturating_mul(self.cfg.query_timeout_mult)
            .saturating_mul(log.max(1))
    }

    /// The query Lamport clock (Serf's `query_time`).
    pub fn query_ltime(&self) -> u64 {
        self.lan.gossip.with(|g| g.queries.clock)
    }

    /// Items waiting in the LAN pool's gossip queue (metas, leave records, user events
    /// and queries share it).
    pub fn broadcast_backlog(&self) -> usize {
        self.lan.foca.custom_broadcast_backlog()
    }

    /// Queries this node started and still collects answers for.
    pub fn queries_in_flight(&self) -> usize {
        self.queries.outgoing.len()
    }

    /// Received queries still open for a response.
    pub fn queries_pending(&self) -> usize {
        self.queries.incoming.len()
    }

    /// Starts a query to every member of the LAN pool, this one included. Acks and
    /// responses come back as [`ClusterEvent::QueryAck`] and [`ClusterEvent::QueryResponse`]
    /// (the first of each per member), then [`ClusterEvent::QueryDone`] at the deadline.
    pub fn query(
        &mut self,
        name: &str,
        payload: &[u8],
        params: &QueryParams,
        now: Instant,
    ) -> Result<QueryId, QueryError> {
        if self.state != SelfState::Active {
            return Err(QueryError::Left);
        }
        if self.queries.outgoing.len() >= self.cfg.limits.max_queries {
            return Err(QueryError::TooMany);
        }
        let timeout = if params.timeout.is_zero() {
            self.default_query_timeout()
        } else {
            params.timeout
        };
        let limit = self.cfg.query_size_limit;
        let too_long = params.filter_nodes.iter().any(|n| n.len() > NAME_LIMIT)
            || params.filter_tags.iter().any(|(k, _)| k.len() > 255);
        let ltime = self.query_ltime();
        // Serf's `rand.Int31()`.
        let id = self.rng.random::<u32>() >> 1;
        let item = QueryItem {
            origin: self.lan.me(),
            ltime,
            id,
            ack: params.request_ack,
            relay_factor: params.relay_factor,
            timeout,
            name: String::from(name),
            payload: Vec::from(payload),
            filter_nodes: params.filter_nodes.clone(),
            filter_tags: params.filter_tags.clone(),
        };
        let mut buf = Vec::new();
        item.encode(&mut buf);
        if too_long || buf.len() > limit {
            return Err(QueryError::TooLarge(limit));
        }
        self.queries.outgoing.insert(
            ltime,
            Outgoing {
                id,
                acks: BTreeSet::new(),
                responses: BTreeSet::new(),
            },
        );
        self.lan.gossip.with(|g| g.now = now);
        if self.lan.foca.add_broadcast(&buf).is_err() {
            // Larger than a gossip packet can carry (a limit configured above it).
            self.queries.outgoing.remove(&ltime);
            return Err(QueryError::TooLarge(limit));
        }
        self.timers.schedule(now + timeout, Task::QueryDone(ltime));
        self.settle(Pool::Lan, now);
        Ok(QueryId(ltime))
    }

    /// Responds to a received query, once, before its deadline: straight to its origin
    /// (and through its relay members).
    pub fn respond(
        &mut self,
        query: PendingQuery,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), QueryError> {
        let limit = self.cfg.query_response_size_limit;
        let from = self.lan.name.clone();
        let inc = self
            .queries
            .incoming
            .get_mut(&query.0)
            .ok_or(QueryError::NoSuchQuery)?;
        if inc.responded {
            return Err(QueryError::AlreadySent);
        }
        if now > inc.deadline {
            return Err(QueryError::PastDeadline);
        }
        let mut frame = Vec::new();
        Response {
            ltime: inc.ltime,
            id: inc.id,
            ack: false,
            from: &from,
            payload,
        }
        .encode(&mut frame);
        if frame.len() > limit || payload.len() > usize::from(u16::MAX) {
            return Err(QueryError::ResponseTooLarge(limit));
        }
        inc.responded = true;
        let (origin, relay) = (inc.origin, inc.relay_factor);
        self.send_response(origin, relay, &frame, now);
        Ok(())
    }

    /// A query arrived (or this node started one): ack it, answer it if internal, or offer
    /// it to the agent.
    pub(super) fn on_query(&mut self, q: QueryItem, now: Instant) {
        if self.state == SelfState::Left {
            return;
        }
        let tags = self.tags();
        if !passes(&self.lan.name, &tags, &q) {
            return;
        }
        let origin = q.origin.addr;
        if q.ack {
            self.answer_from_here(&q, true, &[], now);
        }
        if q.name.starts_with(INTERNAL_PREFIX) {
            // Key queries are applied and answered here; `_serf_ping` is acked and nothing
            // more; other internal queries are dropped, as Serf drops unknown ones.
            if let Some(op) = super::KeyOp::from_query_name(&q.name) {
                let answer = self.answer_key_query(op, &q.payload).encode();
                self.answer_from_here(&q, false, &answer, now);
            }
            return;
        }
        let max = self.cfg.limits.max_pending_queries;
        if max == 0 {
            self.queries.evicted += 1;
            return;
        }
        while self.queries.incoming.len() >= max {
            self.queries.incoming.pop_first();
            self.queries.evicted += 1;
        }
        let handle = self.queries.next_handle;
        self.queries.next_handle += 1;
        let deadline = now + q.timeout.min(MAX_TIMEOUT);
        self.queries.incoming.insert(
            handle,
            Incoming {
                ltime: q.ltime,
                id: q.id,
                origin,
                deadline,
                relay_factor: q.relay_factor,
                responded: false,
            },
        );
        self.timers.schedule(deadline, Task::QueryExpire(handle));
        self.push_event(ClusterEvent::Query(QueryEvent {
            handle: PendingQuery(handle),
            ltime: q.ltime,
            name: q.name,
            payload: q.payload,
        }));
    }

    /// Acks (`ack`) or responds to `q` as this node, to its origin and relays.
    fn answer_from_here(&mut self, q: &QueryItem, ack: bool, payload: &[u8], now: Instant) {
        let mut frame = Vec::new();
        let from = self.lan.name.clone();
        Response {
            ltime: q.ltime,
            id: q.id,
            ack,
            from: &from,
            payload,
        }
        .encode(&mut frame);
        self.send_response(q.origin.addr, q.relay_factor, &frame, now);
    }

    /// Sends an encoded RESPONSE frame to a query's origin, and RELAY copies through up to
    /// `relay` other live members. The origin's own answers are handled in place.
    fn send_response(&mut self, origin: SocketAddr, relay: u8, frame: &[u8], now: Instant) {
        let me = self.lan.me().addr;
        if origin == me {
            self.on_response_frame(frame, now);
            return;
        }
        self.out
            .push(Pool::Lan, origin, |b| b.extend_from_slice(frame));
        if relay == 0 {
            return;
        }
        let mut candidates: Vec<SocketAddr> = self
            .lan
            .records
            .iter()
            .filter(|(a, r)| r.active && !r.is_self && **a != origin)
            .map(|(a, _)| *a)
            .collect();
        let k = usize::from(relay).min(candidates.len());
        for i in 0..k {
            let j = self.rng.random_range(i..candidates.len());
            candidates.swap(i, j);
        }
        let dest = NodeId::new(origin, 0);
        for via in candidates.get(..k).unwrap_or(&[]) {
            self.out.push(Pool::Lan, *via, |b| {
                b.push(FRAME_RELAY);
                write_id(b, &dest);
                b.extend_from_slice(frame);
            });
        }
    }

    fn on_response_frame(&mut self, frame: &[u8], now: Instant) {
        let mut r = Reader::new(frame);
        if r.u8() == Ok(FRAME_RESPONSE)
            && let Ok(resp) = Response::decode(&mut r)
        {
            self.on_response(resp, now);
        }
    }

    /// An ack or response for a query of ours: the first of each per member is reported.
    pub(super) fn on_response(&mut self, resp: Response<'_>, _now: Instant) {
        let max = self.cfg.limits.max_members;
        let Some(q) = self
            .queries
            .outgoing
            .get_mut(&resp.ltime)
            .filter(|q| q.id == resp.id)
        else {
            return;
        };
        let query = QueryId(resp.ltime);
        let from = String::from(resp.from);
        if resp.ack {
            if q.acks.len() < max && q.acks.insert(from.clone()) {
                self.push_event(ClusterEvent::QueryAck { query, from });
            }
        } else if q.responses.len() < max && q.responses.insert(from.clone()) {
            let payload = Vec::from(resp.payload);
            self.push_event(ClusterEvent::QueryResponse {
                query,
                from,
                payload,
            });
        }
    }

    /// A RELAY datagram: pass the response on to its origin (or take it, if that is us).
    pub(super) fn on_relay(&mut self, pool: Pool, dest: SocketAddr, frame: &[u8], now: Instant) {
        if pool != Pool::Lan || self.state == SelfState::Left {
            return;
        }
        if dest == self.lan.me().addr {
            self.on_response_frame(frame, now);
        } else {
            self.out
                .push(Pool::Lan, dest, |b| b.extend_from_slice(frame));
        }
    }

    pub(super) fn query_done(&mut self, ltime: u64) {
        if self.queries.outgoing.remove(&ltime).is_some() {
            self.push_event(ClusterEvent::QueryDone(QueryId(ltime)));
        }
    }

    pub(super) fn query_expire(&mut self, handle: u64, now: Instant) {
        if self
            .queries
            .incoming
            .get(&handle)
            .is_some_and(|q| q.deadline <= now)
        {
            self.queries.incoming.remove(&handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{Frame, Item};
    use super::*;

    fn item() -> QueryItem {
        QueryItem {
            origin: NodeId::new(SocketAddr::from(([10, 0, 0, 1], 8301)), 3),
            ltime: 7,
            id: 99,
            ack: true,
            relay_factor: 2,
            timeout: Duration::from_millis(1500),
            name: String::from("load"),
            payload: Vec::from(*b"15m"),
            filter_nodes: Vec::from([String::from("a"), String::from("b")]),
            filter_tags: Vec::from([(String::from("role"), String::from("web.*"))]),
        }
    }

    #[test]
    fn queries_and_responses_round_trip() {
        let q = Item::Query(item());
        let mut buf = Vec::new();
        q.encode(&mut buf);
        assert_eq!(Item::decode(&buf), Ok(q));
        for cut in 0..buf.len() {
            assert!(Item::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let resp = Response {
            ltime: 7,
            id: 99,
            ack: false,
            from: "b",
            payload: b"1.02",
        };
        let mut frame = Vec::new();
        resp.encode(&mut frame);
        assert!(matches!(Frame::decode(&frame), Ok(Frame::Response(r)) if r == resp));
        let mut relay = Vec::from([FRAME_RELAY]);
        write_id(
            &mut relay,
            &NodeId::new(SocketAddr::from(([10, 0, 0, 1], 8301)), 0),
        );
        relay.extend_from_slice(&frame);
        assert!(matches!(Frame::decode(&relay), Ok(Frame::Relay { frame: f, .. }) if f == frame));
        // A relay of a relay is refused.
        let mut nested = relay.clone();
        nested.truncate(relay.len() - frame.len());
        nested.extend_from_slice(&relay);
        assert!(Frame::decode(&nested).is_err());
    }

    #[test]
    fn the_query_log_takes_each_query_once_within_the_window() {
        let mut log = QueryLog::new(4, 64);
        assert!(log.witness(10, 1));
        assert!(!log.witness(10, 1), "same LTime and ID");
        assert!(log.witness(10, 2), "same LTime, another ID");
        assert_eq!(log.clock, 11);
        assert!(log.witness(8, 1), "inside the window");
        assert!(!log.witness(6, 1), "older than the window");
        log.min_time = 20;
        assert!(!log.witness(19, 1), "before we joined");
    }

    #[test]
    fn filters_match_names_and_unanchored_tag_expressions() {
        let mut tags = BTreeMap::new();
        tags.insert(String::from("role"), String::from("my-webserver"));
        let mut q = item();
        assert!(!passes("c", &tags, &q), "not listed");
        assert!(passes("a", &tags, &q), "web.* matches inside the value");
        q.filter_tags = Vec::from([(String::from("role"), String::from("^web"))]);
        assert!(!passes("a", &tags, &q));
        q.filter_tags = Vec::from([(String::from("dc"), String::from("^$"))]);
        assert!(passes("a", &tags, &q), "a missing tag is empty");
        q.filter_tags = Vec::from([(String::from("role"), String::from("("))]);
        assert!(!passes("a", &tags, &q), "a bad expression passes nobody");
        q.filter_nodes.clear();
        q.filter_tags.clear();
        assert!(passes("anyone", &tags, &q));
    }

    #[test]
    fn the_default_timeout_uses_the_exact_ceiling_of_log10() {
        for (n, want) in [
            (2, 1),
            (10, 1),
            (11, 2),
            (100, 2),
            (101, 3),
            (1001, 4),
            (1000, 3),
        ] {
            assert_eq!(ceil_log10(n), want, "ceil(log10({n}))");
        }
    }

    #[test]
    fn error_texts_are_serfs() {
        use alloc::string::ToString;
        assert_eq!(
            QueryError::TooLarge(1024).to_string(),
            "query exceeds limit of 1024 bytes"
        );
        assert_eq!(
            QueryError::ResponseTooLarge(1024).to_string(),
            "response exceeds limit of 1024 bytes"
        );
        assert_eq!(
            QueryError::NoSuchQuery.to_string(),
            "No pending queries matching ID"
        );
        assert_eq!(QueryError::AlreadySent.to_string(), "Response already sent");
        assert_eq!(
            QueryError::PastDeadline.to_string(),
            "Response is past the deadline"
        );
    }
}
