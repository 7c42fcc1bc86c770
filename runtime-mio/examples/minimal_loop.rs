//! The least an embedder writes: tandem-core in its own loop with std sockets and poll(2),
//! one thread, no mio. Serves the HTTP API on 127.0.0.1 and prints the port:
//! `cargo run -p tandem-mio --example minimal_loop`.
//!
//! The call contract is all there is: after every input, drain `poll_output()`, then wait no
//! longer than `poll_timeout()`. poll(2) is level-triggered, so interest is recomputed each
//! turn (`wants_read`, `tx_pending`) and `ResumeRead` needs nothing. The LAN gossip socket
//! is a UDP socket on 127.0.0.1 (a free port) that the agent advertises as its `lan_addr`,
//! so `members` lists the node where it really gossips. Left out: the RPC listener, the WAN
//! pool, host commands, signals, lingering after a close (`tandem-mio` has them).

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;

use tandem_core::{Agent, Config, ConnId, Instant, Listener, Output, Pool};

fn main() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("tandem: HTTP API listening on {}", listener.local_addr()?);
    serve(listener)
}

/// One accepted socket.
struct Conn {
    stream: TcpStream,
    /// The peer sent EOF: poll no more for input.
    eof: bool,
    /// The agent said `Close`: flush, then shut down and release.
    closing: bool,
}

/// The core's monotonic clock: microseconds since the loop started.
struct Clock(std::time::Instant);

impl Clock {
    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

/// Serves the HTTP API on `listener`, and LAN gossip on a UDP socket of its own, until an
/// I/O error on the listener or in poll(2).
pub fn serve(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let gossip = UdpSocket::bind("127.0.0.1:0")?;
    gossip.set_nonblocking(true)?;
    // The address the node advertises must be the one it gossips on.
    let config = Config {
        lan_addr: gossip.local_addr()?,
        ..Config::default()
    };
    let clock = Clock(std::time::Instant::now());
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(io::Error::other)?;
    let mut agent = Agent::from_seed(config, seed, clock.now());
    let mut conns: HashMap<ConnId, Conn> = HashMap::new();
    let mut datagram = vec![0u8; 65536];
    loop {
        // 1. What to wait for: the listener, the gossip socket, and each connection as the
        //    agent wants it.
        let ids: Vec<ConnId> = conns.keys().copied().collect();
        let mut fds = vec![
            pollfd(listener.as_raw_fd(), libc::POLLIN),
            pollfd(gossip.as_raw_fd(), libc::POLLIN),
        ];
        for (id, c) in ids.iter().map(|id| (*id, &conns[id])) {
            let mut events = 0;
            if !c.eof && !c.closing && agent.wants_read(id) {
                events |= libc::POLLIN;
            }
            if !agent.tx_pending(id).is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push(pollfd(c.stream.as_raw_fd(), events));
        }
        // 2. How long: until the agent's next deadline (rounded up to whole ms), or forever.
        let timeout_ms = agent.poll_timeout().map_or(-1, |at| {
            let micros = at.saturating_duration_since(clock.now()).as_micros();
            i32::try_from(micros.div_ceil(1000)).unwrap_or(i32::MAX)
        });
        let nfds = libc::nfds_t::try_from(fds.len()).map_err(io::Error::other)?;
        // SAFETY: `fds` is a live, initialized array of `nfds` pollfd structs that poll(2)
        // may write `revents` into; nothing else touches it during the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout_ms) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // 3. New connections.
        if fds[0].revents & libc::POLLIN != 0 {
            loop {
                let (stream, peer) = match listener.accept() {
                    Ok(accepted) => accepted,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                stream.set_nonblocking(true)?;
                // A refused connection is closed by dropping its socket.
                if let Ok(id) = agent.accept(Listener::Http, Some(peer), clock.now()) {
                    let (eof, closing) = (false, false);
                    conns.insert(
                        id,
                        Conn {
                            stream,
                            eof,
                            closing,
                        },
                    );
                }
                drain(&mut agent, &mut conns, &gossip, &clock);
            }
        }
        // 4. Gossip datagrams in.
        if fds[1].revents & libc::POLLIN != 0 {
            loop {
                match gossip.recv_from(&mut datagram) {
                    Ok((n, from)) => {
                        agent.handle_datagram(Pool::Lan, from, &datagram[..n], clock.now());
                        drain(&mut agent, &mut conns, &gossip, &clock);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // WouldBlock, or an ICMP error from an earlier send: poll again.
                    Err(_) => break,
                }
            }
        }
        // 5. Bytes in, bytes out.
        for (id, fd) in ids.iter().zip(&fds[2..]) {
            let Some(c) = conns.get_mut(id).filter(|_| fd.revents != 0) else {
                continue;
            };
            let hangup = fd.revents & (libc::POLLHUP | libc::POLLERR) != 0;
            if fd.revents & libc::POLLIN != 0 || hangup {
                let space = agent.rx_space(*id);
                let got = match space.is_empty() || c.eof {
                    true => Ok(None),
                    false => c.stream.read(space).map(Some),
                };
                match got {
                    // Dead, and nothing (more) to read: poll would report it forever.
                    Ok(None) if hangup => release(&mut agent, &mut conns, *id, &clock),
                    Ok(None) => {}
                    Ok(Some(0)) => {
                        c.eof = true;
                        agent.handle_eof(*id, clock.now());
                    }
                    Ok(Some(n)) => agent.rx_commit(*id, n, clock.now()),
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(_) => release(&mut agent, &mut conns, *id, &clock),
                }
            }
            if fd.revents & libc::POLLOUT != 0 {
                flush(&mut agent, &mut conns, *id, &clock);
            }
            drain(&mut agent, &mut conns, &gossip, &clock);
        }
        // 6. Timers (an early call is harmless).
        agent.handle_timeout(clock.now());
        drain(&mut agent, &mut conns, &gossip, &clock);
    }
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Acts on everything the agent queued: the call contract's "drain until `None`".
fn drain(agent: &mut Agent, conns: &mut HashMap<ConnId, Conn>, gossip: &UdpSocket, clock: &Clock) {
    while let Some(out) = agent.poll_output() {
        match out {
            Output::Transmit(id) => flush(agent, conns, id, clock),
            Output::Close(id) => match conns.get_mut(&id) {
                Some(c) => {
                    c.closing = true;
                    flush(agent, conns, id, clock);
                }
                None => agent.handle_reset(id, clock.now()),
            },
            Output::Log(record) => eprintln!("{}", record.line),
            // Level-triggered: the next turn asks for POLLIN again by itself.
            Output::ResumeRead(_) => {}
            // No host commands are registered and there is no RPC: no job, reload or leave.
            Output::Effect(_) => {}
            // Gossip: send every queued datagram. UDP may drop, and so may this loop when
            // the socket is full; SWIM retries (`tandem-mio` waits for writability).
            Output::Datagram => {
                while let Some((pool, to, bytes)) = agent.poll_datagram() {
                    if pool == Pool::Lan {
                        let _ = gossip.send_to(&bytes, to);
                    }
                }
            }
        }
    }
}

/// Writes the agent's transmit window in place until it is empty or the socket is full;
/// a closing connection is closed once its window is empty.
fn flush(agent: &mut Agent, conns: &mut HashMap<ConnId, Conn>, id: ConnId, clock: &Clock) {
    let Some(c) = conns.get_mut(&id) else { return };
    loop {
        let pending = agent.tx_pending(id);
        if pending.is_empty() {
            break;
        }
        match c.stream.write(pending) {
            Ok(n) if n > 0 => agent.tx_consume(id, n, clock.now()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            _ => return release(agent, conns, id, clock),
        }
    }
    if c.closing {
        let _ = c.stream.shutdown(Shutdown::Write);
        release(agent, conns, id, clock);
    }
}

/// Drops the socket and tells the agent the connection is gone.
fn release(agent: &mut Agent, conns: &mut HashMap<ConnId, Conn>, id: ConnId, clock: &Clock) {
    conns.remove(&id);
    agent.handle_reset(id, clock.now());
}
