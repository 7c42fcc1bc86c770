//! `reload` (RPC and HTTP-API command): the agent asks the runtime to re-read its
//! configuration ([`Effect::Reload`]) and parks the requests until the runtime says how it
//! went ([`Agent::reload_finished`]), so a broken file is an error the client sees, as in
//! Consul and Serf (the RPC reply's `Error`), not only a line in the agent's log.
//!
//! Requests that arrive while a reload is under way wait for that one: the runtime re-reads
//! the file after they asked, so its outcome is theirs too. A reload the runtime starts by
//! itself (SIGHUP) answers them the same way.

use alloc::string::String;

use crate::log::Level;
use crate::session::items;
use crate::time::Instant;
use crate::{Agent, Config, ConnId, Effect, Output};

/// Who waits for the outcome of a reload.
#[derive(Debug)]
pub(crate) enum ReloadWaiter {
    /// An RPC `reload` (its connection is parked until the reply).
    Rpc { conn: ConnId, seq: u64 },
    /// An HTTP-API `reload` job.
    Job(u32),
}

impl Agent {
    /// Parks `waiter` until the next reload finishes; asks the runtime for one unless a
    /// reload is already under way.
    pub(crate) fn request_reload(&mut self, waiter: ReloadWaiter) {
        if let ReloadWaiter::Rpc { conn, .. } = waiter
            && let Some(c) = self.conns.get_mut(conn)
        {
            c.rpc.parked = true;
        }
        if self.reload_waiters.is_empty() {
            self.emit(Output::Effect(Effect::Reload));
        }
        self.reload_waiters.push(waiter);
    }

    /// The runtime re-read the configuration, after [`Effect::Reload`] or on its own
    /// (SIGHUP): `Ok` applies it (as [`Agent::apply_config`]); `Err` is why it could not
    /// (a file that does not read or parse), logged at ERR with the running configuration
    /// kept. Either way every waiting `reload` is answered: the RPC reply carries the error
    /// in its header's `Error`, the HTTP-API command ends with status 0 or with status 1
    /// and the error.
    pub fn reload_finished(&mut self, outcome: Result<Config, String>, now: Instant) {
        let error = match outcome {
            Ok(config) => {
                self.apply_config(config, now);
                String::new()
            }
            Err(e) => {
                let text =
                    alloc::format!("agent: reload failed, keeping the running configuration: {e}");
                self.log(Level::Err, &text, now);
                e
            }
        };
        for waiter in core::mem::take(&mut self.reload_waiters) {
            match waiter {
                ReloadWaiter::Rpc { conn, seq } => {
                    self.rpc_reply(conn, seq, &error, None);
                    if let Some(c) = self.conns.get_mut(conn) {
                        c.rpc.parked = false;
                    }
                    self.wake.push(conn);
                }
                ReloadWaiter::Job(job) if error.is_empty() => {
                    self.job_item(job, items::message(job, "Configuration reloaded"));
                    self.end_job(job, 0, None, false, now);
                }
                ReloadWaiter::Job(job) => self.end_job(job, 1, Some(&error), false, now),
            }
        }
        self.settle(now);
    }
}
