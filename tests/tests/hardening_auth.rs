//! HTTP Basic authentication (`Config::http_auth`) and local trust
//! (`Config::http_local_trust`), after Arthas's rules (spec §1.5): every request carries
//! `Authorization: Basic base64(user:pass)` or is answered `401` and closed; a request from
//! 127.0.0.1 or ::1 that presents no credentials is trusted when local trust is on, one
//! that presents wrong credentials is not.

use std::net::SocketAddr;

use tandem_core::{Agent, Config, ConnId, HttpAuth, Instant, Listener, Output};

const UNAUTHORIZED: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"tandem\"\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

const EXEC: &str = r#"{"action":"exec","command":"version"}"#;

struct Client {
    agent: Agent,
    now: Instant,
}

/// What one connection got: the bytes written to it, and whether the agent closed it.
struct Got {
    bytes: Vec<u8>,
    closed: bool,
}

impl Client {
    fn new(auth: Option<HttpAuth>, local_trust: bool) -> Self {
        let now = Instant::from_millis(1);
        let config = Config {
            http_auth: auth,
            http_local_trust: local_trust,
            ..Config::default()
        };
        Client {
            agent: Agent::new(config, 1, now),
            now,
        }
    }

    /// One connection from `peer` sending `bytes`.
    fn send(&mut self, peer: Option<&str>, bytes: &[u8]) -> Got {
        let peer: Option<SocketAddr> = peer.map(|p| p.parse().unwrap());
        let c = self.agent.accept(Listener::Http, peer, self.now).unwrap();
        self.agent.handle_stream(c, bytes, self.now);
        self.drain(c)
    }

    fn drain(&mut self, conn: ConnId) -> Got {
        let mut got = Got {
            bytes: Vec::new(),
            closed: false,
        };
        while let Some(out) = self.agent.poll_output() {
            match out {
                Output::Transmit(c) => {
                    let pending = self.agent.tx_pending(c).to_vec();
                    if c == conn {
                        got.bytes.extend_from_slice(&pending);
                    }
                    self.agent.tx_consume(c, pending.len(), self.now);
                }
                Output::Close(c) => {
                    if c == conn {
                        got.bytes.extend_from_slice(self.agent.tx_pending(c));
                        got.closed = true;
                    }
                    self.agent.handle_reset(c, self.now);
                }
                _ => {}
            }
        }
        got
    }
}

fn request(authorization: Option<&str>, body: &str) -> Vec<u8> {
    let mut r = String::from("POST /api HTTP/1.1\r\nHost: x\r\n");
    if let Some(a) = authorization {
        r.push_str(&format!("Authorization: {a}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r.into_bytes()
}

fn basic(user_pass: &str) -> String {
    // RFC 4648 base64, written out here so the test does not trust the agent's decoder.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in user_pass.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

fn creds() -> Option<HttpAuth> {
    Some(HttpAuth::new("admin", "s3cr:et"))
}

fn is_ok(got: &Got) -> bool {
    got.bytes.starts_with(b"HTTP/1.1 200 OK\r\n")
}

#[test]
fn the_test_encoder_is_rfc_4648() {
    assert_eq!(
        basic("Aladdin:open sesame"),
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(basic("ab"), "Basic YWI=");
}

#[test]
fn no_credentials_get_401_exact_bytes_and_a_close() {
    let mut a = Client::new(creds(), false);
    let got = a.send(None, &request(None, EXEC));
    assert_eq!(
        got.bytes,
        UNAUTHORIZED,
        "{}",
        String::from_utf8_lossy(&got.bytes)
    );
    assert!(got.closed);
    assert_eq!(a.agent.stats().http_unauthorized, 1);
    assert_eq!(a.agent.job_count(), 0);
    assert_eq!(a.agent.session_count(), 0);
}

#[test]
fn an_http10_request_gets_an_http10_401() {
    let mut a = Client::new(creds(), false);
    let got = a.send(None, b"POST /api HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}");
    assert!(got.bytes.starts_with(b"HTTP/1.0 401 Unauthorized\r\n"));
    assert!(got.closed);
}

#[test]
fn wrong_credentials_get_401() {
    let mut a = Client::new(creds(), false);
    for wrong in [
        basic("admin:s3cr:eT"),
        basic("admin:s3cr"),
        basic("Admin:s3cr:et"),
        basic("admin"),
        basic(":s3cr:et"),
        basic(""),
        "Basic".to_string(),
        "Basic !!!notbase64".to_string(),
        "Bearer s3cr:et".to_string(),
        format!("Digest {}", &basic("admin:s3cr:et")[6..]),
        basic(&format!("admin:{}", "x".repeat(1000))),
    ] {
        let got = a.send(None, &request(Some(&wrong), EXEC));
        assert_eq!(got.bytes, UNAUTHORIZED, "{wrong}");
        assert!(got.closed, "{wrong}");
    }
}

#[test]
fn right_credentials_get_200_and_keep_the_connection() {
    let mut a = Client::new(creds(), false);
    let ok = request(Some(&basic("admin:s3cr:et")), EXEC);
    let mut two = ok.clone();
    two.extend_from_slice(&ok);
    let got = a.send(None, &two);
    assert!(is_ok(&got), "{}", String::from_utf8_lossy(&got.bytes));
    assert_eq!(
        got.bytes
            .windows(b"HTTP/1.1 200 OK".len())
            .filter(|w| w == b"HTTP/1.1 200 OK")
            .count(),
        2
    );
    assert!(!got.closed);
}

#[test]
fn the_scheme_is_case_insensitive_and_padding_optional() {
    let mut a = Client::new(creds(), false);
    let token = &basic("admin:s3cr:et")[6..];
    for value in [
        format!("basic {token}"),
        format!("BASIC {token}"),
        format!("bAsIc   {token}"),
        format!("Basic {}", token.trim_end_matches('=')),
    ] {
        let got = a.send(None, &request(Some(&value), EXEC));
        assert!(
            is_ok(&got),
            "{value}: {}",
            String::from_utf8_lossy(&got.bytes)
        );
    }
}

#[test]
fn a_second_authorization_header_is_refused() {
    let mut a = Client::new(creds(), false);
    let good = basic("admin:s3cr:et");
    let body = "{}";
    let req = format!(
        "POST /api HTTP/1.1\r\nHost: x\r\nAuthorization: {good}\r\nAuthorization: {good}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let got = a.send(None, req.as_bytes());
    assert_eq!(got.bytes, UNAUTHORIZED);
}

#[test]
fn every_path_needs_credentials_and_401_comes_before_the_body() {
    let mut a = Client::new(creds(), false);
    // Not /api: still 401, not 404 (authentication runs before routing).
    let got = a.send(None, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(got.bytes, UNAUTHORIZED);
    // A head promising a body is refused at once: no 100 Continue, no waiting.
    let got = a.send(
        None,
        b"POST /api HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n",
    );
    assert_eq!(got.bytes, UNAUTHORIZED);
    assert!(got.closed);
}

#[test]
fn without_configured_credentials_nothing_is_checked() {
    let mut a = Client::new(None, false);
    assert!(is_ok(&a.send(None, &request(None, EXEC))));
    assert!(is_ok(&a.send(None, &request(Some("Basic garbage"), EXEC))));
}

#[test]
fn password_only_config_means_user_tandem() {
    let cfg: Config = serde_json::from_str(r#"{"http_auth":{"password":"pw"}}"#).unwrap();
    assert_eq!(cfg.http_auth, Some(HttpAuth::new("tandem", "pw")));
    assert!(!cfg.http_local_trust);
    let cfg: Config = serde_json::from_str(
        r#"{"http_auth":{"username":"u","password":"pw"},"http_local_trust":true}"#,
    )
    .unwrap();
    assert_eq!(cfg.http_auth, Some(HttpAuth::new("u", "pw")));
    assert!(cfg.http_local_trust);
    assert!(
        !format!("{:?}", cfg.http_auth).contains("pw"),
        "password in Debug"
    );
    let mut a = Client::new(Some(HttpAuth::new("tandem", "pw")), false);
    assert!(is_ok(
        &a.send(None, &request(Some(&basic("tandem:pw")), EXEC))
    ));
}

#[test]
fn local_trust_admits_loopback_peers_presenting_nothing() {
    let mut a = Client::new(creds(), true);
    for peer in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
        let got = a.send(Some(peer), &request(None, EXEC));
        assert!(
            is_ok(&got),
            "{peer}: {}",
            String::from_utf8_lossy(&got.bytes)
        );
    }
    for peer in ["10.0.0.7:5000", "127.0.0.2:5000", "[fe80::1]:5000"] {
        let got = a.send(Some(peer), &request(None, EXEC));
        assert_eq!(got.bytes, UNAUTHORIZED, "{peer}");
    }
    // No peer known (an embedding without addresses): not local.
    assert_eq!(a.send(None, &request(None, EXEC)).bytes, UNAUTHORIZED);
    // Right credentials work from anywhere.
    let got = a.send(
        Some("10.0.0.7:5000"),
        &request(Some(&basic("admin:s3cr:et")), EXEC),
    );
    assert!(is_ok(&got));
}

#[test]
fn wrong_credentials_are_refused_even_locally() {
    let mut a = Client::new(creds(), true);
    for peer in ["127.0.0.1:5000", "[::1]:5000"] {
        let got = a.send(Some(peer), &request(Some(&basic("admin:nope")), EXEC));
        assert_eq!(got.bytes, UNAUTHORIZED, "{peer}");
        assert!(got.closed);
        let got = a.send(Some(peer), &request(Some("Bearer x"), EXEC));
        assert_eq!(got.bytes, UNAUTHORIZED, "{peer}");
    }
}

#[test]
fn without_local_trust_loopback_needs_credentials_too() {
    let mut a = Client::new(creds(), false);
    let got = a.send(Some("127.0.0.1:5000"), &request(None, EXEC));
    assert_eq!(got.bytes, UNAUTHORIZED);
}

#[test]
fn a_refused_request_behind_an_admitted_one_is_answered_in_order() {
    let mut a = Client::new(creds(), false);
    let mut both = request(Some(&basic("admin:s3cr:et")), EXEC);
    both.extend_from_slice(&request(None, EXEC));
    let got = a.send(None, &both);
    assert!(is_ok(&got));
    assert!(got.bytes.ends_with(UNAUTHORIZED));
    assert!(got.closed);
}
