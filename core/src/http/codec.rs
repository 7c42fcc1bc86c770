//! HTTP/1.1 request framing on httparse: finds where a head ends, parses it once, decides
//! how long the body is, and says when a whole request is buffered.
//!
//! httparse is stateless, so calling it on every read would re-scan the head from byte 0
//! and make a dribbled request quadratic. Like h11's receive buffer, the framer remembers how
//! far it searched for the blank line and calls httparse exactly once per head. Every
//! malformed or over-limit input ends in one [`HttpError`], which the agent answers with a
//! status and a close.

use alloc::string::String;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::config::{HttpAuth, Limits};
use crate::secret::constant_time_eq;

/// Bytes of decoded Basic credentials (`user:pass`) the agent looks at; longer ones are
/// wrong credentials. Decoding happens on the stack, so a request costs no allocation.
const MAX_CREDENTIALS: usize = 512;

/// Standard base64, padding optional (some clients drop it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a request's `Authorization` header says about the configured credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// No `Authorization` header (or no credentials are configured, so none was checked).
    Absent,
    /// `Basic` credentials equal to the configured ones.
    Valid,
    /// Something presented that is not exactly the configured credentials: another
    /// scheme, bad base64, no `:`, a wrong user or password, or the header twice.
    Invalid,
}

/// Who must authenticate: the configured credentials, and whether a request presenting
/// none is trusted (local trust, decided by the peer address).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gate<'a> {
    pub(crate) creds: &'a HttpAuth,
    pub(crate) trust_absent: bool,
}

impl Gate<'_> {
    fn admits(&self, c: Credentials) -> bool {
        match c {
            Credentials::Valid => true,
            Credentials::Absent => self.trust_absent,
            Credentials::Invalid => false,
        }
    }
}

/// Checks an `Authorization` value against `creds`: the scheme is case-insensitive, the
/// decoded text splits at its first `:`, both halves compare exactly and in constant time.
fn check_basic(value: &[u8], creds: &HttpAuth) -> Credentials {
    let v = value.trim_ascii();
    let Some(sp) = v.iter().position(|&b| b == b' ' || b == b'\t') else {
        return Credentials::Invalid;
    };
    let (scheme, token) = v.split_at(sp);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Credentials::Invalid;
    }
    let mut buf = [0u8; MAX_CREDENTIALS];
    let Ok(n) = BASE64.decode_slice(token.trim_ascii(), &mut buf) else {
        return Credentials::Invalid;
    };
    let decoded = buf.get(..n).unwrap_or(&[]);
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return Credentials::Invalid;
    };
    let user = decoded.get(..colon).unwrap_or(&[]);
    let pass = decoded.get(colon + 1..).unwrap_or(&[]);
    // Both halves are always compared, so timing does not tell which one was wrong.
    let user_ok = constant_time_eq(user, creds.username.as_bytes());
    let pass_ok = constant_time_eq(pass, creds.password.as_bytes());
    if user_ok & pass_ok {
        Credentials::Valid
    } else {
        Credentials::Invalid
    }
}

/// httparse needs a header array up front; `Limits::max_headers` picks how much of it is used.
const HEADER_SLOTS: usize = 64;

/// A framing failure, answered with the status it names and a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HttpError {
    /// Malformed head, bad or duplicate `Content-Length`, missing `Host`.
    BadRequest,
    /// A chunked request body (the API takes `Content-Length` bodies only).
    LengthRequired,
    /// Body larger than `Limits::max_body`.
    PayloadTooLarge,
    /// An `Expect` other than `100-continue`.
    ExpectationFailed,
    /// Head larger than `Limits::max_head`, or more than `Limits::max_headers` headers.
    HeadTooLarge,
    /// A transfer coding other than chunked.
    NotImplemented,
}

impl HttpError {
    pub(crate) fn status(self) -> super::response::Status {
        use super::response::Status;
        match self {
            HttpError::BadRequest => Status::BadRequest,
            HttpError::LengthRequired => Status::LengthRequired,
            HttpError::PayloadTooLarge => Status::PayloadTooLarge,
            HttpError::ExpectationFailed => Status::ExpectationFailed,
            HttpError::HeadTooLarge => Status::HeadTooLarge,
            HttpError::NotImplemented => Status::NotImplemented,
        }
    }
}

/// What the request line asked for, copied out of the buffer so the head can be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Post,
    /// Any other method, kept for the `Unsupported http method: X` message.
    Other(String),
}

/// What a request's path (and, for the console, its caching headers) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Exactly `/api` (a query string allowed).
    Api,
    /// A page of the web console.
    Console(super::console::Request),
    /// Anything else: 404.
    Other,
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    /// Bytes of the head, blank line included; the body starts here.
    pub(crate) head_len: usize,
    pub(crate) body_len: usize,
    pub(crate) method: Method,
    pub(crate) target: Target,
    /// HTTP/1.0 (answers are written in the request's version).
    pub(crate) http10: bool,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
    /// The `Authorization` header checked against the configured credentials.
    pub(crate) credentials: Credentials,
}

impl Head {
    pub(crate) fn total_len(&self) -> usize {
        self.head_len + self.body_len
    }
}

/// The framer's answer for the bytes buffered so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Not a whole request yet.
    NeedMore,
    /// The client waits for `100 Continue` before sending the body.
    SendContinue,
    /// A whole request: `rx[head.head_len..head.total_len()]` is its body.
    Request(Head),
    /// Answer with this error's status and close.
    Error(HttpError),
    /// The head is complete and not authenticated: answer `401` (in this HTTP version) and
    /// close, without waiting for the body.
    Unauthorized { http10: bool },
}

/// Framing state of one connection, between requests and within one.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    /// How far the blank-line search has looked.
    scanned: usize,
    /// A head whose body is still arriving.
    pending: Option<Head>,
    sent_continue: bool,
}

impl Framer {
    /// The head being waited on, if its body is still arriving.
    pub(crate) fn pending(&self) -> Option<&Head> {
        self.pending.as_ref()
    }

    /// Call after the agent consumed a request's bytes.
    pub(crate) fn reset(&mut self) {
        *self = Framer::default();
    }

    /// Looks at the buffered bytes `rx` and says what to do next.
    pub(crate) fn step(&mut self, rx: &[u8], limits: &Limits, gate: Option<Gate<'_>>) -> Step {
        if let Some(head) = &self.pending {
            if rx.len() >= head.total_len() {
                self.sent_continue = false;
                return match self.pending.take() {
                    Some(head) => Step::Request(head),
                    None => Step::NeedMore,
                };
            }
            if head.expect_continue && !self.sent_continue {
                self.sent_continue = true;
                return Step::SendContinue;
            }
            return Step::NeedMore;
        }
        let Some(head_len) = self.find_head_end(rx) else {
            return if rx.len() >= limits.max_head {
                Step::Error(HttpError::HeadTooLarge)
            } else {
                Step::NeedMore
            };
        };
        if head_len > limits.max_head {
            return Step::Error(HttpError::HeadTooLarge);
        }
        let head = match parse_head(&rx[..head_len], limits, gate.map(|g| g.creds)) {
            Ok(head) => head,
            Err(e) => return Step::Error(e),
        };
        if let Some(gate) = gate
            && !gate.admits(head.credentials)
        {
            return Step::Unauthorized {
                http10: head.http10,
            };
        }
        if head.body_len > limits.max_body {
            return Step::Error(HttpError::PayloadTooLarge);
        }
        self.pending = Some(head);
        self.step(rx, limits, gate)
    }

    /// Finds the end of the head (`\n\n` or `\n\r\n`, so bare-LF clients work too),
    /// searching only bytes not searched before.
    fn find_head_end(&mut self, rx: &[u8]) -> Option<usize> {
        // The terminator is at most 3 bytes long, so back up 2 to catch one that straddles
        // the previous read.
        let from = self.scanned.saturating_sub(2);
        let mut i = from;
        while let Some(off) = rx.get(i..).and_then(|s| s.iter().position(|&b| b == b'\n')) {
            let nl = i + off;
            match (rx.get(nl + 1), rx.get(nl + 2)) {
                (Some(b'\n'), _) => return Some(nl + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
                (None, _) | (Some(b'\r'), None) => break,
                _ => i = nl + 1,
            }
        }
        self.scanned = rx.len();
        None
    }
}

fn parse_head(bytes: &[u8], limits: &Limits, creds: Option<&HttpAuth>) -> Result<Head, HttpError> {
    let mut slots = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let n = limits.max_headers.min(HEADER_SLOTS);
    let mut req = httparse::Request::new(&mut slots[..n]);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HttpError::BadRequest),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::BadRequest),
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::BadRequest);
    };
    let http10 = version == 0;
    let mut content_length: Option<usize> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut host = false;
    let mut credentials = Credentials::Absent;
    let asset = super::console::find(path);
    let (mut gzip, mut match_identity, mut match_gzip) = (false, false, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                // Duplicate lengths, even equal ones, are how requests get smuggled.
                return Err(HttpError::BadRequest);
            }
            content_length = Some(parse_length(h.value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(HttpError::BadRequest);
            }
            transfer_encoding = Some(h.value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(HttpError::ExpectationFailed);
            }
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("authorization")
            && let Some(creds) = creds
        {
            credentials = match credentials {
                Credentials::Absent => check_basic(h.value, creds),
                // Two headers are one too many, whatever they say.
                _ => Credentials::Invalid,
            };
        } else if let Some(a) = asset {
            if name.eq_ignore_ascii_case("accept-encoding") {
                gzip |= super::console::accepts_gzip(h.value);
            } else if name.eq_ignore_ascii_case("if-none-match") {
                match_identity |= super::console::etag_matches(h.value, a.etag);
                match_gzip |= super::console::etag_matches(h.value, a.etag_gzip);
            }
        }
    }
    if let Some(te) = transfer_encoding {
        if content_length.is_some() {
            return Err(HttpError::BadRequest);
        }
        let last = te.rsplit(|&b| b == b',').next().unwrap_or(te).trim_ascii();
        return Err(if last.eq_ignore_ascii_case(b"chunked") {
            HttpError::LengthRequired
        } else {
            HttpError::NotImplemented
        });
    }
    if !http10 && !host {
        return Err(HttpError::BadRequest);
    }
    let body_len = content_length.unwrap_or(0);
    let target = if path == "/api" || path.starts_with("/api?") {
        Target::Api
    } else if let Some(asset) = asset {
        Target::Console(super::console::Request {
            asset,
            gzip,
            not_modified: if gzip { match_gzip } else { match_identity },
        })
    } else {
        Target::Other
    };
    Ok(Head {
        head_len: bytes.len(),
        body_len,
        method: if method == "POST" {
            Method::Post
        } else {
            Method::Other(String::from(method))
        },
        target,
        http10,
        keep_alive: if http10 {
            keep_alive_token && !close
        } else {
            !close
        },
        // HTTP/1.0 clients cannot read an interim response (RFC 9110 §10.1.1).
        expect_continue: expect_continue && body_len > 0 && !http10,
        credentials,
    })
}

fn parse_length(value: &[u8]) -> Result<usize, HttpError> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadRequest);
    }
    v.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(usize::from(d - b'0')))
            .ok_or(HttpError::PayloadTooLarge)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn limits() -> Limits {
        Limits::default()
    }

    fn step_all(input: &[u8]) -> Step {
        Framer::default().step(input, &limits(), None)
    }

    #[test]
    fn whole_request_with_body() {
        let req = b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
        match step_all(req) {
            Step::Request(h) => {
                assert_eq!(h.body_len, 2);
                assert_eq!(h.total_len(), req.len());
                assert!(h.target == Target::Api && h.keep_alive && !h.http10);
                assert_eq!(h.method, Method::Post);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dribbled_head_is_scanned_once_per_byte() {
        let req = b"POST /api?x=1 HTTP/1.1\nHost: x\nContent-Length: 0\n\n";
        let mut f = Framer::default();
        for end in 1..req.len() {
            assert_eq!(
                f.step(&req[..end], &limits(), None),
                Step::NeedMore,
                "at {end}"
            );
            assert!(f.scanned <= end);
        }
        assert!(
            matches!(f.step(req, &limits(), None), Step::Request(h) if h.target == Target::Api)
        );
    }

    #[test]
    fn framing_errors() {
        let cases: &[(&[u8], HttpError)] = &[
            (b"GARBAGE\r\n\r\n", HttpError::BadRequest),
            (b"POST /api HTTP/1.1\r\nContent-Length: 1\r\n\r\n", HttpError::BadRequest),
            (
                b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                HttpError::BadRequest,
            ),
            (b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", HttpError::BadRequest),
            (b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", HttpError::BadRequest),
            (
                b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::LengthRequired,
            ),
            (
                b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                HttpError::NotImplemented,
            ),
            (
                b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                HttpError::BadRequest,
            ),
            (
                b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
                HttpError::PayloadTooLarge,
            ),
            (
                b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999999999\r\n\r\n",
                HttpError::PayloadTooLarge,
            ),
            (b"POST /api HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n", HttpError::ExpectationFailed),
        ];
        for (input, want) in cases {
            assert_eq!(
                step_all(input),
                Step::Error(*want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn oversized_heads_and_header_counts_give_431() {
        let mut big = Vec::from(&b"POST /api HTTP/1.1\r\nX: "[..]);
        big.resize(limits().max_head, b'a');
        assert_eq!(step_all(&big), Step::Error(HttpError::HeadTooLarge));
        let mut many = Vec::from(&b"POST /api HTTP/1.1\r\nHost: x\r\n"[..]);
        for _ in 0..limits().max_headers {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(step_all(&many), Step::Error(HttpError::HeadTooLarge));
    }

    #[test]
    fn expect_continue_asks_once_then_waits_for_the_body() {
        let head =
            b"POST /api HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let mut f = Framer::default();
        assert_eq!(f.step(head, &limits(), None), Step::SendContinue);
        assert_eq!(f.step(head, &limits(), None), Step::NeedMore);
        let mut full = Vec::from(&head[..]);
        full.extend_from_slice(b"{}");
        assert!(matches!(f.step(&full, &limits(), None), Step::Request(_)));
    }

    #[test]
    fn connection_semantics_per_version() {
        let keep = |req: &[u8]| match step_all(req) {
            Step::Request(h) => h.keep_alive,
            other => panic!("{other:?}"),
        };
        assert!(keep(b"POST /api HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!keep(
            b"POST /api HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!keep(b"POST /api HTTP/1.0\r\n\r\n"));
        assert!(keep(
            b"POST /api HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ));
    }
}
