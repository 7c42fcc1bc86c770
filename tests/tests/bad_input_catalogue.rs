//! The bad-input catalogue (issue #6, item 4): one table of hostile and malformed inputs to
//! every surface of the agent — the HTTP framing, the JSON API, the agent RPC, the gossip
//! port and event handler definitions — each with its exact answer and what becomes of the
//! connection afterwards; and the `-snapshot` file the agent reads at start, each hostile
//! line skipped and counted.
//!
//! Every row runs on a fresh connection, on the in-memory driver and on both runtimes
//! (`row_group × driver`, one test each). An answer is compared byte for byte; "open" is
//! proven by a well-formed request on the same connection being answered, "closed" by an
//! orderly FIN with nothing more written. Between rows a well-behaved client, on connections
//! of its own opened before the first hostile byte, keeps asking `exec version` (HTTP) and
//! `members` (RPC) and must keep getting the exact answers.
//!
//! A row that fails is reported with its name and the run goes on, so one run shows every
//! deviation. A row whose answer is wrong in the agent today stays in the table with the
//! correct expectation and is listed, with the reason, in [`SKIPPED`].

#[path = "conformance_rpc_support/mod.rs"]
mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use serde_json::Value;
use support::{HANDSHAKE_OK, V, enc, hex, map, reply, req, req_with, to_hex};
use tandem_core::cluster::{Cluster, ClusterConfig, ENCRYPTION_VERSION, GossipKey, Keyring};
use tandem_core::{Config, Limits, Pool, VERSION};
use tandem_tests::driver::memory::Memory;
use tandem_tests::driver::process::{Process, Runtime};
use tandem_tests::driver::{Conn, Driver, Listener, base_config};
use tandem_tests::http::post_api;

/// Rows whose correct answer the agent does not give today: (row name, what happens
/// instead). They stay in the table; the runner skips them and [`skipped_rows_exist`]
/// keeps this list honest.
const SKIPPED: &[(&str, &str)] = &[];

/// The well-behaved client checks in after this many hostile rows.
const CHECK_EVERY: usize = 4;

// ----- the table's shape -------------------------------------------------------------------

/// What the agent answers to a row's bytes.
enum Want {
    /// Exactly these bytes.
    Bytes(Vec<u8>),
    /// A `200` with this JSON body on a kept-alive HTTP/1.1 connection; `<sid>` stands for
    /// the one-time session's id, read back from the answer.
    Api(String),
    /// Nothing at all.
    Nothing,
}

/// What becomes of the connection after the answer.
enum After {
    /// It stays open: sending the first bytes is answered with exactly the second.
    Open(Vec<u8>, Vec<u8>),
    /// The agent closes it in order (FIN) without writing more.
    Fin,
}

struct Row {
    name: &'static str,
    to: Listener,
    /// RPC only: handshake first (its reply checked and consumed).
    handshake: bool,
    send: Vec<u8>,
    /// Half-close after sending.
    eof: bool,
    want: Want,
    after: After,
}

fn row(
    name: &'static str,
    to: Listener,
    send: impl Into<Vec<u8>>,
    want: Want,
    after: After,
) -> Row {
    Row {
        name,
        to,
        handshake: false,
        send: send.into(),
        eof: false,
        want,
        after,
    }
}

// ----- configurations ----------------------------------------------------------------------

/// A body limit small enough to cross with a few bytes, but above every well-formed body
/// the HTTP rows and the well-behaved client send.
const MAX_BODY: usize = 128;

fn small_max_body() -> Config {
    Config {
        limits: Limits {
            max_body: MAX_BODY,
            ..Limits::default()
        },
        ..base_config()
    }
}

// ----- the HTTP rows -------------------------------------------------------------------------

const UNKNOWN_BODY: &str = r#"{"action":"x"}"#;
const UNKNOWN: &str = r#"{"message":"unknown action: x","state":"FAILED"}"#;

/// The bytes of a JSON answer on a kept-alive HTTP/1.1 connection.
fn ok_json(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A framing error's answer: status line, its text as the body, `Connection: close`.
fn error(status: &str, text: &str) -> Want {
    Want::Bytes(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .into_bytes(),
    )
}

fn bad_request() -> Want {
    error("400 Bad Request", "Bad Request")
}

fn not_found() -> Want {
    Want::Bytes(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\n\r\nNot found"
            .to_vec(),
    )
}

fn refused(method: &str) -> Want {
    Want::Bytes(
        ok_json(&format!(
            r#"{{"message":"Unsupported http method: {method}","state":"REFUSED"}}"#
        ))
        .into_bytes(),
    )
}

/// Open, proven by an unknown action answered on the same connection.
fn http_open() -> After {
    After::Open(post_api(UNKNOWN_BODY), ok_json(UNKNOWN).into_bytes())
}

fn http(name: &'static str, send: impl Into<Vec<u8>>, want: Want, after: After) -> Row {
    row(name, Listener::Http, send, want, after)
}

/// `POST /api HTTP/1.1` with `Host` and the extra header lines `headers` (each ending in
/// CRLF), then `body`.
fn post_with(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /api HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}").into_bytes()
}

fn http_rows() -> Vec<Row> {
    let cl = |n: usize| format!("Content-Length: {n}\r\n");
    let unknown = UNKNOWN_BODY.len();
    let mut flood = String::new();
    for i in 0..32 {
        flood.push_str(&format!("X-{i}: y\r\n"));
    }
    let long_value = "v".repeat(9000);
    let long_method = "M".repeat(4000);
    let huge_method = "M".repeat(9000);
    vec![
        http(
            "garbage_request_line",
            "GARBAGE\r\n\r\n",
            bad_request(),
            After::Fin,
        ),
        http(
            "request_line_without_version",
            "POST /api\r\nHost: x\r\n\r\n",
            bad_request(),
            After::Fin,
        ),
        http(
            "http_0_9_style_get",
            "GET /\r\n\r\n",
            bad_request(),
            After::Fin,
        ),
        http(
            "version_http_2_0",
            "POST /api HTTP/2.0\r\nHost: x\r\n\r\n",
            bad_request(),
            After::Fin,
        ),
        http(
            "version_http_1_2",
            "POST /api HTTP/1.2\r\nHost: x\r\n\r\n",
            bad_request(),
            After::Fin,
        ),
        http(
            "version_lowercase",
            "POST /api http/1.1\r\nHost: x\r\n\r\n",
            bad_request(),
            After::Fin,
        ),
        http(
            "two_spaces_in_request_line",
            "POST  /api HTTP/1.1\r\nHost: x\r\n\r\n",
            bad_request(),
            After::Fin,
        ),
        http(
            "http_1_1_without_host",
            format!("POST /api HTTP/1.1\r\n{}\r\n{UNKNOWN_BODY}", cl(unknown)),
            bad_request(),
            After::Fin,
        ),
        http(
            "http_1_0_without_host_is_served_then_closed",
            format!("POST /api HTTP/1.0\r\n{}\r\n{UNKNOWN_BODY}", cl(unknown)),
            Want::Bytes(
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{UNKNOWN}",
                    UNKNOWN.len()
                )
                .into_bytes(),
            ),
            After::Fin,
        ),
        http(
            "header_flood_over_max_headers",
            post_with(&flood, ""),
            error(
                "431 Request Header Fields Too Large",
                "Request Header Fields Too Large",
            ),
            After::Fin,
        ),
        http(
            "head_over_max_head_without_an_end",
            format!("POST /api HTTP/1.1\r\nHost: x\r\nX: {long_value}"),
            error(
                "431 Request Header Fields Too Large",
                "Request Header Fields Too Large",
            ),
            After::Fin,
        ),
        http(
            "one_header_over_max_head",
            post_with(&format!("X: {long_value}\r\n"), ""),
            error(
                "431 Request Header Fields Too Large",
                "Request Header Fields Too Large",
            ),
            After::Fin,
        ),
        http(
            "huge_method_over_max_head",
            format!("{huge_method} /api HTTP/1.1\r\nHost: x\r\n\r\n"),
            error(
                "431 Request Header Fields Too Large",
                "Request Header Fields Too Large",
            ),
            After::Fin,
        ),
        http(
            "long_unknown_method_is_refused_and_stays_open",
            format!("{long_method} /api HTTP/1.1\r\nHost: x\r\n\r\n"),
            refused(&long_method),
            http_open(),
        ),
        http(
            "body_one_over_max_body_unsent",
            post_with(&cl(MAX_BODY + 1), ""),
            error("413 Payload Too Large", "Payload Too Large"),
            After::Fin,
        ),
        http(
            "body_one_over_max_body_sent",
            post_with(&cl(MAX_BODY + 1), &"x".repeat(MAX_BODY + 1)),
            error("413 Payload Too Large", "Payload Too Large"),
            After::Fin,
        ),
        http(
            "content_length_overflowing_usize",
            post_with("Content-Length: 999999999999999999999999\r\n", ""),
            error("413 Payload Too Large", "Payload Too Large"),
            After::Fin,
        ),
        http(
            "chunked_is_411",
            post_with("Transfer-Encoding: chunked\r\n", "e\r\n{\"action\":\"x\"}\r\n0\r\n\r\n"),
            error(
                "411 Length Required",
                "Length Required: send a Content-Length body",
            ),
            After::Fin,
        ),
        http(
            "gzip_then_chunked_is_411",
            post_with("Transfer-Encoding: gzip, chunked\r\n", ""),
            error(
                "411 Length Required",
                "Length Required: send a Content-Length body",
            ),
            After::Fin,
        ),
        http(
            "gzip_coding_is_501",
            post_with("Transfer-Encoding: gzip\r\n", ""),
            error("501 Not Implemented", "Not Implemented"),
            After::Fin,
        ),
        http(
            "two_transfer_encodings_are_400",
            post_with(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "",
            ),
            bad_request(),
            After::Fin,
        ),
        http(
            "chunked_with_content_length_is_400",
            post_with(
                &format!("Transfer-Encoding: chunked\r\n{}", cl(unknown)),
                UNKNOWN_BODY,
            ),
            bad_request(),
            After::Fin,
        ),
        http(
            "duplicate_equal_content_length",
            post_with(&format!("{}{}", cl(unknown), cl(unknown)), UNKNOWN_BODY),
            bad_request(),
            After::Fin,
        ),
        http(
            "conflicting_content_length",
            post_with(&format!("{}{}", cl(unknown), cl(2)), UNKNOWN_BODY),
            bad_request(),
            After::Fin,
        ),
        http(
            "content_length_list",
            post_with("Content-Length: 14, 14\r\n", UNKNOWN_BODY),
            bad_request(),
            After::Fin,
        ),
        http(
            "negative_content_length",
            post_with("Content-Length: -1\r\n", ""),
            bad_request(),
            After::Fin,
        ),
        http(
            "plus_signed_content_length",
            post_with("Content-Length: +14\r\n", UNKNOWN_BODY),
            bad_request(),
            After::Fin,
        ),
        http(
            "hex_content_length",
            post_with("Content-Length: 0xe\r\n", UNKNOWN_BODY),
            bad_request(),
            After::Fin,
        ),
        http(
            "empty_content_length",
            post_with("Content-Length:\r\n", ""),
            bad_request(),
            After::Fin,
        ),
        http(
            "expect_other_than_100_continue",
            post_with(&format!("Expect: teapot\r\n{}", cl(unknown)), UNKNOWN_BODY),
            error("417 Expectation Failed", "Expectation Failed"),
            After::Fin,
        ),
        http(
            "nul_in_the_path",
            "POST /a\0pi HTTP/1.1\r\nHost: x\r\n\r\n",
            bad_request(),
            After::Fin,
        ),
        http(
            "nul_in_a_header_value",
            post_with("X: a\0b\r\n", ""),
            bad_request(),
            After::Fin,
        ),
        http(
            "nul_in_a_header_name",
            post_with("X\0Y: b\r\n", ""),
            bad_request(),
            After::Fin,
        ),
        http(
            "header_without_a_colon",
            post_with("NoColonHere\r\n", ""),
            bad_request(),
            After::Fin,
        ),
        http(
            "space_before_the_colon",
            post_with("X : y\r\n", ""),
            bad_request(),
            After::Fin,
        ),
        http(
            "obsolete_line_folding",
            post_with("X: a\r\n b\r\n", ""),
            bad_request(),
            After::Fin,
        ),
        http(
            "only_newlines",
            "\n".repeat(1000),
            bad_request(),
            After::Fin,
        ),
        http(
            "tls_client_hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            bad_request(),
            After::Fin,
        ),
        http(
            "bare_lf_line_ends_are_served",
            format!("POST /api HTTP/1.1\nHost: x\n{}\n{UNKNOWN_BODY}", cl(unknown).replace("\r\n", "\n")),
            Want::Bytes(ok_json(UNKNOWN).into_bytes()),
            http_open(),
        ),
        http(
            "a_good_request_then_garbage",
            [post_api(UNKNOWN_BODY), b"GARBAGE\r\n\r\n".to_vec()].concat(),
            Want::Bytes(
                [
                    ok_json(UNKNOWN).into_bytes(),
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request".to_vec(),
                ]
                .concat(),
            ),
            After::Fin,
        ),
        http(
            "path_traversal_up_from_root",
            "POST /../api HTTP/1.1\r\nHost: x\r\n\r\n",
            not_found(),
            http_open(),
        ),
        http(
            "path_traversal_down_from_api",
            "POST /api/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
            not_found(),
            http_open(),
        ),
        http(
            "percent_encoded_api",
            "POST /%61pi HTTP/1.1\r\nHost: x\r\n\r\n",
            not_found(),
            http_open(),
        ),
        http(
            "uppercase_path",
            "POST /API HTTP/1.1\r\nHost: x\r\n\r\n",
            not_found(),
            http_open(),
        ),
        http(
            "absolute_form_target",
            "POST http://x/api HTTP/1.1\r\nHost: x\r\n\r\n",
            not_found(),
            http_open(),
        ),
        http(
            "asterisk_form_options",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            not_found(),
            http_open(),
        ),
        http(
            "head_is_refused_without_a_body",
            "HEAD /api HTTP/1.1\r\nHost: x\r\n\r\n",
            {
                let Want::Bytes(mut b) = refused("HEAD") else {
                    unreachable!()
                };
                let body = br#"{"message":"Unsupported http method: HEAD","state":"REFUSED"}"#;
                b.truncate(b.len() - body.len());
                Want::Bytes(b)
            },
            http_open(),
        ),
        http(
            "lowercase_post_is_another_method",
            format!("post /api HTTP/1.1\r\nHost: x\r\n{}\r\n{UNKNOWN_BODY}", cl(unknown)),
            refused("post"),
            http_open(),
        ),
        {
            let mut r = http(
                "body_cut_short_by_eof",
                post_with(&cl(unknown), &UNKNOWN_BODY[..5]),
                Want::Nothing,
                After::Fin,
            );
            r.eof = true;
            r
        },
    ]
}

// ----- the JSON API rows ---------------------------------------------------------------------

fn api(name: &'static str, body: impl Into<Vec<u8>>, answer: &str) -> Row {
    let body = body.into();
    let mut send = format!(
        "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    send.extend(body);
    row(
        name,
        Listener::Http,
        send,
        Want::Api(answer.into()),
        http_open(),
    )
}

fn failed(message: &str) -> String {
    format!(r#"{{"message":"{message}","state":"FAILED"}}"#)
}

fn parse_failed(detail: &str) -> String {
    failed(&format!(
        "Process request error: parse request failed: {detail}"
    ))
}

/// `exec version`'s answer in a one-time session (job ids count across sessions).
fn version_answer(request_id: &str) -> String {
    format!(
        r#"{{"body":{{"command":"version","jobId":<job>,"jobStatus":"TERMINATED","results":[{{"jobId":<job>,"type":"version","version":"{VERSION}"}},{{"jobId":<job>,"statusCode":0,"type":"status"}}],"timeExpired":false}},{request_id}"sessionId":"<sid>","state":"SUCCEEDED"}}"#
    )
}

fn api_rows() -> Vec<Row> {
    let empty = failed("Process request error: parse request failed: request body is empty");
    let long_line = format!("echo {}", "a".repeat(100 * 1024));
    vec![
        api("empty_body", "", &empty),
        api("whitespace_body", " \r\n\t ", &empty),
        api(
            "null_body",
            "null",
            &parse_failed("invalid type: null, expected a JSON object at line 1 column 4"),
        ),
        api(
            "array_body",
            r#"["exec","version"]"#,
            &parse_failed("invalid type: sequence, expected a JSON object at line 1 column 0"),
        ),
        api(
            "number_body",
            "42",
            &parse_failed("invalid type: integer `42`, expected a JSON object at line 1 column 2"),
        ),
        api(
            "string_body",
            r#""exec""#,
            &parse_failed(
                r#"invalid type: string \"exec\", expected a JSON object at line 1 column 6"#,
            ),
        ),
        api(
            "truncated_object",
            r#"{"action":"ex"#,
            &parse_failed("EOF while parsing a string at line 1 column 13"),
        ),
        api(
            "trailing_garbage",
            r#"{"action":"x"} {"#,
            &parse_failed("trailing characters at line 1 column 16"),
        ),
        api(
            "ten_thousand_brackets",
            "[".repeat(10_000),
            &parse_failed("invalid type: sequence, expected a JSON object at line 1 column 0"),
        ),
        api(
            "ten_thousand_brackets_inside_an_object",
            format!(r#"{{"x":{}"#, "[".repeat(10_000)),
            &parse_failed("EOF while parsing a list at line 1 column 10005"),
        ),
        api(
            "invalid_utf8_in_a_string",
            b"{\"action\":\"\xff\xfe\"}".to_vec(),
            &parse_failed("invalid unicode code point at line 1 column 12"),
        ),
        api(
            "raw_nul_in_a_string",
            b"{\"action\":\"ex\0ec\"}".to_vec(),
            &parse_failed(
                "control character (\\\\u0000-\\\\u001F) found while parsing a string at line 1 column 14",
            ),
        ),
        api(
            "escaped_nul_in_the_action",
            r#"{"action":"ex\u0000ec"}"#,
            &failed(r"unknown action: ex\u0000ec"),
        ),
        api(
            "lone_surrogate_escape",
            r#"{"action":"\ud800"}"#,
            &parse_failed("unexpected end of hex escape at line 1 column 18"),
        ),
        api(
            "action_null",
            r#"{"action":null}"#,
            &failed("'action' is required"),
        ),
        api(
            "action_number",
            r#"{"action":5}"#,
            &failed("unknown action: 5"),
        ),
        api(
            "action_bool",
            r#"{"action":true}"#,
            &failed("unknown action: true"),
        ),
        api(
            "action_array",
            r#"{"action":["exec"]}"#,
            &parse_failed("invalid type: sequence, expected a string at line 1 column 11"),
        ),
        api(
            "action_object",
            r#"{"action":{"exec":1}}"#,
            &parse_failed("invalid type: map, expected a string at line 1 column 11"),
        ),
        api(
            "unknown_action",
            r#"{"action":"drop_tables","requestId":"r1"}"#,
            r#"{"message":"unknown action: drop_tables","requestId":"r1","state":"FAILED"}"#,
        ),
        api(
            "session_id_number",
            r#"{"action":"pull_results","sessionId":7,"consumerId":"c"}"#,
            &failed("session not found: 7"),
        ),
        api(
            "session_id_object",
            r#"{"action":"pull_results","sessionId":{}}"#,
            &parse_failed("invalid type: map, expected a string at line 1 column 39"),
        ),
        api(
            "exec_timeout_huge_integer",
            r#"{"action":"exec","command":"version","execTimeout":99999999999999999999999}"#,
            &version_answer(""),
        ),
        api(
            "exec_timeout_out_of_f64_range",
            r#"{"action":"exec","command":"version","execTimeout":1e400}"#,
            &parse_failed("number out of range at line 1 column 56"),
        ),
        api(
            "exec_timeout_negative",
            r#"{"action":"exec","command":"version","execTimeout":-5}"#,
            &version_answer(""),
        ),
        api(
            "exec_timeout_not_a_number",
            r#"{"action":"exec","command":"version","execTimeout":"soon"}"#,
            &parse_failed(r#"execTimeout is not a number: \"soon\" at line 1 column 57"#),
        ),
        api(
            "exec_timeout_bool",
            r#"{"action":"exec","command":"version","execTimeout":true}"#,
            &parse_failed(
                "invalid type: boolean `true`, expected a number of milliseconds at line 1 column 55",
            ),
        ),
        api(
            "command_over_max_command",
            format!(r#"{{"action":"exec","command":"{long_line}"}}"#),
            &format!(
                r#"{{"body":{{"command":"{long_line}"}},"message":"Exec command failed:command line too long: {} bytes (limit 4096)","sessionId":"<sid>","state":"FAILED"}}"#,
                long_line.len()
            ),
        ),
        api(
            "command_with_an_unterminated_quote",
            r#"{"action":"exec","command":"echo \"a"}"#,
            r#"{"body":{"command":"echo \"a"},"message":"Exec command failed:unterminated quote in command line","sessionId":"<sid>","state":"FAILED"}"#,
        ),
        api(
            "command_nul_only",
            r#"{"action":"exec","command":"\u0000"}"#,
            r#"{"body":{"command":"\u0000"},"message":"Exec command failed:\u0000: command not found","sessionId":"<sid>","state":"FAILED"}"#,
        ),
        api(
            "duplicate_action_keys",
            r#"{"action":"x","action":"y"}"#,
            &parse_failed("duplicate field `action` at line 1 column 22"),
        ),
        // Cluster-wide job targets (docs/cluster-jobs.md): refused before anything runs.
        api(
            "nodes_unbalanced_expression",
            r#"{"action":"exec","command":"version","nodes":"("}"#,
            &failed("Exec command failed:bad nodes expression: error parsing pattern 0"),
        ),
        api(
            "nodes_escaping_its_anchors",
            r#"{"action":"exec","command":"version","nodes":"a)|(b"}"#,
            &failed("Exec command failed:bad nodes expression: error parsing pattern 0"),
        ),
        api(
            "nodes_not_a_string",
            r#"{"action":"exec","command":"version","nodes":[1]}"#,
            &parse_failed("invalid type: sequence, expected a string at line 1 column 46"),
        ),
        api(
            "nodes_longer_than_1024_bytes",
            format!(
                r#"{{"action":"exec","command":"version","nodes":"{}"}}"#,
                "a".repeat(1025)
            ),
            &failed("Exec command failed:bad nodes expression: longer than 1024 bytes"),
        ),
        api(
            "nodes_expression_too_big_compiled",
            r#"{"action":"exec","command":"version","nodes":"(a{1000}){1000}"}"#,
            &failed("Exec command failed:bad nodes expression: error building NFA"),
        ),
        api(
            "tags_not_an_object",
            r#"{"action":"exec","command":"version","tags":"role=edge"}"#,
            &parse_failed(
                r#"invalid type: string \"role=edge\", expected a map at line 1 column 55"#,
            ),
        ),
        api(
            "tags_value_not_a_string",
            r#"{"action":"exec","command":"version","tags":{"role":1}}"#,
            &parse_failed("invalid type: integer `1`, expected a string at line 1 column 53"),
        ),
        api(
            "tags_more_than_64",
            format!(
                r#"{{"action":"exec","command":"version","tags":{{{}}}}}"#,
                (0..65)
                    .map(|i| format!(r#""t{i}":"x""#))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            &failed("Exec command failed:more than 64 tag filters"),
        ),
    ]
}

// ----- the peer-stream rows (cluster-wide jobs' agent-to-agent channel) ------------------------

/// One msgpack map of string values: a peer frame.
fn peer_frame(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = rmp::encode::write_map_len(&mut v, fields.len() as u32);
    for (k, val) in fields {
        let _ = rmp::encode::write_str(&mut v, k);
        let _ = rmp::encode::write_str(&mut v, val);
    }
    v
}

fn peer(name: &'static str, send: Vec<u8>, want: Want) -> Row {
    row(name, Listener::Peer, send, want, After::Fin)
}

fn peer_rows() -> Vec<Row> {
    let refused = |e: &str| Want::Bytes(peer_frame(&[("Type", "refused"), ("Error", e)]));
    let hello = |job: u64| {
        let mut v = Vec::new();
        let _ = rmp::encode::write_map_len(&mut v, 4);
        let _ = rmp::encode::write_str(&mut v, "Type");
        let _ = rmp::encode::write_str(&mut v, "hello");
        let _ = rmp::encode::write_str(&mut v, "Job");
        let _ = rmp::encode::write_uint(&mut v, job);
        let _ = rmp::encode::write_str(&mut v, "Node");
        let _ = rmp::encode::write_str(&mut v, "intruder");
        let _ = rmp::encode::write_str(&mut v, "Token");
        let _ = rmp::encode::write_bin(&mut v, &[0; 16]);
        v
    };
    vec![
        peer("peer_reserved_marker", vec![0xc1], Want::Nothing),
        peer("peer_not_a_map", vec![0x2a], Want::Nothing),
        peer(
            "peer_item_before_hello",
            peer_frame(&[("Type", "item"), ("Item", "{}")]),
            Want::Nothing,
        ),
        peer(
            "peer_end_before_hello",
            peer_frame(&[("Type", "end")]),
            Want::Nothing,
        ),
        peer(
            "peer_unknown_type",
            peer_frame(&[("Type", "shell"), ("Command", "rm -rf /")]),
            Want::Nothing,
        ),
        peer(
            "peer_hello_for_no_job",
            hello(4_000_000),
            refused("no such cluster job"),
        ),
        peer(
            "peer_hello_job_beyond_u32",
            hello(1 << 32),
            refused("no such cluster job"),
        ),
        peer(
            "peer_frame_over_rpc_max_frame",
            [&[0xdb_u8, 0x7f, 0xff, 0xff, 0xff][..], b"x"].concat(),
            Want::Nothing,
        ),
        peer(
            "peer_ten_thousand_nested_maps",
            vec![0x81; 10_000],
            Want::Nothing,
        ),
    ]
}

// ----- the RPC rows --------------------------------------------------------------------------

fn rpc(
    name: &'static str,
    handshake: bool,
    send: impl Into<Vec<u8>>,
    want: Want,
    after: After,
) -> Row {
    let mut r = row(name, Listener::Rpc, send, want, after);
    r.handshake = handshake;
    r
}

/// Open, proven by a handshake answered with `error` on the same connection.
fn rpc_open(error: &str) -> After {
    After::Open(support::handshake(99), reply(99, error))
}

const DONE: &str = "Handshake already performed";

/// `{"Command": members, "Seq": <seq bytes>}` with `seq` the raw msgpack of the Seq value.
fn members_with_seq(seq: &[u8]) -> Vec<u8> {
    [
        hex("82a7436f6d6d616e64a76d656d62657273a3536571"),
        seq.to_vec(),
    ]
    .concat()
}

fn rpc_rows() -> Vec<Row> {
    let closed = || (Want::Nothing, After::Fin);
    let stop = |seq: u64| req_with("stop", seq, &map(&[("Stop", 1u64.into())]));
    let mut rows = vec![];
    let mut add = |name, handshake, send: Vec<u8>, (want, after): (Want, After)| {
        rows.push(rpc(name, handshake, send, want, after));
    };
    add("byte_c1", false, vec![0xc1], closed());
    add("byte_c1_after_handshake", true, vec![0xc1], closed());
    add("http_text", false, post_api(UNKNOWN_BODY), closed());
    add("fixstr_header", false, hex("a3616263"), closed());
    add("fixint_header", true, vec![0x07], closed());
    add("negative_seq", true, members_with_seq(&[0xff]), closed());
    add(
        "negative_int64_seq",
        true,
        members_with_seq(&hex("d3ffffffffffffffff")),
        closed(),
    );
    add(
        "float_seq",
        true,
        members_with_seq(&hex("cb3ff0000000000000")),
        closed(),
    );
    add("string_seq", true, members_with_seq(&hex("a131")), closed());
    add(
        "bin8_keys",
        true,
        hex("82c407436f6d6d616e64a76d656d62657273c403536571 01"),
        closed(),
    );
    add(
        "command_as_bin",
        true,
        hex("82a7436f6d6d616e64c4057374617473a353657101"),
        closed(),
    );
    add(
        "command_not_utf8",
        true,
        hex("82a7436f6d6d616e64a2fffea353657101"),
        closed(),
    );
    add("declared_64_mib_str", true, hex("81db04000000"), closed());
    add("declared_64_mib_ext", true, hex("c90400000001"), closed());
    add(
        "array16_over_the_container_limit",
        true,
        hex("dc1001"),
        closed(),
    );
    add(
        "map16_over_the_container_limit",
        true,
        hex("de1001"),
        closed(),
    );
    add(
        "nesting_10k_deep",
        true,
        [vec![0x91; 10_000], vec![0xc0]].concat(),
        closed(),
    );
    add(
        "nesting_over_max_values",
        true,
        vec![0x91; 70_000],
        closed(),
    );
    add("fixext_header", true, hex("d40100"), closed());
    add(
        "handshake_body_that_fails_to_decode",
        false,
        req_with("handshake", 0, &map(&[("Version", "1".into())])),
        closed(),
    );
    add(
        "handshake_version_over_int32",
        false,
        [
            req("handshake", 0),
            hex("81a756657273696f6ecf0000010000000000"),
        ]
        .concat(),
        closed(),
    );
    add(
        "stop_body_that_is_a_string",
        true,
        [req("stop", 4), hex("a131")].concat(),
        closed(),
    );
    add(
        "command_before_the_handshake",
        false,
        req("members", 1),
        (Want::Bytes(reply(1, "Handshake required")), After::Fin),
    );
    add(
        "unknown_command_after_the_handshake",
        true,
        req("drop-tables", 2),
        (Want::Bytes(reply(2, "Unsupported command")), After::Fin),
    );
    add(
        "nil_header",
        true,
        vec![0xc0],
        (Want::Bytes(reply(0, "Unsupported command")), After::Fin),
    );
    add(
        "query_with_an_internal_name",
        true,
        req_with("query", 3, &map(&[("Name", "_serf_install-key".into())])),
        (
            Want::Bytes(reply(3, "Queries cannot contain the '_serf_' prefix")),
            rpc_open(DONE),
        ),
    );
    add(
        "respond_to_an_unknown_query",
        true,
        req_with("respond", 3, &map(&[("ID", 7u64.into())])),
        (
            Want::Bytes(reply(3, "No pending queries matching ID")),
            rpc_open(DONE),
        ),
    );
    // Serf's size limits (1,024 bytes by default): a clear error, nothing sent.
    add(
        "query_payload_over_the_size_limit",
        true,
        req_with(
            "query",
            3,
            &map(&[("Name", "big".into()), ("Payload", V::B(vec![b'a'; 1100]))]),
        ),
        (
            Want::Bytes(reply(3, "query exceeds limit of 1024 bytes")),
            rpc_open(DONE),
        ),
    );
    add(
        "query_node_filter_over_the_size_limit",
        true,
        req_with(
            "query",
            3,
            &map(&[
                ("Name", "many".into()),
                (
                    "FilterNodes",
                    V::A((0..200).map(|i| V::S(format!("node-{i:05}"))).collect()),
                ),
            ]),
        ),
        (
            Want::Bytes(reply(3, "query exceeds limit of 1024 bytes")),
            rpc_open(DONE),
        ),
    );
    add(
        "query_tag_filter_over_the_size_limit",
        true,
        req_with(
            "query",
            3,
            &map(&[
                ("Name", "tags".into()),
                (
                    "FilterTags",
                    map(&[("role", "x".repeat(2000).as_str().into())]),
                ),
            ]),
        ),
        (
            Want::Bytes(reply(3, "query exceeds limit of 1024 bytes")),
            rpc_open(DONE),
        ),
    );
    // Serf looks the query up before it measures the response.
    add(
        "oversized_respond_to_an_unknown_query",
        true,
        req_with(
            "respond",
            3,
            &map(&[("ID", 7u64.into()), ("Payload", V::B(vec![0; 5000]))]),
        ),
        (
            Want::Bytes(reply(3, "No pending queries matching ID")),
            rpc_open(DONE),
        ),
    );
    add(
        "query_relay_factor_over_255",
        true,
        req_with("query", 3, &map(&[("RelayFactor", 256u64.into())])),
        closed(),
    );
    add(
        "query_timeout_over_int64",
        true,
        req_with("query", 3, &map(&[("Timeout", u64::MAX.into())])),
        closed(),
    );
    add(
        "handshake_version_2",
        false,
        req_with("handshake", 0, &map(&[("Version", 2u64.into())])),
        (
            Want::Bytes(reply(0, "Unsupported RPC version")),
            rpc_open(""),
        ),
    );
    add(
        "handshake_version_negative",
        false,
        [req("handshake", 0), hex("81a756657273696f6eff")].concat(),
        (
            Want::Bytes(reply(0, "Unsupported RPC version")),
            rpc_open(""),
        ),
    );
    add(
        "handshake_twice",
        true,
        support::handshake(5),
        (Want::Bytes(reply(5, DONE)), rpc_open(DONE)),
    );
    add(
        "array_header",
        true,
        [hex("92a473746f7007"), enc(&map(&[("Stop", 1u64.into())]))].concat(),
        (Want::Bytes(reply(7, "")), rpc_open(DONE)),
    );
    add(
        "max_u64_seq",
        true,
        [
            hex("82a7436f6d6d616e64a473746f70a3536571cfffffffffffffffff"),
            enc(&map(&[("Stop", 1u64.into())])),
        ]
        .concat(),
        (
            Want::Bytes(hex("82a54572726f72a0a3536571cfffffffffffffffff")),
            rpc_open(DONE),
        ),
    );
    add(
        "ext_under_an_unknown_key_is_skipped",
        true,
        [
            req("stop", 8),
            hex("82a453746f7001a158d70100000000000000ff"),
        ]
        .concat(),
        (Want::Bytes(reply(8, "")), rpc_open(DONE)),
    );
    add(
        "unknown_log_level",
        true,
        req_with("monitor", 9, &map(&[("LogLevel", "LOUD".into())])),
        (
            Want::Bytes(reply(9, "Unknown log level: LOUD")),
            rpc_open(DONE),
        ),
    );
    add(
        "invalid_event_filter",
        true,
        req_with("stream", 10, &map(&[("Type", "member-dance".into())])),
        (
            Want::Bytes(reply(10, "Invalid event filter")),
            rpc_open(DONE),
        ),
    );
    // The key commands (`install-key`, `use-key`, `remove-key`, `list-keys`): the agent of
    // these rows has no encryption.
    let key_body = |messages: &[(&str, &str)], nodes: u64| {
        map(&[
            ("Keys", V::Nil),
            (
                "Messages",
                V::M(
                    messages
                        .iter()
                        .map(|(n, t)| (V::from(*n), V::from(*t)))
                        .collect(),
                ),
            ),
            ("NumErr", (messages.len() as u64).into()),
            ("NumNodes", nodes.into()),
            ("NumResp", nodes.into()),
        ])
    };
    add(
        "install_key_with_a_non_string_key",
        true,
        req_with("install-key", 12, &map(&[("Key", 5u64.into())])),
        closed(),
    );
    add(
        "install_key_not_base64",
        true,
        req_with("install-key", 13, &map(&[("Key", "%%%".into())])),
        (
            Want::Bytes(support::reply_with(
                13,
                "illegal base64 data at input byte 0",
                &key_body(&[], 0),
            )),
            rpc_open(DONE),
        ),
    );
    add(
        "use_key_over_the_query_size_limit",
        true,
        req_with(
            "use-key",
            14,
            &map(&[("Key", "A".repeat(4000).as_str().into())]),
        ),
        (
            Want::Bytes(support::reply_with(
                14,
                "query exceeds limit of 1024 bytes",
                &key_body(&[], 0),
            )),
            rpc_open(DONE),
        ),
    );
    add(
        "remove_key_without_encryption",
        true,
        req_with(
            "remove-key",
            15,
            &map(&[("Key", "AAECAwQFBgcICQoLDA0ODw==".into())]),
        ),
        (
            Want::Bytes(support::reply_with(
                15,
                "1/1 nodes reported failure",
                &key_body(
                    &[(
                        "conformance-node",
                        "No keyring to modify (encryption not enabled)",
                    )],
                    1,
                ),
            )),
            rpc_open(DONE),
        ),
    );
    add(
        "header_then_eof",
        true,
        stop(11)[..5].to_vec(),
        (Want::Nothing, After::Fin),
    );
    let last = rows.len() - 1;
    rows[last].eof = true;
    rows
}

// ----- running rows --------------------------------------------------------------------------

/// A client on connections of its own that keeps asking and checks every answer.
struct WellBehaved {
    http: Conn,
    rpc: Conn,
    seq: u64,
    checks: usize,
}

impl WellBehaved {
    fn connect(d: &mut dyn Driver) -> WellBehaved {
        let http = d.connect(Listener::Http);
        let mut rpc = d.connect(Listener::Rpc);
        d.send(&rpc, &support::handshake(0));
        assert_eq!(to_hex(&d.rpc_values(&mut rpc, 1)), HANDSHAKE_OK);
        WellBehaved {
            http,
            rpc,
            seq: 0,
            checks: 0,
        }
    }

    fn check(&mut self, d: &mut dyn Driver, after: &str) {
        self.checks += 1;
        d.send(
            &self.http,
            &post_api(r#"{"action":"exec","command":"version","requestId":"wb"}"#),
        );
        let r = d.response(&mut self.http);
        let want = with_sid(&version_answer(r#""requestId":"wb","#), &r.raw);
        assert_eq!(
            String::from_utf8_lossy(&r.raw),
            ok_json(&want),
            "{}: exec version after {after}",
            d.name()
        );
        self.seq += 1;
        d.send(&self.rpc, &req("members", self.seq));
        let got = d.rpc_values(&mut self.rpc, 2);
        assert_eq!(
            to_hex(&got),
            to_hex(&members_reply(self.seq, d.lan_addr())),
            "{}: members after {after}",
            d.name()
        );
    }
}

/// `members`' exact reply: this one node, alive.
fn members_reply(seq: u64, lan: SocketAddr) -> Vec<u8> {
    let IpAddr::V4(ip) = lan.ip() else {
        panic!("{lan}")
    };
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
    let mut want = reply(seq, "");
    want.extend(enc(&map(&[("Members", V::A(vec![map(&fields)]))])));
    want
}

/// `want` with `<sid>` and `<job>` replaced by the `sessionId` and `body.jobId` of the JSON
/// body in `raw`.
fn with_sid(want: &str, raw: &[u8]) -> String {
    if !want.contains("<sid>") {
        return want.to_string();
    }
    let text = String::from_utf8_lossy(raw);
    let body = &text[text.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let sid = v["sessionId"].as_str().unwrap_or("<no sessionId>");
    let job = v["body"]["jobId"].to_string();
    want.replace("<sid>", sid).replace("<job>", &job)
}

/// Reads exactly `n` bytes from `c`.
fn exactly(d: &mut dyn Driver, c: &mut Conn, n: usize) -> Vec<u8> {
    d.read_frame(c, &format!("{n}-byte answer"), &|b: &[u8]| {
        (b.len() >= n).then_some(n)
    })
}

/// `b` as text and hex for a failure message, cut to a readable length.
fn show(b: &[u8]) -> String {
    let cut = &b[..b.len().min(400)];
    let more = if b.len() > cut.len() { " …" } else { "" };
    format!(
        "{} bytes: {:?}{more} (hex {}{more})",
        b.len(),
        String::from_utf8_lossy(cut),
        to_hex(cut)
    )
}

fn run_row(d: &mut dyn Driver, r: &Row) {
    let mut c = d.connect(r.to);
    if r.handshake {
        d.send(&c, &support::handshake(0));
        assert_eq!(to_hex(&d.rpc_values(&mut c, 1)), HANDSHAKE_OK);
    }
    d.send(&c, &r.send);
    if r.eof {
        d.shutdown_write(&c);
    }
    match &r.want {
        Want::Bytes(want) => {
            let got = exactly(d, &mut c, want.len());
            assert!(got == *want, "got  {}\nwant {}", show(&got), show(want));
        }
        Want::Api(body) => {
            let got = d.response(&mut c).raw;
            let want = ok_json(&with_sid(body, &got));
            assert!(
                got == want.as_bytes(),
                "got  {}\nwant {}",
                show(&got),
                show(want.as_bytes())
            );
        }
        Want::Nothing => {}
    }
    match &r.after {
        After::Fin => d.expect_eof(&mut c),
        After::Open(send, want) => {
            d.send(&c, send);
            let got = exactly(d, &mut c, want.len());
            assert!(
                got == *want,
                "follow-up: got  {}\nwant {}",
                show(&got),
                show(want)
            );
        }
    }
}

/// Runs `rows` on `d` with the well-behaved client checking in every [`CHECK_EVERY`] rows;
/// fails listing every row that failed.
fn run_rows(d: &mut dyn Driver, rows: &[Row]) {
    let mut wb = WellBehaved::connect(d);
    let mut failed = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if SKIPPED.iter().any(|(n, _)| *n == r.name) {
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| run_row(d, r)));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {msg}", r.name));
        }
        if (i + 1) % CHECK_EVERY == 0 || i + 1 == rows.len() {
            wb.check(d, r.name);
        }
    }
    assert!(
        failed.is_empty(),
        "{}: {} of {} rows failed:\n{}",
        d.name(),
        failed.len(),
        rows.len(),
        failed.join("\n\n")
    );
    assert!(wb.checks >= rows.len() / CHECK_EVERY);
}

fn http_catalogue(d: &mut dyn Driver) {
    run_rows(d, &http_rows());
}

fn api_catalogue(d: &mut dyn Driver) {
    run_rows(d, &api_rows());
}

fn rpc_catalogue(d: &mut dyn Driver) {
    run_rows(d, &rpc_rows());
}

fn peer_catalogue(d: &mut dyn Driver) {
    run_rows(d, &peer_rows());
}

// ----- exhausting the connection tables (issue 15, items 2 and 3) ---------------------------

/// Slow bodies: a small table and a short body deadline.
const SLOW_TABLE: usize = 8;
const BODY_DEADLINE_MS: u64 = 1_000;

fn slow_body_config() -> Config {
    let mut cfg = base_config();
    cfg.limits.max_connections = SLOW_TABLE;
    cfg.limits.overflow_connections = 4;
    cfg.timing.body_timeout_ms = BODY_DEADLINE_MS;
    cfg
}

const TIMEOUT_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 15\r\nConnection: close\r\n\r\nRequest Timeout";

/// A full table of connections that sent a complete head and one body byte locks new
/// clients out (`503`) only until the body deadline: then each gets `408` and its close,
/// and a new client is served.
fn slow_bodies(d: &mut dyn Driver) {
    let body = r#"{"action":"exec","command":"version"}"#;
    let req = post_api(body);
    let head_len = req.len() - body.len();
    let mut slow: Vec<Conn> = (0..SLOW_TABLE)
        .map(|_| {
            let c = d.connect(Listener::Http);
            d.send(&c, &req[..head_len + 1]);
            c
        })
        .collect();
    let started = d.elapsed();
    let mut locked_out = d.connect(Listener::Http);
    assert_eq!(d.response(&mut locked_out).status, 503, "{}", d.name());
    for c in &mut slow {
        let got = exactly(d, c, TIMEOUT_408.len());
        assert!(got == TIMEOUT_408, "{}: got {}", d.name(), show(&got));
        d.expect_eof(c);
    }
    let waited = d.elapsed() - started;
    assert!(
        waited >= Duration::from_millis(BODY_DEADLINE_MS - 100),
        "{}: 408 after {waited:?}, before the deadline",
        d.name()
    );
    let r = d.http(body);
    assert_eq!(r.status, 200, "{}: {}", d.name(), show(&r.raw));
}

/// More idle RPC connections than the table holds.
const IDLE_RPC: usize = 1_030;

fn rpc_auth_config() -> Config {
    Config {
        rpc_auth: Some("s3cret".into()),
        ..base_config()
    }
}

/// Opens [`IDLE_RPC`] handshaken connections and leaves them idle; then a real client
/// connects, (authenticates,) and is served `members`.
fn idle_rpc_then_a_client(d: &mut dyn Driver, key: Option<&str>) {
    let mut idle = Vec::with_capacity(IDLE_RPC);
    for _ in 0..IDLE_RPC {
        let mut c = d.connect(Listener::Rpc);
        d.send(&c, &support::handshake(0));
        assert_eq!(
            to_hex(&d.rpc_values(&mut c, 1)),
            HANDSHAKE_OK,
            "{}",
            d.name()
        );
        idle.push(c);
    }
    let mut client = d.connect(Listener::Rpc);
    d.send(&client, &support::handshake(0));
    assert_eq!(to_hex(&d.rpc_values(&mut client, 1)), HANDSHAKE_OK);
    if let Some(key) = key {
        d.send(
            &client,
            &req_with("auth", 1, &map(&[("AuthKey", key.into())])),
        );
        assert_eq!(to_hex(&d.rpc_values(&mut client, 1)), to_hex(&reply(1, "")));
    }
    d.send(&client, &req("members", 2));
    let got = d.rpc_values(&mut client, 2);
    assert_eq!(
        to_hex(&got),
        to_hex(&members_reply(2, d.lan_addr())),
        "{}",
        d.name()
    );
    // The oldest idle ones made the room, in order: the first is closed.
    d.expect_closed_or_reset(&mut idle[0]);
}

fn idle_rpc(d: &mut dyn Driver) {
    idle_rpc_then_a_client(d, None);
}

fn idle_unauthenticated_rpc(d: &mut dyn Driver) {
    idle_rpc_then_a_client(d, Some("s3cret"));
}

// ----- gossip ----------------------------------------------------------------------------------

/// A hostile datagram. Every one is dropped and counted in `bad_datagrams` (it does not
/// decode, is over `max_packet_size`, carries a packet foca's header peek refuses, or came
/// for a pool this node is not in) and in no other counter.
struct Datagram {
    name: &'static str,
    pool: Pool,
    bytes: Vec<u8>,
}

fn gossip_rows() -> Vec<Datagram> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    // A PULL's requester id: IPv4 10.9.9.9:7946, bump 0.
    let id = hex("04 0a090909 1f0a 0000");
    let pull_head = [vec![0x02], id.clone(), hex("00000001 0000 00000000 01")].concat();
    let d = |name, bytes| Datagram {
        name,
        pool: Pool::Lan,
        bytes,
    };
    vec![
        d("empty", vec![]),
        d("unknown_tag", vec![0x00]),
        d("tag_ff", vec![0xff]),
        d("random_64_bytes", [vec![0x7f], random(63)].concat()),
        d("random_1400_bytes", [vec![0x99], random(1399)].concat()),
        d("over_max_packet_size", vec![0x01; 1401]),
        d("sixty_four_kib", vec![0x02; 65_507]),
        d("foca_truncated_meta_version", hex("01000000")),
        d(
            "foca_garbage_packet",
            [hex("0100000001"), random(40)].concat(),
        ),
        d("pull_tag_only", vec![0x02]),
        d("pull_bad_address_family", hex("0205")),
        d("pull_truncated_id", [vec![0x02], id[..5].to_vec()].concat()),
        d("pull_without_a_count", pull_head.clone()),
        d("pull_listing_255", [pull_head.clone(), vec![0xff]].concat()),
        d(
            "pull_listing_64_with_none_sent",
            [pull_head.clone(), vec![64]].concat(),
        ),
        d(
            "pull_with_trailing_bytes",
            [pull_head, vec![0], vec![0xaa; 8]].concat(),
        ),
        d("push_truncated_clock", hex("0301000000")),
        d("push_255_items", hex("0301 0000000000000001 ff")),
        d(
            "push_item_declaring_64_kib",
            hex("0301 0000000000000001 01 ffff 0102"),
        ),
        Datagram {
            name: "wan_datagram_on_a_client",
            pool: Pool::Wan,
            bytes: hex("0100000001"),
        },
    ]
}

/// The gossip key of [`encrypted_config`].
const GOSSIP_KEY: [u8; 32] = [0x5a; 32];

/// [`base_config`] with gossip encrypted under [`GOSSIP_KEY`].
fn encrypted_config() -> Config {
    let key = GossipKey::new(&GOSSIP_KEY).unwrap();
    Config {
        cluster: Some(ClusterConfig {
            keyring: Keyring::new(key, []),
            ..ClusterConfig::default()
        }),
        ..base_config()
    }
}

/// A stranger's join announce (a valid frame) sealed with `key`, or in plaintext.
fn stranger_announce(key: Option<[u8; 32]>) -> Vec<u8> {
    let mut cfg = ClusterConfig {
        node_name: "stranger".into(),
        lan_addr: "10.9.9.9:7946".parse().unwrap(),
        ..ClusterConfig::default()
    };
    if let Some(k) = key {
        cfg.keyring = Keyring::new(GossipKey::new(&k).unwrap(), []);
    }
    let mut c = Cluster::new(cfg, 7, tandem_core::Instant::ZERO);
    let to = "127.0.0.1:8301".parse().unwrap();
    c.join(Pool::Lan, &[to], tandem_core::Instant::ZERO)
        .unwrap();
    c.poll_datagram().unwrap().2
}

/// Datagrams for an agent whose gossip is encrypted: every one is dropped and counted in
/// `decrypt_failures` (a stranger, a wrong key, truncated, tampered with, plaintext).
fn encrypted_gossip_rows() -> Vec<Datagram> {
    let right = stranger_announce(Some(GOSSIP_KEY));
    let tampered = |i: usize| {
        let mut b = right.clone();
        b[i] ^= 0x01;
        b
    };
    let n = right.len();
    let d = |name, bytes| Datagram {
        name,
        pool: Pool::Lan,
        bytes,
    };
    vec![
        d(
            "sealed_with_another_key",
            stranger_announce(Some([0xa5; 32])),
        ),
        d("plaintext_frame", stranger_announce(None)),
        d("plaintext_empty", vec![]),
        d("version_byte_only", vec![ENCRYPTION_VERSION]),
        d("version_nonce_and_no_tag", right[..13].to_vec()),
        d("one_byte_short_of_a_tag", right[..28].to_vec()),
        d("empty_ciphertext_zero_tag", [vec![1], vec![0; 28]].concat()),
        d("truncated_by_one", right[..n - 1].to_vec()),
        d("unknown_version", [vec![0], right[1..].to_vec()].concat()),
        d("tampered_nonce", tampered(5)),
        d("tampered_ciphertext", tampered(20)),
        d("tampered_tag", tampered(n - 1)),
        d("trailing_byte", [right.clone(), vec![0]].concat()),
    ]
}

/// Gossip rows through [`tandem_core::Agent::handle_datagram`]: each is counted as a bad
/// datagram, no datagram goes back to the sender, `members` is unchanged.
fn gossip_on_memory(m: &mut Memory) {
    gossip_rows_on_memory(m, &gossip_rows(), (1, 0, 0, 0));
}

/// [`encrypted_gossip_rows`] on an encrypted agent: each is counted as a decryption
/// failure, nothing goes back, `members` is unchanged.
fn encrypted_gossip_on_memory(m: &mut Memory) {
    gossip_rows_on_memory(m, &encrypted_gossip_rows(), (0, 1, 0, 0));
}

/// Runs `rows`; each must move the counters (bad, decrypt failures, foca errors, members
/// refused) by `want`, send nothing back and leave `members` as it was.
fn gossip_rows_on_memory(m: &mut Memory, rows: &[Datagram], want: (u64, u64, u64, u64)) {
    let from: SocketAddr = "10.9.9.9:7946".parse().unwrap();
    let before = m.sim.agent.cluster().members(Pool::Lan);
    assert_eq!(before.len(), 1);
    let mut wb = WellBehaved::connect(m);
    let mut failed = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let s0 = m.sim.agent.cluster().stats();
        let sent = m.sim.datagrams.len();
        let now = m.sim.now;
        let result = catch_unwind(AssertUnwindSafe(|| {
            m.sim.agent.handle_datagram(row.pool, from, &row.bytes, now);
            m.sim.drain();
            m.sim.advance(Duration::from_millis(500));
        }));
        let s1 = m.sim.agent.cluster().stats();
        let counted = (
            s1.bad_datagrams - s0.bad_datagrams,
            s1.decrypt_failures - s0.decrypt_failures,
            s1.foca_errors - s0.foca_errors,
            s1.members_refused - s0.members_refused,
        );
        let replies: Vec<String> = m.sim.datagrams[sent..]
            .iter()
            .filter(|(_, to, _)| *to == from)
            .map(|(_, _, b)| to_hex(b))
            .collect();
        let members = m.sim.agent.cluster().members(Pool::Lan);
        if result.is_err() || counted != want || !replies.is_empty() || members != before {
            failed.push(format!(
                "{}: panicked {}, counted (bad, decrypt, foca, refused) {counted:?} want {want:?}, replies {replies:?}, members {members:?}",
                row.name,
                result.is_err()
            ));
        }
        if (i + 1) % CHECK_EVERY == 0 {
            wb.check(m, row.name);
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Gossip rows as UDP datagrams to a runtime's LAN port: nothing comes back, and the
/// well-behaved client sees the same one member throughout.
fn gossip_on_udp(d: &mut dyn Driver) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut wb = WellBehaved::connect(d);
    for (i, row) in gossip_rows().iter().enumerate() {
        if row.pool != Pool::Lan || row.bytes.is_empty() {
            continue;
        }
        sock.send_to(&row.bytes, d.lan_addr()).expect("send_to");
        if (i + 1) % CHECK_EVERY == 0 {
            wb.check(d, row.name);
        }
    }
    wb.check(d, "the last datagram");
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => panic!("{}: a reply from {from}: {}", d.name(), to_hex(&buf[..n])),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
}

// ----- the tests -------------------------------------------------------------------------------

/// Generates, for each row group, `mod <group> { memory, smol, mio }` (`udp` groups: the
/// runtimes only), each test running the group on a fresh agent with the configuration.
macro_rules! catalogue {
    ($($group:ident with $config:ident $(, $udp:ident)?;)*) => {$(
        mod $group {
            #[allow(unused_imports)]
            use super::*;

            catalogue!(@memory $group $config $($udp)?);

            #[test]
            fn smol() {
                super::$group(&mut Process::start(Runtime::Smol, &super::$config()));
            }

            #[test]
            fn mio() {
                super::$group(&mut Process::start(Runtime::Mio, &super::$config()));
            }
        }
    )*};
    (@memory $group:ident $config:ident) => {
        #[test]
        fn memory() {
            super::$group(&mut Memory::start(super::$config()));
        }
    };
    (@memory $group:ident $config:ident udp) => {};
}

catalogue! {
    slow_bodies with slow_body_config;
    idle_rpc with base_config;
    idle_unauthenticated_rpc with rpc_auth_config;
    http_catalogue with small_max_body;
    api_catalogue with base_config;
    rpc_catalogue with base_config;
    peer_catalogue with base_config;
    gossip_on_udp with base_config, udp;
}

#[test]
fn gossip_catalogue_on_memory() {
    gossip_on_memory(&mut Memory::start(base_config()));
}

#[test]
fn encrypted_gossip_catalogue_on_memory() {
    encrypted_gossip_on_memory(&mut Memory::start(encrypted_config()));
    // The control: the same announce sealed with the right key gets in.
    let mut m = Memory::start(encrypted_config());
    let now = m.sim.now;
    let from = "10.9.9.9:7946".parse().unwrap();
    let right = stranger_announce(Some(GOSSIP_KEY));
    m.sim.agent.handle_datagram(Pool::Lan, from, &right, now);
    m.sim.drain();
    let s = m.sim.agent.cluster().stats();
    assert_eq!((s.bad_datagrams, s.decrypt_failures), (0, 0));
    assert!(
        m.sim.datagrams.iter().any(|(_, to, _)| *to == from),
        "the announce is answered"
    );
}

/// A COORD frame: kind (0x06 ping, 0x07 ack), version, nonce 7, dimension count, floats.
fn coord_frame(kind: u8, version: u8, dims: u8, floats: &[f64]) -> Vec<u8> {
    let mut b = vec![kind, version, 0, 0, 0, 7, dims];
    for f in floats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b
}

/// A plausible coordinate's 8 + 3 floats (vector, error, adjustment, height).
fn plausible_coordinate() -> Vec<f64> {
    let mut good = vec![0.001; 8];
    good.extend([0.5, 0.0, 0.0001]);
    good
}

/// Hostile COORD frames (network coordinates, `cluster/rtt.rs`): a ping or ack whose
/// coordinate is NaN, infinite or out of range, of another version or dimension count,
/// truncated or with trailing bytes. Each is rejected and counted in `coordinates_rejected`
/// and nothing else; nothing goes back to the sender; the agent's coordinate is unchanged.
fn coordinate_rows() -> Vec<Datagram> {
    let frame = coord_frame;
    let good = plausible_coordinate();
    let with = |i: usize, v: f64| {
        let mut f = good.clone();
        f[i] = v;
        f
    };
    let d = |name, bytes| Datagram {
        name,
        pool: Pool::Lan,
        bytes,
    };
    let whole = frame(0x06, 1, 8, &good);
    vec![
        d("coord_ping_vec_nan", frame(0x06, 1, 8, &with(0, f64::NAN))),
        d("coord_ack_vec_nan", frame(0x07, 1, 8, &with(3, f64::NAN))),
        d(
            "coord_ping_vec_inf",
            frame(0x06, 1, 8, &with(7, f64::INFINITY)),
        ),
        d(
            "coord_ping_error_neg_inf",
            frame(0x06, 1, 8, &with(8, f64::NEG_INFINITY)),
        ),
        d(
            "coord_ping_adjustment_nan",
            frame(0x06, 1, 8, &with(9, f64::NAN)),
        ),
        d(
            "coord_ping_height_inf",
            frame(0x06, 1, 8, &with(10, f64::INFINITY)),
        ),
        d("coord_ping_vec_1e300", frame(0x06, 1, 8, &with(1, 1e300))),
        d(
            "coord_ack_vec_minus_1e300",
            frame(0x07, 1, 8, &with(2, -1e300)),
        ),
        d(
            "coord_ping_negative_height",
            frame(0x06, 1, 8, &with(10, -0.001)),
        ),
        d(
            "coord_ping_error_over_max",
            frame(0x06, 1, 8, &with(8, 2.0)),
        ),
        d("coord_ping_version_2", frame(0x06, 2, 8, &good)),
        d("coord_ping_3_dimensions", frame(0x06, 1, 3, &good[..6])),
        d("coord_ping_255_dimensions", frame(0x06, 1, 255, &good)),
        d("coord_ping_0_dimensions", frame(0x06, 1, 0, &good[8..])),
        d("coord_ping_truncated", whole[..whole.len() - 1].to_vec()),
        d(
            "coord_ping_trailing_byte",
            [whole.clone(), vec![0]].concat(),
        ),
        d("coord_ack_kind_only", vec![0x07]),
    ]
}

#[test]
fn coordinate_catalogue_on_memory() {
    let mut m = Memory::start(base_config());
    let rows = coordinate_rows();
    let coord = m.sim.agent.cluster().coordinate();
    let before = m.sim.agent.cluster().stats().coordinates_rejected;
    // No other counter moves, nothing goes back, no panic, members unchanged...
    gossip_rows_on_memory(&mut m, &rows, (0, 0, 0, 0));
    // ...each is rejected and counted, and the coordinate never moved.
    let after = m.sim.agent.cluster().stats().coordinates_rejected;
    assert_eq!(after - before, rows.len() as u64);
    assert_eq!(m.sim.agent.cluster().coordinate(), coord);
    let from: SocketAddr = "10.9.9.9:7946".parse().unwrap();
    // The control: the same ping, well formed, is answered with an ack.
    let ping = coord_frame(0x06, 1, 8, &plausible_coordinate());
    let sent = m.sim.datagrams.len();
    let now = m.sim.now;
    m.sim.agent.handle_datagram(Pool::Lan, from, &ping, now);
    m.sim.drain();
    let acks: Vec<&Vec<u8>> = m.sim.datagrams[sent..]
        .iter()
        .filter(|(_, to, _)| *to == from)
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(acks.len(), 1);
    assert_eq!(&acks[0][..7], &[0x07, 1, 0, 0, 0, 7, 8]);
}

#[test]
fn the_catalogue_has_sixty_rows_or_more() {
    let n = http_rows().len()
        + api_rows().len()
        + rpc_rows().len()
        + peer_rows().len()
        + gossip_rows().len()
        + encrypted_gossip_rows().len();
    assert!(n >= 60, "{n} rows");
}

#[test]
fn skipped_rows_exist() {
    let names: Vec<&str> = http_rows()
        .iter()
        .chain(api_rows().iter())
        .chain(rpc_rows().iter())
        .chain(peer_rows().iter())
        .map(|r| r.name)
        .chain(gossip_rows().iter().map(|g| g.name))
        .chain(encrypted_gossip_rows().iter().map(|g| g.name))
        .collect();
    for (name, why) in SKIPPED {
        assert!(
            names.contains(name),
            "skipped row {name} ({why}) is not in the table"
        );
    }
}

// ----- the snapshot file (`-snapshot`) ------------------------------------------------------

/// A hostile `-snapshot` file: what it holds before a good `event-clock: 5` line, and how
/// many lines of it must be skipped as unreadable.
struct SnapshotRow {
    name: &'static str,
    bytes: Vec<u8>,
    bad: u64,
}

/// Overlong, binary, bad addresses, huge clocks, a million lines: each line is skipped and
/// counted, the good line after it still read, the agent starts, and the file it writes
/// back (compacted) holds only what was readable.
fn snapshot_rows() -> Vec<SnapshotRow> {
    let r = |name, bytes: &[u8], bad| SnapshotRow {
        name,
        bytes: bytes.to_vec(),
        bad,
    };
    // Random bytes without a newline: one line, over the limit.
    let mut x: u32 = 0x1234_5678;
    let binary: Vec<u8> = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match x as u8 {
                b'\n' => 0,
                b => b,
            }
        })
        .chain([b'\n'])
        .collect();
    vec![
        r(
            "overlong_line",
            format!("alive: {} 10.0.0.1:1\n", "n".repeat(2000)).as_bytes(),
            1,
        ),
        r(
            "name_over_the_limit",
            format!("alive: {} 10.0.0.1:1\n", "n".repeat(256)).as_bytes(),
            1,
        ),
        r("binary_64_kib", &binary, 1),
        r("nul_bytes", b"\0\0\0\0\n", 1),
        r("not_utf8", b"alive: \xff\xfe 10.0.0.1:1\n", 1),
        r("control_char_in_name", b"alive: a\x1bb 10.0.0.1:1\n", 1),
        r("address_without_port", b"alive: a 10.0.0.1\n", 1),
        r("address_not_an_ip", b"alive: a 999.0.0.1:1\n", 1),
        r("port_out_of_range", b"alive: a 10.0.0.1:65536\n", 1),
        r("host_name_address", b"alive: a host.example:8301\n", 1),
        r("ipv6_unbracketed", b"alive: a ::1:8301\n", 1),
        r("no_name", b"alive: 10.0.0.1:1\n", 1),
        r("clock_over_u64", b"clock: 18446744073709551616\n", 1),
        r(
            "event_clock_over_i64",
            b"event-clock: 9223372036854775808\n",
            1,
        ),
        r("negative_query_clock", b"query-clock: -1\n", 1),
        r("clock_with_a_sign", b"clock: +1\n", 1),
        r("unknown_directive", b"hello: world\n", 1),
        r("leave_with_a_tail", b"leave now\n", 1),
        r(
            "a_million_garbage_lines",
            "x\n".repeat(1_000_000).as_bytes(),
            1_000_000,
        ),
    ]
}

/// A row's whole file: its bytes, then the good line.
fn snapshot_file_bytes(row: &SnapshotRow) -> Vec<u8> {
    [row.bytes.clone(), b"event-clock: 5\n".to_vec()].concat()
}

/// What the agent writes back: the compacted file, without the bad lines.
const SNAPSHOT_COMPACTED: &str = "clock: 0\nevent-clock: 5\nquery-clock: 0\n";

#[test]
fn snapshot_catalogue_on_memory() {
    use tandem_core::{Agent, Effect, FileWrite, Output, SnapshotReader, StateFiles};
    let mut failed = Vec::new();
    for row in snapshot_rows() {
        let file = snapshot_file_bytes(&row);
        let result = catch_unwind(AssertUnwindSafe(|| {
            let snap = SnapshotReader::read_all(&file, false, 8192);
            let config = Config {
                state_files: StateFiles {
                    snapshot: true,
                    ..StateFiles::default()
                },
                ..base_config()
            };
            let now = tandem_core::Instant::from_millis(1);
            let mut agent = Agent::new(config, 1, now);
            let bad = snap.bad_lines;
            agent.restore_snapshot(snap, now);
            let mut written = None;
            let mut summary = false;
            while let Some(out) = agent.poll_output() {
                match out {
                    Output::Effect(Effect::Persist {
                        write: FileWrite::Replace,
                        bytes,
                        ..
                    }) => written = Some(String::from_utf8(bytes).unwrap()),
                    Output::Log(r) => {
                        summary |= r
                            .line
                            .ends_with(&format!("skipped {bad} unreadable snapshot lines"));
                    }
                    _ => {}
                }
            }
            (bad, agent.cluster().event_ltime(), written, summary)
        }));
        match result {
            Ok((bad, clock, written, summary))
                if bad == row.bad
                    && clock == 6
                    && summary
                    && written.as_deref() == Some(SNAPSHOT_COMPACTED) => {}
            Ok(got) => failed.push(format!(
                "{}: (bad, clock, written, logged) {got:?}",
                row.name
            )),
            Err(_) => failed.push(format!("{}: panicked", row.name)),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn snapshot_catalogue_on(rt: Runtime) {
    let dir = std::env::temp_dir().join(format!(
        "tandem-bad-snapshot-{}-{}",
        rt.name(),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failed = Vec::new();
    for row in snapshot_rows() {
        let path = dir.join(row.name);
        std::fs::write(&path, snapshot_file_bytes(&row)).unwrap();
        let agent = Process::start_flags(rt, &["-snapshot", path.to_str().unwrap()]);
        agent.wait_log(&format!("skipped {} unreadable snapshot lines", row.bad));
        // The compaction is written as the agent starts; it is up and answers.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = std::fs::read_to_string(&path).unwrap_or_default();
            if now == SNAPSHOT_COMPACTED {
                break;
            }
            if std::time::Instant::now() > deadline {
                failed.push(format!("{}: the file is now {now:?}", row.name));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let members = std::net::TcpStream::connect(agent.rpc_addr()).is_ok();
        if !members {
            failed.push(format!("{}: the agent does not answer", row.name));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn snapshot_catalogue_on_smol() {
    snapshot_catalogue_on(Runtime::Smol);
}

#[test]
fn snapshot_catalogue_on_mio() {
    snapshot_catalogue_on(Runtime::Mio);
}

// ----- event handler definitions -----------------------------------------------------------

/// Hostile `-event-handler` / `event_handlers` values (issue 10): each gets Serf's answer,
/// the scripts it defines (in order) or `Invalid event script: …`, never a panic; a reload
/// carrying a refused one leaves the agent's handlers as they were.
fn handler_rows() -> Vec<(String, Result<usize, String>)> {
    let refused = |event: &str, script: &str| {
        Err(format!(
            "Invalid event script: Event '{event}' invoking '{script}'"
        ))
    };
    vec![
        (String::new(), Ok(1)),
        ("=".into(), Ok(1)),
        ("user:=x".into(), Ok(1)),
        ("query:q=a=b".into(), Ok(1)),
        ("user:\u{202e}evil\n\t=x".into(), Ok(1)),
        (format!("x{}", "y".repeat(1 << 20)), Ok(1)),
        (
            format!("{}user=x", "member-join,".repeat(10_000)),
            Ok(10_001),
        ),
        ("member-jion=x".into(), refused("member-jion", "x")),
        ("USER=x".into(), refused("USER", "x")),
        ("echo a=b".into(), refused("echo a", "b")),
        (",=x".into(), refused("", "x")),
        ("\u{0}=x".into(), refused("\u{0}", "x")),
        (" user=x".into(), refused(" user", "x")),
        (
            format!("{}=x", "member-join,".repeat(10_000)),
            refused("", "x"),
        ),
    ]
}

#[test]
fn handler_definitions_on_memory() {
    let now = tandem_tests::netsim::START;
    let cfg = Config {
        event_handlers: vec!["keep.sh".into()],
        ..base_config()
    };
    let mut agent = tandem_core::Agent::new(cfg, 7, now);
    for (spec, want) in handler_rows() {
        let shown: String = spec.chars().take(40).collect();
        let got = tandem_core::EventScript::parse(&spec)
            .map(|s| s.len())
            .map_err(|e| e.to_string());
        assert_eq!(got, want, "{shown:?}");
        let mut cfg = agent.config().clone();
        cfg.event_handlers = vec!["keep.sh".into(), spec.clone()];
        agent.apply_config(cfg, now);
        let scripts: Vec<&str> = agent
            .event_handlers()
            .iter()
            .map(|s| s.script.as_str())
            .collect();
        match want {
            Ok(n) => assert_eq!(scripts.len(), 1 + n, "{shown:?}"),
            Err(_) => assert_eq!(scripts, ["keep.sh"], "{shown:?}: kept"),
        }
        // Back to the one script before the next row.
        let mut cfg = agent.config().clone();
        cfg.event_handlers = vec!["keep.sh".into()];
        agent.apply_config(cfg, now);
        assert_eq!(agent.event_handlers().len(), 1);
    }
}
