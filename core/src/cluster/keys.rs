//! Serf's keyring queries: a key installed, made primary, removed or listed on every member
//! at once (Serf's `keymanager.go` and `internal_query.go`).
//!
//! [`Cluster::key_query`] sends the internal query `_serf_install-key`, `_serf_use-key`,
//! `_serf_remove-key` or `_serf_list-keys` to every member with Serf's default query
//! parameters. Each member (the origin too) applies it to its keyring and responds; the
//! origin folds the responses into a [`KeyResponse`] ([`KeyResponse::record`]) until every
//! member it counted has answered or the query's deadline passes.
//!
//! The bodies are Serf's, byte for byte: the request is the message type 7 then the msgpack
//! map `{"Key": <raw key bytes>}`; a member's answer is the type 8 then `{"Keys": [base64…]
//! | nil, "Message": string, "PrimaryKey": string, "Result": bool}`, encoded as Serf's
//! go-msgpack does without `WriteExt` (strings and bytes as fixstr/str16/str32, keys sorted).
//! Decoding takes any key order, unknown keys, str or bin; anything else is a defined
//! failure: the member answers `Result: false`, the origin counts an error for the member.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::keyring::{GossipKey, Keyring};
use super::query::{QueryError, QueryId, QueryParams};
use super::{Cluster, Pool};
use crate::log::Level;
use crate::rpc::msgpack::Reader;
use crate::time::Instant;

/// Serf's message type of a key request (`messageKeyRequestType`).
pub const KEY_REQUEST_TYPE: u8 = 7;
/// Serf's message type of a member's key response (`messageKeyResponseType`).
pub const KEY_RESPONSE_TYPE: u8 = 8;
/// Keys a keyring holds at most: an install beyond it is refused (each key is tried on
/// every incoming datagram, so the ring must stay small; Serf sets no bound).
pub const MAX_KEYS: usize = 32;
/// Serf's `minEncodedKeyLength`: a list response names at most `limit / 25` keys.
const MIN_ENCODED_KEY_LENGTH: usize = 25;

/// One of Serf's four keyring operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyOp {
    /// `install-key`: add a key (accepted on receive).
    Install,
    /// `use-key`: make an installed key primary.
    Use,
    /// `remove-key`: drop a key that is not primary.
    Remove,
    /// `list-keys`: every member's keys.
    List,
}

impl KeyOp {
    /// The RPC command and the internal query's name without `_serf_`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOp::Install => "install-key",
            KeyOp::Use => "use-key",
            KeyOp::Remove => "remove-key",
            KeyOp::List => "list-keys",
        }
    }

    /// The internal query's name (`_serf_install-key`, …).
    pub fn query_name(self) -> &'static str {
        match self {
            KeyOp::Install => "_serf_install-key",
            KeyOp::Use => "_serf_use-key",
            KeyOp::Remove => "_serf_remove-key",
            KeyOp::List => "_serf_list-keys",
        }
    }

    /// The operation an internal query's name asks for.
    pub fn from_query_name(name: &str) -> Option<KeyOp> {
        [KeyOp::Install, KeyOp::Use, KeyOp::Remove, KeyOp::List]
            .into_iter()
            .find(|op| op.query_name() == name)
    }

    /// What Serf's agent logs when it starts the operation.
    pub fn initiating(self) -> &'static str {
        match self {
            KeyOp::Install => "agent: Initiating key installation",
            KeyOp::Use => "agent: Initiating primary key change",
            KeyOp::Remove => "agent: Initiating key removal",
            KeyOp::List => "agent: Initiating key listing",
        }
    }
}

/// Why a key operation did not start. `Display` gives Serf's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyQueryError {
    /// The key is not standard base64: Go's `illegal base64 data at input byte N`.
    Base64(usize),
    /// The query could not be sent.
    Query(QueryError),
}

impl fmt::Display for KeyQueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyQueryError::Base64(at) => write!(f, "illegal base64 data at input byte {at}"),
            KeyQueryError::Query(e) => e.fmt(f),
        }
    }
}

/// The answers to a key operation, folded as Serf's `streamKeyResp` folds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyResponse {
    /// Per member that failed (or had something to say), its message.
    pub messages: BTreeMap<String, String>,
    /// `list-keys`: each key (base64) and how many members hold it.
    pub keys: BTreeMap<String, u32>,
    /// Members counted when the query went out (alive or suspect, this node included).
    pub num_nodes: u32,
    /// Members that answered.
    pub num_resp: u32,
    /// Members that answered with a failure (or an answer that does not decode).
    pub num_err: u32,
}

impl KeyResponse {
    /// Folds one member's answer in.
    pub fn record(&mut self, from: &str, payload: &[u8]) {
        self.num_resp = self.num_resp.saturating_add(1);
        let Some(answer) = NodeKeyResponse::decode(payload) else {
            let text = if payload.first() == Some(&KEY_RESPONSE_TYPE) {
                "Failed to decode key query response"
            } else {
                "Invalid key query response type"
            };
            self.messages.insert(String::from(from), String::from(text));
            self.num_err = self.num_err.saturating_add(1);
            return;
        };
        if !answer.result {
            self.messages.insert(String::from(from), answer.message);
            self.num_err = self.num_err.saturating_add(1);
        }
        for key in answer.keys {
            let n = self.keys.entry(key).or_insert(0);
            *n = n.saturating_add(1);
        }
    }

    /// Every member counted has answered (Serf stops waiting then).
    pub fn complete(&self) -> bool {
        self.num_resp >= self.num_nodes
    }

    /// Serf's error for the operation as a whole: some member failed, or not every member
    /// answered.
    pub fn error(&self) -> Option<String> {
        if self.num_err != 0 {
            Some(format!(
                "{}/{} nodes reported failure",
                self.num_err, self.num_nodes
            ))
        } else if self.num_resp != self.num_nodes {
            Some(format!(
                "{}/{} nodes reported success",
                self.num_resp, self.num_nodes
            ))
        } else {
            None
        }
    }
}

/// A member's answer to a key query (Serf's `nodeKeyResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeKeyResponse {
    pub(crate) result: bool,
    pub(crate) message: String,
    /// `None` encodes as nil (every answer but a successful list).
    pub(crate) keys: Vec<String>,
    pub(crate) list: bool,
    pub(crate) primary_key: String,
}

/// go-msgpack's string (and `[]byte`) encoding without `WriteExt`: fixstr, str16, str32.
fn go_raw(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xda);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    }
    out.extend_from_slice(b);
}

fn go_array_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else {
        out.push(0xdc);
        out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
    }
}

/// A key request's body: type 7, then `{"Key": key}`.
pub(crate) fn encode_key_request(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 8);
    out.push(KEY_REQUEST_TYPE);
    out.push(0x81);
    go_raw(&mut out, b"Key");
    go_raw(&mut out, key);
    out
}

/// The key a request carries; `None` if the body is not one.
pub(crate) fn decode_key_request(payload: &[u8]) -> Option<&[u8]> {
    let (&KEY_REQUEST_TYPE, body) = payload.split_first()? else {
        return None;
    };
    let mut key: &[u8] = &[];
    let mut r = Reader::new(body);
    r.fields(&["Key"], |k, r| {
        if k == "Key" {
            key = r.bytes()?;
            return Ok(true);
        }
        Ok(false)
    })
    .ok()?;
    Some(key)
}

impl NodeKeyResponse {
    fn failure(message: &str) -> Self {
        NodeKeyResponse {
            message: String::from(message),
            ..NodeKeyResponse::default()
        }
    }

    /// Type 8, then the struct with its fields sorted, as Serf encodes it.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(KEY_RESPONSE_TYPE);
        out.push(0x84);
        go_raw(&mut out, b"Keys");
        if self.list && !self.keys.is_empty() {
            go_array_len(&mut out, self.keys.len());
            for k in &self.keys {
                go_raw(&mut out, k.as_bytes());
            }
        } else {
            out.push(0xc0);
        }
        go_raw(&mut out, b"Message");
        go_raw(&mut out, self.message.as_bytes());
        go_raw(&mut out, b"PrimaryKey");
        go_raw(&mut out, self.primary_key.as_bytes());
        go_raw(&mut out, b"Result");
        out.push(if self.result { 0xc3 } else { 0xc2 });
        out
    }

    pub(crate) fn decode(payload: &[u8]) -> Option<NodeKeyResponse> {
        let (&KEY_RESPONSE_TYPE, body) = payload.split_first()? else {
            return None;
        };
        let mut resp = NodeKeyResponse::default();
        let mut r = Reader::new(body);
        r.fields(&["Result", "Message", "Keys", "PrimaryKey"], |k, r| {
            match k {
                "Result" => resp.result = r.bool()?,
                "Message" => resp.message = String::from(r.str()?),
                "Keys" => {
                    let n = r.array_len()?;
                    for _ in 0..n {
                        resp.keys.push(String::from(r.str()?));
                    }
                }
                "PrimaryKey" => resp.primary_key = String::from(r.str()?),
                _ => return Ok(false),
            }
            Ok(true)
        })
        .ok()?;
        Some(resp)
    }
}

/// Go's `base64.StdEncoding.DecodeString`: padding required, `\r` and `\n` skipped, and
/// Go's error offset (`illegal base64 data at input byte N`) on failure.
pub fn go_base64_decode(src: &str) -> Result<Vec<u8>, usize> {
    fn sextet(c: u8) -> Option<u8> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let src = src.as_bytes();
    let newline = |c: u8| c == b'\n' || c == b'\r';
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    while si < src.len() {
        let mut quantum = [0u8; 4];
        let mut len = 4;
        let mut j = 0;
        let mut trailing = None;
        while j < 4 {
            let Some(&c) = src.get(si) else {
                if j == 0 {
                    return Ok(out);
                }
                return Err(si - j);
            };
            si += 1;
            if let Some(v) = sextet(c) {
                quantum[j] = v;
                j += 1;
                continue;
            }
            if newline(c) {
                continue;
            }
            if c != b'=' || j < 2 {
                return Err(si - 1);
            }
            if j == 2 {
                // "==" is expected; the first "=" is consumed.
                while src.get(si).copied().is_some_and(newline) {
                    si += 1;
                }
                match src.get(si) {
                    None => return Err(src.len()),
                    Some(&b'=') => si += 1,
                    Some(_) => return Err(si - 1),
                }
            }
            while src.get(si).copied().is_some_and(newline) {
                si += 1;
            }
            if si < src.len() {
                trailing = Some(si);
            }
            len = j;
            break;
        }
        let v = u32::from(quantum[0]) << 18
            | u32::from(quantum[1]) << 12
            | u32::from(quantum[2]) << 6
            | u32::from(quantum[3]);
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(bytes.get(..len - 1).unwrap_or_default());
        if let Some(at) = trailing {
            return Err(at);
        }
    }
    Ok(out)
}

impl Cluster {
    /// Starts a keyring operation on every member (Serf's key manager): `key` is the
    /// base64 key (ignored by [`KeyOp::List`]). Returns the query, whose
    /// [`super::ClusterEvent::QueryResponse`]s go to [`KeyResponse::record`] until
    /// [`KeyResponse::complete`] or [`super::ClusterEvent::QueryDone`], and the response
    /// with the members counted.
    pub fn key_query(
        &mut self,
        op: KeyOp,
        key: &str,
        now: Instant,
    ) -> Result<(QueryId, KeyResponse), KeyQueryError> {
        let raw = match op {
            KeyOp::List => Vec::new(),
            _ => go_base64_decode(key).map_err(KeyQueryError::Base64)?,
        };
        let payload = encode_key_request(&raw);
        let id = self
            .query(op.query_name(), &payload, &QueryParams::default(), now)
            .map_err(KeyQueryError::Query)?;
        let resp = KeyResponse {
            num_nodes: u32::try_from(self.active_members(Pool::Lan)).unwrap_or(u32::MAX),
            ..KeyResponse::default()
        };
        Ok((id, resp))
    }

    /// The keyring changes since start (install, use or remove by a key query): the agent
    /// persists the keyring when this moves.
    pub fn keyring_changes(&self) -> u64 {
        self.keyring_changes
    }

    /// What key queries did here, for the agent's log: the level and Serf's words.
    pub fn poll_keyring_note(&mut self) -> Option<(Level, String)> {
        self.keyring_notes.pop_front()
    }

    fn keyring_note(&mut self, level: Level, text: String) {
        if self.keyring_notes.len() < 64 {
            self.keyring_notes.push_back((level, text));
        }
    }

    /// A key query arrived: apply it to the keyring and say how it went (Serf's
    /// `handleInstallKey` and siblings). The answer fits `query_response_size_limit`: a
    /// long key list is cut short with a message, as Serf's is.
    pub(super) fn answer_key_query(&mut self, op: KeyOp, payload: &[u8]) -> NodeKeyResponse {
        let answer = self.apply_key_query(op, payload);
        if op != KeyOp::List {
            return answer;
        }
        self.fit_key_list(answer)
    }

    fn apply_key_query(&mut self, op: KeyOp, payload: &[u8]) -> NodeKeyResponse {
        const NOT_ENABLED: &str = "No keyring to modify (encryption not enabled)";
        let ring = self.cfg.keyring.clone();
        if op == KeyOp::List {
            if !ring.is_enabled() {
                const EMPTY: &str = "Keyring is empty (encryption not enabled)";
                self.keyring_note(Level::Err, format!("serf: {EMPTY}"));
                return NodeKeyResponse::failure(EMPTY);
            }
            self.keyring_note(Level::Info, String::from("serf: Received list-keys query"));
            return NodeKeyResponse {
                result: true,
                keys: ring.keys().iter().map(GossipKey::to_base64).collect(),
                list: true,
                primary_key: ring.primary().map(GossipKey::to_base64).unwrap_or_default(),
                message: String::new(),
            };
        }
        let Some(raw) = decode_key_request(payload) else {
            // Serf answers a request it cannot decode with a bare failure.
            self.keyring_note(
                Level::Err,
                String::from("serf: Failed to decode key request: invalid key request"),
            );
            return NodeKeyResponse::failure("");
        };
        if !ring.is_enabled() {
            self.keyring_note(Level::Err, format!("serf: {NOT_ENABLED}"));
            return NodeKeyResponse::failure(NOT_ENABLED);
        }
        let text = format!("serf: Received {} query", op.as_str());
        self.keyring_note(Level::Info, text);
        let changed = match op {
            KeyOp::Install => install(&ring, raw),
            KeyOp::Use => make_primary(&ring, raw),
            _ => remove(&ring, raw),
        };
        match changed {
            Ok(None) => {}
            Ok(Some(new)) => {
                self.set_keyring(new);
                self.keyring_changes += 1;
            }
            Err(e) => {
                let what = match op {
                    KeyOp::Install => "install key",
                    KeyOp::Use => "change primary key",
                    _ => "remove key",
                };
                self.keyring_note(Level::Err, format!("serf: Failed to {what}: {e}"));
                return NodeKeyResponse::failure(e);
            }
        }
        NodeKeyResponse {
            result: true,
            ..NodeKeyResponse::default()
        }
    }

    /// Serf's `keyListResponseWithCorrectSize`: drop keys from the end until the encoded
    /// response frame fits the response limit.
    fn fit_key_list(&mut self, mut answer: NodeKeyResponse) -> NodeKeyResponse {
        let limit = self.cfg.query_response_size_limit;
        let actual = answer.keys.len();
        let most = (limit / MIN_ENCODED_KEY_LENGTH).min(actual);
        answer.keys.truncate(most);
        // The RESPONSE frame around the body: kind, LTime, ID, flags, name, length.
        let frame = 1 + 8 + 4 + 1 + 1 + self.lan.name.len() + 2;
        while frame + answer.encode().len() > limit && !answer.keys.is_empty() {
            answer.keys.pop();
        }
        if answer.keys.len() < actual {
            answer.message = format!(
                "truncated key list response, showing first {} of {actual} keys",
                answer.keys.len()
            );
            self.keyring_note(Level::Warn, format!("serf: {}", answer.message));
        }
        answer
    }
}

/// memberlist's `AddKey`: no change if the key is in; refused if it is not a valid key.
fn install(ring: &Keyring, raw: &[u8]) -> Result<Option<Keyring>, &'static str> {
    let key = GossipKey::new(raw).map_err(|_| "key size must be 16, 24 or 32 bytes")?;
    if ring.keys().contains(&key) {
        return Ok(None);
    }
    if ring.keys().len() >= MAX_KEYS {
        return Err("keyring is full (32 keys); remove a key first");
    }
    let mut new = ring.clone();
    new.set_keys(ring.keys().iter().copied().chain([key]).collect());
    Ok(Some(new))
}

/// memberlist's `UseKey`: the key must be installed.
fn make_primary(ring: &Keyring, raw: &[u8]) -> Result<Option<Keyring>, &'static str> {
    const NOT_IN: &str = "Requested key is not in the keyring";
    let key = GossipKey::new(raw).map_err(|_| NOT_IN)?;
    if !ring.keys().contains(&key) {
        return Err(NOT_IN);
    }
    if ring.primary() == Some(&key) {
        return Ok(None);
    }
    let mut new = ring.clone();
    let rest = ring.keys().iter().copied().filter(|k| *k != key);
    new.set_keys(core::iter::once(key).chain(rest).collect());
    Ok(Some(new))
}

/// memberlist's `RemoveKey`: not the primary key; a key not installed is no change.
fn remove(ring: &Keyring, raw: &[u8]) -> Result<Option<Keyring>, &'static str> {
    let Ok(key) = GossipKey::new(raw) else {
        return Ok(None);
    };
    if ring.primary() == Some(&key) {
        return Err("Removing the primary key is not allowed");
    }
    if !ring.keys().contains(&key) {
        return Ok(None);
    }
    let mut new = ring.clone();
    new.set_keys(ring.keys().iter().copied().filter(|k| *k != key).collect());
    Ok(Some(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn base64_errors_are_gos() {
        assert_eq!(go_base64_decode("AAAA"), Ok(vec![0, 0, 0]));
        assert_eq!(go_base64_decode(""), Ok(vec![]));
        assert_eq!(go_base64_decode("AA=="), Ok(vec![0]));
        assert_eq!(go_base64_decode("AAA="), Ok(vec![0, 0]));
        assert_eq!(go_base64_decode("AA\n=="), Ok(vec![0]));
        // What `serf keys -install` printed against a real agent.
        assert_eq!(go_base64_decode("notbase64!"), Err(9));
        assert_eq!(go_base64_decode("notbase64"), Err(8));
        assert_eq!(go_base64_decode("A==="), Err(1));
        assert_eq!(go_base64_decode("AA="), Err(3));
        assert_eq!(go_base64_decode("AA=A"), Err(2));
        assert_eq!(go_base64_decode("AA==AAAA"), Err(4));
        // Non-canonical trailing bits are accepted, as Go's non-strict decoder does.
        assert_eq!(go_base64_decode("AB=="), Ok(vec![0]));
        assert_eq!(
            KeyQueryError::Base64(9).to_string(),
            "illegal base64 data at input byte 9"
        );
    }

    use alloc::string::ToString;

    #[test]
    fn bodies_are_serfs_bytes() {
        assert_eq!(
            encode_key_request(&[1; 16]),
            [&[7, 0x81, 0xa3, b'K', b'e', b'y', 0xb0][..], &[1; 16]].concat()
        );
        // 32 bytes: str16, as go-msgpack without WriteExt writes []byte.
        let req = encode_key_request(&[2; 32]);
        assert_eq!(&req[..9], &[7, 0x81, 0xa3, b'K', b'e', b'y', 0xda, 0, 32]);
        assert_eq!(decode_key_request(&req), Some(&[2u8; 32][..]));
        let ok = NodeKeyResponse {
            result: true,
            ..NodeKeyResponse::default()
        };
        let mut want = vec![8, 0x84, 0xa4];
        want.extend_from_slice(b"Keys");
        want.push(0xc0);
        want.push(0xa7);
        want.extend_from_slice(b"Message");
        want.push(0xa0);
        want.push(0xaa);
        want.extend_from_slice(b"PrimaryKey");
        want.push(0xa0);
        want.push(0xa6);
        want.extend_from_slice(b"Result");
        want.push(0xc3);
        assert_eq!(ok.encode(), want);
        assert_eq!(NodeKeyResponse::decode(&want), Some(ok));
    }

    #[test]
    fn requests_and_answers_decode_leniently_and_refuse_garbage() {
        // bin8 key, keys in another order, an unknown field: all taken, as Go takes them.
        let mut body = vec![7, 0x82, 0xa1, b'X', 0x01, 0xa3, b'K', b'e', b'y', 0xc4, 16];
        body.extend_from_slice(&[3; 16]);
        assert_eq!(decode_key_request(&body), Some(&[3u8; 16][..]));
        for bad in [
            &[][..],
            &[8, 0x80],
            &[7],
            &[7, 0x81, 0xa3, b'K', b'e', b'y', 0x05],
            &[
                7, 0x81, 0xa3, b'K', b'e', b'y', 0xdb, 0xff, 0xff, 0xff, 0xff,
            ],
        ] {
            assert_eq!(decode_key_request(bad), None, "{bad:?}");
        }
        let mut resp = KeyResponse {
            num_nodes: 4,
            ..KeyResponse::default()
        };
        resp.record("a", &[9, 0x80]);
        resp.record(
            "b",
            &[8, 0x81, 0xa6, b'R', b'e', b's', b'u', b'l', b't', 0x07],
        );
        let listed = NodeKeyResponse {
            result: true,
            keys: vec![String::from("k1"), String::from("k2")],
            list: true,
            ..NodeKeyResponse::default()
        };
        resp.record("c", &listed.encode());
        resp.record("d", &NodeKeyResponse::failure("no").encode());
        assert_eq!(resp.num_resp, 4);
        assert_eq!(resp.num_err, 3);
        assert_eq!(resp.messages["a"], "Invalid key query response type");
        assert_eq!(resp.messages["b"], "Failed to decode key query response");
        assert_eq!(resp.messages["d"], "no");
        assert_eq!(resp.keys["k1"], 1);
        assert!(resp.complete());
        assert_eq!(resp.error().as_deref(), Some("3/4 nodes reported failure"));
        let partial = KeyResponse {
            num_nodes: 3,
            num_resp: 2,
            ..KeyResponse::default()
        };
        assert_eq!(
            partial.error().as_deref(),
            Some("2/3 nodes reported success")
        );
    }

    fn key(fill: u8) -> GossipKey {
        GossipKey::new(&[fill; 16]).unwrap()
    }

    #[test]
    fn keyring_changes_follow_memberlist() {
        let ring = Keyring::new(key(1), [key(2)]);
        assert_eq!(install(&ring, &[2; 16]), Ok(None), "already in");
        let added = install(&ring, &[3; 16]).unwrap().unwrap();
        assert_eq!(added.keys(), &[key(1), key(2), key(3)]);
        assert_eq!(
            install(&ring, &[3; 5]),
            Err("key size must be 16, 24 or 32 bytes")
        );
        let used = make_primary(&added, &[3; 16]).unwrap().unwrap();
        assert_eq!(used.keys(), &[key(3), key(1), key(2)]);
        assert_eq!(
            make_primary(&ring, &[9; 16]),
            Err("Requested key is not in the keyring")
        );
        assert_eq!(
            remove(&used, &[3; 16]),
            Err("Removing the primary key is not allowed")
        );
        assert_eq!(remove(&used, &[9; 16]), Ok(None));
        let removed = remove(&used, &[1; 16]).unwrap().unwrap();
        assert_eq!(removed.keys(), &[key(3), key(2)]);
        let mut full = Keyring::new(key(0), []);
        for i in 1..MAX_KEYS as u8 {
            full = install(&full, &[i; 16]).unwrap().unwrap();
        }
        assert!(install(&full, &[200; 16]).is_err());
    }
}
