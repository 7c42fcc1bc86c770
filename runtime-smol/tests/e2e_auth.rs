//! End-to-end: `tandem agent -http-auth USER:PASS` refuses requests without the right
//! `Authorization: Basic` (401, `WWW-Authenticate`) and serves curl's `-u`.

mod support;

use std::process::Command;

use support::{RunningAgent, post_api, require_tool};

fn curl(port: u16, extra: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", "-XPOST"])
        .args(extra)
        .arg(format!("http://127.0.0.1:{port}/api"))
        .args(["-d", r#"{"action":"exec","command":"version"}"#])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn http_auth_with_curl() {
    require_tool("curl");
    let agent = RunningAgent::start(&["-http-auth", "admin:pa:ss"]);
    let (head, body) = curl(agent.port, &[]);
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized"), "{head}");
    assert!(
        head.contains("WWW-Authenticate: Basic realm=\"tandem\""),
        "{head}"
    );
    assert!(body.is_empty(), "{body}");

    let (head, _) = curl(agent.port, &["-u", "admin:wrong"]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    let (head, body) = curl(agent.port, &["-u", "admin:pa:ss"]);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.contains(r#""state":"SUCCEEDED""#), "{body}");

    // A raw client without credentials is answered 401 and closed.
    let mut c = agent.connect();
    c.send(&post_api(r#"{"action":"exec","command":"version"}"#));
    let all = c.read_to_end();
    assert!(all.starts_with(b"HTTP/1.1 401 Unauthorized\r\n"));
}

#[test]
fn local_trust_admits_loopback_without_credentials() {
    require_tool("curl");
    let agent = RunningAgent::start(&["-http-auth", "admin:pw", "-http-local-trust"]);
    let (head, _) = curl(agent.port, &[]);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let (head, _) = curl(agent.port, &["-u", "admin:wrong"]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
}
