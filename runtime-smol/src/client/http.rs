//! A minimal blocking HTTP/1.1 client for the agent's `POST /api`: one keep-alive
//! connection, JSON in and out, `Content-Length` framing (the agent always sends it; chunked
//! answers are refused). A request on a kept-alive connection that the agent has closed
//! meanwhile is retried once on a fresh one: the API's actions are safe to resend only
//! because the first attempt never reached the agent (nothing was read back).

use std::fmt;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use tandem_core::HttpAuth;

use super::rpc::go_io_error;

/// Dial and write timeout. Reads wait longer than the agent's longest parked answer
/// (`pull_results` answers within its 2 s pull timeout; `exec`, which the CLI does not use,
/// may take 30 s).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response head and body the client reads.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// The agent could not be reached.
    Dial(String, io::Error),
    /// The connection failed while in use.
    Io(io::Error),
    /// The answer is not what the API sends.
    Protocol(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Dial(addr, e) => write!(f, "dial tcp {addr}: {}", go_io_error(e)),
            HttpError::Io(e) => f.write_str(&go_io_error(e)),
            HttpError::Protocol(what) => f.write_str(what),
        }
    }
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// A client of one agent's HTTP API.
pub(crate) struct HttpClient {
    addr: String,
    /// The `Authorization` header line sent with every request, if credentials were given.
    authorization: String,
    conn: Option<BufReader<TcpStream>>,
}

impl HttpClient {
    /// A client for `addr`, sending `auth` as HTTP Basic credentials; it dials on the first
    /// request.
    pub(crate) fn new(addr: &str, auth: Option<&HttpAuth>) -> HttpClient {
        HttpClient {
            addr: addr.to_string(),
            authorization: auth.map_or_else(String::new, |a| {
                format!("Authorization: {}\r\n", a.authorization())
            }),
            conn: None,
        }
    }

    /// `POST /api` with `body`; the JSON answer.
    pub(crate) fn post_api(
        &mut self,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, HttpError> {
        let payload = body.to_string();
        let request = format!(
            "POST /api HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{payload}",
            self.addr,
            self.authorization,
            payload.len()
        );
        let reused = self.conn.is_some();
        match self.exchange(request.as_bytes()) {
            Err(HttpError::Io(e)) if reused && stale(&e) => {
                self.conn = None;
                self.exchange(request.as_bytes())
            }
            other => other,
        }
    }

    fn exchange(&mut self, request: &[u8]) -> Result<serde_json::Value, HttpError> {
        let result = self.exchange_once(request);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn exchange_once(&mut self, request: &[u8]) -> Result<serde_json::Value, HttpError> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(BufReader::new(
                dial(&self.addr).map_err(|e| HttpError::Dial(self.addr.clone(), e))?,
            )),
        };
        conn.get_mut().write_all(request)?;
        let (status, length, close) = read_head(conn)?;
        let mut body = vec![0; length];
        conn.read_exact(&mut body)?;
        if close {
            self.conn = None;
        }
        if status == 401 {
            return Err(HttpError::Protocol(format!(
                "unexpected HTTP status 401 Unauthorized: {}",
                if self.authorization.is_empty() {
                    "the agent requires credentials: give -http-auth USER:PASS or set \
                     TANDEM_HTTP_AUTH"
                } else {
                    "the agent refused these credentials"
                }
            )));
        }
        if status != 200 {
            return Err(HttpError::Protocol(format!(
                "unexpected HTTP status {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| HttpError::Protocol(format!("answer is not JSON: {e}")))
    }
}

/// A kept-alive connection the agent closed while idle shows as one of these on reuse.
fn stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

fn dial(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no such host");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, DIAL_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(DIAL_TIMEOUT))?;
                s.set_read_timeout(Some(READ_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads a response head; returns the status, the body length and whether the agent
/// closes the connection after it.
fn read_head(conn: &mut BufReader<TcpStream>) -> Result<(u16, usize, bool), HttpError> {
    let mut total = 0;
    let mut line = String::new();
    let mut next_line = |conn: &mut BufReader<TcpStream>| -> Result<String, HttpError> {
        line.clear();
        let n = conn.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
        total += n;
        if n == 0 {
            return Err(HttpError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if total > MAX_HEAD {
            return Err(HttpError::Protocol("response head too large".into()));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let status_line = next_line(conn)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return Err(HttpError::Protocol(format!(
            "not an HTTP response: {status_line:?}"
        )));
    };
    let mut length = None;
    let mut close = version == "HTTP/1.0";
    loop {
        let header = next_line(conn)?;
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(HttpError::Protocol(format!("bad header line {header:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Protocol(format!(
                "unsupported Transfer-Encoding {value:?}"
            )));
        }
    }
    let length = length
        .filter(|&n| n <= MAX_BODY)
        .ok_or_else(|| HttpError::Protocol("response without a usable Content-Length".into()))?;
    Ok((status, length, close))
}
