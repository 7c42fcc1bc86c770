//! The member view both protocols show, and the membership commands (`join`, `leave`,
//! `force-leave`, `tags`, `event`) behind the RPC and the HTTP API. Until the gossip pools
//! are wired in, the view holds this node alone and user events are delivered locally.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use crate::json::Obj;
use crate::rpc::msgpack::{DecodeError, Reader};
use crate::rpc::wire::{self, msg};
use crate::time::Instant;
use crate::{Agent, ConnId, Effect, Output};

/// Serf's protocol range (min, max, cur), as the CLI reads it.
pub(crate) const PROTOCOL: [u8; 3] = [1, 5, 2];
/// Serf's delegate protocol range (min, max, cur).
pub(crate) const DELEGATE: [u8; 3] = [2, 5, 5];
/// Serf's limit on a user event's name plus payload.
pub(crate) const USER_EVENT_LIMIT: usize = 512;

/// One member, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberView {
    pub(crate) name: String,
    pub(crate) addr: IpAddr,
    pub(crate) port: u16,
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) status: &'static str,
}

impl MemberView {
    pub(crate) fn as_wire(&self) -> wire::Member<'_> {
        wire::Member {
            name: &self.name,
            addr: self.addr,
            port: self.port,
            tags: &self.tags,
            status: self.status,
            protocol: PROTOCOL,
            delegate: DELEGATE,
        }
    }

    /// The member as JSON, with Consul's field names.
    pub(crate) fn write_json(&self, m: &mut Obj<'_>) {
        let mut addr = String::new();
        let _ = core::fmt::Write::write_fmt(&mut addr, format_args!("{}", self.addr));
        let [pmin, pmax, pcur] = PROTOCOL;
        let [dmin, dmax, dcur] = DELEGATE;
        m.str("Addr", &addr);
        m.u64("DelegateCur", dcur.into());
        m.u64("DelegateMax", dmax.into());
        m.u64("DelegateMin", dmin.into());
        m.str("Name", &self.name);
        m.u64("Port", self.port.into());
        m.u64("ProtocolCur", pcur.into());
        m.u64("ProtocolMax", pmax.into());
        m.u64("ProtocolMin", pmin.into());
        m.str("Status", self.status);
        m.obj("Tags", |t| {
            for (k, v) in &self.tags {
                t.dyn_str(k, v);
            }
        });
    }
}

/// This node's membership state: its tags and the user-event clock.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    /// Tags set at runtime (`tags` command), over the configured ones.
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) deleted: Vec<String>,
    pub(crate) event_ltime: u64,
    pub(crate) leaving: bool,
}

type R<T> = Result<T, DecodeError>;

impl Agent {
    /// This node's tags: `role`, `dc`, `build`, `vsn`, then configured and runtime tags.
    pub(crate) fn self_tags(&self) -> Vec<(String, String)> {
        let mut tags: BTreeMap<String, String> = BTreeMap::new();
        let role = if self.cfg.server { "consul" } else { "node" };
        tags.insert("role".into(), role.into());
        tags.insert("dc".into(), self.cfg.datacenter.clone());
        tags.insert("build".into(), crate::VERSION.into());
        tags.insert("vsn".into(), "2".into());
        for (k, v) in &self.cfg.tags {
            tags.insert(k.clone(), v.clone());
        }
        for k in &self.membership.deleted {
            tags.remove(k);
        }
        for (k, v) in &self.membership.tags {
            tags.insert(k.clone(), v.clone());
        }
        tags.into_iter().collect()
    }

    /// The members of the LAN pool, or of the WAN pool (empty unless this is a server).
    pub(crate) fn member_views(&self, wan: bool) -> Vec<MemberView> {
        if wan && !self.cfg.server {
            return Vec::new();
        }
        let addr = if wan {
            self.cfg.wan_addr
        } else {
            self.cfg.lan_addr
        };
        let status = if self.membership.leaving {
            "leaving"
        } else {
            "alive"
        };
        Vec::from([MemberView {
            name: self.cfg.node_name.clone(),
            addr: addr.ip(),
            port: addr.port(),
            tags: self.self_tags(),
            status,
        }])
    }

    /// `serf_lan` / `serf_wan` sections of `stats`.
    pub(crate) fn pool_stats(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        let pool = |wan: bool| {
            let ms = self.member_views(wan);
            let count = |s: &str| ms.iter().filter(|m| m.status == s).count();
            Vec::from([
                ("encrypted".into(), "false".into()),
                (
                    "event_time".into(),
                    alloc::format!("{}", self.membership.event_ltime),
                ),
                ("failed".into(), alloc::format!("{}", count("failed"))),
                ("left".into(), alloc::format!("{}", count("left"))),
                ("members".into(), alloc::format!("{}", ms.len())),
            ])
        };
        let mut out = Vec::from([("serf_lan", pool(false))]);
        if self.cfg.server {
            out.push(("serf_wan", pool(true)));
        }
        out
    }

    /// Leave: peers learn the intent, then the runtime is asked to shut down.
    pub(crate) fn begin_leave(&mut self, now: Instant) {
        self.membership.leaving = true;
        self.log(
            crate::Level::Info,
            "agent: graceful leave, shutting down",
            now,
        );
        self.emit(Output::Effect(Effect::Shutdown));
    }

    pub(crate) fn rpc_join(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        now: Instant,
    ) -> R<bool> {
        let mut existing: Vec<&str> = Vec::new();
        let mut wan = false;
        r.fields(&["Existing", "WAN", "Replay"], |k, r| {
            match k {
                "Existing" => {
                    let n = r.array_len()?;
                    for _ in 0..n {
                        existing.push(r.str()?);
                    }
                }
                "WAN" => wan = r.bool()?,
                "Replay" => {
                    r.bool()?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let (num, error) = self.join(&existing, wan, now);
        self.rpc_reply(
            conn,
            seq,
            &error,
            Some(&|tx: &mut Vec<u8>| {
                wire::map(tx, 1);
                wire::str(tx, "Num");
                wire::int(tx, num.into());
            }),
        );
        Ok(true)
    }

    /// Joins the addresses; returns how many answered and the error text ("" for success,
    /// also for partial success).
    pub(crate) fn join(&mut self, addrs: &[&str], wan: bool, now: Instant) -> (i32, String) {
        if wan && !self.cfg.server {
            return (0, String::from(msg::WAN_NEEDS_SERVER));
        }
        if addrs.is_empty() {
            return (0, String::new());
        }
        let _ = now;
        let mut text = alloc::format!("{} error occurred:\n", addrs.len());
        for a in addrs {
            text.push_str(&alloc::format!(
                "\t* Failed to join {a}: gossip membership is not enabled in this build\n"
            ));
        }
        text.push('\n');
        (0, text)
    }

    pub(crate) fn rpc_force_leave(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        _now: Instant,
    ) -> R<bool> {
        r.fields(&["Node", "Prune"], |k, r| {
            match k {
                "Node" => {
                    r.str()?;
                }
                "Prune" => {
                    r.bool()?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        // An unknown node is no error (Serf 0.9.4); this node alone knows no failed ones.
        self.rpc_reply(conn, seq, "", None);
        Ok(true)
    }

    pub(crate) fn rpc_tags(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        _now: Instant,
    ) -> R<bool> {
        let mut set: Vec<(String, String)> = Vec::new();
        let mut delete: Vec<String> = Vec::new();
        r.fields(&["DeleteTags", "Tags"], |k, r| {
            match k {
                "DeleteTags" => {
                    let n = r.array_len()?;
                    for _ in 0..n {
                        delete.push(r.str()?.into());
                    }
                }
                "Tags" => {
                    let n = r.map_len()?;
                    for _ in 0..n {
                        let k = r.str()?;
                        let v = r.str()?;
                        set.push((k.into(), v.into()));
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        // Deletes first, then merges (Serf's order).
        for k in delete {
            self.membership.tags.remove(&k);
            self.membership.deleted.push(k);
        }
        for (k, v) in set {
            self.membership.deleted.retain(|d| *d != k);
            self.membership.tags.insert(k, v);
        }
        self.rpc_reply(conn, seq, "", None);
        Ok(true)
    }

    pub(crate) fn rpc_event(
        &mut self,
        conn: ConnId,
        seq: u64,
        r: &mut Reader<'_>,
        _now: Instant,
    ) -> R<bool> {
        let mut name = "";
        let mut payload: &[u8] = &[];
        let mut coalesce = false;
        r.fields(&["Coalesce", "Name", "Payload"], |k, r| {
            match k {
                "Coalesce" => coalesce = r.bool()?,
                "Name" => name = r.str()?,
                "Payload" => payload = r.bytes()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if name.len() + payload.len() > USER_EVENT_LIMIT {
            self.rpc_reply(conn, seq, msg::EVENT_TOO_LARGE, None);
            return Ok(true);
        }
        self.rpc_reply(conn, seq, "", None);
        self.membership.event_ltime += 1;
        let ltime = self.membership.event_ltime;
        let (name, payload) = (String::from(name), Vec::from(payload));
        self.deliver_user_event(&name, &payload, coalesce, ltime);
        Ok(true)
    }

    /// Sends a user event to every `stream` that wants it.
    pub(crate) fn deliver_user_event(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
        ltime: u64,
    ) {
        let targets = self.conns.rpc_streams(|f| f.user(name));
        for (conn, seq) in targets {
            self.rpc_record(conn, seq, &|tx: &mut Vec<u8>| {
                wire::map(tx, 5);
                wire::str(tx, "Coalesce");
                wire::bool(tx, coalesce);
                wire::str(tx, "Event");
                wire::str(tx, "user");
                wire::str(tx, "LTime");
                wire::uint(tx, ltime);
                wire::str(tx, "Name");
                wire::str(tx, name);
                wire::str(tx, "Payload");
                wire::bin(tx, payload);
            });
        }
    }
}
