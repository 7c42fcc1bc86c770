//! The HTTP face of the agent: framing requests off a connection's receive buffer, answering
//! them in order, and parking the ones that wait (`pull_results`, `exec`).
//!
//! All state changes of an HTTP connection happen in [`Agent::process_conn`]: it answers a
//! parked request when it can, otherwise frames and dispatches the next buffered one, and
//! decides about closing and resuming reads. Requests on one connection are answered
//! strictly in order: while one is parked, the ones behind it stay in the buffer.

pub(crate) mod api;
pub(crate) mod codec;
pub(crate) mod console;
pub(crate) mod response;

use alloc::string::String;
use alloc::vec::Vec;

use crate::conn::Conn;
use crate::session::SessionKey;
use crate::time::Instant;
use crate::{Agent, ConnId, Output};
use codec::{Framer, Step};
use response::{Persist, Status};

/// Receive window offered while a request is parked: enough to notice EOF and buffer a
/// small pipelined request, small enough that thousands of parked polls stay cheap.
const RX_PARKED: usize = 512;

/// A request waiting for something before it can be answered.
#[derive(Debug)]
pub(crate) enum Parked {
    /// `pull_results` on a consumer.
    Pull {
        session: SessionKey,
        consumer: u32,
        started: Instant,
        /// When this poll first saw an item; the batch closes `pull_batch` later.
        first_item: Option<Instant>,
        request_id: Option<String>,
        /// The empty-poll timeout and the batch deadline, cancelled once answered.
        timers: [Option<crate::time::TimerKey>; 2],
    },
    /// `exec` waiting for its job to end.
    Exec { job: u32 },
}

/// Whether a peer is local for `http_local_trust`: exactly 127.0.0.1 or ::1 (an
/// IPv4-mapped 127.0.0.1 from a dual-stack listener included).
pub(crate) fn is_local(peer: core::net::SocketAddr) -> bool {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match peer.ip().to_canonical() {
        IpAddr::V4(a) => a == Ipv4Addr::LOCALHOST,
        IpAddr::V6(a) => a == Ipv6Addr::LOCALHOST,
    }
}

/// Per-connection HTTP state.
#[derive(Debug, Default)]
pub(crate) struct HttpConn {
    pub(crate) framer: Framer,
    pub(crate) parked: Option<Parked>,
    /// Version and persistence of the request being answered.
    pub(crate) http10: bool,
    pub(crate) keep_alive: bool,
    /// A `HEAD` request: its answer has a head only.
    pub(crate) head_method: bool,
    /// Bytes of the request being handled still in the receive buffer (0 once consumed).
    pub(crate) current_len: usize,
    /// When the first byte of the head being read was seen (the head deadline's start).
    pub(crate) head_since: Option<Instant>,
    /// When the head of the request whose body is being read was complete (the body
    /// deadline's start).
    pub(crate) body_since: Option<Instant>,
    /// A request was parked when the deadline was last computed.
    pub(crate) was_parked: bool,
}

impl Agent {
    /// The receive window the connection may have now (total buffer size).
    pub(crate) fn rx_window(&self, c: &Conn) -> usize {
        let limits = &self.cfg.limits;
        if c.http.parked.is_some() {
            return c.rx.len().max(RX_PARKED);
        }
        let grown = c.rx_grown();
        match c.http.framer.pending() {
            // Reading a body: grow with the bytes that arrive, up to the declared length
            // (already checked against `max_body`). Never to the declared length at once:
            // heads that only announce a large body must not hold its memory.
            Some(head) => grown.min(head.total_len().max(c.rx.len())),
            // Reading a head: grow in steps up to the head limit (431 beyond it). At least
            // one byte, so even a `max_head` of 0 is answered (431), not ignored.
            None => grown.min(limits.max_head.max(c.rx_len).max(1)),
        }
    }

    /// Appends to a connection's output, announcing it when the buffer was empty.
    pub(crate) fn tx_write(&mut self, conn: ConnId, f: impl FnOnce(&mut Vec<u8>)) {
        self.tx_write_with(conn, |_, tx| f(tx));
    }

    /// [`Agent::tx_write`] for a writer that reads the agent (the buffer is taken out of
    /// the connection meanwhile; `Vec::new` does not allocate).
    pub(crate) fn tx_write_with(&mut self, conn: ConnId, f: impl FnOnce(&Agent, &mut Vec<u8>)) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let was_empty = c.tx_len() == 0;
        let mut tx = core::mem::take(&mut c.tx);
        f(self, &mut tx);
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.tx = tx;
        if was_empty && c.tx_len() > 0 {
            c.tx_since = None;
            self.out.push_back(Output::Transmit(conn));
            self.rearm.push(conn);
        }
    }

    pub(crate) fn close_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn)
            && !c.closing
        {
            c.closing = true;
            c.rx_len = 0;
            c.rx_release_if_idle();
            self.timers.cancel(c.timer.take());
            self.out.push_back(Output::Close(conn));
        }
    }

    /// Writes an HTTP response; closes after it unless the request keeps the connection.
    pub(crate) fn respond(&mut self, conn: ConnId, status: Status, ctype: &str, body: &[u8]) {
        self.respond_with(conn, status, ctype, &[], body);
    }

    /// [`Agent::respond`] with more header lines (see [`response::write`]).
    pub(crate) fn respond_with(
        &mut self,
        conn: ConnId,
        status: Status,
        ctype: &str,
        extra: &[&[u8]],
        body: &[u8],
    ) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        // After EOF, requests pipelined before it are still answered; the last one says
        // `Connection: close`.
        let more_buffered = c.rx_len > c.http.current_len;
        let keep =
            c.http.keep_alive && status != Status::BadRequest && (more_buffered || !c.read_closed);
        let persist = match (keep, c.http.http10) {
            (false, _) => Persist::Close,
            (true, true) => Persist::KeepAlive,
            (true, false) => Persist::Default,
        };
        let http10 = c.http.http10;
        let head_method = c.http.head_method;
        if status.is_error() {
            self.stats.http_errors += 1;
        }
        self.tx_write(conn, |tx| {
            response::write(tx, http10, status, ctype, extra, persist, body);
            if head_method {
                tx.truncate(tx.len() - body.len());
            }
        });
        if persist == Persist::Close {
            self.close_conn(conn);
        }
        // Requests behind this one may now be processed.
        self.wake.push(conn);
    }

    /// The head or body deadline passed: `408 Request Timeout`, then close.
    pub(crate) fn timeout_request(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        // No request was handled: there is no version or method to honour.
        c.http.keep_alive = false;
        c.http.http10 = false;
        c.http.head_method = false;
        let status = Status::RequestTimeout;
        self.respond(conn, status, response::TEXT, status.text());
    }

    /// Answers with the JSON in `self.scratch`.
    pub(crate) fn respond_scratch(&mut self, conn: ConnId) {
        let body = core::mem::take(&mut self.scratch);
        self.respond(conn, Status::Ok, response::JSON, &body);
        self.scratch = body;
        self.scratch.clear();
    }

    /// The one place an HTTP connection's state advances.
    pub(crate) fn process_conn(&mut self, conn: ConnId, now: Instant) {
        let mut slow_reader = false;
        loop {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            if c.closing {
                return;
            }
            if c.http.parked.is_some() {
                if self.try_answer(conn, now) {
                    continue;
                }
                break;
            }
            if c.tx_full(self.cfg.limits.max_tx) {
                // Slow reader: answer nothing more until it drains (tx_consume wakes us).
                slow_reader = true;
                break;
            }
            let rx_len = c.rx_len;
            let gate = self.cfg.http_auth.as_ref().map(|creds| codec::Gate {
                creds,
                trust_absent: self.cfg.http_local_trust && c.peer.is_some_and(is_local),
            });
            let step = c.http.framer.step(&c.rx[..rx_len], &self.cfg.limits, gate);
            match step {
                Step::Unauthorized { http10 } => {
                    self.stats.http_requests += 1;
                    self.stats.http_errors += 1;
                    self.stats.http_unauthorized += 1;
                    self.tx_write(conn, |tx| response::write_unauthorized(tx, http10));
                    self.close_conn(conn);
                    return;
                }
                Step::NeedMore => break,
                Step::SendContinue => {
                    // Only HTTP/1.1 heads ask for it (see `codec`), whatever came before.
                    self.tx_write(conn, |tx| response::write_continue(tx, false));
                }
                Step::Error(e) => {
                    // A malformed request has no version or method to honour.
                    c.http.keep_alive = false;
                    c.http.http10 = false;
                    c.http.head_method = false;
                    let status = e.status();
                    self.respond(conn, status, response::TEXT, status.text());
                    return;
                }
                Step::Request(head) => {
                    c.http.http10 = head.http10;
                    c.http.keep_alive = head.keep_alive;
                    c.http.head_method =
                        matches!(&head.method, codec::Method::Other(m) if m == "HEAD");
                    self.stats.http_requests += 1;
                    // Borrow the body out of the connection while the agent handles it;
                    // taking the buffer avoids a copy and gives it back unchanged.
                    let rx = core::mem::take(&mut c.rx);
                    c.http.current_len = head.total_len();
                    let body = rx.get(head.head_len..head.total_len()).unwrap_or(&[]);
                    self.handle_request(conn, &head, body, now);
                    if let Some(c) = self.conns.get_mut(conn) {
                        c.rx = rx;
                        c.rx_consume(head.total_len());
                        c.http.current_len = 0;
                        c.http.framer.reset();
                    }
                }
            }
        }
        self.after_io(conn, slow_reader);
    }

    /// Closes a finished connection, and resumes reading one that was paused.
    fn after_io(&mut self, conn: ConnId, slow_reader: bool) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.closing {
            return;
        }
        if c.read_closed && c.http.parked.is_none() && !slow_reader {
            // Nothing more will arrive; whatever is buffered is an incomplete request.
            self.close_conn(conn);
            return;
        }
        let window = self.rx_window(c);
        if let Some(c) = self.conns.get_mut(conn)
            && c.read_paused
            && window > c.rx_len
        {
            c.read_paused = false;
            self.out.push_back(Output::ResumeRead(conn));
        }
    }

    fn handle_request(&mut self, conn: ConnId, head: &codec::Head, body: &[u8], now: Instant) {
        match head.target {
            codec::Target::Api => {}
            codec::Target::Console(req) if self.cfg.console => {
                return self.serve_console(conn, &head.method, req);
            }
            codec::Target::Console(_) | codec::Target::Other => {
                let status = Status::NotFound;
                return self.respond(conn, status, response::HTML, status.text());
            }
        }
        if let codec::Method::Other(method) = &head.method {
            self.scratch.clear();
            api::refused_method(&mut self.scratch, method);
            self.stats.api_refused += 1;
            self.respond_scratch(conn);
            return;
        }
        self.api(conn, body, now);
    }

    /// Answers the parked request if it can be answered now. True if it was.
    fn try_answer(&mut self, conn: ConnId, now: Instant) -> bool {
        let Some(c) = self.conns.get_mut(conn) else {
            return false;
        };
        match &mut c.http.parked {
            Some(Parked::Pull {
                session,
                consumer,
                started,
                first_item,
                timers,
                ..
            }) => {
                let (key, number, started) = (*session, *consumer, *started);
                let timing = &self.cfg.timing;
                let ready = self
                    .sessions
                    .get(&key)
                    .and_then(|s| s.consumers.iter().find(|c| c.number == number))
                    .map(|c| c.ready());
                let due = match ready {
                    None => true,
                    Some(n) if n >= api::PULL_MAX_ITEMS => true,
                    Some(0) => now >= started + timing.pull_timeout(),
                    Some(_) => {
                        let first = *first_item.get_or_insert(now);
                        let close = first + timing.pull_batch();
                        if first == now && close > now {
                            timers[1] =
                                Some(self.timers.schedule(close, crate::time::Timer::Pull(conn)));
                        }
                        now >= close
                    }
                };
                if due {
                    let parked = c.http.parked.take();
                    if let Some(Parked::Pull {
                        request_id, timers, ..
                    }) = parked
                    {
                        timers.into_iter().for_each(|t| self.timers.cancel(t));
                        self.answer_pull(conn, key, number, request_id.as_deref(), now);
                    }
                }
                due
            }
            Some(Parked::Exec { job }) => {
                let job = *job;
                let ended = self.jobs.get(&job).is_none_or(|j| j.ended);
                if ended {
                    c.http.parked = None;
                    self.answer_exec(conn, job, now);
                }
                ended
            }
            None => true,
        }
    }

    /// Cleans up after a connection that went away while parked.
    pub(crate) fn unpark(&mut self, _conn: ConnId, parked: Option<Parked>, now: Instant) {
        match parked {
            Some(Parked::Pull {
                session,
                consumer,
                timers,
                ..
            }) => {
                timers.into_iter().for_each(|t| self.timers.cancel(t));
                if let Some(c) = self
                    .sessions
                    .get_mut(&session)
                    .and_then(|s| s.consumer_mut(consumer))
                {
                    c.pull = None;
                    c.last_pull = now;
                }
            }
            Some(Parked::Exec { job }) => {
                // Nobody is left to read the results: stop the job and drop what it made.
                self.interrupt(job, now);
                self.finish_exec(job);
            }
            None => {}
        }
    }
}
