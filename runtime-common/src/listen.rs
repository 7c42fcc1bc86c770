//! Binding the TCP listeners of the HTTP API and the agent RPC.
//!
//! std (and mio, and async-io through std) listen with a backlog of 128. A burst of more
//! connections than that arriving before the agent accepts them (a client opening many at
//! once, a churn of short connections on a busy machine) overflows the accept queue: the
//! kernel drops the SYNs and each client waits a second or more for its retransmit, so the
//! agent's rate falls off a cliff. Serf's listeners (Go) ask for the system's maximum; so do
//! ours.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd as _;

/// Binds `addr` and listens with the largest backlog the system allows
/// (`net.core.somaxconn` caps `SOMAXCONN`'s request).
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    // A second listen() on a listening socket only changes its backlog (Linux, BSDs).
    // SAFETY: the descriptor is open and owned by `listener`, which outlives the call.
    let r = unsafe { libc::listen(listener.as_raw_fd(), libc::SOMAXCONN) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_burst_beyond_stds_backlog_of_128_is_queued_not_dropped() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // 300 connections need a backlog above 300; with std's 128 the SYNs beyond the
        // queue are dropped and their connects time out.
        assert!(
            somaxconn >= 512,
            "net.core.somaxconn is {somaxconn}: this test needs at least 512"
        );
        let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for i in 0..300 {
            // Nobody accepts: each connection waits in the accept queue.
            let c = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
            held.push(c.unwrap_or_else(|e| panic!("connection {i} not queued: {e}")));
        }
    }
}
