//! Conformance of the agent RPC's framing (spec `consul-serf-rpc.md` §1, §4.2, §5.1, §5.2,
//! §5.7, §5.11, §8): the handshake exchange byte for byte, the header forms Go's decoder
//! accepts and the ones that close the connection without a reply, body decoding,
//! split and coalesced input, and the size limits.
//!
//! Commands live in `conformance_rpc_commands.rs`, monitors, streams and slow readers in
//! `conformance_rpc_streams.rs`.

#[path = "conformance_rpc_support/mod.rs"]
mod support;

use std::time::Duration;

use support::{
    HANDSHAKE_OK, V, assert_bytes, assert_closed_silently, call, connect, enc, handshake,
    handshaken, hex, map, reply, req, req_with, sim_with, strs, to_hex,
};
use tandem_core::Listener;
use tandem_tests::Sim;

/// §5.1: `{"Command":"handshake","Seq":0}`.
const HANDSHAKE_HEADER: &str = "82a7436f6d6d616e64a968616e647368616b65a353657100";
/// §5.1: `{"Version":1}`.
const VERSION_1: &str = "81a756657273696f6e01";
/// §5.2: `{"Command":"members","Seq":1}`.
const MEMBERS_SEQ_1: &str = "82a7436f6d6d616e64a76d656d62657273a353657101";
/// §5.2: `{"Error":"Handshake required","Seq":1}`.
const HANDSHAKE_REQUIRED_SEQ_1: &str =
    "82a54572726f72b248616e647368616b65207265717569726564a353657101";

// ----- handshake (§5.1) ----------------------------------------------------------------

#[test]
fn handshake_is_answered_with_the_serf_transcript_bytes() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    sim.send(c, &hex(HANDSHAKE_HEADER));
    assert!(sim.received(c).is_empty(), "no reply before the body");
    sim.send(c, &hex(VERSION_1));
    assert_bytes(&sim.received(c), &hex(HANDSHAKE_OK));
    assert!(!sim.is_closed(c));
}

#[test]
fn repeated_handshake_is_refused_and_the_connection_stays_usable() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &handshake(1));
    assert_bytes(
        &got,
        &hex("82a54572726f72bb48616e647368616b6520616c726561647920706572666f726d6564a353657101"),
    );
    assert!(!sim.is_closed(c));
    // Still handshaken: a command works.
    let got = call(&mut sim, c, &req("members", 2));
    assert!(got.starts_with(&reply(2, "")), "{}", to_hex(&got));
}

#[test]
fn bad_version_gets_consuls_wording_and_keeps_the_connection_unversioned() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    let got = call(
        &mut sim,
        c,
        &req_with("handshake", 7, &map(&[("Version", 2u64.into())])),
    );
    // §5.1's bytes with "IPC" replaced by Consul's "RPC" (§6).
    assert_bytes(
        &got,
        &hex("82a54572726f72b7556e737570706f72746564205250432076657273696f6ea353657107"),
    );
    assert!(!sim.is_closed(c), "a bad version keeps the connection open");
    // §5.1: a command on the still-unversioned connection is refused, then EOF.
    let got = call(&mut sim, c, &req("members", 8));
    assert_bytes(
        &got,
        &hex("82a54572726f72b248616e647368616b65207265717569726564a353657108"),
    );
    assert!(sim.is_closed(c));
}

#[test]
fn versions_zero_minus_one_nil_and_empty_bodies_are_unsupported() {
    let bodies: [(&str, Vec<u8>); 5] = [
        ("Version 0", enc(&map(&[("Version", 0u64.into())]))),
        ("Version -1", enc(&map(&[("Version", V::I(-1))]))),
        ("empty map", hex("80")),
        ("nil body", hex("c0")),
        ("Version 2 as int32", hex("81a756657273696f6ed200000002")),
    ];
    for (name, body) in bodies {
        let mut sim = Sim::new();
        let c = connect(&mut sim);
        let mut bytes = req("handshake", 3);
        bytes.extend(body);
        let got = call(&mut sim, c, &bytes);
        assert_bytes(&got, &reply(3, "Unsupported RPC version"));
        assert!(!sim.is_closed(c), "{name}");
    }
}

#[test]
fn failed_handshake_can_be_retried() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    let got = call(
        &mut sim,
        c,
        &req_with("handshake", 1, &map(&[("Version", 9u64.into())])),
    );
    assert_bytes(&got, &reply(1, "Unsupported RPC version"));
    let got = call(&mut sim, c, &handshake(2));
    assert_bytes(&got, &reply(2, ""));
    let got = call(&mut sim, c, &handshake(3));
    assert_bytes(&got, &reply(3, "Handshake already performed"));
}

#[test]
fn handshake_body_as_an_array_is_decoded_positionally() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    let mut bytes = req("handshake", 4);
    bytes.extend(hex("9101")); // [1]
    assert_bytes(&call(&mut sim, c, &bytes), &reply(4, ""));
}

#[test]
fn handshake_version_overflowing_int32_closes_without_a_reply() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    // {"Version": 2^40}: Go's `Overflow int value` is a decode error.
    let mut bytes = req("handshake", 1);
    bytes.extend(hex("81a756657273696f6ecf0000010000000000"));
    sim.send(c, &bytes);
    assert_closed_silently(&mut sim, c);
}

#[test]
fn handshake_header_without_a_body_takes_the_next_header_as_its_body() {
    // §5.1: the next header is decoded as the handshake body; Version is absent, so 0.
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    assert!(call(&mut sim, c, &req("handshake", 1)).is_empty());
    let got = call(&mut sim, c, &req("members", 2));
    assert_bytes(&got, &reply(1, "Unsupported RPC version"));
    assert!(!sim.is_closed(c));
}

#[test]
fn repeated_handshake_with_a_bad_version_is_refused_for_the_version() {
    // Serf's and Consul's handleHandshake check the version before the duplicate:
    // `if Version out of range { unsupported } else if client.version != 0 { duplicate }`.
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let got = call(
        &mut sim,
        c,
        &req_with("handshake", 5, &map(&[("Version", 2u64.into())])),
    );
    assert_bytes(&got, &reply(5, "Unsupported RPC version"));
    assert!(!sim.is_closed(c));
}

// ----- gating (§5.2) -------------------------------------------------------------------

#[test]
fn command_before_the_handshake_gets_handshake_required_and_a_close() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    let got = call(&mut sim, c, &hex(MEMBERS_SEQ_1));
    assert_bytes(&got, &hex(HANDSHAKE_REQUIRED_SEQ_1));
    assert!(sim.is_closed(c));
    assert_eq!(sim.agent.connection_count(Listener::Rpc), 0);
}

#[test]
fn requests_pipelined_behind_handshake_required_are_not_answered() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    let mut bytes = hex(MEMBERS_SEQ_1);
    bytes.extend(handshake(2));
    bytes.extend(req("stats", 3));
    let got = call(&mut sim, c, &bytes);
    assert_bytes(&got, &hex(HANDSHAKE_REQUIRED_SEQ_1));
    assert!(sim.is_closed(c));
}

#[test]
fn auth_before_the_handshake_gets_handshake_required_and_a_close() {
    let mut sim = sim_with(|c| c.rpc_auth = Some("s3cret".into()));
    let c = connect(&mut sim);
    let got = call(
        &mut sim,
        c,
        &req_with("auth", 1, &map(&[("AuthKey", "s3cret".into())])),
    );
    assert_bytes(&got, &reply(1, "Handshake required"));
    assert!(sim.is_closed(c));
}

#[test]
fn unknown_command_gets_unsupported_command_and_a_close() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    // §5.2: {"Command":"bogus","Seq":2}
    let got = call(
        &mut sim,
        c,
        &hex("82a7436f6d6d616e64a5626f677573a353657102"),
    );
    assert_bytes(
        &got,
        &hex("82a54572726f72b3556e737570706f7274656420636f6d6d616e64a353657102"),
    );
    assert!(sim.is_closed(c));
}

#[test]
fn commands_are_case_sensitive() {
    // §8.11: Consul's docs say "Handshake"; the wire says "handshake".
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    let got = call(
        &mut sim,
        c,
        &req_with("Handshake", 1, &map(&[("Version", 1u64.into())])),
    );
    assert_bytes(&got, &reply(1, "Handshake required"));
    assert!(sim.is_closed(c));

    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &req("Members", 2));
    assert_bytes(&got, &reply(2, "Unsupported command"));
    assert!(sim.is_closed(c));
}

#[test]
fn stop_for_a_seq_that_matches_nothing_succeeds() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    // §5.7: {"Command":"stop","Seq":3} {"Stop":99}
    let got = call(
        &mut sim,
        c,
        &hex("82a7436f6d6d616e64a473746f70a353657103 81a453746f7063"),
    );
    assert_bytes(&got, &hex("82a54572726f72a0a353657103"));
    assert!(!sim.is_closed(c));
}

// ----- header forms Go accepts (§4.2) ---------------------------------------------------

/// Sends `header` followed by `{"Version":1}` on a fresh connection; returns the reply.
fn handshake_with_header(header: &str) -> (Sim, tandem_core::ConnId, Vec<u8>) {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    let mut bytes = hex(header);
    bytes.extend(hex(VERSION_1));
    let got = call(&mut sim, c, &bytes);
    (sim, c, got)
}

#[test]
fn header_as_an_array_is_decoded_positionally() {
    // ["handshake", 5]
    let (sim, c, got) = handshake_with_header("92a968616e647368616b6505");
    assert_bytes(&got, &reply(5, ""));
    assert!(!sim.is_closed(c));
    // ["handshake", 6, "token"]: Consul's third field.
    let (_, _, got) = handshake_with_header("93a968616e647368616b6506a5746f6b656e");
    assert_bytes(&got, &reply(6, ""));
}

#[test]
fn nil_header_before_the_handshake_is_handshake_required_with_seq_0() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    let got = call(&mut sim, c, &hex("c0"));
    assert_bytes(&got, &reply(0, "Handshake required"));
    assert!(sim.is_closed(c));
}

#[test]
fn nil_header_after_the_handshake_is_an_unsupported_command() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &hex("c0"));
    assert_bytes(&got, &reply(0, "Unsupported command"));
    assert!(sim.is_closed(c));
}

#[test]
fn map16_header_is_accepted() {
    let (_, _, got) =
        handshake_with_header("de0002 a7436f6d6d616e64 a968616e647368616b65 a3536571 09");
    assert_bytes(&got, &reply(9, ""));
}

#[test]
fn str8_and_str16_keys_and_values_are_accepted() {
    // {"Command" (str8): "handshake" (str16), "Seq" (str8): 4}
    let (_, _, got) =
        handshake_with_header("82 d907436f6d6d616e64 da000968616e647368616b65 d903536571 04");
    assert_bytes(&got, &reply(4, ""));
}

#[test]
fn seq_as_uint64_is_echoed_in_the_smallest_form() {
    // Seq cf 00..01: echoed as a fixint, as Go re-encodes the value.
    let (_, _, got) =
        handshake_with_header("82a7436f6d6d616e64a968616e647368616b65 a3536571 cf0000000000000001");
    assert_bytes(&got, &hex("82a54572726f72a0a353657101"));
    // Seq 256 as uint64 → cd 01 00.
    let (_, _, got) =
        handshake_with_header("82a7436f6d6d616e64a968616e647368616b65 a3536571 cf0000000000000100");
    assert_bytes(&got, &hex("82a54572726f72a0a3536571cd0100"));
    // Seq 2^64-1 → cf ff×8.
    let (_, _, got) =
        handshake_with_header("82a7436f6d6d616e64a968616e647368616b65 a3536571 cfffffffffffffffff");
    assert_bytes(&got, &hex("82a54572726f72a0a3536571cfffffffffffffffff"));
}

#[test]
fn non_negative_signed_seq_is_accepted() {
    let (_, _, got) = handshake_with_header("82a7436f6d6d616e64a968616e647368616b65 a3536571 d005");
    assert_bytes(&got, &reply(5, ""));
    let (_, _, got) =
        handshake_with_header("82a7436f6d6d616e64a968616e647368616b65 a3536571 d300000000000000ff");
    assert_bytes(&got, &reply(255, ""));
}

#[test]
fn nil_or_missing_seq_is_zero() {
    let (_, _, got) = handshake_with_header("82a7436f6d6d616e64a968616e647368616b65 a3536571 c0");
    assert_bytes(&got, &hex(HANDSHAKE_OK));
    let (_, _, got) = handshake_with_header("81a7436f6d6d616e64a968616e647368616b65");
    assert_bytes(&got, &hex(HANDSHAKE_OK));
}

#[test]
fn unknown_header_keys_and_consuls_token_are_skipped() {
    // {"Extra":[1,2],"Command":"handshake","Token":"t","Seq":2}
    let (_, _, got) = handshake_with_header(
        "84 a54578747261 920102 a7436f6d6d616e64 a968616e647368616b65 a5546f6b656e a174 a3536571 02",
    );
    assert_bytes(&got, &reply(2, ""));
}

#[test]
fn lower_case_header_keys_are_unknown_fields() {
    // {"command":"handshake","seq":1}: both ignored, so Command "" and Seq 0.
    let (sim, c, got) = handshake_with_header("82a7636f6d6d616e64a968616e647368616b65a373657101");
    assert_bytes(&got, &reply(0, "Handshake required"));
    assert!(sim.is_closed(c));
}

// ----- malformed input (§5.11) ---------------------------------------------------------

/// Headers Go's decoder refuses: the connection closes and nothing is written.
const BAD_HEADERS: [(&str, &str); 10] = [
    (
        "Seq -1 as negative fixint",
        "82a7436f6d6d616e64a76d656d62657273a3536571ff",
    ),
    (
        "Seq -1 as int8",
        "82a7436f6d6d616e64a76d656d62657273a3536571d0ff",
    ),
    (
        "Seq 1.0 as float64",
        "82a7436f6d6d616e64a76d656d62657273a3536571cb3ff0000000000000",
    ),
    (
        "Seq as a string",
        "82a7436f6d6d616e64a76d656d62657273a3536571a131",
    ),
    (
        "Seq as a bool",
        "82a7436f6d6d616e64a76d656d62657273a3536571c3",
    ),
    (
        "key as bin8",
        "82c407436f6d6d616e64a76d656d62657273a353657101",
    ),
    (
        "Command as bin8",
        "82a7436f6d6d616e64c4076d656d62657273a353657101",
    ),
    ("byte c1", "c1"),
    ("a fixstr header", "a568656c6c6f"),
    ("a fixint header", "05"),
];

#[test]
fn malformed_headers_before_the_handshake_close_without_a_reply() {
    for (name, bytes) in BAD_HEADERS {
        let mut sim = Sim::new();
        let c = connect(&mut sim);
        sim.send(c, &hex(bytes));
        let got = sim.received(c);
        assert!(got.is_empty(), "{name}: replied {}", to_hex(&got));
        assert!(sim.is_closed(c), "{name}: not closed");
        assert_eq!(sim.agent.stats().rpc_decode_errors, 1, "{name}");
    }
}

#[test]
fn malformed_headers_after_the_handshake_close_without_a_reply() {
    for (name, bytes) in BAD_HEADERS {
        let mut sim = Sim::new();
        let c = handshaken(&mut sim);
        sim.send(c, &hex(bytes));
        let got = sim.received(c);
        assert!(got.is_empty(), "{name}: replied {}", to_hex(&got));
        assert!(sim.is_closed(c), "{name}: not closed");
    }
}

#[test]
fn plain_http_closes_without_a_reply() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    sim.send(c, b"GET / HTTP/1.1\r\n\r\n");
    assert_closed_silently(&mut sim, c);
}

#[test]
fn undecodable_bodies_close_without_a_reply() {
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "Node as bin",
            req_with(
                "force-leave",
                2,
                &map(&[("Node", V::B(b"x".to_vec())), ("Prune", false.into())]),
            ),
        ),
        (
            "Prune as fixint 2",
            req_with(
                "force-leave",
                2,
                &map(&[("Node", "x".into()), ("Prune", 2u64.into())]),
            ),
        ),
        (
            "Existing as a string",
            req_with(
                "join",
                2,
                &map(&[("Existing", "a".into()), ("WAN", false.into())]),
            ),
        ),
        (
            "Stop negative",
            req_with("stop", 2, &map(&[("Stop", V::I(-1))])),
        ),
        (
            "LogLevel as an integer",
            req_with("monitor", 2, &map(&[("LogLevel", 3u64.into())])),
        ),
        (
            "Tags as an array",
            req_with(
                "tags",
                2,
                &map(&[("DeleteTags", strs(&[])), ("Tags", strs(&["a"]))]),
            ),
        ),
        ("body as a string", req_with("event", 2, &V::from("deploy"))),
    ];
    for (name, bytes) in cases {
        let mut sim = Sim::new();
        let c = handshaken(&mut sim);
        sim.send(c, &bytes);
        let got = sim.received(c);
        assert!(got.is_empty(), "{name}: replied {}", to_hex(&got));
        assert!(sim.is_closed(c), "{name}: not closed");
    }
}

#[test]
fn lenient_bodies_are_accepted_as_go_accepts_them() {
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "Prune as fixint 1",
            req_with(
                "force-leave",
                2,
                &map(&[("Node", "x".into()), ("Prune", 1u64.into())]),
            ),
        ),
        (
            "unknown body keys",
            req_with(
                "force-leave",
                2,
                &map(&[("Extra", V::A(vec![V::U(1), V::Nil])), ("Node", "x".into())]),
            ),
        ),
        (
            "body as an array",
            req_with("force-leave", 2, &V::A(vec!["x".into(), false.into()])),
        ),
        ("nil body", req_with("stop", 2, &V::Nil)),
    ];
    for (name, bytes) in cases {
        let mut sim = Sim::new();
        let c = handshaken(&mut sim);
        let got = call(&mut sim, c, &bytes);
        assert!(got == reply(2, ""), "{name}: got {}", to_hex(&got));
        assert!(!sim.is_closed(c), "{name}");
    }
}

// ----- framing -------------------------------------------------------------------------

/// A handshake, `members`, `stop` with a body and `members-wan` in one buffer. (Not
/// `stats`: its byte counters depend on how the input arrived.)
fn four_requests() -> Vec<u8> {
    let mut bytes = handshake(1);
    bytes.extend(req("members", 2));
    bytes.extend(req_with("stop", 3, &map(&[("Stop", 77u64.into())])));
    bytes.extend(req("members-wan", 4));
    bytes
}

fn whole_reply(bytes: &[u8]) -> Vec<u8> {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    call(&mut sim, c, bytes)
}

#[test]
fn coalesced_requests_are_all_answered_in_order() {
    let got = whole_reply(&four_requests());
    let vals = support::values(&got);
    // handshake (header), members (header + body), stop (header), members-wan (header + body)
    assert_eq!(vals.len(), 6, "{vals:?}");
    let seqs: Vec<u64> = [0, 1, 3, 4]
        .iter()
        .map(|&i| vals[i].get("Seq").u64())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    for i in [0, 1, 3, 4] {
        assert_eq!(vals[i].get("Error").str(), "");
    }
    assert_eq!(vals[2].keys(), ["Members"]);
    assert_eq!(vals[2].get("Members").arr().len(), 1);
    assert_eq!(vals[5], map(&[("Members", V::A(vec![]))]));
}

#[test]
fn a_request_split_at_every_byte_boundary_gets_the_same_reply() {
    let bytes = four_requests();
    let want = whole_reply(&bytes);
    assert!(!want.is_empty());
    for cut in 1..bytes.len() {
        let mut sim = Sim::new();
        let c = connect(&mut sim);
        sim.send(c, &bytes[..cut]);
        sim.send(c, &bytes[cut..]);
        let got = sim.received(c);
        assert!(got == want, "split at {cut}: got {}", to_hex(&got));
    }
}

#[test]
fn a_request_dribbled_byte_by_byte_gets_the_same_reply() {
    let bytes = four_requests();
    let want = whole_reply(&bytes);
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    for b in &bytes {
        sim.send(c, std::slice::from_ref(b));
    }
    assert_bytes(&sim.received(c), &want);
}

#[test]
fn a_truncated_header_waits_without_a_timeout() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let members = req("members", 2);
    sim.send(c, &members[..5]);
    sim.advance(Duration::from_secs(3600));
    assert!(sim.received(c).is_empty());
    assert!(!sim.is_closed(c));
    sim.send(c, &members[5..]);
    assert!(sim.received(c).starts_with(&reply(2, "")));
}

#[test]
fn eof_after_whole_requests_answers_them_then_closes() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    sim.send(c, &handshake(1));
    sim.send(c, &req_with("stop", 2, &map(&[("Stop", 1u64.into())])));
    sim.eof(c);
    let mut want = reply(1, "");
    want.extend(reply(2, ""));
    assert_bytes(&sim.received(c), &want);
    assert!(sim.is_closed(c));
}

#[test]
fn eof_inside_a_request_closes_without_a_reply() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    sim.send(c, &req("stop", 2)); // the body never comes
    sim.eof(c);
    assert_closed_silently(&mut sim, c);
}

// ----- limits (§7, §8.10) --------------------------------------------------------------

#[test]
fn declared_64mib_string_closes_at_once_without_buffering_it() {
    let mut sim = Sim::new();
    let c = connect(&mut sim);
    // fixmap(1), then a str32 key declaring 64 MiB, then the 64 MiB the attacker sends.
    let mut attack = hex("81db04000000");
    attack.resize(6 + (64 << 20), b'a');
    let now = sim.now;
    let taken = sim.agent.handle_stream(c, &attack, now);
    let max_frame = sim.agent.config().limits.rpc_max_frame;
    assert!(
        taken <= max_frame,
        "took {taken} bytes, more than one frame ({max_frame})"
    );
    sim.drain();
    assert_closed_silently(&mut sim, c);
    assert_eq!(sim.agent.connection_count(Listener::Rpc), 0);
    assert_eq!(sim.agent.stats().rpc_decode_errors, 1);
}

#[test]
fn the_six_byte_attack_alone_closes_without_a_reply() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    sim.send(c, &hex("81db04000000"));
    assert_closed_silently(&mut sim, c);
}

/// A handshake body `{"Version":1,"Pad":"aaa…"}` of exactly `len` bytes (len ≥ 64).
fn padded_handshake_body(len: usize) -> Vec<u8> {
    let fixed = enc(&map(&[("Version", 1u64.into()), ("Pad", "".into())])).len();
    // The empty pad string is a fixstr (1 byte); a str16 pad costs 3 bytes of header.
    let pad = len - (fixed - 1) - 3;
    let body = enc(&map(&[
        ("Version", 1u64.into()),
        ("Pad", V::S("a".repeat(pad))),
    ]));
    assert_eq!(body.len(), len);
    body
}

#[test]
fn a_message_of_exactly_rpc_max_frame_bytes_is_accepted() {
    let mut sim = sim_with(|c| c.limits.rpc_max_frame = 1024);
    let c = connect(&mut sim);
    let mut bytes = req("handshake", 1);
    bytes.extend(padded_handshake_body(1024));
    assert_bytes(&call(&mut sim, c, &bytes), &reply(1, ""));
}

#[test]
fn a_message_over_rpc_max_frame_closes_without_a_reply() {
    let mut sim = sim_with(|c| c.limits.rpc_max_frame = 1024);
    let c = connect(&mut sim);
    let mut bytes = req("handshake", 1);
    bytes.extend(padded_handshake_body(1025));
    sim.send(c, &bytes);
    assert_closed_silently(&mut sim, c);
}

#[test]
fn a_string_over_rpc_max_str_closes_without_a_reply() {
    let mut sim = sim_with(|c| c.limits.rpc_max_str = 100);
    let c = handshaken(&mut sim);
    let ok = req_with(
        "force-leave",
        2,
        &map(&[("Node", V::S("n".repeat(100))), ("Prune", false.into())]),
    );
    assert_bytes(&call(&mut sim, c, &ok), &reply(2, ""));
    let too_long = req_with(
        "force-leave",
        3,
        &map(&[("Node", V::S("n".repeat(101))), ("Prune", false.into())]),
    );
    sim.send(c, &too_long);
    assert_closed_silently(&mut sim, c);
}

#[test]
fn container_counts_over_the_limit_close_from_their_declaration() {
    // Default rpc_max_container is 4096; each declaration alone (no elements) closes.
    for (name, bytes) in [
        ("array16 of 4097", "dc1001"),
        ("array32 of 2^32-1", "ddffffffff"),
        ("map16 of 4097", "de1001"),
        ("map32 of 2^32-1", "dfffffffff"),
    ] {
        let mut sim = Sim::new();
        let c = handshaken(&mut sim);
        sim.send(c, &hex(bytes));
        let got = sim.received(c);
        assert!(got.is_empty(), "{name}: replied {}", to_hex(&got));
        assert!(sim.is_closed(c), "{name}: not closed");
    }
}

/// A `tags` request whose `DeleteTags` lists `n` names (answered at once, with no body).
fn delete_tags_of(seq: u64, n: usize) -> Vec<u8> {
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    req_with(
        "tags",
        seq,
        &map(&[("DeleteTags", strs(&names)), ("Tags", V::M(vec![]))]),
    )
}

#[test]
fn an_array16_of_exactly_rpc_max_container_elements_is_accepted() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let max = sim.agent.config().limits.rpc_max_container;
    assert!(max >= 16, "an array16 is needed");
    assert_bytes(&call(&mut sim, c, &delete_tags_of(2, max)), &reply(2, ""));
    sim.send(c, &delete_tags_of(3, max + 1));
    assert_closed_silently(&mut sim, c);
}

#[test]
fn a_fixarray_over_a_small_rpc_max_container_closes() {
    let mut sim = sim_with(|c| c.limits.rpc_max_container = 8);
    let c = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, c, &delete_tags_of(2, 8)), &reply(2, ""));
    sim.send(c, &delete_tags_of(3, 9));
    assert_closed_silently(&mut sim, c);
}

#[test]
fn a_fixmap_over_a_small_rpc_max_container_closes() {
    let mut sim = sim_with(|c| c.limits.rpc_max_container = 2);
    let c = handshaken(&mut sim);
    // A stop body of 3 entries, over a limit of 2.
    let body = map(&[("Stop", 1u64.into()), ("A", V::Nil), ("B", V::Nil)]);
    sim.send(c, &req_with("stop", 2, &body));
    assert_closed_silently(&mut sim, c);
}

#[test]
fn values_over_rpc_max_values_close_without_a_reply() {
    let mut sim = sim_with(|c| c.limits.rpc_max_values = 100);
    let c = handshaken(&mut sim);
    // A stop body {"Stop":1,"X":[nil × 120]}: 125 values in all.
    let body = map(&[("Stop", 1u64.into()), ("X", V::A(vec![V::Nil; 120]))]);
    sim.send(c, &req_with("stop", 2, &body));
    assert_closed_silently(&mut sim, c);
}

#[test]
fn input_is_buffered_up_to_one_frame_and_no_more() {
    // A header that can never complete within the frame: the agent takes at most
    // rpc_max_frame bytes before it closes.
    let mut sim = sim_with(|c| c.limits.rpc_max_frame = 8192);
    let c = handshaken(&mut sim);
    // array16 of 4000 strings of 8 bytes: 36 kB declared.
    let mut bytes = hex("dc0fa0");
    for _ in 0..4000 {
        bytes.extend(hex("a8"));
        bytes.extend(b"abcdefgh");
    }
    let now = sim.now;
    let taken = sim.agent.handle_stream(c, &bytes, now);
    assert!(taken <= 8192, "took {taken}");
    sim.drain();
    assert_closed_silently(&mut sim, c);
}
