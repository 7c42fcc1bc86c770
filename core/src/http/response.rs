//! HTTP response heads, written straight into a connection's transmit buffer.

use alloc::vec::Vec;

use crate::json::write_u64;

/// The statuses the agent answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Continue,
    Ok,
    NotModified,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    LengthRequired,
    PayloadTooLarge,
    ExpectationFailed,
    HeadTooLarge,
    NotImplemented,
    ServiceUnavailable,
}

impl Status {
    fn line(self) -> &'static [u8] {
        match self {
            Status::Continue => b" 100 Continue\r\n",
            Status::Ok => b" 200 OK\r\n",
            Status::NotModified => b" 304 Not Modified\r\n",
            Status::BadRequest => b" 400 Bad Request\r\n",
            Status::NotFound => b" 404 Not Found\r\n",
            Status::MethodNotAllowed => b" 405 Method Not Allowed\r\n",
            Status::RequestTimeout => b" 408 Request Timeout\r\n",
            Status::LengthRequired => b" 411 Length Required\r\n",
            Status::PayloadTooLarge => b" 413 Payload Too Large\r\n",
            Status::ExpectationFailed => b" 417 Expectation Failed\r\n",
            Status::HeadTooLarge => b" 431 Request Header Fields Too Large\r\n",
            Status::NotImplemented => b" 501 Not Implemented\r\n",
            Status::ServiceUnavailable => b" 503 Service Unavailable\r\n",
        }
    }

    /// The short plain-text body of an error status.
    pub(crate) fn text(self) -> &'static [u8] {
        match self {
            Status::Continue | Status::Ok | Status::NotModified => b"",
            Status::BadRequest => b"Bad Request",
            Status::NotFound => b"Not found",
            Status::MethodNotAllowed => b"Method Not Allowed",
            Status::RequestTimeout => b"Request Timeout",
            Status::LengthRequired => b"Length Required: send a Content-Length body",
            Status::PayloadTooLarge => b"Payload Too Large",
            Status::ExpectationFailed => b"Expectation Failed",
            Status::HeadTooLarge => b"Request Header Fields Too Large",
            Status::NotImplemented => b"Not Implemented",
            Status::ServiceUnavailable => b"Service Unavailable: too many connections",
        }
    }

    /// A 4xx or 5xx status (counted in the `errors` statistic).
    pub(crate) fn is_error(self) -> bool {
        !matches!(self, Status::Continue | Status::Ok | Status::NotModified)
    }
}

/// What the `Connection` header says about the connection after this response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Persist {
    /// HTTP/1.1 default: no header.
    Default,
    /// HTTP/1.0 keep-alive: `Connection: keep-alive`.
    KeepAlive,
    /// `Connection: close`; the agent closes after this response.
    Close,
}

pub(crate) const JSON: &str = "application/json; charset=utf-8";
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
pub(crate) const HTML: &str = "text/html; charset=utf-8";

/// Writes a whole response: head, then `body`. `extra` is more header lines, each ending
/// in CRLF, written as the concatenation of its parts. A `304` has no `Content-Length`
/// (it would have to be the length of the body it does not send).
pub(crate) fn write(
    tx: &mut Vec<u8>,
    http10: bool,
    status: Status,
    content_type: &str,
    extra: &[&[u8]],
    persist: Persist,
    body: &[u8],
) {
    tx.extend_from_slice(if http10 { b"HTTP/1.0" } else { b"HTTP/1.1" });
    tx.extend_from_slice(status.line());
    extra.iter().for_each(|part| tx.extend_from_slice(part));
    tx.extend_from_slice(b"Content-Type: ");
    tx.extend_from_slice(content_type.as_bytes());
    if status != Status::NotModified {
        tx.extend_from_slice(b"\r\nContent-Length: ");
        write_u64(tx, body.len() as u64);
    }
    tx.extend_from_slice(match persist {
        Persist::Default => b"\r\n\r\n" as &[u8],
        Persist::KeepAlive => b"\r\nConnection: keep-alive\r\n\r\n",
        Persist::Close => b"\r\nConnection: close\r\n\r\n",
    });
    tx.extend_from_slice(body);
}

/// The realm of the `WWW-Authenticate` challenge.
pub(crate) const REALM: &str = "tandem";

/// Writes the `401 Unauthorized` answer (Arthas's, with tandem's realm): an empty body, and
/// `Connection: close`, because the agent closes after it.
pub(crate) fn write_unauthorized(tx: &mut Vec<u8>, http10: bool) {
    tx.extend_from_slice(if http10 { b"HTTP/1.0" } else { b"HTTP/1.1" });
    tx.extend_from_slice(b" 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"");
    tx.extend_from_slice(REALM.as_bytes());
    tx.extend_from_slice(
        b"\"\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

/// Writes the interim `100 Continue`.
pub(crate) fn write_continue(tx: &mut Vec<u8>, http10: bool) {
    tx.extend_from_slice(if http10 { b"HTTP/1.0" } else { b"HTTP/1.1" });
    tx.extend_from_slice(Status::Continue.line());
    tx.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_bytes() {
        let mut tx = Vec::new();
        write_unauthorized(&mut tx, false);
        assert_eq!(
            tx,
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"tandem\"\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn response_bytes() {
        let mut tx = Vec::new();
        write(
            &mut tx,
            false,
            Status::Ok,
            JSON,
            &[],
            Persist::Default,
            b"{}",
        );
        assert_eq!(
            tx,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}"
        );
        tx.clear();
        write(
            &mut tx,
            true,
            Status::NotFound,
            HTML,
            &[],
            Persist::Close,
            b"Not found",
        );
        assert_eq!(
            tx,
            b"HTTP/1.0 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\nConnection: close\r\n\r\nNot found"
        );
    }
}
