//! Small per-partition files that make reopening cheap and safe:
//!
//! - `log-offsets.checkpoint`: version line `0`, then `<recovery point> <log start offset>`.
//!   The recovery point is a lower bound of what was fsynced, so a stale checkpoint only costs
//!   a longer scan.
//! - `cleaner-offset.checkpoint` (compacted logs): version line `0`, then
//!   `<cleaner offset> <delete horizon>`: below the cleaner offset the log holds one record per
//!   key, and the delete horizon (-1 when none) is the earliest time a tombstone there may go.
//!   A missing one only makes the next compaction pass map the whole log.
//! - `leader-epoch-checkpoint`: Kafka's text format, version line `0`, a line with the number
//!   of entries, then `<epoch> <start offset>` per entry (see [`crate::epoch_cache`]). Rewritten
//!   whenever the leader epoch cache changes; a missing or corrupt one is rebuilt from the batch
//!   headers of the segments on open.
//! - `.clean-shutdown`: present only between a clean close and the next open; when present,
//!   open trusts the index files and skips the scan.
//!
//! Checkpoints are written atomically (temp file, fsync, rename, directory fsync).

use crate::Result;
use crate::epoch_cache::{self, EpochEntry};
use crate::fs::{FileSystem, read_exact_at};
use std::path::Path;

pub(crate) const CHECKPOINT_FILE: &str = "log-offsets.checkpoint";
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset.checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// Larger leader epoch checkpoints are treated as corrupt (tens of bytes per epoch: no real
/// partition comes near).
const MAX_LEADER_EPOCH_FILE: u64 = 16 << 20;
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Offsets kept in the checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) recovery_point: i64,
    pub(crate) log_start_offset: i64,
}

/// What the cleaner checkpoint keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanerCheckpoint {
    pub(crate) cleaned_up_to: i64,
    /// -1 when no tombstone waits.
    pub(crate) delete_horizon: i64,
}

/// Reads the two numbers of a version-0 checkpoint file; missing or unreadable is `None`.
fn read_pair(fs: &dyn FileSystem, dir: &Path, name: &str) -> Option<(i64, i64)> {
    let path = dir.join(name);
    let file = fs.open(&path, false).ok()?;
    let len = file.len().ok()?;
    if len > 4096 {
        return None;
    }
    let mut buf = vec![0; len as usize];
    read_exact_at(&*file, &mut buf, 0).ok()?;
    let text = String::from_utf8(buf).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    let mut fields = lines.next()?.split(' ');
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Writes a version-0 checkpoint file of two numbers durably and atomically.
fn write_pair(fs: &dyn FileSystem, dir: &Path, name: &str, a: i64, b: i64) -> Result<()> {
    write_atomically(fs, dir, name, &format!("0\n{a} {b}\n"))
}

/// Replaces file `name` in `dir` with `text` ([`crate::fs::write_atomically`]).
fn write_atomically(fs: &dyn FileSystem, dir: &Path, name: &str, text: &str) -> Result<()> {
    crate::fs::write_atomically(fs, &dir.join(name), text.as_bytes())
}

/// Reads the checkpoint; a missing or unreadable one is `None` (recover everything).
pub(crate) fn read(fs: &dyn FileSystem, dir: &Path) -> Option<Checkpoint> {
    let (recovery_point, log_start_offset) = read_pair(fs, dir, CHECKPOINT_FILE)?;
    Some(Checkpoint {
        recovery_point,
        log_start_offset,
    })
}

/// Writes the checkpoint durably and atomically.
pub(crate) fn write(fs: &dyn FileSystem, dir: &Path, checkpoint: Checkpoint) -> Result<()> {
    write_pair(
        fs,
        dir,
        CHECKPOINT_FILE,
        checkpoint.recovery_point,
        checkpoint.log_start_offset,
    )
}

/// Reads the cleaner checkpoint; `None` when missing or unreadable (everything is dirty).
pub(crate) fn read_cleaner(fs: &dyn FileSystem, dir: &Path) -> Option<CleanerCheckpoint> {
    let (cleaned_up_to, delete_horizon) = read_pair(fs, dir, CLEANER_CHECKPOINT_FILE)?;
    Some(CleanerCheckpoint {
        cleaned_up_to,
        delete_horizon,
    })
}

/// Writes the cleaner checkpoint durably and atomically.
pub(crate) fn write_cleaner(
    fs: &dyn FileSystem,
    dir: &Path,
    checkpoint: CleanerCheckpoint,
) -> Result<()> {
    write_pair(
        fs,
        dir,
        CLEANER_CHECKPOINT_FILE,
        checkpoint.cleaned_up_to,
        checkpoint.delete_horizon,
    )
}

/// What the leader epoch checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaderEpochFile {
    /// No file (a new log, or one written before the file existed).
    Missing,
    /// The file cannot be read or parsed, for the reason given.
    Corrupt(String),
    /// The entries, oldest first.
    Entries(Vec<EpochEntry>),
}

/// Reads the leader epoch checkpoint.
pub(crate) fn read_leader_epochs(fs: &dyn FileSystem, dir: &Path) -> LeaderEpochFile {
    let path = dir.join(LEADER_EPOCH_FILE);
    let file = match fs.open(&path, false) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LeaderEpochFile::Missing,
        Err(e) => return LeaderEpochFile::Corrupt(format!("cannot open: {e}")),
    };
    let len = match file.len() {
        Ok(len) if len <= MAX_LEADER_EPOCH_FILE => len,
        Ok(len) => return LeaderEpochFile::Corrupt(format!("{len} bytes is too large")),
        Err(e) => return LeaderEpochFile::Corrupt(format!("cannot stat: {e}")),
    };
    let mut buf = vec![0; len as usize];
    if let Err(e) = read_exact_at(&*file, &mut buf, 0) {
        return LeaderEpochFile::Corrupt(format!("cannot read: {e}"));
    }
    let Ok(text) = String::from_utf8(buf) else {
        return LeaderEpochFile::Corrupt("not UTF-8".into());
    };
    match epoch_cache::decode(&text) {
        Ok(entries) => LeaderEpochFile::Entries(entries),
        Err(reason) => LeaderEpochFile::Corrupt(reason.into()),
    }
}

/// Writes the leader epoch checkpoint durably and atomically.
pub(crate) fn write_leader_epochs(
    fs: &dyn FileSystem,
    dir: &Path,
    entries: &[EpochEntry],
) -> Result<()> {
    write_atomically(fs, dir, LEADER_EPOCH_FILE, &epoch_cache::encode(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultFs;

    #[test]
    fn round_trip_and_missing() {
        let fs = FaultFs::new();
        let dir = Path::new("/t-0");
        fs.create_dir_all(dir).unwrap();
        assert_eq!(read(&fs, dir), None);
        assert_eq!(read_cleaner(&fs, dir), None);
        let cp = Checkpoint {
            recovery_point: 42,
            log_start_offset: 7,
        };
        write(&fs, dir, cp).unwrap();
        assert_eq!(read(&fs, dir), Some(cp));
        assert_eq!(read(&fs.crash(), dir), Some(cp));
        let cleaner = CleanerCheckpoint {
            cleaned_up_to: 30,
            delete_horizon: -1,
        };
        write_cleaner(&fs, dir, cleaner).unwrap();
        assert_eq!(read_cleaner(&fs.crash(), dir), Some(cleaner));
        assert_eq!(read(&fs, dir), Some(cp));
    }

    #[test]
    fn leader_epochs_round_trip_missing_and_corrupt() {
        let fs = FaultFs::new();
        let dir = Path::new("/t-0");
        fs.create_dir_all(dir).unwrap();
        assert_eq!(read_leader_epochs(&fs, dir), LeaderEpochFile::Missing);
        let entries = vec![
            EpochEntry {
                epoch: 1,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 4,
                start_offset: 90,
            },
        ];
        write_leader_epochs(&fs, dir, &entries).unwrap();
        let path = dir.join(LEADER_EPOCH_FILE);
        assert_eq!(fs.read_all(&path).unwrap(), b"0\n2\n1 0\n4 90\n");
        assert_eq!(
            read_leader_epochs(&fs.crash(), dir),
            LeaderEpochFile::Entries(entries)
        );
        // A crash before the rename keeps the old file, whatever the temp file holds.
        fs.set_write_budget(Some(3));
        assert!(write_leader_epochs(&fs, dir, &[]).is_err());
        fs.set_write_budget(None);
        assert!(matches!(
            read_leader_epochs(&fs.crash(), dir),
            LeaderEpochFile::Entries(e) if e.len() == 2
        ));
        fs.write_all(&path, b"0\n3\n1 0\n");
        assert!(matches!(
            read_leader_epochs(&fs, dir),
            LeaderEpochFile::Corrupt(_)
        ));
    }
}
