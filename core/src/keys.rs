//! The keyring commands as the RPC sees them (`install-key`, `use-key`, `remove-key`,
//! `list-keys`), and the keyring file.
//!
//! Each command starts a key query on every member ([`Cluster::key_query`]), parks its
//! connection, folds the members' answers, and replies once every member counted has
//! answered or the query's deadline passed: Serf's header error (`N/M nodes reported
//! failure`, `N/M nodes reported success`, or the origin's own refusal such as `illegal
//! base64 data at input byte N`) and the body `{"Keys": {key: count} | nil, "Messages":
//! {node: text}, "NumErr", "NumNodes", "NumResp"}` (Keys only for `list-keys`).
//!
//! Whenever a key query changes this node's keyring and the runtime keeps a keyring file
//! (`-keyring-file`), the agent asks for it to be rewritten ([`Effect::Persist`]) as Serf
//! writes it: an indented JSON list of base64 keys, primary first.
//!
//! [`Cluster::key_query`]: crate::cluster::Cluster::key_query
//! [`Effect::Persist`]: crate::Effect::Persist

use alloc::string::String;
use alloc::vec::Vec;

use crate::cluster::{ClusterEvent, GossipKey, KeyOp, KeyResponse};
use crate::log::Level;
use crate::persist::{FileWrite, StateFile};
use crate::rpc::msgpack::{DecodeError, Reader};
use crate::rpc::wire;
use crate::time::Instant;
use crate::{Agent, ConnId};

/// An RPC key command waiting for the members' answers.
#[derive(Debug)]
pub(crate) struct KeyWaiter {
    conn: ConnId,
    seq: u64,
    op: KeyOp,
    resp: KeyResponse,
}

/// The reply body (Serf's IPC `keyResponse`, fields sorted).
fn write_body(tx: &mut Vec<u8>, op: KeyOp, resp: &KeyResponse) {
    wire::map(tx, 5);
    wire::str(tx, "Keys");
    if op == KeyOp::List {
        wire::map(tx, resp.keys.len());
        for (key, n) in &resp.keys {
            wire::str(tx, key);
            wire::uint(tx, u64::from(*n));
        }
    } else {
        wire::nil(tx);
    }
    wire::str(tx, "Messages");
    wire::map(tx, resp.messages.len());
    for (node, text) in &resp.messages {
        wire::str(tx, node);
        wire::str(tx, text);
    }
    wire::str(tx, "NumErr");
    wire::uint(tx, u64::from(resp.num_err));
    wire::str(tx, "NumNodes");
    wire::uint(tx, u64::from(resp.num_nodes));
    wire::str(tx, "NumResp");
    wire::uint(tx, u64::from(resp.num_resp));
}

/// The keyring file's content, as Serf writes it: `json.MarshalIndent(keys, "", "  ")`.
pub fn keyring_file_json(keys: &[GossipKey]) -> Vec<u8> {
    let list: Vec<String> = keys.iter().map(GossipKey::to_base64).collect();
    serde_json::to_vec_pretty(&list).unwrap_or_default()
}

impl Agent {
    /// `install-key`, `use-key`, `remove-key` (body `{"Key": base64}`) and `list-keys`.
    pub(crate) fn rpc_key(
        &mut self,
        conn: ConnId,
        seq: u64,
        op: KeyOp,
        r: &mut Reader<'_>,
        now: Instant,
    ) -> Result<bool, DecodeError> {
        let mut key = "";
        if op != KeyOp::List {
            r.fields(&["Key"], |k, r| {
                if k == "Key" {
                    key = r.str()?;
                    return Ok(true);
                }
                Ok(false)
            })?;
        }
        self.log(Level::Info, op.initiating(), now);
        match self.cluster.key_query(op, key, now) {
            Ok((id, resp)) => {
                if let Some(c) = self.conns.get_mut(conn) {
                    // Requests behind it wait: answers stay in order.
                    c.rpc.parked = true;
                }
                self.membership.key_ops.insert(
                    id.0,
                    KeyWaiter {
                        conn,
                        seq,
                        op,
                        resp,
                    },
                );
                // This node's own answer is among the events drained here.
                self.drain_cluster(now);
            }
            Err(e) => {
                let text = alloc::format!("{e}");
                let resp = KeyResponse::default();
                self.rpc_reply(
                    conn,
                    seq,
                    &text,
                    Some(&|tx: &mut Vec<u8>| write_body(tx, op, &resp)),
                );
            }
        }
        Ok(true)
    }

    /// A query event for a key operation this node started; `false` if it is not one.
    pub(crate) fn key_query_event(&mut self, event: &ClusterEvent) -> bool {
        match event {
            ClusterEvent::QueryResponse {
                query,
                from,
                payload,
            } => {
                let Some(w) = self.membership.key_ops.get_mut(&query.0) else {
                    return false;
                };
                w.resp.record(from, payload);
                if w.resp.complete() {
                    self.finish_key_op(query.0);
                }
                true
            }
            ClusterEvent::QueryDone(query) => {
                if !self.membership.key_ops.contains_key(&query.0) {
                    return false;
                }
                self.finish_key_op(query.0);
                true
            }
            _ => false,
        }
    }

    fn finish_key_op(&mut self, ltime: u64) {
        let Some(w) = self.membership.key_ops.remove(&ltime) else {
            return;
        };
        let error = w.resp.error().unwrap_or_default();
        self.rpc_reply(
            w.conn,
            w.seq,
            &error,
            Some(&|tx: &mut Vec<u8>| write_body(tx, w.op, &w.resp)),
        );
        if let Some(c) = self.conns.get_mut(w.conn) {
            c.rpc.parked = false;
        }
        self.wake.push(w.conn);
    }

    /// After the cluster ran: log what key queries did here, and persist a changed keyring.
    pub(crate) fn keyring_after_cluster(&mut self, now: Instant) {
        while let Some((level, text)) = self.cluster.poll_keyring_note() {
            self.log(level, &text, now);
        }
        let changes = self.cluster.keyring_changes();
        if changes != self.membership.keyring_persisted {
            self.membership.keyring_persisted = changes;
            self.persist_keyring();
        }
    }

    /// Writes the keyring file (if the runtime keeps one) from the keyring in force.
    pub(crate) fn persist_keyring(&mut self) {
        if !self.cfg.state_files.keyring {
            return;
        }
        let bytes = keyring_file_json(self.cluster.config().keyring.keys());
        self.persist(StateFile::Keyring, FileWrite::Replace, bytes);
    }
}
