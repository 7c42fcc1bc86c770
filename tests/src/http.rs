//! Reading HTTP responses out of a byte stream, for assertions.

/// One parsed HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (Content-Length framed).
    pub body: Vec<u8>,
    /// The whole response as sent, head and body.
    pub raw: Vec<u8>,
}

impl Response {
    /// The body as UTF-8 text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Takes every complete response off the front of `buf`. `100 Continue` interim responses
/// are returned too (status 100, empty body).
pub fn take_responses(buf: &mut Vec<u8>) -> Vec<Response> {
    let mut out = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => break,
            Err(e) => panic!(
                "malformed response ({e}): {:?}",
                String::from_utf8_lossy(buf)
            ),
        };
        let status = resp.code.expect("status code");
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("numeric content-length"))
            .unwrap_or(0);
        if buf.len() < head_len + len {
            break;
        }
        let raw: Vec<u8> = buf.drain(..head_len + len).collect();
        out.push(Response {
            status,
            headers,
            body: raw[head_len..].to_vec(),
            raw,
        });
    }
    out
}

/// A `POST /api` request with a JSON body.
pub fn post_api(body: &str) -> Vec<u8> {
    format!(
        "POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        body
    )
    .into_bytes()
}
