//! [`Log`]: one partition's log — open and recover, append, read, offsets, roll, flush,
//! truncation and retention.
//!
//! Locking: `flush_lock` (held by fsyncs and by operations that move offsets backwards) is
//! always taken before `inner`. Appends hold `inner` only to assign offsets and write; the
//! fsync a flush policy asks for runs outside it, so one fsync covers every append written
//! before it (group commit).
//!
//! Leader epochs: `Inner::epochs` mirrors which leader epoch wrote each range of the log, and
//! the `leader-epoch-checkpoint` file mirrors it on disk. The file may lead the log after a
//! crash but never lag it: an assignment is made durable before the batches it describes are
//! written, and a removal (truncation, retention, DeleteRecords) only after the log change it
//! follows is durable (the segment cut fsynced, the log start offset checkpointed). Whatever a
//! crash leaves, open trims the loaded entries to the recovered log
//! (`truncate_from_end(log end)`, `truncate_from_start(log start)`), which restores exactly
//! the cache the surviving batches imply.

use crate::checkpoint::{
    self, CLEAN_SHUTDOWN_FILE, Checkpoint, CleanerCheckpoint, LeaderEpochFile, TMP_SUFFIX,
};
use crate::cleaner::{self, CompactionStats};
use crate::config::{Clock, LogConfig, SystemClock};
use crate::epoch_cache::{EpochEndOffset, EpochEntry, LeaderEpochCache};
use crate::fs::{File, FileSystem, StdFs, read_exact_at};
use crate::handles::HandleCache;
use crate::segment::{self, INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX, file_path};
use crate::txn_index::{self, AbortedTxn, TXN_INDEX_SUFFIX};
use crate::validate::{BatchMeta, TimestampCheck, validate};
use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use weir_records::{RecordBatch, TimestampType, batch};

/// Who is appending, which decides whether offsets are assigned or kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// The partition leader appends a producer's batches: offsets are assigned from the log end
    /// offset, the partition leader epoch is stamped, timestamps are checked against the clock
    /// and LogAppendTime is applied when configured.
    Leader {
        /// Epoch stamped into each batch.
        leader_epoch: i32,
    },
    /// A follower appends batches fetched from the leader: offsets, epochs and timestamps are
    /// kept, and must continue the log.
    Replication,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub first_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The append time stamped into the batches under LogAppendTime, else -1.
    pub log_append_time: i64,
    /// Largest timestamp appended.
    pub max_timestamp: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
}

/// A range of whole batches in one segment file, returned by [`Log::read`] without copying.
///
/// The broker can `sendfile` [`LogSlice::file`] from [`LogSlice::position`] for
/// [`LogSlice::len`] bytes, or call [`LogSlice::to_bytes`]. The file stays readable even if
/// the segment is deleted meanwhile.
#[derive(Debug, Clone)]
pub struct LogSlice {
    file: Option<Arc<dyn File>>,
    position: u64,
    len: usize,
    first_offset: i64,
    next_offset: i64,
}

impl LogSlice {
    fn empty(offset: i64) -> Self {
        Self {
            file: None,
            position: 0,
            len: 0,
            first_offset: offset,
            next_offset: offset,
        }
    }

    /// Where the next read continues: past the last batch of the slice (the requested offset
    /// when empty).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Reads the batches into the front of `buf`, which must hold at least [`LogSlice::len`]
    /// bytes; lets a caller reuse one buffer across reads.
    pub fn read_into(&self, buf: &mut [u8]) -> Result<()> {
        let (Some(file), Some(dst)) = (&self.file, buf.get_mut(..self.len)) else {
            return if self.len == 0 {
                Ok(())
            } else {
                Err(Error::io("read", "segment")(std::io::Error::other(
                    "buffer too small",
                )))
            };
        };
        read_exact_at(&**file, dst, self.position).map_err(Error::io("read", "segment"))
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slice holds no batch.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base offset of the first batch (the requested offset when empty).
    pub fn first_offset(&self) -> i64 {
        self.first_offset
    }

    /// Byte position in the segment file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The segment file, `None` when empty.
    pub fn file(&self) -> Option<&Arc<dyn File>> {
        self.file.as_ref()
    }

    /// Reads the batches into memory (one positioned read).
    pub fn to_bytes(&self) -> Result<Bytes> {
        let Some(file) = &self.file else {
            return Ok(Bytes::new());
        };
        let mut buf = BytesMut::zeroed(self.len);
        read_exact_at(&**file, &mut buf, self.position).map_err(Error::io("read", "segment"))?;
        Ok(buf.freeze())
    }
}

/// An offset found by timestamp (ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// Offset of the record.
    pub offset: i64,
    /// Its timestamp.
    pub timestamp: i64,
}

/// How to open a log: configuration plus the injectable file system and clock.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Log settings.
    pub config: LogConfig,
    /// Where files live.
    pub fs: Arc<dyn FileSystem>,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Open handles of inactive segments (share one among many logs to bound the total).
    pub handles: HandleCache,
    /// `log.cleaner.dedupe.buffer.size`: memory a compaction pass's key map may use; a pass
    /// whose dirty keys do not fit ends where the map is full and the next pass goes on.
    pub cleaner_dedupe_buffer_size: usize,
}

impl LogOptions {
    /// The real file system, the system clock and a private handle cache.
    pub fn new(config: LogConfig) -> Self {
        Self {
            config,
            fs: Arc::new(StdFs),
            clock: Arc::new(SystemClock),
            handles: HandleCache::default(),
            cleaner_dedupe_buffer_size: cleaner::DEFAULT_DEDUPE_BUFFER_SIZE,
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
    recovery_point: i64,
    unflushed_messages: i64,
    last_flush_ms: i64,
    /// The clean-shutdown marker is still on disk: the log has not changed since a clean open.
    clean_marker: bool,
    /// Below this offset the log holds one record per key (the cleaner checkpoint).
    cleaned_up_to: i64,
    /// Earliest delete horizon of a tombstone below `cleaned_up_to`.
    delete_horizon: Option<i64>,
    /// Bumped whenever segments are removed or truncated, so a compaction pass that ran
    /// without the lock knows its input is gone.
    generation: u64,
    /// Start offset of each leader epoch; the leader epoch checkpoint holds the same.
    epochs: LeaderEpochCache,
}

impl Inner {
    /// What the checkpoint file should hold now.
    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            recovery_point: self.recovery_point,
            log_start_offset: self.log_start_offset,
        }
    }

    /// Moves the log end offset, and its lock-free copy [`Log::log_end_offset`] reads.
    fn set_log_end_offset(&mut self, log_end: &AtomicI64, offset: i64) {
        self.log_end_offset = offset;
        log_end.store(offset, Ordering::Release);
    }
}

/// The lock around [`Inner`]: a `std` mutex rather than `parking_lot`'s. An append holds it
/// across its `pwrite`, and the group-commit flusher waits for it between fsyncs.
/// `parking_lot` spins by yielding the CPU, and on a busy machine a yielding flusher lost the
/// CPU for milliseconds at a time (the next fsync, and every acknowledgement, waited with it);
/// a waiter asleep on the `std` futex is woken when the lock is let go.
#[derive(Debug)]
struct InnerLock(std::sync::Mutex<Inner>);

impl InnerLock {
    fn new(inner: Inner) -> Self {
        Self(std::sync::Mutex::new(inner))
    }

    /// Never fails: after a panic while the lock was held, `Inner` is as the panicking code
    /// left it, as with `parking_lot`, which does not poison.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The log of one partition, stored in its own directory. Shareable across threads.
///
/// Dropping a log without [`Log::close`] behaves like a crash: the next open recovers.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    clock: Arc<dyn Clock>,
    handles: HandleCache,
    inner: InnerLock,
    flush_lock: Mutex<()>,
    /// Serializes compaction passes.
    compaction_lock: Mutex<()>,
    /// What the checkpoint file holds. Held across every write of it, so writes go in order;
    /// taken after `inner` when both are.
    last_checkpoint: Mutex<Option<Checkpoint>>,
    cleaner_dedupe_buffer_size: usize,
    /// Every offset below this is durable.
    flushed: AtomicI64,
    /// `Inner::log_end_offset`, stored with it: read without the lock, which an append holds
    /// across its write, so the flusher and acknowledgements need not wait for a `pwrite`.
    log_end: AtomicI64,
    offline: AtomicBool,
}

impl Log {
    /// Opens (or creates) the log in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        Self::open_with(dir, LogOptions::new(config))
    }

    /// Opens (or creates) the log in `dir`, recovering it if it was not closed cleanly.
    pub fn open_with(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        let LogOptions {
            config,
            fs,
            clock,
            handles,
            cleaner_dedupe_buffer_size,
        } = options;
        let dir = dir.as_ref().to_path_buf();
        config.validate().map_err(|reason| Error::InvalidConfig {
            name: "log config".into(),
            value: format!("{config:?}"),
            reason,
        })?;
        fs.create_dir_all(&dir)
            .map_err(Error::io("create directory", &dir))?;
        let mut names = fs
            .list_dir(&dir)
            .map_err(Error::io("list directory", &dir))?;
        if cleaner::recover_swaps(&*fs, &dir, &names)? {
            names = fs
                .list_dir(&dir)
                .map_err(Error::io("list directory", &dir))?;
        }
        let clean = names.iter().any(|n| n == CLEAN_SHUTDOWN_FILE);
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|n| segment::parse_file_name(n, LOG_SUFFIX))
            .collect();
        bases.sort_unstable();
        // Leftovers of interrupted work: temp files and indexes whose segment is gone.
        for name in &names {
            let orphan_index = [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX]
                .iter()
                .any(|s| {
                    segment::parse_file_name(name, s)
                        .is_some_and(|b| bases.binary_search(&b).is_err())
                });
            if orphan_index || name.ends_with(TMP_SUFFIX) {
                let path = dir.join(name);
                fs.remove_file(&path)
                    .map_err(Error::io("remove leftover", &path))?;
            }
        }
        let checkpoint = checkpoint::read(&*fs, &dir);
        let cleaner_checkpoint = checkpoint::read_cleaner(&*fs, &dir);
        let epoch_file = checkpoint::read_leader_epochs(&*fs, &dir);
        // Epoch runs of the batches recovery scanned, in offset order.
        let mut recovered_epochs = Vec::new();
        let recovery_point = checkpoint.map_or(0, |c| c.recovery_point);

        let mut segments = BTreeMap::new();
        if !clean && !bases.is_empty() {
            let to_scan = bases
                .iter()
                .enumerate()
                .filter(|&(i, _)| bases.get(i + 1).is_none_or(|&n| n > recovery_point))
                .count();
            tracing::info!(
                dir = %dir.display(),
                recovery_point,
                segments = to_scan,
                "no clean shutdown: recovering"
            );
        }
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let is_last = next_base.is_none();
            let needs_recovery =
                !clean && (is_last || next_base.is_some_and(|n| n > recovery_point));
            let loaded = if needs_recovery {
                None
            } else {
                Segment::open_with_indexes(&fs, &dir, base)?
            };
            let segment = match loaded {
                Some(segment) => segment,
                None => {
                    let (mut segment, recovered) =
                        Segment::recover(&fs, &dir, base, config.index_interval_bytes)?;
                    recovered_epochs.extend_from_slice(&recovered.epoch_starts);
                    if !is_last {
                        segment.write_index_files(&*fs, &dir)?;
                    }
                    if recovered.truncated_bytes > 0 {
                        segments.insert(base, segment);
                        for &later in bases.get(i + 1..).unwrap_or_default() {
                            tracing::warn!(dir = %dir.display(), base = later, "deleting segment after a corrupt one");
                            delete_segment_files(&*fs, &dir, later)?;
                        }
                        break;
                    }
                    segment
                }
            };
            segments.insert(base, segment);
        }
        if segments.is_empty() {
            let base = checkpoint.map_or(0, |c| c.log_start_offset.max(0));
            segments.insert(base, Segment::create(&fs, &dir, base)?);
            fs.sync_dir(&dir)
                .map_err(Error::io("fsync directory", &dir))?;
        }
        // Inactive segments open their files on demand, through the shared handle cache.
        let active_base = segments.keys().next_back().copied();
        for segment in segments.values_mut() {
            if Some(segment.base_offset) != active_base {
                segment.file.unpin(&handles, false);
            }
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_end_offset = segments.values().next_back().map_or(0, |s| s.next_offset);
        let log_start_offset = checkpoint
            .map_or(first_base, |c| c.log_start_offset)
            .max(first_base)
            .min(log_end_offset);
        // Recovery fsyncs nothing: what it kept may still be only in the page cache, so the
        // recovery point stays where the checkpoint had it, and the next flush syncs every
        // segment past it (and the index files recovery rebuilt). Recovering again after
        // another crash gives the same result.
        let recovery_point = if clean {
            log_end_offset
        } else {
            recovery_point.min(log_end_offset)
        };
        let epochs = load_epochs(
            &dir,
            &segments,
            &epoch_file,
            &recovered_epochs,
            log_start_offset,
            log_end_offset,
        )?;
        let write_epochs = match &epoch_file {
            LeaderEpochFile::Entries(entries) => entries != epochs.entries(),
            LeaderEpochFile::Missing => !epochs.is_empty(),
            LeaderEpochFile::Corrupt(_) => true,
        };
        if write_epochs {
            checkpoint::write_leader_epochs(&*fs, &dir, epochs.entries())?;
        }
        let log = Self {
            dir: dir.clone(),
            fs: fs.clone(),
            clock: clock.clone(),
            handles: handles.clone(),
            inner: InnerLock::new(Inner {
                config,
                segments,
                log_start_offset,
                log_end_offset,
                recovery_point,
                unflushed_messages: 0,
                last_flush_ms: clock.now_ms(),
                clean_marker: clean,
                // A pass only ever cleans durable segments, so the offset is within the log;
                // clamping guards against a hand-edited file.
                cleaned_up_to: cleaner_checkpoint
                    .map_or(0, |c| c.cleaned_up_to)
                    .min(log_end_offset),
                delete_horizon: cleaner_checkpoint
                    .map(|c| c.delete_horizon)
                    .filter(|&h| h >= 0),
                generation: 0,
                epochs,
            }),
            flush_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
            last_checkpoint: Mutex::new(checkpoint),
            cleaner_dedupe_buffer_size,
            flushed: AtomicI64::new(recovery_point),
            log_end: AtomicI64::new(log_end_offset),
            offline: AtomicBool::new(false),
        };
        // A clean open of an unchanged log writes nothing: the marker stays until the first
        // change (see `mark_dirty`), so idle partitions cost no fsync at start.
        let up_to_date = checkpoint
            == Some(Checkpoint {
                recovery_point,
                log_start_offset,
            });
        if !up_to_date {
            log.write_checkpoint(&log.inner.lock())?;
        }
        tracing::debug!(dir = %dir.display(), clean, log_start_offset, log_end_offset, "opened log");
        Ok(log)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current settings.
    pub fn config(&self) -> LogConfig {
        self.inner.lock().config.clone()
    }

    /// Replaces the settings (a topic config change); they apply from the next operation.
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate().map_err(|reason| Error::InvalidConfig {
            name: "log config".into(),
            value: format!("{config:?}"),
            reason,
        })?;
        self.inner.lock().config = config;
        Ok(())
    }

    /// First offset a consumer can read.
    pub fn log_start_offset(&self) -> i64 {
        self.inner.lock().log_start_offset
    }

    /// Offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// Every offset below this is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.inner.lock().recovery_point
    }

    /// Every offset below this is fsynced; unlike [`Log::recovery_point`], read without the
    /// log's lock, so it is cheap to poll (the broker's acks=all and high watermark paths).
    pub fn flushed_offset(&self) -> i64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// The leader epoch of the newest entry of the leader epoch cache: the epoch the log's
    /// latest batches were written in (or that [`Log::assign_leader_epoch`] started).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.lock().epochs.latest_epoch()
    }

    /// Kafka's OffsetForLeaderEpoch answer for `epoch` from this log: see
    /// [`LeaderEpochCache::end_offset_for`]; the latest epoch ends at the log end offset.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> EpochEndOffset {
        let inner = self.inner.lock();
        inner.epochs.end_offset_for(epoch, inner.log_end_offset)
    }

    /// The leader epoch cache's entries, oldest first.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.inner.lock().epochs.entries().to_vec()
    }

    /// Records that `leader_epoch` starts at the log end offset, before anything is appended
    /// in it: what a replica does when it becomes leader, so that OffsetForLeaderEpoch answers
    /// for its epoch at once. Appends in the epoch later keep the entry. An entry with no
    /// batch behind it is dropped when the log is reopened (as in Kafka), so the broker calls
    /// this again on each election.
    pub fn assign_leader_epoch(&self, leader_epoch: i32) -> Result<()> {
        self.check_online()?;
        let mut inner = self.inner.lock();
        let leo = inner.log_end_offset;
        if inner.epochs.assign(leader_epoch, leo) {
            self.write_epochs(&inner)?;
        }
        Ok(())
    }

    /// Records that the transaction `txn.producer_id` wrote from `txn.first_offset` was
    /// aborted by the marker at `txn.last_offset`, in the transaction index of the segment
    /// holding the marker (which must be in the log). Returns false, changing nothing, when the
    /// marker has an entry already (so the broker can call this again for every ABORT marker
    /// it replays, restoring entries a crash lost) or its segment is gone (retention).
    /// The entry is fsynced by the next flush covering the segment; a failed write takes the
    /// log offline, since consumers would otherwise read aborted records as committed.
    pub fn add_aborted_txn(&self, txn: AbortedTxn) -> Result<bool> {
        self.check_online()?;
        let mut inner = self.inner.lock();
        if txn.last_offset >= inner.log_end_offset || txn.last_offset < inner.log_start_offset {
            if txn.last_offset < inner.log_start_offset {
                return Ok(false);
            }
            return Err(Error::OffsetOutOfRange {
                offset: txn.last_offset,
                log_start_offset: inner.log_start_offset,
                log_end_offset: inner.log_end_offset,
            });
        }
        let Some((_, segment)) = inner.segments.range_mut(..=txn.last_offset).next_back() else {
            return Ok(false);
        };
        segment
            .add_aborted_txn(&*self.fs, &self.dir, txn)
            .map_err(|e| self.fail(e))
    }

    /// The aborted transactions with records in `[from, upper)`: what a read_committed Fetch
    /// returning that range sends along, for the consumer to drop their records. Searches the
    /// transaction indexes from the segment holding `from` on (a marker comes after its
    /// transaction's records), stopping at the first segment with an entry written when every
    /// transaction starting below `upper` had ended. In marker order.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let inner = self.inner.lock();
        let start = inner
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(&base, _)| base);
        let mut found = Vec::new();
        for segment in inner.segments.range(start..).map(|(_, s)| s) {
            if segment.txn_index.collect(from, upper, &mut found) {
                break;
            }
        }
        found
    }

    /// Every entry of every transaction index, in marker order (for tests and tools).
    pub fn aborted_txn_entries(&self) -> Vec<AbortedTxn> {
        let inner = self.inner.lock();
        inner
            .segments
            .values()
            .flat_map(|s| s.txn_index.entries().iter().copied())
            .collect()
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner.lock().segments.values().map(|s| s.size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.inner.lock().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.inner.lock().segments.keys().copied().collect()
    }

    /// Bumped whenever segments are removed, truncated or rewritten by compaction: a copy of
    /// the inactive segments taken at one generation is still exact at the same generation.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// Runs `f` with the log frozen: everything appended is fsynced (the checkpoint then holds
    /// the log end offset as recovery point), and the compaction and state locks are held, so
    /// no flush, checkpoint, retention, truncation, compaction or append changes a file
    /// meanwhile. `f` gets the current generation. For copying the log elsewhere
    /// (`LogManager::finish_move`).
    pub(crate) fn frozen<T>(&self, f: impl FnOnce(u64) -> Result<T>) -> Result<T> {
        self.check_online()?;
        self.flush()?;
        let _compacting = self.compaction_lock.lock();
        let inner = self.inner.lock();
        let current = inner.checkpoint();
        if *self.last_checkpoint.lock() != Some(current) {
            self.write_checkpoint(&inner)?;
        }
        f(inner.generation)
    }

    /// Takes the log offline for good: it has been replaced by a copy in another directory, so
    /// a late append or read through a stale handle fails instead of landing in (or reading)
    /// files about to be deleted.
    pub(crate) fn retire(&self) {
        self.offline.store(true, Ordering::Release);
    }

    fn check_online(&self) -> Result<()> {
        if self.offline.load(Ordering::Acquire) {
            return Err(Error::Offline {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Marks the log offline after a failed write or fsync and passes the error on.
    fn fail(&self, error: Error) -> Error {
        tracing::error!(dir = %self.dir.display(), %error, "storage error; taking the log offline");
        self.offline.store(true, Ordering::Release);
        error
    }

    /// Appends the record batches in `records` (one or more, concatenated). Everything is
    /// validated before anything is written; on success the buffer holds the batches as
    /// stored (offsets assigned). Returns after the write, or after the fsync when the flush
    /// policy asks for one.
    pub fn append(&self, records: &mut [u8], origin: AppendOrigin) -> Result<AppendInfo> {
        self.check_online()?;
        let now = self.clock.now_ms();
        let config = self.inner.lock().config.clone();
        let check = match origin {
            AppendOrigin::Leader { .. } => TimestampCheck::Clock(now),
            AppendOrigin::Replication => TimestampCheck::Trust,
        };
        let mut metas = validate(records, &config, check)?;
        let metas = metas.as_mut_slice();
        let (info, flush_to) = {
            let mut inner = self.inner.lock();
            self.check_online()?;
            let info = self.append_locked(&mut inner, records, metas, origin, now)?;
            let records_appended: i64 = metas.iter().map(|m| i64::from(m.record_count)).sum();
            inner.unflushed_messages += records_appended;
            let due = inner.unflushed_messages >= inner.config.flush_messages
                || now.saturating_sub(inner.last_flush_ms) >= inner.config.flush_ms;
            if due {
                inner.unflushed_messages = 0;
                inner.last_flush_ms = now;
            }
            (info, due.then_some(info.last_offset + 1))
        };
        if let Some(offset) = flush_to {
            self.flush_to(offset)?;
        }
        Ok(info)
    }

    /// Removes the clean-shutdown marker durably before the first change after a clean open,
    /// so a crash later cannot make the next open trust index files that went stale.
    fn mark_dirty(&self, inner: &mut Inner) -> Result<()> {
        if !inner.clean_marker {
            return Ok(());
        }
        // The active segment's index files from the clean close go stale with this change;
        // a crash must not leave them beside a segment that a flush then covers.
        if let Some(active) = inner.segments.values().next_back() {
            segment::remove_index_files(&*self.fs, &self.dir, active.base_offset)?;
        }
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        if self.fs.exists(&marker) {
            self.fs
                .remove_file(&marker)
                .map_err(Error::io("remove", &marker))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(Error::io("fsync directory", &self.dir))?;
        }
        inner.clean_marker = false;
        Ok(())
    }

    fn append_locked(
        &self,
        inner: &mut Inner,
        records: &mut [u8],
        metas: &mut [BatchMeta],
        origin: AppendOrigin,
        now: i64,
    ) -> Result<AppendInfo> {
        self.mark_dirty(inner)?;
        let first_offset = match origin {
            AppendOrigin::Leader { .. } => inner.log_end_offset,
            AppendOrigin::Replication => metas
                .first()
                .map_or(inner.log_end_offset, |m| m.base_offset),
        };
        let mut next = inner.log_end_offset;
        let log_append_time = (matches!(origin, AppendOrigin::Leader { .. })
            && inner.config.message_timestamp_type == TimestampType::LogAppendTime)
            .then_some(now);
        // Check the replicated offsets before touching the buffer.
        if origin == AppendOrigin::Replication {
            for meta in metas.iter() {
                if meta.base_offset < next {
                    return Err(Error::OutOfOrderOffset {
                        offset: meta.base_offset,
                        log_end_offset: next,
                    });
                }
                next = meta.base_offset + i64::from(meta.last_offset_delta) + 1;
            }
            next = inner.log_end_offset;
        }
        for meta in metas.iter_mut() {
            let bytes = records
                .get_mut(meta.position..meta.position + meta.size)
                .ok_or(Error::EmptyAppend)?;
            let invalid = |source| Error::InvalidBatch {
                position: meta.position,
                source,
            };
            match origin {
                AppendOrigin::Leader { leader_epoch } => {
                    batch::set_base_offset(bytes, next).map_err(invalid)?;
                    batch::set_partition_leader_epoch(bytes, leader_epoch).map_err(invalid)?;
                    if let Some(time) = log_append_time {
                        batch::set_log_append_time(bytes, time).map_err(invalid)?;
                        meta.max_timestamp = time;
                        meta.max_timestamp_delta = 0;
                    }
                    meta.base_offset = next;
                }
                AppendOrigin::Replication => {}
            }
            next = meta.base_offset + i64::from(meta.last_offset_delta) + 1;
        }
        let last_offset = next - 1;
        let max_timestamp = metas.iter().map(|m| m.max_timestamp).max().unwrap_or(-1);
        // A new epoch is made durable before the batches that start it are written, so the
        // checkpoint never lacks the epoch of a batch on disk.
        let epochs_changed = match origin {
            AppendOrigin::Leader { leader_epoch } => {
                inner.epochs.assign(leader_epoch, first_offset)
            }
            AppendOrigin::Replication => {
                let mut changed = false;
                for meta in metas.iter() {
                    changed |= inner
                        .epochs
                        .assign(meta.partition_leader_epoch, meta.base_offset);
                }
                changed
            }
        };
        if epochs_changed {
            self.write_epochs(inner)?;
        }

        if self.should_roll(
            inner,
            records.len() as u64,
            first_offset,
            last_offset,
            max_timestamp,
        ) {
            self.roll_locked(inner, first_offset)?;
        }
        let interval = inner.config.index_interval_bytes;
        let Some(active) = inner.segments.values_mut().next_back() else {
            return Err(Error::Corrupt {
                path: self.dir.clone(),
                reason: "log has no segment",
            });
        };
        let position = active.size;
        let file = active.file.get().map_err(|e| self.fail(e))?;
        if let Err(source) = file.write_all_at(records, position) {
            // Whatever part was written is garbage: cut it off, and stop trusting the file.
            let _ = file.set_len(position);
            return Err(self.fail(Error::Io {
                op: "append",
                path: active.path.clone(),
                source,
            }));
        }
        for meta in metas.iter() {
            active.track_batch(
                position + meta.position as u64,
                meta.size as u64,
                meta.base_offset + i64::from(meta.last_offset_delta),
                meta.max_timestamp,
                meta.base_offset + i64::from(meta.max_timestamp_delta),
                interval,
            );
        }
        inner.set_log_end_offset(&self.log_end, next);
        Ok(AppendInfo {
            first_offset,
            last_offset,
            log_append_time: log_append_time.unwrap_or(-1),
            max_timestamp,
            log_start_offset: inner.log_start_offset,
        })
    }

    fn should_roll(
        &self,
        inner: &Inner,
        size: u64,
        first: i64,
        last: i64,
        max_timestamp: i64,
    ) -> bool {
        let Some(active) = inner.segments.values().next_back() else {
            return true;
        };
        if active.is_empty() {
            return false;
        }
        let config = &inner.config;
        active.size + size > u64::from(config.segment_bytes)
            || active.size + size > u64::from(u32::MAX)
            || active.index_full(config.segment_index_bytes)
            || last - active.base_offset > i64::from(i32::MAX)
            || first < active.next_offset
            || active
                .first_batch_timestamp
                .is_some_and(|t| t >= 0 && max_timestamp.saturating_sub(t) > config.segment_ms)
    }

    /// Starts a new segment at `base_offset`; the old active segment's index files are
    /// written (made durable by the next flush).
    fn roll_locked(&self, inner: &mut Inner, base_offset: i64) -> Result<()> {
        self.mark_dirty(inner)?;
        if let Some(active) = inner.segments.values_mut().next_back() {
            if active.is_empty() && active.base_offset == base_offset {
                return Ok(());
            }
            active
                .write_index_files(&*self.fs, &self.dir)
                .map_err(|e| self.fail(e))?;
            active.file.unpin(&self.handles, true);
        }
        let segment =
            Segment::create(&self.fs, &self.dir, base_offset).map_err(|e| self.fail(e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(Error::io("fsync directory", &self.dir))
            .map_err(|e| self.fail(e))?;
        // An empty segment being replaced would only confuse lookups.
        if let Some((&base, last)) = inner.segments.iter().next_back() {
            if last.is_empty() {
                inner.segments.remove(&base);
                inner.generation += 1;
                delete_segment_files(&*self.fs, &self.dir, base)?;
            }
        }
        tracing::debug!(dir = %self.dir.display(), base_offset, "rolled segment");
        inner.segments.insert(base_offset, segment);
        Ok(())
    }

    /// Rolls a new segment at the log end offset (no-op when the active segment is empty).
    pub fn roll(&self) -> Result<()> {
        self.check_online()?;
        let mut inner = self.inner.lock();
        let leo = inner.log_end_offset;
        self.roll_locked(&mut inner, leo)
    }

    /// Fsyncs everything appended so far.
    pub fn flush(&self) -> Result<()> {
        let leo = self.log_end_offset();
        self.flush_to(leo)
    }

    /// Fsyncs if `flush.ms` has passed since the last fsync; the broker calls this on a tick.
    pub fn flush_if_due(&self) -> Result<()> {
        let now = self.clock.now_ms();
        let due = {
            let mut inner = self.inner.lock();
            let due = inner.unflushed_messages > 0
                && now.saturating_sub(inner.last_flush_ms) >= inner.config.flush_ms;
            if due {
                inner.unflushed_messages = 0;
                inner.last_flush_ms = now;
            }
            due.then_some(inner.log_end_offset)
        };
        match due {
            Some(offset) => self.flush_to(offset),
            None => Ok(()),
        }
    }

    /// Makes every offset below `offset` durable (fsyncs the segments and index files holding
    /// data at or past [`Log::flushed_offset`]), then returns; an `offset` already covered
    /// returns at once without locking.
    ///
    /// Group commit: concurrent callers share fsyncs. One caller at a time syncs, and it syncs
    /// up to the log end offset it sees, so the callers waiting behind it usually find their
    /// offsets covered when their turn comes and return without another fsync.
    pub fn flush_to(&self, offset: i64) -> Result<()> {
        if self.flushed.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _flushing = self.flush_lock.lock();
        if self.flushed.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        self.check_online()?;
        let flushed = self.flushed.load(Ordering::Acquire);
        let (files, end) = {
            let mut inner = self.inner.lock();
            (
                Self::files_to_sync(&*self.fs, &mut inner, flushed)?,
                inner.log_end_offset,
            )
        };
        self.sync_files(files)?;
        self.flushed.store(end, Ordering::Release);
        let mut inner = self.inner.lock();
        inner.recovery_point = inner.recovery_point.max(end);
        Ok(())
    }

    /// Files holding data at or above `flushed`, and index files not yet fsynced.
    fn files_to_sync(
        fs: &dyn FileSystem,
        inner: &mut Inner,
        flushed: i64,
    ) -> Result<Vec<(Arc<dyn File>, PathBuf)>> {
        let mut files: Vec<(Arc<dyn File>, PathBuf)> = Vec::new();
        for segment in inner.segments.values_mut() {
            if segment.next_offset > flushed || !segment.unsynced_index_files.is_empty() {
                files.push((segment.file.get()?, segment.path.clone()));
                for path in segment.unsynced_index_files.drain(..) {
                    if let Some(file) = open_to_sync(fs, &path)? {
                        files.push((file, path));
                    }
                }
            }
        }
        Ok(files)
    }

    fn sync_files(&self, files: Vec<(Arc<dyn File>, PathBuf)>) -> Result<()> {
        for (file, path) in files {
            file.sync_data().map_err(|source| {
                self.fail(Error::Io {
                    op: "fsync",
                    path,
                    source,
                })
            })?;
        }
        Ok(())
    }

    /// Writes the recovery point and log start offset checkpoint. The broker calls this
    /// periodically; a stale checkpoint only makes recovery scan more.
    /// Skipped when nothing changed since the last one, so a periodic tick over many idle
    /// partitions costs no fsync.
    pub fn checkpoint(&self) -> Result<()> {
        let inner = self.inner.lock();
        let current = inner.checkpoint();
        let mut last = self.last_checkpoint.lock();
        if *last == Some(current) {
            return Ok(());
        }
        // The write fsyncs a file and the directory, milliseconds under load, and the broker
        // checkpoints every half second: holding the log's lock across it stalled every append
        // (and so every acks=all Produce) twice a second. `last`, taken before the log's lock
        // is let go, keeps the writers in order: anything that changes the log and writes the
        // checkpoint holds the log's lock and waits for `last`, so it writes after this one.
        drop(inner);
        self.store_checkpoint(&mut last, current)
    }

    /// Records how far the log is compacted; only compacted logs (or logs that were) have one.
    fn write_cleaner_checkpoint(&self, inner: &Inner) -> Result<()> {
        checkpoint::write_cleaner(
            &*self.fs,
            &self.dir,
            CleanerCheckpoint {
                cleaned_up_to: inner.cleaned_up_to,
                delete_horizon: inner.delete_horizon.unwrap_or(-1),
            },
        )
    }

    /// Lowers the cleaner checkpoint to `offset` before the log is cut there, so data appended
    /// again below the old checkpoint counts as dirty.
    fn lower_cleaner_checkpoint(&self, inner: &mut Inner, offset: i64) -> Result<()> {
        if inner.cleaned_up_to <= offset {
            return Ok(());
        }
        inner.cleaned_up_to = offset;
        self.write_cleaner_checkpoint(inner)
    }

    /// Writes the leader epoch checkpoint. A failure takes the log offline: the cache in memory
    /// has changed, and a later append must not write batches whose epoch the file lacks.
    fn write_epochs(&self, inner: &Inner) -> Result<()> {
        checkpoint::write_leader_epochs(&*self.fs, &self.dir, inner.epochs.entries())
            .map_err(|e| self.fail(e))
    }

    /// Drops leader epochs below the log start offset, once the log start offset is durable
    /// (a crash before this leaves extra entries, which open trims the same way).
    fn trim_epochs_to_log_start(&self, inner: &mut Inner) -> Result<()> {
        let log_start_offset = inner.log_start_offset;
        if inner.epochs.truncate_from_start(log_start_offset) {
            self.write_epochs(inner)?;
        }
        Ok(())
    }

    fn write_checkpoint(&self, inner: &Inner) -> Result<()> {
        let current = inner.checkpoint();
        self.store_checkpoint(&mut self.last_checkpoint.lock(), current)
    }

    /// Writes `current` to the checkpoint file, with `last` (the `last_checkpoint` guard)
    /// held across the write so writers go in order.
    fn store_checkpoint(&self, last: &mut Option<Checkpoint>, current: Checkpoint) -> Result<()> {
        checkpoint::write(&*self.fs, &self.dir, current)?;
        *last = Some(current);
        Ok(())
    }

    /// Reads whole batches starting with the one containing `from_offset`, up to `max_bytes`
    /// but at least one batch (KIP-74), and only batches wholly below `upper_bound` (the high
    /// watermark or last stable offset). Reads never span segments.
    pub fn read(&self, from_offset: i64, max_bytes: usize, upper_bound: i64) -> Result<LogSlice> {
        self.check_online()?;
        let inner = self.inner.lock();
        if from_offset < inner.log_start_offset || from_offset > inner.log_end_offset {
            return Err(Error::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset: inner.log_start_offset,
                log_end_offset: inner.log_end_offset,
            });
        }
        let upper = upper_bound.min(inner.log_end_offset);
        let mut from = from_offset;
        for (_, segment) in inner
            .segments
            .range(..=from_offset)
            .next_back()
            .into_iter()
            .chain(inner.segments.range(from_offset + 1..))
        {
            if segment.base_offset >= upper {
                break;
            }
            let Some((start, header)) = segment.find_batch(from, segment.size)? else {
                from = from.max(segment.next_offset);
                continue;
            };
            if header.last_offset() >= upper {
                break;
            }
            let file = segment.file.get()?;
            let mut end = start + header.size() as u64;
            let mut next_offset = header.last_offset() + 1;
            let limit = start + (max_bytes as u64).max(header.size() as u64);
            if upper >= segment.next_offset && segment.size <= limit {
                end = segment.size; // everything left in the segment fits
                next_offset = segment.next_offset;
            } else {
                // Jump with the index to the last indexed batch that starts within the limit
                // and ends below the upper bound: every batch before it qualifies too. (The
                // first batch ends below `upper`, so `upper - 1` is in this segment.)
                if let Some((relative, position)) = segment
                    .index
                    .last_within(limit, segment.relative(upper - 1))
                {
                    if u64::from(position) > end {
                        if let Some(h) =
                            segment::read_header(&*file, u64::from(position), segment.size)
                                .map_err(Error::io("read", &segment.path))?
                        {
                            debug_assert_eq!(
                                h.last_offset(),
                                segment.base_offset + i64::from(relative)
                            );
                            end = u64::from(position);
                            next_offset = h.base_offset;
                        }
                    }
                }
                let io = Error::io("read", &segment.path);
                segment::scan(
                    &*file,
                    end,
                    segment.size.min(limit),
                    false,
                    |position, h| {
                        if h.last_offset() >= upper || position + h.size() as u64 > limit {
                            return false;
                        }
                        end = position + h.size() as u64;
                        next_offset = h.last_offset() + 1;
                        true
                    },
                )
                .map_err(io)?;
            }
            return Ok(LogSlice {
                file: Some(file),
                position: start,
                len: (end - start) as usize,
                first_offset: header.base_offset,
                next_offset,
            });
        }
        Ok(LogSlice::empty(from_offset))
    }

    /// The first record with a timestamp `>= timestamp` at or after the log start offset
    /// (ListOffsets), or `None` when every record is older.
    pub fn fetch_offset_by_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        self.check_online()?;
        let inner = self.inner.lock();
        let lso = inner.log_start_offset;
        for segment in inner.segments.values() {
            if segment.max_timestamp < timestamp || segment.next_offset <= lso {
                continue;
            }
            let start = match segment.time_index.lookup_below(timestamp) {
                Some((_, rel)) => segment.index.lookup(rel),
                None => 0,
            };
            let file = segment.file.get()?;
            let io = || Error::io("read", &segment.path);
            let mut position = u64::from(start);
            while let Some(header) =
                segment::read_header(&*file, position, segment.size).map_err(io())?
            {
                let size = header.size() as u64;
                if position + size > segment.size {
                    break;
                }
                if header.max_timestamp >= timestamp && header.last_offset() >= lso {
                    let mut buf = BytesMut::zeroed(header.size());
                    read_exact_at(&*file, &mut buf, position).map_err(io())?;
                    let records = RecordBatch::new(buf.freeze()).and_then(|b| b.records());
                    match (header.attributes.timestamp_type(), records) {
                        (TimestampType::CreateTime, Ok(records)) => {
                            // Compaction may have removed every record at or past the log
                            // start offset: then the search goes on.
                            if let Some(r) = records
                                .filter_map(Result::ok)
                                .find(|r| r.timestamp >= timestamp && r.offset >= lso)
                            {
                                return Ok(Some(TimestampOffset {
                                    offset: r.offset,
                                    timestamp: r.timestamp,
                                }));
                            }
                        }
                        // LogAppendTime: every record has the batch's time. Compressed batches
                        // cannot be searched yet; their first offset stands in.
                        _ => {
                            return Ok(Some(TimestampOffset {
                                offset: header.base_offset.max(lso),
                                timestamp: header.max_timestamp,
                            }));
                        }
                    }
                }
                position += size;
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (ListOffsets `MAX_TIMESTAMP`), `None` when empty.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>> {
        self.check_online()?;
        let inner = self.inner.lock();
        let mut best: Option<&Segment> = None;
        for s in inner.segments.values() {
            if !s.is_empty() && best.is_none_or(|b| s.max_timestamp > b.max_timestamp) {
                best = Some(s);
            }
        }
        let Some(segment) = best else {
            return Ok(None);
        };
        // Indexes rebuilt by recovery only know the batch; find the record in it.
        let mut found = TimestampOffset {
            offset: segment.offset_of_max_timestamp,
            timestamp: segment.max_timestamp,
        };
        if let Some((position, header)) =
            segment.find_batch(segment.offset_of_max_timestamp, segment.size)?
        {
            let file = segment.file.get()?;
            let mut buf = BytesMut::zeroed(header.size());
            read_exact_at(&*file, &mut buf, position).map_err(Error::io("read", &segment.path))?;
            if header.attributes.timestamp_type() == TimestampType::CreateTime {
                if let Ok(records) = RecordBatch::new(buf.freeze()).and_then(|b| b.records()) {
                    if let Some(r) = records
                        .filter_map(Result::ok)
                        .find(|r| r.timestamp == segment.max_timestamp)
                    {
                        found.offset = r.offset;
                    }
                }
            } else {
                found.offset = header.base_offset;
            }
        }
        Ok(Some(found))
    }

    /// Removes every batch from the one containing `offset` onwards (a follower truncating to
    /// its leader). The new log end offset is the base offset of the first removed batch.
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        self.check_online()?;
        let _flushing = self.flush_lock.lock();
        let mut inner = self.inner.lock();
        if offset >= inner.log_end_offset {
            return Ok(());
        }
        let first_base = inner.segments.keys().next().copied().unwrap_or(0);
        if offset <= first_base {
            drop(inner);
            drop(_flushing);
            return self.truncate_fully_and_start_at(offset);
        }
        self.mark_dirty(&mut inner)?;
        // Durably lower the recovery point first: a crash mid-truncation then rescans.
        inner.recovery_point = inner.recovery_point.min(offset);
        inner.log_start_offset = inner.log_start_offset.min(offset);
        self.write_checkpoint(&inner)?;
        self.lower_cleaner_checkpoint(&mut inner, offset)?;
        let doomed: Vec<i64> = inner
            .segments
            .range(offset + 1..)
            .map(|(&b, _)| b)
            .collect();
        for base in doomed {
            inner.segments.remove(&base);
            inner.generation += 1;
            delete_segment_files(&*self.fs, &self.dir, base).map_err(|e| self.fail(e))?;
        }
        let interval = inner.config.index_interval_bytes;
        inner.generation += 1;
        let Some(active) = inner.segments.values_mut().next_back() else {
            return Err(Error::Corrupt {
                path: self.dir.clone(),
                reason: "log has no segment",
            });
        };
        active.file.pin().map_err(|e| self.fail(e))?;
        active
            .truncate_to(offset, interval)
            .map_err(|e| self.fail(e))?;
        active
            .truncate_txn_index(&*self.fs, &self.dir)
            .map_err(|e| self.fail(e))?;
        // It is the active segment again: its index lives in memory until the next roll.
        segment::remove_index_files(&*self.fs, &self.dir, active.base_offset)
            .map_err(|e| self.fail(e))?;
        active.unsynced_index_files.clear();
        let leo = active.next_offset;
        inner.set_log_end_offset(&self.log_end, leo);
        // The log may end below `offset` (a batch containing it goes whole).
        self.lower_cleaner_checkpoint(&mut inner, leo)?;
        inner.log_start_offset = inner.log_start_offset.min(leo);
        // Flush what is left: a crash must not keep a later segment's data (or the truncated
        // one's) while losing an earlier segment's un-fsynced batches.
        let flushed = self.flushed.load(Ordering::Acquire).min(leo);
        let files = Self::files_to_sync(&*self.fs, &mut inner, flushed)?;
        self.sync_files(files)?;
        self.flushed.store(leo, Ordering::Release);
        inner.recovery_point = leo;
        self.write_checkpoint(&inner)?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(Error::io("fsync directory", &self.dir))
            .map_err(|e| self.fail(e))?;
        // The cut is durable now (segment fsynced, later segments' removal synced), so the
        // epochs past it can go: a crash before this leaves them in the file, and open drops
        // them again.
        if inner.epochs.truncate_from_end(leo) {
            self.write_epochs(&inner)?;
        }
        tracing::info!(dir = %self.dir.display(), offset, log_end_offset = leo, "truncated log");
        Ok(())
    }

    /// Deletes every segment and restarts the log empty at `offset` (a follower whose leader's
    /// log start offset is past its log end).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        self.check_online()?;
        let _flushing = self.flush_lock.lock();
        let mut inner = self.inner.lock();
        self.mark_dirty(&mut inner)?;
        self.lower_cleaner_checkpoint(&mut inner, offset)?;
        let bases: Vec<i64> = inner.segments.keys().copied().collect();
        for base in bases {
            inner.segments.remove(&base);
            inner.generation += 1;
            delete_segment_files(&*self.fs, &self.dir, base).map_err(|e| self.fail(e))?;
        }
        let segment = Segment::create(&self.fs, &self.dir, offset).map_err(|e| self.fail(e))?;
        inner.segments.insert(offset, segment);
        self.fs
            .sync_dir(&self.dir)
            .map_err(Error::io("fsync directory", &self.dir))
            .map_err(|e| self.fail(e))?;
        inner.log_start_offset = offset;
        inner.set_log_end_offset(&self.log_end, offset);
        inner.recovery_point = offset;
        self.flushed.store(offset, Ordering::Release);
        // After the segments are durably gone: a crash before this leaves the old entries,
        // which open trims to the empty log.
        if inner.epochs.clear() {
            self.write_epochs(&inner)?;
        }
        self.write_checkpoint(&inner)?;
        tracing::info!(dir = %self.dir.display(), offset, "truncated fully");
        Ok(())
    }

    /// Moves the log start offset forward to `offset` (DeleteRecords) and deletes segments that
    /// lie wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        self.check_online()?;
        let mut inner = self.inner.lock();
        if offset > inner.log_end_offset || offset < 0 {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset: inner.log_start_offset,
                log_end_offset: inner.log_end_offset,
            });
        }
        if offset > inner.log_start_offset {
            self.mark_dirty(&mut inner)?;
            inner.log_start_offset = offset;
            self.write_checkpoint(&inner)?;
        }
        self.delete_segments_locked(&mut inner, i64::MAX, |_, _, _| false)?;
        self.trim_epochs_to_log_start(&mut inner)?;
        Ok(inner.log_start_offset)
    }

    /// Applies `retention.ms` and `retention.bytes` (when `cleanup.policy` includes delete) and
    /// the log start offset, deleting whole segments from the oldest, but only segments wholly
    /// below `high_watermark`. Returns how many segments were deleted.
    pub fn apply_retention(&self, high_watermark: i64) -> Result<usize> {
        self.check_online()?;
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let config = inner.config.clone();
        let total: u64 = inner.segments.values().map(|s| s.size).sum();
        let mut excess = if config.retention_bytes >= 0 && config.cleanup_policy.delete {
            total.saturating_sub(config.retention_bytes as u64)
        } else {
            0
        };
        let fs = self.fs.clone();
        self.delete_segments_locked(&mut inner, high_watermark, |segment, _, _| {
            let by_time = config.cleanup_policy.delete
                && config.retention_ms >= 0
                && now.saturating_sub(Self::largest_timestamp(&*fs, segment)) > config.retention_ms;
            let by_size = excess >= segment.size && segment.size > 0;
            if by_size {
                excess -= segment.size;
            }
            by_time || by_size
        })
    }

    /// The time `retention.ms` measures a segment by: its largest record timestamp, or, when it
    /// has none (-1: empty, or records without timestamps), its file's modification time, as
    /// Kafka does. A segment whose time cannot be read is kept.
    fn largest_timestamp(fs: &dyn FileSystem, segment: &Segment) -> i64 {
        if segment.max_timestamp >= 0 {
            return segment.max_timestamp;
        }
        fs.modified_ms(&segment.path).unwrap_or_else(|error| {
            tracing::warn!(segment = %segment.path.display(), %error, "cannot read the segment's modification time; keeping it");
            i64::MAX
        })
    }

    /// Deletes segments from the oldest while each lies below the log start offset or matches
    /// `extra(segment, next_base, is_active)`, and lies wholly below `upper`. The active segment
    /// is replaced by an empty one when it goes.
    fn delete_segments_locked(
        &self,
        inner: &mut Inner,
        upper: i64,
        mut extra: impl FnMut(&Segment, Option<i64>, bool) -> bool,
    ) -> Result<usize> {
        let mut doomed = Vec::new();
        let bases: Vec<i64> = inner.segments.keys().copied().collect();
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let Some(segment) = inner.segments.get(&base) else {
                break;
            };
            let end = next_base.unwrap_or(segment.next_offset);
            let is_active = next_base.is_none();
            if end > upper || (is_active && segment.is_empty()) {
                break;
            }
            let below_start = end <= inner.log_start_offset && !is_active;
            if !(below_start || extra(segment, next_base, is_active)) {
                break;
            }
            doomed.push(base);
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        self.mark_dirty(inner)?;
        if doomed.len() == bases.len() {
            let leo = inner.log_end_offset;
            self.roll_locked(inner, leo)?;
        }
        for &base in &doomed {
            inner.segments.remove(&base);
            inner.generation += 1;
            delete_segment_files(&*self.fs, &self.dir, base).map_err(|e| self.fail(e))?;
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(Error::io("fsync directory", &self.dir))
            .map_err(|e| self.fail(e))?;
        let first = inner
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(inner.log_end_offset);
        inner.log_start_offset = inner.log_start_offset.max(first);
        self.write_checkpoint(inner)?;
        self.trim_epochs_to_log_start(inner)?;
        tracing::info!(dir = %self.dir.display(), deleted = doomed.len(), log_start_offset = inner.log_start_offset, "deleted segments");
        Ok(doomed.len())
    }

    /// Runs one compaction pass (when `cleanup.policy` includes compact) over the inactive
    /// segments wholly below `high_watermark` whose records are older than
    /// `min.compaction.lag.ms`: keeps the latest record of each key, stamps kept tombstones with
    /// a delete horizon of `delete.retention.ms` from now and drops those whose horizon has
    /// passed, merges small adjacent segments, preserves offsets. The key map of one pass is
    /// bounded by [`LogOptions::cleaner_dedupe_buffer_size`]; a pass that fills it ends there
    /// ([`CompactionStats::cleaned_up_to`]) and the next pass continues. How far the log is
    /// clean is checkpointed, so a restart does not start over.
    ///
    /// Does nothing when no data is dirty, no delete horizon has passed and no segments can be
    /// merged. The broker's cleaner calls this per log, as often as it likes; it is
    /// deterministic given the clock. Appends and reads continue while it runs.
    pub fn compact(&self, high_watermark: i64) -> Result<CompactionStats> {
        self.check_online()?;
        let _cleaning = self.compaction_lock.lock();
        let now = self.clock.now_ms();
        let (config, plan, generation) = {
            let mut inner = self.inner.lock();
            if !inner.config.cleanup_policy.compact {
                return Ok(CompactionStats::default());
            }
            let config = inner.config.clone();
            let plan = cleaner::plan(
                &inner.segments,
                high_watermark,
                now,
                &config,
                inner.cleaned_up_to,
            )?;
            let horizon_due = inner.delete_horizon.is_some_and(|h| h <= now);
            if !plan.has_work(horizon_due) {
                return Ok(CompactionStats::default());
            }
            self.mark_dirty(&mut inner)?;
            (config, plan, inner.generation)
        };
        let mut stats = CompactionStats::default();
        let cleaned = match cleaner::clean(
            &self.fs,
            &self.dir,
            &plan,
            now,
            &config,
            self.cleaner_dedupe_buffer_size,
            &mut stats,
        ) {
            Ok(cleaned) => cleaned,
            // A segment deleted or cut meanwhile (retention, truncation) fails the read: that
            // is the pass's input going away, not a storage error.
            Err(_) if self.inner.lock().generation != generation => {
                tracing::info!(dir = %self.dir.display(), "segments changed during compaction; discarded the pass");
                return Ok(CompactionStats::default());
            }
            Err(e) => return Err(self.fail(e)),
        };
        drop(plan);
        let mut inner = self.inner.lock();
        let still_valid = inner.generation == generation;
        cleaner::swap(
            &self.fs,
            &self.handles,
            &self.dir,
            cleaned,
            &mut inner.segments,
            still_valid,
        )
        .map_err(|e| self.fail(e))?;
        if !still_valid {
            tracing::info!(dir = %self.dir.display(), "segments changed during compaction; discarded the pass");
            return Ok(CompactionStats::default());
        }
        inner.generation += 1;
        inner.cleaned_up_to = stats.cleaned_up_to;
        inner.delete_horizon = (stats.delete_horizon >= 0).then_some(stats.delete_horizon);
        self.write_cleaner_checkpoint(&inner)
            .map_err(|e| self.fail(e))?;
        tracing::info!(dir = %self.dir.display(), ?stats, "compacted");
        Ok(stats)
    }

    /// Share of the inactive segments' bytes holding offsets past the cleaner checkpoint, which
    /// the cleaner compares with `min.cleanable.dirty.ratio`. 0 for logs that are not compacted.
    pub fn dirty_ratio(&self) -> f64 {
        let inner = self.inner.lock();
        if !inner.config.cleanup_policy.compact {
            return 0.0;
        }
        let (mut dirty, mut total) = (0u64, 0u64);
        let mut segments = inner.segments.values().peekable();
        while let Some(segment) = segments.next() {
            let Some(next) = segments.peek() else { break };
            total += segment.size;
            if next.base_offset > inner.cleaned_up_to {
                dirty += segment.size;
            }
        }
        if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        }
    }

    /// Whether a tombstone in the compacted part of the log has passed its delete horizon, so
    /// a compaction pass would remove it even though nothing is dirty.
    pub fn delete_horizon_passed(&self) -> bool {
        let inner = self.inner.lock();
        inner.config.cleanup_policy.compact
            && inner
                .delete_horizon
                .is_some_and(|h| h <= self.clock.now_ms())
    }

    /// Flushes everything, writes the indexes and checkpoint and the clean-shutdown marker, so
    /// the next open skips recovery.
    pub fn close(self) -> Result<()> {
        self.check_online()?;
        self.flush()?;
        let _flushing = self.flush_lock.lock();
        let mut inner = self.inner.lock();
        if let Some(active) = inner.segments.values_mut().next_back() {
            active.write_index_files(&*self.fs, &self.dir)?;
            for path in active.unsynced_index_files.drain(..) {
                if let Some(file) = open_to_sync(&*self.fs, &path)? {
                    file.sync_data().map_err(Error::io("fsync", &path))?;
                }
            }
        }
        inner.recovery_point = inner.log_end_offset;
        self.write_checkpoint(&inner)?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let file = self
            .fs
            .open(&marker, true)
            .map_err(Error::io("create", &marker))?;
        file.sync_data().map_err(Error::io("fsync", &marker))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(Error::io("fsync directory", &self.dir))?;
        Ok(())
    }

    /// Deletes the whole partition directory (a deleted topic or reassigned partition).
    pub fn delete(self) -> Result<()> {
        self.fs
            .remove_dir_all(&self.dir)
            .map_err(Error::io("remove directory", &self.dir))
    }
}

/// The leader epoch cache of a log being opened: the checkpoint's entries, or, when the file is
/// missing or corrupt, the epochs of every batch header; then trimmed to the log's range.
fn load_epochs(
    dir: &Path,
    segments: &BTreeMap<i64, Segment>,
    file: &LeaderEpochFile,
    recovered: &[EpochEntry],
    log_start_offset: i64,
    log_end_offset: i64,
) -> Result<LeaderEpochCache> {
    let mut epochs = match file {
        LeaderEpochFile::Entries(entries) => {
            let mut epochs = LeaderEpochCache::from_entries(entries.iter().copied());
            // The file may lead the log (see the module docs): drop what a crash took.
            epochs.truncate_from_end(log_end_offset);
            // The file never lags the log, unless written by something that did not keep the
            // order: an epoch newer than any it has, among the batches recovery scanned, joins.
            for run in recovered {
                if epochs
                    .latest_epoch()
                    .is_none_or(|latest| run.epoch > latest)
                {
                    tracing::warn!(dir = %dir.display(), epoch = run.epoch, start_offset = run.start_offset, "leader epoch checkpoint lacks a recovered epoch; adding it");
                    epochs.assign(run.epoch, run.start_offset);
                }
            }
            epochs
        }
        LeaderEpochFile::Missing | LeaderEpochFile::Corrupt(_) => {
            if let LeaderEpochFile::Corrupt(reason) = file {
                tracing::warn!(dir = %dir.display(), %reason, "corrupt leader epoch checkpoint; rebuilding it from the segments");
            }
            let large = segments.len() > 100;
            if large {
                tracing::info!(dir = %dir.display(), segments = segments.len(), "rebuilding the leader epoch cache from batch headers");
            }
            let mut epochs = LeaderEpochCache::new();
            for (i, segment) in segments.values().enumerate() {
                for run in segment.epoch_starts()? {
                    epochs.assign(run.epoch, run.start_offset);
                }
                if large && (i + 1) % 100 == 0 {
                    tracing::info!(dir = %dir.display(), done = i + 1, segments = segments.len(), "rebuilding the leader epoch cache");
                }
            }
            epochs
        }
    };
    epochs.truncate_from_start(log_start_offset);
    // An entry moved up to the start of an empty log (its segments went, by a crash during a
    // full truncation, say) has no batch behind it: drop it like any other at the log end, so
    // open always yields the epochs of the batches that survived.
    epochs.truncate_from_end(log_end_offset);
    Ok(epochs)
}

/// Opens an index file written earlier so it can be fsynced; `None` when it is gone meanwhile
/// (its segment was deleted or rewritten, so there is nothing to make durable).
fn open_to_sync(fs: &dyn FileSystem, path: &Path) -> Result<Option<Arc<dyn File>>> {
    match fs.open(path, false) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("open", path)(e)),
    }
}

fn delete_segment_files(fs: &dyn FileSystem, dir: &Path, base: i64) -> Result<()> {
    // The .log goes first: an index without its segment is removed as a leftover on open.
    let path = file_path(dir, base, LOG_SUFFIX);
    if fs.exists(&path) {
        fs.remove_file(&path).map_err(Error::io("remove", &path))?;
    }
    segment::remove_index_files(fs, dir, base)?;
    txn_index::remove(fs, dir, base)
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
