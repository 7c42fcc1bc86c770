//! The seed's flow on the in-memory driver: init, join, pull, async_exec, interrupt, close.

use std::time::Duration;

use serde_json::{Value, json};
use tandem_tests::Sim;

fn results(v: &Value) -> Vec<Value> {
    v["body"]["results"].as_array().cloned().unwrap_or_default()
}

#[test]
fn seed_flow_end_to_end_in_memory() {
    let mut sim = Sim::new();
    let init = sim.api(r#"{"action":"init_session"}"#);
    assert_eq!(init["state"], "SUCCEEDED");
    let sid = init["sessionId"].as_str().unwrap().to_string();
    let cid1 = init["consumerId"].as_str().unwrap().to_string();
    assert!(cid1.ends_with("_1"));

    let join = sim.api(&format!(
        r#"{{"action":"join_session","sessionId":"{sid}"}}"#
    ));
    let cid2 = join["consumerId"].as_str().unwrap().to_string();
    assert!(cid2.ends_with("_2"));

    // The joiner gets DISABLED, the history, then the current input status.
    let c = sim.connect();
    sim.post(
        c,
        &format!(r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid2}"}}"#),
    );
    assert!(sim.responses(c).is_empty(), "the batch waits ~100 ms");
    sim.advance(Duration::from_millis(100));
    let r = sim.responses(c).remove(0).json();
    let items = results(&r);
    let types: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["input_status", "message", "welcome", "input_status"]
    );
    assert_eq!(items[0]["inputStatus"], "DISABLED");
    assert_eq!(items[1]["message"], "Welcome to tandem!");
    assert_eq!(items[2]["pid"], "4242");
    assert_eq!(items[3]["inputStatus"], "ALLOW_INPUT");

    // async_exec a streaming command, then interrupt it.
    let r = sim.api(&format!(
        r#"{{"action":"async_exec","command":"monitor -l INFO","sessionId":"{sid}"}}"#
    ));
    assert_eq!(r["state"], "SCHEDULED");
    assert_eq!(r["body"]["jobStatus"], "READY");
    let job = r["body"]["jobId"].as_u64().unwrap();
    sim.agent
        .log_record(tandem_core::Level::Info, "test: hello", sim.now);
    sim.drain();
    let r = sim.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        r,
        json!({"body":{"jobId":job,"jobStatus":"TERMINATED"},"state":"SUCCEEDED"})
    );

    sim.post(
        c,
        &format!(r#"{{"action":"pull_results","sessionId":"{sid}","consumerId":"{cid2}"}}"#),
    );
    sim.advance(Duration::from_millis(100));
    let items = results(&sim.responses(c).remove(0).json());
    // Recent records are replayed first (the agent's own start-up lines among them), then
    // the live one.
    let types: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    let n = types.len();
    assert_eq!(types[..2], ["command", "input_status"], "{items:?}");
    assert!(types[2..n - 2].iter().all(|t| *t == "log"), "{items:?}");
    assert!(
        items[n - 3]["log"]
            .as_str()
            .unwrap()
            .ends_with("[INFO] test: hello")
    );
    assert_eq!(types[n - 2..], ["status", "input_status"]);
    assert_eq!(
        items[n - 2],
        json!({"interrupted":true,"jobId":job,"statusCode":0,"type":"status"})
    );

    let r = sim.api_text(&format!(
        r#"{{"action":"close_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(r, r#"{"state":"SUCCEEDED"}"#);
    let r = sim.api_text(&format!(
        r#"{{"action":"close_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        r,
        format!(r#"{{"message":"session not found: {sid}","state":"FAILED"}}"#)
    );
}

#[test]
fn exec_version_answers_at_once() {
    let mut sim = Sim::new();
    let r = sim.api_text(r#"{"action":"exec","command":"version","requestId":"r1"}"#);
    let v: Value = serde_json::from_str(&r).unwrap();
    let sid = v["sessionId"].as_str().unwrap();
    let want = format!(
        r#"{{"body":{{"command":"version","jobId":1,"jobStatus":"TERMINATED","results":[{{"jobId":1,"type":"version","version":"{}"}},{{"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":false}},"requestId":"r1","sessionId":"{sid}","state":"SUCCEEDED"}}"#,
        tandem_core::VERSION
    );
    assert_eq!(r, want);
    assert_eq!(sim.agent.session_count(), 0, "the one-time session is gone");
}
