//! One conformance suite, three drivers: every case below is written once over
//! `&mut dyn Driver` and run on the in-memory driver (virtual clock, no sockets), the smol
//! runtime (`tandem agent`) and the mio runtime (`tandem-mio agent`), each started with the
//! same configuration ([`base_config`], or a case's own).
//!
//! Answers are compared as exact bytes. What legitimately differs between drivers is
//! substituted before comparing, never skipped: random ids are read back from the answer,
//! the pid and the LAN address come from the driver, and wall-clock stamps (the welcome
//! item's `time`, a log line's date) are checked for their format and then spliced in.
//!
//! Each `conformance!` line makes a module named for the case with the tests `memory`,
//! `smol` and `mio`, so `cargo test -p tandem-tests --test conformance_drivers mio` runs one
//! driver and `… rpc_members` one case everywhere.

#[path = "conformance_rpc_support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{HANDSHAKE_OK, V, assert_bytes, enc, hex, map, reply, reply_with, req, req_with};
use tandem_core::{Config, Limits, VERSION};
use tandem_tests::driver::memory::Memory;
use tandem_tests::driver::process::{Process, Runtime};
use tandem_tests::driver::{Conn, Driver, Listener, base_config};
use tandem_tests::http::post_api;
use tandem_tests::sim::{pull_body, result_items};

/// Generates, for each case, `mod <case> { memory, smol, mio }`, each test running the case
/// function on a fresh agent of that driver with the configuration from `config` (default:
/// [`base_config`]).
macro_rules! conformance {
    ($($case:ident $(with $config:ident)?;)*) => {$(
        mod $case {
            #[allow(unused_imports)]
            use super::*;

            fn config() -> tandem_core::Config {
                conformance!(@config $($config)?)
            }

            #[test]
            fn memory() {
                super::$case(&mut Memory::start(config()));
            }

            #[test]
            fn smol() {
                super::$case(&mut Process::start(Runtime::Smol, &config()));
            }

            #[test]
            fn mio() {
                super::$case(&mut Process::start(Runtime::Mio, &config()));
            }
        }
    )*};
    (@config) => { base_config() };
    (@config $config:ident) => { super::$config() };
}

conformance! {
    // The HTTP session API.
    init_join_and_pull_deliver_the_welcome_items;
    exec_version_is_answered_with_the_exact_envelope;
    unknown_action_fails_with_the_catalogue_text;
    pull_of_an_unknown_session_is_session_not_found;
    pull_without_a_consumer_id_is_consumer_id_required;
    get_is_refused_as_an_unsupported_http_method;
    async_exec_then_interrupt_job_ends_with_the_interrupted_status;
    exec_past_its_timeout_is_interrupted_with_the_time_expired_message;
    an_empty_pull_answers_after_the_configured_timeout;
    an_exec_pipelined_behind_a_parked_pull_is_answered_after_it;
    requests_coalesced_in_one_write_are_answered_in_order;
    keep_alive_serves_sequential_requests_on_one_connection;
    other_paths_are_404_and_the_connection_stays_open;
    a_body_over_the_configured_max_body_is_413_and_close with small_max_body;
    a_413_is_delivered_even_with_the_refused_body_already_sent with small_max_body;
    connection_close_is_answered_then_closed;
    a_request_then_eof_is_answered_then_closed;
    eof_while_a_pull_is_parked_answers_it_then_closes;
    reset_while_a_pull_is_parked_frees_the_consumer_for_the_next_pull with long_pull;
    many_requests_pipelined_behind_a_parked_pull_are_all_answered_in_order;
    answers_beyond_max_tx_wait_for_the_client_and_all_arrive_in_order with small_max_tx;
    expect_100_continue_is_answered_before_the_body_is_sent;
    a_request_dribbled_byte_by_byte_is_answered;
    exec_stats_on_a_fresh_agent_counts_exactly_its_own_request;
    exec_members_lists_this_node_as_rpc_members_does;
    connections_beyond_max_connections_get_503_or_are_closed with two_connections;
    a_flood_of_init_session_refuses_neither_exec_nor_a_used_session with few_sessions;
    // The agent RPC.
    rpc_handshake_is_answered_with_the_serf_transcript_bytes;
    rpc_command_before_the_handshake_is_refused_and_closed;
    rpc_requests_pipelined_behind_handshake_required_are_not_answered;
    rpc_unsupported_command_is_refused_and_closed;
    rpc_requests_coalesced_in_one_write_are_answered_in_order;
    rpc_handshake_dribbled_byte_by_byte_is_answered;
    rpc_eof_answers_whole_requests_then_closes_without_a_partial_reply;
    rpc_members_lists_one_alive_member_named_by_the_config;
    rpc_stats_is_sections_of_string_leaves;
    rpc_get_coordinate_answers_serfs_shape_for_self_and_unknown_nodes;
    rpc_monitor_streams_records_until_stopped;
    rpc_event_reaches_a_stream_on_another_connection;
    rpc_query_is_acked_answered_on_a_stream_and_done_at_its_timeout;
    rpc_auth_gates_commands_until_the_configured_key with rpc_auth;
    rpc_join_of_nothing_is_num_zero;
    rpc_wan_join_on_a_client_is_refused;
    rpc_key_commands_rotate_the_keyring_of_an_encrypted_node with encrypted;
    rpc_key_commands_without_encryption_report_serfs_failure;
}

// ----- configurations ------------------------------------------------------------------

const K1: &str = "AAECAwQFBgcICQoLDA0ODw==";
const K2: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// Gossip encrypted with `K1`.
fn encrypted() -> Config {
    use tandem_core::cluster::{ClusterConfig, GossipKey, Keyring};
    Config {
        cluster: Some(ClusterConfig {
            keyring: Keyring::new(GossipKey::from_base64(K1).unwrap(), []),
            ..ClusterConfig::default()
        }),
        ..base_config()
    }
}

const MAX_BODY: usize = 64;
const AUTH_KEY: &str = "s3cret";

fn small_max_body() -> Config {
    Config {
        limits: Limits {
            max_body: MAX_BODY,
            ..Limits::default()
        },
        ..base_config()
    }
}

/// A long-poll far longer than [`DEADLINE`](tandem_tests::driver::DEADLINE), so only a
/// reset (not the poll's own timeout) can free its consumer within a case.
fn long_pull() -> Config {
    let mut config = base_config();
    config.timing.pull_timeout_ms = 60_000;
    config
}

fn small_max_tx() -> Config {
    Config {
        limits: Limits {
            max_tx: 1024,
            ..Limits::default()
        },
        ..base_config()
    }
}

fn two_connections() -> Config {
    Config {
        limits: Limits {
            max_connections: 2,
            ..Limits::default()
        },
        ..base_config()
    }
}

const MAX_SESSIONS: usize = 8;

fn few_sessions() -> Config {
    Config {
        limits: Limits {
            max_sessions: MAX_SESSIONS,
            ..Limits::default()
        },
        ..base_config()
    }
}

fn rpc_auth() -> Config {
    Config {
        rpc_auth: Some(AUTH_KEY.into()),
        ..base_config()
    }
}

// ----- HTTP helpers --------------------------------------------------------------------

const ALLOW_INPUT: &str = r#"{"inputStatus":"ALLOW_INPUT","jobId":0,"type":"input_status"}"#;
const ALLOW_INTERRUPT: &str =
    r#"{"inputStatus":"ALLOW_INTERRUPT","jobId":0,"type":"input_status"}"#;
const DISABLED: &str = r#"{"inputStatus":"DISABLED","jobId":0,"type":"input_status"}"#;
const WELCOME_MESSAGE: &str = r#"{"jobId":0,"message":"Welcome to tandem!","type":"message"}"#;
const UNKNOWN_BODY: &str = r#"{"action":"x"}"#;
const UNKNOWN: &str = r#"{"message":"unknown action: x","state":"FAILED"}"#;

/// The bytes of a JSON answer on a kept-alive connection.
fn ok_json(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn raw(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 response")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `init_session`: (sessionId, consumerId), after checking the envelope's exact bytes.
fn init_session(d: &mut dyn Driver) -> (String, String) {
    let text = d.api(r#"{"action":"init_session"}"#);
    let v = json(&text);
    let (sid, cid) = (
        v["sessionId"].as_str().expect("sessionId").to_string(),
        v["consumerId"].as_str().expect("consumerId").to_string(),
    );
    assert_eq!(
        text,
        format!(r#"{{"consumerId":"{cid}","sessionId":"{sid}","state":"SUCCEEDED"}}"#)
    );
    (sid, cid)
}

/// The exact body of a `pull_results` answer.
fn pull_answer(sid: &str, cid: &str, items: &[String]) -> String {
    format!(
        r#"{{"body":{{"results":[{}]}},"consumerId":"{cid}","sessionId":"{sid}","state":"SUCCEEDED"}}"#,
        items.join(",")
    )
}

/// A whole `pull_results` on a fresh connection: its items, after checking the envelope.
fn pull(d: &mut dyn Driver, sid: &str, cid: &str) -> Vec<String> {
    let text = d.api(&pull_body(sid, cid));
    let items = result_items(&text);
    assert_eq!(text, pull_answer(sid, cid, &items));
    items
}

/// The welcome item this driver's agent writes, with its wall-clock time as `<time>`.
fn welcome(d: &dyn Driver) -> String {
    format!(
        r#"{{"jobId":0,"node":"conformance-node","pid":"{}","time":"<time>","type":"welcome","version":"{VERSION}"}}"#,
        d.pid()
    )
}

/// `item` with a welcome `time` value (`YYYY-MM-DD hh:mm:ss.mmm`, checked) as `<time>`.
fn without_welcome_time(item: &str) -> String {
    let Some(at) = item.find(r#""time":""#).map(|i| i + 8) else {
        return item.to_string();
    };
    let time = &item[at..at + 23];
    assert!(
        time.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            19 => b == b'.',
            _ => b.is_ascii_digit(),
        }) && item[at + 23..].starts_with('"'),
        "welcome time {time:?} in {item}"
    );
    format!("{}<time>{}", &item[..at], &item[at + 23..])
}

fn interrupted(job: u64) -> String {
    format!(r#"{{"interrupted":true,"jobId":{job},"statusCode":0,"type":"status"}}"#)
}

fn command_item(job: u64, line: &str) -> String {
    format!(r#"{{"command":"{line}","jobId":{job},"state":"SCHEDULED","type":"command"}}"#)
}

// ----- the HTTP session API --------------------------------------------------------------

fn init_join_and_pull_deliver_the_welcome_items(d: &mut dyn Driver) {
    let (sid, cid) = init_session(d);
    assert!(cid.ends_with("_1"), "{cid}");
    let text = d.api(&format!(
        r#"{{"action":"join_session","sessionId":"{sid}"}}"#
    ));
    let joined = json(&text)["consumerId"]
        .as_str()
        .expect("consumerId")
        .to_string();
    assert!(joined.ends_with("_2"), "{joined}");
    assert_eq!(
        text,
        format!(r#"{{"consumerId":"{joined}","sessionId":"{sid}","state":"SUCCEEDED"}}"#)
    );
    let w = welcome(d);
    let first: Vec<String> = pull(d, &sid, &cid)
        .iter()
        .map(|i| without_welcome_time(i))
        .collect();
    assert_eq!(
        first,
        [WELCOME_MESSAGE, w.as_str(), ALLOW_INPUT],
        "{}",
        d.name()
    );
    let second: Vec<String> = pull(d, &sid, &joined)
        .iter()
        .map(|i| without_welcome_time(i))
        .collect();
    assert_eq!(
        second,
        [DISABLED, WELCOME_MESSAGE, w.as_str(), ALLOW_INPUT],
        "{}",
        d.name()
    );
}

fn exec_version_is_answered_with_the_exact_envelope(d: &mut dyn Driver) {
    let r = d.http(r#"{"action":"exec","command":"version","requestId":"v1"}"#);
    let sid = json(r.text())["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string();
    let body = format!(
        r#"{{"body":{{"command":"version","jobId":1,"jobStatus":"TERMINATED","results":[{{"jobId":1,"type":"version","version":"{VERSION}"}},{{"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":false}},"requestId":"v1","sessionId":"{sid}","state":"SUCCEEDED"}}"#
    );
    assert_eq!(raw(&r.raw), ok_json(&body), "{}", d.name());
}

fn unknown_action_fails_with_the_catalogue_text(d: &mut dyn Driver) {
    let r = d.http(r#"{"action":"nope","requestId":"r9"}"#);
    assert_eq!(
        raw(&r.raw),
        ok_json(r#"{"message":"unknown action: nope","requestId":"r9","state":"FAILED"}"#)
    );
}

fn pull_of_an_unknown_session_is_session_not_found(d: &mut dyn Driver) {
    let sid = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        d.api(&pull_body(sid, "c_1")),
        format!(r#"{{"message":"session not found: {sid}","state":"FAILED"}}"#)
    );
}

fn pull_without_a_consumer_id_is_consumer_id_required(d: &mut dyn Driver) {
    let (sid, _) = init_session(d);
    assert_eq!(
        d.api(&format!(
            r#"{{"action":"pull_results","sessionId":"{sid}"}}"#
        )),
        r#"{"message":"'consumerId' is required","state":"FAILED"}"#
    );
}

fn get_is_refused_as_an_unsupported_http_method(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    d.send(&c, b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = d.response(&mut c);
    assert_eq!(
        raw(&r.raw),
        ok_json(r#"{"message":"Unsupported http method: GET","state":"REFUSED"}"#)
    );
    // Not a framing error: the connection serves the next request.
    d.send(&c, &post_api(UNKNOWN_BODY));
    assert_eq!(raw(&d.response(&mut c).raw), ok_json(UNKNOWN));
}

fn async_exec_then_interrupt_job_ends_with_the_interrupted_status(d: &mut dyn Driver) {
    let (sid, cid) = init_session(d);
    pull(d, &sid, &cid);
    // `monitor -l err` runs until interrupted; no agent logs an error on its own, so it
    // writes nothing on any driver.
    let text = d.api(&format!(
        r#"{{"action":"async_exec","command":"monitor -l err","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"monitor -l err","jobId":1,"jobStatus":"READY"}},"sessionId":"{sid}","state":"SCHEDULED"}}"#
        )
    );
    assert_eq!(
        pull(d, &sid, &cid),
        [command_item(1, "monitor -l err"), ALLOW_INTERRUPT.into()]
    );
    let text = d.api(&format!(
        r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
    ));
    assert_eq!(
        text,
        r#"{"body":{"jobId":1,"jobStatus":"TERMINATED"},"state":"SUCCEEDED"}"#
    );
    assert_eq!(pull(d, &sid, &cid), [interrupted(1), ALLOW_INPUT.into()]);
    // Nothing left to interrupt.
    assert_eq!(
        d.api(&format!(
            r#"{{"action":"interrupt_job","sessionId":"{sid}"}}"#
        )),
        r#"{"message":"no foreground job is running","state":"FAILED"}"#
    );
}

fn exec_past_its_timeout_is_interrupted_with_the_time_expired_message(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    let t0 = d.elapsed();
    d.send(
        &c,
        &post_api(r#"{"action":"exec","command":"monitor -l err","execTimeout":200}"#),
    );
    let r = d.response(&mut c);
    assert!(
        d.elapsed() - t0 >= Duration::from_millis(200),
        "{}",
        d.name()
    );
    let sid = json(r.text())["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string();
    assert_eq!(
        r.text(),
        format!(
            r#"{{"body":{{"command":"monitor -l err","jobId":1,"jobStatus":"TERMINATED","results":[{}],"timeExpired":true,"timeout":200}},"message":"The job is exceeded time limit, force interrupt","sessionId":"{sid}","state":"INTERRUPTED"}}"#,
            interrupted(1)
        )
    );
}

fn an_empty_pull_answers_after_the_configured_timeout(d: &mut dyn Driver) {
    let (sid, cid) = init_session(d);
    pull(d, &sid, &cid);
    let mut c = d.connect(Listener::Http);
    let t0 = d.elapsed();
    d.send(&c, &post_api(&pull_body(&sid, &cid)));
    // The configured 300 ms is a lower bound on every driver; the real ones may be late.
    d.expect_quiet(&mut c, Duration::from_millis(250));
    let r = d.response(&mut c);
    assert!(
        d.elapsed() - t0 >= Duration::from_millis(300),
        "{}: answered after {:?}",
        d.name(),
        d.elapsed() - t0
    );
    assert_eq!(raw(&r.raw), ok_json(&pull_answer(&sid, &cid, &[])));
}

fn an_exec_pipelined_behind_a_parked_pull_is_answered_after_it(d: &mut dyn Driver) {
    let (sid, cid) = init_session(d);
    pull(d, &sid, &cid);
    let mut c = d.connect(Listener::Http);
    let mut bytes = post_api(&pull_body(&sid, &cid));
    bytes.extend(post_api(
        r#"{"action":"exec","command":"echo behind","requestId":"2"}"#,
    ));
    let t0 = d.elapsed();
    d.send(&c, &bytes);
    d.expect_quiet(&mut c, Duration::from_millis(250));
    let r = d.responses(&mut c, 2);
    assert!(
        d.elapsed() - t0 >= Duration::from_millis(300),
        "{}",
        d.name()
    );
    assert_eq!(raw(&r[0].raw), ok_json(&pull_answer(&sid, &cid, &[])));
    let one_time = json(r[1].text())["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string();
    assert_eq!(
        r[1].text(),
        format!(
            r#"{{"body":{{"command":"echo behind","jobId":1,"jobStatus":"TERMINATED","results":[{{"jobId":1,"message":"behind","type":"message"}},{{"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":false}},"requestId":"2","sessionId":"{one_time}","state":"SUCCEEDED"}}"#
        )
    );
}

fn requests_coalesced_in_one_write_are_answered_in_order(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    let mut bytes = Vec::new();
    for i in 0..5 {
        bytes.extend(post_api(&format!(
            r#"{{"action":"x{i}","requestId":"{i}"}}"#
        )));
    }
    d.send(&c, &bytes);
    for (i, r) in d.responses(&mut c, 5).iter().enumerate() {
        assert_eq!(
            raw(&r.raw),
            ok_json(&format!(
                r#"{{"message":"unknown action: x{i}","requestId":"{i}","state":"FAILED"}}"#
            ))
        );
    }
}

fn keep_alive_serves_sequential_requests_on_one_connection(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    for _ in 0..3 {
        d.send(&c, &post_api(UNKNOWN_BODY));
        let r = d.response(&mut c);
        assert_eq!(raw(&r.raw), ok_json(UNKNOWN));
    }
    // An idle kept-alive connection is neither answered nor closed.
    d.expect_quiet(&mut c, Duration::from_millis(50));
    d.send(&c, &post_api(UNKNOWN_BODY));
    assert_eq!(raw(&d.response(&mut c).raw), ok_json(UNKNOWN));
}

fn other_paths_are_404_and_the_connection_stays_open(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    // (`/` is the web console's page: conformance_console.rs.)
    for path in ["/console", "/api/", "/API", "/apix"] {
        d.send(
            &c,
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{UNKNOWN_BODY}",
                UNKNOWN_BODY.len()
            )
            .as_bytes(),
        );
        let r = d.response(&mut c);
        assert_eq!(
            raw(&r.raw),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\n\r\nNot found",
            "{path}"
        );
    }
    d.send(&c, &post_api(UNKNOWN_BODY));
    assert_eq!(raw(&d.response(&mut c).raw), ok_json(UNKNOWN));
}

fn a_body_over_the_configured_max_body_is_413_and_close(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    // Exactly the limit is accepted...
    let body = format!(
        "{UNKNOWN_BODY}{}",
        " ".repeat(MAX_BODY - UNKNOWN_BODY.len())
    );
    d.send(&c, &post_api(&body));
    assert_eq!(raw(&d.response(&mut c).raw), ok_json(UNKNOWN));
    // ...one byte more is refused from the head alone, before the body is sent.
    d.send(
        &c,
        format!(
            "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        )
        .as_bytes(),
    );
    let r = d.response(&mut c);
    assert_eq!(
        raw(&r.raw),
        "HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 17\r\nConnection: close\r\n\r\nPayload Too Large"
    );
    d.expect_eof(&mut c);
}

fn a_413_is_delivered_even_with_the_refused_body_already_sent(d: &mut dyn Driver) {
    // The agent closes with the body unread; a runtime that closed the socket at once would
    // make the kernel answer those bytes with a reset, which can destroy the 413 before
    // the client reads it. Runtimes linger (read and drop) instead.
    let mut c = d.connect(Listener::Http);
    let body = "x".repeat(32 * 1024);
    d.send(
        &c,
        format!(
            "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = d.response(&mut c);
    assert_eq!(
        raw(&r.raw),
        "HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 17\r\nConnection: close\r\n\r\nPayload Too Large"
    );
    d.expect_eof(&mut c);
}

fn connection_close_is_answered_then_closed(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    d.send(
        &c,
        format!(
            "POST /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{UNKNOWN_BODY}",
            UNKNOWN_BODY.len()
        )
        .as_bytes(),
    );
    let r = d.response(&mut c);
    assert_eq!(
        raw(&r.raw),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{UNKNOWN}",
            UNKNOWN.len()
        )
    );
    d.expect_eof(&mut c);
}

fn a_request_then_eof_is_answered_then_closed(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    d.send(&c, &post_api(UNKNOWN_BODY));
    d.shutdown_write(&c);
    assert_eq!(raw(&d.response(&mut c).raw), ok_json(UNKNOWN));
    d.expect_eof(&mut c);
}

fn eof_while_a_pull_is_parked_answers_it_then_closes(d: &mut dyn Driver) {
    let (sid, cid) = init_session(d);
    pull(d, &sid, &cid);
    let mut c = d.connect(Listener::Http);
    d.send(&c, &post_api(&pull_body(&sid, &cid)));
    d.shutdown_write(&c);
    // EOF is not a reset: the pull stays parked for its whole timeout, then is answered.
    d.expect_quiet(&mut c, Duration::from_millis(250));
    let r = d.response(&mut c);
    let body = pull_answer(&sid, &cid, &[]);
    assert_eq!(
        raw(&r.raw),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    );
    d.expect_eof(&mut c);
}

/// `connections_closed` from `exec stats`.
fn connections_closed(d: &mut dyn Driver) -> u64 {
    let v = json(&d.api(r#"{"action":"exec","command":"stats"}"#));
    let closed = &v["body"]["results"][0]["stats"]["agent"]["connections_closed"];
    closed
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{v}"))
}

fn reset_while_a_pull_is_parked_frees_the_consumer_for_the_next_pull(d: &mut dyn Driver) {
    let (sid, cid) = init_session(d);
    pull(d, &sid, &cid);
    let first = d.connect(Listener::Http);
    d.send(&first, &post_api(&pull_body(&sid, &cid)));
    d.wait(Duration::from_millis(50));
    let closed = connections_closed(d);
    d.reset(&first);
    // Wait until the agent has seen the reset (the parked pull would hold its connection
    // for a minute).
    let deadline = d.elapsed() + tandem_tests::driver::DEADLINE;
    while connections_closed(d) == closed {
        assert!(
            d.elapsed() < deadline,
            "{}: the reset connection was not released",
            d.name()
        );
        d.wait(Duration::from_millis(10));
    }
    // Not the immediate empty answer of a second concurrent pull: this one parks...
    let mut second = d.connect(Listener::Http);
    d.send(&second, &post_api(&pull_body(&sid, &cid)));
    d.expect_quiet(&mut second, Duration::from_millis(100));
    // ...and receives what arrives next (an `exec`'s results go to its response, its
    // input statuses to the consumers).
    let v = json(&d.api(&format!(
        r#"{{"action":"exec","command":"version","sessionId":"{sid}"}}"#
    )));
    assert_eq!(v["state"], "SUCCEEDED", "{v}");
    let r = d.response(&mut second);
    assert_eq!(
        r.text(),
        pull_answer(&sid, &cid, &[ALLOW_INTERRUPT.into(), ALLOW_INPUT.into()])
    );
}

fn many_requests_pipelined_behind_a_parked_pull_are_all_answered_in_order(d: &mut dyn Driver) {
    // 100 requests of about 1 KiB behind a parked pull: far more than the agent buffers,
    // so it stops reading and must resume on its own once the pull is answered (an
    // edge-triggered runtime gets no new readiness for bytes already in the socket).
    const N: usize = 100;
    let (sid, cid) = init_session(d);
    pull(d, &sid, &cid);
    let mut c = d.connect(Listener::Http);
    let pad = "p".repeat(1000);
    let mut bytes = post_api(&pull_body(&sid, &cid));
    for i in 0..N {
        bytes.extend(post_api(&format!(
            r#"{{"action":"x","requestId":"{i}-{pad}"}}"#
        )));
    }
    d.send(&c, &bytes);
    d.expect_quiet(&mut c, Duration::from_millis(250));
    let r = d.responses(&mut c, N + 1);
    assert_eq!(raw(&r[0].raw), ok_json(&pull_answer(&sid, &cid, &[])));
    for (i, r) in r[1..].iter().enumerate() {
        assert_eq!(
            raw(&r.raw),
            ok_json(&format!(
                r#"{{"message":"unknown action: x","requestId":"{i}-{pad}","state":"FAILED"}}"#
            )),
            "{}: answer {i}",
            d.name()
        );
    }
    d.expect_quiet(&mut c, Duration::from_millis(50));
}

fn answers_beyond_max_tx_wait_for_the_client_and_all_arrive_in_order(d: &mut dyn Driver) {
    // 1 000 answers of 1 KiB on a connection whose output may queue 1 KiB: the agent stops
    // reading requests whenever its answers wait, and resumes as they are written.
    const N: usize = 1000;
    let mut c = d.connect(Listener::Http);
    let pad = "q".repeat(1000);
    let mut bytes = Vec::new();
    for i in 0..N {
        bytes.extend(post_api(&format!(
            r#"{{"action":"x","requestId":"{i}-{pad}"}}"#
        )));
    }
    d.send(&c, &bytes);
    for i in 0..N {
        let r = d.response(&mut c);
        assert_eq!(
            raw(&r.raw),
            ok_json(&format!(
                r#"{{"message":"unknown action: x","requestId":"{i}-{pad}","state":"FAILED"}}"#
            )),
            "{}: answer {i}",
            d.name()
        );
    }
    d.expect_quiet(&mut c, Duration::from_millis(20));
}

fn expect_100_continue_is_answered_before_the_body_is_sent(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    d.send(
        &c,
        format!(
            "POST /api HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            UNKNOWN_BODY.len()
        )
        .as_bytes(),
    );
    assert_eq!(
        raw(&d.response(&mut c).raw),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    d.send(&c, &UNKNOWN_BODY.as_bytes()[..3]);
    d.expect_quiet(&mut c, Duration::from_millis(50));
    d.send(&c, &UNKNOWN_BODY.as_bytes()[3..]);
    assert_eq!(raw(&d.response(&mut c).raw), ok_json(UNKNOWN));
}

fn a_request_dribbled_byte_by_byte_is_answered(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Http);
    let request = post_api(UNKNOWN_BODY);
    for b in request.chunks(1) {
        d.send(&c, b);
    }
    assert_eq!(raw(&d.response(&mut c).raw), ok_json(UNKNOWN));
    d.expect_quiet(&mut c, Duration::from_millis(20));
}

fn exec_stats_on_a_fresh_agent_counts_exactly_its_own_request(d: &mut dyn Driver) {
    let body = r#"{"action":"exec","command":"stats"}"#;
    let text = d.api(body);
    let v = json(&text);
    let sid = v["sessionId"].as_str().expect("sessionId");
    let runtime = v["body"]["results"][0]["stats"]["runtime"]["runtime"]
        .as_str()
        .expect("runtime name");
    // The one thing that names the driver.
    let want_runtime = match d.name() {
        "memory" => "sim".to_string(),
        "smol" => format!("tandem-smol {VERSION}"),
        _ => format!("tandem-mio {VERSION}"),
    };
    assert_eq!(runtime, want_runtime);
    let item = format!(
        concat!(
            r#"{{"jobId":1,"stats":{{"#,
            r#""agent":{{"bytes_discarded":"0","connections_accepted":"1","connections_closed":"0","connections_refused":"0","connections_stalled":"0","jobs":"1","jobs_started":"1","name":"conformance-node","reloads":"0","sessions":"1","sessions_created":"1"}},"#,
            r#""build":{{"version":"{v}"}},"#,
            r#""gossip":{{"bad_datagrams":"0","coordinate_samples":"0","coordinates_rejected":"0","datagrams_dropped":"0","datagrams_in":"0","datagrams_out":"0","decrypt_failures":"0","events_dropped":"0","members_refused":"0","stranger_claims":"0"}},"#,
            r#""http":{{"api_failed":"0","api_interrupted":"0","api_refused":"0","api_succeeded":"0","bytes_in":"{n}","bytes_out":"0","consumers_expired":"0","errors":"0","requests":"1","sessions_evicted":"0","sessions_expired":"0"}},"#,
            r#""rpc":{{"decode_errors":"0","records_dropped":"0","replies":"0","requests":"0"}},"#,
            r#""runtime":{{"pid":"{pid}","runtime":"{runtime}"}}"#,
            r#"}},"type":"stats"}}"#
        ),
        v = VERSION,
        n = post_api(body).len(),
        pid = d.pid(),
        runtime = want_runtime,
    );
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"stats","jobId":1,"jobStatus":"TERMINATED","results":[{item},{{"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":false}},"sessionId":"{sid}","state":"SUCCEEDED"}}"#
        )
    );
}

fn exec_members_lists_this_node_as_rpc_members_does(d: &mut dyn Driver) {
    let lan = d.lan_addr();
    let text = d.api(r#"{"action":"exec","command":"members"}"#);
    let sid = json(&text)["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string();
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"command":"members","jobId":1,"jobStatus":"TERMINATED","results":[{{"jobId":1,"members":[{{"Addr":"{ip}","DelegateCur":5,"DelegateMax":5,"DelegateMin":2,"Name":"conformance-node","Port":{port},"ProtocolCur":2,"ProtocolMax":5,"ProtocolMin":1,"Status":"alive","Tags":{{"build":"{VERSION}","dc":"dc1","role":"node","vsn":"2"}}}}],"type":"members"}},{{"jobId":1,"statusCode":0,"type":"status"}}],"timeExpired":false}},"sessionId":"{sid}","state":"SUCCEEDED"}}"#,
            ip = lan.ip(),
            port = lan.port()
        )
    );
}

fn connections_beyond_max_connections_get_503_or_are_closed(d: &mut dyn Driver) {
    // The limit is per listener: two HTTP and two RPC connections are served.
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = d.connect(Listener::Http);
        d.send(&c, &post_api(UNKNOWN_BODY));
        assert_eq!(raw(&d.response(&mut c).raw), ok_json(UNKNOWN));
        open.push(c);
    }
    // Two RPC connections the agent owes something (a monitor each): an idle one would be
    // closed to make room for the third (see `hardening_rpc_admission`).
    let _rpc = [0, 1].map(|_| {
        let mut c = handshaken(d);
        d.send(
            &c,
            &req_with("monitor", 1, &map(&[("LogLevel", "ERR".into())])),
        );
        assert_eq!(d.rpc_values(&mut c, 1), reply(1, ""));
        c
    });
    // A third HTTP connection is told why, before it sends anything, then closed; its
    // request is read and thrown away, so it sees the answer and a FIN, not a reset.
    let mut third = d.connect(Listener::Http);
    d.send(&third, &post_api(UNKNOWN_BODY));
    let r = d.response(&mut third);
    assert_eq!(
        raw(&r.raw),
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 41\r\nConnection: close\r\n\r\n\
         Service Unavailable: too many connections",
        "{}",
        d.name()
    );
    d.expect_eof(&mut third);
    // A third RPC connection is closed at once: the RPC cannot say why before a handshake.
    // The runtimes drop a refused socket without lingering, so a client whose request was
    // already on its way may see a reset instead of a FIN; nothing is lost either way.
    let mut third_rpc = d.connect(Listener::Rpc);
    d.send(&third_rpc, &hex(HANDSHAKE));
    d.expect_closed_or_reset(&mut third_rpc);
    // Once one closes, a new connection is served again.
    let mut first = open.remove(0);
    d.shutdown_write(&first);
    d.expect_eof(&mut first);
    let mut again = d.connect(Listener::Http);
    d.send(&again, &post_api(UNKNOWN_BODY));
    assert_eq!(raw(&d.response(&mut again).raw), ok_json(UNKNOWN));
    d.send(&again, &post_api(r#"{"action":"exec","command":"stats"}"#));
    let v = d.response(&mut again).json();
    assert_eq!(
        v["body"]["results"][0]["stats"]["agent"]["connections_refused"],
        "2",
        "{}: {v}",
        d.name()
    );
}

// ----- the agent RPC ---------------------------------------------------------------------

/// §5.1: `{"Command":"handshake","Seq":0}` `{"Version":1}`.
const HANDSHAKE: &str = "82a7436f6d6d616e64a968616e647368616b65a353657100 81a756657273696f6e01";

/// A fresh RPC connection after a successful handshake, its reply checked.
/// Issue 14's flood, scaled to `max_sessions` 8: three times as many `init_session` as the
/// table holds, pipelined on one connection, then a one-time `exec`.
fn a_flood_of_init_session_refuses_neither_exec_nor_a_used_session(d: &mut dyn Driver) {
    let (mine, _) = init_session(d);
    let join = d.api(&format!(
        r#"{{"action":"join_session","sessionId":"{mine}"}}"#
    ));
    assert_eq!(json(&join)["state"], "SUCCEEDED", "{join}");
    let mut c = d.connect(Listener::Http);
    let flood = post_api(r#"{"action":"init_session"}"#).repeat(3 * MAX_SESSIONS);
    d.send(&c, &flood);
    for r in d.responses(&mut c, 3 * MAX_SESSIONS) {
        assert_eq!(json(r.text())["state"], "SUCCEEDED", "{}", r.text());
    }
    exec_version_is_answered_with_the_exact_envelope(d);
    let v = json(&d.api(&format!(
        r#"{{"action":"exec","command":"echo still-here","sessionId":"{mine}"}}"#
    )));
    assert_eq!(v["state"], "SUCCEEDED", "{v}");
    assert_eq!(v["body"]["results"][0]["message"], "still-here");
    let stats = json(&d.api(r#"{"action":"exec","command":"stats"}"#));
    let stats = &stats["body"]["results"][0]["stats"];
    assert_eq!(stats["http"]["sessions_evicted"], "17", "{stats}");
}

fn handshaken(d: &mut dyn Driver) -> Conn {
    let mut c = d.connect(Listener::Rpc);
    d.send(&c, &hex(HANDSHAKE));
    assert_bytes(&d.rpc_values(&mut c, 1), &hex(HANDSHAKE_OK));
    c
}

/// Sends `request` on `c` and reads `n` msgpack values back.
fn call(d: &mut dyn Driver, c: &mut Conn, request: &[u8], n: usize) -> Vec<u8> {
    d.send(c, request);
    d.rpc_values(c, n)
}

fn join(seq: u64, existing: &[&str], wan: bool) -> Vec<u8> {
    req_with(
        "join",
        seq,
        &map(&[("Existing", support::strs(existing)), ("WAN", wan.into())]),
    )
}

fn rpc_handshake_is_answered_with_the_serf_transcript_bytes(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Rpc);
    let bytes = hex(HANDSHAKE);
    // Header and body in two writes: nothing comes back before the body.
    d.send(&c, &bytes[..24]);
    d.expect_quiet(&mut c, Duration::from_millis(50));
    d.send(&c, &bytes[24..]);
    assert_bytes(&d.rpc_values(&mut c, 1), &hex("82a54572726f72a0a353657100"));
    assert_bytes(
        &call(d, &mut c, &support::handshake(1), 1),
        &reply(1, "Handshake already performed"),
    );
}

fn rpc_command_before_the_handshake_is_refused_and_closed(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Rpc);
    // §5.2: {"Command":"members","Seq":1} → {"Error":"Handshake required","Seq":1}, EOF.
    let got = call(
        d,
        &mut c,
        &hex("82a7436f6d6d616e64a76d656d62657273a353657101"),
        1,
    );
    assert_bytes(
        &got,
        &hex("82a54572726f72b248616e647368616b65207265717569726564a353657101"),
    );
    d.expect_eof(&mut c);
}

fn rpc_requests_pipelined_behind_handshake_required_are_not_answered(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Rpc);
    let mut bytes = req("members", 1);
    bytes.extend(support::handshake(2));
    bytes.extend(req("stats", 3));
    d.send(&c, &bytes);
    assert_bytes(&d.rpc_values(&mut c, 1), &reply(1, "Handshake required"));
    d.expect_eof(&mut c);
}

fn rpc_unsupported_command_is_refused_and_closed(d: &mut dyn Driver) {
    let mut c = handshaken(d);
    // §5.2: {"Command":"bogus","Seq":2} → {"Error":"Unsupported command","Seq":2}, EOF.
    let got = call(
        d,
        &mut c,
        &hex("82a7436f6d6d616e64a5626f677573a353657102"),
        1,
    );
    assert_bytes(
        &got,
        &hex("82a54572726f72b3556e737570706f7274656420636f6d6d616e64a353657102"),
    );
    d.expect_eof(&mut c);
}

fn rpc_requests_coalesced_in_one_write_are_answered_in_order(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Rpc);
    let mut bytes = hex(HANDSHAKE);
    bytes.extend(join(1, &[], false));
    bytes.extend(req_with("stop", 2, &map(&[("Stop", 99u64.into())])));
    bytes.extend(support::handshake(3));
    let mut want = hex(HANDSHAKE_OK);
    want.extend(reply_with(1, "", &map(&[("Num", 0u64.into())])));
    want.extend(reply(2, ""));
    want.extend(reply(3, "Handshake already performed"));
    assert_bytes(&call(d, &mut c, &bytes, 5), &want);
}

fn rpc_handshake_dribbled_byte_by_byte_is_answered(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Rpc);
    let mut bytes = hex(HANDSHAKE);
    bytes.extend(join(1, &[], false));
    for b in bytes.chunks(1) {
        d.send(&c, b);
    }
    let mut want = hex(HANDSHAKE_OK);
    want.extend(reply_with(1, "", &map(&[("Num", 0u64.into())])));
    assert_bytes(&d.rpc_values(&mut c, 3), &want);
}

fn rpc_eof_answers_whole_requests_then_closes_without_a_partial_reply(d: &mut dyn Driver) {
    let mut c = d.connect(Listener::Rpc);
    let mut bytes = hex(HANDSHAKE);
    let members = req("members", 1);
    bytes.extend(&members[..members.len() - 1]);
    d.send(&c, &bytes);
    d.shutdown_write(&c);
    assert_bytes(&d.rpc_values(&mut c, 1), &hex(HANDSHAKE_OK));
    d.expect_eof(&mut c);
}

fn rpc_members_lists_one_alive_member_named_by_the_config(d: &mut dyn Driver) {
    let mut c = handshaken(d);
    let got = call(d, &mut c, &req("members", 1), 2);
    let lan = d.lan_addr();
    let std::net::IpAddr::V4(ip) = lan.ip() else {
        panic!("{lan}")
    };
    // The whole reply, from the configuration and the driver's bound gossip address.
    let fields = [
        ("Addr", V::B(ip.octets().to_vec())),
        ("DelegateCur", 5u64.into()),
        ("DelegateMax", 5u64.into()),
        ("DelegateMin", 2u64.into()),
        ("Name", "conformance-node".into()),
        ("Port", u64::from(lan.port()).into()),
        ("ProtocolCur", 2u64.into()),
        ("ProtocolMax", 5u64.into()),
        ("ProtocolMin", 1u64.into()),
        ("Status", "alive".into()),
        (
            "Tags",
            map(&[
                ("build", VERSION.into()),
                ("dc", "dc1".into()),
                ("role", "node".into()),
                ("vsn", "2".into()),
            ]),
        ),
    ];
    let mut want = reply(1, "");
    want.extend(enc(&map(&[("Members", V::A(vec![map(&fields)]))])));
    assert_bytes(&got, &want);
}

/// `get-coordinate` (spec §3): this node's own coordinate is known from the start (a fresh
/// one: the origin, error 1.5, height 10 µs, as Serf's `NewCoordinate`); an unknown node is
/// `Ok: false` with a zeroed `Coord` whose `Vec` is nil. Exact bytes, float64s as `cb`.
fn rpc_get_coordinate_answers_serfs_shape_for_self_and_unknown_nodes(d: &mut dyn Driver) {
    let mut c = handshaken(d);
    let coord = |vec: V, error: f64, height: f64| {
        map(&[
            ("Adjustment", V::F(0.0)),
            ("Error", V::F(error)),
            ("Height", V::F(height)),
            ("Vec", vec),
        ])
    };
    let request =
        |seq: u64, node: &str| req_with("get-coordinate", seq, &map(&[("Node", node.into())]));
    let own = map(&[
        ("Coord", coord(V::A(vec![V::F(0.0); 8]), 1.5, 10.0e-6)),
        ("Ok", true.into()),
    ]);
    let got = call(d, &mut c, &request(2, "conformance-node"), 2);
    assert_bytes(&got, &reply_with(2, "", &own));
    let unknown = map(&[("Coord", coord(V::Nil, 0.0, 0.0)), ("Ok", false.into())]);
    let got = call(d, &mut c, &request(3, "nobody"), 2);
    assert_bytes(&got, &reply_with(3, "", &unknown));
    // Serf's `serf rtt` sends exactly this; an empty body is an unknown (empty) name.
    let got = call(d, &mut c, &req_with("get-coordinate", 4, &map(&[])), 2);
    assert_bytes(&got, &reply_with(4, "", &unknown));
    // The connection stays usable.
    let got = call(d, &mut c, &request(5, "conformance-node"), 2);
    assert_bytes(&got, &reply_with(5, "", &own));
}

fn rpc_stats_is_sections_of_string_leaves(d: &mut dyn Driver) {
    let mut c = handshaken(d);
    let got = call(d, &mut c, &req("stats", 2), 2);
    support::assert_go_encoded(&got);
    let vals = support::values(&got);
    assert_eq!(vals[0], map(&[("Error", "".into()), ("Seq", 2u64.into())]));
    let body = &vals[1];
    let mut sections = Vec::new();
    for (section, entries) in body.map() {
        for (k, v) in entries.map() {
            assert!(
                matches!((k, v), (V::S(_), V::S(_))),
                "{}: {section:?}.{k:?} = {v:?}: stats leaves are strings",
                d.name()
            );
        }
        sections.push(section.str().to_string());
    }
    for want in ["agent", "build", "runtime", "serf_lan"] {
        assert!(sections.iter().any(|s| s == want), "{want} in {sections:?}");
    }
    assert!(!sections.iter().any(|s| s == "serf_wan"), "{sections:?}");
    assert_eq!(body.get("agent").get("name").str(), "conformance-node");
    assert_eq!(body.get("build").get("version").str(), VERSION);
    assert_eq!(body.get("serf_lan").get("members").str(), "1");
    // Serf's own sections, with Serf's keys (spec §3 `stats`).
    let serf = body.get("serf");
    let keys: Vec<&str> = serf.map().iter().map(|(k, _)| k.str()).collect();
    assert_eq!(
        keys,
        [
            "coordinate_resets",
            "encrypted",
            "event_queue",
            "event_time",
            "failed",
            "health_score",
            "intent_queue",
            "left",
            "member_time",
            "members",
            "query_queue",
            "query_time",
        ]
    );
    for (k, want) in [
        ("members", "1"),
        ("failed", "0"),
        ("left", "0"),
        ("encrypted", "false"),
        ("event_time", "1"),
        ("query_time", "1"),
        ("health_score", "0"),
    ] {
        assert_eq!(serf.get(k).str(), want, "serf.{k}");
    }
    assert_eq!(body.get("tags").get("role").str(), "node");
    assert_eq!(body.get("tags").get("dc").str(), "dc1");
    assert!(
        body.get("event_handlers").map().is_empty(),
        "none configured"
    );
}

/// A members-filtered request with an invalid regular expression: the agent logs an ERR
/// record and closes that connection without a reply.
fn bad_filter(d: &mut dyn Driver) {
    let mut c = handshaken(d);
    let request = req_with(
        "members-filtered",
        1,
        &map(&[
            ("Name", "(".into()),
            ("Status", "".into()),
            ("Tags", V::M(vec![])),
        ]),
    );
    d.send(&c, &request);
    d.expect_eof(&mut c);
}

fn rpc_monitor_streams_records_until_stopped(d: &mut dyn Driver) {
    const TEXT: &str = " [ERR] agent.ipc: failed to compile regex in members-filtered";
    let mut m = handshaken(d);
    // §5.7's acknowledgement; no agent logs an error on its own, so none is replayed.
    let got = call(
        d,
        &mut m,
        &req_with("monitor", 1, &map(&[("LogLevel", "err".into())])),
        1,
    );
    assert_bytes(&got, &reply(1, ""));
    d.expect_quiet(&mut m, Duration::from_millis(50));
    bad_filter(d);
    let got = d.rpc_values(&mut m, 2);
    let vals = support::values(&got);
    let line = vals[1].get("Log").str();
    // `YYYY/MM/DD hh:mm:ss` of the driver's wall clock, then the record.
    let (date, text) = line.split_at(19);
    assert!(
        date.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'/',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        }),
        "{}: {line:?}",
        d.name()
    );
    assert_eq!(text, TEXT, "{}", d.name());
    assert_bytes(
        &got,
        &reply_with(
            1,
            "",
            &map(&[("Log", format!("{date}{TEXT}").as_str().into())]),
        ),
    );
    // §5.7: stop the monitor's Seq; later records are not sent.
    assert_bytes(
        &call(
            d,
            &mut m,
            &hex("82a7436f6d6d616e64a473746f70a353657104 81a453746f7001"),
            1,
        ),
        &hex("82a54572726f72a0a353657104"),
    );
    bad_filter(d);
    d.expect_quiet(&mut m, Duration::from_millis(100));
}

fn rpc_event_reaches_a_stream_on_another_connection(d: &mut dyn Driver) {
    let mut s = handshaken(d);
    assert_bytes(
        &call(
            d,
            &mut s,
            &req_with("stream", 10, &map(&[("Type", "user".into())])),
            1,
        ),
        &reply(10, ""),
    );
    let mut a = handshaken(d);
    // §5.8: {"Command":"event","Seq":1} {"Name":"deploy","Payload":bin"9c45b87","Coalesce":true}
    let mut request = req("event", 1);
    request.extend(hex(
        "83a44e616d65a66465706c6f79a75061796c6f6164c40739633435623837a8436f616c65736365c3",
    ));
    assert_bytes(&call(d, &mut a, &request, 1), &reply(1, ""));
    // §5.8's record with a fresh agent's first LTime (1 where the transcript had 3).
    assert_bytes(
        &d.rpc_values(&mut s, 2),
        &hex("82a54572726f72a0a35365710a \
             85a8436f616c65736365c3a54576656e74a475736572a54c54696d6501a44e616d65a66465706c6f79\
             a75061796c6f6164c40739633435623837"),
    );
    // The sender does not get its own event on a connection without a stream.
    d.expect_quiet(&mut a, Duration::from_millis(50));
}

/// A query record on the query's Seq: `{"From","Payload","Type"}`.
fn query_record(seq: u64, from: &str, payload: Option<&[u8]>, kind: &str) -> Vec<u8> {
    let mut out = reply(seq, "");
    out.extend(enc(&map(&[
        ("From", from.into()),
        ("Payload", payload.map_or(V::Nil, |p| V::B(p.to_vec()))),
        ("Type", kind.into()),
    ])));
    out
}

fn rpc_query_is_acked_answered_on_a_stream_and_done_at_its_timeout(d: &mut dyn Driver) {
    let node = "conformance-node";
    let mut s = handshaken(d);
    assert_bytes(
        &call(
            d,
            &mut s,
            &req_with("stream", 10, &map(&[("Type", "query:load".into())])),
            1,
        ),
        &reply(10, ""),
    );
    let mut a = handshaken(d);
    // §5.8's query with a 0.3 s Timeout (ce 11e1a300):
    // {"FilterNodes":[],"FilterTags":{},"RequestAck":true,"RelayFactor":0,
    //  "Timeout":300000000,"Name":"load","Payload":bin"15m"}
    let mut request = req("query", 3);
    request.extend(hex(
        "87ab46696c7465724e6f64657390aa46696c7465725461677380aa5265717565737441636bc3\
         ab52656c6179466163746f7200a754696d656f7574ce11e1a300a44e616d65a46c6f6164\
         a75061796c6f6164c40331356d",
    ));
    let started = d.elapsed();
    let mut want = reply(3, "");
    // The querying node acks its own query.
    want.extend(query_record(3, node, None, "ack"));
    assert_bytes(&call(d, &mut a, &request, 3), &want);
    // §5.8's stream record, with a fresh agent's first query LTime (1).
    assert_bytes(
        &d.rpc_values(&mut s, 2),
        &hex("82a54572726f72a0a35365710a \
              85a54576656e74a57175657279a2494401a54c54696d6501a44e616d65a46c6f6164\
              a75061796c6f6164c40331356d"),
    );
    // {"ID":1,"Payload":bin"1.02"}
    let mut respond = req("respond", 12);
    respond.extend(hex("82a2494401a75061796c6f6164c404312e3032"));
    assert_bytes(&call(d, &mut s, &respond, 1), &reply(12, ""));
    assert_bytes(
        &d.rpc_values(&mut a, 2),
        &query_record(3, node, Some(b"1.02"), "response"),
    );
    let mut again = req("respond", 13);
    again.extend(hex("82a2494401a75061796c6f6164c401 78"));
    assert_bytes(
        &call(d, &mut s, &again, 1),
        &reply(13, "Response already sent"),
    );
    let mut unknown = req("respond", 14);
    unknown.extend(hex("82a2494409a75061796c6f6164c0"));
    assert_bytes(
        &call(d, &mut s, &unknown, 1),
        &reply(14, "No pending queries matching ID"),
    );
    assert_bytes(&d.rpc_values(&mut a, 2), &query_record(3, "", None, "done"));
    let took = d.elapsed() - started;
    assert!(
        took >= Duration::from_millis(300),
        "done comes at the timeout, not before: {took:?}"
    );
    // A query of another name does not reach the `query:load` stream; internal names are
    // refused, `_serf_ping` without a payload is not.
    let internal = req_with(
        "query",
        4,
        &map(&[
            ("Name", "_serf_x".into()),
            ("Timeout", 100_000_000u64.into()),
        ]),
    );
    assert_bytes(
        &call(d, &mut a, &internal, 1),
        &reply(4, "Queries cannot contain the '_serf_' prefix"),
    );
    let ping = req_with(
        "query",
        5,
        &map(&[
            ("Name", "_serf_ping".into()),
            ("RequestAck", true.into()),
            ("Timeout", 100_000_000u64.into()),
        ]),
    );
    let mut want = reply(5, "");
    want.extend(query_record(5, node, None, "ack"));
    want.extend(query_record(5, "", None, "done"));
    assert_bytes(&call(d, &mut a, &ping, 5), &want);
    d.expect_quiet(&mut s, Duration::from_millis(50));
}

fn rpc_auth_gates_commands_until_the_configured_key(d: &mut dyn Driver) {
    let auth = |seq: u64, key: &str| req_with("auth", seq, &map(&[("AuthKey", key.into())]));
    let mut c = handshaken(d);
    assert_bytes(
        &call(d, &mut c, &req("members", 1), 1),
        &hex("82a54572726f72b7 41757468656e7469636174696f6e207265717569726564 a353657101"),
    );
    assert_bytes(
        &call(d, &mut c, &auth(2, "nope"), 1),
        &reply(2, "Invalid authentication token"),
    );
    assert_bytes(
        &call(d, &mut c, &req("stats", 3), 1),
        &reply(3, "Authentication required"),
    );
    assert_bytes(&call(d, &mut c, &auth(4, AUTH_KEY), 1), &reply(4, ""));
    let got = call(d, &mut c, &req("members", 5), 2);
    assert_bytes(&got[..reply(5, "").len()], &reply(5, ""));
    // Auth is per connection.
    let mut other = handshaken(d);
    assert_bytes(
        &call(d, &mut other, &req("members", 1), 1),
        &reply(1, "Authentication required"),
    );
}

fn rpc_join_of_nothing_is_num_zero(d: &mut dyn Driver) {
    let mut c = handshaken(d);
    let got = call(d, &mut c, &join(2, &[], false), 2);
    let mut want = reply(2, "");
    want.extend(hex("81a34e756d00"));
    assert_bytes(&got, &want);
}

fn rpc_wan_join_on_a_client_is_refused(d: &mut dyn Driver) {
    let mut c = handshaken(d);
    let got = call(d, &mut c, &join(2, &["10.0.0.1:8302"], true), 2);
    let mut want = reply(2, "Must be a server to join WAN cluster");
    want.extend(hex("81a34e756d00"));
    assert_bytes(&got, &want);
    // The connection stays usable.
    let got = call(d, &mut c, &join(3, &[], false), 2);
    assert_bytes(&got[..reply(3, "").len()], &reply(3, ""));
}

// ----- keyring commands ----------------------------------------------------------------

/// A key command's request (`list-keys` has no body).
fn key_request(cmd: &str, seq: u64, key: Option<&str>) -> Vec<u8> {
    match key {
        Some(k) => req_with(cmd, seq, &map(&[("Key", k.into())])),
        None => req(cmd, seq),
    }
}

/// Serf's key reply: header, then `{"Keys","Messages","NumErr","NumNodes","NumResp"}`.
fn key_reply(
    seq: u64,
    error: &str,
    keys: Option<&[(&str, u64)]>,
    messages: &[(&str, &str)],
) -> Vec<u8> {
    let keys = match keys {
        Some(list) => V::M(
            list.iter()
                .map(|(k, n)| (V::from(*k), V::from(*n)))
                .collect(),
        ),
        None => V::Nil,
    };
    let messages = V::M(
        messages
            .iter()
            .map(|(node, text)| (V::from(*node), V::from(*text)))
            .collect(),
    );
    let (nodes, errs) = (1u64, messages_len(&messages));
    reply_with(
        seq,
        error,
        &map(&[
            ("Keys", keys),
            ("Messages", messages),
            ("NumErr", errs.into()),
            ("NumNodes", nodes.into()),
            ("NumResp", 1u64.into()),
        ]),
    )
}

fn messages_len(v: &V) -> u64 {
    match v {
        V::M(m) => m.len() as u64,
        _ => 0,
    }
}

fn rpc_key_commands_rotate_the_keyring_of_an_encrypted_node(d: &mut dyn Driver) {
    let mut c = handshaken(d);
    let steps: [(&str, Option<&str>, Vec<u8>); 7] = [
        ("list-keys", None, key_reply(1, "", Some(&[(K1, 1)]), &[])),
        ("install-key", Some(K2), key_reply(2, "", None, &[])),
        (
            "list-keys",
            None,
            key_reply(3, "", Some(&[(K1, 1), (K2, 1)]), &[]),
        ),
        ("use-key", Some(K2), key_reply(4, "", None, &[])),
        (
            "remove-key",
            Some(K2),
            key_reply(
                5,
                "1/1 nodes reported failure",
                None,
                &[(
                    "conformance-node",
                    "Removing the primary key is not allowed",
                )],
            ),
        ),
        ("remove-key", Some(K1), key_reply(6, "", None, &[])),
        ("list-keys", None, key_reply(7, "", Some(&[(K2, 1)]), &[])),
    ];
    for (i, (cmd, key, want)) in steps.iter().enumerate() {
        let got = call(d, &mut c, &key_request(cmd, i as u64 + 1, *key), 2);
        assert_bytes(&got, want);
    }
    // Not base64: the origin's own refusal, with nobody asked.
    let got = call(d, &mut c, &key_request("use-key", 8, Some("notbase64!")), 2);
    let mut want = reply(8, "illegal base64 data at input byte 9");
    want.extend(enc(&map(&[
        ("Keys", V::Nil),
        ("Messages", V::M(Vec::new())),
        ("NumErr", 0u64.into()),
        ("NumNodes", 0u64.into()),
        ("NumResp", 0u64.into()),
    ])));
    assert_bytes(&got, &want);
}

fn rpc_key_commands_without_encryption_report_serfs_failure(d: &mut dyn Driver) {
    let mut c = handshaken(d);
    let failure = "1/1 nodes reported failure";
    let got = call(d, &mut c, &key_request("list-keys", 1, None), 2);
    let empty = [(
        "conformance-node",
        "Keyring is empty (encryption not enabled)",
    )];
    assert_bytes(&got, &key_reply(1, failure, Some(&[]), &empty));
    let nothing = [(
        "conformance-node",
        "No keyring to modify (encryption not enabled)",
    )];
    for (seq, cmd) in [(2, "install-key"), (3, "use-key"), (4, "remove-key")] {
        let got = call(d, &mut c, &key_request(cmd, seq, Some(K1)), 2);
        assert_bytes(&got, &key_reply(seq, failure, None, &nothing));
    }
}
