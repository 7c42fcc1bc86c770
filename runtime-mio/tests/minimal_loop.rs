//! The `minimal_loop` example serves the HTTP API: its `serve` runs here on a thread (the
//! example's own file, compiled into this test), and a client talks to it over loopback.
//! The thread blocks in poll(2) until the test process ends.

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/minimal_loop.rs"]
mod minimal_loop;

mod support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::{post_api, take_responses};

fn start() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || minimal_loop::serve(listener));
    port
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

#[test]
fn the_minimal_loop_serves_exec_version_with_keep_alive_and_close() {
    let port = start();
    let mut c = connect(port);
    // Two requests on one keep-alive connection, in one write.
    let mut both = post_api(r#"{"action":"exec","command":"version","requestId":"a"}"#);
    both.extend(post_api(r#"{"action":"init_session","requestId":"b"}"#));
    c.write_all(&both).unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    while got.len() < 2 {
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
        got.extend(take_responses(&mut buf));
    }
    let version = json(&got[0].body);
    assert_eq!(version["requestId"], "a");
    assert_eq!(version["state"], "SUCCEEDED");
    let items = version["body"]["results"].as_array().unwrap();
    assert_eq!(items[0]["type"], "version");
    assert_eq!(items[0]["version"], tandem_core::VERSION);
    assert_eq!(json(&got[1].body)["state"], "SUCCEEDED");

    // `Connection: close`: the answer, then EOF.
    let body = r#"{"action":"exec","command":"echo hi"}"#;
    let mut c = connect(port);
    write!(
        c,
        "POST /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    let got = take_responses(&mut all);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("connection"), Some("close"));
    assert!(all.is_empty());
}

#[test]
fn the_minimal_loop_answers_a_parked_pull_on_its_deadline() {
    // The default pull timeout is two seconds: the loop must wake up for the core's timer.
    let port = start();
    let mut c = connect(port);
    c.write_all(&post_api(r#"{"action":"init_session"}"#))
        .unwrap();
    let mut buf = Vec::new();
    let mut next = |c: &mut TcpStream| loop {
        if let Some(r) = take_responses(&mut buf).into_iter().next() {
            return json(&r.body);
        }
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
    };
    let init = next(&mut c);
    let pull = format!(
        r#"{{"action":"pull_results","sessionId":"{}","consumerId":"{}"}}"#,
        init["sessionId"].as_str().unwrap(),
        init["consumerId"].as_str().unwrap()
    );
    c.write_all(&post_api(&pull)).unwrap();
    assert_eq!(next(&mut c)["state"], "SUCCEEDED", "the welcome items");
    c.write_all(&post_api(&pull)).unwrap();
    let empty = next(&mut c);
    assert_eq!(empty["state"], "SUCCEEDED");
    assert_eq!(empty["body"]["results"], serde_json::json!([]));
}

#[test]
fn the_minimal_loop_lists_itself_at_the_gossip_address_it_binds() {
    let port = start();
    let mut c = connect(port);
    c.write_all(&post_api(r#"{"action":"exec","command":"members"}"#))
        .unwrap();
    let mut buf = Vec::new();
    let got = loop {
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(r) = take_responses(&mut buf).pop() {
            break r;
        }
    };
    let answer = json(&got.body);
    let members = answer["body"]["results"][0]["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{answer}");
    let (addr, gossip_port) = (&members[0]["Addr"], &members[0]["Port"]);
    assert_eq!(addr, "127.0.0.1");
    let gossip_port = u16::try_from(gossip_port.as_u64().unwrap()).unwrap();
    // Not the default it used to advertise without binding it, and really bound here: a
    // second socket cannot take the port.
    assert_ne!(gossip_port, 8301);
    let taken = std::net::UdpSocket::bind(("127.0.0.1", gossip_port)).unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
}
