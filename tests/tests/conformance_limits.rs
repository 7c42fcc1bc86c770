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
fn max_sessions_refuses_init_when_every_session_is_used_but_never_a_one_time_exec() {
    let mut sim = limits(Limits {
        max_sessions: 2,
        ..Limits::default()
    });
    let (first, _) = sim.init_session();
    let (sid, _) = sim.init_session();
    for s in [&first, &sid] {
        sim.join_session(s);
    }
    assert_eq!(
        sim.api_text(r#"{"action":"init_session","requestId":"3"}"#),
        r#"{"message":"too many sessions (limit 2)","requestId":"3","state":"FAILED"}"#
    );
    // One-time sessions have their own room: a full table never refuses exec.
    for _ in 0..3 {
        assert_eq!(
            sim.api(r#"{"action":"exec","command":"version"}"#)["state"],
            "SUCCEEDED"
        );
    }
    // exec in an existing session still works; a closed session frees a place.
    assert_eq!(sim.exec_in(&sid, "version")["state"], "SUCCEEDED");
    sim.api(&format!(
        r#"{{"action":"close_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        sim.api(r#"{"action":"init_session"}"#)["state"],
        "SUCCEEDED"
    );
    assert_eq!(sim.agent.stats().sessions_evicted, 0);
}

#[test]
fn at_max_sessions_the_longest_idle_unused_session_makes_room() {
    let mut sim = limits(Limits {
        max_sessions: 3,
        ..Limits::default()
    });
    let (used_early, _) = sim.init_session();
    sim.advance_ms(10);
    let (unused_old, _) = sim.init_session();
    sim.advance_ms(10);
    let (unused_new, _) = sim.init_session();
    sim.join_session(&used_early);
    sim.advance_ms(10);
    let (fourth, _) = sim.init_session();
    let info = |sim: &mut Sim, sid: &str| {
        sim.api(&format!(
            r#"{{"action":"session_info","sessionId":"{sid}"}}"#
        ))["state"]
            .clone()
    };
    assert_eq!(
        info(&mut sim, &unused_old),
        "FAILED",
        "the oldest unused went"
    );
    assert_eq!(sim.agent.stats().sessions_evicted, 1);
    // session_info used these two; the next newcomer takes the unused `fourth`'s place.
    for sid in [&used_early, &unused_new] {
        assert_eq!(info(&mut sim, sid), "SUCCEEDED");
    }
    let (fifth, _) = sim.init_session();
    assert_eq!(info(&mut sim, &fourth), "FAILED");
    assert_eq!(info(&mut sim, &fifth), "SUCCEEDED");
    // Now every session is used: the table is full for init_session.
    assert_eq!(
        sim.api(r#"{"action":"init_session"}"#)["message"],
        "too many sessions (limit 3)"
    );
    assert_eq!(sim.agent.stats().sessions_evicted, 2);
    assert_eq!(sim.agent.session_count(), 3);
}

#[test]
fn a_flood_of_init_session_denies_neither_exec_nor_a_new_user() {
    // The attack of issue 14: about 1,024 init_session in half a second.
    let mut sim = Sim::new();
    let (mine, cid) = sim.init_session();
    sim.pull(&mine, &cid);
    let flood = sim.connect();
    for _ in 0..1_500 {
        sim.post(flood, r#"{"action":"init_session"}"#);
        assert_eq!(sim.responses(flood)[0].json()["state"], "SUCCEEDED");
    }
    assert_eq!(sim.agent.session_count(), 1_024);
    assert_eq!(sim.agent.stats().sessions_evicted, 1_500 - 1_023);
    let v = sim.api(r#"{"action":"exec","command":"version"}"#);
    assert_eq!(v["state"], "SUCCEEDED", "{v}");
    // A user who arrives now gets a session, and the one in use was never evicted.
    let (late, late_cid) = sim.init_session();
    assert_eq!(sim.exec_in(&mine, "version")["state"], "SUCCEEDED");
    // A minute later the flood's sessions are gone; the used ones stay.
    sim.pull(&late, &late_cid);
    sim.advance_ms(60_000);
    assert_eq!(sim.agent.session_count(), 2);
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
fn max_host_jobs_bounds_the_host_jobs_of_every_session_together() {
    let mut sim = limits(Limits {
        max_host_jobs: 2,
        ..Limits::default()
    });
    sim.register("gen");
    let (a, _) = sim.init_session();
    let (b, _) = sim.init_session();
    assert_eq!(sim.async_exec(&a, "gen &")["state"], "SCHEDULED");
    assert_eq!(sim.async_exec(&b, "gen &")["state"], "SCHEDULED");
    let started = sim.started_jobs();
    assert_eq!(started.len(), 2);
    // A third host job, in either session or one-time, is refused before the host hears
    // of it; built-in commands are not host jobs and still run.
    let refused = "too many host jobs running (limit 2)";
    let text = sim.api_text(&format!(
        r#"{{"action":"async_exec","command":"gen","sessionId":"{b}"}}"#
    ));
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"gen"}},"message":"Async exec command failed:{refused}","sessionId":"{b}","state":"FAILED"}}"#
        )
    );
    assert_eq!(
        sim.api(r#"{"action":"exec","command":"gen"}"#)["message"],
        format!("Exec command failed:{refused}")
    );
    assert_eq!(sim.exec_in(&a, "version")["state"], "SUCCEEDED");
    assert!(sim.started_jobs().is_empty());
    // Every way a host job ends gives its place back: finishing, an interrupt, and the
    // close of its session.
    sim.agent.job_finished(started[0].0, 0, None, sim.now);
    sim.drain();
    assert_eq!(sim.async_exec(&a, "gen")["state"], "SCHEDULED");
    sim.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{a}"}}"#
    ));
    assert_eq!(sim.async_exec(&a, "gen &")["state"], "SCHEDULED");
    sim.api(&format!(
        r#"{{"action":"close_session","sessionId":"{b}"}}"#
    ));
    assert_eq!(sim.async_exec(&a, "gen &")["state"], "SCHEDULED");
    assert_eq!(sim.started_jobs().len(), 3);
    assert_eq!(
        sim.api(r#"{"action":"exec","command":"gen"}"#)["message"],
        format!("Exec command failed:{refused}")
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
    // Connections the agent owes something: idle ones would make room (see
    // `hardening_rpc_admission`).
    sim.rpc_monitoring();
    sim.rpc_monitoring();
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

#[test]
fn limits_of_zero_refuse_cleanly_and_never_panic() {
    // An embedder may set any limit to 0 (a configuration file may not: the runtimes refuse
    // what `Config::validate` refuses, most zeros included). Every request then gets a defined
    // refusal: HTTP connections a 503 (the overflow allowance is 0 too: refused at accept),
    // and with the connection limit alone lifted, each other limit its own answer.
    let zero = Limits {
        max_connections: 0,
        overflow_connections: 0,
        max_head: 0,
        max_headers: 0,
        max_body: 0,
        max_tx: 0,
        consumer_queue: 0,
        history: 0,
        max_sessions: 0,
        max_consumers: 0,
        max_jobs: 0,
        max_host_jobs: 0,
        exec_results: 0,
        log_ring: 0,
        max_command: 0,
        rpc_max_frame: 0,
        rpc_max_str: 0,
        rpc_max_container: 0,
        rpc_max_values: 0,
        event_handler_queue: 0,
        event_handler_output: 0,
    };
    let mut sim = limits(zero.clone());
    assert_eq!(
        sim.try_connect_to(Listener::Http),
        Err(Refused::TooManyConnections)
    );
    assert_eq!(
        sim.try_connect_to(Listener::Rpc),
        Err(Refused::TooManyConnections)
    );
    // Connections allowed, everything else zero: a 431 for any head, a close for any RPC
    // frame (the agent still reads one byte to see it is over the limit).
    let mut sim = limits(Limits {
        max_connections: 4,
        ..zero.clone()
    });
    let c = sim.connect();
    sim.send(c, &post_api(r#"{"action":"init_session"}"#));
    assert_eq!(sim.responses(c)[0].status, 431, "a head over max_head 0");
    assert!(sim.is_closed(c));
    let r = sim.connect_to(Listener::Rpc);
    sim.send(
        r,
        b"\x82\xa7Command\xa9handshake\xa3Seq\x00\x81\xa7Version\x01",
    );
    assert!(sim.is_closed(r), "a frame over rpc_max_frame 0 closes");
    // Heads allowed, the rest zero: sessions, exec and a monitor are refused in JSON.
    let mut sim = limits(Limits {
        max_connections: 4,
        max_head: 8192,
        max_headers: 32,
        max_body: 4096,
        max_tx: 1 << 20,
        max_command: 64,
        ..zero
    });
    assert_eq!(sim.api(r#"{"action":"init_session"}"#)["state"], "FAILED");
    assert_eq!(
        sim.api(r#"{"action":"exec","command":"version"}"#)["state"],
        "FAILED"
    );
    // max_tx 0: answers still go out one at a time (the bound counts pending output).
    let c = sim.connect();
    let mut two = post_api(r#"{"action":"x"}"#);
    two.extend(post_api(r#"{"action":"y"}"#));
    sim.send(c, &two);
    assert_eq!(sim.responses(c).len(), 2);
    let now = sim.now;
    sim.agent.log_record(Level::Warn, "into a ring of 0", now);
    assert_eq!(sim.agent.log_records().count(), 0);
    sim.advance_ms(120_000);
    assert_eq!(sim.agent.session_count(), 0);
}
