//! The agent RPC: Consul's command set and Serf's dialect of the same framing (spec
//! `consul-serf-rpc.md`), msgpack over TCP.
//!
//! A request is a header map, then a body only for commands that define one, so framing is
//! command-aware: [`RpcConn`] remembers whether the next message is a header or the body of
//! the command it just read. All state changes of an RPC connection happen in
//! [`Agent::process_rpc`]. Requests are answered strictly in order; stream records
//! (`monitor`, `stream`) interleave with the replies and are dropped, and counted, when the
//! connection's output is over `Limits::max_tx`.

pub(crate) mod commands;
pub(crate) mod coordinate;
pub(crate) mod msgpack;
pub(crate) mod wire;

use alloc::vec::Vec;

use crate::log::Level;
use crate::time::Instant;
use crate::{Agent, ConnId};
use msgpack::{MsgLimits, Reader, Scan, Scanner};

/// The commands both dialects know. `Query` and the rest of Serf's set answer
/// `Unsupported command` (see the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    Handshake,
    Auth,
    ForceLeave,
    Join,
    MembersLan,
    MembersWan,
    Members,
    MembersFiltered,
    Monitor,
    Stop,
    Leave,
    Stats,
    Reload,
    Stream,
    Tags,
    Event,
    Query,
    Respond,
    GetCoordinate,
    Key(crate::cluster::KeyOp),
}

impl Cmd {
    fn parse(name: &str) -> Option<Cmd> {
        Some(match name {
            "handshake" => Cmd::Handshake,
            "auth" => Cmd::Auth,
            "force-leave" => Cmd::ForceLeave,
            "join" => Cmd::Join,
            "members-lan" => Cmd::MembersLan,
            "members-wan" => Cmd::MembersWan,
            "members" => Cmd::Members,
            "members-filtered" => Cmd::MembersFiltered,
            "monitor" => Cmd::Monitor,
            "stop" => Cmd::Stop,
            "leave" => Cmd::Leave,
            "stats" => Cmd::Stats,
            "reload" => Cmd::Reload,
            "stream" => Cmd::Stream,
            "tags" => Cmd::Tags,
            "event" => Cmd::Event,
            "query" => Cmd::Query,
            "respond" => Cmd::Respond,
            "get-coordinate" => Cmd::GetCoordinate,
            "install-key" => Cmd::Key(crate::cluster::KeyOp::Install),
            "use-key" => Cmd::Key(crate::cluster::KeyOp::Use),
            "remove-key" => Cmd::Key(crate::cluster::KeyOp::Remove),
            "list-keys" => Cmd::Key(crate::cluster::KeyOp::List),
            _ => return None,
        })
    }

    /// Whether a request body follows the header.
    fn has_body(self) -> bool {
        !matches!(
            self,
            Cmd::MembersLan
                | Cmd::MembersWan
                | Cmd::Members
                | Cmd::Leave
                | Cmd::Stats
                | Cmd::Reload
                | Cmd::Key(crate::cluster::KeyOp::List)
        )
    }
}

/// What the next message on the connection is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Header,
    /// The body of this command, then run it.
    Body(Cmd, u64),
    /// The body of a command refused before it ran (`Authentication required`): read and
    /// drop it, so one refusal gives one error, unlike Serf.
    Discard,
}

/// An event stream registered with `stream`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stream {
    pub(crate) seq: u64,
    pub(crate) filter: commands::Filter,
}

/// Per-connection RPC state.
#[derive(Debug, Default)]
pub(crate) struct RpcConn {
    scanner: Scanner,
    phase: Phase,
    pub(crate) handshaken: bool,
    pub(crate) authed: bool,
    /// The monitor's Seq and level (one per connection).
    pub(crate) monitor: Option<(u64, Level)>,
    pub(crate) streams: Vec<Stream>,
    /// A request (`join`) waits for its answer; the ones behind it stay buffered.
    pub(crate) parked: bool,
    /// IDs of received queries its streams carried, for `respond`.
    pub(crate) queries: crate::queries::ConnQueries,
}

impl Agent {
    pub(crate) fn msg_limits(&self) -> MsgLimits {
        let l = &self.cfg.limits;
        MsgLimits {
            max_frame: l.rpc_max_frame,
            max_str: l.rpc_max_str,
            max_container: l.rpc_max_container,
            max_values: l.rpc_max_values,
        }
    }

    /// The one place an RPC connection's state advances.
    pub(crate) fn process_rpc(&mut self, conn: ConnId, now: Instant) {
        let limits = self.msg_limits();
        loop {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            if c.closing {
                return;
            }
            if c.rpc.parked {
                break;
            }
            if c.tx_full(self.cfg.limits.max_tx) {
                // Slow reader: no new requests until it reads; its stream records are
                // dropped meanwhile (see `rpc_record`).
                break;
            }
            let rx_len = c.rx_len;
            let n = match c.rpc.scanner.scan(&c.rx[..rx_len], &limits) {
                Scan::Incomplete => break,
                Scan::Invalid(_) => {
                    self.stats.rpc_decode_errors += 1;
                    self.close_conn(conn);
                    return;
                }
                Scan::Complete(n) => n,
            };
            c.rpc.scanner = Scanner::default();
            let phase = core::mem::take(&mut c.rpc.phase);
            let rx = core::mem::take(&mut c.rx);
            let msg = rx.get(..n).unwrap_or(&[]);
            let ok = match phase {
                Phase::Header => self.rpc_header(conn, msg, now),
                Phase::Body(cmd, seq) => self.rpc_body(conn, cmd, seq, msg, now),
                Phase::Discard => true,
            };
            if let Some(c) = self.conns.get_mut(conn) {
                c.rx = rx;
                c.rx_consume(n);
            }
            if !ok {
                self.stats.rpc_decode_errors += 1;
                self.close_conn(conn);
                return;
            }
        }
        self.after_rpc_io(conn);
    }

    fn after_rpc_io(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.closing {
            return;
        }
        if c.read_closed && !c.rpc.parked {
            // A half-sent request will never complete; streams die with the reader.
            self.close_conn(conn);
            return;
        }
        let window = self.rpc_window(c);
        if let Some(c) = self.conns.get_mut(conn)
            && c.read_paused
            && window > c.rx_len
        {
            c.read_paused = false;
            self.out.push_back(crate::Output::ResumeRead(conn));
        }
    }

    /// The receive window of an RPC connection: up to one frame.
    pub(crate) fn rpc_window(&self, c: &crate::conn::Conn) -> usize {
        let max = self.cfg.limits.rpc_max_frame;
        // Grown with the bytes that arrive, never to a length a msgpack header declared.
        // At least one byte, so even an `rpc_max_frame` of 0 is acted on (a close).
        c.rx_grown().min(max.max(c.rx_len).max(1))
    }

    /// Decodes a request header and runs or arms its command. False closes the connection
    /// without a reply.
    fn rpc_header(&mut self, conn: ConnId, msg: &[u8], now: Instant) -> bool {
        let Ok((command, seq)) = wire::decode_header(msg) else {
            return false;
        };
        let Some(c) = self.conns.get_mut(conn) else {
            return false;
        };
        let handshaken = c.rpc.handshaken;
        let authed = c.rpc.authed;
        let cmd = Cmd::parse(command);
        if !handshaken && cmd != Some(Cmd::Handshake) {
            self.rpc_reply(conn, seq, wire::msg::HANDSHAKE_REQUIRED, None);
            self.close_conn(conn);
            return true;
        }
        // The auth gate comes before the command is looked up, as in Serf.
        if self.cfg.rpc_auth.is_some()
            && !authed
            && !matches!(cmd, Some(Cmd::Handshake | Cmd::Auth))
        {
            self.rpc_reply(conn, seq, wire::msg::AUTH_REQUIRED, None);
            if cmd.is_some_and(Cmd::has_body)
                && let Some(c) = self.conns.get_mut(conn)
            {
                c.rpc.phase = Phase::Discard;
            }
            return true;
        }
        let Some(cmd) = cmd else {
            self.rpc_reply(conn, seq, wire::msg::UNSUPPORTED_COMMAND, None);
            self.close_conn(conn);
            return true;
        };
        if cmd.has_body() {
            if let Some(c) = self.conns.get_mut(conn) {
                c.rpc.phase = Phase::Body(cmd, seq);
            }
            return true;
        }
        self.rpc_command(conn, cmd, seq, None, now)
    }

    fn rpc_body(&mut self, conn: ConnId, cmd: Cmd, seq: u64, msg: &[u8], now: Instant) -> bool {
        self.rpc_command(conn, cmd, seq, Some(Reader::new(msg)), now)
    }
}
