//! Conformance of tandem's extensions to the Arthas job model (spec §9.1–9.3 fixed):
//! bounded consumer queues with one counted `gap`, backpressure on host commands instead of
//! loss, background jobs that can be listed and killed, and interrupted statuses.

use serde_json::json;
use tandem_core::{Config, Effect, JobError, JobId, Limits};
use tandem_tests::Sim;
use tandem_tests::sim::result_items;

const ALLOW_INPUT: &str = r#"{"inputStatus":"ALLOW_INPUT","jobId":0,"type":"input_status"}"#;
const ALLOW_INTERRUPT: &str =
    r#"{"inputStatus":"ALLOW_INTERRUPT","jobId":0,"type":"input_status"}"#;

fn queue_of(n: usize) -> Sim {
    Sim::with_config(Config {
        limits: Limits {
            consumer_queue: n,
            ..Limits::default()
        },
        ..Config::default()
    })
}

fn gap(n: u64) -> String {
    format!(r#"{{"dropped":{n},"jobId":0,"type":"gap"}}"#)
}

fn command(job: u32, line: &str) -> String {
    format!(r#"{{"command":"{line}","jobId":{job},"state":"SCHEDULED","type":"command"}}"#)
}

fn status(job: u32) -> String {
    format!(r#"{{"jobId":{job},"statusCode":0,"type":"status"}}"#)
}

fn interrupted(job: u32) -> String {
    format!(r#"{{"interrupted":true,"jobId":{job},"statusCode":0,"type":"status"}}"#)
}

fn x(job: JobId, n: u32) -> String {
    format!(r#"{{"jobId":{},"n":{n},"type":"x"}}"#, job.0)
}

fn output(sim: &mut Sim, job: JobId, n: u32) -> Result<(), JobError> {
    let r = sim
        .agent
        .job_output(job, &json!({"type":"x","n":n}), sim.now);
    sim.drain();
    r
}

fn writable(sim: &mut Sim) -> Vec<JobId> {
    sim.take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::JobWritable(j) => Some(j),
            _ => None,
        })
        .collect()
}

// ----- bounded queues -----------------------------------------------------------------

#[test]
fn an_overflowing_queue_keeps_the_newest_and_one_gap_counts_the_dropped() {
    let mut sim = queue_of(4);
    let (sid, cid) = sim.init_session();
    // 3 welcome items + 5 of the echo job = 8 items for a queue of 4.
    sim.async_exec(&sid, "echo hi");
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            gap(4),
            ALLOW_INTERRUPT.to_string(),
            r#"{"jobId":1,"message":"hi","type":"message"}"#.to_string(),
            status(1),
            ALLOW_INPUT.to_string(),
        ]
    );
}

#[test]
fn further_drops_grow_the_same_gap() {
    let mut sim = queue_of(4);
    let (sid, cid) = sim.init_session();
    sim.async_exec(&sid, "echo a");
    sim.async_exec(&sid, "echo b");
    sim.async_exec(&sid, "echo c");
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            gap(14),
            ALLOW_INTERRUPT.to_string(),
            r#"{"jobId":3,"message":"c","type":"message"}"#.to_string(),
            status(3),
            ALLOW_INPUT.to_string(),
        ]
    );
}

#[test]
fn a_gap_after_a_pull_counts_only_the_new_drops() {
    let mut sim = queue_of(4);
    let (sid, cid) = sim.init_session();
    sim.async_exec(&sid, "echo a");
    assert_eq!(sim.pull(&sid, &cid)[0], gap(4));
    sim.exec_in(&sid, "version");
    sim.exec_in(&sid, "version");
    sim.exec_in(&sid, "version");
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            gap(2),
            ALLOW_INTERRUPT.to_string(),
            ALLOW_INPUT.to_string(),
            ALLOW_INTERRUPT.to_string(),
            ALLOW_INPUT.to_string(),
        ]
    );
    // No drops, no gap.
    sim.exec_in(&sid, "version");
    assert_eq!(sim.pull(&sid, &cid), [ALLOW_INTERRUPT, ALLOW_INPUT]);
}

#[test]
fn each_consumer_counts_its_own_drops() {
    let mut sim = queue_of(4);
    let (sid, c1) = sim.init_session();
    let c2 = sim.join_session(&sid); // DISABLED + 2 history + ALLOW_INPUT: exactly full
    sim.pull(&sid, &c1);
    sim.exec_in(&sid, "version");
    assert_eq!(sim.pull(&sid, &c1), [ALLOW_INTERRUPT, ALLOW_INPUT]);
    let items = sim.pull(&sid, &c2);
    assert_eq!(items.len(), 5);
    assert_eq!(items[0], gap(2));
    assert_eq!(items[3..], [ALLOW_INTERRUPT, ALLOW_INPUT]);
}

// ----- backpressure on host commands --------------------------------------------------

/// Offers items `from`, `from + 1`, ... until the job is told `Full`; returns how many were
/// taken. The exact threshold is the core's choice (it may keep room for the job's end);
/// what is pinned is that `Full` comes before anything is dropped.
fn fill(sim: &mut Sim, job: JobId, from: u32) -> u32 {
    let cap = sim.agent.config().limits.consumer_queue as u32;
    let mut n = from;
    loop {
        match output(sim, job, n) {
            Ok(()) => n += 1,
            Err(JobError::Full) => return n - from,
            Err(e) => panic!("{e}"),
        }
        assert!(n - from <= cap, "never told Full");
    }
}

fn xs(job: JobId, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| x(job, n)).collect()
}

#[test]
fn a_host_job_is_told_full_then_writable_after_a_pull_and_loses_nothing() {
    let mut sim = queue_of(6);
    sim.register("gen");
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    sim.async_exec(&sid, "gen");
    let job = sim.started_jobs()[0].0;
    // The command echo and ALLOW_INTERRUPT take 2 of the 6 places.
    let k = fill(&mut sim, job, 1);
    assert!((1..=4).contains(&k), "{k} items taken");
    assert_eq!(output(&mut sim, job, k + 1), Err(JobError::Full));
    assert_eq!(writable(&mut sim), []);
    let c = sim.start_pull(&sid, &cid);
    assert_eq!(writable(&mut sim), [], "nothing is taken before the answer");
    sim.advance_ms(100);
    let mut want = vec![command(job.0, "gen"), ALLOW_INTERRUPT.to_string()];
    want.extend(xs(job, 1..=k));
    assert_eq!(result_items(sim.responses(c)[0].text()), want);
    assert_eq!(writable(&mut sim), [job]);
    assert_eq!(output(&mut sim, job, k + 1), Ok(()));
    sim.agent.job_finished(job, 0, None, sim.now);
    sim.drain();
    assert_eq!(
        sim.pull(&sid, &cid),
        [x(job, k + 1), status(job.0), ALLOW_INPUT.to_string()]
    );
    assert_eq!(writable(&mut sim), [], "only blocked jobs are told");
}

#[test]
fn backpressure_waits_for_the_slowest_consumer() {
    let mut sim = queue_of(6);
    sim.register("gen");
    let (sid, c1) = sim.init_session();
    let c2 = sim.join_session(&sid);
    sim.pull(&sid, &c1);
    sim.pull(&sid, &c2);
    sim.async_exec(&sid, "gen");
    let job = sim.started_jobs()[0].0;
    let k = fill(&mut sim, job, 1);
    assert!(k >= 1);
    let mut want = vec![command(job.0, "gen"), ALLOW_INTERRUPT.to_string()];
    want.extend(xs(job, 1..=k));
    assert_eq!(sim.pull(&sid, &c1), want);
    assert_eq!(writable(&mut sim), [], "the second consumer is still full");
    assert_eq!(output(&mut sim, job, k + 1), Err(JobError::Full));
    assert_eq!(sim.pull(&sid, &c2), want);
    assert_eq!(writable(&mut sim), [job]);
    assert_eq!(output(&mut sim, job, k + 1), Ok(()));
    assert_eq!(sim.pull(&sid, &c1), [x(job, k + 1)]);
    assert_eq!(sim.pull(&sid, &c2), [x(job, k + 1)]);
}

#[test]
fn an_expired_full_consumer_releases_a_blocked_host_job() {
    let mut sim = queue_of(6);
    sim.register("gen");
    let (sid, c1) = sim.init_session();
    sim.pull(&sid, &c1);
    sim.async_exec(&sid, "gen");
    let job = sim.started_jobs()[0].0;
    let k = fill(&mut sim, job, 1);
    assert_eq!(output(&mut sim, job, k + 1), Err(JobError::Full));
    sim.advance_ms(299_999);
    assert_eq!(writable(&mut sim), []);
    sim.advance_ms(1);
    assert_eq!(writable(&mut sim), [job]);
    assert_eq!(output(&mut sim, job, k + 1), Ok(()));
}

#[test]
fn items_accepted_from_a_host_job_are_never_dropped() {
    let mut sim = queue_of(4);
    sim.register("gen");
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    sim.async_exec(&sid, "gen");
    let job = sim.started_jobs()[0].0;
    sim.pull(&sid, &cid);
    let k = fill(&mut sim, job, 1);
    assert!(k >= 1);
    sim.agent.job_finished(job, 0, None, sim.now);
    sim.drain();
    let mut got = sim.pull(&sid, &cid);
    got.extend(sim.pull(&sid, &cid));
    let mut want = xs(job, 1..=k);
    want.extend([status(job.0), ALLOW_INPUT.to_string()]);
    assert_eq!(got, want);
}

#[test]
fn host_items_get_their_job_id_and_sorted_keys_and_lose_nulls() {
    let mut sim = Sim::new();
    sim.register("gen");
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    sim.async_exec(&sid, "gen");
    let job = sim.started_jobs()[0].0;
    let item =
        json!({"type":"row","zeta":[1,{"b":2,"a":null}],"alpha":"é\n","jobId":999,"none":null});
    sim.agent.job_output(job, &item, sim.now).unwrap();
    for bad in [
        json!([1]),
        json!("x"),
        json!({"no":"type"}),
        json!({"type":5}),
    ] {
        assert_eq!(
            sim.agent.job_output(job, &bad, sim.now),
            Err(JobError::Invalid),
            "{bad}"
        );
    }
    sim.agent.job_finished(job, 1, Some("it broke"), sim.now);
    sim.drain();
    let j = job.0;
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            command(j, "gen"),
            ALLOW_INTERRUPT.to_string(),
            format!(
                "{{\"alpha\":\"é\\n\",\"jobId\":{j},\"type\":\"row\",\"zeta\":[1,{{\"a\":null,\"b\":2}}]}}"
            ),
            format!(r#"{{"jobId":{j},"message":"it broke","statusCode":1,"type":"status"}}"#),
            ALLOW_INPUT.to_string(),
        ]
    );
    assert_eq!(
        sim.agent.job_output(job, &json!({"type":"late"}), sim.now),
        Err(JobError::Gone)
    );
    assert_eq!(
        sim.agent
            .job_output(JobId(4242), &json!({"type":"x"}), sim.now),
        Err(JobError::Gone)
    );
}

// ----- background jobs ----------------------------------------------------------------

#[test]
fn a_trailing_ampersand_runs_a_job_in_the_background() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let v = sim.async_exec(&sid, "monitor &");
    assert_eq!(
        v,
        json!({"body":{"command":"monitor &","jobId":1,"jobStatus":"READY"},"sessionId":sid,"state":"SCHEDULED"})
    );
    // The foreground slot is free again at once.
    let v = sim.async_exec(&sid, "monitor");
    assert_eq!(v["state"], "SCHEDULED");
    assert_eq!(sim.agent.job_count(), 2);
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            command(1, "monitor &"),
            ALLOW_INTERRUPT.to_string(),
            ALLOW_INPUT.to_string(),
            command(2, "monitor"),
            ALLOW_INTERRUPT.to_string(),
        ]
    );
}

#[test]
fn an_ampersand_that_is_quoted_or_part_of_a_word_is_not_background() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    for (line, message) in [("echo '&'", "&"), ("echo a&", "a&"), ("echo & b", "& b")] {
        let v = sim.exec_in(&sid, line);
        assert_eq!(v["body"]["results"][0]["message"], message, "{line}");
    }
    sim.register("gen");
    sim.async_exec(&sid, r#"gen "&""#);
    let started = sim.started_jobs();
    assert_eq!(started[0].2, ["&"]);
    let v = sim.async_exec(&sid, "version");
    assert_eq!(
        v["message"], "Another job is running.",
        "gen runs in the foreground"
    );
}

#[test]
fn jobs_lists_the_background_jobs_of_the_session() {
    let mut sim = Sim::new();
    sim.register("gen");
    let (sid, _) = sim.init_session();
    let (other, _) = sim.init_session();
    sim.async_exec(&sid, "monitor &");
    sim.async_exec(&sid, "gen -x &");
    sim.async_exec(&other, "monitor &");
    let v = sim.exec_in(&sid, "jobs");
    let j = v["body"]["jobId"].as_u64().unwrap();
    let text = serde_json::to_string(&v["body"]["results"]).unwrap();
    assert_eq!(
        text,
        format!(
            r#"[{{"jobId":{j},"jobs":[{{"background":true,"command":"monitor &","foreground":false,"id":1,"status":"RUNNING"}},{{"background":true,"command":"gen -x &","foreground":false,"id":2,"status":"RUNNING"}}],"type":"jobs"}},{{"jobId":{j},"statusCode":0,"type":"status"}}]"#
        )
    );
    let v = sim.exec_in(&other, "jobs");
    assert_eq!(v["body"]["results"][0]["jobs"].as_array().unwrap().len(), 1);
}

#[test]
fn kill_stops_a_background_job_with_an_interrupted_status() {
    let mut sim = Sim::new();
    sim.register("gen");
    let (sid, cid) = sim.init_session();
    sim.async_exec(&sid, "monitor &");
    sim.async_exec(&sid, "gen &");
    let gen_job = sim.started_jobs()[0].0;
    sim.pull(&sid, &cid);
    let v = sim.exec_in(&sid, "kill 1");
    let text = serde_json::to_string(&v["body"]["results"]).unwrap();
    assert_eq!(
        text,
        r#"[{"jobId":3,"killed":1,"type":"kill"},{"jobId":3,"statusCode":0,"type":"status"}]"#
    );
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            ALLOW_INTERRUPT.to_string(),
            interrupted(1),
            ALLOW_INPUT.to_string()
        ]
    );
    // A host job is cancelled through its effect.
    let v = sim.exec_in(&sid, &format!("kill {}", gen_job.0));
    assert_eq!(v["body"]["results"][0]["killed"], gen_job.0);
    assert_eq!(sim.take_effects(), [Effect::CancelJob(gen_job)]);
    assert_eq!(sim.agent.job_count(), 0);
    let v = sim.exec_in(&sid, "jobs");
    assert_eq!(v["body"]["results"][0]["jobs"], json!([]));
}

#[test]
fn kill_of_a_job_that_is_not_in_this_session_fails_with_status_1() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let (other, _) = sim.init_session();
    sim.async_exec(&other, "monitor &");
    for target in ["1", "99"] {
        let v = sim.exec_in(&sid, &format!("kill {target}"));
        let j = v["body"]["jobId"].as_u64().unwrap();
        assert_eq!(
            serde_json::to_string(&v["body"]["results"]).unwrap(),
            format!(
                r#"[{{"jobId":{j},"message":"kill: no such job: {target}","statusCode":1,"type":"status"}}]"#
            )
        );
    }
    assert_eq!(
        sim.agent.job_count(),
        1,
        "the other session's job still runs"
    );
}

#[test]
fn close_session_ends_background_jobs_too() {
    let mut sim = Sim::new();
    sim.register("gen");
    let (sid, _) = sim.init_session();
    sim.async_exec(&sid, "monitor &");
    sim.async_exec(&sid, "gen &");
    let gen_job = sim.started_jobs()[0].0;
    assert_eq!(sim.agent.job_count(), 2);
    sim.api(&format!(
        r#"{{"action":"close_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(sim.agent.job_count(), 0);
    assert_eq!(sim.take_effects(), [Effect::CancelJob(gen_job)]);
    // A monitor that was running in the background receives nothing any more.
    sim.agent
        .log_record(tandem_core::Level::Err, "after close", sim.now);
    sim.drain();
    assert_eq!(sim.agent.job_count(), 0);
}

#[test]
fn background_host_job_output_reaches_the_stream() {
    let mut sim = Sim::new();
    sim.register("gen");
    let (sid, cid) = sim.init_session();
    sim.async_exec(&sid, "gen &");
    let job = sim.started_jobs()[0].0;
    sim.pull(&sid, &cid);
    output(&mut sim, job, 7).unwrap();
    sim.agent.job_finished(job, 0, None, sim.now);
    sim.drain();
    // A background job's end does not touch the input status.
    assert_eq!(sim.pull(&sid, &cid), [x(job, 7), status(job.0)]);
}

#[test]
fn interrupt_job_reports_the_foreground_job_not_a_background_one() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.async_exec(&sid, "monitor &");
    sim.async_exec(&sid, "monitor");
    sim.pull(&sid, &cid);
    let v = sim.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    assert_eq!(v["body"]["jobId"], 2);
    assert_eq!(
        sim.pull(&sid, &cid),
        [interrupted(2), ALLOW_INPUT.to_string()]
    );
    assert_eq!(sim.agent.job_count(), 1);
}
