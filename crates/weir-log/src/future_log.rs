//! Moving a partition's log to another data directory (AlterReplicaLogDirs) through a "future
//! log", as Kafka calls the copy, in two steps so appends pause only for the tail:
//!
//! 1. [`LogManager::prepare_move`] copies the inactive segments and their indexes into
//!    `<target>/<topic>-<partition>.<id>-future` while the partition goes on taking appends.
//! 2. [`LogManager::finish_move`], called with the partition quiet (the caller stops appends),
//!    freezes the log (fsync, checkpoint, compaction and state locks held), copies what is new
//!    or changed since step 1 (the active segment, segments rolled meanwhile, checkpoint files,
//!    `producer-state.json`; everything again if segments were deleted, truncated or compacted
//!    meanwhile), fsyncs each file, writes the `.moved-in` marker, fsyncs the directory,
//!    renames it to `<topic>-<partition>`, fsyncs the target data directory, opens the copy as
//!    the new [`Log`] and swaps it into the manager. The old log is retired (offline: a stale
//!    handle can neither append to it nor read it), its directory renamed to
//!    `<topic>-<partition>.<id>-delete` and removed, and the marker removed.
//!
//! The pause is the time to fsync the source, copy the active segment and what changed since
//! step 1, and open the copy (which recovers its last segment): proportional to the segment
//! size, not to the log size, unless segments went or were compacted during step 1.
//!
//! Crash rules, applied by [`LogManager::open`]:
//! - `*-future` directories are deleted: the move did not complete and the source is whole.
//! - `*-delete` directories are deleted: the move completed.
//! - A partition found in two data directories (a crash after the rename, before the old copy
//!   was renamed away): the copy holding `.moved-in` wins, since it is the destination of a
//!   completed rename and took every append since; when neither or both hold one, the higher
//!   log end offset wins, ties to the first directory in `log.dirs`. The other copy is deleted
//!   with a warning. A `.moved-in` left on a single copy is removed.

use super::LogManager;
use crate::checkpoint::{CLEAN_SHUTDOWN_FILE, TMP_SUFFIX};
use crate::cleaner::{CLEANED_SUFFIX, SWAP_SUFFIX};
use crate::fs::{FileSystem, read_up_to};
use crate::log::Log;
use crate::manager::TopicPartition;
use crate::segment::{INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, file_path};
use crate::txn_index::TXN_INDEX_SUFFIX;
use crate::{Error, Result};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Marks the destination of a move whose rename completed (see the module docs).
pub(crate) const MOVED_IN_FILE: &str = ".moved-in";
/// Suffix of a copy being made.
pub(crate) const FUTURE_SUFFIX: &str = "-future";
/// Suffix of a moved-away copy being deleted.
pub(crate) const DELETE_SUFFIX: &str = "-delete";

/// Bytes copied per read.
const COPY_CHUNK: usize = 1 << 20;

/// A move of one partition's log under way: made by [`LogManager::prepare_move`], completed by
/// [`LogManager::finish_move`] or dropped with [`LogManager::abandon_move`]. While it exists no
/// other move of the partition starts.
#[derive(Debug)]
pub struct LogMove {
    tp: TopicPartition,
    source: Arc<Log>,
    target_dir: PathBuf,
    future_dir: PathBuf,
    id: String,
    /// The source's generation when step 1 listed its segments.
    generation: u64,
    /// Files copied in step 1.
    copied: HashSet<String>,
    moving: Arc<Mutex<HashSet<TopicPartition>>>,
}

impl LogMove {
    /// The partition being moved.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// The data directory it moves to.
    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }
}

impl Drop for LogMove {
    fn drop(&mut self) {
        self.moving.lock().remove(&self.tp);
    }
}

/// Whether a directory name is a leftover of a move (a copy or a deletion in progress).
pub(crate) fn is_move_leftover(name: &str) -> bool {
    name.contains('.') && (name.ends_with(FUTURE_SUFFIX) || name.ends_with(DELETE_SUFFIX))
}

/// Copies `from` to `to` (replacing it) and fsyncs the copy; `None` when `from` is gone.
fn copy_file(fs: &dyn FileSystem, from: &Path, to: &Path) -> Result<Option<u64>> {
    let source = match fs.open(from, false) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", from)(e)),
    };
    let target = fs.open(to, true).map_err(Error::io("create", to))?;
    target.set_len(0).map_err(Error::io("truncate", to))?;
    let mut buf = vec![0; COPY_CHUNK];
    let mut pos = 0u64;
    loop {
        let n = read_up_to(&*source, &mut buf, pos).map_err(Error::io("read", from))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        target
            .write_all_at(chunk, pos)
            .map_err(Error::io("write", to))?;
        pos += n as u64;
    }
    target.sync_data().map_err(Error::io("fsync", to))?;
    Ok(Some(pos))
}

/// Whether a file of a partition directory belongs in a copy of it: not temporary files, not
/// compaction files (none exist while the log is frozen, but a crash may leave some), not the
/// clean-shutdown marker (the copy recovers its last segment instead of trusting indexes that
/// the source rewrites at close), and not a move marker.
fn is_copied(name: &str) -> bool {
    !(name.ends_with(TMP_SUFFIX)
        || name.ends_with(CLEANED_SUFFIX)
        || name.ends_with(SWAP_SUFFIX)
        || name == CLEAN_SHUTDOWN_FILE
        || name == MOVED_IN_FILE)
}

impl LogManager {
    /// Step 1 of moving `tp`'s log to the data directory `target_dir` (one of `log.dirs`):
    /// copies its inactive segments into a future directory there, without stopping appends.
    /// `None` when the log is in `target_dir` already.
    ///
    /// Fails with [`Error::UnknownDataDir`] for a path not in `log.dirs`, [`Error::Offline`]
    /// when the target or the log's own directory is offline, [`Error::UnknownPartition`]
    /// when the node has no log of `tp`, and [`Error::MoveInProgress`] while another move of
    /// it is under way.
    pub fn prepare_move(&self, tp: &TopicPartition, target_dir: &Path) -> Result<Option<LogMove>> {
        if !self.options.data_dirs.iter().any(|d| d == target_dir) {
            return Err(Error::UnknownDataDir {
                path: target_dir.to_path_buf(),
            });
        }
        if self.offline.iter().any(|o| o.path == target_dir) {
            return Err(Error::Offline {
                path: target_dir.to_path_buf(),
            });
        }
        let Some(source) = self.get(tp) else {
            if let Some(offline) = self.offline_dir_of(tp) {
                return Err(Error::Offline {
                    path: offline.path.join(tp.dir_name()),
                });
            }
            return Err(Error::UnknownPartition {
                partition: tp.to_string(),
            });
        };
        if source.dir().parent() == Some(target_dir) {
            return Ok(None);
        }
        if !self.moving.lock().insert(tp.clone()) {
            return Err(Error::MoveInProgress {
                partition: tp.to_string(),
            });
        }
        let id = format!("{:x}", self.options.clock.now_ms());
        let future_dir = target_dir.join(format!("{}.{id}{FUTURE_SUFFIX}", tp.dir_name()));
        let mut mv = LogMove {
            tp: tp.clone(),
            source,
            target_dir: target_dir.to_path_buf(),
            future_dir,
            id,
            generation: 0,
            copied: HashSet::new(),
            moving: self.moving.clone(),
        };
        if let Err(e) = self.copy_inactive(&mut mv) {
            self.abandon_move(mv);
            return Err(e);
        }
        tracing::info!(partition = %tp, from = %mv.source.dir().display(), to = %target_dir.display(), files = mv.copied.len(), "copied the inactive segments of a log being moved");
        Ok(Some(mv))
    }

    fn copy_inactive(&self, mv: &mut LogMove) -> Result<()> {
        let fs = &*self.options.fs;
        if fs.exists(&mv.future_dir) {
            fs.remove_dir_all(&mv.future_dir)
                .map_err(Error::io("remove directory", &mv.future_dir))?;
        }
        fs.create_dir_all(&mv.future_dir)
            .map_err(Error::io("create directory", &mv.future_dir))?;
        // Read before the segments are listed: any change after it shows in step 2.
        mv.generation = mv.source.generation();
        let bases = mv.source.segment_base_offsets();
        let inactive = bases.len().saturating_sub(1);
        for &base in bases.iter().take(inactive) {
            for suffix in [
                LOG_SUFFIX,
                INDEX_SUFFIX,
                TIME_INDEX_SUFFIX,
                TXN_INDEX_SUFFIX,
            ] {
                let from = file_path(mv.source.dir(), base, suffix);
                let to = file_path(&mv.future_dir, base, suffix);
                if copy_file(fs, &from, &to)?.is_some() {
                    if let Some(name) = to.file_name().and_then(|n| n.to_str()) {
                        mv.copied.insert(name.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// Step 2: with the partition quiet (the caller lets nothing append to it until this
    /// returns), copies the rest, swaps the copy in as the partition's log and deletes the old
    /// directory. Returns the new log; the old one is retired (offline).
    ///
    /// On failure the future directory is removed and the old log stays in service.
    pub fn finish_move(&self, mv: LogMove) -> Result<Arc<Log>> {
        let fs = &*self.options.fs;
        let config = mv.source.config();
        let final_dir = mv.target_dir.join(mv.tp.dir_name());
        let swapped = mv.source.frozen(|generation| {
            if !self
                .get(&mv.tp)
                .is_some_and(|l| Arc::ptr_eq(&l, &mv.source))
            {
                // Deleted (or replaced) during step 1.
                return Err(Error::UnknownPartition {
                    partition: mv.tp.to_string(),
                });
            }
            self.copy_rest(&mv, generation)?;
            let marker = mv.future_dir.join(MOVED_IN_FILE);
            fs.open(&marker, true)
                .and_then(|f| f.sync_data())
                .map_err(Error::io("create", &marker))?;
            fs.sync_dir(&mv.future_dir)
                .map_err(Error::io("fsync directory", &mv.future_dir))?;
            if fs.exists(&final_dir) {
                return Err(Error::io("rename into place", &final_dir)(
                    io::ErrorKind::AlreadyExists.into(),
                ));
            }
            fs.rename(&mv.future_dir, &final_dir)
                .map_err(Error::io("rename", &mv.future_dir))?;
            fs.sync_dir(&mv.target_dir)
                .map_err(Error::io("fsync directory", &mv.target_dir))?;
            let log = match Log::open_with(
                &final_dir,
                Self::log_options(&self.options, &self.handles, config),
            ) {
                Ok(log) => Arc::new(log),
                Err(e) => {
                    // The old log stays: take the copy away so a restart does not prefer it.
                    let _ = fs.remove_dir_all(&final_dir);
                    let _ = fs.sync_dir(&mv.target_dir);
                    return Err(e);
                }
            };
            self.logs.write().insert(mv.tp.clone(), log.clone());
            mv.source.retire();
            Ok(log)
        });
        let log = match swapped {
            Ok(log) => log,
            Err(e) => {
                self.abandon_move(mv);
                return Err(e);
            }
        };
        self.delete_moved_away(&mv, &final_dir);
        tracing::info!(partition = %mv.tp, from = %mv.source.dir().display(), to = %final_dir.display(), log_end_offset = log.log_end_offset(), "moved log");
        Ok(log)
    }

    /// Copies, with the source frozen at `generation`, what step 1 did not copy or what may
    /// have changed since, and removes from the copy what the source no longer has.
    fn copy_rest(&self, mv: &LogMove, generation: u64) -> Result<()> {
        let fs = &*self.options.fs;
        let source_dir = mv.source.dir();
        let names = fs
            .list_dir(source_dir)
            .map_err(Error::io("list directory", source_dir))?;
        // Inactive segment files stay as they are while the generation does.
        let unchanged = generation == mv.generation;
        let mut present = HashSet::new();
        for name in names.into_iter().filter(|n| is_copied(n)) {
            // A transaction index may gain an entry without the generation changing (a marker
            // in a segment that rolled just after it): always copied again; it is small.
            let stable = !name.ends_with(TXN_INDEX_SUFFIX);
            if !(unchanged && stable && mv.copied.contains(&name)) {
                copy_file(fs, &source_dir.join(&name), &mv.future_dir.join(&name))?;
            }
            present.insert(name);
        }
        for gone in mv.copied.iter().filter(|n| !present.contains(*n)) {
            let path = mv.future_dir.join(gone);
            fs.remove_file(&path).map_err(Error::io("remove", &path))?;
        }
        Ok(())
    }

    /// Renames the old directory away and removes it, then the marker of the new one. Failures
    /// only warn: the next start finishes the job (see the module docs).
    fn delete_moved_away(&self, mv: &LogMove, final_dir: &Path) {
        let fs = &*self.options.fs;
        let old = mv.source.dir();
        let Some(parent) = old.parent() else { return };
        let deleting = parent.join(format!("{}.{}{DELETE_SUFFIX}", mv.tp.dir_name(), mv.id));
        let renamed = fs.rename(old, &deleting).and_then(|()| fs.sync_dir(parent));
        if let Err(error) = renamed {
            tracing::warn!(dir = %old.display(), %error, "cannot rename the moved-away log; the next start deletes it");
            return;
        }
        if let Err(error) = fs.remove_dir_all(&deleting) {
            tracing::warn!(dir = %deleting.display(), %error, "cannot remove the moved-away log; the next start does");
        }
        let marker = final_dir.join(MOVED_IN_FILE);
        if let Err(error) = fs
            .remove_file(&marker)
            .and_then(|()| fs.sync_dir(final_dir))
        {
            tracing::warn!(path = %marker.display(), %error, "cannot remove the move marker; the next start does");
        }
    }

    /// Gives a move up: removes its future directory (best effort; the next start removes what
    /// is left).
    pub fn abandon_move(&self, mv: LogMove) {
        let fs = &*self.options.fs;
        if fs.exists(&mv.future_dir) {
            if let Err(error) = fs.remove_dir_all(&mv.future_dir) {
                tracing::warn!(dir = %mv.future_dir.display(), %error, "cannot remove an abandoned future log");
            }
        }
    }

    /// Moves `tp`'s log to `target_dir` in one go ([`LogManager::prepare_move`] then
    /// [`LogManager::finish_move`]); the caller keeps the partition quiet throughout. Returns
    /// the log, moved or already there.
    pub fn move_log(&self, tp: &TopicPartition, target_dir: &Path) -> Result<Arc<Log>> {
        match self.prepare_move(tp, target_dir)? {
            Some(mv) => self.finish_move(mv),
            None => self.get(tp).ok_or_else(|| Error::UnknownPartition {
                partition: tp.to_string(),
            }),
        }
    }
}

/// Of two copies of one partition found at start (`(data dir index, log)`), whether the second
/// wins (see the module docs).
pub(crate) fn second_copy_wins(
    fs: &dyn FileSystem,
    first: (usize, &Log),
    second: (usize, &Log),
) -> bool {
    let marked = |log: &Log| fs.exists(&log.dir().join(MOVED_IN_FILE));
    match (marked(first.1), marked(second.1)) {
        (false, true) => true,
        (true, false) => false,
        _ => {
            let (a, b) = (first.1.log_end_offset(), second.1.log_end_offset());
            b > a || (b == a && second.0 < first.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use crate::fault::FaultFs;
    use crate::log::LogOptions;
    use crate::manager::LogManagerOptions;
    use crate::{AppendOrigin, ManualClock};
    use weir_records::{Record, RecordBatchBuilder};

    fn options(fs: &FaultFs) -> LogManagerOptions {
        LogManagerOptions {
            data_dirs: vec![PathBuf::from("/d1"), PathBuf::from("/d2")],
            default_config: LogConfig {
                segment_bytes: 300,
                ..LogConfig::default()
            },
            open_threads: 2,
            fs: Arc::new(fs.clone()),
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            max_inactive_handles: 4,
            cleaner_dedupe_buffer_size: 1 << 20,
            foreign_dirs: Vec::new(),
        }
    }

    fn append(log: &Log, leader_epoch: i32) {
        let mut b = RecordBatchBuilder::new();
        b.push(Record::new(
            1_700_000_000_000,
            Some(b"key"),
            Some(&[7; 100]),
        ));
        let mut bytes = b.build().unwrap().to_vec();
        log.append(&mut bytes, AppendOrigin::Leader { leader_epoch })
            .unwrap();
    }

    /// Base offsets of every batch, read from the log start to its end.
    fn read_all(log: &Log) -> Vec<i64> {
        let mut offsets = Vec::new();
        let mut next = log.log_start_offset();
        while next < log.log_end_offset() {
            let slice = log.read(next, 1 << 20, i64::MAX).unwrap();
            let bytes = slice.to_bytes().unwrap();
            for b in weir_records::RecordBatches::new(bytes) {
                let b = b.unwrap();
                b.verify_crc().unwrap();
                offsets.push(b.base_offset());
                next = b.last_offset() + 1;
            }
        }
        offsets
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// A log in /d1 with `n` one-record batches over several segments.
    fn manager_with_log(fs: &FaultFs, n: i64) -> (LogManager, Arc<Log>) {
        let manager = LogManager::open(options(fs)).unwrap();
        // The emptier directory is /d1 while both are empty.
        let log = manager.get_or_create(&tp(), None).unwrap();
        assert!(log.dir().starts_with("/d1"));
        for i in 0..n {
            append(&log, i32::from(i >= n / 2));
        }
        (manager, log)
    }

    #[test]
    fn a_moved_log_keeps_every_record_and_appends_during_the_copy() {
        let fs = FaultFs::new();
        let (manager, old) = manager_with_log(&fs, 10);
        assert!(old.segment_count() > 2, "{}", old.segment_count());
        let epochs = old.epoch_entries();

        let mv = manager
            .prepare_move(&tp(), Path::new("/d2"))
            .unwrap()
            .unwrap();
        assert!(!mv.copied.is_empty(), "inactive segments go first");
        // Appends go on until the quiet part; a roll in between too.
        append(&old, 1);
        append(&old, 1);
        let new = manager.finish_move(mv).unwrap();

        assert_eq!(new.dir(), Path::new("/d2/t-0"));
        assert!(Arc::ptr_eq(&manager.get(&tp()).unwrap(), &new));
        assert!(!fs.exists(Path::new("/d1/t-0")));
        assert_eq!(fs.list_dir(Path::new("/d1")).unwrap(), Vec::<String>::new());
        assert!(!fs.exists(&new.dir().join(MOVED_IN_FILE)));
        assert_eq!(new.log_end_offset(), 12);
        assert_eq!(read_all(&new), (0..12).collect::<Vec<_>>());
        assert_eq!(new.epoch_entries(), epochs);
        assert!(
            matches!(old.read(0, 1 << 20, i64::MAX), Err(Error::Offline { .. })),
            "the old log is retired"
        );
        append(&new, 2);
        drop(old);
        manager.close().unwrap();

        let manager = LogManager::open(options(&fs)).unwrap();
        let log = manager.get(&tp()).unwrap();
        assert_eq!(log.dir(), Path::new("/d2/t-0"));
        assert_eq!(read_all(&log), (0..13).collect::<Vec<_>>());
        // Already there: nothing to do.
        assert!(
            manager
                .prepare_move(&tp(), Path::new("/d2"))
                .unwrap()
                .is_none()
        );
        // And back, in one go, then a crash: everything fsynced survives.
        let back = manager.move_log(&tp(), Path::new("/d1")).unwrap();
        assert_eq!(back.dir(), Path::new("/d1/t-0"));
        drop(back);
        drop(log);
        drop(manager);
        let manager = LogManager::open(options(&fs.crash())).unwrap();
        let log = manager.get(&tp()).unwrap();
        assert_eq!(log.dir(), Path::new("/d1/t-0"));
        assert_eq!(read_all(&log), (0..13).collect::<Vec<_>>());
    }

    /// Transaction indexes move with their segments, including an entry added to an inactive
    /// segment's index after the bulk copy took it.
    #[test]
    fn transaction_indexes_move_with_the_log() {
        let fs = FaultFs::new();
        let (manager, old) = manager_with_log(&fs, 6);
        let entry = |last_offset: i64| crate::AbortedTxn {
            producer_id: 9,
            first_offset: last_offset,
            last_offset,
            last_stable_offset: last_offset + 1,
        };
        old.add_aborted_txn(entry(0)).unwrap();
        let mv = manager
            .prepare_move(&tp(), Path::new("/d2"))
            .unwrap()
            .unwrap();
        // After the copy of the inactive segments: one more entry in the first segment.
        old.add_aborted_txn(entry(1)).unwrap();
        let new = manager.finish_move(mv).unwrap();
        assert_eq!(new.aborted_txn_entries(), vec![entry(0), entry(1)]);
        drop(old);
        drop(new);
        drop(manager);
        let manager = LogManager::open(options(&fs.crash())).unwrap();
        let log = manager.get(&tp()).unwrap();
        assert_eq!(log.aborted_txn_entries(), vec![entry(0), entry(1)]);
    }

    /// Segments deleted during the bulk copy must not come back in the copy.
    #[test]
    fn segments_deleted_during_the_copy_stay_deleted() {
        let fs = FaultFs::new();
        let (manager, old) = manager_with_log(&fs, 10);
        let mv = manager
            .prepare_move(&tp(), Path::new("/d2"))
            .unwrap()
            .unwrap();
        let start = old.segment_base_offsets()[2];
        old.delete_records_before(start).unwrap();
        old.apply_retention(old.log_end_offset()).unwrap();
        let new = manager.finish_move(mv).unwrap();
        assert_eq!(new.log_start_offset(), start);
        assert_eq!(new.segment_base_offsets()[0], start);
        assert_eq!(read_all(&new), (start..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_leftover_future_directory_is_deleted_at_start() {
        let fs = FaultFs::new();
        let (manager, log) = manager_with_log(&fs, 10);
        log.flush().unwrap();
        let mv = manager
            .prepare_move(&tp(), Path::new("/d2"))
            .unwrap()
            .unwrap();
        let future = mv.future_dir.clone();
        assert!(fs.exists(&future));
        // A crash before the rename.
        drop(mv);
        drop(log);
        drop(manager);
        let fs = fs.crash();
        fs.sync_dir(Path::new("/d2")).unwrap();
        let manager = LogManager::open(options(&fs)).unwrap();
        assert!(!fs.exists(&future));
        assert_eq!(fs.list_dir(Path::new("/d2")).unwrap(), Vec::<String>::new());
        let log = manager.get(&tp()).unwrap();
        assert_eq!(log.dir(), Path::new("/d1/t-0"));
        assert_eq!(read_all(&log), (0..10).collect::<Vec<_>>());
    }

    /// Copies a closed log's directory to `to` as a crash right after the rename of a move
    /// would leave it.
    fn copy_dir(fs: &FaultFs, from: &Path, to: &Path, marked: bool) {
        fs.create_dir_all(to).unwrap();
        for name in fs.list_dir(from).unwrap() {
            copy_file(fs, &from.join(&name), &to.join(&name)).unwrap();
        }
        if marked {
            fs.open(&to.join(MOVED_IN_FILE), true).unwrap();
        }
        fs.sync_dir(to).unwrap();
        fs.sync_dir(to.parent().unwrap()).unwrap();
    }

    fn append_closed(fs: &FaultFs, dir: &Path) {
        let log = Log::open_with(
            dir,
            LogOptions {
                fs: Arc::new(fs.clone()),
                ..LogOptions::new(LogConfig::default())
            },
        )
        .unwrap();
        append(&log, 1);
        log.close().unwrap();
    }

    /// The rule for a crash after the rename, before the old copy went: the marked copy wins
    /// even with fewer records (it cannot have fewer in a real move); without markers the
    /// longer one does.
    #[test]
    fn of_two_copies_the_moved_in_one_wins_else_the_longer() {
        let fs = FaultFs::new();
        let (manager, log) = manager_with_log(&fs, 4);
        drop(log);
        manager.close().unwrap();
        copy_dir(&fs, Path::new("/d1/t-0"), Path::new("/d2/t-0"), true);
        append_closed(&fs, Path::new("/d1/t-0"));
        let manager = LogManager::open(options(&fs)).unwrap();
        let log = manager.get(&tp()).unwrap();
        assert_eq!(log.dir(), Path::new("/d2/t-0"));
        assert_eq!(log.log_end_offset(), 4);
        assert!(!fs.exists(Path::new("/d1/t-0")));
        assert!(
            !fs.exists(&log.dir().join(MOVED_IN_FILE)),
            "the marker goes"
        );
        drop(log);
        manager.close().unwrap();

        copy_dir(&fs, Path::new("/d2/t-0"), Path::new("/d1/t-0"), false);
        append_closed(&fs, Path::new("/d1/t-0"));
        let manager = LogManager::open(options(&fs)).unwrap();
        let log = manager.get(&tp()).unwrap();
        assert_eq!(log.dir(), Path::new("/d1/t-0"));
        assert_eq!(log.log_end_offset(), 5);
        assert!(!fs.exists(Path::new("/d2/t-0")));
    }

    #[test]
    fn refuses_unknown_and_offline_targets_and_a_second_move() {
        let fs = FaultFs::new();
        let (manager, log) = manager_with_log(&fs, 2);
        assert!(matches!(
            manager.prepare_move(&tp(), Path::new("/elsewhere")),
            Err(Error::UnknownDataDir { .. })
        ));
        assert!(matches!(
            manager.prepare_move(&TopicPartition::new("none", 0), Path::new("/d2")),
            Err(Error::UnknownPartition { .. })
        ));
        let mv = manager
            .prepare_move(&tp(), Path::new("/d2"))
            .unwrap()
            .unwrap();
        assert!(matches!(
            manager.prepare_move(&tp(), Path::new("/d2")),
            Err(Error::MoveInProgress { .. })
        ));
        let future = mv.future_dir.clone();
        manager.abandon_move(mv);
        assert!(!fs.exists(&future));
        drop(log);
        manager.close().unwrap();

        fs.fail_path("/d2");
        let manager = LogManager::open(options(&fs)).unwrap();
        assert_eq!(manager.offline_dirs().len(), 1);
        assert!(matches!(
            manager.prepare_move(&tp(), Path::new("/d2")),
            Err(Error::Offline { .. })
        ));
        assert_eq!(read_all(&manager.get(&tp()).unwrap()), vec![0, 1]);
    }
}
