//! What the cluster tells the agent: member and user events, join outcomes, and errors with
//! their exact wire text (Serf/Consul's), in one place so the spec can be checked against it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::member::MemberView;
use super::wire::{TAGS_LIMIT, USER_EVENT_LIMIT};
use super::{JoinId, Pool};

/// A member event's kind, named as on Serf's `stream`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberEvent {
    /// A member became alive (first seen, or back from failed/left).
    Join,
    /// A member left (gracefully, or by `force-leave`).
    Leave,
    /// A member stopped answering and was declared failed.
    Failed,
    /// A member's name or tags changed.
    Update,
    /// A left or failed member was removed from the member list.
    Reap,
}

impl MemberEvent {
    /// The event's name on Serf's `stream`: `member-join`, `member-leave`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            MemberEvent::Join => "member-join",
            MemberEvent::Leave => "member-leave",
            MemberEvent::Failed => "member-failed",
            MemberEvent::Update => "member-update",
            MemberEvent::Reap => "member-reap",
        }
    }
}

/// A user event (Serf's `event`), delivered once on every node, the sender included.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserEvent {
    /// The event's Lamport time.
    pub ltime: u64,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Whether a later event of the same name may replace this one while it is still queued.
    pub coalesce: bool,
}

/// One event, drained with [`super::Cluster::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    /// Members changed (Serf sends each with one or more members; this sends one).
    Member {
        /// What happened.
        kind: MemberEvent,
        /// In which pool.
        pool: Pool,
        /// The members it happened to, as they are now.
        members: Vec<MemberView>,
    },
    /// A user event (LAN pool).
    User(UserEvent),
    /// A query this node passes the filters of (LAN pool), open for
    /// [`super::Cluster::respond`] until its deadline.
    Query(super::QueryEvent),
    /// The first ack from a member for a query this node started.
    QueryAck {
        /// The query.
        query: super::QueryId,
        /// The member's name.
        from: String,
    },
    /// The first response from a member for a query this node started.
    QueryResponse {
        /// The query.
        query: super::QueryId,
        /// The member's name.
        from: String,
        /// What it answered.
        payload: Vec<u8>,
    },
    /// A query this node started is over: no more acks or responses are reported.
    QueryDone(super::QueryId),
}

/// Why a join reached none of its addresses: Serf's multierror text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinError {
    /// One line per address, `Failed to join <addr>: <reason>`.
    pub failures: Vec<String>,
}

impl fmt::Display for JoinError {
    /// hashicorp/go-multierror's list format:
    /// `1 error occurred:\n\t* Failed to join 127.0.0.1:9: no response\n\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failures.len() {
            1 => f.write_str("1 error occurred:\n")?,
            n => writeln!(f, "{n} errors occurred:")?,
        }
        for failure in &self.failures {
            writeln!(f, "\t* {failure}")?;
        }
        f.write_str("\n")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for JoinError {}

/// How a join ended, drained with [`super::Cluster::poll_join`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinOutcome {
    /// The id [`super::Cluster::join`] returned.
    pub id: JoinId,
    /// The pool joined.
    pub pool: Pool,
    /// How many addresses answered (Serf's `Num`).
    pub joined: u32,
    /// Every address that did not answer, `Failed to join <addr>: <reason>` (memberlist's
    /// log line), also when others did.
    pub failures: Vec<String>,
    /// Set only when no address answered (partial success is no error).
    pub error: Option<JoinError>,
}

/// A refused cluster command. `Display` gives the exact text Serf/Consul send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterError {
    /// WAN join on a client.
    NotServer,
    /// User event name plus payload over [`USER_EVENT_LIMIT`].
    UserEventTooLarge,
    /// Encoded tags over [`TAGS_LIMIT`].
    TagsTooLarge,
    /// More joins in progress than `limits.max_joins`.
    TooManyJoins,
    /// The node has left (or is leaving) the cluster.
    Left,
    /// A join named more distinct addresses than [`super::MAX_JOIN_ADDRS`]; none was tried.
    TooManyJoinAddrs {
        /// How many distinct addresses it named.
        given: usize,
    },
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::NotServer => f.write_str("Must be a server to join WAN cluster"),
            ClusterError::UserEventTooLarge => write!(
                f,
                "user event exceeds configured limit of {USER_EVENT_LIMIT} bytes before encoding"
            ),
            ClusterError::TagsTooLarge => {
                write!(
                    f,
                    "Encoded length of tags exceeds limit of {TAGS_LIMIT} bytes"
                )
            }
            ClusterError::TooManyJoins => f.write_str("too many joins in progress"),
            ClusterError::Left => f.write_str("agent has left the cluster"),
            ClusterError::TooManyJoinAddrs { given } => write!(
                f,
                "too many addresses to join: {given} (limit {}); nothing was joined",
                super::MAX_JOIN_ADDRS
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ClusterError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn error_texts_are_serfs() {
        assert_eq!(
            ClusterError::NotServer.to_string(),
            "Must be a server to join WAN cluster"
        );
        assert_eq!(
            ClusterError::UserEventTooLarge.to_string(),
            "user event exceeds configured limit of 512 bytes before encoding"
        );
        assert_eq!(
            ClusterError::TagsTooLarge.to_string(),
            "Encoded length of tags exceeds limit of 512 bytes"
        );
        let one = JoinError {
            failures: Vec::from(["Failed to join 127.0.0.1:9: no response".to_string()]),
        };
        assert_eq!(
            one.to_string(),
            "1 error occurred:\n\t* Failed to join 127.0.0.1:9: no response\n\n"
        );
        let two = JoinError {
            failures: Vec::from(["a".to_string(), "b".to_string()]),
        };
        assert_eq!(two.to_string(), "2 errors occurred:\n\t* a\n\t* b\n\n");
    }
}
