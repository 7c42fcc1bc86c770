//! Port-unreachable reports for the gossip sockets.
//!
//! An unconnected UDP socket hears nothing of the ICMP "port unreachable" a closed port
//! answers with, so a join to a closed port could only end in `no response` after the join
//! timeout, where Serf (whose memberlist joins over TCP) says `connection refused` at once.
//! On Linux, `IP_RECVERR` / `IPV6_RECVERR` make the kernel queue each such error with the
//! destination the failed datagram was sent to; the next receive then fails with
//! `ECONNREFUSED`. [`enable`] sets the option on a gossip socket; [`drain`] pops the queue
//! and returns the destinations the kernel reported refused, for the runtime to hand to
//! `Agent::handle_unreachable`. The queue must be drained whenever a receive fails, or the
//! socket stays in error and a readiness loop would spin; and a send that fails with
//! `ECONNREFUSED` was refused for an earlier datagram, so it is sent again
//! ([`SEND_REFUSALS`]).
//!
//! Elsewhere both are no-ops and joins fall back to the join timeout.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;

/// A send that fails with `ECONNREFUSED` was not made: the socket reported an earlier
/// datagram's queued error instead (Linux checks the socket's error before sending). The
/// runtime drains the queue and sends the same datagram again, at most this many times in
/// one round of sends, so a flood of ICMP errors cannot hold the sender in a loop.
pub const SEND_REFUSALS: u32 = 16;

/// How many queued errors one [`drain`] pops at most (the rest wait for the next call).
const DRAIN_MAX: usize = 64;

/// Asks the kernel to report ICMP errors on `socket` (Linux; elsewhere nothing happens).
pub fn enable(socket: &UdpSocket) -> io::Result<()> {
    imp::enable(socket)
}

/// Pops `socket`'s queued errors and appends to `out` each destination the kernel reported
/// refused (`ECONNREFUSED`). Other errors are dropped. Never blocks.
pub fn drain(socket: &impl AsFd, out: &mut Vec<SocketAddr>) {
    imp::drain(socket.as_fd(), out)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::DRAIN_MAX;
    use std::io;
    use std::mem;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::{AsRawFd, BorrowedFd};

    pub(super) fn enable(socket: &UdpSocket) -> io::Result<()> {
        let (level, name) = match socket.local_addr()? {
            SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_RECVERR),
            SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVERR),
        };
        let on: libc::c_int = 1;
        // SAFETY: a plain setsockopt on a descriptor `socket` owns, with a pointer to a live
        // c_int and its exact size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&on as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn drain(socket: BorrowedFd<'_>, out: &mut Vec<SocketAddr>) {
        for _ in 0..DRAIN_MAX {
            match pop(socket) {
                Some(Some(addr)) => out.push(addr),
                Some(None) => {}
                None => return,
            }
        }
    }

    /// One queued error: `None` when the queue is empty, `Some(None)` for an error that is
    /// not a refusal, `Some(Some(addr))` for a refused destination.
    fn pop(socket: BorrowedFd<'_>) -> Option<Option<SocketAddr>> {
        // SAFETY: zeroed sockaddr_storage, msghdr and buffers are valid; recvmsg writes at
        // most the lengths given, all pointing into locals that outlive the call.
        unsafe {
            let mut name: libc::sockaddr_storage = mem::zeroed();
            let mut data = [0u8; 1];
            let mut iov = libc::iovec {
                iov_base: data.as_mut_ptr().cast(),
                iov_len: data.len(),
            };
            let mut control = [0u64; 64];
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = mem::size_of_val(&control);
            let flags = libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT;
            if libc::recvmsg(socket.as_raw_fd(), &mut msg, flags) < 0 {
                return None;
            }
            let mut refused = false;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let c = &*cmsg;
                let ours = (c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR)
                    || (c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR);
                if ours {
                    let err = libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>();
                    refused |= err.read_unaligned().ee_errno == libc::ECONNREFUSED as u32;
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            Some(if refused { to_addr(&name) } else { None })
        }
    }

    fn to_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
        // SAFETY: the family field says which sockaddr the storage holds; reads are
        // unaligned-safe copies out of a storage large enough for either.
        unsafe {
            let p = (name as *const libc::sockaddr_storage).cast::<u8>();
            match name.ss_family as libc::c_int {
                libc::AF_INET => {
                    let a = p.cast::<libc::sockaddr_in>().read_unaligned();
                    let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                    Some(SocketAddr::V4(SocketAddrV4::new(
                        ip,
                        u16::from_be(a.sin_port),
                    )))
                }
                libc::AF_INET6 => {
                    let a = p.cast::<libc::sockaddr_in6>().read_unaligned();
                    let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                    let port = u16::from_be(a.sin6_port);
                    let v6 = SocketAddrV6::new(ip, port, a.sin6_flowinfo, a.sin6_scope_id);
                    // A v4 peer reached through a dual-stack socket.
                    Some(match ip.to_ipv4_mapped() {
                        Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                        None => SocketAddr::V6(v6),
                    })
                }
                _ => None,
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::BorrowedFd;

    pub(super) fn enable(_socket: &UdpSocket) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn drain(_socket: BorrowedFd<'_>, _out: &mut Vec<SocketAddr>) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_datagram_to_a_closed_port_is_reported_refused_with_its_destination() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = closed.local_addr().unwrap();
        drop(closed);
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&socket).unwrap();
        socket.send_to(b"ping", dest).unwrap();
        // Loopback answers the ICMP error within the send; the receive reports it.
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        let err = socket.recv_from(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let mut out = Vec::new();
        drain(&socket, &mut out);
        assert_eq!(out, vec![dest]);
        // The queue is empty now: the socket is readable for data again, not in error.
        socket.set_nonblocking(true).unwrap();
        let err = socket.recv_from(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_send_after_a_refusal_is_not_made_and_goes_out_when_sent_again() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = closed.local_addr().unwrap();
        drop(closed);
        let live = UdpSocket::bind("127.0.0.1:0").unwrap();
        live.set_nonblocking(true).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&socket).unwrap();
        socket.send_to(b"ping", dest).unwrap();
        let to = live.local_addr().unwrap();
        let err = socket.send_to(b"x", to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let mut out = Vec::new();
        drain(&socket, &mut out);
        assert_eq!(out, vec![dest]);
        socket.send_to(b"x", to).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(live.recv_from(&mut buf).unwrap().0, 1);
        // The refused send was not made: exactly one datagram arrived.
        assert_eq!(
            live.recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn without_the_option_nothing_is_queued() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = closed.local_addr().unwrap();
        drop(closed);
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.send_to(b"ping", dest).unwrap();
        let mut out = Vec::new();
        drain(&socket, &mut out);
        assert!(out.is_empty());
    }
}
