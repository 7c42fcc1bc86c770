//! The in-memory driver: one `Agent`, a virtual clock, and client-side byte buffers in place
//! of sockets. It follows the call contract exactly (drain outputs after every input) and
//! advances time by jumping to the agent's next deadline, as quinn's `Pair::drive` does.

use std::collections::HashMap;
use std::time::Duration;

use tandem_core::{
    Agent, CommandInfo, Config, ConnId, Effect, Instant, JobId, Listener, LogRecord, Output,
    Refused,
};

use crate::http::{Response, post_api, take_responses};

/// Wall-clock time the simulated agent starts at: 2026-11-21 00:00:00 UTC.
pub const START_UNIX_MS: u64 = 1_795_219_200_000;
/// The pid the simulated host reports.
pub const PID: u32 = 4242;

#[derive(Debug, Default)]
struct Client {
    /// Bytes the agent sent to this client.
    received: Vec<u8>,
    /// Bytes the client sent that the agent has not taken yet (backpressure).
    unsent: Vec<u8>,
    /// The agent closed the connection.
    closed: bool,
    /// The client does not read: what the agent writes stays pending in the agent.
    stalled: bool,
}

/// The in-memory driver.
pub struct Sim {
    /// The agent under test.
    pub agent: Agent,
    /// The virtual clock.
    pub now: Instant,
    clients: HashMap<ConnId, Client>,
    /// Effects the agent emitted, in order, not yet looked at.
    pub effects: Vec<Effect>,
    /// Log records the agent emitted for printing.
    pub logs: Vec<LogRecord>,
    /// Every `Close` output, in order (to check each connection closes at most once).
    pub closes: Vec<ConnId>,
    /// Gossip datagrams the agent sent (nobody receives them in this driver).
    pub datagrams: Vec<(tandem_core::Pool, std::net::SocketAddr, Vec<u8>)>,
}

impl Sim {
    /// An agent with the default configuration.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// An agent with `config` (host facts are filled in by the simulation).
    pub fn with_config(mut config: Config) -> Self {
        config.host.pid = PID;
        config.host.unix_ms = START_UNIX_MS;
        config.host.runtime = "sim".into();
        let now = Instant::from_millis(1_000);
        Sim {
            agent: Agent::new(config, 7, now),
            now,
            clients: HashMap::new(),
            effects: Vec::new(),
            logs: Vec::new(),
            closes: Vec::new(),
            datagrams: Vec::new(),
        }
    }

    /// Registers a host command (answered by the test through `job_output`/`job_finished`).
    pub fn register(&mut self, name: &str) {
        self.agent
            .register_command(CommandInfo::new(name, "test command", name))
            .expect("register");
    }

    /// Opens an HTTP connection.
    pub fn connect(&mut self) -> ConnId {
        self.connect_to(Listener::Http)
    }

    /// Opens a connection on the given listener (HTTP API or RPC).
    pub fn connect_to(&mut self, listener: Listener) -> ConnId {
        self.try_connect_to(listener).expect("accept")
    }

    /// An RPC connection past its handshake and holding a `monitor` (level ERR): one the
    /// agent owes something, which a full table never evicts for a newcomer.
    pub fn rpc_monitoring(&mut self) -> ConnId {
        let c = self.connect_to(Listener::Rpc);
        self.send(
            c,
            b"\x82\xa7Command\xa9handshake\xa3Seq\x00\x81\xa7Version\x01",
        );
        self.send(
            c,
            b"\x82\xa7Command\xa7monitor\xa3Seq\x01\x81\xa8LogLevel\xa3ERR",
        );
        let got = self.received(c);
        // Two replies {"Error":"","Seq":n}: the handshake's and the monitor's.
        assert_eq!(got.len(), 26, "handshake and monitor replies: {got:?}");
        c
    }

    /// Like [`Sim::connect_to`], for a connection the agent may refuse.
    pub fn try_connect_to(&mut self, listener: Listener) -> Result<ConnId, Refused> {
        let accepted = self.agent.accept(listener, None, self.now);
        if let Ok(c) = accepted {
            self.clients.insert(c, Client::default());
        }
        self.drain();
        accepted
    }

    /// Sends bytes on a connection; what the agent does not take now is offered again on
    /// `ResumeRead`.
    pub fn send(&mut self, c: ConnId, bytes: &[u8]) {
        let client = self.clients.get_mut(&c).expect("known connection");
        client.unsent.extend_from_slice(bytes);
        self.push_unsent(c);
        self.drain();
    }

    fn push_unsent(&mut self, c: ConnId) {
        let Some(client) = self.clients.get_mut(&c) else {
            return;
        };
        if client.unsent.is_empty() || client.closed {
            return;
        }
        let data = std::mem::take(&mut client.unsent);
        let n = self.agent.handle_stream(c, &data, self.now);
        if let Some(client) = self.clients.get_mut(&c) {
            client.unsent = data[n..].to_vec();
        }
    }

    /// The client half-closes (EOF).
    pub fn eof(&mut self, c: ConnId) {
        self.agent.handle_eof(c, self.now);
        self.drain();
    }

    /// The client resets the connection.
    pub fn reset(&mut self, c: ConnId) {
        self.agent.handle_reset(c, self.now);
        if let Some(client) = self.clients.get_mut(&c) {
            client.closed = true;
        }
        self.drain();
    }

    /// Drains outputs until the agent has none, acting on each like a runtime would.
    pub fn drain(&mut self) {
        while let Some(out) = self.agent.poll_output() {
            match out {
                Output::Transmit(c) => self.take_output(c),
                Output::Close(c) => {
                    let pending = self.agent.tx_pending(c).to_vec();
                    if let Some(client) = self.clients.get_mut(&c) {
                        client.received.extend_from_slice(&pending);
                        client.closed = true;
                    }
                    self.closes.push(c);
                    self.agent.handle_reset(c, self.now);
                }
                Output::ResumeRead(c) => self.push_unsent(c),
                Output::Log(r) => self.logs.push(r),
                Output::Datagram => {
                    while let Some(d) = self.agent.poll_datagram() {
                        self.datagrams.push(d);
                    }
                }
                Output::Effect(e) => self.effects.push(e),
            }
        }
    }

    /// Takes what the agent has pending for `c`, unless its client stopped reading.
    fn take_output(&mut self, c: ConnId) {
        if self.clients.get(&c).is_some_and(|cl| cl.stalled) {
            return;
        }
        let pending = self.agent.tx_pending(c).to_vec();
        if let Some(client) = self.clients.get_mut(&c) {
            client.received.extend_from_slice(&pending);
        }
        self.agent.tx_consume(c, pending.len(), self.now);
    }

    /// The client of `c` stops reading (`false`) or reads again (`true`), taking what is
    /// pending at once, as a runtime's write on a writable socket would.
    pub fn set_reading(&mut self, c: ConnId, reading: bool) {
        if let Some(client) = self.clients.get_mut(&c) {
            client.stalled = !reading;
        }
        if reading {
            self.take_output(c);
            self.drain();
        }
    }

    /// Advances the virtual clock by `d`, firing every deadline on the way in order.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(deadline) = self.agent.poll_timeout() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.agent.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
        self.agent.handle_timeout(self.now);
        self.drain();
    }

    /// Complete responses received on `c` so far (removed from the buffer).
    pub fn responses(&mut self, c: ConnId) -> Vec<Response> {
        let client = self.clients.get_mut(&c).expect("known connection");
        take_responses(&mut client.received)
    }

    /// Raw bytes received on `c` and not yet taken.
    pub fn received(&mut self, c: ConnId) -> Vec<u8> {
        std::mem::take(&mut self.clients.get_mut(&c).expect("known connection").received)
    }

    /// Whether the agent closed `c`.
    pub fn is_closed(&self, c: ConnId) -> bool {
        self.clients.get(&c).is_some_and(|cl| cl.closed)
    }

    /// Sends `POST /api` with `body` on `c`.
    pub fn post(&mut self, c: ConnId, body: &str) {
        self.send(c, &post_api(body));
    }

    /// One request on a fresh connection, answered without time passing.
    pub fn api(&mut self, body: &str) -> serde_json::Value {
        let c = self.connect();
        self.post(c, body);
        let mut r = self.responses(c);
        assert_eq!(r.len(), 1, "expected an immediate answer to {body}");
        r.remove(0).json()
    }

    /// One request on a fresh connection, returning the raw body text.
    pub fn api_text(&mut self, body: &str) -> String {
        let c = self.connect();
        self.post(c, body);
        let mut r = self.responses(c);
        assert_eq!(r.len(), 1, "expected an immediate answer to {body}");
        r.remove(0).text().to_string()
    }

    /// Answers `Effect::Reload` as a runtime does once it has re-read its configuration
    /// file (`Err`: why it could not), then drains.
    pub fn reload_finished(&mut self, outcome: Result<Config, String>) {
        self.agent.reload_finished(outcome, self.now);
        self.drain();
    }

    /// Takes the `StartJob` effects emitted so far: (job, command, args).
    pub fn started_jobs(&mut self) -> Vec<(JobId, String, Vec<String>)> {
        let mut out = Vec::new();
        self.effects.retain(|e| match e {
            Effect::StartJob { job, command, args } => {
                out.push((*job, command.clone(), args.clone()));
                false
            }
            _ => true,
        });
        out
    }
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

// ----- helpers for the conformance suite -----------------------------------------------
// Appended for `tests/tests/conformance_*.rs`: session shortcuts, waiting on the virtual
// clock, and reading result items as the exact bytes the agent wrote.

impl Sim {
    /// Wall-clock Unix milliseconds the agent sees at the current virtual instant.
    pub fn unix_ms(&self) -> u64 {
        START_UNIX_MS + (self.now.as_micros() / 1000 - 1_000)
    }

    /// Advances the virtual clock by `ms` milliseconds.
    pub fn advance_ms(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    /// `init_session` on a fresh connection: (sessionId, consumerId).
    pub fn init_session(&mut self) -> (String, String) {
        let v = self.api(r#"{"action":"init_session"}"#);
        assert_eq!(v["state"], "SUCCEEDED", "{v}");
        (
            v["sessionId"].as_str().expect("sessionId").to_string(),
            v["consumerId"].as_str().expect("consumerId").to_string(),
        )
    }

    /// `join_session`: the new consumerId.
    pub fn join_session(&mut self, sid: &str) -> String {
        let v = self.api(&format!(
            r#"{{"action":"join_session","sessionId":"{sid}"}}"#
        ));
        assert_eq!(v["state"], "SUCCEEDED", "{v}");
        v["consumerId"].as_str().expect("consumerId").to_string()
    }

    /// Posts `pull_results` on a fresh connection and returns it (the answer may park).
    pub fn start_pull(&mut self, sid: &str, cid: &str) -> ConnId {
        let c = self.connect();
        self.post(c, &pull_body(sid, cid));
        c
    }

    /// Advances the clock deadline by deadline until `c` has a response, at most `limit`
    /// past now; returns the first response. Panics if none came.
    pub fn wait_response(&mut self, c: ConnId, limit: Duration) -> Response {
        let end = self.now + limit;
        loop {
            let mut r = self.responses(c);
            if !r.is_empty() {
                return r.remove(0);
            }
            match self.agent.poll_timeout() {
                Some(d) if d <= end => {
                    let step = d.saturating_duration_since(self.now);
                    self.advance(step);
                }
                _ => panic!("no response within {limit:?}"),
            }
        }
    }

    /// A whole `pull_results`, waiting on the virtual clock: the raw items it returned.
    pub fn pull(&mut self, sid: &str, cid: &str) -> Vec<String> {
        let c = self.start_pull(sid, cid);
        let r = self.wait_response(c, Duration::from_secs(3600));
        let text = r.text();
        assert!(text.contains(r#""state":"SUCCEEDED""#), "{text}");
        result_items(text)
    }

    /// `exec` of `command` in session `sid`, answered without time passing.
    pub fn exec_in(&mut self, sid: &str, command: &str) -> serde_json::Value {
        self.api(&format!(
            r#"{{"action":"exec","command":{},"sessionId":"{sid}"}}"#,
            serde_json::Value::from(command)
        ))
    }

    /// `async_exec` of `command` in session `sid`.
    pub fn async_exec(&mut self, sid: &str, command: &str) -> serde_json::Value {
        self.api(&format!(
            r#"{{"action":"async_exec","command":{},"sessionId":"{sid}"}}"#,
            serde_json::Value::from(command)
        ))
    }

    /// Takes the effects emitted so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }
}

/// The body of a `pull_results` request.
pub fn pull_body(sid: &str, cid: &str) -> String {
    format!(r#"{{"action":"pull_results","consumerId":"{cid}","sessionId":"{sid}"}}"#)
}

/// The items of the first `"results":[...]` array in a response body, each exactly as the
/// agent wrote it.
pub fn result_items(body: &str) -> Vec<String> {
    let start = body.find(r#""results":["#).expect("a results array") + r#""results":["#.len();
    let bytes = body.as_bytes();
    let mut items = Vec::new();
    let (mut depth, mut in_str, mut escaped, mut from) = (0usize, false, false, start);
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                if depth == 0 {
                    from = i;
                }
                depth += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    items.push(body[from..=i].to_string());
                }
            }
            b']' => break,
            _ => {}
        }
    }
    items
}
