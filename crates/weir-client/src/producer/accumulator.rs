//! Per-partition queues of batches, sequence numbers and buffer memory, shared by the
//! producer handles, the sender and the broker tasks.

use super::Delivery;
use super::partitioner::{StickyPartitioner, partition_for_key};
use super::transaction::{Phase, Transaction};
use super::{ProducerConfig, ProducerRecord, RecordMetadata};
use crate::client::{Backoff, Client};
use crate::error::{Error, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore};
use weir_protocol::ErrorCode;
use weir_records::Record;

/// Bytes a record adds to a batch beyond its key, value and headers (length, attributes,
/// timestamp and offset deltas, key/value lengths, header count), as an upper bound.
const RECORD_OVERHEAD: usize = 22;
/// The RecordBatch v2 header.
pub(crate) const BATCH_OVERHEAD: usize = weir_records::batch::BATCH_HEADER_LEN;

/// Records for one partition that travel (and succeed or fail) together.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// The records until the batch is first encoded (then they live in `encoded`).
    pub(crate) records: Vec<Record>,
    /// How many records the batch holds.
    pub(crate) count: usize,
    /// What the records' deliveries wait on.
    pub(crate) outcome: Arc<BatchOutcome>,
    /// Estimated encoded size, and the buffer memory it holds.
    pub(crate) size: usize,
    pub(crate) created: Instant,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) attempts: u32,
    /// Producer id, epoch and sequence assigned when first drained (idempotence).
    pub(crate) sequence: Option<(i64, i16, i32)>,
    /// The encoded batch, kept so that retries resend exactly the same bytes.
    pub(crate) encoded: Option<Bytes>,
}

impl Batch {
    pub(crate) fn new(topic: Arc<str>, partition: i32) -> Self {
        Self {
            topic: topic.clone(),
            partition,
            records: Vec::new(),
            count: 0,
            outcome: Arc::new(BatchOutcome {
                topic: topic.clone(),
                partition,
                result: OnceLock::new(),
                wakers: Mutex::new(Vec::new()),
            }),
            size: BATCH_OVERHEAD,
            created: Instant::now(),
            retry_at: None,
            backoff: None,
            attempts: 0,
            sequence: None,
            encoded: None,
        }
    }
}

impl Drop for Batch {
    /// A batch dropped without an outcome (the producer's tasks ended) fails its records rather
    /// than leaving their deliveries waiting.
    fn drop(&mut self) {
        self.outcome.finish(Err(Arc::new(Error::Closed)));
    }
}

/// The outcome of one batch, shared by the [`super::Delivery`] of each of its records: one
/// allocation per batch instead of a channel per record.
#[derive(Debug)]
pub(crate) struct BatchOutcome {
    topic: Arc<str>,
    partition: i32,
    /// Base offset and log append time, or why the batch failed.
    result: OnceLock<std::result::Result<(i64, i64), Arc<Error>>>,
    wakers: Mutex<Vec<Waker>>,
}

impl BatchOutcome {
    /// Sets the outcome (the first one wins) and wakes every waiting delivery.
    fn finish(&self, result: std::result::Result<(i64, i64), Arc<Error>>) {
        if self.result.set(result).is_ok() {
            let wakers = std::mem::take(&mut *self.wakers.lock());
            for waker in wakers {
                waker.wake();
            }
        }
    }

    /// The metadata of record `index` (created at `timestamp`) once the batch has an outcome.
    pub(crate) fn poll_record(
        &self,
        index: usize,
        timestamp: i64,
        waker: &Waker,
    ) -> Poll<Result<RecordMetadata>> {
        if let Some(result) = self.result.get() {
            return Poll::Ready(self.record(result, index, timestamp));
        }
        let mut wakers = self.wakers.lock();
        // Checked again under the lock `finish` takes, so no wake-up is lost.
        if let Some(result) = self.result.get() {
            return Poll::Ready(self.record(result, index, timestamp));
        }
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
        Poll::Pending
    }

    fn record(
        &self,
        result: &std::result::Result<(i64, i64), Arc<Error>>,
        index: usize,
        timestamp: i64,
    ) -> Result<RecordMetadata> {
        match result {
            Ok((base_offset, log_append_time)) => Ok(RecordMetadata {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: if *base_offset < 0 {
                    -1
                } else {
                    base_offset + index as i64
                },
                timestamp: if *log_append_time >= 0 {
                    *log_append_time
                } else {
                    timestamp
                },
            }),
            Err(err) => Err(err.duplicate()),
        }
    }
}

/// One partition's queue.
#[derive(Debug, Default)]
pub(crate) struct PartitionQueue {
    /// The batch records are appended to.
    pub(crate) open: Option<Batch>,
    /// Closed batches in send order (retries go back in sequence order).
    pub(crate) ready: VecDeque<Batch>,
    pub(crate) in_flight: usize,
    /// The next base sequence (idempotence).
    pub(crate) next_sequence: i32,
    /// A batch failed and waits for its retry: only one batch is in flight until it succeeds,
    /// so batches cannot overtake it.
    pub(crate) retrying: bool,
}

/// The producer id and epoch in use; id -1 without idempotence or while none is assigned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProducerIdentity {
    pub(crate) id: i64,
    pub(crate) epoch: i16,
}

/// A topic's name (shared by its batches) and partition count.
#[derive(Debug)]
struct TopicCache {
    name: Arc<str>,
    partitions: usize,
    epoch: u64,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) partitions: HashMap<(Arc<str>, i32), PartitionQueue>,
    /// Partition counts of the topics produced to, valid while the client's metadata epoch
    /// is unchanged.
    topics: HashMap<String, TopicCache>,
    sticky: StickyPartitioner,
    pub(crate) producer: ProducerIdentity,
    /// The producer id must be (re)obtained before more batches are sent.
    pub(crate) needs_producer_id: bool,
    /// Flushes in progress: while any, batches close without waiting for `linger.ms`.
    pub(crate) flushing: usize,
    pub(crate) closed: bool,
    /// The transaction, for a producer with a `transactional.id`.
    pub(crate) txn: Option<Transaction>,
}

/// What the producer's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: ProducerConfig,
    pub(crate) state: Mutex<State>,
    /// Wakes the sender: a batch closed, a response arrived, a flush started.
    pub(crate) wake: Notify,
    /// Signalled when no record is pending.
    idle: Notify,
    /// Records enqueued and not yet completed.
    pending: AtomicUsize,
    memory: Semaphore,
    /// Serializes the transactional calls (init, begin, offsets, commit, abort).
    pub(crate) txn_op: tokio::sync::Mutex<()>,
    /// Signalled when an AddPartitionsToTxn completes.
    pub(crate) txn_changed: Notify,
}

impl Shared {
    pub(crate) fn new(client: Client, config: ProducerConfig) -> Arc<Self> {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Arc::new(Self {
            client,
            memory: Semaphore::new(config.buffer_memory),
            state: Mutex::new(State {
                partitions: HashMap::new(),
                topics: HashMap::new(),
                sticky: StickyPartitioner::new(config.batch_size, seed),
                producer: ProducerIdentity { id: -1, epoch: -1 },
                needs_producer_id: false,
                flushing: 0,
                closed: false,
                txn: config
                    .transactional_id
                    .clone()
                    .map(|id| Transaction::new(id, config.transaction_timeout)),
            }),
            config,
            wake: Notify::new(),
            idle: Notify::new(),
            pending: AtomicUsize::new(0),
            txn_op: tokio::sync::Mutex::new(()),
            txn_changed: Notify::new(),
        })
    }

    /// Adds a record to its partition's open batch.
    pub(crate) async fn append(&self, record: ProducerRecord) -> Result<Delivery> {
        // Checked again under the lock that appends; this spares a misplaced send the wait
        // for memory or metadata. Only transactional producers pay for the extra lock.
        if self.config.transactional_id.is_some() {
            if let Some(txn) = &self.state.lock().txn {
                txn.check("send", &[Phase::InTransaction])?;
            }
        }
        let size = record_size(&record);
        let limit = self.config.max_request_size.min(self.config.buffer_memory);
        if size + BATCH_OVERHEAD > limit {
            return Err(Error::Kafka {
                code: ErrorCode::MESSAGE_TOO_LARGE,
                message: Some(format!(
                    "a record of {size} bytes exceeds max.request.size or buffer.memory ({limit})"
                )),
            });
        }
        // Waiting for memory is the backpressure: acknowledged batches give it back.
        let permits = u32::try_from(size).map_err(|_| Error::Kafka {
            code: ErrorCode::MESSAGE_TOO_LARGE,
            message: None,
        })?;
        match self.memory.try_acquire_many(permits) {
            Ok(permit) => permit.forget(),
            Err(_) => {
                tokio::time::timeout(self.config.max_block, self.memory.acquire_many(permits))
                    .await
                    .map_err(|_| Error::Timeout(self.config.max_block))?
                    .map_err(|_| Error::Closed)?
                    .forget();
            }
        }
        let result = self.append_with_memory(record, size).await;
        if result.is_err() {
            self.memory.add_permits(size);
        }
        result
    }

    /// Appends a record whose memory is already taken. The topic's partition count comes from
    /// the producer's own cache while the client's metadata is unchanged, so the common case
    /// takes one lock and no metadata lookup.
    async fn append_with_memory(&self, record: ProducerRecord, size: usize) -> Result<Delivery> {
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let mut looked_up = false;
        loop {
            let epoch = self.client.metadata_epoch();
            {
                let mut state = self.state.lock();
                if state.closed {
                    return Err(Error::Closed);
                }
                let known = state
                    .topics
                    .get(record.topic.as_str())
                    .filter(|t| looked_up || t.epoch == epoch)
                    .map(|t| (t.name.clone(), t.partitions));
                if let Some((topic, partitions)) = known {
                    return self
                        .append_locked(&mut state, record, topic, partitions, size, timestamp);
                }
            }
            let metadata =
                tokio::time::timeout(self.config.max_block, self.client.topic(&record.topic))
                    .await
                    .map_err(|_| Error::Timeout(self.config.max_block))??;
            let mut state = self.state.lock();
            let name = state
                .topics
                .get(record.topic.as_str())
                .map_or_else(|| Arc::from(record.topic.as_str()), |t| t.name.clone());
            state.topics.insert(
                record.topic.clone(),
                TopicCache {
                    name,
                    partitions: metadata.partitions.len(),
                    epoch,
                },
            );
            looked_up = true;
        }
    }

    fn append_locked(
        &self,
        state: &mut State,
        record: ProducerRecord,
        topic: Arc<str>,
        partitions: usize,
        size: usize,
        timestamp: i64,
    ) -> Result<Delivery> {
        if let Some(txn) = &state.txn {
            txn.check("send", &[Phase::InTransaction])?;
        }
        if partitions == 0 {
            return Err(Error::Kafka {
                code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                message: Some(format!("topic {topic} has no partitions")),
            });
        }
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p < 0 || p as usize >= partitions => {
                return Err(Error::Kafka {
                    code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    message: Some(format!(
                        "topic {topic} has {partitions} partitions, no partition {p}"
                    )),
                });
            }
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => state.sticky.partition(&topic, partitions, size),
        };
        let mut wake = false;
        let batch_size = self.config.batch_size;
        let queue = state
            .partitions
            .entry((topic.clone(), partition))
            .or_default();
        if let Some(open) = &queue.open {
            if open.size + size > batch_size && open.count > 0 {
                if let Some(full) = queue.open.take() {
                    queue.ready.push_back(full);
                    wake = true;
                }
            }
        }
        let open = queue.open.get_or_insert_with(|| {
            wake = true;
            Batch::new(topic, partition)
        });
        open.records.push(Record {
            attributes: 0,
            offset: 0,
            timestamp,
            key: record.key,
            value: record.value,
            headers: record.headers,
        });
        let delivery = Delivery {
            outcome: open.outcome.clone(),
            index: open.count,
            timestamp,
        };
        open.count += 1;
        open.size += size;
        if open.size >= batch_size {
            if let Some(full) = queue.open.take() {
                queue.ready.push_back(full);
                wake = true;
            }
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        if wake {
            self.wake.notify_one();
        }
        Ok(delivery)
    }

    pub(crate) async fn flush(&self) {
        self.state.lock().flushing += 1;
        self.wake.notify_one();
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        self.state.lock().flushing -= 1;
    }

    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
    }

    pub(crate) fn producer_id(&self) -> Option<(i64, i16)> {
        let producer = self.state.lock().producer;
        (producer.id >= 0).then_some((producer.id, producer.epoch))
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Resolves a batch's deliveries and gives back its memory.
    pub(crate) fn complete(&self, batch: Batch, result: Result<(i64, i64)>) {
        if let Err(err) = &result {
            if let Some(txn) = self.state.lock().txn.as_mut() {
                txn.record_failed(err, batch.sequence.is_some());
            }
        }
        let count = batch.count;
        batch.outcome.finish(result.map_err(Arc::new));
        self.memory.add_permits(batch.size);
        drop(batch);
        if self.pending.fetch_sub(count, Ordering::AcqRel) == count {
            self.idle.notify_waiters();
            // The sender may be waiting to exit.
            self.wake.notify_one();
        }
    }
}

/// An upper bound of a record's encoded size.
fn record_size(record: &ProducerRecord) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len) + 10)
        .sum();
    RECORD_OVERHEAD
        + record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + headers
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `sequence + count`, wrapping to 0 after `i32::MAX` as Kafka's sequences do.
pub(crate) fn add_sequence(sequence: i32, count: usize) -> i32 {
    ((i64::from(sequence) + count as i64) % (1i64 << 31)) as i32
}

/// How long until `deadline`, or zero.
pub(crate) fn until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(add_sequence(0, 5), 5);
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn record_size_bounds_the_encoding() {
        let record = ProducerRecord::new("t")
            .key("k")
            .value(vec![0u8; 1000])
            .header("h", Some(Bytes::from_static(b"v")));
        let mut builder = weir_records::RecordBatchBuilder::new();
        builder.push(
            Record::new(0, Some(b"k"), Some(&[0u8; 1000]))
                .with_header(weir_records::Header::new(b"h", Some(b"v"))),
        );
        let encoded = builder.build().unwrap();
        assert!(record_size(&record) + BATCH_OVERHEAD >= encoded.len());
    }
}
