//! Built-in commands that finish within the call that starts them. (`monitor`, which
//! streams, lives with the jobs.) Each produces its items, then a `status`: 0 on success,
//! -10 with the usage line on bad arguments.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::Builtin;
use crate::json::Obj;
use crate::session::items::{self, Item};
use crate::session::key_str;
use crate::time::Instant;
use crate::{Agent, VERSION};

/// `members -wan`: the WAN pool's members (none on a client, as Consul's `members-wan`).
fn wan_flag(args: &[String]) -> bool {
    args.first().is_some_and(|a| a == "-wan")
}

impl Agent {
    pub(crate) fn run_builtin(&mut self, id: u32, b: Builtin, args: &[String], now: Instant) {
        let (name, ok) = match b {
            Builtin::Help => ("help", args.len() <= 1),
            Builtin::Version => ("version", args.is_empty()),
            Builtin::Session => ("session", args.is_empty()),
            Builtin::Echo => ("echo", true),
            Builtin::Jobs => ("jobs", args.is_empty()),
            Builtin::Kill => ("kill", args.len() == 1),
            Builtin::Stats => ("stats", args.is_empty()),
            Builtin::Members => (
                "members",
                args.is_empty() || (args.len() == 1 && wan_flag(args)),
            ),
            Builtin::Monitor => ("monitor", true),
            Builtin::Events | Builtin::Join => ("", true),
            Builtin::Leave => ("leave", args.is_empty()),
            Builtin::Reload => ("reload", args.is_empty()),
            Builtin::ForceLeave => (
                "force-leave",
                matches!(args, [n] if n != "-prune") || matches!(args, [p, _] if p == "-prune"),
            ),
        };
        if !ok {
            return self.usage_error(id, name, now);
        }
        if b == Builtin::Reload {
            // Ends when the runtime has reloaded (`reload_finished`).
            return self.request_reload(crate::reload::ReloadWaiter::Job(id));
        }
        let jid = u64::from(id);
        let result: Result<Option<Item>, (i32, String)> = match b {
            Builtin::Help => self.help_item(jid, args.first().map(String::as_str)),
            Builtin::Version => Ok(Some(items::build(|o| {
                o.u64("jobId", jid);
                o.str("type", "version");
                o.str("version", VERSION);
            }))),
            Builtin::Session => Ok(self.session_item(id)),
            Builtin::Echo => Ok(Some(items::message(id, &args.join(" ")))),
            Builtin::Jobs => Ok(self.jobs_item(id)),
            Builtin::Kill => self.kill(id, &args[0], now),
            Builtin::Stats => Ok(Some(items::build(|o| {
                o.u64("jobId", jid);
                o.obj("stats", |s| self.write_stats(s));
                o.str("type", "stats");
            }))),
            Builtin::Members => Ok(Some(items::build(|o| {
                o.u64("jobId", jid);
                o.arr("members", |a| {
                    for m in self.member_views(wan_flag(args)) {
                        a.obj(|o| crate::members::write_member_json(&m, o));
                    }
                });
                o.str("type", "members");
            }))),
            Builtin::Monitor | Builtin::Events | Builtin::Join | Builtin::Reload => Ok(None),
            Builtin::Leave => {
                self.begin_leave(now);
                Ok(Some(items::message(id, "Graceful leave started")))
            }
            Builtin::ForceLeave => {
                let (prune, node) = match args {
                    [p, n] if p == "-prune" => (true, n.as_str()),
                    [n, ..] => (false, n.as_str()),
                    [] => (false, ""),
                };
                match self.cluster.force_leave(node, prune, now) {
                    Ok(()) => {
                        self.drain_cluster(now);
                        Ok(None)
                    }
                    Err(e) => Err((1, alloc::format!("{e}"))),
                }
            }
        };
        match result {
            Ok(item) => {
                if let Some(item) = item {
                    self.job_item(id, item);
                }
                self.end_job(id, 0, None, false, now);
            }
            Err((code, msg)) => self.end_job(id, code, Some(&msg), false, now),
        }
    }

    fn help_item(&self, jid: u64, name: Option<&str>) -> Result<Option<Item>, (i32, String)> {
        let list = self.registry.list();
        match name {
            None => Ok(Some(items::build(|o| {
                o.arr("commands", |a| {
                    for &(n, s, _) in &list {
                        a.obj(|c| {
                            c.str("name", n);
                            c.str("summary", s);
                        });
                    }
                });
                o.u64("jobId", jid);
                o.str("type", "help");
            }))),
            Some(name) => match list.iter().find(|&&(n, ..)| n == name) {
                Some(&(n, s, u)) => Ok(Some(items::build(|o| {
                    o.obj("command", |c| {
                        c.str("name", n);
                        c.str("summary", s);
                        c.str("usage", u);
                    });
                    o.u64("jobId", jid);
                    o.str("type", "help");
                }))),
                None => Err((-10, format!("help: {name}: command not found"))),
            },
        }
    }

    fn session_item(&self, id: u32) -> Option<Item> {
        let job = self.jobs.get(&id)?;
        let s = self.sessions.get(&job.session)?;
        Some(items::build(|o| {
            o.u64("consumers", s.consumers.len() as u64);
            o.u64("createTime", s.created_ms);
            o.u64("jobId", id.into());
            o.u64("jobs", s.jobs.len() as u64);
            o.u64("pid", self.cfg.host.pid.into());
            o.str("sessionId", key_str(&s.key));
            o.str("type", "session");
        }))
    }

    fn jobs_item(&self, id: u32) -> Option<Item> {
        let key = self.jobs.get(&id)?.session;
        let s = self.sessions.get(&key)?;
        Some(items::build(|o| {
            o.u64("jobId", id.into());
            o.arr("jobs", |a| {
                for j in s.jobs.iter().filter(|&&j| j != id) {
                    if let Some(job) = self.jobs.get(j) {
                        a.obj(|e| {
                            e.bool("background", job.background);
                            e.str("command", &job.line);
                            e.bool("foreground", s.foreground == Some(*j));
                            e.u64("id", (*j).into());
                            e.str("status", "RUNNING");
                        });
                    }
                }
            });
            o.str("type", "jobs");
        }))
    }

    fn kill(&mut self, id: u32, arg: &str, now: Instant) -> Result<Option<Item>, (i32, String)> {
        let Ok(target) = arg.parse::<u32>() else {
            let usage = self.registry.usage("kill").unwrap_or("kill");
            return Err((-10, format!("usage: {usage}")));
        };
        let key = self.jobs.get(&id).map(|j| j.session);
        let same_session = self
            .jobs
            .get(&target)
            .is_some_and(|t| Some(t.session) == key && !t.ended && target != id);
        if !same_session {
            return Err((1, format!("kill: no such job: {target}")));
        }
        self.interrupt(target, now);
        Ok(Some(items::build(|o| {
            o.u64("jobId", id.into());
            o.u64("killed", target.into());
            o.str("type", "kill");
        })))
    }

    /// `stats` as a map of maps of strings, the shape Consul's RPC `stats` uses.
    pub(crate) fn write_stats(&self, o: &mut Obj<'_>) {
        for (section, entries) in self.stats_sections() {
            o.dyn_obj(section, |m| {
                for (k, v) in &entries {
                    m.dyn_str(k, v);
                }
            });
        }
    }

    /// The sections of `stats`, sorted by section and key.
    pub(crate) fn stats_sections(&self) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
        let s = &self.stats;
        let n = |v: u64| format!("{v}");
        let mut agent = Vec::from([
            ("bytes_discarded", n(s.bytes_discarded)),
            ("connections_accepted", n(s.connections_accepted)),
            ("connections_closed", n(s.connections_closed)),
            ("connections_refused", n(s.connections_refused)),
            ("connections_stalled", n(s.stall_closes)),
            ("jobs", n(self.jobs.len() as u64)),
            ("jobs_started", n(s.jobs_started)),
            ("name", self.cfg.node_name.clone()),
            ("reloads", n(s.reloads)),
            ("sessions", n(self.sessions.len() as u64)),
            ("sessions_created", n(s.sessions_created)),
        ]);
        agent.sort_unstable_by_key(|&(k, _)| k);
        let mut http = Vec::from([
            ("api_failed", n(s.api_failed)),
            ("api_interrupted", n(s.api_interrupted)),
            ("api_refused", n(s.api_refused)),
            ("api_succeeded", n(s.api_succeeded)),
            ("bytes_in", n(s.bytes_in)),
            ("bytes_out", n(s.bytes_out)),
            ("consumers_expired", n(s.consumers_expired)),
            ("errors", n(s.http_errors)),
            ("requests", n(s.http_requests)),
            ("sessions_evicted", n(s.sessions_evicted)),
            ("sessions_expired", n(s.sessions_expired)),
        ]);
        http.sort_unstable_by_key(|&(k, _)| k);
        let build = Vec::from([("version", String::from(VERSION))]);
        // Stream records dropped for slow readers are counted here (never buffered).
        let rpc = Vec::from([
            ("decode_errors", n(s.rpc_decode_errors)),
            ("records_dropped", n(s.rpc_records_dropped)),
            ("replies", n(s.rpc_replies)),
            ("requests", n(s.rpc_requests)),
        ]);
        // The gossip layer's own counters (both pools): what arrived, what was refused.
        let g = self.cluster.stats();
        let gossip = Vec::from([
            ("bad_datagrams", n(g.bad_datagrams)),
            ("datagrams_dropped", n(g.datagrams_dropped)),
            ("datagrams_in", n(g.datagrams_in)),
            ("datagrams_out", n(g.datagrams_out)),
            ("decrypt_failures", n(g.decrypt_failures)),
            ("events_dropped", n(g.events_dropped)),
            ("members_refused", n(g.members_refused)),
            ("stranger_claims", n(g.stranger_claims)),
        ]);
        let runtime = Vec::from([
            ("pid", n(self.cfg.host.pid.into())),
            ("runtime", self.cfg.host.runtime.clone()),
        ]);
        Vec::from([
            ("agent", agent),
            ("build", build),
            ("gossip", gossip),
            ("http", http),
            ("rpc", rpc),
            ("runtime", runtime),
        ])
    }
}
