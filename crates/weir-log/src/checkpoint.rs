//! Small per-partition files that make reopening cheap and safe:
//!
//! - `log-offsets.checkpoint`: version line `0`, then `<recovery point> <log start offset>`.
//!   Written atomically (temp file, fsync, rename, directory fsync). The recovery point is a
//!   lower bound of what was fsynced, so a stale checkpoint only costs a longer scan.
//! - `.clean-shutdown`: present only between a clean close and the next open; when present,
//!   open trusts the index files and skips the scan.

use crate::fs::{FileSystem, read_exact_at};
use crate::{Error, Result};
use std::path::Path;

pub(crate) const CHECKPOINT_FILE: &str = "log-offsets.checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Offsets kept in the checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) recovery_point: i64,
    pub(crate) log_start_offset: i64,
}

/// Reads the checkpoint; a missing or unreadable one is `None` (recover everything).
pub(crate) fn read(fs: &dyn FileSystem, dir: &Path) -> Option<Checkpoint> {
    let path = dir.join(CHECKPOINT_FILE);
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
    let recovery_point = fields.next()?.parse().ok()?;
    let log_start_offset = fields.next()?.parse().ok()?;
    Some(Checkpoint {
        recovery_point,
        log_start_offset,
    })
}

/// Writes the checkpoint durably and atomically.
pub(crate) fn write(fs: &dyn FileSystem, dir: &Path, checkpoint: Checkpoint) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!("{CHECKPOINT_FILE}{TMP_SUFFIX}"));
    let text = format!(
        "0\n{} {}\n",
        checkpoint.recovery_point, checkpoint.log_start_offset
    );
    let file = fs.open(&tmp, true).map_err(Error::io("create", &tmp))?;
    file.set_len(0).map_err(Error::io("truncate", &tmp))?;
    file.write_all_at(text.as_bytes(), 0)
        .map_err(Error::io("write", &tmp))?;
    file.sync_data().map_err(Error::io("fsync", &tmp))?;
    fs.rename(&tmp, &path).map_err(Error::io("rename", &tmp))?;
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))
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
        let cp = Checkpoint {
            recovery_point: 42,
            log_start_offset: 7,
        };
        write(&fs, dir, cp).unwrap();
        assert_eq!(read(&fs, dir), Some(cp));
        assert_eq!(read(&fs.crash(), dir), Some(cp));
    }
}
