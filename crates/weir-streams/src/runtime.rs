//! [`KafkaStreams`]: runs a topology against a Kafka-compatible cluster, at least once.
//!
//! One consumer in the group `application.id` reads every source topic; one producer writes
//! the outputs. Records are processed in batches: each record goes through the topology as it
//! arrives and its outputs are enqueued at once (so they flow with the producer's linger,
//! not the commit interval); a batch ends after `max.poll.records` records,
//! `commit.interval.ms` after its first record, or at shutdown. Then every output of the
//! batch must be acknowledged before the batch's input offsets are committed: a crash at any
//! point loses nothing, and reprocesses at most the records since the last commit.
//!
//! This commit path (process, produce, flush, commit) is the one an exactly-once version
//! keeps, with the produce and the offset commit inside one transaction.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use weir_client::consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_client::{Client, ClientConfig};

use crate::Error;
use crate::store::ReadOnlyKeyValueStore;
use crate::topology::{DeserializationExceptionHandler, RawRecord, Task, TaskMetrics, Topology};

/// Settings of a streams application, named after Kafka Streams' properties.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamsConfig {
    /// `application.id`: the consumer group, and the name of the application.
    pub application_id: String,
    /// The connection settings (`bootstrap.servers` and the rest).
    pub client: ClientConfig,
    /// `commit.interval.ms`: the longest a batch runs before its outputs are flushed and its
    /// input offsets committed (default 30 s, as Kafka Streams at least once).
    pub commit_interval: Duration,
    /// `max.poll.records`: the most records in one batch (default 1000).
    pub max_poll_records: usize,
    /// `auto.offset.reset` for partitions the group has no offset for (default earliest, as
    /// Kafka Streams).
    pub auto_offset_reset: OffsetReset,
    /// `session.timeout.ms` of the group member: how long the group waits for an instance
    /// that stopped heartbeating (crashed) before its partitions move (default 45 s).
    pub session_timeout: Duration,
    /// `default.deserialization.exception.handler` (and KIP-1034's dead-letter queue): what
    /// to do with an input record that does not deserialize (default: fail).
    pub deserialization_exception_handler: DeserializationExceptionHandler,
}

impl StreamsConfig {
    /// The defaults for the application `application_id` on `bootstrap_servers`.
    pub fn new(application_id: &str, bootstrap_servers: &str) -> Self {
        Self {
            application_id: application_id.to_string(),
            client: ClientConfig::new(bootstrap_servers),
            commit_interval: Duration::from_secs(30),
            max_poll_records: 1000,
            auto_offset_reset: OffsetReset::Earliest,
            session_timeout: Duration::from_secs(45),
            deserialization_exception_handler: DeserializationExceptionHandler::LogAndFail,
        }
    }
}

/// A topology running against a cluster (Kafka's `KafkaStreams`), as one task that reads
/// every partition of its source topics. Run one instance per application: state is in
/// memory only, so a second instance would split the partitions and each would hold part of
/// every aggregate (see the crate docs).
pub struct KafkaStreams {
    task: Task,
    consumer: Consumer,
    producer: Producer,
    config: StreamsConfig,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams")
            .field("application_id", &self.config.application_id)
            .field("topology", self.task.topology())
            .finish_non_exhaustive()
    }
}

impl KafkaStreams {
    /// Connects, and joins the group `application.id` on the topology's source topics.
    pub async fn new(topology: Topology, config: StreamsConfig) -> Result<Self, Error> {
        let client = Client::connect(config.client.clone()).await?;
        let consumer_config = ConsumerConfig {
            client: config.client.clone(),
            group_id: Some(config.application_id.clone()),
            auto_offset_reset: config.auto_offset_reset,
            // Offsets are committed only once the outputs they led to are acknowledged.
            enable_auto_commit: false,
            session_timeout: config.session_timeout,
            // The Java client's ratio: a third of the session, at most its 3 s default.
            heartbeat_interval: (config.session_timeout / 3).min(Duration::from_secs(3)),
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::from_client(client.clone(), consumer_config).await?;
        let topics = topology.source_topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let producer =
            Producer::from_client(client, ProducerConfig::new(config.client.clone())).await?;
        Ok(Self {
            task: Task::new(topology, config.deserialization_exception_handler.clone()),
            consumer,
            producer,
            config,
        })
    }

    /// Processes batches until `shutdown` completes, then finishes the batch under way
    /// (flush, commit) and returns. Stops with the error of a record that fails to
    /// deserialize, an output that is not acknowledged, or the consumer; the batch under way
    /// is then not committed, and is processed again by the next run.
    pub async fn run_until(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if self.run_batch(shutdown.as_mut()).await? {
                return Ok(());
            }
        }
    }

    /// One batch; true when `shutdown` completed during it.
    async fn run_batch(
        &mut self,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool, Error> {
        let mut deliveries = Vec::new();
        let mut offsets: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut deadline = None;
        let mut stopped = false;
        let mut records = 0;
        while records < self.config.max_poll_records {
            let wait_for_deadline = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let punctuation = self.task.next_wall_clock_punctuation()?;
            // `Consumer::recv` may be cancelled at any await (weir-client's consumer docs).
            let record = tokio::select! {
                () = shutdown.as_mut() => {
                    stopped = true;
                    break;
                }
                () = wait_for_deadline => break,
                () = sleep_until_wall_clock(punctuation) => {
                    if self.punctuate_wall_clock(&mut deliveries).await? {
                        deadline.get_or_insert_with(|| Instant::now() + self.config.commit_interval);
                    }
                    continue;
                }
                record = self.consumer.recv() => record?,
            };
            records += 1;
            deadline.get_or_insert_with(|| Instant::now() + self.config.commit_interval);
            let raw = RawRecord {
                topic: record.topic.to_string(),
                partition: record.partition,
                offset: record.offset,
                key: record.key,
                value: record.value,
                timestamp: record.timestamp,
            };
            self.task.process(&raw)?;
            self.task.punctuate_stream_time()?;
            for output in self.task.take_outputs() {
                let mut produce = ProducerRecord::new(output.topic).timestamp(output.timestamp);
                produce.key = output.key;
                produce.value = output.value;
                deliveries.push(self.producer.enqueue(produce).await?);
            }
            offsets.insert(
                TopicPartition::new(raw.topic, raw.partition),
                raw.offset + 1,
            );
        }
        self.commit(deliveries, offsets).await?;
        Ok(stopped)
    }

    /// Waits for every output of the batch to be acknowledged, then commits its input offsets.
    async fn commit(
        &mut self,
        deliveries: Vec<weir_client::producer::Delivery>,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Result<(), Error> {
        self.producer.flush().await;
        for delivery in deliveries {
            delivery.await?;
        }
        // A partition revoked during the batch is another member's now: committing it could
        // move its offset past what the new owner has processed.
        let assigned = self.consumer.assignment();
        let offsets: Vec<(TopicPartition, i64)> = offsets
            .into_iter()
            .filter(|(tp, _)| assigned.contains(tp))
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.consumer.commit_offsets(&offsets).await {
            // The outputs are acknowledged; an uncommitted batch is only processed again
            // (at least once), so the application keeps running.
            tracing::warn!(%error, "offset commit failed; the batch will be processed again");
        }
        Ok(())
    }

    /// A read-only view of the local key-value state store `name` (an interactive query on
    /// this instance).
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlyKeyValueStore<K, V>, Error> {
        self.task.topology().key_value_store(name)
    }

    /// The task's counters.
    pub fn metrics(&self) -> TaskMetrics {
        self.task.metrics()
    }

    /// Leaves the group. Everything processed was committed by the last batch.
    pub async fn close(mut self) -> Result<(), Error> {
        self.producer.flush().await;
        self.consumer.close().await?;
        self.task.close_processors()
    }

    /// Fires the wall-clock punctuations due now and enqueues their outputs with the batch's,
    /// so the batch's commit waits for them too; true when there were outputs.
    async fn punctuate_wall_clock(
        &mut self,
        deliveries: &mut Vec<weir_client::producer::Delivery>,
    ) -> Result<bool, Error> {
        self.task
            .punctuate_wall_clock(crate::processor::system_time_ms())?;
        let outputs = self.task.take_outputs();
        let produced = !outputs.is_empty();
        for output in outputs {
            let mut produce = ProducerRecord::new(output.topic).timestamp(output.timestamp);
            produce.key = output.key;
            produce.value = output.value;
            deliveries.push(self.producer.enqueue(produce).await?);
        }
        Ok(produced)
    }
}

/// Completes when the wall clock reaches `at` (milliseconds since the epoch); never without
/// a time.
async fn sleep_until_wall_clock(at: Option<i64>) {
    match at {
        Some(at) => {
            let wait = at.saturating_sub(crate::processor::system_time_ms()).max(0);
            tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
        }
        None => std::future::pending().await,
    }
}
