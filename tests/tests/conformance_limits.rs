//! Conformance of the bounds in `Limits` and of the resources the agent holds: every limit
//! answers with its documented refusal, and nothing a finished request used is kept.

use serde_json::{Value, json};
use tandem_core::{Config, JobError, Level, Limits, Listener, Refused};
use tandem_tests::Sim;
use tandem_tests::http::post_api;

fn limits(l: Limits) -> Sim {
    Sim::with_config(Config {
        limits: l,
        ..Config::default()
    })
}

#[test]
fn max_sessions_refuses_init_and_one_time_exec() {
    let mut sim = limits(Limits {
        max_sessions: 2,
        ..Limits::default()
    });
    sim.init_session();
    let (sid, _) = sim.init_session();
    assert_eq!(
        sim.api_text(r#"{"action":"init_session","requestId":"3"}"#),
        r#"{"message":"too many sessions (limit 2)","requestId":"3","state":"FAILED"}"#
    );
    assert_eq!(
        sim.api_text(r#"{"action":"exec","command":"version"}"#),
        r#"{"message":"too many sessions (limit 2)","state":"FAILED"}"#
    );
    // exec in an existing session still works; a closed session frees a place.
    assert_eq!(sim.exec_in(&sid, "version")["state"], "SUCCEEDED");
    sim.api(&format!(
        r#"{{"action":"close_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        sim.api(r#"{"action":"init_session"}"#)["state"],
        "SUCCEEDED"
    );
}

#[test]
fn max_consumers_refuses_join() {
    let mut sim = limits(Limits {
        max_consumers: 2,
        ..Limits::default()
    });
    let (sid, _) = sim.init_session();
    sim.join_session(&sid);
    assert_eq!(
        sim.api_text(&format!(
            r#"{{"action":"join_session","sessionId":"{sid}"}}"#
        )),
        r#"{"message":"too many consumers in this session (limit 2)","state":"FAILED"}"#
    );
}

#[test]
fn max_jobs_refuses_more_jobs_in_a_session() {
    let mut sim = limits(Limits {
        max_jobs: 2,
        ..Limits::default()
    });
    let (sid, _) = sim.init_session();
    sim.async_exec(&sid, "monitor &");
    sim.async_exec(&sid, "monitor &");
    let text = sim.api_text(&format!(
        r#"{{"action":"async_exec","command":"version","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"version"}},"message":"Async exec command failed:too many jobs in this session (limit 2)","sessionId":"{sid}","state":"FAILED"}}"#
        )
    );
    let v = sim.exec_in(&sid, "version");
    assert_eq!(
        v["message"],
        "Exec command failed:too many jobs in this session (limit 2)"
    );
}

#[test]
fn max_command_refuses_longer_lines() {
    let mut sim = limits(Limits {
        max_command: 16,
        ..Limits::default()
    });
    let ok = format!("echo {}", "a".repeat(11));
    assert_eq!(ok.len(), 16);
    let v = sim.api(&format!(r#"{{"action":"exec","command":"{ok}"}}"#));
    assert_eq!(v["state"], "SUCCEEDED");
    let long = format!("{ok}b");
    let v = sim.api(&format!(r#"{{"action":"exec","command":"{long}"}}"#));
    assert_eq!(
        v["message"],
        "Exec command failed:command line too long: 17 bytes (limit 16)"
    );
}

#[test]
fn max_connections_answers_http_503_and_refuses_rpc_until_one_closes() {
    let mut sim = limits(Limits {
        max_connections: 2,
        ..Limits::default()
    });
    let a = sim.connect();
    sim.connect();
    let over = sim.connect();
    assert!(sim.is_closed(over));
    assert_eq!(sim.responses(over)[0].status, 503);
    sim.connect_to(Listener::Rpc);
    sim.connect_to(Listener::Rpc);
    assert_eq!(
        sim.agent.accept(Listener::Rpc, None, sim.now),
        Err(Refused::TooManyConnections)
    );
    sim.reset(a);
    let again = sim.connect();
    sim.post(again, r#"{"action":"exec","command":"version"}"#);
    assert_eq!(sim.responses(again)[0].status, 200);
}

#[test]
fn exec_results_beyond_the_cap_are_counted_by_a_gap_before_the_status() {
    let mut sim = limits(Limits {
        exec_results: 3,
        ..Limits::default()
    });
    for i in 0..5 {
        sim.agent.log_record(Level::Warn, &format!("r{i}"), sim.now);
    }
    let c = sim.connect();
    sim.post(
        c,
        r#"{"action":"exec","command":"monitor -l WARN","execTimeout":10}"#,
    );
    sim.advance_ms(10);
    let items = tandem_tests::sim::result_items(sim.responses(c)[0].text());
    let log = |i: u32| {
        format!(
            r#"{{"jobId":1,"level":"WARN","log":"2026/11/21 00:00:00 [WARN] r{i}","type":"log"}}"#
        )
    };
    assert_eq!(
        items,
        [
            log(0),
            log(1),
            log(2),
            r#"{"dropped":2,"jobId":0,"type":"gap"}"#.to_string(),
            r#"{"interrupted":true,"jobId":1,"statusCode":0,"type":"status"}"#.to_string(),
        ]
    );
}

#[test]
fn a_host_exec_that_fills_the_response_ends_at_once_with_the_reason() {
    let mut sim = limits(Limits {
        exec_results: 2,
        ..Limits::default()
    });
    sim.register("gen");
    let c = sim.connect();
    sim.post(c, r#"{"action":"exec","command":"gen"}"#);
    let job = sim.started_jobs()[0].0;
    for n in 0..2 {
        assert_eq!(
            sim.agent
                .job_output(job, &json!({"type":"x","n":n}), sim.now),
            Ok(())
        );
    }
    // Nobody drains an exec response before its job ends: waiting would only time out.
    assert_eq!(
        sim.agent
            .job_output(job, &json!({"type":"x","n":2}), sim.now),
        Err(JobError::Gone)
    );
    sim.drain();
    assert_eq!(sim.take_effects(), [tandem_core::Effect::CancelJob(job)]);
    let text = sim.responses(c)[0].text().to_string();
    let sid = serde_json::from_str::<Value>(&text).unwrap()["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let j = job.0;
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"gen","jobId":{j},"jobStatus":"TERMINATED","results":[{{"jobId":{j},"n":0,"type":"x"}},{{"jobId":{j},"n":1,"type":"x"}},{{"interrupted":true,"jobId":{j},"message":"result limit reached: exec collects at most 2 items","statusCode":0,"type":"status"}}],"timeExpired":false}},"sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
    assert_eq!(sim.agent.session_count(), 0);
}

/// What the agent still holds once every request has been answered and every session
/// closed: nothing but the timer entries of live objects.
#[test]

fn timers_do_not_pile_up_behind_answered_requests() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let mut burst = Vec::new();
    for _ in 0..200 {
        burst.extend_from_slice(&post_api(r#"{"action":"exec","command":"version"}"#));
    }
    sim.send(c, &burst);
    assert_eq!(sim.responses(c).len(), 200);
    assert_eq!(sim.agent.session_count(), 0);
    assert_eq!(sim.agent.job_count(), 0);
    assert!(
        sim.agent.timer_count() <= 1,
        "{} timer entries for no live object",
        sim.agent.timer_count()
    );
}

#[test]

fn timers_do_not_pile_up_behind_early_answered_pulls() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let base = sim.agent.timer_count();
    let c = sim.connect();
    for _ in 0..50 {
        for w in 0..4 {
            sim.post(
                c,
                &format!(r#"{{"action":"async_exec","command":"echo {w}","sessionId":"{sid}"}}"#),
            );
        }
        sim.post(c, &tandem_tests::sim::pull_body(&sid, &cid));
    }
    let answered = sim.responses(c);
    assert_eq!(answered.len(), 250);
    assert!(
        answered
            .iter()
            .filter(|r| r.text().contains("results"))
            .all(|r| r.json()["body"]["results"].as_array().unwrap().len() == 20)
    );
    assert!(
        sim.agent.timer_count() <= base + 1,
        "{} timer entries, {base} before",
        sim.agent.timer_count()
    );
}

#[test]
fn a_closed_session_leaves_nothing_behind() {
    let mut sim = Sim::new();
    sim.register("gen");
    let (sid, cid) = sim.init_session();
    sim.join_session(&sid);
    sim.async_exec(&sid, "gen &");
    sim.async_exec(&sid, "monitor");
    let c = sim.start_pull(&sid, &cid);
    sim.api(&format!(
        r#"{{"action":"close_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(sim.responses(c).len(), 1);
    assert_eq!(sim.agent.session_count(), 0);
    assert_eq!(sim.agent.job_count(), 0);
    let v: Value = sim.api(r#"{"action":"exec","command":"stats"}"#);
    let agent = &v["body"]["results"][0]["stats"]["agent"];
    assert_eq!(
        agent["sessions"], "1",
        "only the one-time session of this exec"
    );
    assert_eq!(agent["jobs"], "1");
}
