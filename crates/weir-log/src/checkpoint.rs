//! Small per-partition files that make reopening cheap and safe:
//!
//! - `log-offsets.checkpoint`: version line `0`, then `<recovery point> <log start offset>`.
//!   The recovery point is a lower bound of what was fsynced, so a stale checkpoint only costs
//!   a longer scan.
//! - `cleaner-offset.checkpoint` (compacted logs): version line `0`, then
//!   `<cleaner offset> <delete horizon>`: below the cleaner offset the log holds one record per
//!   key, and the delete horizon (-1 when none) is the earliest time a tombstone there may go.
//!   A missing one only makes the next compaction pass map the whole log.
//! - `.clean-shutdown`: present only between a clean close and the next open; when present,
//!   open trusts the index files and skips the scan.
//!
//! Checkpoints are written atomically (temp file, fsync, rename, directory fsync).

use crate::fs::{FileSystem, read_exact_at};
use crate::{Error, Result};
use std::path::Path;

pub(crate) const CHECKPOINT_FILE: &str = "log-offsets.checkpoint";
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset.checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
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
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let text = format!("0\n{a} {b}\n");
    let file = fs.open(&tmp, true).map_err(Error::io("create", &tmp))?;
    file.set_len(0).map_err(Error::io("truncate", &tmp))?;
    file.write_all_at(text.as_bytes(), 0)
        .map_err(Error::io("write", &tmp))?;
    file.sync_data().map_err(Error::io("fsync", &tmp))?;
    fs.rename(&tmp, &path).map_err(Error::io("rename", &tmp))?;
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))
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
}
