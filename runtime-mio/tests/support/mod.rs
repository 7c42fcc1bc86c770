//! What the embedding tests share: the HTTP response reader of `tandem_tests`, and the
//! agent RPC's requests and msgpack maps (with `rmpv`, not the core's codec).

#![allow(dead_code)] // each test file uses its own part

pub use tandem_tests::http::{post_api, take_responses};

/// An RPC request: the header `{"Command": command, "Seq": seq}`, then the body if any.
pub fn rpc_request(command: &str, seq: u64, body: Option<rmpv::Value>) -> Vec<u8> {
    let header = rmpv::Value::Map(vec![
        ("Command".into(), command.into()),
        ("Seq".into(), seq.into()),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &header).unwrap();
    if let Some(body) = body {
        rmpv::encode::write_value(&mut out, &body).unwrap();
    }
    out
}

/// A msgpack map with string keys.
pub fn mp_map(entries: &[(&str, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Map(
        entries
            .iter()
            .map(|(k, v)| (rmpv::Value::from(*k), v.clone()))
            .collect(),
    )
}

/// The value under `key` of a msgpack map.
pub fn mp_get<'a>(map: &'a rmpv::Value, key: &str) -> &'a rmpv::Value {
    map.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key:?} in {map}"))
}
