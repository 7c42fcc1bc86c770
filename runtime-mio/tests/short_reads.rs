//! The connection read loop stops at a short read instead of reading on until `WouldBlock`
//! (one system call fewer per request), and edge-triggered readiness still delivers
//! everything: bytes that arrive later raise their own edge, a FIN that came with the bytes
//! is still read, and a request larger than the receive window is read in full.
//!
//! One thread plays both sides: the client writes before the loop polls, so what the agent
//! finds on the socket at each turn is fixed, and the counts are exact.

mod support;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use mio::{Events, Poll, Token};
use support::{post_api, take_responses};
use tandem_core::{Config, Listener};
use tandem_mio::MioAgent;
use tandem_tests::http::Response;

/// Turns of the loop a test may take before it gives up waiting (each at most 100 ms).
const MAX_TURNS: usize = 100;

struct Rig {
    poll: Poll,
    events: Events,
    agent: MioAgent,
    client: TcpStream,
    /// Client-side bytes not yet parsed into responses.
    buf: Vec<u8>,
    /// The client has seen EOF.
    eof: bool,
}

impl Rig {
    fn new() -> Rig {
        let poll = Poll::new().unwrap();
        let mut agent = MioAgent::new(Config::default()).unwrap();
        let addr = agent
            .listen(Listener::Http, "127.0.0.1:0".parse().unwrap())
            .unwrap();
        agent.register(poll.registry(), Token(16)).unwrap();
        let client = TcpStream::connect(addr).unwrap();
        client.set_nonblocking(true).unwrap();
        let mut rig = Rig {
            poll,
            events: Events::with_capacity(64),
            agent,
            client,
            buf: Vec::new(),
            eof: false,
        };
        for _ in 0..MAX_TURNS {
            if rig.agent.connection_count() == 1 {
                return rig;
            }
            rig.turn();
        }
        panic!("the connection was never accepted");
    }

    /// One turn of the loop: poll (at most 100 ms), hand over the events, fire timers.
    fn turn(&mut self) {
        let timeout = self
            .agent
            .poll_timeout()
            .map_or(Duration::from_millis(100), |t| {
                t.min(Duration::from_millis(100))
            });
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            r => r.unwrap(),
        }
        for event in self.events.iter() {
            assert!(self.agent.handle_event(event));
        }
        self.agent.handle_timeout();
    }

    /// Takes what the client can read now, without blocking.
    fn client_read(&mut self) -> Vec<Response> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.client.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("client read failed: {e}"),
            }
        }
        take_responses(&mut self.buf)
    }

    /// Turns the loop until the client has a response (and EOF too, when `eof`).
    fn until_response(&mut self, eof: bool) -> Response {
        let mut got = Vec::new();
        for _ in 0..MAX_TURNS {
            got.extend(self.client_read());
            if !got.is_empty() && (!eof || self.eof) {
                assert_eq!(got.len(), 1, "one request, one response");
                return got.remove(0);
            }
            self.turn();
        }
        panic!(
            "no response{} after {MAX_TURNS} turns (responses so far: {}, EOF: {})",
            if eof { " and EOF" } else { "" },
            got.len(),
            self.eof
        );
    }
}

fn body(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn a_client_that_waits_for_each_answer_costs_no_empty_read_per_request() {
    let mut rig = Rig::new();
    // Accepting reads the new socket once without an event (bytes may already be there).
    let before = rig.agent.reads_would_block();
    assert!(before <= 1, "{before} empty reads before any request");
    for i in 0..50 {
        let request = format!(r#"{{"action":"exec","command":"version","requestId":"{i}"}}"#);
        rig.client.write_all(&post_api(&request)).unwrap();
        let r = rig.until_response(false);
        assert_eq!(body(&r)["requestId"], i.to_string());
    }
    // Reading on until `WouldBlock` made one more read after every request: 50 here.
    let wasted = rig.agent.reads_would_block() - before;
    assert!(
        wasted <= 2,
        "{wasted} reads returned WouldBlock over 50 requests"
    );
}

#[test]
fn a_request_and_the_fin_behind_it_are_both_read() {
    let mut rig = Rig::new();
    // Both arrive before the loop polls: one edge reports bytes and FIN together, and the
    // short read that takes the bytes leaves the FIN, for which no later edge comes.
    let request = r#"{"action":"exec","command":"version","requestId":"fin"}"#;
    rig.client.write_all(&post_api(request)).unwrap();
    rig.client.shutdown(Shutdown::Write).unwrap();
    let r = rig.until_response(true);
    assert_eq!(body(&r)["requestId"], "fin");
    assert_eq!(rig.agent.connection_count(), 0, "the agent saw the EOF");
}

#[test]
fn bytes_after_a_short_read_are_read_on_their_own_edge() {
    let mut rig = Rig::new();
    let request = post_api(r#"{"action":"exec","command":"version","requestId":"split"}"#);
    let (head, tail) = request.split_at(request.len() / 2);
    rig.client.write_all(head).unwrap();
    // The agent takes the first half (a short read) and waits for more.
    for _ in 0..3 {
        rig.turn();
    }
    assert!(rig.client_read().is_empty(), "answered half a request");
    rig.client.write_all(tail).unwrap();
    let r = rig.until_response(false);
    assert_eq!(body(&r)["requestId"], "split");
}

#[test]
fn a_request_larger_than_the_receive_window_is_read_whole() {
    let mut rig = Rig::new();
    // Larger than the 4 KiB first window: the first reads fill the window, and the loop
    // reads on after a full read without waiting for an edge that will not come. The
    // command line is over the limit: the answer names its length, so all of it was read.
    let word = "x".repeat(20_000);
    let request = format!(r#"{{"action":"exec","command":"echo {word}","requestId":"big"}}"#);
    rig.client.write_all(&post_api(&request)).unwrap();
    let r = rig.until_response(false);
    let answer = body(&r);
    assert_eq!(answer["requestId"], "big");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("20005 bytes"), "{message}");
}
