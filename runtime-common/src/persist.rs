//! Writing the agent's state files (`Effect::Persist`), the same in both runtimes: the
//! paths the flags name, appends and atomic replaces. Writes are small (a snapshot line, a
//! keyring, a tags map) and happen on the event loop, in the order the agent emitted them.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use tandem_core::{FileWrite, Snapshot, SnapshotReader, StateFile, StateFiles};

/// Where the agent's state files are (`-snapshot`, `-keyring-file`, `-tags-file`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatePaths {
    /// `-snapshot PATH`.
    pub snapshot: Option<PathBuf>,
    /// `-keyring-file PATH`.
    pub keyring: Option<PathBuf>,
    /// `-tags-file PATH`.
    pub tags: Option<PathBuf>,
}

impl StatePaths {
    /// Which files are kept, for `Config::state_files`.
    pub fn files(&self) -> StateFiles {
        StateFiles {
            snapshot: self.snapshot.is_some(),
            keyring: self.keyring.is_some(),
            tags: self.tags.is_some(),
        }
    }

    /// The path of `file`, if it is kept.
    pub fn path(&self, file: StateFile) -> Option<&Path> {
        match file {
            StateFile::Snapshot => self.snapshot.as_deref(),
            StateFile::Keyring => self.keyring.as_deref(),
            StateFile::Tags => self.tags.as_deref(),
        }
    }

    /// Reads the snapshot (`-snapshot`) for `Agent::restore_snapshot`: `None` without
    /// `-snapshot` or when the file does not exist yet. The file goes through the core's
    /// reader in chunks, so a huge or hostile file costs bounded memory (unreadable lines
    /// are skipped and counted there). An unreadable file is an error: Serf refuses to
    /// start on it too.
    pub fn read_snapshot(
        &self,
        rejoin_after_leave: bool,
        max_members: usize,
    ) -> Result<Option<Snapshot>, String> {
        let Some(path) = &self.snapshot else {
            return Ok(None);
        };
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("Failed to open snapshot {}: {e}", path.display())),
        };
        let mut reader = SnapshotReader::new(rejoin_after_leave, max_members);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return Ok(Some(reader.finish())),
                Ok(n) => reader.feed(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!("Failed to read snapshot {}: {e}", path.display()));
                }
            }
        }
    }

    /// Performs one `Effect::Persist`; the error is what `Agent::persisted` takes.
    pub fn write(&self, file: StateFile, write: FileWrite, bytes: &[u8]) -> Result<(), String> {
        let Some(path) = self.path(file) else {
            return Err(format!("no path for the {}", file.as_str()));
        };
        // Keys and tags may be sensitive: 0600, as Serf writes them.
        let private = matches!(file, StateFile::Keyring | StateFile::Tags);
        let r = match write {
            FileWrite::Append => append(path, bytes),
            FileWrite::Replace => replace(path, bytes, private),
        };
        r.map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(bytes)
}

/// Writes `PATH.tmp`, syncs it, renames it over `PATH`: the file is old or new, never half.
fn replace(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn appends_add_replaces_swap_and_a_bad_path_is_an_error() {
        let dir = std::env::temp_dir().join(format!("tandem-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = StatePaths {
            snapshot: Some(dir.join("snap")),
            keyring: None,
            tags: Some(dir.join("no-such-dir").join("tags.json")),
        };
        assert_eq!(
            paths.files(),
            StateFiles {
                snapshot: true,
                keyring: false,
                tags: true
            }
        );
        let snap = StateFile::Snapshot;
        paths.write(snap, FileWrite::Append, b"a\n").unwrap();
        paths.write(snap, FileWrite::Append, b"b\n").unwrap();
        assert_eq!(std::fs::read(dir.join("snap")).unwrap(), b"a\nb\n");
        paths.write(snap, FileWrite::Replace, b"c\n").unwrap();
        paths.write(snap, FileWrite::Append, b"d\n").unwrap();
        assert_eq!(std::fs::read(dir.join("snap")).unwrap(), b"c\nd\n");
        let err = paths
            .write(StateFile::Tags, FileWrite::Replace, b"{}")
            .unwrap_err();
        assert!(err.contains("no-such-dir"), "{err}");
        assert!(
            paths
                .write(StateFile::Keyring, FileWrite::Replace, b"[]")
                .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
