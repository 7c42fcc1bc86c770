//! Shared by the `conformance_rpc*` suites: hex, a msgpack reader and writer of its own (so
//! the suite does not check the core with the core's codec), request builders, the reply
//! bytes Go's codec writes (spec §4.1), and shortcuts on the in-memory driver.
//!
//! Each suite includes this module, and no suite uses all of it.
#![allow(dead_code)]

use tandem_core::{Config, ConnId, Level, Listener};
use tandem_tests::Sim;

// ----- hex -----------------------------------------------------------------------------

/// Bytes from hex; whitespace is ignored, so transcripts can be pasted as the spec wraps them.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {s}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).expect("hex digit"))
        .collect()
}

/// Lower-case hex, for assertion messages that can be compared with the spec.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Asserts byte equality, showing both sides as hex.
#[track_caller]
pub fn assert_bytes(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "bytes differ\n got: {}\nwant: {}",
        to_hex(got),
        to_hex(want)
    );
}

// ----- msgpack values ------------------------------------------------------------------

/// A msgpack value. Maps keep their wire order. Non-negative integers written with an
/// unsigned (or fixint) marker decode as `U`, signed markers as `I`, so a reply that
/// strays from Go's smallest-unsigned form (§4.1) does not pass as a `U`.
#[derive(Clone, Debug, PartialEq)]
pub enum V {
    Nil,
    Bool(bool),
    U(u64),
    I(i64),
    F(f64),
    S(String),
    B(Vec<u8>),
    A(Vec<V>),
    M(Vec<(V, V)>),
    Ext(i8, Vec<u8>),
}

impl From<&str> for V {
    fn from(s: &str) -> V {
        V::S(s.to_string())
    }
}

impl From<u64> for V {
    fn from(v: u64) -> V {
        V::U(v)
    }
}

impl From<bool> for V {
    fn from(v: bool) -> V {
        V::Bool(v)
    }
}

/// A map with string keys, in the given order.
pub fn map(pairs: &[(&str, V)]) -> V {
    V::M(
        pairs
            .iter()
            .map(|(k, v)| (V::from(*k), v.clone()))
            .collect(),
    )
}

/// An array of strings.
pub fn strs(items: &[&str]) -> V {
    V::A(items.iter().map(|s| V::from(*s)).collect())
}

impl V {
    /// The value under a string key of a map; panics if absent.
    #[track_caller]
    pub fn get(&self, key: &str) -> &V {
        self.try_get(key)
            .unwrap_or_else(|| panic!("no key {key:?} in {self:?}"))
    }

    pub fn try_get(&self, key: &str) -> Option<&V> {
        self.map()
            .iter()
            .find(|(k, _)| matches!(k, V::S(s) if s == key))
            .map(|(_, v)| v)
    }

    /// The keys of a map, in wire order; every key must be a string.
    #[track_caller]
    pub fn keys(&self) -> Vec<&str> {
        self.map().iter().map(|(k, _)| k.str()).collect()
    }

    #[track_caller]
    pub fn map(&self) -> &[(V, V)] {
        match self {
            V::M(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[track_caller]
    pub fn arr(&self) -> &[V] {
        match self {
            V::A(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }

    #[track_caller]
    pub fn str(&self) -> &str {
        match self {
            V::S(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[track_caller]
    pub fn bin(&self) -> &[u8] {
        match self {
            V::B(b) => b,
            other => panic!("not bin: {other:?}"),
        }
    }

    #[track_caller]
    pub fn u64(&self) -> u64 {
        match self {
            V::U(v) => *v,
            other => panic!("not an unsigned integer: {other:?}"),
        }
    }

    #[track_caller]
    pub fn bool(&self) -> bool {
        match self {
            V::Bool(b) => *b,
            other => panic!("not a bool: {other:?}"),
        }
    }
}

/// Decodes one value from the start of `buf`: the value and its length, or `None` if `buf`
/// ends inside it.
pub fn decode(buf: &[u8]) -> Option<(V, usize)> {
    let mut pos = 0;
    let v = decode_at(buf, &mut pos)?;
    Some((v, pos))
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let s = buf.get(*pos..*pos + n)?;
    *pos += n;
    Some(s)
}

fn be(buf: &[u8], pos: &mut usize, n: usize) -> Option<u64> {
    Some(
        take(buf, pos, n)?
            .iter()
            .fold(0u64, |a, &b| (a << 8) | u64::from(b)),
    )
}

fn decode_at(buf: &[u8], pos: &mut usize) -> Option<V> {
    let m = *buf.get(*pos)?;
    *pos += 1;
    let string = |buf: &[u8], pos: &mut usize, n: usize| -> Option<V> {
        let b = take(buf, pos, n)?;
        Some(V::S(String::from_utf8(b.to_vec()).expect("UTF-8 str")))
    };
    let array = |buf: &[u8], pos: &mut usize, n: u64| -> Option<V> {
        let mut a = Vec::new();
        for _ in 0..n {
            a.push(decode_at(buf, pos)?);
        }
        Some(V::A(a))
    };
    let mapping = |buf: &[u8], pos: &mut usize, n: u64| -> Option<V> {
        let mut m = Vec::new();
        for _ in 0..n {
            let k = decode_at(buf, pos)?;
            let v = decode_at(buf, pos)?;
            m.push((k, v));
        }
        Some(V::M(m))
    };
    Some(match m {
        0x00..=0x7f => V::U(u64::from(m)),
        0x80..=0x8f => mapping(buf, pos, u64::from(m & 0x0f))?,
        0x90..=0x9f => array(buf, pos, u64::from(m & 0x0f))?,
        0xa0..=0xbf => string(buf, pos, usize::from(m & 0x1f))?,
        0xc0 => V::Nil,
        0xc2 => V::Bool(false),
        0xc3 => V::Bool(true),
        0xc4..=0xc6 => {
            let n = be(buf, pos, 1 << (m - 0xc4))? as usize;
            V::B(take(buf, pos, n)?.to_vec())
        }
        0xc7..=0xc9 => {
            let n = be(buf, pos, 1 << (m - 0xc7))? as usize;
            let t = take(buf, pos, 1)?[0] as i8;
            V::Ext(t, take(buf, pos, n)?.to_vec())
        }
        0xca => V::F(f64::from(f32::from_bits(be(buf, pos, 4)? as u32))),
        0xcb => V::F(f64::from_bits(be(buf, pos, 8)?)),
        0xcc..=0xcf => V::U(be(buf, pos, 1 << (m - 0xcc))?),
        0xd0 => V::I(i64::from(be(buf, pos, 1)? as u8 as i8)),
        0xd1 => V::I(i64::from(be(buf, pos, 2)? as u16 as i16)),
        0xd2 => V::I(i64::from(be(buf, pos, 4)? as u32 as i32)),
        0xd3 => V::I(be(buf, pos, 8)? as i64),
        0xd4..=0xd8 => {
            let t = take(buf, pos, 1)?[0] as i8;
            V::Ext(t, take(buf, pos, 1 << (m - 0xd4))?.to_vec())
        }
        0xd9..=0xdb => {
            let n = be(buf, pos, 1 << (m - 0xd9))? as usize;
            string(buf, pos, n)?
        }
        0xdc | 0xdd => {
            let n = be(buf, pos, if m == 0xdc { 2 } else { 4 })?;
            array(buf, pos, n)?
        }
        0xde | 0xdf => {
            let n = be(buf, pos, if m == 0xde { 2 } else { 4 })?;
            mapping(buf, pos, n)?
        }
        0xe0..=0xff => V::I(i64::from(m as i8)),
        0xc1 => panic!("0xc1 is never used"),
    })
}

/// Every value in `buf`, back to back; panics if `buf` ends inside one.
#[track_caller]
pub fn values(buf: &[u8]) -> Vec<V> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let (v, n) = decode(rest).unwrap_or_else(|| panic!("truncated msgpack: {}", to_hex(rest)));
        out.push(v);
        rest = &rest[n..];
    }
    out
}

/// Asserts that `bytes` are a sequence of values written exactly as Go's codec writes
/// them (§4.1): decoding and re-encoding with Go's rules gives the same bytes back. This
/// pins the smallest integer forms, str8 for 32–255-byte strings and bin for bytes.
#[track_caller]
pub fn assert_go_encoded(bytes: &[u8]) {
    let again: Vec<u8> = values(bytes).iter().flat_map(enc).collect();
    assert!(
        again == bytes,
        "not as Go writes it\n got: {}\n  go: {}",
        to_hex(bytes),
        to_hex(&again)
    );
}

/// Encodes as Go's codec does (§4.1): smallest unsigned forms, fixstr then str8/16/32,
/// bin8 and up.
pub fn enc(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    enc_into(&mut out, v);
    out
}

fn len_marker(out: &mut Vec<u8>, n: usize, fix: Option<(u8, usize)>, markers: [u8; 3]) {
    match fix {
        Some((base, max)) if n <= max => out.push(base | n as u8),
        _ if n <= 0xff && markers[0] != 0 => {
            out.push(markers[0]);
            out.push(n as u8);
        }
        _ if n <= 0xffff => {
            out.push(markers[1]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(markers[2]);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

fn enc_into(out: &mut Vec<u8>, v: &V) {
    match v {
        V::Nil => out.push(0xc0),
        V::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        V::U(u) => match *u {
            0..=0x7f => out.push(*u as u8),
            0x80..=0xff => out.extend_from_slice(&[0xcc, *u as u8]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend_from_slice(&(*u as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend_from_slice(&(*u as u32).to_be_bytes());
            }
            _ => {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            }
        },
        // Go writes a non-negative signed value in the unsigned forms (v0.5.x), a negative
        // one in the smallest signed form.
        V::I(i) if *i >= 0 => enc_into(out, &V::U(*i as u64)),
        V::I(i) => match *i {
            -32..=-1 => out.push(*i as i8 as u8),
            -0x80..=-33 => out.extend_from_slice(&[0xd0, *i as i8 as u8]),
            -0x8000..=-0x81 => {
                out.push(0xd1);
                out.extend_from_slice(&(*i as i16).to_be_bytes());
            }
            -0x8000_0000..=-0x8001 => {
                out.push(0xd2);
                out.extend_from_slice(&(*i as i32).to_be_bytes());
            }
            _ => {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            }
        },
        V::F(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        V::S(s) => {
            len_marker(out, s.len(), Some((0xa0, 31)), [0xd9, 0xda, 0xdb]);
            out.extend_from_slice(s.as_bytes());
        }
        V::B(b) => {
            len_marker(out, b.len(), None, [0xc4, 0xc5, 0xc6]);
            out.extend_from_slice(b);
        }
        V::A(a) => {
            len_marker(out, a.len(), Some((0x90, 15)), [0, 0xdc, 0xdd]);
            for x in a {
                enc_into(out, x);
            }
        }
        V::M(m) => {
            len_marker(out, m.len(), Some((0x80, 15)), [0, 0xde, 0xdf]);
            for (k, x) in m {
                enc_into(out, k);
                enc_into(out, x);
            }
        }
        V::Ext(..) => unimplemented!("no request carries an ext"),
    }
}

// ----- requests and replies ------------------------------------------------------------

/// A request header `{"Command": cmd, "Seq": seq}`, keys sorted as the Go client sends them.
pub fn req(cmd: &str, seq: u64) -> Vec<u8> {
    enc(&map(&[("Command", cmd.into()), ("Seq", seq.into())]))
}

/// A request header followed by its body.
pub fn req_with(cmd: &str, seq: u64, body: &V) -> Vec<u8> {
    let mut out = req(cmd, seq);
    out.extend(enc(body));
    out
}

/// The handshake request, Version 1.
pub fn handshake(seq: u64) -> Vec<u8> {
    req_with("handshake", seq, &map(&[("Version", 1u64.into())]))
}

/// A reply header as Go writes it: `{"Error": error, "Seq": seq}`.
pub fn reply(seq: u64, error: &str) -> Vec<u8> {
    enc(&map(&[("Error", error.into()), ("Seq", seq.into())]))
}

/// A reply header followed by its body.
pub fn reply_with(seq: u64, error: &str, body: &V) -> Vec<u8> {
    let mut out = reply(seq, error);
    out.extend(enc(body));
    out
}

/// `{"Error":"","Seq":0}`, the successful handshake of §5.1.
pub const HANDSHAKE_OK: &str = "82a54572726f72a0a353657100";

// ----- the driver ----------------------------------------------------------------------

/// A simulated agent with the default configuration changed by `f`.
pub fn sim_with(f: impl FnOnce(&mut Config)) -> Sim {
    let mut cfg = Config::default();
    f(&mut cfg);
    Sim::with_config(cfg)
}

/// A fresh RPC connection, before the handshake.
pub fn connect(sim: &mut Sim) -> ConnId {
    sim.connect_to(Listener::Rpc)
}

/// A fresh RPC connection after a successful handshake (Seq 0), its reply taken.
pub fn handshaken(sim: &mut Sim) -> ConnId {
    let c = connect(sim);
    sim.send(c, &handshake(0));
    assert_bytes(&sim.received(c), &hex(HANDSHAKE_OK));
    c
}

/// Sends `bytes` on `c` and returns everything the agent wrote back.
pub fn call(sim: &mut Sim, c: ConnId, bytes: &[u8]) -> Vec<u8> {
    sim.send(c, bytes);
    sim.received(c)
}

/// Logs a record through the agent's public input, then drains; returns the line as the
/// agent formatted it (`None` if its level is below the configured one).
pub fn log(sim: &mut Sim, level: Level, text: &str) -> Option<String> {
    let now = sim.now;
    let record = sim.agent.log_record(level, text, now);
    sim.drain();
    record.map(|r| r.line.to_string())
}

/// The line `monitor` streams for a record logged at the simulation's start instant.
pub fn line_at_start(level: &str, text: &str) -> String {
    format!("2026/11/21 00:00:00 [{level}] {text}")
}

/// A log record's body, `{"Log": line}`, with a header carrying the monitor's Seq.
pub fn log_record(seq: u64, line: &str) -> Vec<u8> {
    reply_with(seq, "", &map(&[("Log", line.into())]))
}

/// Asserts the connection was closed and nothing was written back.
#[track_caller]
pub fn assert_closed_silently(sim: &mut Sim, c: ConnId) {
    let got = sim.received(c);
    assert!(got.is_empty(), "expected no reply, got {}", to_hex(&got));
    assert!(sim.is_closed(c), "expected the connection to be closed");
    let closes = sim.closes.iter().filter(|&&x| x == c).count();
    assert_eq!(closes, 1, "closed exactly once");
}
