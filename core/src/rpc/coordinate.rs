//! Serf's `get-coordinate`: a member's network coordinate, as this agent last heard it
//! (`cluster/rtt.rs`), in Serf's response shape.
//!
//! ```text
//! request  {"Node": string}
//! response {"Coord": {"Adjustment": f64, "Error": f64, "Height": f64, "Vec": [f64 × 8] | nil},
//!           "Ok": bool}
//! ```
//!
//! An unknown node (or one not heard from yet) gives `Ok: false` and a zeroed `Coord` whose
//! `Vec` is nil, as Serf's zero `coordinate.Coordinate`. Floats are msgpack float64 (`cb`).

use alloc::vec::Vec;

use super::msgpack::{DecodeError, Reader};
use super::wire;
use crate::cluster::Coordinate;
use crate::{Agent, ConnId};

/// Writes a float64 as Go's codec does (`cb` and 8 bytes, big-endian).
fn float64(out: &mut Vec<u8>, v: f64) {
    let _ = rmp::encode::write_f64(out, v);
}

/// The `get-coordinate` response body.
pub(crate) fn coordinate_response(out: &mut Vec<u8>, coord: Option<&Coordinate>) {
    wire::map(out, 2);
    wire::str(out, "Coord");
    wire::map(out, 4);
    let zero = [0.0; 3];
    let [adjustment, error, height] = coord.map_or(zero, |c| [c.adjustment, c.error, c.height]);
    for (k, v) in [
        ("Adjustment", adjustment),
        ("Error", error),
        ("Height", height),
    ] {
        wire::str(out, k);
        float64(out, v);
    }
    wire::str(out, "Vec");
    match coord {
        Some(c) => {
            wire::array(out, c.vec.len());
            for v in c.vec {
                float64(out, v);
            }
        }
        None => wire::nil(out),
    }
    wire::str(out, "Ok");
    wire::bool(out, coord.is_some());
}

impl Agent {
    pub(crate) fn rpc_get_coordinate(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
    ) -> Result<bool, DecodeError> {
        let mut node = "";
        r.fields(&["Node"], |k, r| {
            if k == "Node" {
                node = r.str()?;
                return Ok(true);
            }
            Ok(false)
        })?;
        let coord = self.cluster.coordinate_of(node);
        self.rpc_reply(
            conn,
            seq,
            "",
            Some(&|tx: &mut Vec<u8>| coordinate_response(tx, coord.as_ref())),
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_node_gets_serfs_zero_coordinate() {
        let mut out = Vec::new();
        coordinate_response(&mut out, None);
        let mut want = Vec::new();
        want.extend_from_slice(b"\x82\xa5Coord\x84");
        for k in ["Adjustment", "Error", "Height"] {
            want.push(0xa0 | k.len() as u8);
            want.extend_from_slice(k.as_bytes());
            want.extend_from_slice(&[0xcb, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        want.extend_from_slice(b"\xa3Vec\xc0\xa2Ok\xc2");
        assert_eq!(out, want);
    }

    #[test]
    fn a_known_node_gets_eight_float64s_and_ok() {
        let mut c = Coordinate::new(&crate::cluster::VivaldiConfig::default());
        c.vec[7] = 0.5;
        let mut out = Vec::new();
        coordinate_response(&mut out, Some(&c));
        let vec_at = out.windows(4).position(|w| w == b"\xa3Vec").unwrap() + 4;
        assert_eq!(out[vec_at], 0x98);
        assert_eq!(&out[vec_at + 1 + 7 * 9..vec_at + 1 + 8 * 9], &{
            let mut b = [0xcb; 9];
            b[1..].copy_from_slice(&0.5f64.to_be_bytes());
            b
        });
        assert_eq!(&out[out.len() - 4..], b"\xa2Ok\xc3");
    }
}
