//! The partition manager: owns every partition's log (through `weir_log::LogManager`), appends
//! producers' batches, serves reads, and wakes waiting fetches when data arrives.
//!
//! Log I/O is synchronous (weir-log has no runtime); it runs on tokio's blocking pool so a slow
//! disk never stalls the connection tasks.

use crate::config::BrokerConfig;
use crate::topics::Topic;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;
use weir_log::{
    AppendInfo, AppendOrigin, Log, LogConfig, LogManager, LogManagerOptions, StdFs, SyncJournalFs,
    TopicPartition,
};
use weir_protocol::ErrorCode;

/// Every partition log on this broker.
#[derive(Debug)]
pub(crate) struct Partitions {
    logs: LogManager,
    /// Broker-wide log settings (`log.*` properties) that topic overrides start from.
    defaults: LogConfig,
    /// Dynamic broker configs from the metadata image, as topic config names: the cluster-wide
    /// default overridden by this broker's own. They sit between `defaults` and a topic's
    /// overrides, as in Kafka.
    dynamic: parking_lot::RwLock<BTreeMap<String, String>>,
    /// Bumped after every append and every high watermark move; fetches waiting for data watch
    /// it. Shared with `replication`, which moves high watermarks.
    appended: Arc<watch::Sender<u64>>,
    /// Set when the server shuts down: a waiting fetch answers at once instead of holding its
    /// connection (and so the shutdown) for up to its `max_wait_ms`.
    closing: AtomicBool,
}

/// The error for an append whose blocking task did not finish (it panicked, or the runtime is
/// shutting down): whether the batch reached the log is unknown, so it is a storage error
/// (KAFKA_STORAGE_ERROR), never a verdict on the client's records.
pub(crate) fn append_task_failed(
    dir: std::path::PathBuf,
    error: tokio::task::JoinError,
) -> weir_log::Error {
    weir_log::Error::Io {
        op: "append task",
        path: dir,
        source: std::io::Error::other(error.to_string()),
    }
}

/// `weir.debug.fsync.journal`: the real file system, journaling what it makes durable to
/// `<first log dir>/fsync-journal` (paths in it are absolute, so one journal covers every data
/// directory) for power-loss tests.
fn fsync_journal(log_dirs: &[PathBuf]) -> Result<SyncJournalFs, weir_log::Error> {
    let first = log_dirs
        .first()
        .map(|d| d.as_path())
        .unwrap_or(Path::new("."));
    let absolute = std::path::absolute(first).unwrap_or_else(|_| first.to_path_buf());
    let journal = absolute.join(FSYNC_JOURNAL);
    std::fs::create_dir_all(&absolute)
        .and_then(|()| SyncJournalFs::new(Arc::new(StdFs), &journal))
        .map_err(|source| weir_log::Error::Io {
            op: "open fsync journal",
            path: journal,
            source,
        })
}

/// Name of the fsync journal in the first log directory (`weir.debug.fsync.journal`).
pub(crate) const FSYNC_JOURNAL: &str = "fsync-journal";

impl Partitions {
    /// Opens (and recovers) every partition log under `log.dirs`.
    pub(crate) fn open(config: &BrokerConfig) -> Result<Self, weir_log::Error> {
        let defaults = config.topic_defaults.log.clone();
        let mut options = LogManagerOptions {
            cleaner_dedupe_buffer_size: config.log_cleaner_dedupe_buffer_size,
            foreign_dirs: vec![crate::cluster::METADATA_DIR.to_string()],
            ..LogManagerOptions::new(config.log_dirs.clone(), defaults.clone())
        };
        if config.debug_fsync_journal {
            options.fs = Arc::new(fsync_journal(&config.log_dirs)?);
        }
        let logs = LogManager::open(options)?;
        let (appended, _) = watch::channel(0);
        Ok(Self {
            logs,
            defaults,
            dynamic: parking_lot::RwLock::new(BTreeMap::new()),
            appended: Arc::new(appended),
            closing: AtomicBool::new(false),
        })
    }

    /// The log config of `topic`: broker defaults overridden by the topic's configs.
    pub(crate) fn log_config(&self, topic: &Topic) -> Result<LogConfig, weir_log::Error> {
        let mut config = self.defaults.clone();
        // Dynamic broker configs, then the topic's own; stored-only topic configs
        // (min.insync.replicas, ...) are not the log's business.
        let dynamic = self.dynamic.read();
        for (name, value) in dynamic.iter().chain(&topic.configs) {
            if crate::topic_config::is_log_config(name) {
                config.set(name, value)?;
            }
        }
        Ok(config)
    }

    /// Sets the dynamic broker configs (topic config names) that every topic's log config
    /// starts from; returns whether they changed.
    pub(crate) fn set_dynamic_defaults(&self, dynamic: BTreeMap<String, String>) -> bool {
        let mut current = self.dynamic.write();
        let changed = *current != dynamic;
        *current = dynamic;
        changed
    }

    /// Creates (or opens) the logs of the partitions `local` of `topic`.
    pub(crate) fn create_logs_of(
        &self,
        topic: &Topic,
        local: &[i32],
    ) -> Result<(), weir_log::Error> {
        let config = self.log_config(topic)?;
        for &partition in local {
            let tp = TopicPartition::new(&topic.name, partition);
            // A partition on a data directory that failed at start stays offline; the others
            // serve on.
            if let Some(offline) = self.logs.offline_dir_of(&tp) {
                tracing::warn!(%tp, dir = %offline.path.display(), "partition is offline");
                continue;
            }
            self.logs.get_or_create(&tp, Some(config.clone()))?;
        }
        Ok(())
    }

    /// Deletes the logs of every partition of `topic`.
    pub(crate) fn delete_logs(&self, topic: &str, partitions: i32) -> Result<(), weir_log::Error> {
        for partition in 0..partitions {
            let tp = TopicPartition::new(topic, partition);
            if self.logs.get(&tp).is_some() {
                self.logs.delete(&tp)?;
            }
        }
        self.appended.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Deletes the log of one partition (an orphan left by an interrupted topic deletion).
    pub(crate) fn delete_logs_of(&self, tp: &TopicPartition) -> Result<(), weir_log::Error> {
        self.logs.delete(tp)?;
        self.appended.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Applies a topic's changed configs to its open logs.
    pub(crate) fn reconfigure(&self, topic: &Topic) -> Result<(), weir_log::Error> {
        let config = self.log_config(topic)?;
        for partition in 0..topic.partitions {
            if let Some(log) = self.logs.get(&TopicPartition::new(&topic.name, partition)) {
                log.set_config(config.clone())?;
            }
        }
        Ok(())
    }

    /// The log of one partition.
    pub(crate) fn log(&self, topic: &str, partition: i32) -> Option<Arc<Log>> {
        self.logs.get(&TopicPartition::new(topic, partition))
    }

    /// Whether the partition lives on a data directory that failed at start.
    pub(crate) fn is_offline(&self, topic: &str, partition: i32) -> bool {
        self.logs
            .offline_dir_of(&TopicPartition::new(topic, partition))
            .is_some()
    }

    /// The error for a request on a partition that has no open log: KAFKA_STORAGE_ERROR when
    /// its data directory is offline, else UNKNOWN_TOPIC_OR_PARTITION.
    pub(crate) fn missing_log_error(&self, topic: &str, partition: i32) -> ErrorCode {
        if self.is_offline(topic, partition) {
            ErrorCode::KAFKA_STORAGE_ERROR
        } else {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        }
    }

    /// Data directories taken offline at start.
    pub(crate) fn offline_dirs(&self) -> &[weir_log::OfflineDir] {
        self.logs.offline_dirs()
    }

    /// Step 1 of moving a partition's log to another data directory: copies its inactive
    /// segments there while appends go on (see `weir_log::LogMove`). `None` when it is there.
    pub(crate) fn prepare_move(
        &self,
        tp: &TopicPartition,
        target_dir: &Path,
    ) -> Result<Option<weir_log::LogMove>, weir_log::Error> {
        self.logs.prepare_move(tp, target_dir)
    }

    /// Step 2, with the partition quiet: copies the rest and swaps the copy in.
    pub(crate) fn finish_move(&self, mv: weir_log::LogMove) -> Result<Arc<Log>, weir_log::Error> {
        self.logs.finish_move(mv)
    }

    /// Every open log.
    pub(crate) fn all(&self) -> Vec<(TopicPartition, Arc<Log>)> {
        self.logs.logs()
    }

    /// Appends a producer's batches as leader on the calling thread (the blocking pool); the
    /// caller wakes waiting fetches with [`Partitions::notify_appended`] afterwards.
    pub(crate) fn append_blocking(
        log: &Log,
        records: &[u8],
        leader_epoch: i32,
    ) -> Result<AppendInfo, weir_log::Error> {
        // The log stamps base offsets and epochs in place; the request frame is immutable.
        let mut batches = records.to_vec();
        log.append(&mut batches, AppendOrigin::Leader { leader_epoch })
    }

    /// The signal that wakes waiting fetches.
    pub(crate) fn append_signal(&self) -> Arc<watch::Sender<u64>> {
        self.appended.clone()
    }

    /// Wakes fetches waiting for data.
    pub(crate) fn notify_appended(&self) {
        self.appended.send_modify(|n| *n += 1);
    }

    /// Wakes every waiting fetch for good: from now on fetches do not wait for data.
    pub(crate) fn stop_waiting(&self) {
        self.closing.store(true, Ordering::Release);
        self.notify_appended();
    }

    /// Whether fetches must stop waiting (the server is shutting down).
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// How many fetches hold the append signal (are waiting for data).
    #[cfg(test)]
    pub(crate) fn waiting_fetches(&self) -> usize {
        self.appended.receiver_count()
    }

    /// A receiver that changes after every append, for long-polling fetches.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Flushes what the flush policy says is due and checkpoints recovery points. A log that
    /// fails is reported and skipped, so one bad partition does not stop the others; returns
    /// how many failed.
    pub(crate) fn tick(&self) -> usize {
        let failed = self.logs.tick();
        for (tp, e) in &failed {
            tracing::error!(%tp, error = %e, cause = ?std::error::Error::source(e), "periodic flush or checkpoint failed");
        }
        failed.len()
    }

    /// Deletes the segments of every log that are past its `retention.ms` or
    /// `retention.bytes`; returns how many went. A log that fails is reported and skipped, so
    /// one bad partition does not stop retention for the others.
    /// Only segments wholly below `high_watermark(partition)` go.
    pub(crate) fn apply_retention(&self, high_watermark: impl Fn(&TopicPartition) -> i64) -> usize {
        let mut deleted = 0;
        for (tp, log) in self.logs.logs() {
            match log.apply_retention(high_watermark(&tp)) {
                Ok(n) => deleted += n,
                Err(e) => tracing::error!(%tp, error = %e, "retention failed"),
            }
        }
        deleted
    }

    /// One step of the log cleaner: compacts the dirtiest compacted log, if any needs it, up
    /// to the offset `high_watermark` gives (the broker's `Broker::cleanable_end`).
    pub(crate) fn clean_step(
        &self,
        high_watermark: impl Fn(&TopicPartition) -> i64,
    ) -> Result<Option<(TopicPartition, weir_log::CompactionStats)>, weir_log::Error> {
        self.logs.clean_step(|tp, _| high_watermark(tp))
    }

    /// Flushes and closes every log, writing clean-shutdown markers.
    pub(crate) fn close(self) -> Result<(), weir_log::Error> {
        self.logs.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::log_error_code;
    use weir_protocol::ErrorCode;

    #[tokio::test]
    async fn an_append_task_that_did_not_finish_is_a_storage_error() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let join_error = task.await.unwrap_err();
        let error = append_task_failed("/data/t-0".into(), join_error);
        assert_eq!(log_error_code(&error), ErrorCode::KAFKA_STORAGE_ERROR);
        assert!(error.to_string().contains("/data/t-0"), "{error}");
    }
}
