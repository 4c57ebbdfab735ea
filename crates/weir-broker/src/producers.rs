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
//! [`ProducerSnapshot`] is the table as of a log offset, for `producer_state` to persist.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use weir_records::batch::BatchHeader;

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
    /// The broker's wall clock (ms since the epoch) when the producer last appended, or when
    /// its state was rebuilt from the log (see [`ProducerTable::replay`]). Record timestamps
    /// are the client's and say nothing about when the producer was last active.
    last_append_ms: i64,
}

/// The producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
}

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
    }

    /// Forgets producers that have not appended for `expiration_ms` or more before `now_ms`
    /// (Kafka's `producer.id.expiration.ms`). Returns how many were forgotten.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, p| now_ms.saturating_sub(p.last_append_ms) < expiration_ms);
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
                        last_append_ms: p.last_append_ms.unwrap_or(now_ms),
                    },
                )
            })
            .collect();
        Self { producers }
    }
}

/// Version 2 records each producer's last-append time (version 1 had its last batch's max
/// record timestamp instead, which is ignored when read).
const SNAPSHOT_VERSION: u32 = 2;

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
