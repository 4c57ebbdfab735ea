//! [`LogManager`]: the logs of every partition on a node, across one or more data directories.
//!
//! Each data directory holds partition directories named `<topic>-<partition>`. At start the
//! manager opens them concurrently on a few std threads (recovery of unclean logs included);
//! new partitions go to the data directory holding the fewest.
//!
//! A data directory that cannot be created or listed, or in which a log fails to open, is taken
//! offline as a whole, as Kafka does: its partitions are reported by
//! [`LogManager::offline_dirs`] instead of failing the start, as long as one directory is
//! healthy. Nothing is created in an offline directory, and its partitions are not recreated
//! elsewhere (that would hide the data still on the failed disk).

use crate::cleaner::CompactionStats;
use crate::config::{Clock, LogConfig, SystemClock};
use crate::fs::{FileSystem, StdFs};
use crate::handles::HandleCache;
use crate::log::{Log, LogOptions};
use crate::{Error, Result};
use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "future_log.rs"]
mod future_log;
pub use future_log::LogMove;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// The directory name, `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name; the partition is after the last `-`.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if topic.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self::new(topic, partition.parse().ok()?))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// How to open a [`LogManager`].
#[derive(Debug, Clone)]
pub struct LogManagerOptions {
    /// Data directories (`log.dirs`).
    pub data_dirs: Vec<PathBuf>,
    /// Config for logs found on disk and for new logs without an override.
    pub default_config: LogConfig,
    /// Threads opening and recovering logs at start (`num.recovery.threads.per.data.dir`
    /// times the number of data directories in Kafka).
    pub open_threads: usize,
    /// Where files live.
    pub fs: Arc<dyn FileSystem>,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Most inactive segment files kept open across all logs; active segments stay open.
    pub max_inactive_handles: usize,
    /// `log.cleaner.dedupe.buffer.size`: memory of one compaction pass's key map.
    pub cleaner_dedupe_buffer_size: usize,
    /// Directory names inside data directories that look like partitions but belong to
    /// someone else (the broker's metadata log, `__cluster_metadata-0`): never opened as logs.
    pub foreign_dirs: Vec<String>,
}

impl LogManagerOptions {
    /// Real file system, system clock, one opening thread per available core.
    pub fn new(data_dirs: Vec<PathBuf>, default_config: LogConfig) -> Self {
        Self {
            data_dirs,
            default_config,
            open_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            fs: Arc::new(StdFs),
            clock: Arc::new(SystemClock),
            max_inactive_handles: 4096,
            cleaner_dedupe_buffer_size: crate::DEFAULT_DEDUPE_BUFFER_SIZE,
            foreign_dirs: Vec::new(),
        }
    }
}

/// A data directory taken offline at start, with why.
#[derive(Debug, Clone)]
pub struct OfflineDir {
    /// The data directory.
    pub path: PathBuf,
    /// What failed: listing the directory, or opening one of its logs.
    pub error: Arc<Error>,
    /// Partitions found in it (empty when it could not even be listed).
    pub partitions: Vec<TopicPartition>,
}

/// All partition logs of a node.
#[derive(Debug)]
pub struct LogManager {
    options: LogManagerOptions,
    handles: HandleCache,
    logs: RwLock<HashMap<TopicPartition, Arc<Log>>>,
    offline: Vec<OfflineDir>,
    /// Partitions with a [`LogMove`] under way.
    moving: Arc<parking_lot::Mutex<HashSet<TopicPartition>>>,
}

impl LogManager {
    /// Opens every partition log found in the data directories, concurrently. A directory
    /// that fails is taken offline (see [`LogManager::offline_dirs`]); the start fails only
    /// when every directory does.
    pub fn open(options: LogManagerOptions) -> Result<Self> {
        let mut found = Vec::new();
        let mut failed: Vec<Option<(Error, Vec<TopicPartition>)>> =
            (0..options.data_dirs.len()).map(|_| None).collect();
        for (d, dir) in options.data_dirs.iter().enumerate() {
            let listed = options
                .fs
                .create_dir_all(dir)
                .map_err(Error::io("create data directory", dir))
                .and_then(|()| {
                    options
                        .fs
                        .list_dir(dir)
                        .map_err(Error::io("list data directory", dir))
                });
            match listed {
                Ok(names) => {
                    for name in names {
                        if options.foreign_dirs.contains(&name) {
                            continue;
                        }
                        if future_log::is_move_leftover(&name) {
                            Self::remove_move_leftover(&options, dir, &name);
                            continue;
                        }
                        if let Some(tp) = TopicPartition::from_dir_name(&name) {
                            found.push((tp, d, dir.join(name)));
                        }
                    }
                }
                Err(error) => {
                    if let Some(slot) = failed.get_mut(d) {
                        *slot = Some((error, Vec::new()));
                    }
                }
            }
        }
        found.sort();
        let handles = HandleCache::new(options.max_inactive_handles);
        let next = AtomicUsize::new(0);
        let threads = options.open_threads.clamp(1, found.len().max(1));
        type Opened = Vec<(TopicPartition, usize, Result<Log>)>;
        let opened: Vec<Opened> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        while let Some((tp, d, path)) =
                            found.get(next.fetch_add(1, Ordering::Relaxed))
                        {
                            let log = Log::open_with(
                                path,
                                Self::log_options(
                                    &options,
                                    &handles,
                                    options.default_config.clone(),
                                ),
                            );
                            mine.push((tp.clone(), *d, log));
                        }
                        mine
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        vec![(
                            TopicPartition::new("", -1),
                            usize::MAX,
                            Err(Error::Corrupt {
                                path: PathBuf::new(),
                                reason: "a log opening thread panicked",
                            }),
                        )]
                    })
                })
                .collect()
        });
        let mut logs = HashMap::with_capacity(found.len());
        // Second copies of a partition, left by a move interrupted after its rename.
        let mut copies = Vec::new();
        for (tp, d, log) in opened.into_iter().flatten() {
            match log {
                Ok(log) => match logs.entry(tp) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        copies.push((first.key().clone(), d, Arc::new(log)));
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert((d, Arc::new(log)));
                    }
                },
                Err(error) => {
                    let Some(slot) = failed.get_mut(d) else {
                        return Err(error); // a panicked thread: no directory to blame
                    };
                    if slot.is_none() {
                        *slot = Some((error, Vec::new()));
                    }
                }
            }
        }
        // Every partition of a failed directory is offline, including the ones that opened.
        let mut offline = Vec::new();
        for (d, failure) in failed.into_iter().enumerate() {
            let (Some((error, mut partitions)), Some(path)) = (failure, options.data_dirs.get(d))
            else {
                continue;
            };
            partitions.extend(found.iter().filter(|f| f.1 == d).map(|f| f.0.clone()));
            logs.retain(|_, (ld, _)| *ld != d);
            tracing::error!(dir = %path.display(), %error, partitions = partitions.len(), "data directory is offline");
            offline.push(OfflineDir {
                path: path.clone(),
                error: Arc::new(error),
                partitions,
            });
        }
        for (tp, d, copy) in copies {
            if offline
                .iter()
                .any(|o| Some(&o.path) == options.data_dirs.get(d))
            {
                continue;
            }
            let Some((kept_d, kept)) = logs.get(&tp) else {
                // The other copy is on an offline directory: which one is current is unknown,
                // so the partition stays offline.
                continue;
            };
            let (loser, winner) =
                if future_log::second_copy_wins(&*options.fs, (*kept_d, kept), (d, &copy)) {
                    let loser = logs.insert(tp.clone(), (d, copy)).map(|(_, l)| l);
                    (loser, logs.get(&tp).map(|(_, l)| l.clone()))
                } else {
                    (Some(copy), Some(kept.clone()))
                };
            if let (Some(loser), Some(winner)) = (loser, winner) {
                tracing::warn!(partition = %tp, kept = %winner.dir().display(), deleted = %loser.dir().display(), "partition found in two data directories after an interrupted move; deleting the older copy");
                let dir = loser.dir().to_path_buf();
                drop(loser);
                if let Err(error) = Self::remove_dir_synced(&options, &dir) {
                    tracing::warn!(dir = %dir.display(), %error, "cannot delete the older copy");
                }
            }
        }
        for (_, log) in logs.values() {
            let marker = log.dir().join(future_log::MOVED_IN_FILE);
            if options.fs.exists(&marker) {
                let removed = options
                    .fs
                    .remove_file(&marker)
                    .and_then(|()| options.fs.sync_dir(log.dir()));
                if let Err(error) = removed {
                    tracing::warn!(path = %marker.display(), %error, "cannot remove a move marker");
                }
            }
        }
        if !options.data_dirs.is_empty() && offline.len() == options.data_dirs.len() {
            let mut offline = offline;
            return match offline.pop().map(|o| Arc::try_unwrap(o.error)) {
                Some(Ok(error)) => Err(error),
                _ => Err(Error::InvalidConfig {
                    name: "log.dirs".into(),
                    value: String::new(),
                    reason: "every data directory is offline",
                }),
            };
        }
        let logs: HashMap<TopicPartition, Arc<Log>> =
            logs.into_iter().map(|(tp, (_, log))| (tp, log)).collect();
        tracing::info!(
            partitions = logs.len(),
            dirs = options.data_dirs.len(),
            offline_dirs = offline.len(),
            "opened logs"
        );
        Ok(Self {
            options,
            handles,
            logs: RwLock::new(logs),
            offline,
            moving: Arc::default(),
        })
    }

    /// Deletes a leftover of an interrupted move (see `future_log`): a future copy (the source
    /// is whole) or a moved-away copy being deleted. A failure only warns.
    fn remove_move_leftover(options: &LogManagerOptions, data_dir: &Path, name: &str) {
        let path = data_dir.join(name);
        tracing::warn!(dir = %path.display(), "deleting the leftover of an interrupted log move");
        if let Err(error) = Self::remove_dir_synced(options, &path) {
            tracing::warn!(dir = %path.display(), %error, "cannot delete the leftover");
        }
    }

    fn remove_dir_synced(options: &LogManagerOptions, dir: &Path) -> std::io::Result<()> {
        options.fs.remove_dir_all(dir)?;
        match dir.parent() {
            Some(parent) => options.fs.sync_dir(parent),
            None => Ok(()),
        }
    }

    /// Data directories taken offline at start, with the error and the partitions they hold.
    pub fn offline_dirs(&self) -> &[OfflineDir] {
        &self.offline
    }

    /// The offline data directory holding `tp`, if it is one of theirs.
    pub fn offline_dir_of(&self, tp: &TopicPartition) -> Option<&OfflineDir> {
        self.offline.iter().find(|o| o.partitions.contains(tp))
    }

    fn log_options(
        options: &LogManagerOptions,
        handles: &HandleCache,
        config: LogConfig,
    ) -> LogOptions {
        LogOptions {
            config,
            fs: options.fs.clone(),
            clock: options.clock.clone(),
            handles: handles.clone(),
            cleaner_dedupe_buffer_size: options.cleaner_dedupe_buffer_size,
        }
    }

    /// The cache bounding the open files of inactive segments of every log.
    pub fn handles(&self) -> &HandleCache {
        &self.handles
    }

    /// The log of a partition, if this node has it.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Log>> {
        self.logs.read().get(tp).cloned()
    }

    /// The log of a partition, created (in the data directory with the fewest partitions)
    /// with `config` or the default config when missing.
    pub fn get_or_create(
        &self,
        tp: &TopicPartition,
        config: Option<LogConfig>,
    ) -> Result<Arc<Log>> {
        if let Some(log) = self.get(tp) {
            return Ok(log);
        }
        if let Some(offline) = self.offline_dir_of(tp) {
            return Err(Error::Offline {
                path: offline.path.join(tp.dir_name()),
            });
        }
        let mut logs = self.logs.write();
        if let Some(log) = logs.get(tp) {
            return Ok(log.clone());
        }
        let dir = self.least_loaded_dir(&logs)?;
        let config = config.unwrap_or_else(|| self.options.default_config.clone());
        let log = Arc::new(Log::open_with(
            dir.join(tp.dir_name()),
            Self::log_options(&self.options, &self.handles, config),
        )?);
        self.options
            .fs
            .sync_dir(&dir)
            .map_err(Error::io("fsync directory", &dir))?;
        logs.insert(tp.clone(), log.clone());
        Ok(log)
    }

    fn least_loaded_dir(&self, logs: &HashMap<TopicPartition, Arc<Log>>) -> Result<PathBuf> {
        let count = |dir: &Path| {
            logs.values()
                .filter(|l| l.dir().parent() == Some(dir))
                .count()
        };
        self.options
            .data_dirs
            .iter()
            .filter(|d| !self.offline.iter().any(|o| &o.path == *d))
            .min_by_key(|d| count(d))
            .cloned()
            .ok_or(Error::InvalidConfig {
                name: "log.dirs".into(),
                value: String::new(),
                reason: "no data directory online",
            })
    }

    /// Removes a partition and deletes its files.
    pub fn delete(&self, tp: &TopicPartition) -> Result<()> {
        let Some(log) = self.logs.write().remove(tp) else {
            return Ok(());
        };
        let dir = log.dir().to_path_buf();
        self.options
            .fs
            .remove_dir_all(&dir)
            .map_err(Error::io("remove directory", &dir))?;
        if let Some(parent) = dir.parent() {
            self.options
                .fs
                .sync_dir(parent)
                .map_err(Error::io("fsync directory", parent))?;
        }
        Ok(())
    }

    /// Every partition with its log.
    pub fn logs(&self) -> Vec<(TopicPartition, Arc<Log>)> {
        let mut all: Vec<_> = self
            .logs
            .read()
            .iter()
            .map(|(tp, l)| (tp.clone(), l.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.logs.read().len()
    }

    /// Whether there is no partition.
    pub fn is_empty(&self) -> bool {
        self.logs.read().is_empty()
    }

    /// One step of the log cleaner: compacts the compacted log with the highest dirty ratio
    /// at or above its `min.cleanable.dirty.ratio` (ties go to the first partition in order),
    /// or else the first whose tombstones have passed their delete horizon, up to the offset
    /// `high_watermark` gives for it. `None` when no log needs cleaning. Deterministic and
    /// single-threaded; the broker runs it on its own thread or timer.
    pub fn clean_step(
        &self,
        high_watermark: impl Fn(&TopicPartition, &Log) -> i64,
    ) -> Result<Option<(TopicPartition, CompactionStats)>> {
        let mut best: Option<(f64, TopicPartition, Arc<Log>)> = None;
        let mut expired: Option<(TopicPartition, Arc<Log>)> = None;
        for (tp, log) in self.logs() {
            let ratio = log.dirty_ratio();
            if ratio <= 0.0 || ratio < log.config().min_cleanable_dirty_ratio {
                if expired.is_none() && log.delete_horizon_passed() {
                    expired = Some((tp, log));
                }
                continue;
            }
            if best.as_ref().is_none_or(|(b, _, _)| ratio > *b) {
                best = Some((ratio, tp, log));
            }
        }
        let Some((tp, log)) = best.map(|(_, tp, log)| (tp, log)).or(expired) else {
            return Ok(None);
        };
        let stats = log.compact(high_watermark(&tp, &log))?;
        Ok(Some((tp, stats)))
    }

    /// Runs `flush.ms` flushes that are due and writes every checkpoint; the broker calls this
    /// on a timer. A log that fails does not stop the others: every log is visited, and the
    /// failures come back with their partitions (a log whose flush failed skips its
    /// checkpoint this time).
    pub fn tick(&self) -> Vec<(TopicPartition, Error)> {
        let mut failed = Vec::new();
        for (tp, log) in self.logs() {
            if let Err(e) = log.flush_if_due().and_then(|()| log.checkpoint()) {
                failed.push((tp, e));
            }
        }
        failed
    }

    /// Closes every log cleanly (flush, indexes, checkpoints, clean-shutdown markers),
    /// concurrently. Logs still shared elsewhere are flushed but not marked clean.
    pub fn close(self) -> Result<()> {
        let logs: Vec<Arc<Log>> = self.logs.into_inner().into_values().collect();
        let next = AtomicUsize::new(0);
        let threads = self.options.open_threads.clamp(1, logs.len().max(1));
        let slots: Vec<parking_lot::Mutex<Option<Arc<Log>>>> = logs
            .into_iter()
            .map(|l| parking_lot::Mutex::new(Some(l)))
            .collect();
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(slot) = slots.get(i) else { break };
                            let Some(log) = slot.lock().take() else {
                                continue;
                            };
                            match Arc::try_unwrap(log) {
                                Ok(log) => log.close()?,
                                Err(shared) => shared.flush()?,
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(Error::Corrupt {
                            path: PathBuf::new(),
                            reason: "a log closing thread panicked",
                        })
                    })
                })
                .collect()
        });
        results.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultFs;
    use crate::{AppendOrigin, ManualClock};
    use weir_records::{Record, RecordBatchBuilder};

    fn options(fs: &FaultFs) -> LogManagerOptions {
        LogManagerOptions {
            data_dirs: vec![PathBuf::from("/d1"), PathBuf::from("/d2")],
            default_config: LogConfig::default(),
            open_threads: 3,
            fs: Arc::new(fs.clone()),
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            max_inactive_handles: 4,
            cleaner_dedupe_buffer_size: 1 << 20,
            foreign_dirs: vec!["__cluster_metadata-0".into()],
        }
    }

    /// Guards against the broker's metadata log being taken for a partition (and deleted as
    /// one that no topic holds).
    #[test]
    fn foreign_directories_are_not_logs() {
        let fs = FaultFs::new();
        fs.create_dir_all(Path::new("/d1/__cluster_metadata-0"))
            .unwrap();
        fs.create_dir_all(Path::new("/d1/t-0")).unwrap();
        let manager = LogManager::open(options(&fs)).unwrap();
        let names: Vec<String> = manager
            .logs()
            .iter()
            .map(|(tp, _)| tp.to_string())
            .collect();
        assert_eq!(names, vec!["t-0".to_string()]);
    }

    fn append(log: &Log) {
        let mut b = RecordBatchBuilder::new();
        b.push(Record::new(1_700_000_000_000, Some(b"k"), Some(b"v")));
        let mut bytes = b.build().unwrap().to_vec();
        log.append(&mut bytes, AppendOrigin::Leader { leader_epoch: 0 })
            .unwrap();
    }

    #[test]
    fn clean_step_picks_the_dirtiest_compacted_log() {
        let fs = FaultFs::new();
        let manager = LogManager::open(options(&fs)).unwrap();
        let compacted = LogConfig {
            cleanup_policy: crate::CleanupPolicy::COMPACT,
            ..LogConfig::default()
        };
        let plain = manager
            .get_or_create(&TopicPartition::new("plain", 0), None)
            .unwrap();
        let a = manager
            .get_or_create(&TopicPartition::new("a", 0), Some(compacted.clone()))
            .unwrap();
        let b = manager
            .get_or_create(&TopicPartition::new("b", 0), Some(compacted))
            .unwrap();
        for log in [&plain, &a, &b] {
            append(log);
            append(log);
            log.roll().unwrap();
        }
        append(&b);
        assert_eq!(b.dirty_ratio(), 1.0);
        let hw = |_: &TopicPartition, log: &Log| log.log_end_offset();
        let (first, stats) = manager.clean_step(hw).unwrap().unwrap();
        assert_eq!(
            first,
            TopicPartition::new("a", 0),
            "a tie goes to the first partition"
        );
        assert_eq!(stats.records_removed, 1);
        assert_eq!(a.dirty_ratio(), 0.0);
        let (second, _) = manager.clean_step(hw).unwrap().unwrap();
        assert_eq!(second, TopicPartition::new("b", 0));
        assert!(manager.clean_step(hw).unwrap().is_none());
        assert_eq!(plain.dirty_ratio(), 0.0);

        // Below min.cleanable.dirty.ratio a log waits: one dirty segment of two is not enough
        // at 0.6, and is at 0.5.
        append(&a);
        a.roll().unwrap();
        let ratio = a.dirty_ratio();
        assert!(ratio > 0.3 && ratio < 0.6, "{ratio}");
        let mut strict = a.config();
        strict.min_cleanable_dirty_ratio = 0.6;
        a.set_config(strict.clone()).unwrap();
        b.set_config(strict.clone()).unwrap();
        assert!(manager.clean_step(hw).unwrap().is_none());
        strict.min_cleanable_dirty_ratio = 0.3;
        a.set_config(strict).unwrap();
        let (picked, _) = manager.clean_step(hw).unwrap().unwrap();
        assert_eq!(picked, TopicPartition::new("a", 0));
    }

    #[test]
    fn clean_step_removes_tombstones_past_their_horizon() {
        let fs = FaultFs::new();
        let options = options(&fs);
        let clock = ManualClock::new(1_700_000_000_000);
        let clock = Arc::new(clock);
        let manager = LogManager::open(LogManagerOptions {
            clock: clock.clone(),
            ..options
        })
        .unwrap();
        let compacted = LogConfig {
            cleanup_policy: crate::CleanupPolicy::COMPACT,
            delete_retention_ms: 1_000,
            ..LogConfig::default()
        };
        let log = manager
            .get_or_create(&TopicPartition::new("c", 0), Some(compacted))
            .unwrap();
        let mut b = RecordBatchBuilder::new();
        b.push(Record::new(1_700_000_000_000, Some(b"k"), None));
        let mut bytes = b.build().unwrap().to_vec();
        log.append(&mut bytes, AppendOrigin::Leader { leader_epoch: 0 })
            .unwrap();
        log.roll().unwrap();
        let hw = |_: &TopicPartition, log: &Log| log.log_end_offset();
        let (_, stats) = manager.clean_step(hw).unwrap().unwrap();
        assert_eq!(stats.records_removed, 0);
        assert!(manager.clean_step(hw).unwrap().is_none(), "nothing dirty");
        clock.advance(1_000);
        let (_, stats) = manager.clean_step(hw).unwrap().unwrap();
        assert_eq!(stats.records_removed, 1);
        assert!(manager.clean_step(hw).unwrap().is_none());
    }

    /// Guards against one failing log stopping the periodic flush and checkpoint of every
    /// log after it.
    #[test]
    fn a_failing_log_does_not_stop_the_tick_for_the_others() {
        let fs = FaultFs::new();
        let manager = LogManager::open(options(&fs)).unwrap();
        let logs: Vec<(TopicPartition, Arc<Log>)> = (0..4)
            .map(|p| {
                let tp = TopicPartition::new("t", p);
                let log = manager.get_or_create(&tp, None).unwrap();
                (tp, log)
            })
            .collect();
        for (_, log) in &logs {
            append(log);
            log.flush().unwrap();
            // Written by the tick, not by the flush.
            let before = crate::checkpoint::read(&fs, log.dir());
            assert!(before.is_none_or(|c| c.recovery_point == 0), "{before:?}");
        }
        // The first log the tick visits fails; the others still get their checkpoint.
        let (broken_tp, broken) = manager.logs().into_iter().next().unwrap();
        fs.fail_path(broken.dir());
        let failed = manager.tick();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, broken_tp);
        for (tp, log) in &logs {
            if *tp == broken_tp {
                continue;
            }
            let checkpoint = crate::checkpoint::read(&fs, log.dir()).unwrap();
            assert_eq!(checkpoint.recovery_point, 1, "{tp}");
        }
    }

    #[test]
    fn failed_data_directory_goes_offline_alone() {
        let fs = FaultFs::new();
        let manager = LogManager::open(options(&fs)).unwrap();
        for p in 0..6 {
            append(
                &manager
                    .get_or_create(&TopicPartition::new("t", p), None)
                    .unwrap(),
            );
        }
        let in_d2: Vec<TopicPartition> = manager
            .logs()
            .into_iter()
            .filter(|(_, l)| l.dir().starts_with("/d2"))
            .map(|(tp, _)| tp)
            .collect();
        assert_eq!(in_d2.len(), 3);
        manager.close().unwrap();

        // One log of /d2 fails to open: all of /d2 goes offline, /d1 serves on.
        fs.fail_path(PathBuf::from("/d2").join(in_d2[1].dir_name()));
        let manager = LogManager::open(options(&fs)).unwrap();
        let [offline] = manager.offline_dirs() else {
            panic!("{:?}", manager.offline_dirs());
        };
        assert_eq!(offline.path, PathBuf::from("/d2"));
        assert!(offline.error.to_string().contains(&in_d2[1].dir_name()));
        let mut partitions = offline.partitions.clone();
        partitions.sort();
        assert_eq!(partitions, in_d2);
        assert_eq!(manager.len(), 3);
        for tp in &in_d2 {
            assert!(manager.get(tp).is_none());
            assert!(matches!(
                manager.get_or_create(tp, None),
                Err(Error::Offline { .. })
            ));
        }
        let fresh = manager
            .get_or_create(&TopicPartition::new("new", 0), None)
            .unwrap();
        assert!(
            fresh.dir().starts_with("/d1"),
            "nothing goes to an offline dir"
        );
        for (tp, log) in manager.logs() {
            assert!(!in_d2.contains(&tp));
            assert!(log.log_end_offset() >= i64::from(tp.topic == "t"));
        }
        drop(manager);

        // A directory that cannot even be listed goes offline with no partitions known.
        let fs2 = fs.crash();
        fs2.fail_path("/d2");
        let manager = LogManager::open(options(&fs2)).unwrap();
        assert_eq!(manager.offline_dirs().len(), 1);
        assert!(manager.offline_dirs()[0].partitions.is_empty());
        assert_eq!(manager.len(), 4);

        // When every directory fails, the start fails.
        fs2.fail_path("/d1");
        assert!(matches!(
            LogManager::open(options(&fs2)),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn dir_names_round_trip() {
        let tp = TopicPartition::new("my-topic", 12);
        assert_eq!(tp.dir_name(), "my-topic-12");
        assert_eq!(TopicPartition::from_dir_name("my-topic-12"), Some(tp));
        assert_eq!(TopicPartition::from_dir_name("nodash"), None);
        assert_eq!(TopicPartition::from_dir_name("t-x"), None);
    }

    #[test]
    fn creates_spreads_reopens_and_deletes() {
        let fs = FaultFs::new();
        let manager = LogManager::open(options(&fs)).unwrap();
        for p in 0..10 {
            let log = manager
                .get_or_create(&TopicPartition::new("t", p), None)
                .unwrap();
            for _ in 0..=p {
                append(&log);
            }
        }
        let in_d1 = manager
            .logs()
            .iter()
            .filter(|(_, l)| l.dir().starts_with("/d1"))
            .count();
        assert_eq!(in_d1, 5);
        manager.close().unwrap();

        let manager = LogManager::open(options(&fs)).unwrap();
        assert_eq!(manager.len(), 10);
        for (tp, log) in manager.logs() {
            assert_eq!(log.log_end_offset(), i64::from(tp.partition) + 1);
        }
        manager.delete(&TopicPartition::new("t", 3)).unwrap();
        drop(manager); // unclean
        let manager = LogManager::open(options(&fs.crash())).unwrap();
        assert_eq!(manager.len(), 9);
        assert!(manager.get(&TopicPartition::new("t", 3)).is_none());
    }
}
