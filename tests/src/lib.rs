//! tandem's test support: an in-memory driver for `tandem-core` with a virtual clock, and
//! an HTTP response reader shared by the in-memory and end-to-end tests.

pub mod coord_sim;
pub mod driver;
pub mod http;
pub mod jobs_sim;
pub mod netsim;
pub mod netsim_agent;
pub mod query_sim;
pub mod sim;
pub mod tools;

pub use http::Response;
pub use sim::Sim;

/// An agent-RPC request header (`{Command, Seq}`), as msgpack.
pub fn rpc_header(cmd: &str, seq: u64) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = rmp::encode::write_map_len(&mut v, 2);
    let _ = rmp::encode::write_str(&mut v, "Command");
    let _ = rmp::encode::write_str(&mut v, cmd);
    let _ = rmp::encode::write_str(&mut v, "Seq");
    let _ = rmp::encode::write_uint(&mut v, seq);
    v
}
