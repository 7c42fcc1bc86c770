//! Persistence as an effect: the core says which bytes go to which of the agent's state
//! files ([`Effect::Persist`]); the runtime, which knows the paths, writes them and answers
//! [`Agent::persisted`]. A write that fails is logged and counted, and the agent keeps
//! running on what it has in memory (Serf's snapshotter and keyring file do the same).
//!
//! The runtime must perform the writes of one file in the order they were emitted (an
//! append after a replace lands in the new file).

use alloc::vec::Vec;

use crate::log::Level;
use crate::time::Instant;
use crate::{Agent, Effect, Output};

/// One of the agent's state files. Which ones exist is the runtime's choice
/// ([`crate::Config::state_files`]); the core emits writes only for those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateFile {
    /// `-snapshot`: Serf's append-only member and clock log.
    Snapshot,
    /// `-keyring-file`: the gossip keys, as JSON.
    Keyring,
    /// `-tags-file`: this node's tags, as JSON.
    Tags,
}

impl StateFile {
    /// How logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            StateFile::Snapshot => "snapshot",
            StateFile::Keyring => "keyring file",
            StateFile::Tags => "tags file",
        }
    }
}

/// How [`Effect::Persist`] writes its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileWrite {
    /// Added at the end of the file (created if missing).
    Append,
    /// The file's whole new content, replacing it atomically (write aside, then rename), so
    /// a crash leaves the old content or the new, never half of it.
    Replace,
}

/// Which state files the runtime keeps: the core emits [`Effect::Persist`] only for these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StateFiles {
    /// `-snapshot PATH` was given.
    pub snapshot: bool,
    /// `-keyring-file PATH` was given.
    pub keyring: bool,
    /// `-tags-file PATH` was given.
    pub tags: bool,
}

impl StateFiles {
    /// Whether the runtime keeps `file`.
    pub fn has(&self, file: StateFile) -> bool {
        match file {
            StateFile::Snapshot => self.snapshot,
            StateFile::Keyring => self.keyring,
            StateFile::Tags => self.tags,
        }
    }
}

/// The tags the agent publishes itself, never written to the tags file.
const BUILT_IN_TAGS: [&str; 4] = ["role", "dc", "build", "vsn"];

impl Agent {
    /// The answer to [`Effect::Persist`]: `Err` says why the write failed; it is logged
    /// at ERR and counted ([`Agent::persist_failures`]), and the agent keeps running.
    pub fn persisted(&mut self, file: StateFile, result: Result<(), &str>, now: Instant) {
        if let Err(why) = result {
            self.persist_failures += 1;
            if file == StateFile::Snapshot {
                self.snapshot_write_failed();
            }
            let text = alloc::format!("agent: failed to write the {}: {why}", file.as_str());
            self.log(Level::Err, &text, now);
        }
        self.settle(now);
    }

    /// Writes to state files that failed since start.
    pub fn persist_failures(&self) -> u64 {
        self.persist_failures
    }

    /// Writes this node's tags to the tags file (after a `tags` command), as Serf does:
    /// indented JSON. The tags the agent sets itself (`role`, `dc`, `build`, `vsn`) are left
    /// out, so a restart with other flags or another version does not bring back old ones.
    pub(crate) fn persist_tags(&mut self) {
        if !self.cfg.state_files.tags {
            return;
        }
        let tags: alloc::collections::BTreeMap<_, _> = self
            .cluster
            .tags()
            .into_iter()
            .filter(|(k, _)| !BUILT_IN_TAGS.contains(&k.as_str()))
            .collect();
        let mut bytes = serde_json::to_vec_pretty(&tags).unwrap_or_default();
        bytes.push(b'\n');
        self.persist(StateFile::Tags, FileWrite::Replace, bytes);
    }

    /// Asks the runtime to write `bytes` to `file`, if it keeps that file.
    pub(crate) fn persist(&mut self, file: StateFile, write: FileWrite, bytes: Vec<u8>) {
        if self.cfg.state_files.has(file) {
            self.emit(Output::Effect(Effect::Persist { file, write, bytes }));
        }
    }
}
