//! `tandem rtt`: the estimated round trip between two nodes from their network coordinates,
//! as `serf rtt` computes and prints it (`cmd/serf/command/rtt.go`): `get-coordinate` for
//! each node (with one node, `stats` first names the agent's own), then the distance.

use rmpv::Value;

use super::rpc::{Reply, RpcClient, body, field};
use super::{Command, Invocation, fail, out};
use tandem_core::cluster::{Coordinate, DIMENSIONS, VivaldiConfig};

pub(super) const RTT: Command = Command {
    name: "rtt",
    synopsis: "Estimates network round trip time between nodes",
    usage: "\
Usage: tandem rtt [options] node1 [node2]

  Estimates the round trip time between two nodes using the cluster's network
  coordinates (Vivaldi, as Serf computes them).

  At least one node name is required. If the second node name isn't given, it
  is set to the agent's node name. Note that these are node names as known to
  the cluster as \"tandem members\" would show, not IP addresses.",
    flags: &[],
    rpc: true,
    flags_after_first_arg: false,
    run: rtt,
};

fn rtt(inv: &Invocation) -> i32 {
    let mut client = match RpcClient::connect(&inv.rpc_addr(), inv.rpc_auth().as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&format!("Error connecting to tandem agent: {e}")),
    };
    let mut nodes = inv.args.clone();
    if nodes.len() == 1 {
        let stats = match client.call("stats", None, Reply::Body) {
            Ok(body) => body.unwrap_or(Value::Nil),
            Err(e) => return fail(&format!("Error querying agent: {e}")),
        };
        let name = field(&stats, "agent")
            .and_then(|a| field(a, "name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        nodes.push(name.to_string());
    } else if nodes.len() != 2 {
        return fail(&format!(
            "One or two node names must be specified\n\n{}",
            RTT.help()
        ));
    }
    let mut coords = Vec::new();
    for node in &nodes {
        let request = body([("Node", Value::from(node.as_str()))]);
        let reply = match client.call("get-coordinate", Some(request), Reply::Body) {
            Ok(body) => body.unwrap_or(Value::Nil),
            Err(e) => return fail(&format!("Error getting coordinates: {e}")),
        };
        match decode(&reply) {
            Ok(Some(c)) => coords.push(c),
            Ok(None) => return fail(&format!("Could not find a coordinate for node {node:?}")),
            Err(e) => return fail(&format!("Error getting coordinates: {e}")),
        }
    }
    let (a, b) = (&coords[0], &coords[1]);
    let ms = a.distance_to(b).as_secs_f64() * 1000.0;
    out(&format!(
        "Estimated {} <-> {} rtt: {ms:.3} ms",
        nodes[0], nodes[1]
    ));
    0
}

/// A `get-coordinate` response body: `None` when `Ok` is false.
fn decode(reply: &Value) -> Result<Option<Coordinate>, String> {
    if !field(reply, "Ok").and_then(Value::as_bool).unwrap_or(false) {
        return Ok(None);
    }
    let coord = field(reply, "Coord").ok_or("response without Coord")?;
    let num = |k: &str| {
        field(coord, k)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("Coord.{k} is not a number"))
    };
    let mut c = Coordinate::new(&VivaldiConfig::default());
    c.adjustment = num("Adjustment")?;
    c.error = num("Error")?;
    c.height = num("Height")?;
    let vec = field(coord, "Vec")
        .and_then(Value::as_array)
        .ok_or("Coord.Vec is not an array")?;
    if vec.len() != DIMENSIONS {
        // Serf's Go client panics on a dimension mismatch; say so instead.
        return Err(format!(
            "coordinate dimensionality does not match: {} != {DIMENSIONS}",
            vec.len()
        ));
    }
    for (slot, v) in c.vec.iter_mut().zip(vec) {
        *slot = v.as_f64().ok_or("Coord.Vec holds a non-number")?;
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(vec: Value, ok: bool) -> Value {
        let coord = body([
            ("Adjustment", Value::F64(0.001)),
            ("Error", Value::F64(0.2)),
            ("Height", Value::F64(0.0005)),
            ("Vec", vec),
        ]);
        body([("Coord", coord), ("Ok", Value::Boolean(ok))])
    }

    #[test]
    fn a_reply_decodes_into_the_coordinate_it_carries() {
        let vec = Value::Array((0..8).map(|i| Value::F64(f64::from(i) / 1000.0)).collect());
        let c = decode(&reply(vec, true)).unwrap().unwrap();
        assert_eq!((c.adjustment, c.error, c.height), (0.001, 0.2, 0.0005));
        assert_eq!(c.vec[7], 0.007);
        assert_eq!(decode(&reply(Value::Nil, false)), Ok(None));
        let short = Value::Array(vec![Value::F64(0.0); 3]);
        assert!(decode(&reply(short, true)).unwrap_err().contains("3 != 8"));
    }
}
