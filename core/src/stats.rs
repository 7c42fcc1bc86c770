//! Counters the agent keeps about itself, shown by `stats` (HTTP API and RPC alike).

/// Monotonic counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections over `max_connections`: refused at accept, or answered `503` and closed.
    pub connections_refused: u64,
    /// Connections released.
    pub connections_closed: u64,
    /// Bytes committed from sockets.
    pub bytes_in: u64,
    /// Bytes consumed by the runtime's writes.
    pub bytes_out: u64,
    /// HTTP requests framed.
    pub http_requests: u64,
    /// HTTP requests answered with an error status (4xx/5xx).
    pub http_errors: u64,
    /// HTTP requests refused with `401 Unauthorized` (also counted in `http_errors`).
    pub http_unauthorized: u64,
    /// HTTP request heads or bodies not complete in time, answered `408` (also in
    /// `http_errors`).
    pub http_timeouts: u64,
    /// Connections closed by a timeout: HTTP keep-alive idle, RPC handshake or auth.
    pub idle_closes: u64,
    /// Connections closed because their reader took no output for `write_stall_timeout_ms`.
    pub stall_closes: u64,
    /// Output bytes thrown away by those closes.
    pub bytes_discarded: u64,
    /// `/api` responses by state.
    pub api_succeeded: u64,
    /// `FAILED` responses.
    pub api_failed: u64,
    /// `REFUSED` responses.
    pub api_refused: u64,
    /// `INTERRUPTED` responses.
    pub api_interrupted: u64,
    /// Sessions created (one-time ones included).
    pub sessions_created: u64,
    /// Sessions removed by idle expiry.
    pub sessions_expired: u64,
    /// Unused sessions closed to make room for a new one at `max_sessions`.
    pub sessions_evicted: u64,
    /// Consumers removed by idle expiry.
    pub consumers_expired: u64,
    /// Jobs started.
    pub jobs_started: u64,
    /// Configuration reloads.
    pub reloads: u64,
    /// RPC requests run.
    pub rpc_requests: u64,
    /// RPC replies written (stream records not included).
    pub rpc_replies: u64,
    /// RPC connections closed, with the table full, to make room for a new one.
    pub rpc_evictions: u64,
    /// RPC connections closed for undecodable or over-limit input.
    pub rpc_decode_errors: u64,
    /// `monitor`/`stream` records dropped because the connection's output was full.
    pub rpc_records_dropped: u64,
}
