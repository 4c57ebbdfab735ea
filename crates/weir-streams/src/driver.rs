//! [`TopologyTestDriver`]: runs a topology in-process, without a broker, so applications
//! unit-test their topologies (Kafka's `TopologyTestDriver`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::Error;
use crate::partitioner::PartitionCounts;
use crate::serdes::Serde;
use crate::store::ReadOnlyKeyValueStore;
use crate::topology::{DeserializationExceptionHandler, RawRecord, Task, TaskMetrics, Topology};
use crate::window_store::{ReadOnlySessionStore, ReadOnlyWindowStore};

/// An input topic of a test: its name and the serdes that write test records to it.
pub struct TestInputTopic<K, V> {
    name: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> std::fmt::Debug for TestInputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestInputTopic")
            .field("name", &self.name)
            .finish()
    }
}

impl<K: 'static, V: 'static> TestInputTopic<K, V> {
    /// The topic `name`, written with these serdes.
    pub fn new(name: &str, key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self {
            name: name.to_string(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }
}

/// An output topic of a test: its name and the serdes that read its records.
pub struct TestOutputTopic<K, V> {
    name: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> std::fmt::Debug for TestOutputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestOutputTopic")
            .field("name", &self.name)
            .finish()
    }
}

impl<K: 'static, V: 'static> TestOutputTopic<K, V> {
    /// The topic `name`, read with these serdes.
    pub fn new(name: &str, key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self {
            name: name.to_string(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }
}

/// A record read from an output topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// The timestamp.
    pub timestamp: i64,
}

impl<K, V> TestRecord<K, V> {
    /// A record with this key, value and timestamp.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Self {
            key,
            value,
            timestamp,
        }
    }
}

/// Runs a [`Topology`] as one task, synchronously: each piped record goes through the whole
/// topology before `pipe_input` returns, and what the topology writes waits per topic until
/// read. Input records get offsets 0, 1, 2... per topic on partition 0. Records written to a
/// repartition topic are piped back into the topology at once, in the order written, as
/// Kafka's driver does; changelog records wait like any output (topic `<store>-changelog`,
/// without an application id).
pub struct TopologyTestDriver {
    task: Task,
    outputs: HashMap<String, VecDeque<RawRecord>>,
    next_offsets: HashMap<String, i64>,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver")
            .field("topology", self.task.topology())
            .finish()
    }
}

impl TopologyTestDriver {
    /// A driver for `topology`.
    pub fn new(topology: Topology) -> Self {
        let mut task = Task::new(topology, 0, DeserializationExceptionHandler::default());
        // Wall-clock time moves only with `advance_wall_clock_time`, from now, as Kafka's.
        task.set_mock_wall_clock(crate::processor::system_time_ms());
        // Every topic has one partition, as the driver's records are all on partition 0.
        task.set_partition_counts(Arc::new(PartitionCounts::every_topic(1)));
        Self {
            task,
            outputs: HashMap::new(),
            next_offsets: HashMap::new(),
        }
    }

    /// The driver with another deserialization exception handler (the default fails).
    pub fn with_deserialization_exception_handler(
        mut self,
        handler: DeserializationExceptionHandler,
    ) -> Self {
        self.task.set_deserialization_exception_handler(handler);
        self
    }

    /// Writes one record to an input topic and runs it through the topology.
    pub fn pipe_input<K: 'static, V: 'static>(
        &mut self,
        topic: &TestInputTopic<K, V>,
        key: &K,
        value: &V,
        timestamp: i64,
    ) -> Result<(), Error> {
        let failed = |part, source| Error::Serialize {
            topic: topic.name.clone(),
            part,
            source: Box::new(source),
        };
        let key = topic
            .key_serde
            .serialize_nullable(key)
            .map_err(|e| failed("key", e))?;
        let value = topic
            .value_serde
            .serialize_nullable(value)
            .map_err(|e| failed("value", e))?;
        self.pipe_raw(
            &topic.name,
            key.map(Into::into),
            value.map(Into::into),
            timestamp,
        )
    }

    /// Writes one serialized record (null key or value as `None`) to an input topic and runs
    /// it through the topology.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        key: Option<bytes::Bytes>,
        value: Option<bytes::Bytes>,
        timestamp: i64,
    ) -> Result<(), Error> {
        let mut pending = VecDeque::from([RawRecord {
            topic: topic.to_string(),
            partition: 0,
            offset: -1,
            key,
            value,
            timestamp,
        }]);
        while let Some(mut record) = pending.pop_front() {
            let offset = self.next_offsets.entry(record.topic.clone()).or_insert(0);
            record.offset = *offset;
            *offset += 1;
            let result = self
                .task
                .process(&record)
                .and_then(|()| self.task.punctuate_stream_time().map(drop));
            // The driver keeps no local state for expired windows to be deleted from.
            drop(self.task.take_expired());
            // Outputs written before a failure were sent in a real run too.
            for mut output in self.task.take_outputs() {
                if self.task.topology().is_repartition_topic(&output.topic) {
                    pending.push_back(output);
                } else {
                    // Changelogs read as Kafka's (a timestamped store's value without its
                    // timestamp, which is the record's), as the runtime writes them.
                    if self
                        .task
                        .topology()
                        .timestamped_changelog_topic(&output.topic)
                    {
                        output.value = output.value.map(crate::store::changelog_value_to_kafka);
                    }
                    self.outputs
                        .entry(output.topic.clone())
                        .or_default()
                        .push_back(output);
                }
            }
            result?;
        }
        Ok(())
    }

    /// Takes every record written to the output topic so far, oldest first.
    pub fn read_output<K: 'static, V: 'static>(
        &mut self,
        topic: &TestOutputTopic<K, V>,
    ) -> Result<Vec<TestRecord<K, V>>, Error> {
        let records = self.outputs.remove(&topic.name).unwrap_or_default();
        records
            .into_iter()
            .map(|record| {
                let failed = |part, source| Error::Deserialize {
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                    part,
                    source: Box::new(source),
                };
                let key = topic
                    .key_serde
                    .deserialize_nullable(record.key.as_deref())
                    .map_err(|e| failed("key", e))?;
                let value = topic
                    .value_serde
                    .deserialize_nullable(record.value.as_deref())
                    .map_err(|e| failed("value", e))?;
                Ok(TestRecord {
                    key,
                    value,
                    timestamp: record.timestamp,
                })
            })
            .collect()
    }

    /// Whether nothing waits in the output topic.
    pub fn is_output_empty<K, V>(&self, topic: &TestOutputTopic<K, V>) -> bool {
        self.outputs.get(&topic.name).is_none_or(VecDeque::is_empty)
    }

    /// A read-only view of the key-value state store `name`.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlyKeyValueStore<K, V>, Error> {
        self.task.topology().key_value_store(name)
    }

    /// A read-only view of the window store `name` (a time- or sliding-windowed
    /// aggregation's), queried by key and time range.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlyWindowStore<K, V>, Error> {
        self.task.topology().window_store(name)
    }

    /// A read-only view of the session store `name` (a session-windowed aggregation's).
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlySessionStore<K, V>, Error> {
        self.task.topology().session_store(name)
    }

    /// The task's stream time: the largest timestamp processed, `-1` before any.
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time()
    }

    /// The task's counters.
    pub fn metrics(&self) -> TaskMetrics {
        self.task.metrics()
    }

    /// The driver with its mocked wall clock at `now` (milliseconds since the epoch) instead
    /// of the system clock's time at creation (Kafka's `initialWallClockTime`). Call it before
    /// piping anything: processors schedule wall-clock punctuations from the clock's time.
    pub fn with_initial_wall_clock_time(mut self, now: i64) -> Self {
        self.task.set_mock_wall_clock(now);
        self
    }

    /// Moves the mocked wall clock forward by `advance` and fires the wall-clock punctuations
    /// now due, each once (Kafka's `advanceWallClockTime`); what they forward to topics waits
    /// for `read_output`.
    pub fn advance_wall_clock_time(&mut self, advance: std::time::Duration) -> Result<(), Error> {
        let advance = i64::try_from(advance.as_millis()).unwrap_or(i64::MAX);
        // Processors start (and schedule from the clock) before it moves, as Kafka's start
        // with the driver.
        let result = self.task.init_processors().and_then(|()| {
            let now = self.task.wall_clock_time().saturating_add(advance);
            self.task.set_mock_wall_clock(now);
            self.task.punctuate_wall_clock(now).map(drop)
        });
        for output in self.task.take_outputs() {
            self.outputs
                .entry(output.topic.clone())
                .or_default()
                .push_back(output);
        }
        result
    }

    /// The mocked wall-clock time (milliseconds since the epoch).
    pub fn wall_clock_time(&self) -> i64 {
        self.task.wall_clock_time()
    }

    /// Closes the topology's processors (Kafka's `TopologyTestDriver#close`).
    pub fn close(mut self) -> Result<(), Error> {
        self.task.close_processors()
    }
}
