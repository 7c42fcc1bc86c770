//! Receive buffers grow with the bytes that arrive, never with the lengths a peer declares
//! (issue 15, item 1): a head announcing a large body, with or without
//! `Expect: 100-continue`, and an RPC message announcing a large string cost only what was
//! sent. Asserted on the core's buffer capacities (`Agent::buffer_capacity`).

use tandem_core::{Config, Limits, Listener};
use tandem_tests::sim::Sim;

const MIB: usize = 1024 * 1024;

/// What a connection holding one small head may own: the first receive chunk and a little
/// output, with room for `Vec`'s rounding. Far below the 1 MiB the heads declare.
const SMALL: usize = 16 * 1024;

fn head_declaring(len: usize, expect_continue: bool) -> Vec<u8> {
    let expect = if expect_continue {
        "Expect: 100-continue\r\n"
    } else {
        ""
    };
    format!(
        "POST /api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{expect}Content-Length: {len}\r\n\r\n"
    )
    .into_bytes()
}

fn many_heads_hold_small_buffers(expect_continue: bool) {
    let mut sim = Sim::new();
    let conns: Vec<_> = (0..1000)
        .map(|_| {
            let c = sim.connect();
            sim.send(c, &head_declaring(MIB, expect_continue));
            // One body byte too: the body is being read.
            sim.send(c, b"{");
            c
        })
        .collect();
    let total: usize = conns.iter().map(|&c| sim.agent.buffer_capacity(c)).sum();
    for &c in &conns {
        let held = sim.agent.buffer_capacity(c);
        assert!(held <= SMALL, "a 1 MiB declaration holds {held} bytes");
        assert!(!sim.is_closed(c));
    }
    assert!(total <= 1000 * SMALL, "1000 heads hold {total} bytes");
    if expect_continue {
        let r = sim.received(conns[0]);
        assert!(r.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"), "{r:?}");
    }
}

#[test]
fn heads_declaring_a_mebibyte_hold_only_what_was_sent() {
    many_heads_hold_small_buffers(false);
}

#[test]
fn expect_continue_heads_hold_only_what_was_sent() {
    many_heads_hold_small_buffers(true);
}

#[test]
fn a_body_still_arrives_whole_as_it_grows() {
    // Growing in steps does not change what is served: a body of max_body bytes, sent in
    // pieces of every size, is read whole and answered.
    let mut sim = Sim::new();
    let pad = " ".repeat(MIB - 64);
    let body = format!(r#"{{"action":"exec","command":"version"{pad}}}"#);
    assert!(body.len() <= MIB);
    let mut req = head_declaring(body.len(), false);
    req.extend_from_slice(body.as_bytes());
    let c = sim.connect();
    let mut sent = 0;
    let mut piece = 1;
    while sent < req.len() {
        let end = (sent + piece).min(req.len());
        sim.send(c, &req[sent..end]);
        let held = sim.agent.buffer_capacity(c);
        assert!(
            held <= 2 * end + SMALL,
            "{held} bytes held after {end} sent"
        );
        sent = end;
        piece = piece * 3 + 1;
    }
    let r = sim.responses(c);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200);
    let text = String::from_utf8_lossy(&r[0].body);
    assert!(text.contains(r#""state":"SUCCEEDED""#), "{text}");
}

#[test]
fn an_rpc_message_declaring_a_large_string_holds_only_what_was_sent() {
    let mut sim = Sim::with_config(Config {
        limits: Limits {
            rpc_max_frame: 64 * MIB,
            rpc_max_str: 64 * MIB,
            ..Limits::default()
        },
        ..Config::default()
    });
    let conns: Vec<_> = (0..200)
        .map(|_| {
            let c = sim.connect_to(Listener::Rpc);
            // str32 of 60 MiB, with its first byte.
            let mut msg = vec![0x81, 0xa7];
            msg.extend_from_slice(b"Command");
            msg.push(0xdb);
            msg.extend_from_slice(&(60 * MIB as u32).to_be_bytes());
            msg.push(b'h');
            sim.send(c, &msg);
            c
        })
        .collect();
    for &c in &conns {
        let held = sim.agent.buffer_capacity(c);
        assert!(held <= SMALL, "a 60 MiB declaration holds {held} bytes");
        assert!(!sim.is_closed(c));
    }
}
