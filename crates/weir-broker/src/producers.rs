//! The idempotent producer state of one partition, as a state machine with no I/O.
//!
//! For each producer id the table keeps the current epoch and the sequence and offset ranges of
//! the last [`MAX_CACHED_BATCHES`] batches appended, which is what Kafka's producer state
//! manager keeps and what clients rely on (at most five in-flight requests per connection):
//! - a batch whose sequence range matches a cached batch of the current epoch is a retry: it is
//!   acknowledged with the offsets it got the first time and not appended again;
//! - otherwise its first sequence must follow the last one appended (wrapping after
//!   `i32::MAX`), or be 0 when the epoch is newer (the client bumped it);
//! - an epoch older than the current one is fenced;
//! - a producer id the table does not know is accepted at any sequence, as Kafka does since
//!   KIP-360 (its state may have been lost to retention or DeleteRecords).
//!
//! Producers that have not appended for `producer.id.expiration.ms` by the broker's clock are
//! forgotten by [`ProducerTable::expire`], which the broker calls every
//! `producer.id.expiration.check.interval.ms`, never while appending: a batch must be judged
//! against the state its producer left, however old the timestamps its records carry (a
//! replay of last year's data is still one producer's ordered stream).
//!
//! Transactions: a transactional data batch starts its producer's ongoing transaction on the
//! partition (at its first offset) or continues it; a control batch (a COMMIT or ABORT marker,
//! written by WriteTxnMarkers) ends it, and an ABORT marker yields the [`AbortedTxn`] entry of
//! the partition's transaction index. A non-transactional batch from a producer with an
//! ongoing transaction is refused (INVALID_TXN_STATE), a marker from an older producer epoch
//! (INVALID_PRODUCER_EPOCH) or an older coordinator epoch (TRANSACTION_COORDINATOR_FENCED) too,
//! as in Kafka. The first offset of the oldest ongoing transaction bounds the last stable
//! offset (see [`ProducerTable::first_unstable_offset`]). Producers with an ongoing transaction
//! are never expired: forgetting one would make its undecided records readable as committed.
//! Whether a producer may write transactionally at all (KIP-890: the leader asks the
//! transaction coordinator whether the partition was added to the transaction) comes with the
//! coordinator; until then a transactional batch is accepted under the idempotent checks.
//!
//! [`ProducerSnapshot`] is the table as of a log offset, for `producer_state` to persist.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use weir_log::AbortedTxn;
use weir_records::batch::BatchHeader;
use weir_records::{EndTransactionMarker, RecordBatch};

/// Batches remembered per producer for duplicate detection (Kafka's value; clients allow at
/// most five requests in flight per connection when idempotence is on).
pub(crate) const MAX_CACHED_BATCHES: usize = 5;

/// The producer fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
    /// Part of a transaction.
    pub(crate) transactional: bool,
}

impl ProducerBatch {
    /// The producer fields of `header`, or `None` when the batch has no producer id (not
    /// idempotent) or is a control batch (transaction markers carry no sequence).
    pub(crate) fn from_header(header: &BatchHeader) -> Option<Self> {
        if header.producer_id < 0 || header.attributes.is_control() {
            return None;
        }
        Some(Self {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_sequence: increment_sequence(header.base_sequence, header.last_offset_delta),
            transactional: header.attributes.is_transactional(),
        })
    }
}

/// A transaction marker for one partition (WriteTxnMarkers, or a control batch read back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnMarker {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) coordinator_epoch: i32,
    pub(crate) commit: bool,
}

/// A transaction a marker ended on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub(crate) producer_id: i64,
    /// Offset of its first batch here.
    pub(crate) first_offset: i64,
    /// Offset of the marker.
    pub(crate) last_offset: i64,
    pub(crate) aborted: bool,
}

/// `sequence + increment`, wrapping to 0 after `i32::MAX` as Kafka's sequences do. Computed
/// in 64 bits: the header has not been validated yet when this runs, and a nonsensical
/// (negative) increment must not overflow.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let max = i64::from(i32::MAX);
    let next = i64::from(sequence) + i64::from(increment);
    let wrapped = if next > max { next - max - 1 } else { next };
    i32::try_from(wrapped).unwrap_or(-1)
}

/// Whether `next` directly follows `last`.
fn in_sequence(last: i32, next: i32) -> bool {
    next == increment_sequence(last, 1)
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchMetadata {
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    /// The LogAppendTime stamped into the batch, or -1 (CreateTime).
    pub(crate) log_append_time: i64,
}

/// What to do with a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Append it, then [`ProducerTable::record`] it.
    Append,
    /// A retry of a batch already appended: answer with its original offsets.
    Duplicate(BatchMetadata),
}

/// Why a producer's batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ProducerError {
    /// The first sequence does not follow the last one appended.
    #[error(
        "out of order sequence number for producer {producer_id} at epoch {epoch}: {received} (incoming first sequence), {last} (last appended sequence)"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        received: i32,
        last: i32,
    },
    /// The epoch is older than the producer's current one: a newer instance fenced it.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// A non-transactional batch while the producer has a transaction ongoing here.
    #[error(
        "producer {producer_id} wrote a non-transactional batch while its transaction from offset {first_offset} is ongoing"
    )]
    InvalidTxnState { producer_id: i64, first_offset: i64 },
    /// A transactional batch that would start its producer's transaction here without a
    /// verification (KIP-890) still standing: the transaction the coordinator confirmed has
    /// ended (its marker came in between) or the batch was never verified.
    #[error(
        "producer {producer_id} would start a transaction that the coordinator has not verified"
    )]
    UnverifiedTxn { producer_id: i64 },
    /// A marker from a coordinator older than the one that wrote the producer's last marker.
    #[error(
        "marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, older than {current}"
    )]
    CoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first.
    batches: VecDeque<BatchMetadata>,
    /// The broker's wall clock (ms since the epoch) when the producer last appended, or when
    /// its state was rebuilt from the log (see [`ProducerTable::replay`]). Record timestamps
    /// are the client's and say nothing about when the producer was last active.
    last_append_ms: i64,
    /// First offset of the producer's ongoing transaction on this partition.
    current_txn_first_offset: Option<i64>,
    /// Epoch of the coordinator that wrote the producer's last marker (-1: none yet).
    coordinator_epoch: i32,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        Self {
            epoch: 0,
            batches: VecDeque::new(),
            last_append_ms: 0,
            current_txn_first_offset: None,
            coordinator_epoch: -1,
        }
    }
}

/// One producer of a partition, as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActiveProducer {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    /// The last sequence appended, -1 when no batch of this epoch is known.
    pub(crate) last_sequence: i32,
    /// The broker's clock when the producer last appended (Kafka reports the last batch's
    /// max timestamp, a client clock; the table keeps the broker's, see `ProducerEntry`).
    pub(crate) last_append_ms: i64,
    /// Epoch of the coordinator that wrote the producer's last marker, -1 for none.
    pub(crate) coordinator_epoch: i32,
    /// First offset of its ongoing transaction here.
    pub(crate) current_txn_first_offset: Option<i64>,
}

/// The producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
    /// (first offset, producer id) of every ongoing transaction, oldest first.
    ongoing: BTreeSet<(i64, i64)>,
    /// KIP-890 verification guards: producer id → the guard of a verification in progress for
    /// a batch that would start its transaction here. A marker for the producer removes it, so
    /// a batch verified against a transaction that ended meanwhile cannot open a new one. In
    /// memory only (a lost guard makes the producer verify again).
    verification_guards: HashMap<i64, u64>,
}

/// Source of verification guards, unique in this process.
static NEXT_GUARD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The broker's wall clock in milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ProducerTable {
    /// Decides whether `batch` is appended, answered as a duplicate, or refused.
    pub(crate) fn check(&self, batch: &ProducerBatch) -> Result<Verdict, ProducerError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return Ok(Verdict::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id: batch.producer_id,
                epoch: batch.producer_epoch,
                current: entry.epoch,
            });
        }
        if let (false, Some(first_offset)) = (batch.transactional, entry.current_txn_first_offset) {
            return Err(ProducerError::InvalidTxnState {
                producer_id: batch.producer_id,
                first_offset,
            });
        }
        if batch.producer_epoch > entry.epoch {
            // A new epoch starts its sequences again from 0.
            return if batch.first_sequence == 0 {
                Ok(Verdict::Append)
            } else {
                Err(ProducerError::OutOfOrderSequence {
                    producer_id: batch.producer_id,
                    epoch: batch.producer_epoch,
                    received: batch.first_sequence,
                    last: -1,
                })
            };
        }
        if let Some(original) = entry.batches.iter().find(|b| {
            b.first_sequence == batch.first_sequence && b.last_sequence == batch.last_sequence
        }) {
            return Ok(Verdict::Duplicate(*original));
        }
        match entry.batches.back() {
            Some(last) if !in_sequence(last.last_sequence, batch.first_sequence) => {
                Err(ProducerError::OutOfOrderSequence {
                    producer_id: batch.producer_id,
                    epoch: batch.producer_epoch,
                    received: batch.first_sequence,
                    last: last.last_sequence,
                })
            }
            _ => Ok(Verdict::Append),
        }
    }

    /// Records a batch that was appended at `first_offset..=last_offset` at `now_ms` by the
    /// broker's clock.
    pub(crate) fn record(&mut self, batch: &ProducerBatch, metadata: BatchMetadata, now_ms: i64) {
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(metadata);
        // A wall clock stepped back must not make the producer look idle for longer.
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
        while entry.batches.len() > MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
        if batch.transactional && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(metadata.first_offset);
            self.ongoing
                .insert((metadata.first_offset, batch.producer_id));
            // The transaction is open: the verification that let it start is used up.
            self.verification_guards.remove(&batch.producer_id);
        }
    }

    /// Decides whether a marker may be written: not from an older producer epoch, nor from an
    /// older coordinator than the producer's last marker. A producer the table does not know
    /// passes (its state may have expired; the marker then ends nothing here).
    pub(crate) fn check_marker(&self, marker: &TxnMarker) -> Result<(), ProducerError> {
        let Some(entry) = self.producers.get(&marker.producer_id) else {
            return Ok(());
        };
        if marker.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id: marker.producer_id,
                epoch: marker.producer_epoch,
                current: entry.epoch,
            });
        }
        if marker.coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced {
                producer_id: marker.producer_id,
                coordinator_epoch: marker.coordinator_epoch,
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a marker written at `offset`: ends the producer's ongoing transaction, if any,
    /// and returns it. A newer producer epoch in the marker (the coordinator bumped it)
    /// becomes the producer's, and its sequences start over.
    pub(crate) fn complete_txn(
        &mut self,
        marker: &TxnMarker,
        offset: i64,
        now_ms: i64,
    ) -> Option<CompletedTxn> {
        let entry = self.producers.entry(marker.producer_id).or_default();
        if marker.producer_epoch != entry.epoch {
            entry.epoch = marker.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
        // A verification in progress was for the transaction this marker ends.
        self.verification_guards.remove(&marker.producer_id);
        let first_offset = entry.current_txn_first_offset.take()?;
        self.ongoing.remove(&(first_offset, marker.producer_id));
        Some(CompletedTxn {
            producer_id: marker.producer_id,
            first_offset,
            last_offset: offset,
            aborted: !marker.commit,
        })
    }

    /// The transaction index entry of a transaction just completed (already out of the
    /// ongoing set): its last stable offset is where the first transaction still ongoing
    /// starts, or the offset after the marker. Like Kafka, this does not include the high
    /// watermark, so the same entry is computed on the leader, on followers and when the
    /// table is rebuilt from the log.
    pub(crate) fn aborted_entry(&self, txn: &CompletedTxn) -> AbortedTxn {
        let next = txn.last_offset + 1;
        AbortedTxn {
            producer_id: txn.producer_id,
            first_offset: txn.first_offset,
            last_offset: txn.last_offset,
            last_stable_offset: self.first_unstable_offset().map_or(next, |f| f.min(next)),
        }
    }

    /// Starts a KIP-890 verification for `producer_id` at `epoch`: `None` when its transaction
    /// is already ongoing here (nothing to verify), else the guard the append must present.
    pub(crate) fn begin_verification(&mut self, producer_id: i64, epoch: i16) -> Option<u64> {
        if self.has_ongoing_txn(producer_id, epoch) {
            return None;
        }
        let guard = NEXT_GUARD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.verification_guards.insert(producer_id, guard);
        Some(guard)
    }

    /// For an append that verification covers: refuses a transactional `batch` that would start
    /// its producer's transaction here unless `guard` is the verification still standing.
    pub(crate) fn check_verified(
        &self,
        batch: &ProducerBatch,
        guard: Option<u64>,
    ) -> Result<(), ProducerError> {
        if !batch.transactional || self.has_ongoing_txn(batch.producer_id, batch.producer_epoch) {
            return Ok(());
        }
        match (guard, self.verification_guards.get(&batch.producer_id)) {
            (Some(presented), Some(standing)) if presented == *standing => Ok(()),
            _ => Err(ProducerError::UnverifiedTxn {
                producer_id: batch.producer_id,
            }),
        }
    }

    /// The epoch the table knows `producer_id` at, if it knows the producer.
    pub(crate) fn current_epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|p| p.epoch)
    }

    /// Whether `producer_id` at `epoch` has a transaction ongoing on this partition (KIP-890:
    /// only a producer's first transactional batch of a transaction is verified with the
    /// coordinator).
    pub(crate) fn has_ongoing_txn(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|p| p.epoch == epoch && p.current_txn_first_offset.is_some())
    }

    /// The producers the table knows, by producer id: what DescribeProducers reports.
    pub(crate) fn active_producers(&self) -> Vec<ActiveProducer> {
        let mut producers: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(&producer_id, entry)| ActiveProducer {
                producer_id,
                epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |b| b.last_sequence),
                last_append_ms: entry.last_append_ms,
                coordinator_epoch: entry.coordinator_epoch,
                current_txn_first_offset: entry.current_txn_first_offset,
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        producers
    }

    /// Where the oldest ongoing transaction starts: the last stable offset is at most this.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|&(first, _)| first)
    }

    /// Replays a batch read back from the log (see [`ProducerTable::replay`]); a marker ends
    /// its producer's transaction, which is returned.
    pub(crate) fn replay_batch(
        &mut self,
        batch: &RecordBatch,
        now_ms: i64,
    ) -> Option<CompletedTxn> {
        let header = batch.header();
        if header.producer_id < 0 {
            return None;
        }
        if !header.attributes.is_control() {
            self.replay(header, now_ms);
            return None;
        }
        // A marker batch holds one record; anything else (or garbage) ends nothing.
        let record = batch.records().ok()?.next()?.ok()?;
        let marker = EndTransactionMarker::from_record(&record).ok()??;
        self.complete_txn(
            &TxnMarker {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                coordinator_epoch: marker.coordinator_epoch,
                commit: marker.commit,
            },
            header.base_offset,
            now_ms,
        )
    }

    /// Forgets producers that have not appended for `expiration_ms` or more before `now_ms`
    /// (Kafka's `producer.id.expiration.ms`). Returns how many were forgotten.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, p| {
            p.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(p.last_append_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Replays a batch read back from the log (rebuilding the table after a restart): no
    /// checks, the log is the truth. When the batch was appended is not in the log (record
    /// timestamps are the client's), so the producer counts as last seen at `now_ms`, the time
    /// of the rebuild: it is then remembered for at least one full expiration period, erring
    /// towards keeping its duplicate detection.
    pub(crate) fn replay(&mut self, header: &BatchHeader, now_ms: i64) {
        let Some(batch) = ProducerBatch::from_header(header) else {
            return;
        };
        let log_append_time =
            if header.attributes.timestamp_type() == weir_records::TimestampType::LogAppendTime {
                header.max_timestamp
            } else {
                -1
            };
        self.record(
            &batch,
            BatchMetadata {
                first_sequence: batch.first_sequence,
                last_sequence: batch.last_sequence,
                first_offset: header.base_offset,
                last_offset: header.last_offset(),
                log_append_time,
            },
            now_ms,
        );
    }

    /// Number of producers known.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// The table as of log offset `offset` (everything below it is reflected).
    pub(crate) fn snapshot(&self, offset: i64) -> ProducerSnapshot {
        let mut producers: Vec<SnapshotEntry> = self
            .producers
            .iter()
            .map(|(&producer_id, entry)| SnapshotEntry {
                producer_id,
                epoch: entry.epoch,
                batches: entry.batches.iter().copied().collect(),
                last_append_ms: Some(entry.last_append_ms),
                current_txn_first_offset: entry.current_txn_first_offset,
                coordinator_epoch: Some(entry.coordinator_epoch),
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        ProducerSnapshot {
            version: SNAPSHOT_VERSION,
            offset,
            producers,
        }
    }

    /// The table a snapshot describes; `now_ms` stands in for the last-append time of a
    /// producer in a version 1 snapshot, which did not record it.
    pub(crate) fn from_snapshot(snapshot: ProducerSnapshot, now_ms: i64) -> Self {
        let producers: HashMap<i64, ProducerEntry> = snapshot
            .producers
            .into_iter()
            .map(|p| {
                let mut batches: VecDeque<BatchMetadata> = p.batches.into();
                while batches.len() > MAX_CACHED_BATCHES {
                    batches.pop_front();
                }
                (
                    p.producer_id,
                    ProducerEntry {
                        epoch: p.epoch,
                        batches,
                        last_append_ms: p.last_append_ms.unwrap_or(now_ms),
                        current_txn_first_offset: p.current_txn_first_offset,
                        coordinator_epoch: p.coordinator_epoch.unwrap_or(-1),
                    },
                )
            })
            .collect();
        let ongoing = producers
            .iter()
            .filter_map(|(&id, p)| p.current_txn_first_offset.map(|first| (first, id)))
            .collect();
        Self {
            producers,
            ongoing,
            verification_guards: HashMap::new(),
        }
    }
}

/// Version 2 records each producer's last-append time (version 1 had its last batch's max
/// record timestamp instead, which is ignored when read); version 3 adds the ongoing
/// transaction and the coordinator epoch (absent: none ongoing, no marker yet).
const SNAPSHOT_VERSION: u32 = 3;

/// A persisted [`ProducerTable`]: valid for a log whose end offset is at least `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerSnapshot {
    version: u32,
    /// The log end offset the table reflects.
    pub(crate) offset: i64,
    producers: Vec<SnapshotEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotEntry {
    producer_id: i64,
    epoch: i16,
    batches: Vec<BatchMetadata>,
    /// The broker's wall clock at the producer's last append. Persisted so that a restart
    /// does not make an idle producer young again (a broker restarted more often than
    /// `producer.id.expiration.ms` would otherwise never forget anyone); wall-clock time,
    /// because a monotonic clock starts over with the process. `None` in version 1 snapshots.
    #[serde(default)]
    last_append_ms: Option<i64>,
    /// First offset of the ongoing transaction.
    #[serde(default)]
    current_txn_first_offset: Option<i64>,
    /// Epoch of the coordinator of the last marker.
    #[serde(default)]
    coordinator_epoch: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, first: i32, count: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            producer_epoch: epoch,
            first_sequence: first,
            last_sequence: increment_sequence(first, count - 1),
            transactional: false,
        }
    }

    fn txn(producer_id: i64, epoch: i16, first: i32, count: i32) -> ProducerBatch {
        ProducerBatch {
            transactional: true,
            ..batch(producer_id, epoch, first, count)
        }
    }

    fn marker(producer_id: i64, epoch: i16, coordinator_epoch: i32, commit: bool) -> TxnMarker {
        TxnMarker {
            producer_id,
            producer_epoch: epoch,
            coordinator_epoch,
            commit,
        }
    }

    #[test]
    fn transactions_start_continue_and_end_with_their_marker() {
        let mut table = ProducerTable::default();
        assert_eq!(table.first_unstable_offset(), None);
        append(&mut table, txn(1, 0, 0, 2), 10);
        append(&mut table, txn(2, 0, 0, 1), 12);
        append(&mut table, txn(1, 0, 2, 1), 13);
        assert_eq!(table.first_unstable_offset(), Some(10));
        // A plain batch from producer 1 mid-transaction is refused; producer 3 is unaffected.
        assert!(matches!(
            table.check(&batch(1, 0, 3, 1)),
            Err(ProducerError::InvalidTxnState {
                first_offset: 10,
                ..
            })
        ));
        assert_eq!(table.check(&batch(3, 0, 0, 1)), Ok(Verdict::Append));
        // Producer 1 aborts at 14: its entry's LSO is where producer 2's transaction starts.
        table.check_marker(&marker(1, 0, 5, false)).unwrap();
        let done = table
            .complete_txn(&marker(1, 0, 5, false), 14, 1_000_000)
            .unwrap();
        assert_eq!(
            (done.first_offset, done.last_offset, done.aborted),
            (10, 14, true)
        );
        let entry = table.aborted_entry(&done);
        assert_eq!(entry.last_stable_offset, 12);
        assert_eq!(table.first_unstable_offset(), Some(12));
        // Producer 2 commits at 15: nothing ongoing any more.
        let done = table
            .complete_txn(&marker(2, 0, 5, true), 15, 1_000_000)
            .unwrap();
        assert!(!done.aborted);
        assert_eq!(table.aborted_entry(&done).last_stable_offset, 16);
        assert_eq!(table.first_unstable_offset(), None);
        // A second marker ends nothing.
        assert_eq!(table.complete_txn(&marker(2, 0, 5, true), 16, 0), None);
        // Stale producer and coordinator epochs are refused.
        append(&mut table, txn(1, 1, 0, 1), 17);
        assert!(matches!(
            table.check_marker(&marker(1, 0, 5, false)),
            Err(ProducerError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            table.check_marker(&marker(1, 1, 4, false)),
            Err(ProducerError::CoordinatorFenced { current: 5, .. })
        ));
        assert_eq!(table.check_marker(&marker(9, 0, 0, true)), Ok(()));
    }

    #[test]
    fn active_producers_report_sequence_epochs_and_open_transactions() {
        let mut table = ProducerTable::default();
        append(&mut table, txn(7, 2, 0, 3), 40);
        append(&mut table, batch(3, 0, 0, 5), 43);
        table.complete_txn(&marker(7, 2, 4, true), 48, 1_000);
        append(&mut table, txn(7, 2, 3, 1), 49);
        let active = table.active_producers();
        assert_eq!(
            active
                .iter()
                .map(|p| (
                    p.producer_id,
                    p.epoch,
                    p.last_sequence,
                    p.coordinator_epoch,
                    p.current_txn_first_offset
                ))
                .collect::<Vec<_>>(),
            vec![(3, 0, 4, -1, None), (7, 2, 3, 4, Some(49))]
        );
    }

    #[test]
    fn producers_with_ongoing_transactions_do_not_expire() {
        let mut table = ProducerTable::default();
        append(&mut table, txn(1, 0, 0, 1), 0);
        append(&mut table, batch(2, 0, 0, 1), 1);
        assert_eq!(table.expire(i64::MAX, 1), 1);
        assert_eq!(table.first_unstable_offset(), Some(0));
        table.complete_txn(&marker(1, 0, 0, true), 2, 5);
        assert_eq!(table.expire(i64::MAX, 1), 1);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn replayed_batches_rebuild_transactions() {
        let build = |builder: &mut weir_records::RecordBatchBuilder, offset: i64| {
            RecordBatch::new(builder.base_offset(offset).build().unwrap()).unwrap()
        };
        let mut data = weir_records::RecordBatchBuilder::new();
        data.producer(4, 0, 0).transactional(true);
        data.push(weir_records::Record::new(1, None, Some(b"v")));
        let mut table = ProducerTable::default();
        assert_eq!(table.replay_batch(&build(&mut data, 5), 0), None);
        assert_eq!(table.first_unstable_offset(), Some(5));
        let mut abort = EndTransactionMarker::abort(3).batch_builder(4, 0, 1);
        let done = table.replay_batch(&build(&mut abort, 6), 0).unwrap();
        assert_eq!(
            (done.first_offset, done.last_offset, done.aborted),
            (5, 6, true)
        );
        assert_eq!(table.first_unstable_offset(), None);
        // The snapshot keeps an ongoing transaction and the coordinator epoch.
        table.replay_batch(&build(&mut data, 7), 0);
        let back = ProducerTable::from_snapshot(
            serde_json::from_slice(&serde_json::to_vec(&table.snapshot(8)).unwrap()).unwrap(),
            0,
        );
        assert_eq!(back, table);
        assert_eq!(back.first_unstable_offset(), Some(7));
        assert!(back.check_marker(&marker(4, 0, 2, true)).is_err());
    }

    fn meta(b: &ProducerBatch, first_offset: i64) -> BatchMetadata {
        BatchMetadata {
            first_sequence: b.first_sequence,
            last_sequence: b.last_sequence,
            first_offset,
            last_offset: first_offset + i64::from(b.last_sequence - b.first_sequence),
            log_append_time: -1,
        }
    }

    /// Appends at 1,000,000 ms when the table says so, as the broker does.
    fn append(table: &mut ProducerTable, b: ProducerBatch, offset: i64) -> Verdict {
        append_at(table, b, offset, 1_000_000)
    }

    fn append_at(table: &mut ProducerTable, b: ProducerBatch, offset: i64, now: i64) -> Verdict {
        let verdict = table.check(&b).unwrap();
        if verdict == Verdict::Append {
            table.record(&b, meta(&b, offset), now);
        }
        verdict
    }

    #[test]
    fn a_transaction_starts_only_on_a_standing_verification() {
        let mut table = ProducerTable::default();
        let first = txn(7, 0, 0, 2);
        // Unverified (no guard): refused.
        assert_eq!(
            table.check_verified(&first, None),
            Err(ProducerError::UnverifiedTxn { producer_id: 7 })
        );
        // A marker between the verification and the append ends the guard.
        let guard = table.begin_verification(7, 0).unwrap();
        assert!(table.check_verified(&first, Some(guard)).is_ok());
        assert_eq!(table.complete_txn(&marker(7, 0, 1, false), 5, 1), None);
        assert!(table.check_verified(&first, Some(guard)).is_err());
        // A fresh verification lets the transaction start; later batches need none.
        let guard = table.begin_verification(7, 0).unwrap();
        assert!(table.check_verified(&first, Some(guard)).is_ok());
        append(&mut table, first, 10);
        assert_eq!(table.begin_verification(7, 0), None);
        assert!(table.check_verified(&txn(7, 0, 2, 1), None).is_ok());
        // Non-transactional batches are not its business.
        assert!(table.check_verified(&batch(8, 0, 0, 1), None).is_ok());
        // The transaction ends: the next one needs a new verification, the used guard is gone.
        table.complete_txn(&marker(7, 0, 1, true), 13, 1);
        assert!(table.check_verified(&txn(7, 0, 3, 1), Some(guard)).is_err());
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert!(in_sequence(i32::MAX, 0));
        // Garbage from an unvalidated header does not overflow.
        assert_eq!(increment_sequence(i32::MIN, -5), -1);
        assert_eq!(increment_sequence(3, i32::MIN), 3 + i32::MIN);
    }

    #[test]
    fn retries_of_the_last_five_batches_are_duplicates() {
        let mut table = ProducerTable::default();
        for i in 0..7 {
            let b = batch(1, 0, i * 10, 10);
            assert_eq!(append(&mut table, b, i64::from(i) * 10), Verdict::Append);
        }
        // The 3rd batch (index 2) is the oldest still cached.
        let retry = batch(1, 0, 20, 10);
        assert_eq!(
            table.check(&retry),
            Ok(Verdict::Duplicate(meta(&retry, 20)))
        );
        // The 2nd fell out of the cache: it is out of order now, as in Kafka.
        assert!(matches!(
            table.check(&batch(1, 0, 10, 10)),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn gaps_and_overlaps_are_out_of_order() {
        let mut table = ProducerTable::default();
        append(&mut table, batch(1, 0, 0, 5), 0);
        let gap = table.check(&batch(1, 0, 6, 1));
        assert_eq!(
            gap,
            Err(ProducerError::OutOfOrderSequence {
                producer_id: 1,
                epoch: 0,
                received: 6,
                last: 4
            })
        );
        assert!(table.check(&batch(1, 0, 3, 5)).is_err());
        assert_eq!(table.check(&batch(1, 0, 5, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut table = ProducerTable::default();
        append(&mut table, batch(1, 3, 0, 2), 0);
        assert!(matches!(
            table.check(&batch(1, 2, 2, 1)),
            Err(ProducerError::InvalidProducerEpoch { current: 3, .. })
        ));
        // A bumped epoch must start at sequence 0.
        assert!(table.check(&batch(1, 4, 2, 1)).is_err());
        assert_eq!(append(&mut table, batch(1, 4, 0, 1), 2), Verdict::Append);
        assert!(table.check(&batch(1, 3, 2, 1)).is_err());
        // Producers are independent.
        assert_eq!(table.check(&batch(2, 0, 0, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn unknown_producers_are_accepted_at_any_sequence() {
        let table = ProducerTable::default();
        assert_eq!(table.check(&batch(9, 1, 42, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn idle_producers_expire_by_their_last_append() {
        let mut table = ProducerTable::default();
        append(&mut table, batch(1, 0, 0, 1), 0);
        append_at(&mut table, batch(2, 0, 0, 1), 1, 5_000_000);
        // Producer 1 last appended at 1,000,000; producer 2 at 5,000,000.
        assert_eq!(table.expire(3_999_999, 3_000_000), 0);
        assert_eq!(table.expire(4_000_000, 3_000_000), 1);
        assert_eq!(table.len(), 1);
        // A forgotten producer is accepted again at any sequence.
        assert_eq!(table.check(&batch(1, 0, 7, 1)), Ok(Verdict::Append));
        // A clock stepped back keeps the later time.
        append_at(&mut table, batch(2, 0, 1, 1), 2, 10);
        assert_eq!(table.expire(7_999_999, 3_000_000), 0);
    }

    /// Issue 15: expiry compared the batches' record timestamps with now, in the append path,
    /// so a producer writing old CreateTime timestamps was forgotten after its first batch and
    /// its out-of-order next batch appended. The table no longer sees record timestamps;
    /// expiry counts from the broker's clock of the last append, and only when asked.
    #[test]
    fn old_record_timestamps_do_not_expire_a_producer() {
        let mut table = ProducerTable::default();
        let header = {
            let mut builder = weir_records::RecordBatchBuilder::new();
            builder.producer(1, 0, 0);
            for _ in 0..3 {
                // 2017-07-14.
                builder.push(weir_records::Record::new(
                    1_500_000_000_000,
                    None,
                    Some(b"v"),
                ));
            }
            let bytes = builder.build().unwrap();
            *weir_records::RecordBatch::new(bytes).unwrap().header()
        };
        let first = ProducerBatch::from_header(&header).unwrap();
        let now = wall_clock_ms();
        assert_eq!(append_at(&mut table, first, 0, now), Verdict::Append);
        assert_eq!(table.expire(now, 86_400_000), 0);
        assert!(matches!(
            table.check(&batch(1, 0, 1, 1)),
            Err(ProducerError::OutOfOrderSequence { last: 2, .. })
        ));
    }

    #[test]
    fn snapshots_round_trip() {
        let mut table = ProducerTable::default();
        append(&mut table, batch(1, 0, 0, 5), 0);
        append(&mut table, batch(2, 7, 100, 1), 5);
        let snapshot = table.snapshot(6);
        let json = serde_json::to_vec(&snapshot).unwrap();
        let back: ProducerSnapshot = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.offset, 6);
        // The last-append time survives: the producers are as idle after a reload as before.
        let mut back = ProducerTable::from_snapshot(back, 9_000_000);
        assert_eq!(back, table);
        assert_eq!(back.expire(2_000_000, 1_000_000), 2);
    }

    /// A version 1 snapshot (record timestamps, no last-append time) still loads; its
    /// producers count as last seen when it is loaded.
    #[test]
    fn version_1_snapshots_load() {
        let json = br#"{"version":1,"offset":3,"producers":[{"producer_id":4,"epoch":0,
            "batches":[{"first_sequence":0,"last_sequence":2,"first_offset":0,"last_offset":2,
            "log_append_time":-1}],"last_timestamp":1500000000000}]}"#;
        let snapshot: ProducerSnapshot = serde_json::from_slice(json).unwrap();
        let mut table = ProducerTable::from_snapshot(snapshot, 5_000_000);
        assert!(matches!(
            table.check(&batch(4, 0, 0, 3)),
            Ok(Verdict::Duplicate(m)) if m.last_offset == 2
        ));
        assert_eq!(table.expire(5_999_999, 1_000_000), 0);
        assert_eq!(table.expire(6_000_000, 1_000_000), 1);
    }
}
