//! Serf's queries across simulated clusters on the virtual clock: acks and responses from
//! every member, filters, the default timeout, de-duplication under duplicated datagrams,
//! relays under loss, size limits, and answers after the deadline.

use std::time::Duration;

use tandem_core::Pool;
use tandem_core::cluster::{Cluster, ClusterEvent, PendingQuery, QueryError, QueryId, QueryParams};
use tandem_tests::netsim::{Net, NetConfig, cluster_net, converged, join_all, node_name};
use tandem_tests::query_sim::{query_line, query_run};

fn cluster(n: usize, net: NetConfig) -> Net<Cluster> {
    let mut sim = cluster_net(n, net, 11, |_, _| {});
    join_all(&mut sim, 0);
    sim.run_until_cond(Duration::from_secs(60), Duration::from_millis(100), |s| {
        converged(s, Pool::Lan)
    })
    .expect("converged");
    sim.run_for(Duration::from_secs(2));
    for i in 0..n {
        sim.take_events(i);
    }
    sim
}

/// (member, payload) pairs.
type Responses = Vec<(String, Vec<u8>)>;

/// What node 0 heard about query `id`: (acks, responses, done count), names sorted.
fn answers(events: &[ClusterEvent], id: QueryId) -> (Vec<String>, Responses, usize) {
    let mut acks = Vec::new();
    let mut responses = Vec::new();
    let mut done = 0;
    for e in events {
        match e {
            ClusterEvent::QueryAck { query, from } if *query == id => acks.push(from.clone()),
            ClusterEvent::QueryResponse {
                query,
                from,
                payload,
            } if *query == id => responses.push((from.clone(), payload.clone())),
            ClusterEvent::QueryDone(query) if *query == id => done += 1,
            _ => {}
        }
    }
    acks.sort();
    responses.sort();
    (acks, responses, done)
}

/// The queries node `i` received (name, payload, handle).
fn received(events: &[ClusterEvent]) -> Vec<(String, Vec<u8>, PendingQuery)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Query(q) => Some((q.name.clone(), q.payload.clone(), q.handle)),
            _ => None,
        })
        .collect()
}

fn names(idx: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = idx.iter().map(|&i| node_name(i)).collect();
    v.sort();
    v
}

fn ask(sim: &mut Net<Cluster>, params: &QueryParams, payload: &[u8]) -> QueryId {
    sim.with(0, |c, now| c.query("load", payload, params, now))
        .expect("query")
}

#[test]
fn every_member_acks_and_responds_and_the_query_ends_at_the_default_timeout() {
    let n = 5;
    let mut sim = cluster(n, NetConfig::default());
    // 200 ms × 16 × ⌈log10(5 + 1)⌉ = 3.2 s.
    assert_eq!(
        sim.node(0).default_query_timeout(),
        Duration::from_millis(3200)
    );
    let start = sim.now;
    let params = QueryParams {
        request_ack: true,
        ..QueryParams::default()
    };
    let id = ask(&mut sim, &params, b"15m");
    sim.run_for(Duration::from_secs(1));
    let mut at_origin = Vec::new();
    for i in 0..n {
        let events = sim.take_events(i);
        let got = received(&events);
        assert_eq!(got.len(), 1, "node {i} sees the query once");
        assert_eq!(
            (got[0].0.as_str(), got[0].1.as_slice()),
            ("load", &b"15m"[..])
        );
        let answer = format!("answer-{i}");
        sim.with(i, |c, now| c.respond(got[0].2, answer.as_bytes(), now))
            .expect("respond");
        assert_eq!(
            sim.with(i, |c, now| c.respond(got[0].2, b"again", now)),
            Err(QueryError::AlreadySent)
        );
        if i == 0 {
            at_origin = events;
        }
    }
    // Acks arrived within the first second, before any response was sent.
    let (acks, responses, done) = answers(&at_origin, id);
    assert_eq!(acks, names(&[0, 1, 2, 3, 4]));
    assert!(responses.is_empty() && done == 0);
    sim.run_until(start + Duration::from_millis(3199));
    let mut events = sim.take_events(0);
    let (_, responses, done) = answers(&events, id);
    let want: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (node_name(i), format!("answer-{i}").into_bytes()))
        .collect();
    assert_eq!(responses, want);
    assert_eq!(done, 0, "not before the timeout");
    sim.run_until(start + Duration::from_millis(3200));
    events.extend(sim.take_events(0));
    assert_eq!(answers(&events, id).2, 1, "done exactly at the timeout");
    // Past the deadline the query is gone everywhere.
    sim.run_for(Duration::from_secs(1));
    for i in 0..n {
        assert_eq!(sim.node(i).queries_pending(), 0);
    }
    assert_eq!(sim.node(0).queries_in_flight(), 0);
}

#[test]
fn only_members_passing_the_node_and_tag_filters_ack_and_see_the_query() {
    let n = 6;
    let mut sim = cluster(n, NetConfig::default());
    let nodes = QueryParams {
        filter_nodes: vec![node_name(1), node_name(3)],
        request_ack: true,
        timeout: Duration::from_secs(1),
        ..QueryParams::default()
    };
    let id = ask(&mut sim, &nodes, b"");
    sim.run_for(Duration::from_millis(1500));
    let events: Vec<Vec<ClusterEvent>> = (0..n).map(|i| sim.take_events(i)).collect();
    assert_eq!(answers(&events[0], id).0, names(&[1, 3]));
    for (i, e) in events.iter().enumerate() {
        assert_eq!(received(e).len(), usize::from(i == 1 || i == 3), "node {i}");
    }
    // Tag `index` is the node's index; unanchored, as Serf's regexp.MatchString: "[24]"
    // matches 2 and 4, and "^$" matches a missing tag on nobody.
    let tags = QueryParams {
        filter_tags: vec![("index".into(), "[24]".into())],
        request_ack: true,
        timeout: Duration::from_secs(1),
        ..QueryParams::default()
    };
    let id = ask(&mut sim, &tags, b"");
    sim.run_for(Duration::from_millis(1500));
    assert_eq!(answers(&sim.take_events(0), id).0, names(&[2, 4]));
    let both = QueryParams {
        filter_nodes: vec![node_name(2), node_name(5)],
        filter_tags: vec![
            ("index".into(), "^[24]$".into()),
            ("dc".into(), "dc1".into()),
        ],
        request_ack: true,
        timeout: Duration::from_secs(1),
        ..QueryParams::default()
    };
    let id = ask(&mut sim, &both, b"");
    sim.run_for(Duration::from_millis(1500));
    assert_eq!(answers(&sim.take_events(0), id).0, names(&[2]));
}

#[test]
fn duplicated_and_reordered_datagrams_deliver_each_query_once() {
    let n = 8;
    let net = NetConfig {
        duplicate: 0.5,
        reorder: 0.3,
        ..NetConfig::default()
    };
    let mut sim = cluster(n, net);
    let params = QueryParams {
        request_ack: true,
        timeout: Duration::from_secs(2),
        ..QueryParams::default()
    };
    let id = ask(&mut sim, &params, b"x");
    sim.run_for(Duration::from_millis(2500));
    let events: Vec<Vec<ClusterEvent>> = (0..n).map(|i| sim.take_events(i)).collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(received(e).len(), 1, "node {i}");
    }
    let (acks, _, done) = answers(&events[0], id);
    assert_eq!(
        acks,
        names(&(0..n).collect::<Vec<_>>()),
        "one ack per member"
    );
    assert_eq!(done, 1);
}

#[test]
fn without_request_ack_there_are_no_acks_but_responses_still_come() {
    let mut sim = cluster(3, NetConfig::default());
    let params = QueryParams {
        timeout: Duration::from_secs(1),
        ..QueryParams::default()
    };
    let id = ask(&mut sim, &params, b"");
    sim.run_for(Duration::from_millis(500));
    for i in 1..3 {
        let events = sim.take_events(i);
        let q = received(&events);
        sim.with(i, |c, now| c.respond(q[0].2, b"ok", now))
            .expect("respond");
    }
    sim.run_for(Duration::from_millis(700));
    let (acks, responses, done) = answers(&sim.take_events(0), id);
    assert!(acks.is_empty());
    assert_eq!(responses.len(), 2);
    assert_eq!(done, 1);
}

#[test]
fn size_limits_refuse_with_serfs_text_and_send_nothing() {
    let mut sim = cluster(3, NetConfig::default());
    let big = vec![b'x'; 1100];
    let err = sim
        .with(0, |c, now| {
            c.query("big", &big, &QueryParams::default(), now)
        })
        .unwrap_err();
    assert_eq!(err, QueryError::TooLarge(1024));
    assert_eq!(err.to_string(), "query exceeds limit of 1024 bytes");
    sim.run_for(Duration::from_secs(1));
    for i in 0..3 {
        assert!(received(&sim.take_events(i)).is_empty(), "node {i}");
    }
    // A response over 1,024 bytes is refused; a smaller one is still possible afterwards.
    let params = QueryParams {
        timeout: Duration::from_secs(2),
        ..QueryParams::default()
    };
    let id = ask(&mut sim, &params, b"");
    sim.run_for(Duration::from_millis(500));
    let q = received(&sim.take_events(1));
    let err = sim
        .with(1, |c, now| c.respond(q[0].2, &big, now))
        .unwrap_err();
    assert_eq!(err.to_string(), "response exceeds limit of 1024 bytes");
    sim.with(1, |c, now| c.respond(q[0].2, b"small", now))
        .expect("respond");
    sim.run_for(Duration::from_secs(2));
    let (_, responses, _) = answers(&sim.take_events(0), id);
    assert_eq!(responses, vec![(node_name(1), b"small".to_vec())]);
}

#[test]
fn limits_are_configurable() {
    let mut sim = cluster_net(1, NetConfig::default(), 3, |_, c| {
        c.query_size_limit = 2000;
        c.query_response_size_limit = 64;
    });
    let payload = vec![b'x'; 1100];
    let params = QueryParams {
        timeout: Duration::from_millis(100),
        ..QueryParams::default()
    };
    sim.with(0, |c, now| c.query("big", &payload, &params, now))
        .expect("a 2,000-byte limit takes 1,100 bytes");
    sim.run_for(Duration::from_millis(10));
    let q = received(&sim.take_events(0));
    let err = sim.with(0, |c, now| c.respond(q[0].2, &[0; 64], now));
    assert_eq!(err, Err(QueryError::ResponseTooLarge(64)));
}

#[test]
fn a_response_after_the_deadline_is_refused() {
    let mut sim = cluster(2, NetConfig::default());
    let params = QueryParams {
        timeout: Duration::from_millis(500),
        ..QueryParams::default()
    };
    let id = ask(&mut sim, &params, b"");
    sim.run_for(Duration::from_millis(300));
    let q = received(&sim.take_events(1));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.with(1, |c, now| c.respond(q[0].2, b"late", now)),
        Err(QueryError::NoSuchQuery)
    );
    let (_, responses, done) = answers(&sim.take_events(0), id);
    assert!(responses.is_empty());
    assert_eq!(done, 1);
}

#[test]
fn queries_in_flight_are_bounded() {
    let mut sim = cluster_net(1, NetConfig::default(), 4, |_, c| c.limits.max_queries = 2);
    let params = QueryParams {
        timeout: Duration::from_secs(1),
        ..QueryParams::default()
    };
    for _ in 0..2 {
        sim.with(0, |c, now| c.query("q", b"", &params, now))
            .expect("query");
    }
    assert_eq!(
        sim.with(0, |c, now| c.query("q", b"", &params, now)),
        Err(QueryError::TooMany)
    );
    sim.run_for(Duration::from_millis(1100));
    sim.with(0, |c, now| c.query("q", b"", &params, now))
        .expect("room again after the first two ended");
}

#[test]
fn internal_ping_is_acked_and_never_offered_to_the_agent() {
    let mut sim = cluster(3, NetConfig::default());
    let params = QueryParams {
        request_ack: true,
        timeout: Duration::from_secs(1),
        ..QueryParams::default()
    };
    let id = sim
        .with(0, |c, now| c.query("_serf_ping", b"", &params, now))
        .expect("ping");
    sim.run_for(Duration::from_millis(1200));
    let events: Vec<Vec<ClusterEvent>> = (0..3).map(|i| sim.take_events(i)).collect();
    assert_eq!(answers(&events[0], id).0, names(&[0, 1, 2]));
    for e in &events {
        assert!(received(e).is_empty());
    }
}

#[test]
fn a_small_cluster_acks_and_responds_fully_even_at_10_percent_loss_with_relays() {
    let clean = query_run(20, 0, 0);
    assert_eq!(
        (clean.acks.len(), clean.responses.len()),
        (20, 20),
        "{}",
        query_line(&clean)
    );
    assert_eq!(clean.delivered, 20);
    let lossy = query_run(20, 10, 3);
    assert_eq!(lossy.delivered, 20, "{}", query_line(&lossy));
    assert!(lossy.acks.len() >= 19, "{}", query_line(&lossy));
    assert!(lossy.responses.len() >= 19, "{}", query_line(&lossy));
    // Deterministic: the same run gives the same row.
    assert_eq!(query_run(20, 10, 3), lossy);
}
