//! Built-in commands that finish within the call that starts them. (`monitor`, which
//! streams, lives with the jobs.) Each produces its items, then a `status`: 0 on success,
//! -10 with the usage line on bad arguments.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::Builtin;
use crate::cluster::Pool;
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
            Builtin::Version => Ok(Some(items::build_in(&mut self.scratch, |o| {
                o.u64("jobId", jid);
                o.str("type", "version");
                o.str("version", VERSION);
            }))),
            Builtin::Session => Ok(self.session_item(id)),
            Builtin::Echo => Ok(Some(items::message(id, &args.join(" ")))),
            Builtin::Jobs => Ok(self.jobs_item(id)),
            Builtin::Kill => self.kill(id, &args[0], now),
            Builtin::Stats => {
                // The shared buffer, taken out while the counters are read.
                let mut buf = core::mem::take(&mut self.scratch);
                let item = items::build_in(&mut buf, |o| {
                    o.u64("jobId", jid);
                    o.obj("stats", |s| self.write_stats(s));
                    o.str("type", "stats");
                });
                self.scratch = buf;
                Ok(Some(item))
            }
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
                // Ends once the leave has spread, as the RPC `leave` is answered, so that a
                // caller who stops the process at the answer leaves peers showing `left`.
                self.job_item(id, items::message(id, "Graceful leave started"));
                self.membership.leave_jobs.push(id);
                self.begin_leave(now);
                // Already left: ended by this drain.
                self.drain_cluster(now);
                return;
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
        self.for_each_stats_section(false, |section, entries| {
            o.dyn_obj(section, |m| {
                let mut buf = [0; 20];
                for (k, v) in entries {
                    m.dyn_str(k, v.text(&mut buf));
                }
            });
        });
    }

    /// How many sections [`Agent::for_each_stats_section`] visits.
    pub(crate) fn stats_section_count(&self, pools: bool) -> usize {
        6 + if pools {
            // event_handlers, serf, serf_lan, [serf_wan,] tags
            4 + usize::from(self.cluster.has_pool(Pool::Wan))
        } else {
            0
        }
    }

    /// The sections of `stats`, sorted by section and key, each handed to `f` in turn;
    /// with `pools`, the RPC's Serf sections (`event_handlers`, `serf`, `serf_lan`,
    /// `serf_wan`, `tags`) are visited in their places. Numbers are formatted as they are
    /// written (`stats` is polled every second by monitoring tools): only the `tags` section
    /// (a borrowed map and its list) and the handlers' `event:name` keys allocate.
    pub(crate) fn for_each_stats_section(
        &self,
        pools: bool,
        mut f: impl FnMut(&'static str, &[(&str, Stat<'_>)]),
    ) {
        use Stat::{Num, Str};
        let s = &self.stats;
        let len = |n: usize| Num(n as u64);
        f(
            "agent",
            &[
                ("bytes_discarded", Num(s.bytes_discarded)),
                ("connections_accepted", Num(s.connections_accepted)),
                ("connections_closed", Num(s.connections_closed)),
                ("connections_refused", Num(s.connections_refused)),
                ("connections_stalled", Num(s.stall_closes)),
                ("jobs", len(self.jobs.len())),
                ("jobs_started", Num(s.jobs_started)),
                ("name", Str(&self.cfg.node_name)),
                ("reloads", Num(s.reloads)),
                ("sessions", len(self.sessions.len())),
                ("sessions_created", Num(s.sessions_created)),
            ],
        );
        f("build", &[("version", Str(VERSION))]);
        if pools {
            let handlers = self.handler_stats_keys();
            let entries: Vec<(&str, Stat<'_>)> =
                handlers.iter().map(|(k, v)| (k.as_str(), Str(v))).collect();
            f("event_handlers", &entries);
        }
        // The gossip layer's own counters (both pools): what arrived, what was refused.
        let g = self.cluster.stats();
        f(
            "gossip",
            &[
                ("bad_datagrams", Num(g.bad_datagrams)),
                ("coordinate_samples", Num(g.coordinate_samples)),
                ("coordinates_rejected", Num(g.coordinates_rejected)),
                ("datagrams_dropped", Num(g.datagrams_dropped)),
                ("datagrams_in", Num(g.datagrams_in)),
                ("datagrams_out", Num(g.datagrams_out)),
                ("decrypt_failures", Num(g.decrypt_failures)),
                ("events_dropped", Num(g.events_dropped)),
                ("members_refused", Num(g.members_refused)),
                ("stranger_claims", Num(g.stranger_claims)),
            ],
        );
        f(
            "http",
            &[
                ("api_failed", Num(s.api_failed)),
                ("api_interrupted", Num(s.api_interrupted)),
                ("api_refused", Num(s.api_refused)),
                ("api_succeeded", Num(s.api_succeeded)),
                ("bytes_in", Num(s.bytes_in)),
                ("bytes_out", Num(s.bytes_out)),
                ("consumers_expired", Num(s.consumers_expired)),
                ("errors", Num(s.http_errors)),
                ("requests", Num(s.http_requests)),
                ("sessions_evicted", Num(s.sessions_evicted)),
                ("sessions_expired", Num(s.sessions_expired)),
            ],
        );
        // Stream records dropped for slow readers are counted here (never buffered).
        f(
            "rpc",
            &[
                ("decode_errors", Num(s.rpc_decode_errors)),
                ("records_dropped", Num(s.rpc_records_dropped)),
                ("replies", Num(s.rpc_replies)),
                ("requests", Num(s.rpc_requests)),
            ],
        );
        f(
            "runtime",
            &[
                ("pid", Num(self.cfg.host.pid.into())),
                ("runtime", Str(&self.cfg.host.runtime)),
            ],
        );
        if pools {
            f("serf", &self.serf_stats());
            f("serf_lan", &self.pool_stats(Pool::Lan));
            if self.cluster.has_pool(Pool::Wan) {
                f("serf_wan", &self.pool_stats(Pool::Wan));
            }
            // This node's tags, borrowed (the map and this list are the RPC's only
            // allocations without handlers).
            let tags = self.cluster.tags_ref();
            let entries: Vec<(&str, Stat<'_>)> =
                tags.into_iter().map(|(k, v)| (k, Str(v))).collect();
            f("tags", &entries);
        }
    }
}

/// A value of `stats`: Consul's RPC sends every value as a string.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stat<'a> {
    Num(u64),
    Str(&'a str),
}

impl Stat<'_> {
    /// The value as text; a number is formatted into `buf`.
    pub(crate) fn text<'b>(&'b self, buf: &'b mut [u8; 20]) -> &'b str {
        match *self {
            Stat::Str(s) => s,
            Stat::Num(v) => crate::json::decimal(v, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn stats_sections_and_keys_are_sorted_and_counted() {
        let agent = Agent::new(Config::default(), 1, Instant::from_millis(1));
        for pools in [false, true] {
            let mut names = alloc::vec::Vec::new();
            agent.for_each_stats_section(pools, |name, entries| {
                names.push(name);
                assert!(entries.is_sorted_by_key(|&(k, _)| k), "{name}");
            });
            assert!(names.is_sorted(), "{names:?}");
            assert_eq!(names.len(), agent.stats_section_count(pools));
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut buf = [0; 20];
        assert_eq!(Stat::Num(0).text(&mut buf), "0");
        assert_eq!(Stat::Num(907).text(&mut buf), "907");
        assert_eq!(Stat::Num(u64::MAX).text(&mut buf), "18446744073709551615");
        assert_eq!(Stat::Str("x").text(&mut buf), "x");
    }
}
