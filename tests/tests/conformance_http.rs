//! Conformance of the HTTP/1.1 codec in front of `/api`: persistence per version,
//! pipelining and its ordering under parked requests, `100 Continue`, the framing errors
//! and their closes, routing, dribbled and coalesced input, EOF and reset.

use std::time::Duration;

use tandem_core::{Agent, Config, Effect, Instant, Limits, Listener, Output};
use tandem_tests::Sim;
use tandem_tests::http::{post_api, take_responses};
use tandem_tests::sim::pull_body;

/// The bytes of a JSON answer on a kept-alive HTTP/1.1 connection.
fn ok_json(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The bytes of a framing error: plain text, then the close.
fn error_close(status: &str, text: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
}

fn raw(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 response")
}

fn request(method: &str, path: &str, version: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} {version}\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const REFUSED_GET: &str = r#"{"message":"Unsupported http method: GET","state":"REFUSED"}"#;
const UNKNOWN: &str = r#"{"message":"unknown action: x","state":"FAILED"}"#;
const UNKNOWN_BODY: &str = r#"{"action":"x"}"#;

fn closes_of(sim: &Sim, c: tandem_core::ConnId) -> usize {
    sim.closes.iter().filter(|&&x| x == c).count()
}

// ----- persistence --------------------------------------------------------------------

#[test]
fn http11_keeps_the_connection_alive_by_default() {
    let mut sim = Sim::new();
    let c = sim.connect();
    for _ in 0..3 {
        sim.post(c, UNKNOWN_BODY);
        assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN));
        assert!(!sim.is_closed(c));
    }
    assert_eq!(sim.agent.connection_count(Listener::Http), 1);
}

#[test]
fn connection_close_is_answered_with_connection_close_then_closed() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let mut bytes = request(
        "POST",
        "/api",
        "HTTP/1.1",
        "Connection: close\r\n",
        UNKNOWN_BODY,
    );
    // A request behind the closing one is never answered.
    bytes.extend_from_slice(&post_api(UNKNOWN_BODY));
    sim.send(c, &bytes);
    assert_eq!(
        raw(sim.received(c)),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{UNKNOWN}",
            UNKNOWN.len()
        )
    );
    assert!(sim.is_closed(c));
    assert_eq!(closes_of(&sim, c), 1);
    assert_eq!(sim.agent.connection_count(Listener::Http), 0);
}

#[test]
fn connection_header_tokens_are_case_insensitive() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        &request(
            "POST",
            "/api",
            "HTTP/1.1",
            "Connection: foo, CLOSE\r\n",
            UNKNOWN_BODY,
        ),
    );
    let r = sim.responses(c);
    assert_eq!(r[0].header("Connection"), Some("close"));
    assert!(sim.is_closed(c));
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        format!(
            "POST /api HTTP/1.0\r\nContent-Length: {}\r\n\r\n{UNKNOWN_BODY}",
            UNKNOWN_BODY.len()
        )
        .as_bytes(),
    );
    assert_eq!(
        raw(sim.received(c)),
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{UNKNOWN}",
            UNKNOWN.len()
        )
    );
    assert!(sim.is_closed(c));
}

#[test]
fn http10_keep_alive_is_answered_with_connection_keep_alive_and_kept() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let req = format!(
        "POST /api HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: {}\r\n\r\n{UNKNOWN_BODY}",
        UNKNOWN_BODY.len()
    );
    for _ in 0..2 {
        sim.send(c, req.as_bytes());
        assert_eq!(
            raw(sim.received(c)),
            format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{UNKNOWN}",
                UNKNOWN.len()
            )
        );
        assert!(!sim.is_closed(c));
    }
}

// ----- pipelining ---------------------------------------------------------------------

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let mut bytes = Vec::new();
    for i in 0..5 {
        bytes.extend_from_slice(&post_api(&format!(
            r#"{{"action":"x{i}","requestId":"{i}"}}"#
        )));
    }
    sim.send(c, &bytes);
    let bodies: Vec<String> = sim
        .responses(c)
        .iter()
        .map(|r| r.text().to_string())
        .collect();
    let want: Vec<String> = (0..5)
        .map(|i| {
            format!(r#"{{"message":"unknown action: x{i}","requestId":"{i}","state":"FAILED"}}"#)
        })
        .collect();
    assert_eq!(bodies, want);
}

#[test]
fn a_parked_pull_holds_the_requests_behind_it() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.connect();
    let mut bytes = post_api(&pull_body(&sid, &cid));
    bytes.extend_from_slice(&post_api(r#"{"action":"exec","command":"echo behind"}"#));
    let t0 = sim.now;
    sim.send(c, &bytes);
    sim.advance_ms(1999);
    assert!(
        sim.received(c).is_empty(),
        "nothing before the pull's answer"
    );
    assert_eq!(sim.agent.job_count(), 0, "the exec has not even started");
    sim.advance_ms(1);
    assert_eq!(sim.now - t0, Duration::from_millis(2000));
    let r = sim.responses(c);
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[0].text(),
        format!(
            r#"{{"body":{{"results":[]}},"consumerId":"{cid}","sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
    let v = r[1].json();
    assert_eq!(v["body"]["results"][0]["message"], "behind");
}

#[test]
fn a_parked_exec_holds_the_requests_behind_it() {
    let mut sim = Sim::new();
    sim.register("slow");
    let c = sim.connect();
    let mut bytes = post_api(r#"{"action":"exec","command":"slow","requestId":"1"}"#);
    bytes.extend_from_slice(&post_api(r#"{"action":"x","requestId":"2"}"#));
    sim.send(c, &bytes);
    let started = sim.started_jobs();
    assert_eq!(started.len(), 1);
    sim.advance_ms(5_000);
    assert!(sim.received(c).is_empty());
    sim.agent.job_finished(started[0].0, 0, None, sim.now);
    sim.drain();
    let r = sim.responses(c);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].json()["requestId"], "1");
    assert_eq!(r[0].json()["state"], "SUCCEEDED");
    assert_eq!(
        r[1].text(),
        r#"{"message":"unknown action: x","requestId":"2","state":"FAILED"}"#
    );
}

#[test]
fn a_large_request_behind_a_parked_pull_waits_then_is_answered() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.connect();
    let rid = "r".repeat(6000);
    let mut bytes = post_api(&pull_body(&sid, &cid));
    bytes.extend_from_slice(&post_api(&format!(
        r#"{{"action":"x","requestId":"{rid}"}}"#
    )));
    sim.send(c, &bytes);
    sim.advance_ms(1999);
    assert!(sim.received(c).is_empty());
    sim.advance_ms(1);
    let r = sim.responses(c);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].json()["body"]["results"], serde_json::json!([]));
    assert_eq!(
        r[1].text(),
        format!(r#"{{"message":"unknown action: x","requestId":"{rid}","state":"FAILED"}}"#)
    );
}

#[test]
fn a_slow_reader_gets_no_more_answers_until_it_drains() {
    let config = Config {
        limits: Limits {
            max_tx: 200,
            ..Limits::default()
        },
        ..Config::default()
    };
    let now = Instant::from_millis(1_000);
    let mut agent = Agent::new(config, 7, now);
    let c = agent.accept(Listener::Http, None, now).unwrap();
    let mut bytes = Vec::new();
    for _ in 0..5 {
        bytes.extend_from_slice(&post_api(UNKNOWN_BODY));
    }
    assert_eq!(agent.handle_stream(c, &bytes, now), bytes.len());
    while agent.poll_output().is_some() {}
    let one = ok_json(UNKNOWN);
    // The answer that crosses max_tx is written whole; nothing after it.
    assert_eq!(raw(agent.tx_pending(c).to_vec()), one.repeat(2));
    let n = agent.tx_pending(c).len();
    agent.tx_consume(c, n, now);
    let mut transmits = 0;
    while let Some(out) = agent.poll_output() {
        transmits += usize::from(out == Output::Transmit(c));
    }
    assert_eq!(transmits, 1);
    assert_eq!(raw(agent.tx_pending(c).to_vec()), one.repeat(2));
    let n = agent.tx_pending(c).len();
    agent.tx_consume(c, n, now);
    while agent.poll_output().is_some() {}
    assert_eq!(raw(agent.tx_pending(c).to_vec()), one);
}

#[test]
fn several_requests_coalesced_in_one_write_are_all_answered_in_order() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let mut bytes = post_api(r#"{"action":"init_session","requestId":"a"}"#);
    bytes.extend_from_slice(&request("GET", "/api", "HTTP/1.1", "", ""));
    bytes.extend_from_slice(&request("POST", "/nope", "HTTP/1.1", "", "{}"));
    bytes.extend_from_slice(&post_api(
        r#"{"action":"exec","command":"version","requestId":"b"}"#,
    ));
    bytes.extend_from_slice(&post_api(""));
    sim.send(c, &bytes);
    let r = sim.responses(c);
    let got: Vec<(u16, String)> = r.iter().map(|r| (r.status, r.text().to_string())).collect();
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0].0, 200);
    assert!(got[0].1.contains(r#""requestId":"a""#));
    assert_eq!(got[1], (200, REFUSED_GET.to_string()));
    assert_eq!(got[2], (404, "Not found".to_string()));
    assert!(got[3].1.contains(r#""requestId":"b""#));
    assert_eq!(
        got[4].1,
        r#"{"message":"Process request error: parse request failed: request body is empty","state":"FAILED"}"#
    );
    assert!(!sim.is_closed(c));
}

// ----- 100-continue -------------------------------------------------------------------

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let body = r#"{"action":"x"}"#;
    sim.send(
        c,
        format!(
            "POST /api HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(raw(sim.received(c)), "HTTP/1.1 100 Continue\r\n\r\n");
    sim.send(c, &body.as_bytes()[..3]);
    assert!(sim.received(c).is_empty(), "100 Continue is sent once");
    sim.send(c, &body.as_bytes()[3..]);
    assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN));
}

#[test]
fn expect_100_continue_with_the_body_already_sent_gets_just_the_answer() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        &request(
            "POST",
            "/api",
            "HTTP/1.1",
            "Expect: 100-continue\r\n",
            UNKNOWN_BODY,
        ),
    );
    assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN));
}

#[test]

fn http10_expect_100_continue_is_ignored() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        format!(
            "POST /api HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            UNKNOWN_BODY.len()
        )
        .as_bytes(),
    );
    assert!(sim.received(c).is_empty(), "no interim answer to HTTP/1.0");
    sim.send(c, UNKNOWN_BODY.as_bytes());
    assert_eq!(
        raw(sim.received(c)),
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{UNKNOWN}",
            UNKNOWN.len()
        )
    );
}

#[test]

fn continue_after_an_http10_keep_alive_request_is_written_as_http11() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        format!(
            "POST /api HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{UNKNOWN_BODY}",
            UNKNOWN_BODY.len()
        )
        .as_bytes(),
    );
    assert_eq!(sim.responses(c).len(), 1);
    sim.send(
        c,
        format!(
            "POST /api HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            UNKNOWN_BODY.len()
        )
        .as_bytes(),
    );
    assert_eq!(raw(sim.received(c)), "HTTP/1.1 100 Continue\r\n\r\n");
    sim.send(c, UNKNOWN_BODY.as_bytes());
    assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN));
}

#[test]
fn an_expectation_other_than_100_continue_is_417_and_close() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        &request(
            "POST",
            "/api",
            "HTTP/1.1",
            "Expect: teapot\r\n",
            UNKNOWN_BODY,
        ),
    );
    assert_eq!(
        raw(sim.received(c)),
        error_close("417 Expectation Failed", "Expectation Failed")
    );
    assert!(sim.is_closed(c));
}

#[test]
fn a_transfer_coding_other_than_chunked_is_501_and_close() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(
        raw(sim.received(c)),
        error_close("501 Not Implemented", "Not Implemented")
    );
    assert!(sim.is_closed(c));
}

// ----- framing errors -----------------------------------------------------------------

#[test]
fn head_larger_than_max_head_is_431_and_close() {
    for config in [
        Config::default(),
        Config {
            limits: Limits {
                max_head: 128,
                ..Limits::default()
            },
            ..Config::default()
        },
    ] {
        let max = config.limits.max_head;
        let mut sim = Sim::with_config(config);
        // A head of exactly max_head bytes is fine...
        let c = sim.connect();
        let fixed = "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX: \r\n\r\n".len();
        let pad = "a".repeat(max - fixed);
        sim.send(
            c,
            format!("POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX: {pad}\r\n\r\n")
                .as_bytes(),
        );
        let r = sim.responses(c);
        assert_eq!(r.len(), 1, "max_head {max}");
        assert_eq!(r[0].status, 200);
        assert!(!sim.is_closed(c));
        // ...one more byte is not.
        let c = sim.connect();
        sim.send(
            c,
            format!("POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX: a{pad}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(
            raw(sim.received(c)),
            error_close(
                "431 Request Header Fields Too Large",
                "Request Header Fields Too Large"
            ),
            "max_head {max}"
        );
        assert!(sim.is_closed(c));
        // A head that never ends is cut off at the limit too.
        let c = sim.connect();
        let mut endless = b"POST /api HTTP/1.1\r\nX: ".to_vec();
        endless.resize(max * 3, b'b');
        sim.send(c, &endless);
        assert_eq!(
            raw(sim.received(c)),
            error_close(
                "431 Request Header Fields Too Large",
                "Request Header Fields Too Large"
            )
        );
        assert!(sim.is_closed(c));
    }
}

#[test]
fn more_headers_than_max_headers_is_431_and_close() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let many = "A: b\r\n".repeat(sim.agent.config().limits.max_headers);
    sim.send(c, &request("POST", "/api", "HTTP/1.1", &many, UNKNOWN_BODY));
    assert_eq!(
        raw(sim.received(c)),
        error_close(
            "431 Request Header Fields Too Large",
            "Request Header Fields Too Large"
        )
    );
    assert!(sim.is_closed(c));
}

#[test]
fn body_larger_than_max_body_is_413_and_close_without_waiting_for_it() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let max = sim.agent.config().limits.max_body;
    sim.send(
        c,
        format!(
            "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            max + 1
        )
        .as_bytes(),
    );
    assert_eq!(
        raw(sim.received(c)),
        error_close("413 Payload Too Large", "Payload Too Large")
    );
    assert!(sim.is_closed(c));
}

#[test]
fn a_body_of_exactly_the_default_max_body_is_accepted() {
    let mut sim = Sim::new();
    let max = sim.agent.config().limits.max_body;
    let mut body = String::from(UNKNOWN_BODY);
    body.push_str(&" ".repeat(max - body.len()));
    let c = sim.connect();
    sim.post(c, &body);
    assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN));
    assert!(!sim.is_closed(c));
}

#[test]
fn an_oversized_body_announced_with_expect_gets_413_not_100() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let max = sim.agent.config().limits.max_body;
    sim.send(
        c,
        format!(
            "POST /api HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            max + 1
        )
        .as_bytes(),
    );
    assert_eq!(
        raw(sim.received(c)),
        error_close("413 Payload Too Large", "Payload Too Large")
    );
    assert!(sim.is_closed(c));
}

#[test]
fn configured_max_body_is_enforced_at_the_exact_byte() {
    let body = r#"{"action":"x"}"#;
    let mut sim = Sim::with_config(Config {
        limits: Limits {
            max_body: body.len(),
            ..Limits::default()
        },
        ..Config::default()
    });
    let c = sim.connect();
    sim.post(c, body);
    assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN));
    sim.post(c, &format!("{body} "));
    assert_eq!(
        raw(sim.received(c)),
        error_close("413 Payload Too Large", "Payload Too Large")
    );
    assert!(sim.is_closed(c));
}

#[test]
fn chunked_request_is_411_and_close() {
    let mut sim = Sim::new();
    for te in ["chunked", "Chunked", "gzip, chunked"] {
        let c = sim.connect();
        sim.send(
            c,
            format!(
                "POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\ne\r\n{UNKNOWN_BODY}\r\n0\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(
            raw(sim.received(c)),
            error_close(
                "411 Length Required",
                "Length Required: send a Content-Length body"
            ),
            "{te}"
        );
        assert!(sim.is_closed(c));
    }
}

#[test]
fn duplicate_or_conflicting_content_length_is_400_and_close() {
    let mut sim = Sim::new();
    for headers in [
        "Content-Length: 14\r\nContent-Length: 14\r\n",
        "Content-Length: 14\r\nContent-Length: 15\r\n",
        "Content-Length: 14\r\ncontent-length: 2\r\n",
        "Content-Length: 14, 14\r\n",
        "Content-Length: +14\r\n",
        "Content-Length: 0x0e\r\n",
        "Content-Length: 14\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let c = sim.connect();
        sim.send(
            c,
            format!("POST /api HTTP/1.1\r\nHost: x\r\n{headers}\r\n{UNKNOWN_BODY}").as_bytes(),
        );
        assert_eq!(
            raw(sim.received(c)),
            error_close("400 Bad Request", "Bad Request"),
            "{headers:?}"
        );
        assert!(sim.is_closed(c));
    }
}

#[test]
fn malformed_request_line_is_400_and_close() {
    let mut sim = Sim::new();
    for head in [
        "GARBAGE\r\n\r\n",
        "POST\r\nHost: x\r\n\r\n",
        "POST /api\r\nHost: x\r\n\r\n",
        "POST /api HTTP/2.0\r\nHost: x\r\n\r\n",
        "POST  /api HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /a pi HTTP/1.1\r\nHost: x\r\n\r\n",
        "\x01\x02\x03\r\n\r\n",
    ] {
        let c = sim.connect();
        sim.send(c, head.as_bytes());
        assert_eq!(
            raw(sim.received(c)),
            error_close("400 Bad Request", "Bad Request"),
            "{head:?}"
        );
        assert!(sim.is_closed(c), "{head:?}");
    }
}

#[test]
fn http11_request_without_host_is_400_and_close() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        format!(
            "POST /api HTTP/1.1\r\nContent-Length: {}\r\n\r\n{UNKNOWN_BODY}",
            UNKNOWN_BODY.len()
        )
        .as_bytes(),
    );
    assert_eq!(
        raw(sim.received(c)),
        error_close("400 Bad Request", "Bad Request")
    );
    assert!(sim.is_closed(c));
}

// ----- routing ------------------------------------------------------------------------

#[test]
fn paths_other_than_api_are_404_not_found() {
    let mut sim = Sim::new();
    let c = sim.connect();
    // (`/` is the web console's page: conformance_console.rs.)
    for path in [
        "/console", "/api/", "/apix", "/API", "/api/v1", "/ap", "/api#x", "//api",
    ] {
        sim.send(c, &request("POST", path, "HTTP/1.1", "", UNKNOWN_BODY));
        assert_eq!(
            raw(sim.received(c)),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\n\r\nNot found",
            "{path}"
        );
    }
    assert!(!sim.is_closed(c), "a 404 is not a framing error");
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn a_query_string_on_api_is_allowed() {
    let mut sim = Sim::new();
    let c = sim.connect();
    for path in ["/api?x=1", "/api?password=secret&username=arthas", "/api?"] {
        sim.send(c, &request("POST", path, "HTTP/1.1", "", UNKNOWN_BODY));
        assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN), "{path}");
    }
}

#[test]
fn get_api_is_200_with_the_refused_envelope() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(c, b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw(sim.received(c)), ok_json(REFUSED_GET));
    assert!(!sim.is_closed(c));
    sim.send(c, b"GET /api?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw(sim.received(c)), ok_json(REFUSED_GET));
}

#[test]
fn head_api_answer_has_no_body() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let mut bytes = b"HEAD /api HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    bytes.extend_from_slice(&post_api(UNKNOWN_BODY));
    sim.send(c, &bytes);
    let got = raw(sim.received(c));
    let (head, rest) = got.split_once("\r\n\r\n").expect("a HEAD response head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(
        rest,
        ok_json(UNKNOWN),
        "no body bytes after the HEAD answer"
    );
}

#[test]

fn a_framing_error_after_a_head_request_still_has_its_body() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(c, b"HEAD /api HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n");
    let got = raw(sim.received(c));
    let (_, rest) = got.split_once("\r\n\r\n").expect("the HEAD answer");
    assert_eq!(rest, error_close("400 Bad Request", "Bad Request"));
    assert!(sim.is_closed(c));
}

#[test]
fn head_on_other_paths_gets_the_404_head_only() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let mut bytes = b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    bytes.extend_from_slice(&post_api(UNKNOWN_BODY));
    sim.send(c, &bytes);
    assert_eq!(
        raw(sim.received(c)),
        format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\n\r\n{}",
            ok_json(UNKNOWN)
        )
    );
}

// ----- dribbled and split input -------------------------------------------------------

fn whole_answer(bytes: &[u8]) -> Vec<u8> {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(c, bytes);
    sim.received(c)
}

#[test]
fn a_request_split_at_every_byte_boundary_gives_the_same_bytes() {
    let req = post_api(
        r#"{"action":"exec","command":"echo \"a  b\" c","requestId":"split","execTimeout":"100"}"#,
    );
    let want = whole_answer(&req);
    assert!(want.starts_with(b"HTTP/1.1 200 OK\r\n"));
    for k in 1..req.len() {
        let mut sim = Sim::new();
        let c = sim.connect();
        sim.send(c, &req[..k]);
        assert!(sim.received(c).is_empty(), "answered after {k} bytes");
        sim.send(c, &req[k..]);
        assert_eq!(raw(sim.received(c)), raw(want.clone()), "split at {k}");
        assert!(!sim.is_closed(c), "split at {k}");
    }
}

#[test]
fn two_pipelined_requests_split_at_every_byte_boundary_give_the_same_bytes() {
    let mut reqs = post_api(r#"{"action":"init_session","requestId":"1"}"#);
    reqs.extend_from_slice(
        b"POST /api?q=1 HTTP/1.1\nHost: x\nExpect: 100-continue\nContent-Length: 14\n\n{\"action\":\"x\"}",
    );
    let want = whole_answer(&reqs);
    assert_eq!(take_responses(&mut want.clone()).len(), 2);
    for k in 1..reqs.len() {
        let mut sim = Sim::new();
        let c = sim.connect();
        sim.send(c, &reqs[..k]);
        sim.send(c, &reqs[k..]);
        let mut got = sim.received(c);
        // When the split falls inside the second body, a `100 Continue` comes between.
        let mut rs = take_responses(&mut got);
        rs.retain(|r| r.status != 100);
        let joined: Vec<u8> = rs.into_iter().flat_map(|r| r.raw).collect();
        assert_eq!(raw(joined), raw(want.clone()), "split at {k}");
    }
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_answered() {
    let req = post_api(r#"{"action":"exec","command":"version","requestId":"drip"}"#);
    let want = whole_answer(&req);
    let mut sim = Sim::new();
    let c = sim.connect();
    for (i, b) in req.iter().enumerate() {
        if i + 1 < req.len() {
            sim.send(c, std::slice::from_ref(b));
            assert!(sim.received(c).is_empty(), "answered after {} bytes", i + 1);
        } else {
            sim.send(c, std::slice::from_ref(b));
        }
    }
    assert_eq!(raw(sim.received(c)), raw(want));
}

#[test]
fn an_empty_line_before_a_pipelined_request_is_ignored() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let mut bytes = post_api(UNKNOWN_BODY);
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(&post_api(UNKNOWN_BODY));
    sim.send(c, &bytes);
    assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN).repeat(2));
    assert!(!sim.is_closed(c));
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(
        c,
        format!(
            "POST /api HTTP/1.1\nHost: x\nContent-Length: {}\n\n{UNKNOWN_BODY}",
            UNKNOWN_BODY.len()
        )
        .as_bytes(),
    );
    assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN));
}

// ----- EOF and reset ------------------------------------------------------------------

#[test]
fn eof_after_a_complete_request_still_gets_the_answer_then_the_close() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.post(c, UNKNOWN_BODY);
    sim.eof(c);
    assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN));
    assert!(sim.is_closed(c));
    assert_eq!(closes_of(&sim, c), 1);
    assert_eq!(sim.agent.connection_count(Listener::Http), 0);
}

#[test]
fn eof_while_a_pull_is_parked_answers_it_then_closes() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.start_pull(&sid, &cid);
    sim.eof(c);
    assert!(!sim.is_closed(c));
    sim.advance_ms(1999);
    assert!(sim.received(c).is_empty());
    sim.advance_ms(1);
    let body = format!(
        r#"{{"body":{{"results":[]}},"consumerId":"{cid}","sessionId":"{sid}","state":"SUCCEEDED"}}"#
    );
    assert_eq!(
        raw(sim.received(c)),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    );
    assert!(sim.is_closed(c));
}

#[test]
fn eof_after_requests_pipelined_behind_a_parked_pull_answers_them_all() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c = sim.connect();
    let mut bytes = post_api(&pull_body(&sid, &cid));
    bytes.extend_from_slice(&post_api(r#"{"action":"x","requestId":"behind"}"#));
    sim.send(c, &bytes);
    sim.eof(c);
    sim.advance_ms(2000);
    let r = sim.responses(c);
    assert_eq!(r.len(), 2, "both complete requests are answered");
    assert_eq!(
        r[1].text(),
        r#"{"message":"unknown action: x","requestId":"behind","state":"FAILED"}"#
    );
    assert_eq!(r[1].header("Connection"), Some("close"));
    assert!(sim.is_closed(c));
}

#[test]
fn eof_while_an_exec_is_parked_answers_it_then_closes() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.post(
        c,
        r#"{"action":"exec","command":"monitor","execTimeout":300}"#,
    );
    sim.eof(c);
    assert_eq!(
        sim.agent.job_count(),
        1,
        "EOF is not a reset: the job runs on"
    );
    sim.advance_ms(300);
    let r = sim.responses(c);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].json()["state"], "INTERRUPTED");
    assert_eq!(r[0].header("Connection"), Some("close"));
    assert!(sim.is_closed(c));
    assert_eq!(sim.agent.session_count(), 0);
}

#[test]
fn eof_mid_request_closes_without_an_answer() {
    let req = post_api(UNKNOWN_BODY);
    for cut in [1, 10, req.len() - UNKNOWN_BODY.len(), req.len() - 1] {
        let mut sim = Sim::new();
        let c = sim.connect();
        sim.send(c, &req[..cut]);
        sim.eof(c);
        assert!(sim.received(c).is_empty(), "cut at {cut}");
        assert!(sim.is_closed(c), "cut at {cut}");
        assert_eq!(sim.agent.connection_count(Listener::Http), 0);
    }
}

#[test]
fn eof_on_an_idle_connection_closes_it() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.post(c, UNKNOWN_BODY);
    assert_eq!(raw(sim.received(c)), ok_json(UNKNOWN));
    sim.eof(c);
    assert!(sim.received(c).is_empty());
    assert!(sim.is_closed(c));
}

#[test]
fn reset_while_a_pull_is_parked_frees_the_consumer_for_the_next_pull() {
    let mut sim = Sim::new();
    let (sid, cid) = sim.init_session();
    sim.pull(&sid, &cid);
    let c1 = sim.start_pull(&sid, &cid);
    sim.advance_ms(500);
    let open = sim.agent.connection_count(Listener::Http);
    sim.reset(c1);
    assert_eq!(sim.agent.connection_count(Listener::Http), open - 1);
    let c2 = sim.start_pull(&sid, &cid);
    // Not the immediate empty answer of a second concurrent pull: this one parks...
    assert!(sim.responses(c2).is_empty());
    // ...and receives what arrives next.
    sim.exec_in(&sid, "version");
    sim.advance_ms(100);
    let r = sim.responses(c2);
    assert_eq!(
        tandem_tests::sim::result_items(r[0].text()),
        [
            r#"{"inputStatus":"ALLOW_INTERRUPT","jobId":0,"type":"input_status"}"#,
            r#"{"inputStatus":"ALLOW_INPUT","jobId":0,"type":"input_status"}"#,
        ]
    );
}

#[test]
fn reset_while_an_exec_is_parked_cancels_its_job_and_its_one_time_session() {
    let mut sim = Sim::new();
    sim.register("slow");
    let c = sim.connect();
    sim.post(c, r#"{"action":"exec","command":"slow arg"}"#);
    let started = sim.started_jobs();
    assert_eq!(started.len(), 1);
    let job = started[0].0;
    assert_eq!(sim.agent.session_count(), 1);
    sim.reset(c);
    assert_eq!(sim.take_effects(), [Effect::CancelJob(job)]);
    assert_eq!(sim.agent.session_count(), 0);
    assert_eq!(sim.agent.job_count(), 0);
    assert_eq!(
        sim.agent
            .job_output(job, &serde_json::json!({"type":"late"}), sim.now),
        Err(tandem_core::JobError::Gone)
    );
}
