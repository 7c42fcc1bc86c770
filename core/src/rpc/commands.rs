//! The RPC commands. Each decodes its body (Go's leniency: map or array, unknown keys
//! skipped, any integer width), acts, and writes its reply; commands that define a response
//! body always send it, errors included (Go clients wait for it).

use alloc::string::String;
use alloc::vec::Vec;

use super::msgpack::{DecodeError, Reader};
use super::wire::{self, msg};
use super::{Cmd, Stream};
use crate::log::{Level, LogRecord};
use crate::secret::constant_time_eq;
use crate::time::Instant;
use crate::{Agent, ConnId};

/// One element of a `stream` filter (`member-join,user:deploy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FilterItem {
    All,
    Member(&'static str),
    User(Option<String>),
    Query(Option<String>),
}

/// A parsed `stream` filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Filter(pub(crate) Vec<FilterItem>);

impl Filter {
    /// Parses Serf's comma-separated filter; empty means `*`.
    pub(crate) fn parse(s: &str) -> Option<Filter> {
        const MEMBER: [&str; 5] = [
            "member-join",
            "member-leave",
            "member-failed",
            "member-update",
            "member-reap",
        ];
        if s.is_empty() {
            return Some(Filter(Vec::from([FilterItem::All])));
        }
        let mut items = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let item = if part == "*" {
                FilterItem::All
            } else if let Some(&m) = MEMBER.iter().find(|&&m| m == part) {
                FilterItem::Member(m)
            } else if part == "user" {
                FilterItem::User(None)
            } else if let Some(name) = part.strip_prefix("user:") {
                FilterItem::User(Some(String::from(name)))
            } else if part == "query" {
                FilterItem::Query(None)
            } else if let Some(name) = part.strip_prefix("query:") {
                FilterItem::Query(Some(String::from(name)))
            } else {
                return None;
            };
            items.push(item);
        }
        Some(Filter(items))
    }

    /// Whether a member event of this kind passes.
    pub(crate) fn member(&self, event: &str) -> bool {
        self.0.iter().any(|i| match i {
            FilterItem::All => true,
            FilterItem::Member(m) => *m == event,
            _ => false,
        })
    }

    /// Whether a query of this name passes.
    pub(crate) fn query(&self, name: &str) -> bool {
        self.0.iter().any(|i| match i {
            FilterItem::All | FilterItem::Query(None) => true,
            FilterItem::Query(Some(n)) => n == name,
            _ => false,
        })
    }

    /// Whether a user event of this name passes.
    pub(crate) fn user(&self, name: &str) -> bool {
        self.0.iter().any(|i| match i {
            FilterItem::All | FilterItem::User(None) => true,
            FilterItem::User(Some(n)) => n == name,
            _ => false,
        })
    }
}

type R<T> = Result<T, DecodeError>;

/// Writes a reply body into the connection's output.
pub(crate) type BodyWriter<'a> = &'a dyn Fn(&mut Vec<u8>);

impl Agent {
    /// Writes a reply: the header, then the body if the command has one.
    pub(crate) fn rpc_reply(
        &mut self,
        conn: ConnId,
        seq: u64,
        error: &str,
        body: Option<BodyWriter<'_>>,
    ) {
        self.stats.rpc_replies += 1;
        self.tx_write(conn, |tx| {
            wire::header(tx, seq, error);
            if let Some(body) = body {
                body(tx);
            }
        });
    }

    /// Writes a stream record, unless the connection's output is over its bound: then the
    /// record is dropped and counted, never buffered without limit.
    pub(crate) fn rpc_record(&mut self, conn: ConnId, seq: u64, body: &dyn Fn(&mut Vec<u8>)) {
        let over = self
            .conns
            .get(conn)
            .is_none_or(|c| c.closing || c.tx_full(self.cfg.limits.max_tx));
        if over {
            self.stats.rpc_records_dropped += 1;
            return;
        }
        self.tx_write(conn, |tx| {
            wire::header(tx, seq, "");
            body(tx);
        });
    }

    /// Runs one command. False closes the connection without a reply (a body that does
    /// not decode, a bad regular expression), as Serf does.
    pub(crate) fn rpc_command(
        &mut self,
        conn: ConnId,
        cmd: Cmd,
        seq: u64,
        body: Option<Reader<'_>>,
        now: Instant,
    ) -> bool {
        self.stats.rpc_requests += 1;
        let mut r = body.unwrap_or_else(|| Reader::new(&[0xc0]));
        let result = match cmd {
            Cmd::Handshake => self.rpc_handshake(conn, seq, &mut r),
            Cmd::Auth => self.rpc_auth(conn, seq, &mut r),
            Cmd::Monitor => self.rpc_monitor(conn, seq, &mut r),
            Cmd::Stop => self.rpc_stop(conn, seq, &mut r),
            Cmd::Stream => self.rpc_stream(conn, seq, &mut r),
            Cmd::Stats => {
                // Written straight from the counters: nothing allocated. `replies` is
                // counted after, as for every reply (the answer reports the ones before it).
                self.tx_write_with(conn, |a, tx| {
                    wire::header(tx, seq, "");
                    wire::map(tx, a.stats_section_count(true));
                    let mut buf = [0; 20];
                    a.for_each_stats_section(true, |name, entries| {
                        wire::str(tx, name);
                        wire::map(tx, entries.len());
                        for (k, v) in entries {
                            wire::str(tx, k);
                            wire::str(tx, v.text(&mut buf));
                        }
                    });
                });
                self.stats.rpc_replies += 1;
                Ok(true)
            }
            Cmd::Reload => {
                self.request_reload(crate::reload::ReloadWaiter::Rpc { conn, seq });
                Ok(true)
            }
            Cmd::Leave => {
                self.rpc_leave(conn, seq, now);
                Ok(true)
            }
            Cmd::Members | Cmd::MembersLan => {
                self.rpc_members(conn, seq, false, None);
                Ok(true)
            }
            Cmd::MembersWan => {
                self.rpc_members(conn, seq, true, None);
                Ok(true)
            }
            Cmd::MembersFiltered => self.rpc_members_filtered(conn, seq, &mut r),
            Cmd::Join => self.rpc_join(conn, seq, &mut r, now),
            Cmd::ForceLeave => self.rpc_force_leave(conn, seq, &mut r, now),
            Cmd::Tags => self.rpc_tags(conn, seq, &mut r, now),
            Cmd::Event => self.rpc_event(conn, seq, &mut r, now),
            Cmd::Query => self.rpc_query(conn, seq, &mut r, now),
            Cmd::Respond => self.rpc_respond(conn, seq, &mut r, now),
            Cmd::GetCoordinate => self.rpc_get_coordinate(conn, seq, &mut r),
            Cmd::Key(op) => self.rpc_key(conn, seq, op, &mut r, now),
        };
        result.unwrap_or(false)
    }

    fn rpc_handshake(&mut self, conn: ConnId, seq: u64, r: &mut Reader<'_>) -> R<bool> {
        let mut version = 0;
        r.fields(&["Version"], |k, r| {
            if k == "Version" {
                version = r.int32()?;
                return Ok(true);
            }
            Ok(false)
        })?;
        let Some(c) = self.conns.get_mut(conn) else {
            return Ok(true);
        };
        // The version is checked first, as Serf and Consul do.
        let error = if version != 1 {
            msg::UNSUPPORTED_VERSION
        } else if c.rpc.handshaken {
            msg::HANDSHAKE_DONE
        } else {
            c.rpc.handshaken = true;
            let timer = c.timer.take();
            self.timers.cancel(timer);
            ""
        };
        self.rpc_reply(conn, seq, error, None);
        Ok(true)
    }

    fn rpc_auth(&mut self, conn: ConnId, seq: u64, r: &mut Reader<'_>) -> R<bool> {
        let mut key: &[u8] = &[];
        r.fields(&["AuthKey"], |k, r| {
            if k == "AuthKey" {
                key = r.str()?.as_bytes();
                return Ok(true);
            }
            Ok(false)
        })?;
        let ok = match &self.cfg.rpc_auth {
            Some(secret) => constant_time_eq(key, secret.as_bytes()),
            None => key.is_empty(),
        };
        if ok && let Some(c) = self.conns.get_mut(conn) {
            c.rpc.authed = true;
        }
        // A wrong key does not revoke an earlier success (Serf's behaviour).
        self.rpc_reply(conn, seq, if ok { "" } else { msg::INVALID_AUTH }, None);
        Ok(true)
    }

    fn rpc_monitor(&mut self, conn: ConnId, seq: u64, r: &mut Reader<'_>) -> R<bool> {
        let mut level = "";
        r.fields(&["LogLevel"], |k, r| {
            if k == "LogLevel" {
                level = r.str()?;
                return Ok(true);
            }
            Ok(false)
        })?;
        // Go's strings.ToUpper, Unicode and all, for the error text.
        let upper = level.to_uppercase();
        // The RPC takes exactly Consul's names; `ERROR` is not one of them.
        let parsed = Level::parse(&upper).filter(|_| upper != "ERROR");
        let Some(c) = self.conns.get_mut(conn) else {
            return Ok(true);
        };
        let Some(level) = parsed else {
            let m = alloc::format!("{}{upper}", msg::UNKNOWN_LOG_LEVEL);
            self.rpc_reply(conn, seq, &m, None);
            return Ok(true);
        };
        if c.rpc.monitor.is_some() {
            self.rpc_reply(conn, seq, msg::MONITOR_EXISTS, None);
            return Ok(true);
        }
        c.rpc.monitor = Some((seq, level));
        self.rpc_reply(conn, seq, "", None);
        let recent: Vec<LogRecord> = self
            .log
            .iter()
            .filter(|r| r.level >= level)
            .cloned()
            .collect();
        for record in &recent {
            self.rpc_log_record(conn, seq, record);
        }
        Ok(true)
    }

    fn rpc_log_record(&mut self, conn: ConnId, seq: u64, record: &LogRecord) {
        self.rpc_record(conn, seq, &|tx: &mut Vec<u8>| {
            wire::map(tx, 1);
            wire::str(tx, "Log");
            wire::str(tx, &record.line);
        });
    }

    /// Streams a log record to every RPC monitor that wants its level.
    pub(crate) fn rpc_feed_monitors(&mut self, record: &LogRecord) {
        let targets: Vec<(ConnId, u64)> = self
            .conns
            .rpc_monitors()
            .filter(|&(_, _, level)| record.level >= level)
            .map(|(c, seq, _)| (c, seq))
            .collect();
        for (conn, seq) in targets {
            self.rpc_log_record(conn, seq, record);
        }
    }

    fn rpc_stop(&mut self, conn: ConnId, seq: u64, r: &mut Reader<'_>) -> R<bool> {
        let mut stop = None;
        r.fields(&["Stop"], |k, r| {
            if k == "Stop" {
                stop = Some(r.uint()?);
                return Ok(true);
            }
            Ok(false)
        })?;
        if let (Some(c), Some(stop)) = (self.conns.get_mut(conn), stop) {
            if c.rpc.monitor.is_some_and(|(s, _)| s == stop) {
                c.rpc.monitor = None;
            }
            c.rpc.streams.retain(|s| s.seq != stop);
        }
        // Always succeeds, even when nothing matched (spec §1).
        self.rpc_reply(conn, seq, "", None);
        Ok(true)
    }

    fn rpc_stream(&mut self, conn: ConnId, seq: u64, r: &mut Reader<'_>) -> R<bool> {
        let mut kind = "";
        r.fields(&["Type"], |k, r| {
            if k == "Type" {
                kind = r.str()?;
                return Ok(true);
            }
            Ok(false)
        })?;
        let Some(c) = self.conns.get_mut(conn) else {
            return Ok(true);
        };
        let error = match Filter::parse(kind) {
            None => msg::INVALID_FILTER,
            Some(_) if c.rpc.streams.iter().any(|s| s.seq == seq) => msg::STREAM_EXISTS,
            Some(filter) => {
                c.rpc.streams.push(Stream { seq, filter });
                ""
            }
        };
        self.rpc_reply(conn, seq, error, None);
        Ok(true)
    }

    fn rpc_members_filtered(&mut self, conn: ConnId, seq: u64, r: &mut Reader<'_>) -> R<bool> {
        let mut name = "";
        let mut status = "";
        let mut tags: Vec<(&str, &str)> = Vec::new();
        r.fields(&["Name", "Status", "Tags"], |k, r| {
            match k {
                "Name" => name = r.str()?,
                "Status" => status = r.str()?,
                "Tags" => {
                    let n = r.map_len()?;
                    for _ in 0..n {
                        let k = r.str()?;
                        let v = r.str()?;
                        tags.push((k, v));
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let Some(filter) = MemberFilter::new(name, status, &tags) else {
            // An invalid expression closes the connection without a reply (Serf).
            let now = self.last_now;
            self.log(
                Level::Err,
                "agent.ipc: failed to compile regex in members-filtered",
                now,
            );
            return Ok(false);
        };
        self.rpc_members(conn, seq, false, Some(&filter));
        Ok(true)
    }
}

/// `members-filtered`: anchored regular expressions on name, status and tags.
pub(crate) struct MemberFilter {
    name: Option<regex_automata::meta::Regex>,
    status: Option<regex_automata::meta::Regex>,
    tags: Vec<(String, regex_automata::meta::Regex)>,
}

fn anchored(re: &str) -> Option<regex_automata::meta::Regex> {
    let pattern = alloc::format!("^(?:{re})$");
    regex_automata::meta::Regex::builder()
        .configure(
            regex_automata::meta::Config::new()
                .nfa_size_limit(Some(1 << 20))
                .onepass_size_limit(Some(1 << 20)),
        )
        .build(&pattern)
        .ok()
}

impl MemberFilter {
    pub(crate) fn new(name: &str, status: &str, tags: &[(&str, &str)]) -> Option<Self> {
        let opt = |re: &str| -> Option<Option<regex_automata::meta::Regex>> {
            if re.is_empty() {
                Some(None)
            } else {
                anchored(re).map(Some)
            }
        };
        let mut t = Vec::new();
        for (k, re) in tags {
            t.push((String::from(*k), anchored(re)?));
        }
        Some(MemberFilter {
            name: opt(name)?,
            status: opt(status)?,
            tags: t,
        })
    }

    pub(crate) fn matches(&self, m: &crate::cluster::MemberView) -> bool {
        let ok = |re: &Option<regex_automata::meta::Regex>, s: &str| {
            re.as_ref().is_none_or(|re| re.is_match(s))
        };
        ok(&self.name, &m.name)
            && ok(&self.status, m.status.as_str())
            && self.tags.iter().all(|(k, re)| {
                let v = m.tags.get(k).map_or("", String::as_str);
                re.is_match(v)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_as_serf_does() {
        assert_eq!(
            Filter::parse(""),
            Some(Filter(Vec::from([FilterItem::All])))
        );
        let f = Filter::parse("user:deploy,member-update").unwrap();
        assert!(f.user("deploy") && !f.user("other"));
        assert!(f.member("member-update") && !f.member("member-join"));
        assert_eq!(Filter::parse("bogus-event"), None);
    }
}
