//! `-retry-join` on the core's virtual clock (`Agent::retry_join`): attempts every interval
//! until one succeeds, each logged as Serf's agent logs it; after `-retry-max` failed
//! retries the agent shuts down with exit status 1.

use std::time::Duration;

use tandem_core::cluster::MemberStatus;
use tandem_core::{Agent, Pool};
use tandem_tests::netsim::{Net, lan_addr, node_name};
use tandem_tests::netsim_agent::{agent_config, agent_net};

const TICK: Duration = Duration::from_millis(10);

fn lines(sim: &Net<Agent>, i: usize, needle: &str) -> usize {
    sim.node(i)
        .log_records()
        .filter(|r| r.line.contains(needle))
        .count()
}

fn shutdowns(sim: &Net<Agent>, i: usize) -> usize {
    sim.events(i)
        .iter()
        .filter(|e| e.0.contains("Shutdown"))
        .count()
}

#[test]
fn retry_join_retries_every_interval_until_the_target_is_up_then_stops() {
    let mut sim = agent_net(2, Default::default(), 71);
    // Agent 0 is down (its process not started yet).
    sim.kill(0);
    let target = lan_addr(0).to_string();
    let interval = Duration::from_secs(10);
    sim.with(1, |a, now| {
        a.retry_join(&[target.as_str()], false, interval, 0, now);
    });
    assert_eq!(
        lines(&sim, 1, "[INFO] agent: Joining cluster...(replay: false)"),
        1
    );
    sim.run_for(Duration::from_secs(40));
    let failed = lines(&sim, 1, "[WARN] agent: Join failed: ");
    assert!(
        failed >= 2,
        "attempts keep coming while the target is down: {failed}"
    );
    let attempts = lines(&sim, 1, "agent: Joining cluster...");
    assert!(
        attempts == failed || attempts == failed + 1,
        "one attempt per failure (plus one running): {attempts} attempts, {failed} failures"
    );
    assert_eq!(lines(&sim, 1, ", retrying in 10s"), failed);
    assert_eq!(shutdowns(&sim, 1), 0, "retry-max 0 retries forever");
    // The target comes up: the next attempt joins, and no attempt follows.
    sim.restart(0, Agent::new(agent_config(0), 70, sim.now));
    let completed = "[INFO] agent: Join completed. Synced with 1 initial agents";
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| {
        lines(s, 1, completed) > 0
    })
    .expect("the next attempt joins");
    sim.run_for(Duration::from_secs(2));
    assert!(
        sim.node(0)
            .cluster()
            .members(Pool::Lan)
            .iter()
            .any(|m| m.name == node_name(1) && m.status == MemberStatus::Alive)
    );
    let attempts = lines(&sim, 1, "agent: Joining cluster...");
    sim.run_for(Duration::from_secs(60));
    assert_eq!(lines(&sim, 1, "agent: Joining cluster..."), attempts);
    assert_eq!(lines(&sim, 1, completed), 1);
    assert_eq!(sim.node(1).exit_status(), 0);
}

#[test]
fn retry_join_gives_up_after_retry_max_failed_retries_with_exit_status_1() {
    let mut sim = agent_net(1, Default::default(), 72);
    let interval = Duration::from_secs(5);
    // Nobody answers at this address.
    sim.with(0, |a, now| {
        a.retry_join(&["10.99.0.1:8301"], false, interval, 2, now);
    });
    sim.run_until_cond(Duration::from_secs(120), TICK, |s| shutdowns(s, 0) > 0)
        .expect("the agent gives up");
    // Serf: the first attempt and `-retry-max` retries, then exit 1.
    assert_eq!(lines(&sim, 0, "agent: Joining cluster..."), 3);
    assert_eq!(lines(&sim, 0, "[WARN] agent: Join failed: "), 2);
    assert_eq!(
        lines(
            &sim,
            0,
            "[ERR] agent: maximum retry join attempts made, exiting"
        ),
        1
    );
    assert_eq!(sim.node(0).exit_status(), 1);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(lines(&sim, 0, "agent: Joining cluster..."), 3);
    assert_eq!(shutdowns(&sim, 0), 1);
}

#[test]
fn a_plain_join_that_fails_is_not_retried() {
    let mut sim = agent_net(1, Default::default(), 73);
    sim.with(0, |a, now| a.join(&["10.99.0.1:8301"], false, now));
    sim.run_for(Duration::from_secs(120));
    assert_eq!(lines(&sim, 0, "agent: joining: [10.99.0.1:8301]"), 1);
    assert_eq!(lines(&sim, 0, "agent: Join failed"), 0);
    assert_eq!(sim.node(0).exit_status(), 0);
}
