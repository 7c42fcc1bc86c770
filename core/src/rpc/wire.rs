//! RPC wire details: the header, the exact error strings (spec §6), and encoders that write
//! as Go's codec does — struct keys sorted, strings as str, `Addr` and `Payload` as bin, the
//! smallest unsigned integer forms.

use alloc::vec::Vec;
use core::net::IpAddr;

use super::msgpack::{DecodeError, Reader};

/// Error strings of the RPC, verbatim.
pub(crate) mod msg {
    pub(crate) const HANDSHAKE_REQUIRED: &str = "Handshake required";
    pub(crate) const HANDSHAKE_DONE: &str = "Handshake already performed";
    pub(crate) const UNSUPPORTED_VERSION: &str = "Unsupported RPC version";
    pub(crate) const UNSUPPORTED_COMMAND: &str = "Unsupported command";
    pub(crate) const MONITOR_EXISTS: &str = "Monitor already exists";
    pub(crate) const UNKNOWN_LOG_LEVEL: &str = "Unknown log level: ";
    pub(crate) const AUTH_REQUIRED: &str = "Authentication required";
    pub(crate) const INVALID_AUTH: &str = "Invalid authentication token";
    pub(crate) const INVALID_FILTER: &str = "Invalid event filter";
    pub(crate) const STREAM_EXISTS: &str = "Stream with given sequence exists";
    pub(crate) const WAN_NEEDS_SERVER: &str = "Must be a server to join WAN cluster";
    pub(crate) const INTERNAL_QUERY: &str = "Queries cannot contain the '_serf_' prefix";
}

/// Decodes a request header: `Command`, `Seq` (and Consul's `Token`, ignored), as a map or
/// positionally as an array; nil is the zero header.
pub(crate) fn decode_header(msg: &[u8]) -> Result<(&str, u64), DecodeError> {
    let mut r = Reader::new(msg);
    let mut command = "";
    let mut seq = 0;
    r.fields(&["Command", "Seq", "Token"], |k, r| {
        match k {
            "Command" => command = r.str()?,
            "Seq" => seq = r.uint()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !r.done() {
        return Err(DecodeError);
    }
    Ok((command, seq))
}

// rmp's encoders cannot fail on a Vec; the results carry `Infallible`.

pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(out, s);
}

pub(crate) fn bin(out: &mut Vec<u8>, b: &[u8]) {
    let _ = rmp::encode::write_bin(out, b);
}

pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
    let _ = rmp::encode::write_uint(out, v);
}

pub(crate) fn nil(out: &mut Vec<u8>) {
    let _ = rmp::encode::write_nil(out);
}

pub(crate) fn bool(out: &mut Vec<u8>, v: bool) {
    let _ = rmp::encode::write_bool(out, v);
}

pub(crate) fn map(out: &mut Vec<u8>, len: usize) {
    let _ = rmp::encode::write_map_len(out, len as u32);
}

pub(crate) fn array(out: &mut Vec<u8>, len: usize) {
    let _ = rmp::encode::write_array_len(out, len as u32);
}

/// `{"Error": error, "Seq": seq}`.
pub(crate) fn header(out: &mut Vec<u8>, seq: u64, error: &str) {
    map(out, 2);
    str(out, "Error");
    str(out, error);
    str(out, "Seq");
    uint(out, seq);
}

/// A member as Serf and Consul send it (spec §2, §5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member<'a> {
    pub(crate) name: &'a str,
    pub(crate) addr: IpAddr,
    pub(crate) port: u16,
    pub(crate) tags: &'a [(alloc::string::String, alloc::string::String)],
    pub(crate) status: &'a str,
    pub(crate) protocol: [u8; 3],
    pub(crate) delegate: [u8; 3],
}

pub(crate) fn member(out: &mut Vec<u8>, m: &Member<'_>) {
    map(out, 11);
    str(out, "Addr");
    match m.addr {
        IpAddr::V4(a) => bin(out, &a.octets()),
        IpAddr::V6(a) => bin(out, &a.octets()),
    }
    let [dmin, dmax, dcur] = m.delegate;
    let [pmin, pmax, pcur] = m.protocol;
    str(out, "DelegateCur");
    uint(out, dcur.into());
    str(out, "DelegateMax");
    uint(out, dmax.into());
    str(out, "DelegateMin");
    uint(out, dmin.into());
    str(out, "Name");
    str(out, m.name);
    str(out, "Port");
    uint(out, m.port.into());
    str(out, "ProtocolCur");
    uint(out, pcur.into());
    str(out, "ProtocolMax");
    uint(out, pmax.into());
    str(out, "ProtocolMin");
    uint(out, pmin.into());
    str(out, "Status");
    str(out, m.status);
    str(out, "Tags");
    map(out, m.tags.len());
    for (k, v) in m.tags {
        str(out, k);
        str(out, v);
    }
}

/// `{"Members": [...]}`.
pub(crate) fn members(out: &mut Vec<u8>, ms: &[Member<'_>]) {
    map(out, 1);
    str(out, "Members");
    array(out, ms.len());
    for m in ms {
        member(out, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn header_bytes_match_serf() {
        let mut out = Vec::new();
        header(&mut out, 0, "");
        assert_eq!(out, hex("82a54572726f72a0a353657100"));
        out.clear();
        header(
            &mut out,
            7,
            msg::UNSUPPORTED_VERSION.replace("RPC", "IPC").as_str(),
        );
        assert_eq!(
            out,
            hex("82a54572726f72b7556e737570706f72746564204950432076657273696f6ea353657107")
        );
    }

    #[test]
    fn member_bytes_match_the_serf_transcript() {
        let mut out = Vec::new();
        let tags: [(String, String); 0] = [];
        members(
            &mut out,
            &[Member {
                name: "a",
                addr: IpAddr::from([127, 0, 0, 1]),
                port: 7946,
                tags: &tags,
                status: "alive",
                protocol: [1, 5, 2],
                delegate: [2, 5, 5],
            }],
        );
        let want = "81a74d656d62657273918ba441646472c4047f000001ab44656c656761746543757205\
            ab44656c65676174654d617805ab44656c65676174654d696e02a44e616d65a161a4506f7274\
            cd1f0aab50726f746f636f6c43757202ab50726f746f636f6c4d617805ab50726f746f636f6c\
            4d696e01a6537461747573a5616c697665a45461677380";
        assert_eq!(out, hex(want));
    }

    #[test]
    fn headers_decode_as_go_decodes_them() {
        let map = hex("82a7436f6d6d616e64a968616e647368616b65a353657100");
        assert_eq!(decode_header(&map), Ok(("handshake", 0)));
        // ["handshake", 5]
        let arr = hex("92a968616e647368616b6505");
        assert_eq!(decode_header(&arr), Ok(("handshake", 5)));
        assert_eq!(decode_header(&[0xc0]), Ok(("", 0)));
        // map16 header, unknown key skipped
        let m16 = hex("de0002a54578747261920102a353657103");
        assert_eq!(decode_header(&m16), Ok(("", 3)));
        // a fixint is not a header
        assert_eq!(decode_header(&[0x47]), Err(DecodeError));
        // Seq as a string
        assert_eq!(decode_header(&hex("81a3536571a131")), Err(DecodeError));
    }
}
