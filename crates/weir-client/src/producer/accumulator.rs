//! Per-partition queues of batches, sequence numbers and buffer memory, shared by the
//! producer handles, the sender and the broker tasks.

use super::partitioner::{StickyPartitioner, partition_for_key};
use super::{ProducerConfig, ProducerRecord, RecordMetadata};
use crate::client::{Backoff, Client};
use crate::error::{Error, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore, oneshot};
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
    pub(crate) records: Vec<Record>,
    pub(crate) deliveries: Vec<oneshot::Sender<Result<RecordMetadata>>>,
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
    fn new(topic: Arc<str>, partition: i32) -> Self {
        Self {
            topic,
            partition,
            records: Vec::new(),
            deliveries: Vec::new(),
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

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) partitions: HashMap<(Arc<str>, i32), PartitionQueue>,
    topic_names: HashMap<String, Arc<str>>,
    sticky: StickyPartitioner,
    pub(crate) producer: ProducerIdentity,
    /// The producer id must be (re)obtained before more batches are sent.
    pub(crate) needs_producer_id: bool,
    /// Flushes in progress: while any, batches close without waiting for `linger.ms`.
    pub(crate) flushing: usize,
    pub(crate) closed: bool,
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
                topic_names: HashMap::new(),
                sticky: StickyPartitioner::new(config.batch_size, seed),
                producer: ProducerIdentity { id: -1, epoch: -1 },
                needs_producer_id: false,
                flushing: 0,
                closed: false,
            }),
            config,
            wake: Notify::new(),
            idle: Notify::new(),
            pending: AtomicUsize::new(0),
        })
    }

    /// Adds a record to its partition's open batch.
    pub(crate) async fn append(
        &self,
        record: ProducerRecord,
    ) -> Result<oneshot::Receiver<Result<RecordMetadata>>> {
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
        let partitions = match self.client.cached_partition_count(&record.topic) {
            Some(n) => n,
            None => tokio::time::timeout(self.config.max_block, self.client.topic(&record.topic))
                .await
                .map_err(|_| Error::Timeout(self.config.max_block))??
                .partitions
                .len(),
        };
        if partitions == 0 {
            return Err(Error::Kafka {
                code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                message: Some(format!("topic {} has no partitions", record.topic)),
            });
        }
        if let Some(p) = record.partition {
            if p < 0 || p as usize >= partitions {
                return Err(Error::Kafka {
                    code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    message: Some(format!(
                        "topic {} has {partitions} partitions, no partition {p}",
                        record.topic
                    )),
                });
            }
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

        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let (tx, rx) = oneshot::channel();
        let mut wake = false;
        {
            let mut state = self.state.lock();
            if state.closed {
                drop(state);
                self.memory.add_permits(size);
                return Err(Error::Closed);
            }
            let partition = match (record.partition, &record.key) {
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, partitions),
                (None, None) => state.sticky.partition(&record.topic, partitions, size),
            };
            let topic = match state.topic_names.get(&record.topic) {
                Some(t) => t.clone(),
                None => {
                    let t: Arc<str> = Arc::from(record.topic.as_str());
                    state.topic_names.insert(record.topic.clone(), t.clone());
                    t
                }
            };
            let batch_size = self.config.batch_size;
            let queue = state
                .partitions
                .entry((topic.clone(), partition))
                .or_default();
            if let Some(open) = &queue.open {
                if open.size + size > batch_size && !open.records.is_empty() {
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
            open.deliveries.push(tx);
            open.size += size;
            if open.size >= batch_size {
                if let Some(full) = queue.open.take() {
                    queue.ready.push_back(full);
                    wake = true;
                }
            }
            self.pending.fetch_add(1, Ordering::AcqRel);
        }
        if wake {
            self.wake.notify_one();
        }
        Ok(rx)
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
        let count = batch.deliveries.len();
        match result {
            Ok((base_offset, log_append_time)) => {
                for (i, (tx, record)) in
                    batch.deliveries.into_iter().zip(&batch.records).enumerate()
                {
                    let _ = tx.send(Ok(RecordMetadata {
                        topic: batch.topic.to_string(),
                        partition: batch.partition,
                        offset: if base_offset < 0 {
                            -1
                        } else {
                            base_offset + i as i64
                        },
                        timestamp: if log_append_time >= 0 {
                            log_append_time
                        } else {
                            record.timestamp
                        },
                    }));
                }
            }
            Err(err) => {
                let err = Arc::new(err);
                for tx in batch.deliveries {
                    let _ = tx.send(Err(share_error(&err)));
                }
            }
        }
        self.memory.add_permits(batch.size);
        if self.pending.fetch_sub(count, Ordering::AcqRel) == count {
            self.idle.notify_waiters();
            // The sender may be waiting to exit.
            self.wake.notify_one();
        }
    }
}

/// Copies an error for each record of a failed batch.
fn share_error(err: &Error) -> Error {
    match err {
        Error::Kafka { code, message } => Error::Kafka {
            code: *code,
            message: message.clone(),
        },
        Error::Timeout(d) => Error::Timeout(*d),
        Error::Disconnected(a) => Error::Disconnected(a.clone()),
        Error::NoBrokerReachable(a) => Error::NoBrokerReachable(a.clone()),
        Error::Closed => Error::Closed,
        Error::UnsupportedVersion { api, min, max } => Error::UnsupportedVersion {
            api,
            min: *min,
            max: *max,
        },
        Error::Config { key, reason } => Error::Config {
            key,
            reason: reason.clone(),
        },
        Error::Records(e) => Error::Kafka {
            code: ErrorCode::CORRUPT_MESSAGE,
            message: Some(e.to_string()),
        },
        other => Error::Kafka {
            code: ErrorCode::UNKNOWN_SERVER_ERROR,
            message: Some(other.to_string()),
        },
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
