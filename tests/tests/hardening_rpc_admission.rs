//! Idle RPC connections cannot lock operators out (issue 15, item 3), on the virtual clock:
//! with `rpc_auth` set a connection must authenticate within the handshake deadline, and a
//! full table makes room for a new client by closing the longest-idle connection not yet
//! admitted or, without `rpc_auth`, the longest-idle one the agent owes nothing.

#[path = "conformance_rpc_support/mod.rs"]
mod support;

use support::{HANDSHAKE_OK, map, reply, req, req_with, sim_with, to_hex};
use tandem_core::{ConnId, Listener};
use tandem_tests::Sim;

fn handshaken(sim: &mut Sim) -> ConnId {
    support::handshaken(sim)
}

fn auth(sim: &mut Sim, c: ConnId, key: &str) {
    let got = support::call(
        sim,
        c,
        &req_with("auth", 1, &map(&[("AuthKey", key.into())])),
    );
    assert_eq!(to_hex(&got), to_hex(&reply(1, "")));
}

/// Sends `members` and checks a reply came (the connection is served).
fn served(sim: &mut Sim, c: ConnId, seq: u64) {
    let got = support::call(sim, c, &req("members", seq));
    assert!(
        got.starts_with(&reply(seq, "")),
        "members on {c:?}: {}",
        to_hex(&got)
    );
}

fn monitor(sim: &mut Sim, c: ConnId) {
    let got = support::call(
        sim,
        c,
        &req_with("monitor", 2, &map(&[("LogLevel", "ERR".into())])),
    );
    assert!(got.starts_with(&reply(2, "")), "{}", to_hex(&got));
}

#[test]
fn with_rpc_auth_a_connection_must_authenticate_within_the_handshake_deadline() {
    let mut sim = sim_with(|c| c.rpc_auth = Some("k".into()));
    let lazy = handshaken(&mut sim);
    let good = handshaken(&mut sim);
    auth(&mut sim, good, "k");
    sim.advance_ms(9_999);
    assert!(!sim.is_closed(lazy));
    sim.advance_ms(1);
    assert!(
        sim.is_closed(lazy),
        "handshaken but not authenticated after 10 s"
    );
    assert!(sim.received(lazy).is_empty());
    assert_eq!(sim.agent.stats().idle_closes, 1);
    sim.advance_ms(24 * 3_600_000);
    assert!(
        !sim.is_closed(good),
        "an authenticated connection is never idle-closed"
    );
    served(&mut sim, good, 3);
}

#[test]
fn without_rpc_auth_a_handshaken_connection_has_no_deadline() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    sim.advance_ms(24 * 3_600_000);
    assert!(!sim.is_closed(c));
}

#[test]
fn a_full_table_of_idle_connections_makes_room_for_a_new_client() {
    let mut sim = Sim::new();
    let max = sim.agent.config().limits.max_connections;
    let idle: Vec<_> = (0..max).map(|_| handshaken(&mut sim)).collect();
    sim.advance_ms(1_000);
    // All but one were used since: that one is the longest idle.
    for (i, &c) in idle.iter().enumerate() {
        if i != 5 {
            served(&mut sim, c, 1);
        }
    }
    let new = sim.try_connect_to(Listener::Rpc).expect("room made");
    assert!(
        sim.is_closed(idle[5]),
        "the longest-idle connection was closed"
    );
    assert!(sim.received(idle[5]).is_empty());
    assert_eq!(
        idle.iter().filter(|&&c| sim.is_closed(c)).count(),
        1,
        "exactly one was closed"
    );
    assert_eq!(sim.agent.connection_count(Listener::Rpc), max);
    assert_eq!(sim.agent.stats().rpc_evictions, 1);
    assert_eq!(sim.agent.stats().connections_refused, 0);
    sim.send(new, &support::handshake(0));
    assert_eq!(to_hex(&sim.received(new)), HANDSHAKE_OK);
    served(&mut sim, new, 1);
}

#[test]
fn connections_not_yet_handshaken_go_first() {
    let mut sim = sim_with(|c| c.limits.max_connections = 4);
    let a = handshaken(&mut sim);
    sim.advance_ms(1_000);
    let fresh = support::connect(&mut sim);
    let b = handshaken(&mut sim);
    let c = handshaken(&mut sim);
    sim.try_connect_to(Listener::Rpc).expect("room made");
    assert!(
        sim.is_closed(fresh),
        "the one without handshake, though newer"
    );
    assert!(![a, b, c].iter().any(|&x| sim.is_closed(x)));
}

#[test]
fn connections_the_agent_owes_something_are_never_evicted() {
    let mut sim = sim_with(|c| c.limits.max_connections = 3);
    let m1 = handshaken(&mut sim);
    monitor(&mut sim, m1);
    let m2 = handshaken(&mut sim);
    monitor(&mut sim, m2);
    // A reader that takes none of its answer: output pending.
    let slow = handshaken(&mut sim);
    sim.set_reading(slow, false);
    sim.send(slow, &req("members", 1));
    sim.advance_ms(1_000);
    assert_eq!(
        sim.try_connect_to(Listener::Rpc),
        Err(tandem_core::Refused::TooManyConnections)
    );
    assert!(![m1, m2, slow].iter().any(|&x| sim.is_closed(x)));
    assert_eq!(sim.agent.stats().rpc_evictions, 0);
}

#[test]
fn with_rpc_auth_only_unauthenticated_connections_are_evicted() {
    let mut sim = sim_with(|c| {
        c.rpc_auth = Some("k".into());
        c.limits.max_connections = 3;
    });
    let operator = handshaken(&mut sim);
    auth(&mut sim, operator, "k");
    let old = handshaken(&mut sim);
    sim.advance_ms(100);
    let newer = handshaken(&mut sim);
    sim.advance_ms(100);
    // The operator's connection is the longest idle, yet authenticated: kept.
    let client = sim.try_connect_to(Listener::Rpc).expect("room made");
    assert!(sim.is_closed(old));
    assert!(!sim.is_closed(operator) && !sim.is_closed(newer));
    sim.send(client, &support::handshake(0));
    assert_eq!(to_hex(&sim.received(client)), HANDSHAKE_OK);
    auth(&mut sim, client, "k");
    served(&mut sim, client, 2);
    // Now `newer` is the only one not admitted.
    let third = sim.try_connect_to(Listener::Rpc).expect("room made");
    assert!(sim.is_closed(newer));
    sim.send(third, &support::handshake(0));
    assert_eq!(to_hex(&sim.received(third)), HANDSHAKE_OK);
    auth(&mut sim, third, "k");
    // A table of authenticated connections has no room: refused, as before.
    sim.advance_ms(3_600_000);
    assert_eq!(
        sim.try_connect_to(Listener::Rpc),
        Err(tandem_core::Refused::TooManyConnections)
    );
    assert!(![operator, client, third].iter().any(|&x| sim.is_closed(x)));
}

#[test]
fn a_connection_waiting_for_its_query_is_never_evicted() {
    let mut sim = sim_with(|c| c.limits.max_connections = 1);
    let asker = handshaken(&mut sim);
    // {"Name":"load","Timeout":<60 s in ns>}
    let body = map(&[
        ("Name", "load".into()),
        ("Timeout", 60_000_000_000u64.into()),
    ]);
    let got = support::call(&mut sim, asker, &req_with("query", 3, &body));
    assert!(got.starts_with(&reply(3, "")), "{}", to_hex(&got));
    sim.advance_ms(1_000);
    assert_eq!(
        sim.try_connect_to(Listener::Rpc),
        Err(tandem_core::Refused::TooManyConnections),
        "the query's records are still owed"
    );
    assert!(!sim.is_closed(asker));
    // Once it is done, the connection is idle again and makes room.
    sim.advance_ms(60_000);
    assert!(sim.try_connect_to(Listener::Rpc).is_ok());
    assert!(sim.is_closed(asker));
}
