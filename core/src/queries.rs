//! Queries as the RPC sees them: the agent's glue to [`Cluster::query`] and
//! [`Cluster::respond`](crate::cluster::Cluster::respond).
//!
//! `query` answers with a plain header, then streams the query's records on its Seq:
//! `{"From","Payload","Type":"ack"}` per first ack, `"response"` per first response, and
//! one `{"From":"","Payload":nil,"Type":"done"}` at the deadline (Serf's
//! `ipc_query_response_stream.go`). A received query goes to every `stream` whose filter
//! takes `query` or `query:NAME`, each copy with its own per-connection `ID`, which
//! `respond` on that same connection names (Serf's `pendingQueries`).
//!
//! [`Cluster::query`]: crate::cluster::Cluster::query

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::cluster::{
    ClusterEvent, INTERNAL_PREFIX, PING, PendingQuery, QueryError, QueryEvent, QueryParams,
};
use crate::log::Level;
use crate::members::ToStringAlloc as _;
use crate::rpc::msgpack::{DecodeError, Reader};
use crate::rpc::wire;
use crate::time::Instant;
use crate::{Agent, ConnId};

/// Received queries one connection can still respond to; beyond it the oldest ID is
/// forgotten (`No pending queries matching ID`).
pub(crate) const MAX_PENDING_PER_CONN: usize = 256;

/// Per-connection query state: the IDs given to received queries on its streams.
#[derive(Debug, Default)]
pub(crate) struct ConnQueries {
    pending: BTreeMap<u64, PendingQuery>,
    next_id: u64,
}

impl ConnQueries {
    fn register(&mut self, query: PendingQuery) -> u64 {
        self.next_id += 1;
        while self.pending.len() >= MAX_PENDING_PER_CONN {
            self.pending.pop_first();
        }
        self.pending.insert(self.next_id, query);
        self.next_id
    }
}

type R<T> = Result<T, DecodeError>;

/// A query record on the `query` Seq.
fn record(tx: &mut Vec<u8>, from: &str, payload: Option<&[u8]>, kind: &str) {
    wire::map(tx, 3);
    wire::str(tx, "From");
    wire::str(tx, from);
    wire::str(tx, "Payload");
    match payload {
        Some(p) => wire::bin(tx, p),
        None => wire::nil(tx),
    }
    wire::str(tx, "Type");
    wire::str(tx, kind);
}

impl Agent {
    pub(crate) fn rpc_query(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        now: Instant,
    ) -> R<bool> {
        let mut params = QueryParams::default();
        let mut name = "";
        let mut payload: Option<&[u8]> = None;
        r.fields(
            &[
                "FilterNodes",
                "FilterTags",
                "RequestAck",
                "RelayFactor",
                "Timeout",
                "Name",
                "Payload",
            ],
            |k, r| {
                match k {
                    "FilterNodes" => {
                        let n = r.array_len()?;
                        for _ in 0..n {
                            params.filter_nodes.push(r.str()?.into());
                        }
                    }
                    "FilterTags" => {
                        let n = r.map_len()?;
                        for _ in 0..n {
                            let k = r.str()?;
                            let v = r.str()?;
                            params.filter_tags.push((k.into(), v.into()));
                        }
                    }
                    "RequestAck" => params.request_ack = r.bool()?,
                    "RelayFactor" => {
                        params.relay_factor = u8::try_from(r.uint()?).map_err(|_| DecodeError)?
                    }
                    "Timeout" => {
                        let ns = i64::try_from(r.int()?).map_err(|_| DecodeError)?;
                        // A negative timeout ends the query at once, as in Serf; zero is
                        // the default.
                        params.timeout = match ns {
                            0 => Duration::ZERO,
                            ..0 => Duration::from_micros(1),
                            _ => Duration::from_nanos(ns.unsigned_abs())
                                .max(Duration::from_micros(1)),
                        };
                    }
                    "Name" => name = r.str()?,
                    "Payload" => {
                        let nil = r.at_nil();
                        let p = r.bytes()?;
                        payload = (!nil).then_some(p);
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        // Only `_serf_ping`, without a payload, may use the internal prefix (Serf's agent).
        let internal = (name.starts_with(INTERNAL_PREFIX) && (name != PING || payload.is_some()))
            || name.starts_with(crate::cluster_jobs::INTERNAL_PREFIX);
        let result = if internal {
            Err(String::from(wire::msg::INTERNAL_QUERY))
        } else {
            let text = alloc::format!(
                "agent: Requesting query send: {name}. Payload: {:?}",
                String::from_utf8_lossy(payload.unwrap_or(&[]))
            );
            self.log(Level::Debug, &text, now);
            self.cluster
                .query(name, payload.unwrap_or(&[]), &params, now)
                .map_err(|e: QueryError| {
                    let text = alloc::format!("agent: failed to start user query: {e}");
                    self.log(Level::Warn, &text, now);
                    e.to_string_alloc()
                })
        };
        match result {
            Ok(id) => {
                self.membership.queries.insert(id.0, (conn, seq));
                self.rpc_reply(conn, seq, "", None);
            }
            Err(e) => self.rpc_reply(conn, seq, &e, None),
        }
        // After the reply: the records (this node's own ack first) follow it.
        self.drain_cluster(now);
        Ok(true)
    }

    pub(crate) fn rpc_respond(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        now: Instant,
    ) -> R<bool> {
        let mut id = 0;
        let mut payload: &[u8] = &[];
        r.fields(&["ID", "Payload"], |k, r| {
            match k {
                "ID" => id = r.uint()?,
                "Payload" => payload = r.bytes()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let pending = self
            .conns
            .get(conn)
            .and_then(|c| c.rpc.queries.pending.get(&id).copied());
        let result = match pending {
            Some(q) => self.cluster.respond(q, payload, now),
            None => Err(QueryError::NoSuchQuery),
        };
        let error = result
            .err()
            .map(|e| e.to_string_alloc())
            .unwrap_or_default();
        self.rpc_reply(conn, seq, &error, None);
        self.drain_cluster(now);
        Ok(true)
    }

    /// A query event from the cluster: a received query for the streams, or a record for
    /// the connection that started a query.
    pub(crate) fn query_event(&mut self, event: ClusterEvent, now: Instant) {
        if self.cluster_job_event(&event, now) {
            return;
        }
        match event {
            ClusterEvent::Query(q) => self.deliver_query(&q, now),
            ClusterEvent::QueryAck { query, from } => {
                if let Some(&(conn, seq)) = self.membership.queries.get(&query.0) {
                    self.rpc_record(conn, seq, &|tx: &mut Vec<u8>| {
                        record(tx, &from, None, "ack")
                    });
                }
            }
            ClusterEvent::QueryResponse {
                query,
                from,
                payload,
            } => {
                if let Some(&(conn, seq)) = self.membership.queries.get(&query.0) {
                    self.rpc_record(conn, seq, &|tx: &mut Vec<u8>| {
                        record(tx, &from, Some(&payload), "response")
                    });
                }
            }
            ClusterEvent::QueryDone(query) => {
                if let Some((conn, seq)) = self.membership.queries.remove(&query.0) {
                    self.rpc_record(conn, seq, &|tx: &mut Vec<u8>| record(tx, "", None, "done"));
                }
            }
            ClusterEvent::Member { .. } | ClusterEvent::User(_) => {}
        }
    }

    /// Logs a received query as Serf's agent does and streams it to every `stream` that
    /// takes it, registering a per-connection ID for `respond`.
    fn deliver_query(&mut self, q: &QueryEvent, now: Instant) {
        let text = alloc::format!("agent: Received event: query: {}", q.name);
        self.log(Level::Info, &text, now);
        let event = crate::handlers::HandlerEvent::Query {
            name: &q.name,
            ltime: q.ltime,
            payload: &q.payload,
            handle: q.handle,
        };
        self.handle_event_for_handlers(event, now);
        let targets = self.conns.rpc_streams(|f| f.query(&q.name));
        for (conn, seq) in targets {
            let Some(c) = self.conns.get_mut(conn) else {
                continue;
            };
            let id = c.rpc.queries.register(q.handle);
            self.rpc_record(conn, seq, &|tx: &mut Vec<u8>| {
                wire::map(tx, 5);
                wire::str(tx, "Event");
                wire::str(tx, "query");
                wire::str(tx, "ID");
                wire::uint(tx, id);
                wire::str(tx, "LTime");
                wire::uint(tx, q.ltime);
                wire::str(tx, "Name");
                wire::str(tx, &q.name);
                wire::str(tx, "Payload");
                wire::bin(tx, &q.payload);
            });
        }
    }
}
