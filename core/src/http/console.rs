//! The web console: the page at `GET /` and its assets under `/console/`, compiled into the
//! binary (feature `console`) and answered like any other response.
//!
//! Every asset exists twice, as its source and gzipped by `build.rs`; a client that accepts
//! gzip gets the smaller one. Each representation has its own strong `ETag`, so a browser
//! revalidates (`Cache-Control: no-cache`) and gets `304 Not Modified` while the binary
//! is the same. The page talks to the agent only through `POST /api`, like any client, and
//! sits behind the same `http_auth` as the API: the framer answers `401` before a request
//! gets here. Without the feature the table is empty and every path but `/api` is a 404.

use super::codec::Method;
use super::response::{self, Status};
use crate::{Agent, ConnId};

/// One file of the console.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Asset {
    /// The URL path it is served at (`/` for the page).
    pub(crate) path: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) identity: &'static [u8],
    pub(crate) gzip: &'static [u8],
    /// The quoted entity tags of the identity and the gzip representation.
    pub(crate) etag: &'static str,
    pub(crate) etag_gzip: &'static str,
}

#[cfg(feature = "console")]
pub(crate) static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
#[cfg(not(feature = "console"))]
pub(crate) static ASSETS: &[Asset] = &[];

/// A request for a console asset, decided from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) asset: &'static Asset,
    /// The client accepts gzip: the gzip representation is the one served.
    pub(crate) gzip: bool,
    /// `If-None-Match` names the representation served: answer `304`.
    pub(crate) not_modified: bool,
}

/// The asset at `path` (a query string ignored).
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    ASSETS.iter().find(|a| a.path == path)
}

/// Whether an `Accept-Encoding` value accepts gzip: a `gzip`, `x-gzip` or `*` coding
/// whose `q` is not zero.
pub(crate) fn accepts_gzip(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|coding| {
        let mut parts = coding.split(|&b| b == b';');
        let name = parts.next().unwrap_or(&[]).trim_ascii();
        let named = [&b"gzip"[..], b"x-gzip", b"*"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n));
        let zero_q = parts.any(|p| {
            let p = p.trim_ascii();
            p.get(..2).is_some_and(|k| k.eq_ignore_ascii_case(b"q="))
                && p.get(2..)
                    .is_some_and(|q| !q.is_empty() && q.iter().all(|&b| b == b'0' || b == b'.'))
        });
        named && !zero_q
    })
}

/// Whether an `If-None-Match` value names `etag` (quoted), or is `*`. The comparison is the
/// weak one RFC 9110 asks for here: a `W/` prefix is ignored.
pub(crate) fn etag_matches(value: &[u8], etag: &str) -> bool {
    value.split(|&b| b == b',').any(|tag| {
        let tag = tag.trim_ascii();
        let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
        tag == b"*" || tag == etag.as_bytes()
    })
}

/// Headers every console response carries. The page loads nothing from elsewhere, so the
/// policy allows only this origin (and the empty inline icon).
const COMMON: &[u8] = b"Cache-Control: no-cache\r\nVary: Accept-Encoding\r\n\
X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n";

impl Agent {
    /// Answers a console request: the asset, `304`, or `405` for a method other than
    /// `GET` or `HEAD`.
    pub(crate) fn serve_console(&mut self, conn: ConnId, method: &Method, req: Request) {
        let readable = matches!(method, Method::Other(m) if m == "GET" || m == "HEAD");
        if !readable {
            let status = Status::MethodNotAllowed;
            self.respond_with(
                conn,
                status,
                response::TEXT,
                &[b"Allow: GET, HEAD\r\n"],
                status.text(),
            );
            return;
        }
        let a = req.asset;
        let (etag, body, encoding): (&str, &[u8], &[u8]) = if req.gzip {
            (a.etag_gzip, a.gzip, b"Content-Encoding: gzip\r\n")
        } else {
            (a.etag, a.identity, b"")
        };
        let extra: [&[u8]; 4] = [b"ETag: ", etag.as_bytes(), b"\r\n", COMMON];
        if req.not_modified {
            self.respond_with(conn, Status::NotModified, a.content_type, &extra, b"");
        } else {
            let extra = [extra[0], extra[1], extra[2], extra[3], encoding];
            self.respond_with(conn, Status::Ok, a.content_type, &extra, body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding() {
        assert!(accepts_gzip(b"gzip, deflate, br, zstd"));
        assert!(accepts_gzip(b"br;q=1.0, GZIP;q=0.5"));
        assert!(accepts_gzip(b"*"));
        assert!(!accepts_gzip(b"identity"));
        assert!(!accepts_gzip(b"gzip;q=0"));
        assert!(!accepts_gzip(b"gzip; q=0.000, br"));
        assert!(!accepts_gzip(b""));
        assert!(!accepts_gzip(b"gzipx"));
    }

    #[test]
    fn if_none_match() {
        let tag = "\"1f-0a0b0c0d\"";
        assert!(etag_matches(b"\"1f-0a0b0c0d\"", tag));
        assert!(etag_matches(b"\"x\", W/\"1f-0a0b0c0d\"", tag));
        assert!(etag_matches(b"*", tag));
        assert!(!etag_matches(b"\"1f-0a0b0c0d-gz\"", tag));
        assert!(!etag_matches(b"1f-0a0b0c0d", tag));
        assert!(!etag_matches(b"", tag));
    }

    #[cfg(feature = "console")]
    #[test]
    fn assets_fit_the_budget_and_decompress_to_their_sources() {
        // The issue's budget: 48 KiB for all assets, compressed.
        let total: usize = ASSETS.iter().map(|a| a.gzip.len()).sum();
        assert!(
            total <= 48 * 1024,
            "console assets are {total} bytes gzipped"
        );
        assert!(find("/").is_some_and(|a| a.content_type.starts_with("text/html")));
        assert!(find("/?x=1").is_some());
        assert!(find("/console/app.js").is_some());
        assert!(find("/console/").is_none());
        for a in ASSETS {
            // gzip magic, deflate, and the trailer's length of the source.
            assert_eq!(&a.gzip[..3], &[0x1f, 0x8b, 8], "{}", a.path);
            let isize = &a.gzip[a.gzip.len() - 4..];
            assert_eq!(
                u32::from_le_bytes([isize[0], isize[1], isize[2], isize[3]]) as usize,
                a.identity.len(),
                "{}",
                a.path
            );
            assert_ne!(a.etag, a.etag_gzip);
        }
    }
}
