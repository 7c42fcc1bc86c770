//! Serf's `Replay` on join, on the core's virtual clock: a join with replay (the RPC `join`
//! with `Replay`, or `-replay` / `replay_on_join` for the joins the agent starts) delivers
//! the user events the members still hold; a join without it only those after the join.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;

use std::time::Duration;

use rpc_support::{V, handshake, map, req_with, strs};
use tandem_core::cluster::MemberStatus;
use tandem_core::{Agent, Config, Listener, Pool};
use tandem_tests::netsim::{Net, NetConfig, START, lan_addr};
use tandem_tests::netsim_agent::agent_config;

const TICK: Duration = Duration::from_millis(100);

fn received(sim: &Net<Agent>, i: usize, name: &str) -> usize {
    let needle = format!("agent: Received event: user-event: {name}");
    sim.node(i)
        .log_records()
        .filter(|r| r.line.ends_with(&needle))
        .count()
}

fn logged(sim: &Net<Agent>, i: usize, needle: &str) -> usize {
    sim.node(i)
        .log_records()
        .filter(|r| r.line.contains(needle))
        .count()
}

fn rpc(sim: &mut Net<Agent>, i: usize, cmd: &str, body: &V) {
    let mut bytes = handshake(0);
    bytes.extend(req_with(cmd, 1, body));
    sim.with(i, |a, now| {
        let c = a.accept(Listener::Rpc, None, now).unwrap();
        assert_eq!(a.handle_stream(c, &bytes, now), bytes.len());
    });
}

fn alive_count(sim: &Net<Agent>, i: usize) -> usize {
    sim.node(i)
        .cluster()
        .members(Pool::Lan)
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .count()
}

/// Agents 0 and 1 joined, and a user event `old` from two minutes ago; agents 2.. are up,
/// not joined, agent `i` with `replay_on_join` if `replay[i - 2]`.
fn cluster_with_history(replay: &[bool]) -> Net<Agent> {
    let mut sim = Net::new(NetConfig::default(), START);
    for i in 0..2 + replay.len() {
        let cfg = Config {
            replay_on_join: i >= 2 && replay[i - 2],
            ..agent_config(i)
        };
        sim.add(Agent::new(cfg, 60 + i as u64, sim.now), lan_addr(i), None);
    }
    let first = lan_addr(0).to_string();
    sim.with(1, |a, now| a.join(&[first.as_str()], false, now));
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| alive_count(s, 1) == 2)
        .expect("two agents join");
    let body = map(&[
        ("Name", V::from("old")),
        ("Payload", V::B(b"1".to_vec())),
        ("Coalesce", V::Bool(false)),
    ]);
    rpc(&mut sim, 0, "event", &body);
    // Older than anything a periodic sync passes on (2 × sync_interval).
    sim.run_for(Duration::from_secs(120));
    assert_eq!(received(&sim, 1, "old"), 1);
    sim
}

#[test]
fn a_join_with_replay_on_join_delivers_old_events_and_one_without_does_not() {
    let mut sim = cluster_with_history(&[false, true]);
    let first = lan_addr(0).to_string();
    for i in [2, 3] {
        sim.with(i, |a, now| a.join(&[first.as_str()], false, now));
    }
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| {
        alive_count(s, 2) == 4 && alive_count(s, 3) == 4
    })
    .expect("both join");
    sim.run_for(Duration::from_secs(30));
    assert_eq!(logged(&sim, 2, "replay: false"), 1);
    assert_eq!(logged(&sim, 3, "replay: true"), 1);
    assert_eq!(
        received(&sim, 2, "old"),
        0,
        "no replay: only events after the join"
    );
    assert_eq!(received(&sim, 3, "old"), 1, "replayed once");
    // Events after the join reach both, once.
    let body = map(&[
        ("Name", V::from("new")),
        ("Payload", V::B(Vec::new())),
        ("Coalesce", V::Bool(false)),
    ]);
    rpc(&mut sim, 1, "event", &body);
    sim.run_for(Duration::from_secs(10));
    for i in 0..4 {
        assert_eq!(received(&sim, i, "new"), 1, "agent {i}");
    }
}

#[test]
fn the_rpc_join_replays_when_asked() {
    let mut sim = cluster_with_history(&[false, false]);
    for (i, replay) in [(2, true), (3, false)] {
        let body = map(&[
            ("Existing", strs(&[&lan_addr(0).to_string()])),
            ("WAN", V::Bool(false)),
            ("Replay", V::Bool(replay)),
        ]);
        rpc(&mut sim, i, "join", &body);
    }
    sim.run_for(Duration::from_secs(30));
    assert_eq!(alive_count(&sim, 2), 4);
    assert_eq!(logged(&sim, 2, "replay: true"), 1);
    assert_eq!(received(&sim, 2, "old"), 1);
    assert_eq!(received(&sim, 3, "old"), 0);
}
