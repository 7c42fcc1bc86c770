//! A blocking client of the agent RPC (spec `consul-serf-rpc.md`), as the Consul and Serf
//! CLIs use it: dial, `handshake` (Version 1), `auth` when a key is given, then commands.
//!
//! The framing is not self-describing: whether a body follows a reply header depends on the
//! command its Seq belongs to (spec §8.1). So the client keeps, per outstanding Seq, whether
//! its reply carries a body and whether it opens a stream; a Seq whose stream was
//! acknowledged keeps carrying bodies for as long as the connection lives, also after its
//! `stop` (records may still be queued, spec §8.2). Replies and stream records can
//! interleave; [`RpcClient::recv`] returns whichever comes next.
//!
//! Requests go out as the Go client writes them: keys sorted, Seq counting up from 1, a
//! header and its body in one write.

use std::fmt;
use std::io::{self, BufReader, Read, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use rmpv::Value;

/// Reply errors after which the server sends no body, even for a command that has one:
/// the auth gate (the Go client special-cases it) and the two that close the connection.
const NO_BODY_ERRORS: [&str; 3] = [
    "Authentication required",
    "Unsupported command",
    "Handshake required",
];

/// Dial and write timeout, as the Go clients use. Reads have none: `join` to a slow host
/// takes as long as it takes, and `monitor` waits for records indefinitely.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes one reply message may take; a larger one is a protocol error, so a
/// broken or hostile agent cannot make the CLI buffer without bound.
const MAX_MESSAGE: u64 = 16 * 1024 * 1024;

/// Why an RPC failed.
#[derive(Debug)]
pub(crate) enum RpcError {
    /// The agent could not be reached.
    Dial(String, io::Error),
    /// The connection failed while in use.
    Io(io::Error),
    /// The agent closed the connection before answering.
    Closed,
    /// The agent sent something that is not a well-formed reply.
    Protocol(String),
    /// The reply header carried this error.
    Remote(String),
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Dial(addr, e) => write!(f, "dial tcp {addr}: {}", go_io_error(e)),
            RpcError::Io(e) => f.write_str(&go_io_error(e)),
            RpcError::Closed => f.write_str("EOF"),
            RpcError::Protocol(what) => write!(f, "malformed reply: {what}"),
            RpcError::Remote(text) => f.write_str(text),
        }
    }
}

impl From<io::Error> for RpcError {
    fn from(e: io::Error) -> Self {
        RpcError::Io(e)
    }
}

/// An I/O error in Go's words: `connect: connection refused`, not
/// `Connection refused (os error 111)`.
pub(crate) fn go_io_error(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    let lowered: String = match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut => {
            format!("connect: {lowered}")
        }
        _ => lowered,
    }
}

/// One message from the agent.
#[derive(Debug, PartialEq)]
pub(crate) enum Message {
    /// The reply to a request: its header's error ("" for success) and its body, if the
    /// command has one.
    Reply {
        /// The request's Seq.
        seq: u64,
        /// The header's `Error`.
        error: String,
        /// The body, for commands that define one.
        body: Option<Value>,
    },
    /// A record of a stream (`monitor`'s log lines) opened by the request with this Seq.
    Record {
        /// The streaming request's Seq.
        seq: u64,
        /// The record.
        body: Value,
    },
}

/// A request whose reply has not been read yet.
#[derive(Clone, Copy, Debug)]
struct Pending {
    seq: u64,
    /// A body follows the reply header.
    body: bool,
    /// Success opens a stream of records tagged with this Seq.
    stream: bool,
}

/// The shape of a command's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A header only.
    Header,
    /// A header and a body.
    Body,
    /// A header, then records until `stop`.
    Stream,
}

/// A connection to the agent RPC.
pub(crate) struct RpcClient {
    writer: TcpStream,
    reader: Capped<BufReader<TcpStream>>,
    next_seq: u64,
    pending: Vec<Pending>,
    streams: Vec<u64>,
}

impl RpcClient {
    /// Dials `addr`, shakes hands and, when `auth` is a non-empty key, authenticates.
    pub(crate) fn connect(addr: &str, auth: Option<&str>) -> Result<RpcClient, RpcError> {
        let stream = dial(addr).map_err(|e| RpcError::Dial(addr.to_string(), e))?;
        let reader = stream.try_clone()?;
        let mut client = RpcClient {
            writer: stream,
            reader: Capped {
                inner: BufReader::new(reader),
                left: MAX_MESSAGE,
            },
            next_seq: 1,
            pending: Vec::new(),
            streams: Vec::new(),
        };
        client.call(
            "handshake",
            Some(body([("Version", 1.into())])),
            Reply::Header,
        )?;
        if let Some(key) = auth.filter(|k| !k.is_empty()) {
            client.call("auth", Some(body([("AuthKey", key.into())])), Reply::Header)?;
        }
        Ok(client)
    }

    /// Encodes a request and registers its Seq, without sending it: the bytes may be
    /// written later through [`RpcClient::writer`] (a `stop` sent from a signal thread).
    pub(crate) fn prepare(
        &mut self,
        command: &str,
        request_body: Option<Value>,
        reply: Reply,
    ) -> (u64, Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let header = body([("Command", command.into()), ("Seq", seq.into())]);
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut bytes, &header);
        if let Some(b) = &request_body {
            let _ = rmpv::encode::write_value(&mut bytes, b);
        }
        self.pending.push(Pending {
            seq,
            body: reply == Reply::Body,
            stream: reply == Reply::Stream,
        });
        (seq, bytes)
    }

    /// Sends a request; returns its Seq.
    pub(crate) fn send(
        &mut self,
        command: &str,
        request_body: Option<Value>,
        reply: Reply,
    ) -> Result<u64, RpcError> {
        let (seq, bytes) = self.prepare(command, request_body, reply);
        self.writer.write_all(&bytes)?;
        Ok(seq)
    }

    /// A second handle on the socket for writing prepared requests from another thread.
    pub(crate) fn writer(&self) -> io::Result<TcpStream> {
        self.writer.try_clone()
    }

    /// Sends a request and waits for its reply; records of open streams that arrive
    /// meanwhile are dropped. An error in the reply header is [`RpcError::Remote`] (the
    /// body, if any, has been read).
    pub(crate) fn call(
        &mut self,
        command: &str,
        request_body: Option<Value>,
        reply: Reply,
    ) -> Result<Option<Value>, RpcError> {
        let seq = self.send(command, request_body, reply)?;
        self.wait(seq)
    }

    /// Waits for the reply to the request with this Seq, as [`RpcClient::call`] does.
    pub(crate) fn wait(&mut self, seq: u64) -> Result<Option<Value>, RpcError> {
        loop {
            match self.recv()? {
                Message::Reply {
                    seq: s,
                    error,
                    body,
                } if s == seq => {
                    return if error.is_empty() {
                        Ok(body)
                    } else {
                        Err(RpcError::Remote(error))
                    };
                }
                Message::Reply { .. } | Message::Record { .. } => {}
            }
        }
    }

    /// Reads the next reply or stream record.
    pub(crate) fn recv(&mut self) -> Result<Message, RpcError> {
        let header = self.read_message(true)?;
        let (seq, error) = decode_header(&header)?;
        if let Some(i) = self.pending.iter().position(|p| p.seq == seq) {
            let pending = self.pending.remove(i);
            let body = if pending.body && !NO_BODY_ERRORS.contains(&error.as_str()) {
                Some(self.read_message(false)?)
            } else {
                None
            };
            if pending.stream && error.is_empty() {
                self.streams.push(seq);
            }
            return Ok(Message::Reply { seq, error, body });
        }
        if self.streams.contains(&seq) {
            let body = self.read_message(false)?;
            return Ok(Message::Record { seq, body });
        }
        Err(RpcError::Protocol(format!(
            "a reply for Seq {seq}, which no request used"
        )))
    }

    /// Reads one msgpack message; EOF before its first byte is [`RpcError::Closed`] when
    /// `at_boundary` (a header), a truncation otherwise.
    fn read_message(&mut self, at_boundary: bool) -> Result<Value, RpcError> {
        self.reader.left = MAX_MESSAGE;
        rmpv::decode::read_value(&mut self.reader).map_err(|e| match e {
            rmpv::decode::Error::InvalidMarkerRead(io)
                if at_boundary && io.kind() == io::ErrorKind::UnexpectedEof =>
            {
                RpcError::Closed
            }
            rmpv::decode::Error::InvalidMarkerRead(io)
            | rmpv::decode::Error::InvalidDataRead(io)
                if io.kind() == io::ErrorKind::InvalidData =>
            {
                RpcError::Protocol(io.to_string())
            }
            rmpv::decode::Error::InvalidMarkerRead(io)
            | rmpv::decode::Error::InvalidDataRead(io) => {
                if io.kind() == io::ErrorKind::UnexpectedEof {
                    RpcError::Closed
                } else {
                    RpcError::Io(io)
                }
            }
            rmpv::decode::Error::DepthLimitExceeded => {
                RpcError::Protocol("nested too deeply".into())
            }
        })
    }
}

/// Dials the first address of `addr` that answers.
fn dial(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no such host");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, DIAL_TIMEOUT) {
            Ok(s) => {
                // Requests are written whole; Nagle would only delay them.
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(DIAL_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A map with its keys in the given order (callers give them sorted, as Go's encoder does).
pub(crate) fn body<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// `Error` and `Seq` of a reply header; any key order, unknown keys ignored.
fn decode_header(header: &Value) -> Result<(u64, String), RpcError> {
    let Value::Map(entries) = header else {
        return Err(RpcError::Protocol(format!("header is not a map: {header}")));
    };
    let mut seq = None;
    let mut error = String::new();
    for (k, v) in entries {
        match k.as_str() {
            Some("Seq") => seq = v.as_u64(),
            Some("Error") => {
                error = v
                    .as_str()
                    .ok_or_else(|| RpcError::Protocol(format!("Error is not a string: {v}")))?
                    .to_string();
            }
            _ => {}
        }
    }
    let seq = seq.ok_or_else(|| RpcError::Protocol(format!("header without Seq: {header}")))?;
    Ok((seq, error))
}

/// The value of `key` in a map body.
pub(crate) fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// A reader that fails once more than `left` bytes were read.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message larger than {MAX_MESSAGE} bytes"),
            ));
        }
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A fake agent that reads what the client sends and answers with `script` bytes after
    /// `after` bytes arrived; returns what it read.
    fn fake_agent(answers: Vec<(usize, Vec<u8>)>) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            for (after, answer) in answers {
                while got.len() < after {
                    let mut buf = [0u8; 256];
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "client closed early: {got:02x?}");
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(&answer).unwrap();
            }
            got
        });
        (addr, handle)
    }

    const HANDSHAKE: &str = "82a7436f6d6d616e64a968616e647368616b65a353657101 81a756657273696f6e01";
    const OK_SEQ1: &str = "82a54572726f72a0a353657101";

    #[test]
    fn requests_are_encoded_as_the_go_client_encodes_them() {
        let join = "82a7436f6d6d616e64a46a6f696ea353657102\
                    82a84578697374696e6791ae3132372e302e302e313a37393437a65265706c6179c2";
        let (addr, agent) = fake_agent(vec![
            (hex(HANDSHAKE).len(), hex(OK_SEQ1)),
            (
                hex(HANDSHAKE).len() + hex(join).len(),
                hex("82a54572726f72a0a353657102 81a34e756d01"),
            ),
        ]);
        let mut c = RpcClient::connect(&addr, None).unwrap();
        let reply = c
            .call(
                "join",
                Some(body([
                    ("Existing", Value::Array(vec!["127.0.0.1:7947".into()])),
                    ("Replay", false.into()),
                ])),
                Reply::Body,
            )
            .unwrap()
            .unwrap();
        assert_eq!(field(&reply, "Num").and_then(Value::as_u64), Some(1));
        drop(c);
        let sent = agent.join().unwrap();
        assert_eq!(sent, [hex(HANDSHAKE), hex(join)].concat());
    }

    #[test]
    fn records_interleave_with_replies_and_are_told_apart_by_seq() {
        // monitor (Seq 2) acked, one record, then the stop reply (Seq 3) arrives after a
        // second record: the reader tells them apart by Seq.
        let monitor = "82a7436f6d6d616e64a76d6f6e69746f72a353657102 81a84c6f674c6576656ca4494e464f";
        let stop = "82a7436f6d6d616e64a473746f70a353657103 81a453746f7002";
        let record = "82a54572726f72a0a353657102 81a34c6f67a178";
        let (addr, agent) = fake_agent(vec![
            (hex(HANDSHAKE).len(), hex(OK_SEQ1)),
            (
                hex(HANDSHAKE).len() + hex(monitor).len(),
                hex(&format!("82a54572726f72a0a353657102 {record}")),
            ),
            (
                hex(HANDSHAKE).len() + hex(monitor).len() + hex(stop).len(),
                hex(&format!("{record} 82a54572726f72a0a353657103")),
            ),
        ]);
        let mut c = RpcClient::connect(&addr, None).unwrap();
        let seq = c
            .send(
                "monitor",
                Some(body([("LogLevel", "INFO".into())])),
                Reply::Stream,
            )
            .unwrap();
        assert_eq!(
            c.recv().unwrap(),
            Message::Reply {
                seq: 2,
                error: String::new(),
                body: None
            }
        );
        let x = body([("Log", "x".into())]);
        assert_eq!(
            c.recv().unwrap(),
            Message::Record {
                seq,
                body: x.clone()
            }
        );
        c.send("stop", Some(body([("Stop", seq.into())])), Reply::Header)
            .unwrap();
        assert_eq!(c.recv().unwrap(), Message::Record { seq, body: x });
        assert!(matches!(c.recv().unwrap(), Message::Reply { seq: 3, .. }));
        assert!(matches!(c.recv(), Err(RpcError::Closed)));
        agent.join().unwrap();
    }

    #[test]
    fn auth_required_has_no_body_and_errors_read_as_go_prints_them() {
        let (addr, agent) = fake_agent(vec![
            (hex(HANDSHAKE).len(), hex(OK_SEQ1)),
            (
                hex(HANDSHAKE).len() + 22,
                hex("82a54572726f72b741757468656e7469636174696f6e207265717569726564a353657102"),
            ),
        ]);
        let mut c = RpcClient::connect(&addr, None).unwrap();
        let err = c.call("members", None, Reply::Body).unwrap_err();
        assert_eq!(err.to_string(), "Authentication required");
        drop(c);
        agent.join().unwrap();
        let refused = RpcClient::connect("127.0.0.1:1", None).err().unwrap();
        assert_eq!(
            refused.to_string(),
            "dial tcp 127.0.0.1:1: connect: connection refused"
        );
    }
}
