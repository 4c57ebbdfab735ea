//! Each partition's [`ProducerTable`], loaded on first use and persisted at clean shutdown.
//!
//! Durability: the table of a partition is rebuilt from the log itself — the snapshot file
//! `producer-state.json` in the partition directory (written at clean shutdown, after which the
//! log is flushed, so every batch it reflects is durable) plus a scan of the batch headers
//! from the snapshot's offset to the log end. A snapshot whose offset lies beyond the log end
//! (the log lost its tail after a crash) is ignored and removed, and the whole log is scanned.
//! Loading happens on first use after a start — an idempotent or transactional produce, a
//! WriteTxnMarkers, a consumer fetch or ListOffsets (which need the last stable offset), a
//! follower appending batches with producer ids — so startup stays fast however many
//! partitions there are. (A log without a snapshot is scanned whole on that first use;
//! snapshots at segment rolls, as Kafka takes them, would bound the scan.)
//!
//! Transactions: the table knows each producer's ongoing transaction (see `producers`). The
//! leader (Produce, WriteTxnMarkers) and followers (the replica fetcher, through
//! [`ProducerStates::track_appended`]) update it on every append, and an ABORT marker's entry
//! goes into the log's transaction index right after the marker, from the same state on every
//! replica. Rebuilding the table replays the markers too and restores any entry the index
//! lacks ([`weir_log::Log::add_aborted_txn`] is idempotent): a crash can keep a marker whose
//! entry was not yet durable, and this is what repairs it (the snapshot is only written once
//! the log, indexes included, is flushed, so entries below it are durable).
//!
//! Expiry: the snapshot keeps each producer's last-append time (see `SnapshotEntry` in
//! `producers`), and [`ProducerStates::expire`] runs every
//! `producer.id.expiration.check.interval.ms` over the loaded tables.
//!
//! Atomicity: an idempotent append holds the partition's table lock from the sequence check
//! to recording the offsets it got, on the blocking pool. Appends without a producer id do not
//! take it.

use crate::producers::{ProducerSnapshot, ProducerTable, wall_clock_ms};
use crate::topics::Topics;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tracing::{debug, warn};
use weir_log::Log;
use weir_protocol::Uuid;
use weir_records::RecordBatches;

/// Written by `weir_log::fs::write_atomically` through `producer-state.json.tmp`, which the
/// log removes as a leftover when it opens.
const SNAPSHOT_FILE: &str = "producer-state.json";

/// Bytes read per step when scanning a log for producer batches.
const SCAN_CHUNK: usize = 1 << 20;

/// One partition's table; `None` until loaded.
#[derive(Debug)]
pub(crate) struct PartitionProducers {
    topic_id: Uuid,
    table: Mutex<Option<ProducerTable>>,
    /// The table's first unstable offset ([`ProducerTable::first_unstable_offset`]),
    /// [`NO_TRANSACTION`] when none, [`NOT_LOADED`] while there is no table: republished
    /// whenever the table is used, so the last stable offset every fetch reports is read
    /// without taking the lock an idempotent append holds across its write.
    first_unstable: AtomicI64,
}

/// [`PartitionProducers::first_unstable`] with no ongoing transaction.
const NO_TRANSACTION: i64 = i64::MAX;
/// [`PartitionProducers::first_unstable`] before the table is loaded.
const NOT_LOADED: i64 = i64::MIN;

impl PartitionProducers {
    fn new(topic_id: Uuid) -> Self {
        Self {
            topic_id,
            table: Mutex::new(None),
            first_unstable: AtomicI64::new(NOT_LOADED),
        }
    }

    /// Publishes what `table` holds now (`None`: no table).
    fn publish(&self, table: Option<&ProducerTable>) {
        let first = table.map_or(NOT_LOADED, |t| {
            t.first_unstable_offset().unwrap_or(NO_TRANSACTION)
        });
        self.first_unstable.store(first, Ordering::SeqCst);
    }
}

/// The producer tables of every partition that has seen an idempotent produce.
#[derive(Debug, Default)]
pub(crate) struct ProducerStates {
    partitions: Mutex<HashMap<(String, i32), Arc<PartitionProducers>>>,
}

impl ProducerStates {
    /// The table slot of a partition of the topic with id `topic_id` (a topic deleted and
    /// created again under the same name starts afresh).
    pub(crate) fn partition(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
    ) -> Arc<PartitionProducers> {
        let mut map = self.partitions.lock();
        let slot = map
            .entry((topic.to_string(), partition))
            .or_insert_with(|| Arc::new(PartitionProducers::new(topic_id)));
        if slot.topic_id != topic_id {
            *slot = Arc::new(PartitionProducers::new(topic_id));
        }
        slot.clone()
    }

    /// Drops a partition's table (it is loaded again from the log on next use) and its
    /// snapshot file: called when its log is truncated (the table and the snapshot may
    /// describe batches that are gone). Followers track the batches they append, so becoming
    /// leader keeps the table.
    pub(crate) fn forget(&self, topic: &str, partition: i32, log_dir: &Path) {
        self.partitions
            .lock()
            .remove(&(topic.to_string(), partition));
        let path = log_dir.join(SNAPSHOT_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => debug!(path = %path.display(), "removed producer state snapshot"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot remove producer state snapshot")
            }
        }
    }

    /// Forgets, in every loaded table, the producers that have not appended for
    /// `expiration_ms` before `now_ms`; returns how many were forgotten. Each table is locked
    /// on its own, so appends to other partitions go on meanwhile.
    pub(crate) fn expire(&self, now_ms: i64, expiration_ms: i64) -> usize {
        let slots: Vec<Arc<PartitionProducers>> =
            self.partitions.lock().values().cloned().collect();
        slots
            .iter()
            .map(|slot| {
                slot.table
                    .lock()
                    .as_mut()
                    .map_or(0, |table| table.expire(now_ms, expiration_ms))
            })
            .sum()
    }

    /// Drops the tables of partitions `held` says this broker no longer holds (`held(topic,
    /// topic_id, partition)`: the topic was deleted, deleted and created again under a new id,
    /// or the replica was reassigned away); returns how many went. Their logs (and snapshot
    /// files) are deleted with them; without this their tables stayed in memory for the
    /// broker's lifetime. Called whenever a new metadata image is applied.
    pub(crate) fn retain_held(&self, held: impl Fn(&str, Uuid, i32) -> bool) -> usize {
        let mut map = self.partitions.lock();
        let before = map.len();
        map.retain(|(topic, partition), slot| held(topic, slot.topic_id, *partition));
        before - map.len()
    }

    /// Writes the snapshot of every loaded table whose topic still exists; called at shutdown
    /// when no appends run any more, before the logs are closed (flushed).
    pub(crate) fn write_snapshots(
        &self,
        topics: &Topics,
        log_of: impl Fn(&str, i32) -> Option<Arc<Log>>,
    ) {
        let map = self.partitions.lock();
        for ((topic, partition), slot) in map.iter() {
            if topics.get(topic).is_none_or(|t| t.id != slot.topic_id) {
                continue;
            }
            let table = slot.table.lock();
            let (Some(table), Some(log)) = (table.as_ref(), log_of(topic, *partition)) else {
                continue;
            };
            // Everything the snapshot reflects, transaction index entries included, must be
            // durable before it: a rebuild replays (and repairs) only what comes after it.
            if let Err(e) = log.flush() {
                warn!(topic, partition, error = %e, "cannot flush before the producer state snapshot; not writing it");
                continue;
            }
            let snapshot = table.snapshot(log.log_end_offset());
            if let Err(e) = write_snapshot(log.dir(), &snapshot) {
                warn!(topic, partition, error = %e, "cannot write producer state snapshot");
            }
        }
    }
}

impl ProducerStates {
    /// Runs `f` on a partition's table, loading it from the log first if needed, with the
    /// table locked. Lock order: a replica's role lock, when held, comes before this one.
    pub(crate) fn with_table<T>(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        log: &Log,
        f: impl FnOnce(&mut ProducerTable) -> T,
    ) -> Result<T, weir_log::Error> {
        let slot = self.partition(topic, topic_id, partition);
        let mut guard = slot.table.lock();
        let table = match guard.as_mut() {
            Some(table) => table,
            None => guard.insert(load(log, wall_clock_ms())?),
        };
        let result = f(table);
        slot.publish(Some(table));
        Ok(result)
    }

    /// The last stable offset of a partition with high watermark `high_watermark`: below
    /// both it and the first offset of every ongoing transaction (and not below the log
    /// start). What read_committed consumers read up to.
    pub(crate) fn last_stable_offset(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        log: &Log,
        high_watermark: i64,
    ) -> Result<i64, weir_log::Error> {
        // Read before the table changes again: a transaction starting meanwhile starts at or
        // above the high watermark read before this, so the bound below does not miss it.
        let first_unstable = match self
            .partition(topic, topic_id, partition)
            .first_unstable
            .load(Ordering::SeqCst)
        {
            NOT_LOADED => self.with_table(topic, topic_id, partition, log, |t| {
                t.first_unstable_offset()
            })?,
            NO_TRANSACTION => None,
            first => Some(first),
        };
        let lso = first_unstable.map_or(high_watermark, |f| f.min(high_watermark));
        Ok(lso.max(log.log_start_offset().min(high_watermark)))
    }

    /// A follower appended `appended` (whole batches as stored): replays the batches with a
    /// producer id into the partition's table and records the transactions their ABORT
    /// markers end in the log's transaction index, as the leader did. A table not loaded yet
    /// is loaded instead (which reads these batches from the log). On failure the table is
    /// dropped, to be rebuilt from the log on next use.
    pub(crate) fn track_appended(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        log: &Log,
        appended: &Bytes,
    ) -> Result<(), weir_log::Error> {
        let with_producers = RecordBatches::new(appended.clone())
            .filter_map(Result::ok)
            .any(|b| b.header().producer_id >= 0);
        if !with_producers {
            return Ok(());
        }
        let slot = self.partition(topic, topic_id, partition);
        let mut guard = slot.table.lock();
        let now = wall_clock_ms();
        let Some(table) = guard.as_mut() else {
            let loaded = load(log, now)?;
            slot.publish(Some(&loaded));
            *guard = Some(loaded);
            return Ok(());
        };
        let mut result = Ok(());
        for batch in RecordBatches::new(appended.clone()) {
            let Ok(batch) = batch else { break };
            if let Some(done) = table.replay_batch(&batch, now) {
                if done.aborted {
                    if let Err(e) = log.add_aborted_txn(table.aborted_entry(&done)) {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        if result.is_err() {
            *guard = None;
        }
        slot.publish(guard.as_ref());
        result
    }
}

/// Rebuilds a partition's table from its snapshot and the log after it; `now_ms` is the
/// last-append time given to producers whose batches are replayed from the log. Restores the
/// transaction index entry of every ABORT marker replayed, where the index lacks it.
pub(crate) fn load(log: &Log, now_ms: i64) -> Result<ProducerTable, weir_log::Error> {
    let log_end = log.log_end_offset();
    let path = log.dir().join(SNAPSHOT_FILE);
    let snapshot = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<ProducerSnapshot>(&bytes) {
            Ok(s) if s.offset <= log_end => Some(s),
            Ok(s) => {
                warn!(path = %path.display(), offset = s.offset, log_end, "producer state snapshot is ahead of the log; rebuilding from the log");
                let _ = std::fs::remove_file(&path);
                None
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "unreadable producer state snapshot; rebuilding from the log");
                None
            }
        },
        Err(_) => None,
    };
    let (mut table, mut from) = match snapshot {
        Some(s) => {
            let offset = s.offset;
            (ProducerTable::from_snapshot(s, now_ms), offset)
        }
        None => (ProducerTable::default(), 0),
    };
    from = from.max(log.log_start_offset());
    let scanned_from = from;
    while from < log_end {
        let slice = match log.read(from, SCAN_CHUNK, log_end) {
            Ok(slice) => slice,
            // Retention moved the start past `from` meanwhile: continue from the new start.
            Err(weir_log::Error::OffsetOutOfRange {
                log_start_offset, ..
            }) if log_start_offset > from => {
                from = log_start_offset;
                continue;
            }
            Err(e) => return Err(e),
        };
        if slice.is_empty() || slice.next_offset() <= from {
            break;
        }
        for batch in RecordBatches::new(slice.to_bytes()?) {
            let Ok(batch) = batch else { break };
            if let Some(done) = table.replay_batch(&batch, now_ms) {
                if done.aborted && log.add_aborted_txn(table.aborted_entry(&done))? {
                    warn!(dir = %log.dir().display(), producer_id = done.producer_id, marker = done.last_offset, "restored a transaction index entry the log had lost");
                }
            }
        }
        from = slice.next_offset();
    }
    debug!(dir = %log.dir().display(), producers = table.len(), scanned_from, log_end, "loaded producer state");
    Ok(table)
}
fn write_snapshot(dir: &Path, snapshot: &ProducerSnapshot) -> Result<(), weir_log::Error> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = serde_json::to_vec(snapshot).map_err(|e| weir_log::Error::Io {
        op: "encode",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    weir_log::fs::write_atomically(&weir_log::StdFs, &path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producers::{ProducerBatch, Verdict};
    use weir_log::{AppendOrigin, LogConfig};
    use weir_records::{Record, RecordBatchBuilder};

    fn append(log: &Log, producer_id: i64, sequence: i32) -> i64 {
        let mut builder = RecordBatchBuilder::new();
        builder.producer(producer_id, 0, sequence);
        builder.push(Record::new(1_000, None, Some(b"v")));
        let mut bytes = builder.build().unwrap().to_vec();
        log.append(&mut bytes, AppendOrigin::Leader { leader_epoch: 0 })
            .unwrap()
            .first_offset
    }

    fn retry(producer_id: i64, sequence: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            producer_epoch: 0,
            first_sequence: sequence,
            last_sequence: sequence,
            transactional: false,
        }
    }

    #[test]
    fn load_scans_the_log_after_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("t-0"), LogConfig::default()).unwrap();
        append(&log, 1, 0);
        append(&log, 1, 1);
        // No snapshot: everything is scanned.
        let table = load(&log, 1_000).unwrap();
        assert!(
            matches!(table.check(&retry(1, 1)), Ok(Verdict::Duplicate(m)) if m.first_offset == 1)
        );

        // A snapshot at the log end, then more appends: snapshot + tail.
        write_snapshot(log.dir(), &table.snapshot(log.log_end_offset())).unwrap();
        append(&log, 2, 0);
        let table = load(&log, 1_000).unwrap();
        assert!(
            matches!(table.check(&retry(1, 1)), Ok(Verdict::Duplicate(m)) if m.first_offset == 1)
        );
        assert!(
            matches!(table.check(&retry(2, 0)), Ok(Verdict::Duplicate(m)) if m.first_offset == 2)
        );
    }

    /// Guards against the tables of deleted topics staying in memory for good.
    #[test]
    fn tables_of_partitions_no_longer_held_are_dropped() {
        let states = ProducerStates::default();
        let kept = Uuid([1; 16]);
        let deleted = Uuid([2; 16]);
        states.partition("kept", kept, 0);
        states.partition("kept", kept, 1);
        states.partition("gone", deleted, 0);
        let dropped = states
            .retain_held(|topic, id, partition| topic == "kept" && id == kept && partition == 0);
        assert_eq!(dropped, 2);
        let left: Vec<(String, i32)> = states.partitions.lock().keys().cloned().collect();
        assert_eq!(left, vec![("kept".to_string(), 0)]);
    }

    #[test]
    fn a_snapshot_ahead_of_the_log_is_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("t-0"), LogConfig::default()).unwrap();
        append(&log, 1, 0);
        let mut ahead = ProducerTable::default();
        ahead.replay(
            &{
                let mut builder = RecordBatchBuilder::new();
                builder.producer(9, 0, 0);
                builder.push(Record::new(1_000, None, Some(b"lost")));
                let batch = weir_records::RecordBatch::new(builder.build().unwrap()).unwrap();
                *batch.header()
            },
            1_000,
        );
        write_snapshot(log.dir(), &ahead.snapshot(50)).unwrap();
        let table = load(&log, 1_000).unwrap();
        assert_eq!(table.len(), 1);
        assert!(matches!(
            table.check(&retry(1, 0)),
            Ok(Verdict::Duplicate(_))
        ));
        assert!(!log.dir().join(SNAPSHOT_FILE).exists());
    }
}
