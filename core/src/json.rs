//! A small JSON writer that serializes straight into a reusable buffer.
//!
//! serde_json's `Serializer` needs `std::io::Write`, and building a `Value` first costs an
//! allocation per node; envelopes and result items are written on every request, so they are
//! written by hand here. The writer keeps the wire rules of the Arthas API (spec §3.3): compact,
//! no `null`s (callers skip absent fields), and keys in alphabetical order — checked in debug
//! builds, so a misordered field fails the tests rather than the client.

use alloc::vec::Vec;

/// Appends `s` as a JSON string literal, escaped as serde_json escapes it.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(decimal(v, &mut [0; 20]).as_bytes());
}

/// `v` in decimal, formatted into `buf` (no allocation).
pub(crate) fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or_default()
}

pub(crate) fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Writes one JSON object into `out`.
pub(crate) fn object(out: &mut Vec<u8>, f: impl FnOnce(&mut Obj<'_>)) {
    out.push(b'{');
    let mut o = Obj {
        out,
        first: true,
        #[cfg(debug_assertions)]
        last: "",
    };
    f(&mut o);
    o.out.push(b'}');
}

/// An object being written. Keys must come in alphabetical order.
pub(crate) struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    #[cfg(debug_assertions)]
    last: &'static str,
}

impl Obj<'_> {
    fn key(&mut self, key: &'static str) {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                self.first || self.last < key,
                "JSON keys out of order: {:?} after {:?}",
                key,
                self.last
            );
            self.last = key;
        }
        self.dyn_key(key);
    }

    /// A string under a key not known at compile time; the caller keeps the order.
    pub(crate) fn dyn_str(&mut self, key: &str, v: &str) {
        self.dyn_key(key);
        write_str(self.out, v);
    }

    /// An object under a key not known at compile time; the caller keeps the order.
    pub(crate) fn dyn_obj(&mut self, key: &str, f: impl FnOnce(&mut Obj<'_>)) {
        self.dyn_key(key);
        object(self.out, f);
    }

    fn dyn_key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(b':');
    }

    pub(crate) fn str(&mut self, key: &'static str, v: &str) {
        self.key(key);
        write_str(self.out, v);
    }

    pub(crate) fn opt_str(&mut self, key: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }

    pub(crate) fn u64(&mut self, key: &'static str, v: u64) {
        self.key(key);
        write_u64(self.out, v);
    }

    pub(crate) fn i64(&mut self, key: &'static str, v: i64) {
        self.key(key);
        write_i64(self.out, v);
    }

    pub(crate) fn bool(&mut self, key: &'static str, v: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if v { b"true" as &[u8] } else { b"false" });
    }

    pub(crate) fn obj(&mut self, key: &'static str, f: impl FnOnce(&mut Obj<'_>)) {
        self.key(key);
        object(self.out, f);
    }

    pub(crate) fn arr(&mut self, key: &'static str, f: impl FnOnce(&mut Arr<'_>)) {
        self.key(key);
        array(self.out, f);
    }
}

/// Writes one JSON array into `out`.
pub(crate) fn array(out: &mut Vec<u8>, f: impl FnOnce(&mut Arr<'_>)) {
    out.push(b'[');
    let mut a = Arr { out, first: true };
    f(&mut a);
    a.out.push(b']');
}

/// An array being written.
pub(crate) struct Arr<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Arr<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    pub(crate) fn raw(&mut self, json: &[u8]) {
        self.sep();
        self.out.extend_from_slice(json);
    }

    pub(crate) fn str(&mut self, v: &str) {
        self.sep();
        write_str(self.out, v);
    }

    pub(crate) fn obj(&mut self, f: impl FnOnce(&mut Obj<'_>)) {
        self.sep();
        object(self.out, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_like_serde_json() {
        for text in [
            "plain",
            "q\"b\\s",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "é/😀",
            "",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, text);
            assert_eq!(s(out), serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn writes_compact_nested_objects() {
        let mut out = Vec::new();
        object(&mut out, |o| {
            o.obj("body", |b| {
                b.arr("results", |a| {
                    a.raw(b"{\"x\":1}");
                    a.obj(|o| o.str("y", "z"));
                });
            });
            o.i64("n", -42);
            o.opt_str("none", None);
            o.bool("ok", true);
            o.u64("z", u64::MAX);
        });
        assert_eq!(
            s(out),
            r#"{"body":{"results":[{"x":1},{"y":"z"}]},"n":-42,"ok":true,"z":18446744073709551615}"#
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "out of order")]
    fn misordered_keys_are_caught_in_debug_builds() {
        let mut out = Vec::new();
        object(&mut out, |o| {
            o.str("state", "x");
            o.str("body", "y");
        });
    }
}
