//! Queries on the simulated network: one node asks, every node answers at once, and the
//! table says what fraction acked and responded, and when (virtual time, deterministic).
//!
//! Used by `tests/tests/cluster_queries.rs` (small clusters) and
//! `cargo bench -p tandem-tests --bench queries` (100 and 1,000 nodes).

use std::time::Duration;

use tandem_core::Pool;
use tandem_core::cluster::{Cluster, ClusterEvent, QueryParams};

use crate::netsim::{Net, NetConfig, cluster_net, converged, join_all};

/// How often the responders look at their events (the resolution of the times).
pub const STEP: Duration = Duration::from_millis(10);

/// One row of the query table.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryRow {
    /// Cluster size.
    pub nodes: usize,
    /// Datagram loss in percent.
    pub loss_percent: u32,
    /// The query's timeout (Serf's default for the cluster size).
    pub timeout: Duration,
    /// Distinct members that acked, and when each ack arrived (from the query's start).
    pub acks: Vec<Duration>,
    /// Distinct members that responded, and when.
    pub responses: Vec<Duration>,
    /// Members that saw the query (its event) at all.
    pub delivered: usize,
    /// Virtual time until every node saw every node alive, before the query.
    pub converged_after: Option<Duration>,
}

impl QueryRow {
    /// The time by which `fraction` of the cluster had acked (or responded), if it did.
    pub fn time_to(times: &[Duration], nodes: usize, fraction: f64) -> Option<Duration> {
        let need = ((nodes as f64) * fraction).ceil() as usize;
        let mut sorted = times.to_vec();
        sorted.sort();
        need.checked_sub(1).and_then(|i| sorted.get(i).copied())
    }
}

/// Every node but the origin (node 0) responds to the queries it saw with its index.
fn respond_all(sim: &mut Net<Cluster>, delivered: &mut usize) {
    for i in sim.alive().into_iter().filter(|&i| i != 0) {
        let events = sim.take_events(i);
        for e in events {
            if let ClusterEvent::Query(q) = e {
                *delivered += 1;
                let payload = i.to_string();
                sim.with(i, |c, now| {
                    let _ = c.respond(q.handle, payload.as_bytes(), now);
                });
            }
        }
    }
}

/// `nodes` agents join node 0; once converged, node 0 queries with acks requested and
/// Serf's default timeout; every node responds as soon as it sees the query. Deterministic
/// for its arguments.
pub fn query_run(nodes: usize, loss_percent: u32, relay_factor: u8) -> QueryRow {
    query_runs(nodes, loss_percent, &[relay_factor]).remove(0)
}

/// [`query_run`] for several relay factors on one cluster, which joins once (at 1,000
/// nodes the join is most of the wall time): the queries run one after the other, each
/// until its timeout has passed. The first row is [`query_run`]'s.
pub fn query_runs(nodes: usize, loss_percent: u32, relay_factors: &[u8]) -> Vec<QueryRow> {
    let seed = (nodes as u64) * 7919 + u64::from(loss_percent);
    let net = NetConfig {
        seed,
        latency: (Duration::from_millis(1), Duration::from_millis(10)),
        loss: f64::from(loss_percent) / 100.0,
        ..NetConfig::default()
    };
    let mut sim = cluster_net(nodes, net, seed, |_, _| {});
    join_all(&mut sim, 0);
    // The same network (and loss) carries the joins: the query starts once every node
    // sees every node alive, plus 2 s.
    let converged_after =
        sim.run_until_cond(Duration::from_secs(600), Duration::from_millis(100), |s| {
            converged(s, Pool::Lan)
        });
    sim.run_for(Duration::from_secs(2));
    relay_factors
        .iter()
        .map(|&relay_factor| {
            let mut row = query_once(&mut sim, relay_factor);
            row.loss_percent = loss_percent;
            row.converged_after = converged_after;
            row
        })
        .collect()
}

/// Node 0 queries the converged cluster once; every node responds at once.
fn query_once(sim: &mut Net<Cluster>, relay_factor: u8) -> QueryRow {
    for i in sim.alive() {
        sim.take_events(i);
    }
    let params = QueryParams {
        request_ack: true,
        relay_factor,
        ..QueryParams::default()
    };
    let start = sim.now;
    let (id, timeout) = sim.with(0, |c, now| {
        let t = c.default_query_timeout();
        (c.query("load", b"15m", &params, now).expect("query"), t)
    });
    let mut acks = Vec::new();
    let mut responses = Vec::new();
    let mut delivered = 0;
    let mut done = false;
    while !done && sim.now < start + timeout + Duration::from_secs(1) {
        sim.run_for(STEP);
        // The origin first: its own events are acks and responses.
        let at = sim.now - start;
        for e in sim.take_events(0) {
            match e {
                ClusterEvent::QueryAck { query, .. } if query == id => acks.push(at),
                ClusterEvent::QueryResponse { query, .. } if query == id => responses.push(at),
                ClusterEvent::QueryDone(query) if query == id => done = true,
                ClusterEvent::Query(q) => {
                    delivered += 1;
                    sim.with(0, |c, now| {
                        let _ = c.respond(q.handle, b"0", now);
                    });
                }
                _ => {}
            }
        }
        respond_all(sim, &mut delivered);
    }
    // Until the deadline has passed: answers to this query end there.
    let end = start + timeout + Duration::from_secs(1);
    if sim.now < end {
        sim.run_until(end);
    }
    QueryRow {
        nodes: sim.len(),
        loss_percent: 0,
        timeout,
        acks,
        responses,
        delivered,
        converged_after: None,
    }
}

fn cell(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

/// One markdown line of the table.
pub fn query_line(row: &QueryRow) -> String {
    let n = row.nodes;
    let pct = |k: usize| format!("{:.1} %", 100.0 * k as f64 / n as f64);
    format!(
        "| {} | {} % | {:.1} | {} | {} | {} | {} | {} | {} |",
        n,
        row.loss_percent,
        row.timeout.as_secs_f64(),
        pct(row.acks.len()),
        pct(row.responses.len()),
        cell(QueryRow::time_to(&row.acks, n, 0.5)),
        cell(QueryRow::time_to(&row.acks, n, 0.95)),
        cell(QueryRow::time_to(&row.responses, n, 0.95)),
        cell(row.responses.iter().max().copied()),
    )
}

/// The table's header.
pub const QUERY_TABLE_HEADER: &str = "| nodes | loss | timeout (s) | acked | responded | 50 % acked (s) | 95 % acked (s) | 95 % responded (s) | last response (s) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|";
