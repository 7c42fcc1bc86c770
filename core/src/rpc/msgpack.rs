//! MessagePack for the agent RPC: a stackless, resumable value-length scanner with limits,
//! and a borrowing reader that decodes what Go's decoder accepts.
//!
//! Why our own scanner: rmp's `MessageLen` panics on ext markers and needs std, and
//! `rmp_serde::from_slice` ignores trailing bytes, so neither can frame a stream. The scanner
//! counts the values still owed instead of recursing, so nesting depth costs nothing, and it
//! checks every declared string/bin length and container count against the limits before
//! anything is allocated: a 6-byte message declaring a 64 MiB string is refused, not
//! buffered. It can be resumed where it stopped, so a frame dribbled byte by byte is scanned
//! once in total.
//!
//! Output is written with rmp's encoders, which pick the smallest form as Go does.

use rmp::Marker;

/// Bounds on one RPC message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MsgLimits {
    /// Bytes in one message (header or body).
    pub(crate) max_frame: usize,
    /// Bytes of one string or bin value.
    pub(crate) max_str: usize,
    /// Elements of one array or entries of one map.
    pub(crate) max_container: usize,
    /// Values in one message, all levels together.
    pub(crate) max_values: usize,
}

/// Why a message cannot be framed. Both close the connection without a reply, as Serf does
/// for undecodable input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// `0xc1`, the one byte msgpack never uses.
    Malformed,
    /// A declared length or count beyond the limits.
    TooLarge,
}

/// The scanner's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// One whole value occupies this many bytes from the start of the buffer.
    Complete(usize),
    /// More bytes are needed.
    Incomplete,
    Invalid(ScanError),
}

/// Resumable scanning state for the value at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scanner {
    pos: usize,
    /// Values still owed (1 for the top-level value at the start).
    owed: u64,
    /// Values seen so far.
    values: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            pos: 0,
            owed: 1,
            values: 0,
        }
    }
}

/// How a marker is followed: `fixed` bytes of length field or payload, then `len_bytes` of
/// big-endian length that says how many payload bytes (`Payload`) or child values
/// (`Children`, times `per` for maps) follow.
enum Shape {
    /// Just `n` more bytes.
    Fixed(usize),
    /// A big-endian length of this many bytes, then that many payload bytes (plus `extra`,
    /// the ext type byte).
    Payload { len_bytes: usize, extra: usize },
    /// `n` children right away (fix containers).
    Children(u64),
    /// A big-endian count of this many bytes, then count × `per` child values.
    Counted { len_bytes: usize, per: u64 },
}

fn shape(m: Marker) -> Option<Shape> {
    use Marker::*;
    Some(match m {
        FixPos(_) | FixNeg(_) | Null | True | False => Shape::Fixed(0),
        U8 | I8 => Shape::Fixed(1),
        U16 | I16 => Shape::Fixed(2),
        U32 | I32 | F32 => Shape::Fixed(4),
        U64 | I64 | F64 => Shape::Fixed(8),
        FixStr(n) => Shape::Fixed(usize::from(n)),
        Str8 | Bin8 => Shape::Payload {
            len_bytes: 1,
            extra: 0,
        },
        Str16 | Bin16 => Shape::Payload {
            len_bytes: 2,
            extra: 0,
        },
        Str32 | Bin32 => Shape::Payload {
            len_bytes: 4,
            extra: 0,
        },
        FixArray(n) => Shape::Children(u64::from(n)),
        FixMap(n) => Shape::Children(2 * u64::from(n)),
        Array16 => Shape::Counted {
            len_bytes: 2,
            per: 1,
        },
        Array32 => Shape::Counted {
            len_bytes: 4,
            per: 1,
        },
        Map16 => Shape::Counted {
            len_bytes: 2,
            per: 2,
        },
        Map32 => Shape::Counted {
            len_bytes: 4,
            per: 2,
        },
        FixExt1 => Shape::Fixed(2),
        FixExt2 => Shape::Fixed(3),
        FixExt4 => Shape::Fixed(5),
        FixExt8 => Shape::Fixed(9),
        FixExt16 => Shape::Fixed(17),
        Ext8 => Shape::Payload {
            len_bytes: 1,
            extra: 1,
        },
        Ext16 => Shape::Payload {
            len_bytes: 2,
            extra: 1,
        },
        Ext32 => Shape::Payload {
            len_bytes: 4,
            extra: 1,
        },
        Reserved => return None,
    })
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

impl Scanner {
    /// Continues scanning `buf` (which must start with the same bytes as the last call).
    pub(crate) fn scan(&mut self, buf: &[u8], limits: &MsgLimits) -> Scan {
        while self.owed > 0 {
            let Some(&b) = buf.get(self.pos) else {
                return Scan::Incomplete;
            };
            let Some(shape) = shape(Marker::from_u8(b)) else {
                return Scan::Invalid(ScanError::Malformed);
            };
            let (advance, children) = match shape {
                Shape::Fixed(n) => (1 + n, 0),
                Shape::Children(n) => (1, n),
                Shape::Payload { len_bytes, extra } => {
                    let Some(len) = buf.get(self.pos + 1..self.pos + 1 + len_bytes) else {
                        return Scan::Incomplete;
                    };
                    let len = be(len);
                    if len > limits.max_str as u64 {
                        return Scan::Invalid(ScanError::TooLarge);
                    }
                    (1 + len_bytes + extra + len as usize, 0)
                }
                Shape::Counted { len_bytes, per } => {
                    let Some(len) = buf.get(self.pos + 1..self.pos + 1 + len_bytes) else {
                        return Scan::Incomplete;
                    };
                    let count = be(len);
                    if count > limits.max_container as u64 {
                        return Scan::Invalid(ScanError::TooLarge);
                    }
                    (1 + len_bytes, count * per)
                }
            };
            if let Shape::Children(n) = shape {
                let entries = if matches!(Marker::from_u8(b), Marker::FixMap(_)) {
                    n / 2
                } else {
                    n
                };
                if entries > limits.max_container as u64 {
                    return Scan::Invalid(ScanError::TooLarge);
                }
            }
            let end = self.pos + advance;
            if end > limits.max_frame {
                return Scan::Invalid(ScanError::TooLarge);
            }
            if end > buf.len() {
                // Wait for the whole scalar; the state stays at its marker.
                return Scan::Incomplete;
            }
            self.values += 1;
            if self.values + children > limits.max_values as u64 {
                return Scan::Invalid(ScanError::TooLarge);
            }
            self.pos = end;
            self.owed = self.owed - 1 + children;
        }
        Scan::Complete(self.pos)
    }
}

/// Scans one whole value from the start of `buf`.
pub(crate) fn value_len(buf: &[u8], limits: &MsgLimits) -> Scan {
    Scanner::default().scan(buf, limits)
}

/// A decode failure: the connection is closed without a reply (Go's decoder does the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecodeError;

type R<T> = Result<T, DecodeError>;

/// Reads values from one scanned message, borrowing strings from it.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn peek(&self) -> R<Marker> {
        self.buf
            .get(self.pos)
            .map(|&b| Marker::from_u8(b))
            .ok_or(DecodeError)
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos + n).ok_or(DecodeError)?;
        self.pos += n;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> R<u64> {
        self.take(n).map(be)
    }

    /// A map length; nil reads as an empty map, as Go zeroes a struct for nil.
    pub(crate) fn map_len(&mut self) -> R<u32> {
        let m = self.peek()?;
        self.pos += 1;
        Ok(match m {
            Marker::Null => 0,
            Marker::FixMap(n) => u32::from(n),
            Marker::Map16 => self.be(2)? as u32,
            Marker::Map32 => self.be(4)? as u32,
            _ => return Err(DecodeError),
        })
    }

    /// An array length; nil reads as empty.
    pub(crate) fn array_len(&mut self) -> R<u32> {
        let m = self.peek()?;
        self.pos += 1;
        Ok(match m {
            Marker::Null => 0,
            Marker::FixArray(n) => u32::from(n),
            Marker::Array16 => self.be(2)? as u32,
            Marker::Array32 => self.be(4)? as u32,
            _ => return Err(DecodeError),
        })
    }

    /// True if nil is next (Go decodes it to a nil slice, which some commands tell apart).
    pub(crate) fn at_nil(&self) -> bool {
        matches!(self.peek(), Ok(Marker::Null))
    }

    /// True if a map is next (as opposed to an array, for structs Go takes either way).
    pub(crate) fn at_map(&self) -> bool {
        matches!(
            self.peek(),
            Ok(Marker::FixMap(_) | Marker::Map16 | Marker::Map32 | Marker::Null)
        )
    }

    /// A string: str family only (Go refuses bin where a string is expected); nil is "".
    pub(crate) fn str(&mut self) -> R<&'a str> {
        let m = self.peek()?;
        self.pos += 1;
        let len = match m {
            Marker::Null => return Ok(""),
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 => self.be(1)? as usize,
            Marker::Str16 => self.be(2)? as usize,
            Marker::Str32 => self.be(4)? as usize,
            _ => return Err(DecodeError),
        };
        core::str::from_utf8(self.take(len)?).map_err(|_| DecodeError)
    }

    /// Bytes: bin or str (Go takes str for `[]byte`); nil is empty.
    pub(crate) fn bytes(&mut self) -> R<&'a [u8]> {
        let m = self.peek()?;
        self.pos += 1;
        let len = match m {
            Marker::Null => return Ok(&[]),
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => self.be(1)? as usize,
            Marker::Str16 | Marker::Bin16 => self.be(2)? as usize,
            Marker::Str32 | Marker::Bin32 => self.be(4)? as usize,
            _ => return Err(DecodeError),
        };
        self.take(len)
    }

    /// Any integer encoding; nil is 0.
    pub(crate) fn int(&mut self) -> R<i128> {
        let m = self.peek()?;
        self.pos += 1;
        Ok(match m {
            Marker::Null => 0,
            Marker::FixPos(n) => i128::from(n),
            Marker::FixNeg(n) => i128::from(n),
            Marker::U8 => i128::from(self.be(1)?),
            Marker::U16 => i128::from(self.be(2)?),
            Marker::U32 => i128::from(self.be(4)?),
            Marker::U64 => i128::from(self.be(8)?),
            Marker::I8 => i128::from(self.be(1)? as u8 as i8),
            Marker::I16 => i128::from(self.be(2)? as u16 as i16),
            Marker::I32 => i128::from(self.be(4)? as u32 as i32),
            Marker::I64 => i128::from(self.be(8)? as i64),
            _ => return Err(DecodeError),
        })
    }

    /// An unsigned integer (`Seq`, `Stop`): negative values are an error, as in Go.
    pub(crate) fn uint(&mut self) -> R<u64> {
        u64::try_from(self.int()?).map_err(|_| DecodeError)
    }

    /// A Go `int32`: overflow is an error.
    pub(crate) fn int32(&mut self) -> R<i32> {
        i32::try_from(self.int()?).map_err(|_| DecodeError)
    }

    /// A bool: `true`/`false`, or fixint 0/1 as Go accepts; nil is false.
    pub(crate) fn bool(&mut self) -> R<bool> {
        let m = self.peek()?;
        self.pos += 1;
        match m {
            Marker::True | Marker::FixPos(1) => Ok(true),
            Marker::False | Marker::FixPos(0) | Marker::Null => Ok(false),
            _ => Err(DecodeError),
        }
    }

    /// Skips one whole value of any kind.
    pub(crate) fn skip(&mut self) -> R<()> {
        let rest = self.buf.get(self.pos..).ok_or(DecodeError)?;
        let limits = MsgLimits {
            max_frame: rest.len(),
            max_str: rest.len(),
            max_container: rest.len(),
            max_values: rest.len().saturating_add(1),
        };
        match value_len(rest, &limits) {
            Scan::Complete(n) => {
                self.pos += n;
                Ok(())
            }
            _ => Err(DecodeError),
        }
    }

    /// Reads a struct encoded as a map (keys matched exactly) or as an array (fields in
    /// declaration order, as Go decodes it). `field` is called with the field's name, or for
    /// arrays with `fields[i]`; unknown fields must be skipped by `field` returning false.
    pub(crate) fn fields(
        &mut self,
        names: &[&str],
        mut field: impl FnMut(&str, &mut Self) -> R<bool>,
    ) -> R<()> {
        if self.at_map() {
            let n = self.map_len()?;
            for _ in 0..n {
                let key = self.str()?;
                if !field(key, self)? {
                    self.skip()?;
                }
            }
        } else {
            let n = self.array_len()? as usize;
            for i in 0..n {
                match names.get(i) {
                    Some(name) => {
                        if !field(name, self)? {
                            self.skip()?;
                        }
                    }
                    None => self.skip()?,
                }
            }
        }
        Ok(())
    }

    /// Whether every byte was read.
    pub(crate) fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const LIMITS: MsgLimits = MsgLimits {
        max_frame: 1 << 20,
        max_str: 1 << 16,
        max_container: 1024,
        max_values: 4096,
    };

    #[test]
    fn scans_the_spec_transcripts() {
        let header = [
            0x82, 0xa7, b'C', b'o', b'm', b'm', b'a', b'n', b'd', 0xa9, b'h', b'a', b'n', b'd',
            b's', b'h', b'a', b'k', b'e', 0xa3, b'S', b'e', b'q', 0x00,
        ];
        let mut two = Vec::from(&header[..]);
        two.extend_from_slice(&[0x81, 0xa7]);
        assert_eq!(value_len(&two, &LIMITS), Scan::Complete(header.len()));
        for cut in 0..header.len() {
            assert_eq!(
                value_len(&header[..cut], &LIMITS),
                Scan::Incomplete,
                "{cut}"
            );
        }
    }

    #[test]
    fn resumes_where_it_stopped() {
        let msg = [0x92, 0xcd, 0x01, 0x02, 0xc4, 0x02, 9, 9];
        let mut s = Scanner::default();
        for end in 0..msg.len() {
            assert_eq!(s.scan(&msg[..end], &LIMITS), Scan::Incomplete);
        }
        assert_eq!(s.scan(&msg, &LIMITS), Scan::Complete(msg.len()));
    }

    #[test]
    fn declared_lengths_are_checked_before_waiting_for_them() {
        // fixmap(1) + str32 declaring 64 MiB: refused from 6 bytes.
        let attack = [0x81, 0xdb, 0x04, 0x00, 0x00, 0x00];
        assert_eq!(
            value_len(&attack, &LIMITS),
            Scan::Invalid(ScanError::TooLarge)
        );
        let big_array = [0xdd, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            value_len(&big_array, &LIMITS),
            Scan::Invalid(ScanError::TooLarge)
        );
        assert_eq!(
            value_len(&[0xc1], &LIMITS),
            Scan::Invalid(ScanError::Malformed)
        );
        // Deep nesting costs no stack.
        let deep = [0x91; 100_000];
        let limits = MsgLimits {
            max_values: 1 << 20,
            ..LIMITS
        };
        assert_eq!(value_len(&deep, &limits), Scan::Incomplete);
    }

    #[test]
    fn ext_values_are_framed_not_panicked_on() {
        let fixext = [0xd4, 0x01, 0x02];
        assert_eq!(value_len(&fixext, &LIMITS), Scan::Complete(3));
        let ext8 = [0xc7, 0x02, 0x05, 0xaa, 0xbb];
        assert_eq!(value_len(&ext8, &LIMITS), Scan::Complete(5));
    }

    #[test]
    fn reader_accepts_what_go_accepts() {
        // {"Seq": uint64 1} with a cf marker, and a str8 key.
        let msg = [
            0x81, 0xd9, 0x03, b'S', b'e', b'q', 0xcf, 0, 0, 0, 0, 0, 0, 0, 1,
        ];
        let mut r = Reader::new(&msg);
        let mut seq = 0;
        r.fields(&["Seq"], |k, r| {
            if k == "Seq" {
                seq = r.uint()?;
                return Ok(true);
            }
            Ok(false)
        })
        .unwrap();
        assert_eq!(seq, 1);
        assert!(r.done());
        assert_eq!(Reader::new(&[0xff]).uint(), Err(DecodeError));
        assert_eq!(Reader::new(&[0x02]).bool(), Err(DecodeError));
        assert_eq!(Reader::new(&[0x01]).bool(), Ok(true));
        assert_eq!(Reader::new(&[0xc4, 0x01, b'a']).str(), Err(DecodeError));
        assert_eq!(Reader::new(&[0xa1, b'a']).bytes(), Ok(&b"a"[..]));
        assert_eq!(
            Reader::new(&[0xd3, 0, 0, 1, 0, 0, 0, 0, 0]).int32(),
            Err(DecodeError)
        );
    }
}
