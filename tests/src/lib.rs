//! tandem's test support: an in-memory driver for `tandem-core` with a virtual clock, and
//! an HTTP response reader shared by the in-memory and end-to-end tests.

pub mod driver;
pub mod http;
pub mod netsim;
pub mod netsim_agent;
pub mod query_sim;
pub mod sim;
pub mod tools;

pub use http::Response;
pub use sim::Sim;
