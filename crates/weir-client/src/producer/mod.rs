//! The producer: batching per partition, compression, idempotence, transactions, the Java
//! client's default partitioner.
//!
//! # Layout
//! - [`ProducerConfig`]: the Java producer's settings (`acks`, `linger.ms`, `batch.size`,
//!   `compression.type`, `enable.idempotence`, `buffer.memory`, ...).
//! - [`partitioner`]: murmur2 for keyed records, sticky partitions for the others.
//! - `accumulator` (private): per-partition queues of batches, sequence numbers, memory.
//! - `sender` (private): one task that decides which batches are sendable and one task per
//!   broker that encodes them into Produce requests, in order, and completes them.
//! - `transaction` (private): with a `transactional.id`, the transaction's state and the
//!   requests to the transaction and group coordinators (InitProducerId, AddPartitionsToTxn,
//!   AddOffsetsToTxn, TxnOffsetCommit, EndTxn).
//!
//! Records flow `Producer::enqueue` → the partition's open batch → (full, or `linger.ms`
//! passed, or `flush`) ready queue → the leader's broker task → Produce request → response →
//! each record's [`Delivery`] resolves to its [`RecordMetadata`].
//!
//! ```no_run
//! # async fn run() -> weir_client::Result<()> {
//! use weir_client::ClientConfig;
//! use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
//!
//! let config = ProducerConfig::new(ClientConfig::new("localhost:9092"));
//! let producer = Producer::connect(config).await?;
//! let metadata = producer
//!     .send(ProducerRecord::new("user-activity").key("user_1").value("{}"))
//!     .await?;
//! println!("partition {} offset {}", metadata.partition, metadata.offset);
//! # Ok(())
//! # }
//! ```
//!
//! # Transactions
//!
//! With `transactional.id` set, records are sent in transactions, as with the Java client's
//! `KafkaProducer`: [`Producer::init_transactions`] once, then [`Producer::begin_transaction`],
//! sends, optionally [`Producer::send_offsets_to_transaction`] for a consume-transform-produce
//! loop, and [`Producer::commit_transaction`] or [`Producer::abort_transaction`]. Consumers
//! with `isolation.level=read_committed` see a transaction's records once it commits, and never
//! those of an aborted one. An error wrapped in [`Error::AbortableTransaction`](crate::Error)
//! asks for an abort; one wrapped in [`Error::FatalTransaction`](crate::Error) (fenced by a
//! newer producer with the same id, for example) means the producer is done.
//!
//! ```no_run
//! # async fn run() -> weir_client::Result<()> {
//! use weir_client::ClientConfig;
//! use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
//!
//! let mut config = ProducerConfig::new(ClientConfig::new("localhost:9092"));
//! config.set("transactional.id", "orders-writer")?;
//! let producer = Producer::connect(config).await?;
//! producer.init_transactions().await?;
//! producer.begin_transaction()?;
//! producer.enqueue(ProducerRecord::new("orders").value("o-1")).await?;
//! producer.enqueue(ProducerRecord::new("payments").value("p-1")).await?;
//! match producer.commit_transaction().await {
//!     Ok(()) => {}
//!     Err(weir_client::Error::AbortableTransaction { .. }) => producer.abort_transaction().await?,
//!     Err(err) => return Err(err),
//! }
//! # Ok(())
//! # }
//! ```

mod accumulator;
pub mod partitioner;
mod sender;
mod transaction;

use crate::client::Client;
use crate::config::{ClientConfig, config_error, millis, parse};
use crate::consumer::{ConsumerGroupMetadata, OffsetAndMetadata, TopicPartition};
use crate::error::Result;
use accumulator::Shared;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
pub use weir_records::Compression;
pub use weir_records::Header;

/// How many replicas must have a batch before the broker acknowledges it (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `acks=0`: the broker does not answer; offsets are unknown (-1) and nothing is retried.
    None,
    /// `acks=1`: the leader has appended the batch.
    Leader,
    /// `acks=all` (-1): every in-sync replica has it.
    #[default]
    All,
}

impl Acks {
    /// The value carried in Produce requests.
    pub fn wire_value(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings, named after the Java producer's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// The connection settings, used by [`Producer::connect`].
    pub client: ClientConfig,
    /// `acks` (default `all`).
    pub acks: Acks,
    /// `enable.idempotence` (default true): the broker drops retried duplicates, so a retry
    /// never writes a record twice and order per partition holds. Needs `acks=all`.
    pub enable_idempotence: bool,
    /// `linger.ms`: how long a batch that is not full waits for more records (default 5 ms).
    pub linger: Duration,
    /// `batch.size`: bytes per partition batch before it is sent (default 16 KiB).
    pub batch_size: usize,
    /// `compression.type`: none, gzip, snappy, lz4 or zstd (default none).
    pub compression: Compression,
    /// `retries`: attempts after the first for a batch that failed retriably (default
    /// unbounded; `delivery.timeout.ms` bounds them).
    pub retries: u32,
    /// `delivery.timeout.ms`: the longest a record may take from `send` to acknowledgement,
    /// retries included (default 120 s).
    pub delivery_timeout: Duration,
    /// `max.in.flight.requests.per.connection`: unacknowledged batches per partition (at most
    /// 5 with idempotence, which is what brokers remember for duplicate detection; default 5).
    pub max_in_flight: usize,
    /// `buffer.memory`: bytes of records waiting to be acknowledged before `send` waits
    /// (default 32 MiB).
    pub buffer_memory: usize,
    /// `max.block.ms`: how long `send` waits for buffer memory or for a topic's metadata
    /// before it fails (default 60 s).
    pub max_block: Duration,
    /// `max.request.size`: the largest Produce request, and so the largest record (default
    /// 1 MiB).
    pub max_request_size: usize,
    /// `transactional.id` (default none): makes the producer transactional (see
    /// [`Producer::init_transactions`]). Needs idempotence.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: how long the coordinator lets a transaction stay open before
    /// it aborts it (default 60 s; brokers cap it at `transaction.max.timeout.ms`).
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            acks: Acks::All,
            enable_idempotence: true,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            compression: Compression::None,
            retries: u32::MAX,
            delivery_timeout: Duration::from_secs(120),
            max_in_flight: 5,
            buffer_memory: 32 * 1024 * 1024,
            max_block: Duration::from_secs(60),
            max_request_size: 1024 * 1024,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

impl ProducerConfig {
    /// The defaults, connecting with `client`.
    pub fn new(client: ClientConfig) -> Self {
        Self {
            client,
            ..Self::default()
        }
    }

    /// Sets one property by its Java producer name; unknown producer properties are passed to
    /// [`ClientConfig::set`]. As in the Java client, setting `acks` to 0 or 1 turns idempotence
    /// off unless `enable.idempotence` is set to true afterwards.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        match key {
            "acks" => {
                self.acks = match value.trim() {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    other => {
                        return Err(config_error(
                            "acks",
                            format!("{other:?} is not 0, 1 or all"),
                        ));
                    }
                };
                if self.acks != Acks::All {
                    self.enable_idempotence = false;
                }
            }
            "enable.idempotence" => self.enable_idempotence = parse("enable.idempotence", value)?,
            "linger.ms" => self.linger = millis("linger.ms", value)?,
            "batch.size" => self.batch_size = parse("batch.size", value)?,
            "compression.type" => {
                self.compression = match value.trim() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    other => {
                        return Err(config_error(
                            "compression.type",
                            format!("{other:?} is not none, gzip, snappy, lz4 or zstd"),
                        ));
                    }
                }
            }
            "retries" => self.retries = parse("retries", value)?,
            "delivery.timeout.ms" => self.delivery_timeout = millis("delivery.timeout.ms", value)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight = parse("max.in.flight.requests.per.connection", value)?
            }
            "buffer.memory" => self.buffer_memory = parse("buffer.memory", value)?,
            "max.block.ms" => self.max_block = millis("max.block.ms", value)?,
            "max.request.size" => self.max_request_size = parse("max.request.size", value)?,
            "transactional.id" => self.transactional_id = Some(value.to_string()),
            "transaction.timeout.ms" => {
                self.transaction_timeout = millis("transaction.timeout.ms", value)?
            }
            _ => {
                self.client.set(key, value)?;
            }
        }
        Ok(self)
    }

    /// Checks the values against each other and against their ranges.
    pub fn validate(&self) -> Result<()> {
        self.client.validate()?;
        if let Some(id) = &self.transactional_id {
            if id.is_empty() {
                return Err(config_error("transactional.id", "must not be empty"));
            }
            // As the Java client: a transactional producer is idempotent, and saying
            // otherwise is a contradiction, not a request to turn it off.
            if !self.enable_idempotence {
                return Err(config_error(
                    "enable.idempotence",
                    "a transactional.id needs idempotence (enable.idempotence=true, acks=all)",
                ));
            }
        }
        if self.transaction_timeout.is_zero()
            || self.transaction_timeout.as_millis() > i32::MAX as u128
        {
            return Err(config_error(
                "transaction.timeout.ms",
                "must be between 1 and 2147483647",
            ));
        }
        if self.enable_idempotence && self.acks != Acks::All {
            return Err(config_error(
                "enable.idempotence",
                "idempotence needs acks=all; set enable.idempotence=false for acks 0 or 1",
            ));
        }
        if self.enable_idempotence && !(1..=5).contains(&self.max_in_flight) {
            return Err(config_error(
                "max.in.flight.requests.per.connection",
                "must be between 1 and 5 with idempotence",
            ));
        }
        if self.enable_idempotence && self.retries == 0 {
            return Err(config_error(
                "retries",
                "idempotence needs retries; set enable.idempotence=false for retries=0",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(config_error(
                "max.in.flight.requests.per.connection",
                "must be at least 1",
            ));
        }
        if self.batch_size == 0 {
            return Err(config_error("batch.size", "must be positive"));
        }
        if self.max_request_size < 1024 || self.max_request_size > i32::MAX as usize {
            return Err(config_error(
                "max.request.size",
                "must be between 1024 and 2147483647",
            ));
        }
        if self.buffer_memory < self.batch_size
            || self.buffer_memory > (u32::MAX as usize).min(usize::MAX >> 4)
        {
            return Err(config_error(
                "buffer.memory",
                "must be at least batch.size and below 4 GiB",
            ));
        }
        if self.delivery_timeout < self.linger {
            return Err(config_error(
                "delivery.timeout.ms",
                "must be at least linger.ms",
            ));
        }
        Ok(())
    }
}

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: String,
    /// Partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key, or null.
    pub key: Option<Bytes>,
    /// Value, or null (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Create time in milliseconds since the epoch; `None` for now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with no key, value or headers.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value,
        });
        self
    }

    /// Sets the create timestamp.
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic (shared by every record of a batch).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset, or -1 with `acks=0`.
    pub offset: i64,
    /// The record's timestamp: its create time, or the broker's append time on topics with
    /// `message.timestamp.type=LogAppendTime`.
    pub timestamp: i64,
}

/// The outcome of one enqueued record; resolves when the broker acknowledges its batch or the
/// batch fails for good.
#[derive(Debug)]
pub struct Delivery {
    outcome: Arc<accumulator::BatchOutcome>,
    index: usize,
    timestamp: i64,
}

impl std::future::Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.outcome
            .poll_record(self.index, self.timestamp, cx.waker())
    }
}

/// An asynchronous Kafka producer. Cheap to clone; clones share batches and connections.
/// The last clone to be dropped still delivers what was enqueued; [`Producer::flush`] waits
/// for it.
#[derive(Debug, Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

/// Ends the sender when the last producer handle goes.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Producer {
    /// Validates `config`, connects with `config.client`, obtains a producer id when
    /// idempotence is on, and starts the sender.
    pub async fn connect(config: ProducerConfig) -> Result<Self> {
        config.validate()?;
        let client = Client::connect(config.client.clone()).await?;
        Self::from_client(client, config).await
    }

    /// Validates `config` and sends through `client`, which may be shared with consumers and
    /// admin clients; its connection settings apply and `config.client` is not used. Obtains a
    /// producer id when idempotence is on, and starts the sender.
    pub async fn from_client(client: Client, config: ProducerConfig) -> Result<Self> {
        config.validate()?;
        let shared = Shared::new(client, config);
        // A transactional producer gets its id from init_transactions.
        if shared.config.enable_idempotence && shared.config.transactional_id.is_none() {
            sender::init_producer_id(&shared).await?;
        }
        tokio::spawn(sender::run(shared.clone()));
        Ok(Self {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// Sends `record` and waits for its acknowledgement: the partition and offset it got.
    /// To keep many records in flight (and batches full), use [`Producer::enqueue`] and await
    /// the deliveries later.
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.enqueue(record).await?.await
    }

    /// Adds `record` to its partition's batch and returns its [`Delivery`]. Waits (up to
    /// `max.block.ms`) while the topic's metadata is unknown or `buffer.memory` is used up.
    ///
    /// In a transaction, a record refused here makes the transaction abortable.
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<Delivery> {
        let result = self.handle.shared.append(record).await;
        if let Err(err) = &result {
            transaction::send_failed(&self.handle.shared, err);
        }
        result
    }

    /// Sends every batch now, without waiting for `linger.ms`, and waits until every record
    /// enqueued so far is acknowledged or has failed.
    pub async fn flush(&self) {
        self.handle.shared.flush().await;
    }

    /// The producer id and epoch the broker assigned (idempotence), or `None`.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.handle.shared.producer_id()
    }

    /// Registers the `transactional.id` with its transaction coordinator and gets the
    /// producer id and epoch for it (FindCoordinator, InitProducerId). This fences every
    /// earlier producer with the same id, and the coordinator aborts a transaction one left
    /// open. Call once, before any other transactional call; retries while the coordinator is
    /// loading, moving or busy for up to `max.block.ms`, and may be called again after such a
    /// timeout.
    pub async fn init_transactions(&self) -> Result<()> {
        transaction::init_transactions(&self.handle.shared).await
    }

    /// Starts a transaction: the records sent until [`Producer::commit_transaction`] or
    /// [`Producer::abort_transaction`] become visible to `read_committed` consumers together,
    /// or never.
    pub fn begin_transaction(&self) -> Result<()> {
        transaction::begin_transaction(&self.handle.shared)
    }

    /// Commits `offsets` (the next offsets to read) for the consumer group as part of the
    /// transaction: they become the group's committed offsets if the transaction commits and
    /// are dropped if it aborts (Java's `sendOffsetsToTransaction`). Pass the consuming
    /// consumer's [`Consumer::group_metadata`](crate::consumer::Consumer::group_metadata),
    /// so that the coordinator refuses the offsets of a member fenced by a rebalance.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        transaction::send_offsets(&self.handle.shared, offsets, group).await
    }

    /// Sends every pending record of the transaction, then commits it. If a record failed,
    /// nothing is committed and [`Error::AbortableTransaction`](crate::Error) is returned: the
    /// transaction must be aborted. A timeout may be retried by calling again.
    pub async fn commit_transaction(&self) -> Result<()> {
        transaction::commit_transaction(&self.handle.shared).await
    }

    /// Aborts the transaction: records not yet sent fail with
    /// [`Error::TransactionAborted`](crate::Error), those sent are aborted; offsets sent to the
    /// transaction are dropped. A timeout may be retried by calling again.
    pub async fn abort_transaction(&self) -> Result<()> {
        transaction::abort_transaction(&self.handle.shared).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn properties_use_java_names() {
        let mut config = ProducerConfig::default();
        config
            .set("linger.ms", "20")
            .unwrap()
            .set("compression.type", "zstd")
            .unwrap()
            .set("batch.size", "65536")
            .unwrap();
        assert_eq!(config.linger, Duration::from_millis(20));
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.batch_size, 65536);
        config.validate().unwrap();
        config.set("acks", "1").unwrap();
        assert!(!config.enable_idempotence);
        config.validate().unwrap();
        config.set("enable.idempotence", "true").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn a_transactional_id_needs_idempotence() {
        let mut config = ProducerConfig::default();
        config
            .set("transactional.id", "tx")
            .unwrap()
            .set("transaction.timeout.ms", "30000")
            .unwrap();
        assert_eq!(config.transactional_id.as_deref(), Some("tx"));
        assert_eq!(config.transaction_timeout, Duration::from_secs(30));
        config.validate().unwrap();
        config.set("enable.idempotence", "false").unwrap();
        assert!(matches!(
            config.validate(),
            Err(Error::Config {
                key: "enable.idempotence",
                ..
            })
        ));
        // acks=1 turns idempotence off, which a transactional producer cannot do without.
        let mut config = ProducerConfig::default();
        config.set("transactional.id", "tx").unwrap();
        config.set("acks", "1").unwrap();
        assert!(config.validate().is_err());
        let mut config = ProducerConfig::default();
        config.set("transactional.id", "").unwrap();
        assert!(config.validate().is_err());
        config.transactional_id = None;
        config.set("transaction.timeout.ms", "0").unwrap();
        assert!(matches!(
            config.validate(),
            Err(Error::Config {
                key: "transaction.timeout.ms",
                ..
            })
        ));
    }

    #[test]
    fn invalid_values_are_config_errors() {
        let mut config = ProducerConfig::default();
        assert!(matches!(
            config.set("acks", "2"),
            Err(Error::Config { key: "acks", .. })
        ));
        assert!(config.set("compression.type", "brotli").is_err());
        assert!(config.set("linger.ms", "soon").is_err());
        let config = ProducerConfig {
            max_in_flight: 6,
            ..ProducerConfig::default()
        };
        assert!(config.validate().is_err());
        let config = ProducerConfig {
            buffer_memory: 10,
            ..ProducerConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
