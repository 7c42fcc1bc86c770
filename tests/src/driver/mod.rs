//! The conformance driver: what a conformance case needs from "an agent it can talk to",
//! so one case runs unchanged on the in-memory driver ([`memory::Memory`], a virtual clock
//! and no sockets) and on the real runtimes ([`process::Process`]: the `tandem` and
//! `tandem-mio` binaries on ephemeral loopback ports).
//!
//! A driver provides a few primitives — open a connection, send bytes, receive what arrived
//! within some time, let time pass — and everything a case calls is built on them here,
//! once: reading one HTTP response or one msgpack value, asserting silence, asserting the
//! close. Time is the driver's own: virtual for memory (waiting advances the clock, deadline
//! by deadline, and stops as soon as the awaited bytes are in), real for processes. Waits
//! that expect something to arrive are bounded by [`DEADLINE`]; they never assert speed.
//!
//! The client side of a connection (its unread bytes, whether the agent closed it) lives in
//! [`Conn`], as it would in a socket client, so drivers hold only their transport.

pub mod memory;
pub mod process;

use std::time::Duration;

pub use tandem_core::Listener;
use tandem_core::{Config, Timing};

use crate::http::{Response, post_api, take_responses};

/// How long any wait for an expected answer may take before the case fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The configuration every conformance case starts from: a node name of its own (so a
/// member list can be checked against it) and a short empty long-poll, so cases that wait
/// for one stay fast on the real runtimes.
pub fn base_config() -> Config {
    Config {
        node_name: "conformance-node".into(),
        timing: Timing {
            pull_timeout_ms: 300,
            pull_batch_ms: 20,
            ..Timing::default()
        },
        ..Config::default()
    }
}

/// One client connection: its id in the driver and the bytes received and not yet read.
#[derive(Debug)]
pub struct Conn {
    id: usize,
    buf: Vec<u8>,
    eof: bool,
    /// The close was a TCP reset, not an orderly FIN.
    reset: bool,
}

impl Conn {
    /// A connection the driver knows as `id`.
    pub fn new(id: usize) -> Conn {
        Conn {
            id,
            buf: Vec::new(),
            eof: false,
            reset: false,
        }
    }

    /// The driver's id of this connection.
    pub fn id(&self) -> usize {
        self.id
    }
}

/// What [`Driver::receive`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Bytes the agent wrote (never empty).
    Bytes(Vec<u8>),
    /// The agent closed the connection; nothing more will come.
    Eof,
    /// The connection was reset (the agent closed it with bytes of ours unread and did not
    /// linger to read them); anything the agent wrote and the client had not read yet may
    /// be lost.
    Reset,
    /// Nothing arrived within the time given, which has now passed.
    Quiet,
}

/// An agent a conformance case talks to.
pub trait Driver {
    /// `memory`, `smol` or `mio`, for failure messages.
    fn name(&self) -> &'static str;

    /// The process id the agent reports (`welcome`'s `pid`).
    fn pid(&self) -> u32;

    /// The LAN gossip address the agent advertises (its member's `Addr` and `Port`).
    fn lan_addr(&self) -> std::net::SocketAddr;

    /// Time since the driver started, on its own clock (virtual or real).
    fn elapsed(&self) -> Duration;

    /// Opens a connection to the HTTP API or the agent RPC.
    fn connect(&mut self, to: Listener) -> Conn;

    /// Writes `bytes` on `c`, all at once.
    fn send(&mut self, c: &Conn, bytes: &[u8]);

    /// Half-closes `c` from the client side (the agent reads EOF).
    fn shutdown_write(&mut self, c: &Conn);

    /// Aborts `c` from the client side (a TCP reset); it must not be used afterwards.
    fn reset(&mut self, c: &Conn);

    /// Waits at most `within` for bytes or the close on `c`.
    fn receive(&mut self, c: &Conn, within: Duration) -> Received;

    /// Lets `d` pass (virtual clock: every deadline on the way fires in order).
    fn wait(&mut self, d: Duration);

    // ----- built on the primitives ---------------------------------------------------

    /// Moves what arrives on `c` within `within` into its buffer; whether anything did.
    fn fill(&mut self, c: &mut Conn, within: Duration) -> bool {
        if c.eof {
            return false;
        }
        match self.receive(c, within) {
            Received::Bytes(b) => {
                c.buf.extend_from_slice(&b);
                true
            }
            Received::Eof => {
                c.eof = true;
                true
            }
            Received::Reset => {
                c.eof = true;
                c.reset = true;
                true
            }
            Received::Quiet => false,
        }
    }

    /// Reads until `frame` finds a whole `what` at the front of the received bytes (it
    /// returns its length); returns those bytes, leaving the rest buffered.
    fn read_frame(
        &mut self,
        c: &mut Conn,
        what: &str,
        frame: &dyn Fn(&[u8]) -> Option<usize>,
    ) -> Vec<u8> {
        let deadline = self.elapsed() + DEADLINE;
        loop {
            if let Some(n) = frame(&c.buf) {
                return c.buf.drain(..n).collect();
            }
            assert!(
                !c.eof,
                "{}: connection {} before a whole {what}; unread: {:?}",
                self.name(),
                if c.reset { "reset" } else { "closed" },
                String::from_utf8_lossy(&c.buf)
            );
            let left = deadline.saturating_sub(self.elapsed());
            assert!(
                !left.is_zero(),
                "{}: no whole {what} within {DEADLINE:?}; unread: {:?}",
                self.name(),
                String::from_utf8_lossy(&c.buf)
            );
            self.fill(c, left);
        }
    }

    /// The next HTTP response on `c`.
    fn response(&mut self, c: &mut Conn) -> Response {
        let mut raw = self.read_frame(c, "HTTP response", &http_response_len);
        take_responses(&mut raw).remove(0)
    }

    /// The next `n` HTTP responses on `c`.
    fn responses(&mut self, c: &mut Conn, n: usize) -> Vec<Response> {
        (0..n).map(|_| self.response(c)).collect()
    }

    /// The exact bytes of the next `n` msgpack values on `c` (RPC headers, bodies, records).
    fn rpc_values(&mut self, c: &mut Conn, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend(self.read_frame(c, "msgpack value", &msgpack_len));
        }
        out
    }

    /// `POST /api` with `body` on a fresh connection: its response.
    fn http(&mut self, body: &str) -> Response {
        let mut c = self.connect(Listener::Http);
        self.send(&c, &post_api(body));
        self.response(&mut c)
    }

    /// `POST /api` with `body` on a fresh connection: the body of its `200` answer.
    fn api(&mut self, body: &str) -> String {
        let r = self.http(body);
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            self.name(),
            String::from_utf8_lossy(&r.raw)
        );
        r.text().to_string()
    }

    /// Asserts that nothing arrives on `c` for `d` (which passes) and it stays open.
    fn expect_quiet(&mut self, c: &mut Conn, d: Duration) {
        let end = self.elapsed() + d;
        loop {
            let left = end.saturating_sub(self.elapsed());
            if left.is_zero() || !self.fill(c, left) {
                break;
            }
        }
        assert!(
            c.buf.is_empty() && !c.eof,
            "{}: expected silence for {d:?}, got {:?}{}",
            self.name(),
            String::from_utf8_lossy(&c.buf),
            if c.eof { " and the close" } else { "" }
        );
    }

    /// Asserts that the agent closes `c` without writing anything more, in order (a FIN, not
    /// a reset that could have destroyed its last answer).
    fn expect_eof(&mut self, c: &mut Conn) {
        self.expect_closed_or_reset(c);
        assert!(
            !c.reset,
            "{}: the connection was reset, not closed in order",
            self.name()
        );
    }

    /// Asserts that the agent closes `c` without writing anything more, by a FIN or a
    /// reset (where nothing was to be delivered, and the runtimes do not linger).
    fn expect_closed_or_reset(&mut self, c: &mut Conn) {
        let deadline = self.elapsed() + DEADLINE;
        loop {
            assert!(
                c.buf.is_empty(),
                "{}: expected the close, got {:?}",
                self.name(),
                String::from_utf8_lossy(&c.buf)
            );
            if c.eof {
                return;
            }
            let left = deadline.saturating_sub(self.elapsed());
            assert!(
                !left.is_zero(),
                "{}: connection still open after {DEADLINE:?}",
                self.name()
            );
            self.fill(c, left);
        }
    }
}

/// The length of the first whole HTTP response in `buf`, if there is one (framed by its
/// `Content-Length`, as [`take_responses`] frames it; only the first is parsed).
pub fn http_response_len(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(e) => panic!(
            "malformed response ({e}): {:?}",
            String::from_utf8_lossy(buf)
        ),
    };
    let body: usize = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.parse().ok())
                .expect("numeric content-length")
        })
        .unwrap_or(0);
    (buf.len() >= head + body).then_some(head + body)
}

/// The length of the first whole msgpack value in `buf`, if there is one. It only walks
/// markers and lengths, so it accepts exactly what a decoder would frame the same way.
pub fn msgpack_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    // Values still to skip: one to start with, more for every container entered.
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let m = *buf.get(pos)?;
        pos += 1;
        let be = |pos: &mut usize, n: usize| -> Option<u64> {
            let b = buf.get(*pos..*pos + n)?;
            *pos += n;
            Some(b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
        };
        let skip = match m {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => 0,
            0x80..=0x8f => {
                pending += 2 * u64::from(m & 0x0f);
                0
            }
            0x90..=0x9f => {
                pending += u64::from(m & 0x0f);
                0
            }
            0xa0..=0xbf => u64::from(m & 0x1f),
            0xc4 | 0xd9 => be(&mut pos, 1)?,
            0xc5 | 0xda => be(&mut pos, 2)?,
            0xc6 | 0xdb => be(&mut pos, 4)?,
            0xc7 => be(&mut pos, 1)? + 1,
            0xc8 => be(&mut pos, 2)? + 1,
            0xc9 => be(&mut pos, 4)? + 1,
            0xca | 0xce | 0xd2 => 4,
            0xcb | 0xcf | 0xd3 => 8,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xd4..=0xd8 => 1 + (1u64 << (m - 0xd4)),
            0xdc => {
                pending += be(&mut pos, 2)?;
                0
            }
            0xdd => {
                pending += be(&mut pos, 4)?;
                0
            }
            0xde => {
                pending += 2 * be(&mut pos, 2)?;
                0
            }
            0xdf => {
                pending += 2 * be(&mut pos, 4)?;
                0
            }
            0xc1 => panic!("0xc1 is never a msgpack marker: {buf:02x?}"),
        };
        pos = pos.checked_add(usize::try_from(skip).ok()?)?;
        if pos > buf.len() {
            return None;
        }
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::msgpack_len;

    #[test]
    fn msgpack_len_frames_whole_values_only() {
        // {"Error":"","Seq":0} then a second value.
        let handshake_ok = [
            0x82, 0xa5, b'E', b'r', b'r', b'o', b'r', 0xa0, 0xa3, b'S', b'e', b'q', 0x00,
        ];
        assert_eq!(msgpack_len(&handshake_ok), Some(13));
        for cut in 0..13 {
            assert_eq!(msgpack_len(&handshake_ok[..cut]), None, "cut at {cut}");
        }
        let mut two = handshake_ok.to_vec();
        two.extend([0x91, 0xc4, 0x02, 1, 2]);
        assert_eq!(msgpack_len(&two), Some(13));
        assert_eq!(msgpack_len(&two[13..]), Some(5));
        assert_eq!(msgpack_len(&[0xdc, 0x00, 0x02, 0xcd, 1, 2, 0xc0]), Some(7));
    }
}
