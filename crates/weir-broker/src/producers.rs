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
//! Producers idle for longer than `producer.id.expiration.ms` (by their batches' max
//! timestamps, as in Kafka) are forgotten, so short-lived producers do not accumulate.
//!
//! [`ProducerSnapshot`] is the table as of a log offset, for `producer_state` to persist.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use weir_records::batch::BatchHeader;

/// Batches remembered per producer for duplicate detection (Kafka's value; clients allow at
/// most five requests in flight per connection when idempotence is on).
pub(crate) const MAX_CACHED_BATCHES: usize = 5;

/// Kafka's default `producer.id.expiration.ms`: one day.
pub(crate) const DEFAULT_EXPIRATION_MS: i64 = 86_400_000;

/// How often, at most, idle producers are looked for (Kafka's
/// `producer.id.expiration.check.interval.ms` default).
const EXPIRATION_CHECK_INTERVAL_MS: i64 = 600_000;

/// The producer fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
    /// The batch's max timestamp: when the producer was last heard of.
    pub(crate) timestamp: i64,
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
            timestamp: header.max_timestamp,
        })
    }
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
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first.
    batches: VecDeque<BatchMetadata>,
    /// Max timestamp of the producer's last batch.
    last_timestamp: i64,
}

/// The producer state of one partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
    /// When idle producers were last looked for (not persisted).
    last_expiration_check: i64,
}

impl PartialEq for ProducerTable {
    fn eq(&self, other: &Self) -> bool {
        self.producers == other.producers
    }
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

    /// Records a batch that was appended at `first_offset..=last_offset`.
    pub(crate) fn record(&mut self, batch: &ProducerBatch, metadata: BatchMetadata) {
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(metadata);
        entry.last_timestamp = entry.last_timestamp.max(batch.timestamp);
        while entry.batches.len() > MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// Forgets producers whose last batch is older than `expiration_ms` before `now_ms`,
    /// checking at most every ten minutes. Returns how many were forgotten.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        if now_ms.saturating_sub(self.last_expiration_check) < EXPIRATION_CHECK_INTERVAL_MS {
            return 0;
        }
        self.last_expiration_check = now_ms;
        let before = self.producers.len();
        self.producers
            .retain(|_, p| now_ms.saturating_sub(p.last_timestamp) <= expiration_ms);
        before - self.producers.len()
    }

    /// Replays a batch read back from the log (rebuilding the table after a restart): no
    /// checks, the log is the truth.
    pub(crate) fn replay(&mut self, header: &BatchHeader) {
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
                last_timestamp: entry.last_timestamp,
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        ProducerSnapshot {
            version: SNAPSHOT_VERSION,
            offset,
            producers,
        }
    }

    /// The table a snapshot describes.
    pub(crate) fn from_snapshot(snapshot: ProducerSnapshot) -> Self {
        let producers = snapshot
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
                        last_timestamp: p.last_timestamp,
                    },
                )
            })
            .collect();
        Self {
            producers,
            last_expiration_check: 0,
        }
    }
}

const SNAPSHOT_VERSION: u32 = 1;

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
    #[serde(default)]
    last_timestamp: i64,
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
            timestamp: 1_000_000,
        }
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

    /// Appends when the table says so, as the broker does.
    fn append(table: &mut ProducerTable, b: ProducerBatch, offset: i64) -> Verdict {
        let verdict = table.check(&b).unwrap();
        if verdict == Verdict::Append {
            table.record(&b, meta(&b, offset));
        }
        verdict
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
    fn idle_producers_expire() {
        let mut table = ProducerTable::default();
        append(&mut table, batch(1, 0, 0, 1), 0);
        let mut recent = batch(2, 0, 0, 1);
        recent.timestamp = 5_000_000;
        append(&mut table, recent, 1);
        // Producer 1 was last heard of at 1,000,000; producer 2 at 5,000,000.
        assert_eq!(table.expire(5_000_000, 3_000_000), 1);
        assert_eq!(table.len(), 1);
        // Checked at most every ten minutes.
        assert_eq!(table.expire(5_000_001, 0), 0);
        // A forgotten producer is accepted again at any sequence.
        assert_eq!(table.check(&batch(1, 0, 7, 1)), Ok(Verdict::Append));
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
        assert_eq!(ProducerTable::from_snapshot(back), table);
    }
}
