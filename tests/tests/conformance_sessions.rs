//! Conformance of sessions and consumers (spec §4.2–4.9, §5.1, §6): the welcome sequence,
//! joining, fan-out, the `pull_results` long-poll timing on the virtual clock, expiry of
//! consumers and sessions, one-time `exec` sessions, `session_info` and `close_session`.

use std::time::Duration;

use serde_json::Value;
use tandem_core::{Config, Effect, Limits, Timing, VERSION};
use tandem_tests::Sim;
use tandem_tests::sim::{PID, START_UNIX_MS, pull_body, result_items};

const ALLOW_INPUT: &str = r#"{"inputStatus":"ALLOW_INPUT","jobId":0,"type":"input_status"}"#;
const ALLOW_INTERRUPT: &str =
    r#"{"inputStatus":"ALLOW_INTERRUPT","jobId":0,"type":"input_status"}"#;
const DISABLED: &str = r#"{"inputStatus":"DISABLED","jobId":0,"type":"input_status"}"#;
const WELCOME_MESSAGE: &str = r#"{"jobId":0,"message":"Welcome to tandem!","type":"message"}"#;

fn welcome(time: &str) -> String {
    format!(
        r#"{{"jobId":0,"node":"tandem","pid":"{PID}","time":"{time}","type":"welcome","version":"{VERSION}"}}"#
    )
}

fn pull_answer(sid: &str, cid: &str, items: &[&str]) -> String {
    format!(
        r#"{{"body":{{"results":[{}]}},"consumerId":"{cid}","sessionId":"{sid}","state":"SUCCEEDED"}}"#,
        items.join(",")
    )
}

/// The stream items of `async_exec "echo <word>"` as job `job`.
fn echo_items(job: u64, word: &str) -> Vec<String> {
    vec![
        format!(
            r#"{{"command":"echo {word}","jobId":{job},"state":"SCHEDULED","type":"command"}}"#
        ),
        ALLOW_INTERRUPT.to_string(),
        format!(r#"{{"jobId":{job},"message":"{word}","type":"message"}}"#),
        format!(r#"{{"jobId":{job},"statusCode":0,"type":"status"}}"#),
        ALLOW_INPUT.to_string(),
    ]
}

fn consumers(sim: &mut Sim, sid: &str) -> u64 {
    let v = sim.exec_in(sid, "session");
    v["body"]["results"][0]["consumers"]
        .as_u64()
        .unwrap_or_else(|| panic!("{v}"))
}

fn with_timing(timing: Timing) -> Sim {
    Sim::with_config(Config {
        timing,
        ..Config::default()
    })
}

// ----- welcome and joining ------------------------------------------------------------

#[test]
fn init_pushes_welcome_message_welcome_item_and_allow_input() {
    let mut sim = Sim::new();
    sim.advance_ms(61_234);
    let (sid, cid) = sim.init_session();
    let c = sim.start_pull(&sid, &cid);
    sim.advance_ms(100);
    let w = welcome("2026-11-21 00:01:01.234");
    assert_eq!(
        sim.responses(c)[0].text(),
        pull_answer(&sid, &cid, &[WELCOME_MESSAGE, &w, ALLOW_INPUT])
    );
}

#[test]
fn welcome_time_is_start_plus_elapsed_virtual_time_with_milliseconds() {
    for (elapsed, want) in [
        (0, "2026-11-21 00:00:00.000"),
        (7, "2026-11-21 00:00:00.007"),
        (86_400_000 + 3_723_004, "2026-11-22 01:02:03.004"),
        (40 * 86_400_000 + 999, "2026-12-31 00:00:00.999"),
        (41 * 86_400_000, "2027-01-01 00:00:00.000"),
    ] {
        let mut sim = Sim::new();
        sim.advance_ms(elapsed);
        assert_eq!(sim.unix_ms(), START_UNIX_MS + elapsed);
        let (sid, cid) = sim.init_session();
        let items = sim.pull(&sid, &cid);
        assert_eq!(items[1], welcome(want), "after {elapsed} ms");
    }
}

#[test]
fn a_joiner_gets_disabled_then_the_history_then_the_current_input_status() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let cid2 = sim.join_session(&sid);
    assert_eq!(
        sim.pull(&sid, &cid2),
        [
            DISABLED.to_string(),
            WELCOME_MESSAGE.to_string(),
            welcome("2026-11-21 00:00:00.000"),
            ALLOW_INPUT.to_string()
        ]
    );
}

#[test]
fn a_joiner_during_a_foreground_job_gets_allow_interrupt_last() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    sim.async_exec(&sid, "monitor");
    let cid2 = sim.join_session(&sid);
    assert_eq!(
        sim.pull(&sid, &cid2),
        [
            DISABLED.to_string(),
            WELCOME_MESSAGE.to_string(),
            welcome("2026-11-21 00:00:00.000"),
            r#"{"command":"monitor","jobId":1,"state":"SCHEDULED","type":"command"}"#.to_string(),
            ALLOW_INTERRUPT.to_string(),
        ]
    );
}

#[test]
fn the_history_keeps_the_last_items_without_input_statuses() {
    let mut sim = Sim::with_config(Config {
        limits: Limits {
            history: 3,
            ..Limits::default()
        },
        ..Config::default()
    });
    let (sid, _) = sim.init_session();
    sim.async_exec(&sid, "echo a");
    sim.async_exec(&sid, "echo b");
    let cid2 = sim.join_session(&sid);
    let b = echo_items(2, "b");
    assert_eq!(
        sim.pull(&sid, &cid2),
        [
            DISABLED.to_string(),
            b[0].clone(),
            b[2].clone(),
            b[3].clone(),
            ALLOW_INPUT.to_string()
        ]
    );
}

#[test]
fn every_consumer_gets_every_item_in_the_same_order() {
    let mut sim = Sim::new();
    let (sid, c1) = sim.init_session();
    let c2 = sim.join_session(&sid);
    sim.pull(&sid, &c1);
    sim.pull(&sid, &c2);
    for w in ["one", "two", "three"] {
        sim.async_exec(&sid, &format!("echo {w}"));
    }
    sim.exec_in(&sid, "version");
    let want: Vec<String> = [
        echo_items(1, "one"),
        echo_items(2, "two"),
        echo_items(3, "three"),
        vec![ALLOW_INTERRUPT.to_string(), ALLOW_INPUT.to_string()],
    ]
    .concat();
    assert_eq!(sim.pull(&sid, &c1), want);
    assert_eq!(sim.pull(&sid, &c2), want);
}

// ----- pull_results timing ------------------------------------------------------------

#[test]
fn pull_returns_empty_after_two_seconds() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.connect();
    sim.post(
        c,
        &format!(
            r#"{{"action":"pull_results","consumerId":"{cid}","requestId":"p","sessionId":"{sid}"}}"#
        ),
    );
    sim.advance_ms(1999);
    assert!(sim.responses(c).is_empty(), "not answered at 1999 ms");
    sim.advance_ms(1);
    assert_eq!(
        sim.responses(c)[0].text(),
        format!(
            r#"{{"body":{{"results":[]}},"consumerId":"{cid}","requestId":"p","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
}

#[test]
fn pull_timeout_is_configurable() {
    let mut sim = with_timing(Timing {
        pull_timeout_ms: 750,
        ..Timing::default()
    });
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.start_pull(&sid, &cid);
    sim.advance_ms(749);
    assert!(sim.responses(c).is_empty());
    sim.advance_ms(1);
    assert_eq!(sim.responses(c)[0].text(), pull_answer(&sid, &cid, &[]));
}

#[test]
fn pull_answers_100_ms_after_the_first_item() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.start_pull(&sid, &cid);
    sim.advance_ms(500);
    sim.exec_in(&sid, "version");
    sim.advance_ms(50);
    sim.exec_in(&sid, "version");
    sim.advance_ms(49);
    assert!(
        sim.responses(c).is_empty(),
        "the batch window is still open"
    );
    sim.advance_ms(1);
    assert_eq!(
        sim.responses(c)[0].text(),
        pull_answer(
            &sid,
            &cid,
            &[ALLOW_INTERRUPT, ALLOW_INPUT, ALLOW_INTERRUPT, ALLOW_INPUT]
        )
    );
}

#[test]
fn pull_with_items_already_queued_answers_after_the_batch_window() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    let c = sim.start_pull(&sid, &cid);
    sim.advance_ms(99);
    assert!(sim.responses(c).is_empty());
    sim.advance_ms(1);
    assert_eq!(result_items(sim.responses(c)[0].text()).len(), 3);
}

#[test]
fn pull_batch_window_is_configurable() {
    let mut sim = with_timing(Timing {
        pull_batch_ms: 250,
        ..Timing::default()
    });
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.start_pull(&sid, &cid);
    sim.advance_ms(300);
    sim.exec_in(&sid, "version");
    sim.advance_ms(249);
    assert!(sim.responses(c).is_empty());
    sim.advance_ms(1);
    assert_eq!(
        sim.responses(c)[0].text(),
        pull_answer(&sid, &cid, &[ALLOW_INTERRUPT, ALLOW_INPUT])
    );
}

#[test]
fn pull_with_twenty_or_more_items_answers_at_once_with_exactly_twenty() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let mut want = Vec::new();
    for (job, w) in (1..=5).zip(["a", "b", "c", "d", "e"]) {
        sim.async_exec(&sid, &format!("echo {w}"));
        want.extend(echo_items(job, w));
    }
    assert_eq!(want.len(), 25);
    let c = sim.start_pull(&sid, &cid);
    let r = sim.responses(c);
    assert_eq!(r.len(), 1, "answered without time passing");
    assert_eq!(result_items(r[0].text()), want[..20]);
    // The rest stays queued for the next pull.
    assert_eq!(sim.pull(&sid, &cid), want[20..]);
}

#[test]
fn a_parked_pull_answers_the_moment_the_twentieth_item_arrives() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.start_pull(&sid, &cid);
    sim.advance_ms(10);
    for w in ["a", "b", "c"] {
        sim.async_exec(&sid, &format!("echo {w}"));
    }
    assert!(sim.responses(c).is_empty(), "15 items: the window decides");
    sim.async_exec(&sid, "echo d");
    let r = sim.responses(c);
    assert_eq!(r.len(), 1, "20 items: answered at once");
    assert_eq!(result_items(r[0].text()).len(), 20);
}

#[test]
fn a_second_concurrent_pull_answers_empty_at_once_and_takes_nothing() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    let first = sim.connect();
    let c = sim.connect();
    sim.post(first, &pull_body(&sid, &cid));
    sim.post(
        c,
        &format!(
            r#"{{"action":"pull_results","consumerId":"{cid}","requestId":"2nd","sessionId":"{sid}"}}"#
        ),
    );
    assert_eq!(
        sim.responses(c)[0].text(),
        format!(
            r#"{{"body":{{"results":[]}},"consumerId":"{cid}","requestId":"2nd","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
    assert!(sim.responses(first).is_empty());
    sim.advance_ms(100);
    assert_eq!(
        result_items(sim.responses(first)[0].text()),
        [
            WELCOME_MESSAGE.to_string(),
            welcome("2026-11-21 00:00:00.000"),
            ALLOW_INPUT.to_string()
        ]
    );
}

#[test]
fn pulls_of_different_consumers_do_not_block_each_other() {
    let mut sim = Sim::new();
    let (sid, c1) = sim.init_session();
    let c2 = sim.join_session(&sid);
    let p1 = sim.start_pull(&sid, &c1);
    let p2 = sim.start_pull(&sid, &c2);
    sim.advance_ms(100);
    assert_eq!(result_items(sim.responses(p1)[0].text()).len(), 3);
    assert_eq!(result_items(sim.responses(p2)[0].text()).len(), 4);
}

// ----- consumer expiry ----------------------------------------------------------------

#[test]
fn a_consumer_expires_after_five_minutes_without_a_pull() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    // Used at once (`session` names it), so only the consumer can expire.
    assert_eq!(consumers(&mut sim, &sid), 1);
    sim.advance_ms(299_999);
    assert_eq!(consumers(&mut sim, &sid), 1);
    sim.advance_ms(1);
    assert_eq!(consumers(&mut sim, &sid), 0);
    assert_eq!(
        sim.api_text(&pull_body(&sid, &cid)),
        format!(r#"{{"message":"consumer not found: {cid}","state":"FAILED"}}"#)
    );
    // The session lives on; joining gives a fresh consumer with the next number.
    assert!(sim.join_session(&sid).ends_with("_2"));
}

#[test]
fn consumer_expiry_counts_from_the_end_of_the_last_pull() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    assert_eq!(consumers(&mut sim, &sid), 1); // used, so the session stays
    sim.advance_ms(200_000);
    sim.pull(&sid, &cid); // answered 100 ms later, at 200.1 s
    sim.advance_ms(299_999);
    assert_eq!(consumers(&mut sim, &sid), 1);
    sim.advance_ms(1);
    assert_eq!(consumers(&mut sim, &sid), 0);
}

#[test]
fn a_consumer_does_not_expire_while_a_pull_is_parked() {
    let mut sim = with_timing(Timing {
        consumer_timeout_ms: 1_000,
        pull_timeout_ms: 5_000,
        ..Timing::default()
    });
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.start_pull(&sid, &cid);
    sim.advance_ms(4_999);
    assert!(sim.responses(c).is_empty());
    sim.advance_ms(1);
    assert_eq!(sim.responses(c)[0].text(), pull_answer(&sid, &cid, &[]));
    sim.advance_ms(999);
    assert_eq!(consumers(&mut sim, &sid), 1);
    sim.advance_ms(1);
    assert_eq!(consumers(&mut sim, &sid), 0);
}

// ----- session expiry -----------------------------------------------------------------

#[test]
fn a_session_expires_after_the_configured_idle_time() {
    let mut sim = with_timing(Timing {
        session_timeout_ms: 1_000,
        ..Timing::default()
    });
    let (sid, _) = sim.init_session();
    sim.advance_ms(999);
    assert_eq!(sim.agent.session_count(), 1);
    sim.advance_ms(1);
    assert_eq!(sim.agent.session_count(), 0);
    assert_eq!(
        sim.api_text(&format!(
            r#"{{"action":"session_info","sessionId":"{sid}"}}"#
        )),
        format!(r#"{{"message":"session not found: {sid}","state":"FAILED"}}"#)
    );
}

#[test]
fn a_session_nobody_used_expires_after_a_minute() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    sim.advance_ms(59_999);
    assert_eq!(sim.agent.session_count(), 1);
    sim.advance_ms(1);
    assert_eq!(sim.agent.session_count(), 0, "never joined, pulled or used");
    assert_eq!(sim.agent.stats().sessions_expired, 1);
    assert_eq!(
        sim.api_text(&format!(
            r#"{{"action":"session_info","sessionId":"{sid}"}}"#
        )),
        format!(r#"{{"message":"session not found: {sid}","state":"FAILED"}}"#)
    );
}

#[test]
fn a_used_session_keeps_the_three_hour_expiry() {
    for first_use in ["pull_results", "join_session", "async_exec"] {
        let mut sim = Sim::new();
        let (sid, cid) = sim.init_session();
        sim.advance_ms(59_000);
        match first_use {
            "pull_results" => drop(sim.pull(&sid, &cid)), // answered at 59.1 s
            "join_session" => drop(sim.join_session(&sid)),
            _ => drop(sim.async_exec(&sid, "version")),
        }
        let used = sim.agent.stats().sessions_created;
        sim.advance_ms(60_000);
        assert_eq!(sim.agent.session_count(), 1, "used by {first_use}");
        sim.advance_ms(3 * 60 * 60 * 1000 - 60_000 - 101);
        assert_eq!(sim.agent.session_count(), 1, "{first_use}");
        sim.advance_ms(101);
        assert_eq!(sim.agent.session_count(), 0, "{first_use}");
        assert_eq!(used, 1);
    }
}

#[test]
fn the_unused_session_timeout_is_configurable_and_0_leaves_the_session_timeout() {
    let mut sim = with_timing(Timing {
        unused_session_timeout_ms: 5_000,
        ..Timing::default()
    });
    sim.init_session();
    sim.advance_ms(4_999);
    assert_eq!(sim.agent.session_count(), 1);
    sim.advance_ms(1);
    assert_eq!(sim.agent.session_count(), 0);

    let mut sim = with_timing(Timing {
        unused_session_timeout_ms: 0,
        session_timeout_ms: 600_000,
        ..Timing::default()
    });
    sim.init_session();
    sim.advance_ms(599_999);
    assert_eq!(sim.agent.session_count(), 1);
    sim.advance_ms(1);
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn any_request_naming_the_session_refreshes_it() {
    let mut sim = with_timing(Timing {
        session_timeout_ms: 1_000,
        ..Timing::default()
    });
    let (sid, cid) = sim.init_session();
    sim.advance_ms(600);
    sim.api(&format!(
        r#"{{"action":"session_info","sessionId":"{sid}"}}"#
    ));
    sim.advance_ms(999);
    assert_eq!(sim.agent.session_count(), 1, "refreshed by session_info");
    // A pull refreshes it when it is answered: 100 ms later here.
    sim.pull(&sid, &cid);
    sim.advance_ms(999);
    assert_eq!(sim.agent.session_count(), 1, "refreshed by pull_results");
    sim.advance_ms(1);
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn a_session_does_not_expire_while_a_foreground_job_runs() {
    let mut sim = with_timing(Timing {
        session_timeout_ms: 1_000,
        ..Timing::default()
    });
    let (sid, _) = sim.init_session();
    sim.async_exec(&sid, "monitor");
    sim.advance_ms(10_000);
    assert_eq!(sim.agent.session_count(), 1);
    let v = sim.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    assert_eq!(v["state"], "SUCCEEDED");
    sim.advance_ms(999);
    assert_eq!(sim.agent.session_count(), 1);
    sim.advance_ms(1);
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn a_session_does_not_expire_under_a_running_exec() {
    let mut sim = with_timing(Timing {
        session_timeout_ms: 1_000,
        ..Timing::default()
    });
    let (sid, _) = sim.init_session();
    let c = sim.connect();
    sim.post(
        c,
        &format!(
            r#"{{"action":"exec","command":"monitor","execTimeout":5000,"sessionId":"{sid}"}}"#
        ),
    );
    sim.advance_ms(4_999);
    assert_eq!(sim.agent.session_count(), 1);
    assert!(sim.responses(c).is_empty());
    sim.advance_ms(1);
    let v = sim.responses(c)[0].json();
    assert_eq!(v["state"], "INTERRUPTED");
    assert_eq!(v["sessionId"], sid.as_str());
    assert_eq!(v["body"]["timeExpired"], true);
}

#[test]
fn session_expiry_ends_background_host_jobs() {
    let mut sim = with_timing(Timing {
        session_timeout_ms: 1_000,
        ..Timing::default()
    });
    sim.register("gen");
    let (sid, _) = sim.init_session();
    sim.async_exec(&sid, "gen &");
    let job = sim.started_jobs()[0].0;
    sim.advance_ms(1_000);
    assert_eq!(sim.agent.session_count(), 0);
    assert_eq!(sim.take_effects(), [Effect::CancelJob(job)]);
    assert_eq!(sim.agent.job_count(), 0);
}

// ----- exec and sessions --------------------------------------------------------------

#[test]
fn exec_without_a_session_runs_in_a_one_time_session() {
    let mut sim = Sim::new();
    let v = sim.api(r#"{"action":"exec","command":"session"}"#);
    let sid = v["sessionId"].as_str().unwrap();
    assert_eq!(v["body"]["results"][0]["sessionId"], sid);
    assert_eq!(v["body"]["results"][0]["consumers"], 0);
    assert_eq!(sim.agent.session_count(), 0);
    // While its job runs, the one-time session exists; it goes with the answer.
    let c = sim.connect();
    sim.post(
        c,
        r#"{"action":"exec","command":"monitor","execTimeout":300,"sessionId":""}"#,
    );
    assert_eq!(sim.agent.session_count(), 1);
    sim.advance_ms(300);
    assert_eq!(sim.responses(c)[0].json()["state"], "INTERRUPTED");
    assert_eq!(sim.agent.session_count(), 0);
    assert_eq!(sim.agent.job_count(), 0);
}

#[test]
fn exec_answers_the_moment_its_host_job_ends() {
    let mut sim = Sim::new();
    sim.register("work");
    let c = sim.connect();
    sim.post(
        c,
        r#"{"action":"exec","command":"work 1 2","requestId":"w"}"#,
    );
    let started = sim.started_jobs();
    let (job, name, args) = &started[0];
    assert_eq!(
        (name.as_str(), args.as_slice()),
        ("work", &["1".to_string(), "2".to_string()][..])
    );
    sim.advance_ms(1234);
    sim.agent
        .job_output(
            *job,
            &serde_json::json!({"type":"work","z":1,"a":"x"}),
            sim.now,
        )
        .unwrap();
    sim.drain();
    assert!(sim.responses(c).is_empty());
    let before = sim.now;
    sim.agent.job_finished(*job, 0, None, sim.now);
    sim.drain();
    assert_eq!(sim.now, before);
    let r = sim.responses(c);
    let text = r[0].text();
    let sid = serde_json::from_str::<Value>(text).unwrap()["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let j = job.0;
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"work 1 2","jobId":{j},"jobStatus":"TERMINATED","results":[{{"a":"x","jobId":{j},"type":"work","z":1}},{{"jobId":{j},"statusCode":0,"type":"status"}}],"timeExpired":false}},"requestId":"w","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn exec_in_a_session_pushes_only_input_statuses_to_consumers() {
    let mut sim = Sim::new();
    sim.register("work");
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let v = sim.exec_in(&sid, "echo private");
    assert_eq!(v["body"]["results"][0]["message"], "private");
    let c = sim.connect();
    sim.post(
        c,
        &format!(r#"{{"action":"exec","command":"work","sessionId":"{sid}"}}"#),
    );
    let job = sim.started_jobs()[0].0;
    sim.agent
        .job_output(job, &serde_json::json!({"type":"secret"}), sim.now)
        .unwrap();
    sim.agent.job_finished(job, 0, None, sim.now);
    sim.drain();
    assert_eq!(
        sim.responses(c)[0].json()["body"]["results"][0]["type"],
        "secret"
    );
    assert_eq!(
        sim.pull(&sid, &cid),
        [ALLOW_INTERRUPT, ALLOW_INPUT, ALLOW_INTERRUPT, ALLOW_INPUT]
    );
}

#[test]
fn exec_timeout_of_a_host_job_cancels_it_and_keeps_its_results() {
    let mut sim = Sim::new();
    sim.register("work");
    let c = sim.connect();
    sim.post(
        c,
        r#"{"action":"exec","command":"work","execTimeout":"250"}"#,
    );
    let job = sim.started_jobs()[0].0;
    sim.agent
        .job_output(job, &serde_json::json!({"type":"partial","n":1}), sim.now)
        .unwrap();
    sim.advance_ms(250);
    assert!(sim.take_effects().contains(&Effect::CancelJob(job)));
    let text = sim.responses(c)[0].text().to_string();
    let sid = serde_json::from_str::<Value>(&text).unwrap()["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let j = job.0;
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"work","jobId":{j},"jobStatus":"TERMINATED","results":[{{"jobId":{j},"n":1,"type":"partial"}},{{"interrupted":true,"jobId":{j},"statusCode":0,"type":"status"}}],"timeExpired":true,"timeout":250}},"message":"The job is exceeded time limit, force interrupt","sessionId":"{sid}","state":"INTERRUPTED"}}"#
        )
    );
    assert_eq!(
        sim.agent
            .job_output(job, &serde_json::json!({"type":"late"}), sim.now),
        Err(tandem_core::JobError::Gone)
    );
    assert_eq!(sim.agent.session_count(), 0);
}

// ----- session_info and close_session -------------------------------------------------

#[test]
fn session_info_reports_epoch_ms_from_the_sim_clock_and_pid_as_a_number() {
    let mut sim = Sim::new();
    sim.advance_ms(5_000);
    let (sid, _) = sim.init_session();
    let created = sim.unix_ms();
    assert_eq!(created, START_UNIX_MS + 5_000);
    sim.advance_ms(2_500);
    let text = sim.api_text(&format!(
        r#"{{"action":"session_info","requestId":"i","sessionId":"{sid}"}}"#
    ));
    let last = START_UNIX_MS + 7_500;
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"createTime":{created},"lastAccessTime":{last},"pid":{PID}}},"requestId":"i","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
}

#[test]
fn close_session_ends_every_job_and_answers_a_parked_pull_early() {
    let mut sim = Sim::new();
    sim.register("gen");
    let (sid, cid) = sim.init_session();
    sim.async_exec(&sid, "gen &");
    sim.async_exec(&sid, "gen");
    let started = sim.started_jobs();
    let (bg, fg) = (started[0].0, started[1].0);
    sim.pull(&sid, &cid);
    let c = sim.start_pull(&sid, &cid);
    sim.advance_ms(700);
    let v = sim.api(&format!(
        r#"{{"action":"close_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(v, serde_json::json!({"state":"SUCCEEDED"}));
    let r = sim.responses(c);
    assert_eq!(r.len(), 1, "the parked pull is answered at once");
    assert_eq!(
        r[0].text(),
        pull_answer(
            &sid,
            &cid,
            &[
                &format!(
                    r#"{{"interrupted":true,"jobId":{},"statusCode":0,"type":"status"}}"#,
                    bg.0
                ),
                &format!(
                    r#"{{"interrupted":true,"jobId":{},"statusCode":0,"type":"status"}}"#,
                    fg.0
                ),
                ALLOW_INPUT,
            ]
        )
    );
    let effects = sim.take_effects();
    assert!(effects.contains(&Effect::CancelJob(bg)), "{effects:?}");
    assert!(effects.contains(&Effect::CancelJob(fg)), "{effects:?}");
    assert_eq!(effects.len(), 2);
    assert_eq!(sim.agent.job_count(), 0);
    assert_eq!(sim.agent.session_count(), 0);
    for job in [bg, fg] {
        assert_eq!(
            sim.agent
                .job_output(job, &serde_json::json!({"type":"x"}), sim.now),
            Err(tandem_core::JobError::Gone)
        );
    }
    assert_eq!(
        sim.api_text(&pull_body(&sid, &cid)),
        format!(r#"{{"message":"session not found: {sid}","state":"FAILED"}}"#)
    );
}

#[test]
fn close_session_answers_a_parked_exec_in_that_session() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let c = sim.connect();
    sim.post(
        c,
        &format!(r#"{{"action":"exec","command":"monitor","sessionId":"{sid}"}}"#),
    );
    sim.advance_ms(10);
    sim.api(&format!(
        r#"{{"action":"close_session","sessionId":"{sid}"}}"#
    ));
    let text = sim.responses(c)[0].text().to_string();
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"monitor","jobId":1,"jobStatus":"TERMINATED","results":[{{"interrupted":true,"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":false}},"sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
    assert_eq!(sim.agent.job_count(), 0);
}

#[test]
fn async_exec_stream_is_command_allow_interrupt_results_status_allow_input() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    sim.async_exec(&sid, "echo hi");
    assert_eq!(sim.pull(&sid, &cid), echo_items(1, "hi"));
}

#[test]
fn interrupt_job_of_a_host_job_cancels_it_and_streams_its_interrupted_status() {
    let mut sim = Sim::new();
    sim.register("gen");
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    sim.async_exec(&sid, "gen");
    let job = sim.started_jobs()[0].0;
    let v = sim.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        v,
        serde_json::json!({"body":{"jobId":job.0,"jobStatus":"TERMINATED"},"state":"SUCCEEDED"})
    );
    assert_eq!(sim.take_effects(), [Effect::CancelJob(job)]);
    let j = job.0;
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            format!(r#"{{"command":"gen","jobId":{j},"state":"SCHEDULED","type":"command"}}"#),
            ALLOW_INTERRUPT.to_string(),
            format!(r#"{{"interrupted":true,"jobId":{j},"statusCode":0,"type":"status"}}"#),
            ALLOW_INPUT.to_string(),
        ]
    );
    // A job_finished after the cancel changes nothing.
    sim.agent.job_finished(job, 0, None, sim.now);
    sim.drain();
    let c = sim.start_pull(&sid, &cid);
    sim.advance(Duration::from_millis(2000));
    assert_eq!(sim.responses(c)[0].text(), pull_answer(&sid, &cid, &[]));
}

#[test]
fn interrupt_job_stops_a_running_exec_which_answers_with_its_interrupted_status() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.connect();
    sim.post(
        c,
        &format!(r#"{{"action":"exec","command":"monitor","requestId":"e","sessionId":"{sid}"}}"#),
    );
    sim.advance_ms(40);
    let v = sim.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        v,
        serde_json::json!({"body":{"jobId":1,"jobStatus":"TERMINATED"},"state":"SUCCEEDED"})
    );
    assert_eq!(
        sim.responses(c)[0].text(),
        format!(
            r#"{{"body":{{"command":"monitor","jobId":1,"jobStatus":"TERMINATED","results":[{{"interrupted":true,"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":false}},"requestId":"e","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
    assert_eq!(sim.pull(&sid, &cid), [ALLOW_INTERRUPT, ALLOW_INPUT]);
}

#[test]
fn exec_of_a_background_line_waits_for_its_job_and_leaves_the_foreground_free() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let c = sim.connect();
    sim.post(
        c,
        &format!(
            r#"{{"action":"exec","command":"monitor &","execTimeout":400,"sessionId":"{sid}"}}"#
        ),
    );
    assert_eq!(sim.async_exec(&sid, "echo free")["state"], "SCHEDULED");
    sim.advance_ms(399);
    assert!(sim.responses(c).is_empty());
    sim.advance_ms(1);
    let v = sim.responses(c)[0].json();
    assert_eq!(v["state"], "INTERRUPTED");
    assert_eq!(v["body"]["timeout"], 400);
    // A background line that ends by itself is answered at once.
    let v = sim.exec_in(&sid, "echo done &");
    assert_eq!(v["state"], "SUCCEEDED");
    assert_eq!(v["body"]["results"][0]["message"], "done");
}

#[test]
fn a_pull_answered_by_close_session_echoes_its_request_id() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.connect();
    sim.post(
        c,
        &format!(
            r#"{{"action":"pull_results","consumerId":"{cid}","requestId":"long","sessionId":"{sid}"}}"#
        ),
    );
    sim.api(&format!(
        r#"{{"action":"close_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        sim.responses(c)[0].text(),
        format!(
            r#"{{"body":{{"results":[]}},"consumerId":"{cid}","requestId":"long","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
}

#[test]
fn welcome_time_is_local_time_while_session_times_stay_epoch() {
    let mut sim = Sim::new();
    sim.agent.set_wall_clock(START_UNIX_MS, 8 * 3600, sim.now);
    let (sid, cid) = sim.init_session();
    assert_eq!(sim.pull(&sid, &cid)[1], welcome("2026-11-21 08:00:00.000"));
    let v = sim.api(&format!(
        r#"{{"action":"session_info","sessionId":"{sid}"}}"#
    ));
    assert_eq!(v["body"]["createTime"], START_UNIX_MS);
    assert_eq!(v["body"]["lastAccessTime"], START_UNIX_MS + 100);
}

#[test]
fn async_exec_of_bad_arguments_is_scheduled_and_streams_the_minus_10_status() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let v = sim.async_exec(&sid, "version --all");
    assert_eq!(v["state"], "SCHEDULED");
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            r#"{"command":"version --all","jobId":1,"state":"SCHEDULED","type":"command"}"#,
            ALLOW_INTERRUPT,
            r#"{"jobId":1,"message":"usage: version","statusCode":-10,"type":"status"}"#,
            ALLOW_INPUT,
        ]
    );
}
