//! Blocking clients for the soak's threads: the HTTP API (`POST /api` over a keep-alive
//! connection) and the agent RPC (msgpack, with the conformance suite's own codec, so the
//! core is not checked with the core's codec).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use serde_json::Value;
use tandem_tests::driver::http_response_len;
use tandem_tests::http::{Response, post_api, take_responses};

#[path = "../../../tests/conformance_rpc_support/mod.rs"]
mod msgpack;

pub use msgpack::{V, map};

use crate::ctx::IO_TIMEOUT;

/// A keep-alive connection that has been idle this long is replaced before use: the
/// agent closes idle keep-alive connections after 75 s.
const REUSE_IDLE: Duration = Duration::from_secs(30);

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("write timeout: {e}"))?;
    Ok(s)
}

/// Reads into `buf` until `frame` finds a whole value at its front; takes those bytes.
fn read_frame(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    within: Duration,
    frame: &dyn Fn(&[u8]) -> Option<usize>,
) -> Result<Option<Vec<u8>>, String> {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(n) = frame(buf) {
            return Ok(Some(buf.drain(..n).collect()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| format!("read timeout: {e}"))?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "the agent closed the connection (unread: {:?})",
                    String::from_utf8_lossy(buf)
                ));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// An HTTP API client on one keep-alive connection (reconnecting when it is gone).
pub struct Http {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    last_used: Instant,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        Http {
            addr,
            stream: None,
            buf: Vec::new(),
            last_used: Instant::now(),
        }
    }

    /// Forces a fresh connection for the next request (connection churn).
    pub fn reconnect(&mut self) {
        self.stream = None;
        self.buf.clear();
    }

    /// `POST /api` with `body`: the JSON of its `200` answer.
    pub fn api(&mut self, body: &Value) -> Result<Value, String> {
        let r = self.roundtrip(&post_api(&body.to_string()))?;
        if r.status != 200 {
            return Err(format!(
                "HTTP {} to {body}: {}",
                r.status,
                String::from_utf8_lossy(&r.raw)
            ));
        }
        serde_json::from_slice(&r.body)
            .map_err(|e| format!("{e} in the answer to {body}: {}", r.text()))
    }

    fn stream(&mut self) -> Result<&mut TcpStream, String> {
        if self.stream.is_none() || self.last_used.elapsed() > REUSE_IDLE {
            self.buf.clear();
            self.stream = Some(connect(self.addr)?);
        }
        Ok(self.stream.as_mut().expect("connected"))
    }

    fn roundtrip(&mut self, req: &[u8]) -> Result<Response, String> {
        let s = self.stream()?;
        let sent = s.write_all(req).map_err(|e| format!("write: {e}"));
        let got = sent.and_then(|()| {
            let s = self.stream.as_mut().expect("connected");
            read_frame(s, &mut self.buf, IO_TIMEOUT, &http_response_len)
        });
        let raw = match got {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                self.reconnect();
                return Err(format!("no answer within {IO_TIMEOUT:?}"));
            }
            Err(e) => {
                self.reconnect();
                return Err(e);
            }
        };
        let mut raw = raw;
        let r = take_responses(&mut raw).remove(0);
        if r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.reconnect();
        }
        self.last_used = Instant::now();
        Ok(r)
    }

    /// Sends `body` and drops the connection without reading the answer: with a reset
    /// (`SO_LINGER` 0) or an orderly close.
    pub fn send_and_abandon(&mut self, body: &Value, reset: bool) -> Result<(), String> {
        let req = post_api(&body.to_string());
        let s = self.stream()?;
        s.write_all(&req).map_err(|e| format!("write: {e}"))?;
        // Give the agent a moment to park the request before the connection goes.
        std::thread::sleep(Duration::from_millis(30));
        let s = self.stream.take().expect("connected");
        if reset {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt(2) on a socket we own, with a pointer to a live `linger`
            // and its exact size; a zero linger makes the close a reset.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    std::ptr::from_ref(&linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(format!("SO_LINGER: {}", std::io::Error::last_os_error()));
            }
        }
        drop(s);
        self.buf.clear();
        Ok(())
    }
}

/// The `state` of an API answer.
pub fn state(v: &Value) -> &str {
    v["state"].as_str().unwrap_or("")
}

/// A handshaken agent RPC connection.
pub struct Rpc {
    stream: TcpStream,
    buf: Vec<u8>,
    seq: u64,
}

impl Rpc {
    /// Connects and performs the `handshake` (Version 1).
    pub fn connect(addr: SocketAddr) -> Result<Rpc, String> {
        let mut rpc = Rpc {
            stream: connect(addr)?,
            buf: Vec::new(),
            seq: 0,
        };
        rpc.call(
            "handshake",
            Some(&map(&[("Version", V::U(1))])),
            false,
            "handshake",
        )?;
        Ok(rpc)
    }

    /// Writes a request; returns its `Seq`.
    pub fn send(&mut self, command: &str, body: Option<&V>) -> Result<u64, String> {
        let seq = self.seq;
        self.seq += 1;
        let bytes = match body {
            Some(b) => msgpack::req_with(command, seq, b),
            None => msgpack::req(command, seq),
        };
        self.stream
            .write_all(&bytes)
            .map_err(|e| format!("rpc {command}: write: {e}"))?;
        Ok(seq)
    }

    /// The next msgpack value, or `None` if none arrived within `within`.
    pub fn value(&mut self, within: Duration) -> Result<Option<V>, String> {
        let raw = read_frame(
            &mut self.stream,
            &mut self.buf,
            within,
            &tandem_tests::driver::msgpack_len,
        )?;
        Ok(raw.map(|raw| msgpack::decode(&raw).expect("a framed value decodes").0))
    }

    /// The next value, which must come within [`IO_TIMEOUT`].
    pub fn must_value(&mut self, what: &str) -> Result<V, String> {
        self.value(IO_TIMEOUT)?
            .ok_or_else(|| format!("rpc {what}: nothing within {IO_TIMEOUT:?}"))
    }

    /// Sends a request and reads its reply header (which must carry its `Seq` and no
    /// error) and, if `reply_body`, the body after it.
    pub fn call(
        &mut self,
        command: &str,
        body: Option<&V>,
        reply_body: bool,
        what: &str,
    ) -> Result<Option<V>, String> {
        let seq = self.send(command, body)?;
        let header = self.must_value(what)?;
        check_header(&header, seq, what)?;
        if reply_body {
            Ok(Some(self.must_value(what)?))
        } else {
            Ok(None)
        }
    }
}

/// A reply header `{"Error": "", "Seq": seq}`.
pub fn check_header(h: &V, seq: u64, what: &str) -> Result<(), String> {
    let (error, got) = header(h).ok_or_else(|| format!("rpc {what}: not a header: {h:?}"))?;
    if got != seq || !error.is_empty() {
        return Err(format!(
            "rpc {what}: reply Seq {got} Error {error:?} (wanted Seq {seq}, no error)"
        ));
    }
    Ok(())
}

/// `(Error, Seq)` of a header.
pub fn header(h: &V) -> Option<(&str, u64)> {
    if !matches!(h, V::M(_)) {
        return None;
    }
    let error = match h.try_get("Error")? {
        V::S(s) => s.as_str(),
        _ => return None,
    };
    let seq = match h.try_get("Seq")? {
        V::U(s) => *s,
        _ => return None,
    };
    Some((error, seq))
}

/// A string field of a msgpack map, if it is one.
pub fn str_field<'a>(v: &'a V, key: &str) -> Option<&'a str> {
    match v {
        V::M(_) => match v.try_get(key)? {
            V::S(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}
