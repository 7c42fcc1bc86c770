//! Conformance of the `/api` envelopes and the error catalogue (spec §2–4, §4.10, §6.1):
//! every answer compared byte for byte, with the random ids read back from the response.

use std::time::Duration;

use serde_json::Value;
use tandem_core::{Config, Timing};
use tandem_tests::Sim;
use tandem_tests::sim::result_items;

fn sid_of(text: &str) -> String {
    let v: Value = serde_json::from_str(text).expect("JSON body");
    v["sessionId"].as_str().expect("sessionId").to_string()
}

fn failed(message: &str) -> String {
    format!(r#"{{"message":{},"state":"FAILED"}}"#, Value::from(message))
}

fn failed_rid(message: &str, rid: &str) -> String {
    format!(
        r#"{{"message":{},"requestId":"{rid}","state":"FAILED"}}"#,
        Value::from(message)
    )
}

// ----- envelopes ----------------------------------------------------------------------

#[test]
fn init_session_envelope_is_compact_sorted_and_echoes_request_id() {
    let mut sim = Sim::new();
    let text = sim.api_text(r#"{"requestId":"r1","action":"init_session"}"#);
    let v: Value = serde_json::from_str(&text).unwrap();
    let (sid, cid) = (
        v["sessionId"].as_str().unwrap(),
        v["consumerId"].as_str().unwrap(),
    );
    assert_eq!(
        text,
        format!(
            r#"{{"consumerId":"{cid}","requestId":"r1","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
}

#[test]
fn absent_request_id_is_omitted_not_null() {
    let mut sim = Sim::new();
    let text = sim.api_text(r#"{"action":"init_session"}"#);
    let v: Value = serde_json::from_str(&text).unwrap();
    let (sid, cid) = (
        v["sessionId"].as_str().unwrap(),
        v["consumerId"].as_str().unwrap(),
    );
    assert_eq!(
        text,
        format!(r#"{{"consumerId":"{cid}","sessionId":"{sid}","state":"SUCCEEDED"}}"#)
    );
}

#[test]
fn request_id_sent_as_a_number_is_echoed_as_its_string_form() {
    let mut sim = Sim::new();
    for (sent, echoed) in [("42", "42"), ("-7", "-7"), ("0", "0")] {
        let text = sim.api_text(&format!(r#"{{"action":"nope","requestId":{sent}}}"#));
        assert_eq!(text, failed_rid("unknown action: nope", echoed), "{sent}");
    }
}

#[test]
fn request_id_with_escapes_is_echoed_as_the_same_string() {
    let mut sim = Sim::new();
    let text = sim.api_text(r#"{"action":"nope","requestId":"a\"b\\c\u00e9"}"#);
    assert_eq!(
        text,
        "{\"message\":\"unknown action: nope\",\"requestId\":\"a\\\"b\\\\c\u{e9}\",\"state\":\"FAILED\"}"
    );
}

#[test]
fn the_web_consoles_blank_fields_mean_absent_but_a_blank_request_id_is_echoed() {
    let mut sim = Sim::new();
    // The bundled web console sends every field, "" when not applicable.
    let text = sim.api_text(
        r#"{"action":"exec","command":"echo x","consumerId":"","requestId":"","sessionId":"","execTimeout":""}"#,
    );
    let sid = sid_of(&text);
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"echo x","jobId":1,"jobStatus":"TERMINATED","results":[{{"jobId":1,"message":"x","type":"message"}},{{"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":false}},"requestId":"","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
    assert_eq!(sim.agent.session_count(), 0);
    // A blank sessionId on exec is a one-time session too, whitespace included.
    let v = sim.api(r#"{"action":"exec","command":"version","sessionId":"  "}"#);
    assert_eq!(v["state"], "SUCCEEDED");
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn the_mcp_clients_string_timeout_health_check_succeeds() {
    let mut sim = Sim::new();
    let text = sim.api_text(
        r#"{"action":"exec","command":"version","requestId":"health_check","execTimeout":"5000"}"#,
    );
    let sid = sid_of(&text);
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"version","jobId":1,"jobStatus":"TERMINATED","results":[{{"jobId":1,"type":"version","version":"{}"}},{{"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":false}},"requestId":"health_check","sessionId":"{sid}","state":"SUCCEEDED"}}"#,
            tandem_core::VERSION
        )
    );
}

#[test]
fn strings_are_escaped_exactly_as_a_compact_json_writer_does() {
    let mut sim = Sim::new();
    let mut rid: String = (0u8..0x20).map(char::from).collect();
    rid.push_str("\"\\/\u{7f}é\u{2028}😀");
    let sent = Value::from(rid.as_str()).to_string();
    let text = sim.api_text(&format!(r#"{{"action":"nope","requestId":{sent}}}"#));
    assert_eq!(
        text,
        format!(r#"{{"message":"unknown action: nope","requestId":{sent},"state":"FAILED"}}"#)
    );
}

#[test]
fn action_is_case_insensitive_and_trimmed() {
    let mut sim = Sim::new();
    for action in ["exec", " Exec ", "EXEC", "\teXeC\n"] {
        let body = format!(
            r#"{{"action":{},"command":"echo hi"}}"#,
            Value::from(action)
        );
        let text = sim.api_text(&body);
        let sid = sid_of(&text);
        let v: Value = serde_json::from_str(&text).unwrap();
        let job = v["body"]["jobId"].as_u64().unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"body":{{"command":"echo hi","jobId":{job},"jobStatus":"TERMINATED","results":[{{"jobId":{job},"message":"hi","type":"message"}},{{"jobId":{job},"statusCode":0,"type":"status"}}],"timeExpired":false}},"sessionId":"{sid}","state":"SUCCEEDED"}}"#
            ),
            "{action:?}"
        );
    }
    for action in ["init_session", " INIT_SESSION", "Init_Session "] {
        let v = sim.api(&format!(r#"{{"action":{}}}"#, Value::from(action)));
        assert_eq!(v["state"], "SUCCEEDED", "{action:?}");
    }
}

#[test]
fn exec_timeout_accepts_a_number_or_a_numeric_string() {
    for timeout in ["500", r#""500""#, r#"" 500 ""#] {
        let mut sim = Sim::new();
        let c = sim.connect();
        sim.post(
            c,
            &format!(r#"{{"action":"exec","command":"monitor","execTimeout":{timeout}}}"#),
        );
        sim.advance_ms(499);
        assert!(sim.responses(c).is_empty(), "{timeout}: answered early");
        sim.advance_ms(1);
        let r = sim.responses(c);
        assert_eq!(r.len(), 1, "{timeout}: not answered at the timeout");
        let text = r[0].text();
        let sid = sid_of(text);
        assert_eq!(
            text,
            format!(
                r#"{{"body":{{"command":"monitor","jobId":1,"jobStatus":"TERMINATED","results":[{{"interrupted":true,"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":true,"timeout":500}},"message":"The job is exceeded time limit, force interrupt","sessionId":"{sid}","state":"INTERRUPTED"}}"#
            ),
            "{timeout}"
        );
    }
}

#[test]
fn exec_timeout_absent_zero_or_negative_means_30_seconds() {
    for timeout in [
        "",
        r#","execTimeout":0"#,
        r#","execTimeout":-5"#,
        r#","execTimeout":"0""#,
        r#","execTimeout":null"#,
    ] {
        let mut sim = Sim::new();
        let c = sim.connect();
        sim.post(
            c,
            &format!(r#"{{"action":"exec","command":"monitor"{timeout}}}"#),
        );
        sim.advance_ms(29_999);
        assert!(sim.responses(c).is_empty(), "{timeout}: answered early");
        sim.advance_ms(1);
        let v = sim.responses(c).remove(0).json();
        assert_eq!(v["state"], "INTERRUPTED", "{timeout}");
        assert_eq!(v["body"]["timeout"], 30_000, "{timeout}");
        assert_eq!(v["body"]["timeExpired"], true, "{timeout}");
    }
}

#[test]
fn async_exec_ignores_exec_timeout() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let v = sim.api(&format!(
        r#"{{"action":"async_exec","command":"monitor","execTimeout":10,"sessionId":"{sid}"}}"#
    ));
    assert_eq!(v["state"], "SCHEDULED");
    sim.advance_ms(60_000);
    assert_eq!(sim.agent.job_count(), 1, "still running after a minute");
}

#[test]
fn configured_exec_timeout_is_the_default() {
    let mut sim = Sim::with_config(Config {
        timing: Timing {
            exec_timeout_ms: 700,
            ..Timing::default()
        },
        ..Config::default()
    });
    let c = sim.connect();
    sim.post(c, r#"{"action":"exec","command":"monitor"}"#);
    sim.advance_ms(699);
    assert!(sim.responses(c).is_empty());
    sim.advance_ms(1);
    let v = sim.responses(c).remove(0).json();
    assert_eq!(v["state"], "INTERRUPTED");
    assert_eq!(v["body"]["timeout"], 700);
}

#[test]
fn unknown_request_fields_are_ignored() {
    let mut sim = Sim::new();
    let v = sim.api(r#"{"action":"init_session","userId":"u1","foo":{"bar":[1,2]},"x":null}"#);
    assert_eq!(v["state"], "SUCCEEDED");
}

#[test]
fn init_session_ignores_a_session_id_and_always_creates_one() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let v = sim.api(&format!(
        r#"{{"action":"init_session","sessionId":"{sid}"}}"#
    ));
    assert_eq!(v["state"], "SUCCEEDED");
    assert_ne!(v["sessionId"], sid.as_str());
    assert!(v["consumerId"].as_str().unwrap().ends_with("_1"));
    assert_eq!(sim.agent.session_count(), 2);
}

// ----- identifiers --------------------------------------------------------------------

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn session_id_is_a_version_4_uuid_with_dashes() {
    let mut sim = Sim::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let (sid, _) = sim.init_session();
        assert_eq!(sid.len(), 36, "{sid}");
        let parts: Vec<&str> = sid.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{sid}"
        );
        assert!(parts.iter().all(|p| is_lower_hex(p)), "{sid}");
        assert_eq!(&sid[14..15], "4", "version nibble: {sid}");
        assert!(
            matches!(&sid[19..20], "8" | "9" | "a" | "b"),
            "variant: {sid}"
        );
        assert!(seen.insert(sid));
    }
}

#[test]
fn consumer_id_is_32_hex_underscore_and_a_per_session_counter_from_1() {
    let mut sim = Sim::new();
    let (sid, c1) = sim.init_session();
    let c2 = sim.join_session(&sid);
    let c3 = sim.join_session(&sid);
    let (_, other) = sim.init_session();
    for (cid, n) in [(&c1, "1"), (&c2, "2"), (&c3, "3"), (&other, "1")] {
        let (hex, counter) = cid.split_once('_').expect("an underscore");
        assert_eq!(hex.len(), 32, "{cid}");
        assert!(is_lower_hex(hex), "{cid}");
        assert_eq!(counter, n, "{cid}");
    }
    let hexes: std::collections::HashSet<&str> = [&c1, &c2, &c3, &other]
        .iter()
        .map(|c| c.split_once('_').unwrap().0)
        .collect();
    assert_eq!(hexes.len(), 4, "random parts differ");
}

// ----- the error catalogue (spec §4.10) -----------------------------------------------

#[test]
fn non_post_methods_are_refused_with_http_200_and_no_request_id() {
    let mut sim = Sim::new();
    for method in ["GET", "OPTIONS", "PUT", "DELETE"] {
        let c = sim.connect();
        let body = r#"{"action":"init_session","requestId":"r1"}"#;
        sim.send(
            c,
            format!(
                "{method} /api HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = sim.responses(c);
        assert_eq!(r.len(), 1, "{method}");
        let want_body =
            format!(r#"{{"message":"Unsupported http method: {method}","state":"REFUSED"}}"#);
        assert_eq!(
            String::from_utf8(r[0].raw.clone()).unwrap(),
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{want_body}",
                want_body.len()
            ),
            "{method}"
        );
    }
    assert_eq!(sim.agent.session_count(), 0, "nothing was dispatched");
}

#[test]
fn empty_or_blank_body_fails_as_empty() {
    let mut sim = Sim::new();
    for body in ["", " ", "\r\n\t "] {
        assert_eq!(
            sim.api_text(body),
            failed("Process request error: parse request failed: request body is empty"),
            "{body:?}"
        );
    }
}

#[test]
fn bad_json_fails_with_the_parse_prefix_and_no_request_id() {
    let mut sim = Sim::new();
    for body in [
        "{",
        "not json",
        r#"{"action":"init_session","requestId":"r1""#,
        r#"{"action":"exec","command":"version","execTimeout":"soon"}"#,
        r#"{"action":"exec","command":"version","execTimeout":true}"#,
        "null",
        "42",
        r#""init_session""#,
    ] {
        let text = sim.api_text(body);
        let v: Value = serde_json::from_str(&text).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(
            obj.keys().collect::<Vec<_>>(),
            ["message", "state"],
            "{body}: {text}"
        );
        assert_eq!(v["state"], "FAILED", "{body}");
        let message = v["message"].as_str().unwrap();
        let detail = message
            .strip_prefix("Process request error: parse request failed: ")
            .unwrap_or_else(|| panic!("{body}: {message}"));
        assert!(!detail.is_empty(), "{body}: the parser says why");
    }
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn json_array_body_is_a_parse_failure_not_a_positional_request() {
    let mut sim = Sim::new();
    for body in [
        r#"["init_session"]"#,
        r#"["exec","r1",null,null,"version"]"#,
        "[]",
    ] {
        let text = sim.api_text(body);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["state"], "FAILED", "{body}: {text}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("Process request error: parse request failed: "),
            "{body}: {text}"
        );
    }
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn missing_or_blank_action_is_required() {
    let mut sim = Sim::new();
    for action in [
        "",
        r#","action":"""#,
        r#","action":"   ""#,
        r#","action":null"#,
    ] {
        let text = sim.api_text(&format!(r#"{{"requestId":"r9"{action}}}"#));
        assert_eq!(text, failed_rid("'action' is required", "r9"), "{action}");
    }
    assert_eq!(sim.api_text("{}"), failed("'action' is required"));
}

#[test]
fn unknown_action_is_failed_and_echoed_as_sent_untrimmed() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.api_text(r#"{"action":"launch"}"#),
        failed("unknown action: launch")
    );
    assert_eq!(
        sim.api_text(r#"{"action":" Launch ","requestId":"r"}"#),
        failed_rid("unknown action:  Launch ", "r")
    );
    assert_eq!(
        sim.api_text(r#"{"action":"pull-results"}"#),
        failed("unknown action: pull-results")
    );
}

#[test]
fn session_id_is_required_by_every_action_but_init_and_exec() {
    let mut sim = Sim::new();
    for action in [
        "async_exec",
        "pull_results",
        "interrupt_job",
        "join_session",
        "close_session",
        "session_info",
    ] {
        for sid in [
            "",
            r#","sessionId":"""#,
            r#","sessionId":"  ""#,
            r#","sessionId":null"#,
        ] {
            let text = sim.api_text(&format!(
                r#"{{"action":"{action}","command":"version","consumerId":"x_1","requestId":"q"{sid}}}"#
            ));
            assert_eq!(
                text,
                failed_rid("'sessionId' is required", "q"),
                "{action} {sid}"
            );
        }
    }
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn unknown_session_is_not_found_for_every_action_including_exec() {
    let mut sim = Sim::new();
    let gone = "0f1e2d3c-4b5a-4968-8776-655443322110";
    for action in [
        "exec",
        "async_exec",
        "pull_results",
        "interrupt_job",
        "join_session",
        "close_session",
        "session_info",
    ] {
        for sid in [gone, "nope", " 0f1e2d3c-4b5a-4968-8776-65544332211 "] {
            let text = sim.api_text(&format!(
                r#"{{"action":"{action}","command":"version","consumerId":"x_1","sessionId":"{sid}"}}"#
            ));
            assert_eq!(
                text,
                failed(&format!("session not found: {sid}")),
                "{action}"
            );
        }
    }
    assert_eq!(sim.agent.session_count(), 0);
    assert_eq!(sim.agent.job_count(), 0);
}

#[test]
fn pull_results_requires_a_consumer_id() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    for cid in ["", r#","consumerId":"""#, r#","consumerId":" ""#] {
        let text = sim.api_text(&format!(
            r#"{{"action":"pull_results","requestId":"p","sessionId":"{sid}"{cid}}}"#
        ));
        assert_eq!(text, failed_rid("'consumerId' is required", "p"), "{cid}");
    }
}

#[test]
fn pull_results_with_an_unknown_consumer_is_not_found() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    let (_, other_sessions_cid) = sim.init_session();
    for bad in [
        "0123456789abcdef0123456789abcdef_1".to_string(),
        other_sessions_cid,
        format!("{cid} "),
        cid.replace("_1", "_2"),
    ] {
        let text = sim.api_text(&format!(
            r#"{{"action":"pull_results","consumerId":"{bad}","sessionId":"{sid}"}}"#
        ));
        assert_eq!(text, failed(&format!("consumer not found: {bad}")));
    }
}

#[test]
fn interrupt_job_without_a_foreground_job_fails() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let text = sim.api_text(&format!(
        r#"{{"action":"interrupt_job","requestId":"i","sessionId":"{sid}"}}"#
    ));
    assert_eq!(text, failed_rid("no foreground job is running", "i"));
    // A background job is not a foreground job.
    sim.async_exec(&sid, "monitor &");
    let text = sim.api_text(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    assert_eq!(text, failed("no foreground job is running"));
}

#[test]
fn exec_and_async_exec_are_refused_while_a_foreground_job_runs() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let v = sim.async_exec(&sid, "monitor");
    assert_eq!(v["state"], "SCHEDULED");
    for action in ["exec", "async_exec"] {
        let text = sim.api_text(&format!(
            r#"{{"action":"{action}","command":"version","requestId":"r","sessionId":"{sid}"}}"#
        ));
        assert_eq!(
            text,
            format!(
                r#"{{"body":{{"command":"version"}},"message":"Another job is running.","requestId":"r","sessionId":"{sid}","state":"REFUSED"}}"#
            ),
            "{action}"
        );
    }
    // Without a command the body is empty, not {"command":null}.
    let text = sim.api_text(&format!(r#"{{"action":"async_exec","sessionId":"{sid}"}}"#));
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{}},"message":"Another job is running.","sessionId":"{sid}","state":"REFUSED"}}"#
        )
    );
}

#[test]
fn async_exec_success_envelope_is_scheduled_with_ready_job() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let text = sim.api_text(&format!(
        r#"{{"action":"async_exec","command":"monitor","requestId":"a","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"monitor","jobId":1,"jobStatus":"READY"}},"requestId":"a","sessionId":"{sid}","state":"SCHEDULED"}}"#
        )
    );
}

#[test]
fn exec_of_an_unknown_command_fails_and_removes_the_one_time_session() {
    let mut sim = Sim::new();
    let text = sim.api_text(r#"{"action":"exec","command":"nosuch -x","requestId":"e"}"#);
    let sid = sid_of(&text);
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"nosuch -x"}},"message":"Exec command failed:nosuch: command not found","requestId":"e","sessionId":"{sid}","state":"FAILED"}}"#
        )
    );
    assert_eq!(sim.agent.session_count(), 0);
    assert_eq!(
        sim.api_text(&format!(
            r#"{{"action":"session_info","sessionId":"{sid}"}}"#
        )),
        failed(&format!("session not found: {sid}"))
    );
}

#[test]
fn exec_of_an_unknown_command_in_a_session_fails_and_keeps_the_session() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let text = sim.api_text(&format!(
        r#"{{"action":"exec","command":"nosuch","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"nosuch"}},"message":"Exec command failed:nosuch: command not found","sessionId":"{sid}","state":"FAILED"}}"#
        )
    );
    assert_eq!(sim.agent.session_count(), 1);
    // exec pushes nothing to the stream when the job could not be created.
    let c = sim.start_pull(&sid, &cid);
    sim.advance(Duration::from_millis(2000));
    assert_eq!(
        result_items(sim.responses(c)[0].text()),
        Vec::<String>::new()
    );
}

#[test]
fn exec_without_a_command_fails_with_an_empty_body() {
    let mut sim = Sim::new();
    let text = sim.api_text(r#"{"action":"exec"}"#);
    let sid = sid_of(&text);
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{}},"message":"Exec command failed:'command' is required","sessionId":"{sid}","state":"FAILED"}}"#
        )
    );
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn async_exec_of_an_unknown_command_fails_and_pushes_a_failed_command_item() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let text = sim.api_text(&format!(
        r#"{{"action":"async_exec","command":"nosuch a b","requestId":"x","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"nosuch a b"}},"message":"Async exec command failed:nosuch: command not found","requestId":"x","sessionId":"{sid}","state":"FAILED"}}"#
        )
    );
    assert_eq!(
        sim.pull(&sid, &cid),
        [
            r#"{"command":"nosuch a b","jobId":0,"message":"nosuch: command not found","state":"FAILED","type":"command"}"#
        ]
    );
    assert_eq!(sim.agent.job_count(), 0);
}

#[test]
fn exec_past_its_timeout_is_interrupted_with_time_expired() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let c = sim.connect();
    sim.post(
        c,
        &format!(
            r#"{{"action":"exec","command":"monitor -l WARN","execTimeout":1500,"requestId":"t","sessionId":"{sid}"}}"#
        ),
    );
    sim.advance_ms(1499);
    assert!(sim.responses(c).is_empty());
    sim.advance_ms(1);
    assert_eq!(
        sim.responses(c)[0].text(),
        format!(
            r#"{{"body":{{"command":"monitor -l WARN","jobId":1,"jobStatus":"TERMINATED","results":[{{"interrupted":true,"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":true,"timeout":1500}},"message":"The job is exceeded time limit, force interrupt","requestId":"t","sessionId":"{sid}","state":"INTERRUPTED"}}"#
        )
    );
    assert_eq!(sim.agent.job_count(), 0);
    assert_eq!(sim.agent.session_count(), 1);
}

#[test]
fn interrupt_job_answers_with_job_and_terminated_and_no_session_id() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    sim.async_exec(&sid, "monitor");
    let text = sim.api_text(&format!(
        r#"{{"action":"interrupt_job","requestId":"k","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        text,
        r#"{"body":{"jobId":1,"jobStatus":"TERMINATED"},"requestId":"k","state":"SUCCEEDED"}"#
    );
    assert_eq!(sim.agent.job_count(), 0);
}

#[test]
fn close_session_answers_succeeded_without_session_id_then_not_found() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let close = format!(r#"{{"action":"close_session","requestId":"z","sessionId":"{sid}"}}"#);
    assert_eq!(
        sim.api_text(&close),
        r#"{"requestId":"z","state":"SUCCEEDED"}"#
    );
    assert_eq!(
        sim.api_text(&close),
        failed_rid(&format!("session not found: {sid}"), "z")
    );
}

#[test]
fn join_session_envelope_has_consumer_and_session() {
    let mut sim = Sim::new();
    let (sid, _) = sim.init_session();
    let text = sim.api_text(&format!(
        r#"{{"action":"join_session","requestId":"j","sessionId":"{sid}"}}"#
    ));
    let v: Value = serde_json::from_str(&text).unwrap();
    let cid = v["consumerId"].as_str().unwrap();
    assert!(cid.ends_with("_2"));
    assert_eq!(
        text,
        format!(
            r#"{{"consumerId":"{cid}","requestId":"j","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
}
