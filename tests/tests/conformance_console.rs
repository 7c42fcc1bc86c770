//! The web console's HTTP side, on the in-memory agent: `GET /` and `/console/*` serve the
//! files of `core/console/` byte for byte (gzipped for clients that accept it, as they are
//! otherwise), with an `ETag` per representation, `Cache-Control: no-cache` and `304` on a
//! matching `If-None-Match`; `HEAD` has the head only; other methods get `405`; the config
//! switch turns it all into `404`; `http_auth` guards it like `/api`. The page itself is
//! tested in a browser by `e2e_console.rs`.

use std::io::Read as _;
use std::path::PathBuf;

use tandem_core::{Agent, Config, HttpAuth, Instant, Listener, Output};
use tandem_tests::http::{Response, take_responses};

/// The console's sources, as (URL path, bytes).
fn sources() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/console");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let url = if name == "index.html" {
                String::from("/")
            } else {
                format!("/console/{name}")
            };
            (url, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

struct Client {
    agent: Agent,
    now: Instant,
}

impl Client {
    fn new(config: Config) -> Self {
        let now = Instant::from_millis(1);
        Client {
            agent: Agent::new(config, 7, now),
            now,
        }
    }

    /// Sends `requests` on one connection; every response, and whether it was closed.
    fn send(&mut self, requests: &[u8]) -> (Vec<Response>, bool) {
        let peer = Some("127.0.0.1:40000".parse().unwrap());
        let conn = self.agent.accept(Listener::Http, peer, self.now).unwrap();
        self.agent.handle_stream(conn, requests, self.now);
        let (mut bytes, mut closed) = (Vec::new(), false);
        while let Some(out) = self.agent.poll_output() {
            match out {
                Output::Transmit(c) if c == conn => {
                    let pending = self.agent.tx_pending(c).to_vec();
                    bytes.extend_from_slice(&pending);
                    self.agent.tx_consume(c, pending.len(), self.now);
                }
                Output::Close(c) if c == conn => {
                    bytes.extend_from_slice(self.agent.tx_pending(c));
                    closed = true;
                }
                _ => {}
            }
        }
        (take_responses(&mut bytes), closed)
    }

    fn one(&mut self, request: &str) -> Response {
        let (mut r, _) = self.send(request.as_bytes());
        assert_eq!(r.len(), 1, "{request}");
        r.remove(0)
    }
}

fn get(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n")
}

#[test]
fn every_file_is_served_gzipped_and_gunzips_to_its_source() {
    let mut c = Client::new(Config::default());
    let mut total = 0;
    for (path, source) in sources() {
        let r = c.one(&get(&path, "Accept-Encoding: gzip, deflate, br\r\n"));
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Content-Encoding"), Some("gzip"), "{path}");
        assert_eq!(r.header("Vary"), Some("Accept-Encoding"), "{path}");
        assert_eq!(r.header("Cache-Control"), Some("no-cache"), "{path}");
        assert!(
            r.header("ETag").is_some_and(|t| t.starts_with('"')),
            "{path}"
        );
        let ctype = r.header("Content-Type").unwrap();
        let want = match path.rsplit('.').next() {
            Some("css") => "text/css",
            Some("js") => "text/javascript",
            _ => "text/html",
        };
        assert!(ctype.starts_with(want), "{path}: {ctype}");
        assert_eq!(gunzip(&r.body), source, "{path}");
        total += r.body.len();
    }
    // The issue's budget for everything the console loads, compressed.
    assert!(total <= 48 * 1024, "the console is {total} bytes gzipped");
}

#[test]
fn a_client_without_gzip_gets_the_source_with_its_own_etag() {
    let mut c = Client::new(Config::default());
    let index = sources().into_iter().find(|(p, _)| p == "/").unwrap().1;
    let gz = c.one(&get("/", "Accept-Encoding: gzip\r\n"));
    for headers in [
        "",
        "Accept-Encoding: identity\r\n",
        "Accept-Encoding: gzip;q=0, br\r\n",
    ] {
        let r = c.one(&get("/", headers));
        assert_eq!(r.status, 200, "{headers}");
        assert_eq!(r.header("Content-Encoding"), None, "{headers}");
        assert_eq!(r.body, index, "{headers}");
        assert_ne!(r.header("ETag"), gz.header("ETag"), "{headers}");
    }
}

#[test]
fn a_matching_if_none_match_gets_304_on_a_connection_that_stays_open() {
    let mut c = Client::new(Config::default());
    let gz = c.one(&get("/console/app.js", "Accept-Encoding: gzip\r\n"));
    let tag = gz.header("ETag").unwrap().to_string();
    let plain_tag = c
        .one(&get("/console/app.js", ""))
        .header("ETag")
        .unwrap()
        .to_string();
    let requests = [
        get(
            "/console/app.js",
            &format!("Accept-Encoding: gzip\r\nIf-None-Match: \"x\", {tag}\r\n"),
        ),
        get(
            "/console/app.js",
            &format!("If-None-Match: W/{plain_tag}\r\n"),
        ),
        // The other representation's tag does not match.
        get("/console/app.js", &format!("If-None-Match: {tag}\r\n")),
        get(
            "/console/app.js",
            "Accept-Encoding: gzip\r\nIf-None-Match: *\r\n",
        ),
    ]
    .concat();
    let (r, closed) = c.send(requests.as_bytes());
    assert!(!closed);
    let statuses: Vec<u16> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [304, 304, 200, 304]);
    assert_eq!(r[0].header("ETag"), Some(tag.as_str()));
    assert_eq!(r[0].header("Cache-Control"), Some("no-cache"));
    assert!(r[0].body.is_empty() && r[0].header("Content-Length").is_none());
    assert_eq!(r[1].header("ETag"), Some(plain_tag.as_str()));
    assert_eq!(r[2].header("ETag"), Some(plain_tag.as_str()));
    assert!(!r[2].body.is_empty());
    assert_eq!(c.agent.stats().http_errors, 0);
}

#[test]
fn head_has_the_head_only_and_other_methods_get_405() {
    let mut c = Client::new(Config::default());
    let full = c.one(&get("/", "Accept-Encoding: gzip\r\n"));
    // The bytes as sent: a response reader would take a body after HEAD's Content-Length.
    let peer = Some("127.0.0.1:40000".parse().unwrap());
    let conn = c.agent.accept(Listener::Http, peer, c.now).unwrap();
    c.agent.handle_stream(
        conn,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\nGET /console/style.css HTTP/1.1\r\nHost: x\r\n\r\n",
        c.now,
    );
    let mut bytes = Vec::new();
    while let Some(out) = c.agent.poll_output() {
        assert!(!matches!(out, Output::Close(_)));
        if let Output::Transmit(t) = out {
            let pending = c.agent.tx_pending(t).to_vec();
            bytes.extend_from_slice(&pending);
            c.agent.tx_consume(t, pending.len(), c.now);
        }
    }
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let length = format!("\r\nContent-Length: {}\r\n", full.body.len());
    assert!(head.contains(&length), "{head}");
    // Right after HEAD's head comes the next response, not a body.
    let mut rest = bytes[head_end..].to_vec();
    let r = take_responses(&mut rest);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200);
    assert!(r[0].header("Content-Type").unwrap().starts_with("text/css"));
    let r = c.one("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
}

#[test]
fn unknown_paths_and_a_console_turned_off_are_404() {
    let mut c = Client::new(Config::default());
    for path in [
        "/console/",
        "/console/nope.js",
        "/index.html",
        "//",
        "/api/x",
    ] {
        assert_eq!(c.one(&get(path, "")).status, 404, "{path}");
    }
    // A query string does not change the asset.
    assert_eq!(c.one(&get("/?reload=1", "")).status, 200);
    let mut off = Client::new(Config {
        console: false,
        ..Config::default()
    });
    for (path, _) in sources() {
        let r = off.one(&get(&path, "Accept-Encoding: gzip\r\n"));
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.body, b"Not found");
    }
}

#[test]
fn the_console_is_behind_http_auth_like_the_api() {
    let mut c = Client::new(Config {
        http_auth: Some(HttpAuth::new("admin", "pw")),
        ..Config::default()
    });
    let (r, closed) = c.send(get("/", "").as_bytes());
    assert!(closed);
    assert_eq!(r[0].status, 401);
    assert_eq!(
        r[0].header("WWW-Authenticate"),
        Some("Basic realm=\"tandem\"")
    );
    // admin:pw
    let r = c.one(&get("/", "Authorization: Basic YWRtaW46cHc=\r\n"));
    assert_eq!(r.status, 200);
}

#[test]
fn members_wan_lists_the_wan_pool_of_a_server_and_nothing_on_a_client() {
    let exec = |server: bool, command: &str| {
        let mut c = Client::new(Config {
            server,
            ..Config::default()
        });
        let body = format!(r#"{{"action":"exec","command":"{command}"}}"#);
        let r = c.one(&String::from_utf8(tandem_tests::http::post_api(&body)).unwrap());
        r.json()["body"]["results"].clone()
    };
    let wan = exec(true, "members -wan");
    assert_eq!(wan[0]["type"], "members", "{wan}");
    let members = wan[0]["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{wan}");
    assert_eq!(members[0]["Tags"]["role"], "consul");
    let client = exec(false, "members -wan");
    assert_eq!(client[0]["members"], serde_json::json!([]), "{client}");
    let bad = exec(false, "members -lan");
    assert_eq!(bad[0]["statusCode"], -10, "{bad}");
    assert_eq!(bad[0]["message"], "usage: members [-wan]");
}
