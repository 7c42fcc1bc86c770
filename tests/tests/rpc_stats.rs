//! Monitor records dropped for a slow RPC reader are counted where operators look: the
//! `rpc` section of `stats`, over both protocols.

use tandem_core::{Config, Level, Limits, Listener};
use tandem_tests::Sim;

use tandem_tests::rpc_header as header;

#[test]
fn dropped_monitor_records_show_in_stats() {
    let mut sim = Sim::with_config(Config {
        limits: Limits {
            max_tx: 4096,
            ..Limits::default()
        },
        ..Config::default()
    });
    // A monitor whose reader never reads: drive the agent directly, never consuming.
    let now = sim.now;
    let c = sim.agent.accept(Listener::Rpc, None, now).unwrap();
    let mut req = header("handshake", 1);
    req.extend_from_slice(&[0x81, 0xa7, b'V', b'e', b'r', b's', b'i', b'o', b'n', 0x01]);
    req.extend_from_slice(&header("monitor", 2));
    req.extend_from_slice(&[0x81, 0xa8, b'L', b'o', b'g', b'L', b'e', b'v', b'e', b'l']);
    req.extend_from_slice(&[0xa4, b'I', b'N', b'F', b'O']);
    assert_eq!(sim.agent.handle_stream(c, &req, now), req.len());
    while sim.agent.poll_output().is_some() {}
    for i in 0..200 {
        let text = format!("test: line {i} {}", "x".repeat(100));
        sim.agent.log_record(Level::Info, &text, now);
        while sim.agent.poll_output().is_some() {}
    }
    let dropped = sim.agent.stats().rpc_records_dropped;
    assert!(dropped > 100, "only {dropped} dropped");
    assert!(sim.agent.tx_pending(c).len() < 4096 + 512);

    // The HTTP API's `stats` shows the count.
    let v = sim.api(r#"{"action":"exec","command":"stats"}"#);
    let rpc = &v["body"]["results"][0]["stats"]["rpc"];
    assert_eq!(rpc["records_dropped"], dropped.to_string(), "{v}");

    // So does the RPC's `stats`, on a connection that reads.
    let r = sim.connect_to(Listener::Rpc);
    let mut req = header("handshake", 1);
    req.extend_from_slice(&[0x81, 0xa7, b'V', b'e', b'r', b's', b'i', b'o', b'n', 0x01]);
    req.extend_from_slice(&header("stats", 2));
    sim.send(r, &req);
    let bytes = sim.received(r);
    let key = b"\xafrecords_dropped";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("records_dropped in the RPC stats");
    let value = dropped.to_string();
    assert_eq!(bytes[at + key.len()] as usize, 0xa0 + value.len());
    assert_eq!(
        &bytes[at + key.len() + 1..at + key.len() + 1 + value.len()],
        value.as_bytes()
    );
}
