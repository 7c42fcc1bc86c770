//! The name lookups a `join` asks for (`Effect::Resolve`), and what both runtimes' gossip
//! sockets treat as harmless.
//!
//! Lookups block (`getaddrinfo`), so each `Effect::Resolve` runs on a short-lived thread of
//! its own ([`spawn_lookup`]); the runtime hands the answer to `Agent::resolved` on its loop,
//! which never waits for DNS. How the answer gets back (a channel the executor awaits, or a
//! channel plus a waker) is the runtime's.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs as _};

/// Per name, its addresses or why it has none: what `Agent::resolved` takes.
pub type Lookups = Vec<(String, Result<Vec<SocketAddr>, String>)>;

/// Looks `names` up on a thread of their own and gives the answer to `deliver` there.
/// When no thread can be started, the answer is at once every name failing, with why.
pub fn spawn_lookup(
    names: Vec<String>,
    default_port: u16,
    deliver: impl FnOnce(Lookups) + Send + 'static,
) -> Result<(), Lookups> {
    let lookup = names.clone();
    std::thread::Builder::new()
        .name("tandem-resolve".into())
        .spawn(move || deliver(resolve_names(&lookup, default_port)))
        .map(drop)
        .map_err(|e| {
            let why = format!("cannot start a resolver thread: {e}");
            names.into_iter().map(|n| (n, Err(why.clone()))).collect()
        })
}

/// Per name, its addresses: `host:port` as given, or `host` with `default_port`.
pub fn resolve_names(names: &[String], default_port: u16) -> Lookups {
    names
        .iter()
        .map(|name| {
            let found = match split_port(name) {
                Some((host, port)) => (host, port).to_socket_addrs(),
                None => (name.as_str(), default_port).to_socket_addrs(),
            };
            let found = found.map(Iterator::collect).map_err(|e| e.to_string());
            (name.clone(), found)
        })
        .collect()
}

/// `host:port` (or `[host]:port`) split in two; `None` when there is no port.
fn split_port(name: &str) -> Option<(&str, u16)> {
    let (host, port) = name.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // A bare IPv6 address has more colons, and never reaches here (the core parses it).
    (!host.contains(':') || name.starts_with('[')).then_some((host, port))
}

/// Whether a gossip socket's receive error says nothing about the socket's health: a
/// signal, or the ICMP error of an earlier send (which Linux reports on some sockets).
pub fn is_harmless_recv_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn names_take_the_default_port_unless_they_have_one() {
        let got = resolve_names(&["localhost".into(), "localhost:7000".into()], 8301);
        let ports = |i: usize| -> Vec<u16> {
            got[i]
                .1
                .as_ref()
                .unwrap()
                .iter()
                .map(SocketAddr::port)
                .collect()
        };
        assert!(!ports(0).is_empty());
        assert!(ports(0).iter().all(|&p| p == 8301), "{got:?}");
        assert!(ports(1).iter().all(|&p| p == 7000), "{got:?}");
    }

    #[test]
    fn a_name_that_does_not_resolve_is_an_error_for_that_name() {
        let got = resolve_names(&["no-such-host.invalid".into()], 8301);
        assert_eq!(got[0].0, "no-such-host.invalid");
        assert!(got[0].1.is_err(), "{got:?}");
    }

    #[test]
    fn ports_split_off_host_names_and_bracketed_addresses() {
        assert_eq!(split_port("a.example:1"), Some(("a.example", 1)));
        assert_eq!(split_port("[::1]:2"), Some(("::1", 2)));
        assert_eq!(split_port("a.example"), None);
        assert_eq!(split_port("a.example:x"), None);
    }

    #[test]
    fn a_spawned_lookup_delivers_on_its_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        spawn_lookup(vec!["127.0.0.1:9".into()], 8301, move |found| {
            tx.send(found).unwrap();
        })
        .unwrap();
        let found = rx.recv().unwrap();
        assert_eq!(found[0].1, Ok(vec!["127.0.0.1:9".parse().unwrap()]));
    }
}
