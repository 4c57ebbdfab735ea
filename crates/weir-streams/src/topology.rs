//! The topology: sources by topic, the processor graph behind them, and the state stores; and
//! the task that runs records through it.
//!
//! A node of the graph is a list of typed sinks ([`Node`]); an operator on a stream registers
//! one sink on its parent node that transforms a record and forwards it to its own node's
//! sinks. Records thus travel depth-first from a source to every sink, as in Kafka Streams.
//! Nothing here does I/O: the task takes serialized input records and collects serialized
//! output records, which the test driver or the runtime read.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::Error;
use crate::serdes::Serde;
use crate::store::{ReadOnlyKeyValueStore, SharedStore};
use crate::window_store::{
    ReadOnlySessionStore, ReadOnlyWindowStore, WindowedStoreKind, windowed_store,
};

/// A serde shared by the operators that inherit it (Kafka's serde inheritance).
pub(crate) type SerdeRef<T> = Arc<dyn Serde<T>>;

/// What the DSL knows about where a stream's records come from: the source topics behind it
/// (for co-partitioning checks) and whether its key was changed since (`select_key`, `map`,
/// `flat_map`, `group_by`), so a stateful operator must repartition it first (Kafka's
/// `repartitionRequired`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Lineage {
    pub(crate) sources: BTreeSet<String>,
    pub(crate) repartition_required: bool,
}

impl Lineage {
    pub(crate) fn source(topic: &str) -> Self {
        Self {
            sources: BTreeSet::from([topic.to_string()]),
            repartition_required: false,
        }
    }

    /// The lineage of a stream whose key was just changed.
    pub(crate) fn rekeyed(&self) -> Self {
        Self {
            sources: self.sources.clone(),
            repartition_required: true,
        }
    }

    /// The lineage of two streams merged or joined.
    pub(crate) fn union(&self, other: &Lineage) -> Self {
        Self {
            sources: self.sources.union(&other.sources).cloned().collect(),
            repartition_required: self.repartition_required || other.repartition_required,
        }
    }
}

/// What an internal topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum InternalTopicKind {
    /// Records whose key changed, written by a sink and read back by a source so that records
    /// with one key meet in one task (`<name>-repartition`).
    Repartition,
    /// The updates of a state store, compacted, to restore it (`<store>-changelog`).
    Changelog,
}

/// A topic the topology writes and reads itself. Its name here lacks the application id:
/// [`KafkaStreams`](crate::KafkaStreams) uses `<application.id>-<name>`, as Kafka does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InternalTopic {
    /// The name without the application id, e.g.
    /// `KSTREAM-AGGREGATE-STATE-STORE-0000000002-repartition`.
    pub name: String,
    /// Repartition or changelog.
    pub kind: InternalTopicKind,
}

/// Source topics that must have the same number of partitions, because one operator (a join,
/// or a state store fed by several topics) needs the records of one key from all of them in
/// one task (Kafka's co-partitioning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopartitionGroup {
    /// The node that needs them co-partitioned (a join, a store).
    pub node: String,
    /// The source topics, internal ones by their names without the application id.
    pub topics: BTreeSet<String>,
}

/// Puts a changelog record back into its store: serialized key, and value (`None`: delete).
pub(crate) type Restorer = Box<dyn FnMut(Option<&[u8]>, Option<&[u8]>) -> Result<(), Error> + Send>;

/// Bounds on keys and values flowing through a topology: they are cloned when a stream feeds
/// several operators, and tasks may run on any thread.
pub trait Data: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> Data for T {}

/// A typed record inside the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) timestamp: i64,
}

/// A serialized record as read from, or written to, a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The topic.
    pub topic: String,
    /// The partition, `-1` where unknown (outputs: the producer's partitioner picks one).
    pub partition: i32,
    /// The offset, `-1` where unknown.
    pub offset: i64,
    /// The key, `None` for a null key.
    pub key: Option<Bytes>,
    /// The value, `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// The record's timestamp (milliseconds since the epoch).
    pub timestamp: i64,
}

/// Counters a task keeps, named after Kafka Streams' task metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskMetrics {
    /// Records that entered the topology from a source.
    pub process_total: u64,
    /// Records skipped because their timestamp is negative.
    pub dropped_invalid_timestamp: u64,
    /// Records dropped by a windowed aggregation because their window had closed (its end plus
    /// the grace period is at or before stream time), and puts a processor's window or
    /// session store dropped because their window had expired.
    pub dropped_late: u64,
    /// Records skipped because their key or value did not deserialize, under
    /// [`DeserializationExceptionHandler::LogAndContinue`] or
    /// [`DeserializationExceptionHandler::DeadLetterQueue`].
    pub dropped_deserialization_errors: u64,
    /// Changelog records put back into the stores from the changelog topics when the task
    /// was created (Kafka's restore metrics); for the global tables, the records their
    /// bootstrap read from the global topics (which are their changelogs, as in Kafka).
    pub restored_from_changelog: u64,
    /// Records put back into the stores from the task's local state (its redb copy under
    /// `StreamsConfig::state_dir`) when the task was created; for the global tables, from
    /// the global local copy at start.
    pub restored_from_local_state: u64,
    /// Milliseconds spent restoring the stores when the task was created, from local state
    /// and changelogs (Kafka's restore latency, summed), and bootstrapping the global tables.
    pub restore_time_ms: u64,
    /// Changelog records applied to the task's stores while it was a standby replica on this
    /// instance (`StreamsConfig::num_standby_replicas`), kept warm for a takeover.
    pub standby_applied: u64,
    /// A gauge, not a counter: the entries the persistent key-value stores (see
    /// `StreamsConfig::store_cache_max_entries`) of the running tasks and standbys hold in
    /// memory now, updated since the last commit or cached.
    pub persistent_entries_in_memory: u64,
}

/// What a task does with an input record whose key or value does not deserialize (Kafka's
/// `default.deserialization.exception.handler`, and the dead-letter queue of KIP-1034).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeserializationExceptionHandler {
    /// Stop processing with [`Error::Deserialize`] naming topic, partition and offset
    /// (Kafka's `LogAndFailExceptionHandler`, its default).
    #[default]
    LogAndFail,
    /// Log the record's coordinates and the error, skip the record, and count it (Kafka's
    /// `LogAndContinueExceptionHandler`).
    LogAndContinue,
    /// As `LogAndContinue`, and write the record's raw key, value and timestamp to this topic
    /// (Kafka's `errors.dead.letter.queue.topic.name`; the error is logged, not written as
    /// headers).
    DeadLetterQueue(String),
}

/// What a processor can see and do besides forwarding: the task's stream time, the output
/// records, the counters.
#[derive(Debug, Default)]
pub(crate) struct Context {
    /// The largest timestamp of any record this task has processed; `-1` before the first.
    pub(crate) stream_time: i64,
    /// Per source topic, the largest timestamp processed from the task's partition of it
    /// (Kafka's partition time), committed with the topic's offset.
    pub(crate) partition_times: HashMap<String, i64>,
    /// The task's partition: the partition of every input topic it reads, and of its
    /// changelogs.
    pub(crate) partition: i32,
    pub(crate) outputs: Vec<RawRecord>,
    /// The partition counts of the topics written with a
    /// [`StreamPartitioner`](crate::StreamPartitioner).
    pub(crate) partition_counts: Arc<crate::partitioner::PartitionCounts>,
    /// Windows and sessions the stores' retention dropped since the last take: deleted from
    /// the task's local state only (not logged, as Kafka's dropped segments are not).
    pub(crate) expired: Vec<crate::state::LocalRecord>,
    pub(crate) metrics: TaskMetrics,
    /// The processor API's clock, input record metadata and punctuation queues.
    pub(crate) processor_api: crate::processor::ProcessorTaskState,
}

impl Context {
    /// Advances the partition time of `topic` and the task's stream time to `timestamp`,
    /// when later: a record processed from `topic`.
    pub(crate) fn observe(&mut self, topic: &str, timestamp: i64) {
        self.stream_time = self.stream_time.max(timestamp);
        match self.partition_times.get_mut(topic) {
            Some(time) => *time = (*time).max(timestamp),
            None => {
                self.partition_times.insert(topic.to_string(), timestamp);
            }
        }
    }
}

type Sink<K, V> = Box<dyn FnMut(&mut Context, Record<K, V>) -> Result<(), Error> + Send>;

/// One node of the graph: where the records of one stream go.
pub(crate) struct Node<K, V> {
    sinks: Arc<Mutex<Vec<Sink<K, V>>>>,
}

impl<K, V> Clone for Node<K, V> {
    fn clone(&self) -> Self {
        Self {
            sinks: Arc::clone(&self.sinks),
        }
    }
}

impl<K: Data, V: Data> Node<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            sinks: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) fn add_sink(
        &self,
        sink: impl FnMut(&mut Context, Record<K, V>) -> Result<(), Error> + Send + 'static,
    ) {
        self.sinks.lock().push(Box::new(sink));
    }

    /// Hands `record` to every sink in the order they were added, cloning it for all but the
    /// last. The graph is acyclic by construction (a sink only ever points at a node created
    /// after its parent), so no node's lock is taken twice on one call stack.
    pub(crate) fn forward(&self, ctx: &mut Context, record: Record<K, V>) -> Result<(), Error> {
        let mut sinks = self.sinks.lock();
        let Some((last, rest)) = sinks.split_last_mut() else {
            return Ok(());
        };
        for sink in rest {
            sink(ctx, record.clone())?;
        }
        last(ctx, record)
    }
}

type Source = Box<dyn FnMut(&mut Context, &RawRecord) -> Result<(), Error> + Send>;

/// The store a global table's lookups read: its own, until the runtime shares another.
pub(crate) type GlobalSlot<K, V> = Mutex<SharedStore<K, V>>;

/// A global table's slot, with its key and value types erased.
pub(crate) trait GlobalStore: Send + Sync {
    /// Points the slot at the store `other` points at, if it holds the same types.
    fn share(&self, other: &dyn GlobalStore);
    fn as_any(&self) -> &dyn Any;
}

impl<K: Send + 'static, V: Send + 'static> GlobalStore for GlobalSlot<K, V> {
    fn share(&self, other: &dyn GlobalStore) {
        if let Some(other) = other.as_any().downcast_ref::<Self>() {
            let shared = Arc::clone(&other.lock());
            *self.lock() = shared;
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What the builder collects, shared by every stream handle it gave out.
#[derive(Default)]
pub(crate) struct BuilderState {
    pub(crate) sources: HashMap<String, Source>,
    pub(crate) stores: BTreeMap<String, Arc<dyn Any + Send + Sync>>,
    /// The windowed stores among `stores`, with their retention, for window and session
    /// queries.
    pub(crate) windowed_stores: BTreeMap<String, Arc<dyn Any + Send + Sync>>,
    pub(crate) sink_topics: BTreeSet<String>,
    /// The sink topics written with a [`StreamPartitioner`](crate::StreamPartitioner),
    /// whose partition counts the tasks need.
    pub(crate) partitioned_sink_topics: BTreeSet<String>,
    pub(crate) internal_topics: BTreeSet<InternalTopic>,
    pub(crate) restorers: BTreeMap<String, Restorer>,
    pub(crate) copartition_groups: Vec<CopartitionGroup>,
    pub(crate) global_topics: BTreeSet<String>,
    /// The global tables' stores by name, as the slots their lookups read.
    pub(crate) global_stores: BTreeMap<String, Arc<dyn GlobalStore>>,
    /// Problems found while building, reported by `build`.
    pub(crate) errors: Vec<String>,
    /// Numbers generated names, as Kafka's `KSTREAM-AGGREGATE-STATE-STORE-0000000001`.
    pub(crate) next_index: u64,
    /// The processor API's processors, which the task initializes, punctuates and closes.
    pub(crate) processors: Vec<Arc<dyn crate::processor::ProcessorNode>>,
    /// The logs of the processor API's logged stores (and of all its window and session
    /// stores) by store name: the untyped one the processors drain, and what handles are
    /// made of: a key-value store's typed logger (`Arc<StoreLogger<K, V>>`), a window or
    /// session store's `WindowedHandle`.
    pub(crate) store_logs: BTreeMap<String, crate::processor::LoggedStore>,
    /// The changelogs whose records carry Kafka's format version in a header `v`, by topic.
    pub(crate) changelog_versions: BTreeMap<String, u8>,
    /// The stores whose values are timestamped: see [`crate::store::changelog_value_to_kafka`].
    pub(crate) timestamped_changelogs: BTreeSet<String>,
    /// The logged key-value stores, by name, that a task with local state serves from it.
    pub(crate) persistent_stores: BTreeMap<String, Arc<dyn crate::store::PersistentStore>>,
    /// The global tables' stores, by topic (their table in the global local state), which
    /// the instance's global state serves from its local state.
    pub(crate) global_persistent_stores: BTreeMap<String, Arc<dyn crate::store::PersistentStore>>,
}

impl BuilderState {
    pub(crate) fn add_source(&mut self, topic: &str, source: Source) {
        if self.sources.contains_key(topic) {
            self.errors
                .push(format!("topic {topic} is already read by another source"));
        } else {
            self.sources.insert(topic.to_string(), source);
        }
    }

    pub(crate) fn add_store(&mut self, name: &str, store: Arc<dyn Any + Send + Sync>) {
        if self.stores.contains_key(name) {
            self.errors
                .push(format!("state store {name} is defined twice"));
        } else {
            self.stores.insert(name.to_string(), store);
        }
    }

    /// Requires `topics` co-partitioned for `node`; a single topic needs nothing.
    pub(crate) fn copartition(&mut self, node: &str, topics: &BTreeSet<String>) {
        if topics.len() > 1 {
            self.copartition_groups.push(CopartitionGroup {
                node: node.to_string(),
                topics: topics.clone(),
            });
        }
    }

    pub(crate) fn generated_name(&mut self, prefix: &str) -> String {
        self.next_index += 1;
        format!("{prefix}-{:010}", self.next_index)
    }
}

/// A built topology: the processor graph of one task, with its state stores.
///
/// Built by [`StreamsBuilder::build`](crate::StreamsBuilder::build); run by a
/// [`TopologyTestDriver`](crate::TopologyTestDriver) or [`KafkaStreams`](crate::KafkaStreams).
/// It owns its processors' state, so one topology is one task: build it again for another
/// (the runtime takes a factory that builds one per task).
pub struct Topology {
    pub(crate) sources: HashMap<String, Source>,
    pub(crate) stores: BTreeMap<String, Arc<dyn Any + Send + Sync>>,
    pub(crate) windowed_stores: BTreeMap<String, Arc<dyn Any + Send + Sync>>,
    pub(crate) sink_topics: BTreeSet<String>,
    /// The sink topics written with a [`StreamPartitioner`](crate::StreamPartitioner).
    pub(crate) partitioned_sink_topics: BTreeSet<String>,
    pub(crate) processors: Vec<Arc<dyn crate::processor::ProcessorNode>>,
    pub(crate) internal_topics: BTreeSet<InternalTopic>,
    pub(crate) restorers: BTreeMap<String, Restorer>,
    pub(crate) copartition_groups: Vec<CopartitionGroup>,
    pub(crate) global_topics: BTreeSet<String>,
    pub(crate) global_stores: BTreeMap<String, Arc<dyn GlobalStore>>,
    /// Kafka's `v` header of the records of these changelogs (topic names without the
    /// application id): the runtime writes it, as the records here carry no headers.
    pub(crate) changelog_versions: BTreeMap<String, u8>,
    /// The stores whose values are timestamped (see
    /// [`crate::store::changelog_value_to_kafka`]), by name.
    pub(crate) timestamped_changelogs: BTreeSet<String>,
    pub(crate) persistent_stores: BTreeMap<String, Arc<dyn crate::store::PersistentStore>>,
    pub(crate) global_persistent_stores: BTreeMap<String, Arc<dyn crate::store::PersistentStore>>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("source_topics", &self.source_topics())
            .field("sink_topics", &self.sink_topics)
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Topology {
    /// The internal topics (repartition and changelog), sorted by name.
    pub fn internal_topics(&self) -> Vec<InternalTopic> {
        self.internal_topics.iter().cloned().collect()
    }

    /// The sets of source topics that must have equal partition counts.
    pub fn copartition_groups(&self) -> Vec<CopartitionGroup> {
        self.copartition_groups.clone()
    }

    /// The topics read by global tables, whose every record goes to every task.
    pub fn global_topics(&self) -> Vec<String> {
        self.global_topics.iter().cloned().collect()
    }

    /// Makes this topology's global tables look up (and its store queries read) the stores
    /// of `global`, a topology built by the same factory, so that the tasks of an instance
    /// share one copy of each global table (Kafka's global state stores).
    pub(crate) fn share_global_stores(&mut self, global: &Topology) {
        for (name, slot) in &self.global_stores {
            if let Some(shared) = global.global_stores.get(name) {
                slot.share(shared.as_ref());
            }
            if let Some(store) = global.stores.get(name) {
                self.stores.insert(name.clone(), Arc::clone(store));
            }
        }
    }

    /// The name of the changelog topic of `store` (without the application id), if the
    /// store is logged.
    pub fn changelog_topic(&self, store: &str) -> Option<String> {
        self.restorers
            .contains_key(store)
            .then(|| format!("{store}-changelog"))
    }

    /// Whether `store`'s values are timestamped: its changelog values then need
    /// [`crate::store::changelog_value_to_kafka`] and back.
    pub(crate) fn timestamped_changelog(&self, store: &str) -> bool {
        self.timestamped_changelogs.contains(store)
    }

    /// Whether `topic` (without the application id) is the changelog of a store whose values
    /// are timestamped ([`Topology::timestamped_changelog`]).
    pub(crate) fn timestamped_changelog_topic(&self, topic: &str) -> bool {
        topic
            .strip_suffix("-changelog")
            .is_some_and(|store| self.timestamped_changelog(store))
    }

    /// Whether `topic` is one of the topology's repartition topics.
    pub(crate) fn is_repartition_topic(&self, topic: &str) -> bool {
        self.internal_topics.contains(&InternalTopic {
            name: topic.to_string(),
            kind: InternalTopicKind::Repartition,
        })
    }

    /// The topics the sources read (repartition topics included, by their names without the
    /// application id), sorted.
    pub fn source_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.sources.keys().cloned().collect();
        topics.sort();
        topics
    }

    /// The topics `to` writes, sorted.
    pub fn sink_topics(&self) -> Vec<String> {
        self.sink_topics.iter().cloned().collect()
    }

    /// The names of the state stores, sorted.
    pub fn store_names(&self) -> Vec<String> {
        self.stores.keys().cloned().collect()
    }

    pub(crate) fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlyKeyValueStore<K, V>, Error> {
        let store = self
            .stores
            .get(name)
            .ok_or_else(|| Error::UnknownStore(name.to_string()))?;
        let entries = store
            .downcast_ref::<SharedStore<K, V>>()
            .ok_or_else(|| Error::StoreType(name.to_string()))?;
        Ok(ReadOnlyKeyValueStore {
            name: name.to_string(),
            entries: vec![Arc::clone(entries)],
        })
    }

    pub(crate) fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlyWindowStore<K, V>, Error> {
        let store = windowed_store(&self.windowed_stores, name, WindowedStoreKind::Window)
            .map_err(|error| self.unknown_or(name, error))?;
        Ok(ReadOnlyWindowStore {
            name: name.to_string(),
            stores: vec![store],
        })
    }

    pub(crate) fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlySessionStore<K, V>, Error> {
        let store = windowed_store(&self.windowed_stores, name, WindowedStoreKind::Session)
            .map_err(|error| self.unknown_or(name, error))?;
        Ok(ReadOnlySessionStore {
            name: name.to_string(),
            stores: vec![store],
        })
    }

    /// A store missing from the windowed stores that is a key-value store is of the wrong
    /// kind, not unknown.
    fn unknown_or(&self, name: &str, error: Error) -> Error {
        match error {
            Error::UnknownStore(_) if self.stores.contains_key(name) => Error::StoreKind {
                store: name.to_string(),
                expected: "a windowed store",
            },
            error => error,
        }
    }
}

/// A topology with its context: processes input records one at a time.
pub(crate) struct Task {
    topology: Topology,
    ctx: Context,
    on_deserialization_error: DeserializationExceptionHandler,
    /// The stores served from the local state (see [`Task::attach_local_state`]).
    attached: Vec<Arc<dyn crate::store::PersistentStore>>,
    /// The instance's persistent global stores, which this task's lookups read: a failed
    /// read of one stops the task too.
    watched_global: Vec<Arc<dyn crate::store::PersistentStore>>,
}

impl Task {
    pub(crate) fn new(
        topology: Topology,
        partition: i32,
        handler: DeserializationExceptionHandler,
    ) -> Self {
        Self {
            topology,
            ctx: Context {
                stream_time: -1,
                partition,
                ..Context::default()
            },
            on_deserialization_error: handler,
            attached: Vec::new(),
            watched_global: Vec::new(),
        }
    }

    pub(crate) fn set_deserialization_exception_handler(
        &mut self,
        handler: DeserializationExceptionHandler,
    ) {
        self.on_deserialization_error = handler;
    }

    /// Runs one input record through the topology; its outputs wait in
    /// [`Task::take_outputs`]. A record whose key or value does not deserialize goes to the
    /// deserialization exception handler: by default processing stops with an error naming
    /// its topic, partition and offset.
    pub(crate) fn process(&mut self, record: &RawRecord) -> Result<(), Error> {
        self.init_processors()?;
        self.process_source(record)?;
        self.check_persistent_stores()
    }

    /// Runs a global table's record into its store, as [`Task::process`] does, without
    /// initializing the processors: the instance's global state runs no task's processing.
    pub(crate) fn process_global(&mut self, record: &RawRecord) -> Result<(), Error> {
        self.process_source(record)?;
        self.check_persistent_stores()
    }

    fn process_source(&mut self, record: &RawRecord) -> Result<(), Error> {
        self.ctx.processor_api.record_metadata = Some(crate::processor::RecordMetadata::of(record));
        let source = self
            .topology
            .sources
            .get_mut(&record.topic)
            .ok_or_else(|| Error::UnknownTopic(record.topic.clone()))?;
        // A source deserializes before it forwards anything, so a record that fails has
        // produced no output and changed no state.
        match source(&mut self.ctx, record) {
            Err(error @ Error::Deserialize { .. }) => {
                let dead_letters = match &self.on_deserialization_error {
                    DeserializationExceptionHandler::LogAndFail => return Err(error),
                    DeserializationExceptionHandler::LogAndContinue => None,
                    DeserializationExceptionHandler::DeadLetterQueue(topic) => Some(topic),
                };
                tracing::warn!(
                    error = %error,
                    cause = ?std::error::Error::source(&error).map(ToString::to_string),
                    "skipping a record that does not deserialize"
                );
                self.ctx.metrics.dropped_deserialization_errors += 1;
                if let Some(topic) = dead_letters {
                    self.ctx.outputs.push(RawRecord {
                        topic: topic.clone(),
                        partition: -1,
                        offset: -1,
                        key: record.key.clone(),
                        value: record.value.clone(),
                        timestamp: record.timestamp,
                    });
                }
                Ok(())
            }
            result => result,
        }
    }

    pub(crate) fn take_outputs(&mut self) -> Vec<RawRecord> {
        std::mem::take(&mut self.ctx.outputs)
    }

    /// The local-state deletions of what the stores' retention dropped (`Context::expired`).
    pub(crate) fn take_expired(&mut self) -> Vec<crate::state::LocalRecord> {
        std::mem::take(&mut self.ctx.expired)
    }

    pub(crate) fn stream_time(&self) -> i64 {
        self.ctx.stream_time
    }

    /// The partition time of the task's partition of `topic`; `None` before its first record.
    pub(crate) fn partition_time(&self, topic: &str) -> Option<i64> {
        self.ctx.partition_times.get(topic).copied()
    }

    /// Resumes the partition time of `topic` from a commit; the stream time becomes the
    /// largest partition time, as Kafka's `StreamTask` initializes it.
    pub(crate) fn resume_partition_time(&mut self, topic: &str, time: i64) {
        self.ctx.observe(topic, time);
    }

    pub(crate) fn metrics(&self) -> TaskMetrics {
        let mut metrics = self.ctx.metrics;
        metrics.persistent_entries_in_memory = self
            .attached
            .iter()
            .map(|store| store.entries_in_memory())
            .sum();
        metrics
    }

    /// Counts records restored into the stores: from the local state, from the changelogs.
    pub(crate) fn count_restored(&mut self, local_state: u64, changelog: u64) {
        self.ctx.metrics.restored_from_local_state += local_state;
        self.ctx.metrics.restored_from_changelog += changelog;
    }

    /// Counts changelog records a standby applied.
    pub(crate) fn count_standby_applied(&mut self, records: u64) {
        self.ctx.metrics.standby_applied += records;
    }

    /// Counts time spent restoring the stores.
    pub(crate) fn count_restore_time(&mut self, time: std::time::Duration) {
        self.ctx.metrics.restore_time_ms += u64::try_from(time.as_millis()).unwrap_or(u64::MAX);
    }

    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Creates and initializes the processor API's processors, once, before the task's first
    /// record or punctuation.
    pub(crate) fn init_processors(&mut self) -> Result<(), Error> {
        if self.ctx.processor_api.initialized {
            return Ok(());
        }
        self.ctx.processor_api.initialized = true;
        self.ctx.processor_api.record_metadata = None;
        for processor in &self.topology.processors {
            processor.init(&mut self.ctx)?;
        }
        Ok(())
    }

    /// Fires the stream-time punctuations due at the task's stream time (Kafka's
    /// `StreamTask#maybePunctuateStreamTime`), after each processed record; none before the
    /// first record.
    pub(crate) fn punctuate_stream_time(&mut self) -> Result<bool, Error> {
        self.init_processors()?;
        if self.ctx.stream_time < 0 {
            return Ok(false);
        }
        let now = self.ctx.stream_time;
        let fired = crate::processor::punctuate(
            &self.topology.processors,
            &mut self.ctx,
            crate::processor::PunctuationType::StreamTime,
            now,
        )?;
        self.check_persistent_stores()?;
        Ok(fired)
    }

    /// Fires the wall-clock punctuations due at `now` (Kafka's
    /// `StreamTask#maybePunctuateSystemTime`); their outputs wait in [`Task::take_outputs`].
    pub(crate) fn punctuate_wall_clock(&mut self, now: i64) -> Result<bool, Error> {
        self.init_processors()?;
        let fired = crate::processor::punctuate(
            &self.topology.processors,
            &mut self.ctx,
            crate::processor::PunctuationType::WallClockTime,
            now,
        )?;
        self.check_persistent_stores()?;
        Ok(fired)
    }

    /// Serves the task's persistent-capable stores (logged key-value stores) from `state`,
    /// each keeping at most `max_cached` entries it does not need in memory; returns their
    /// names. Their records in `state` then need no loading.
    pub(crate) fn attach_local_state(
        &mut self,
        state: &Arc<crate::state::TaskState>,
        max_cached: usize,
    ) -> Vec<String> {
        let stores = self.topology.persistent_stores.clone();
        self.attach(stores, state, max_cached)
    }

    /// [`Task::attach_local_state`] for the instance's global state: its global tables'
    /// stores, named by topic.
    pub(crate) fn attach_global_local_state(
        &mut self,
        state: &Arc<crate::state::TaskState>,
        max_cached: usize,
    ) -> Vec<String> {
        let stores = self.topology.global_persistent_stores.clone();
        self.attach(stores, state, max_cached)
    }

    fn attach(
        &mut self,
        stores: BTreeMap<String, Arc<dyn crate::store::PersistentStore>>,
        state: &Arc<crate::state::TaskState>,
        max_cached: usize,
    ) -> Vec<String> {
        for store in stores.values() {
            store.attach(state, max_cached);
        }
        self.attached = stores.values().cloned().collect();
        stores.into_keys().collect()
    }

    /// Stops serving the stores from the local state, which is about to be deleted: they
    /// read every entry into memory and keep it there.
    pub(crate) fn detach_local_state(&mut self) -> Result<(), Error> {
        for store in std::mem::take(&mut self.attached) {
            store.detach()?;
        }
        Ok(())
    }

    /// The task's local state holds every store update made so far (written at a commit,
    /// or by a restore): the persistent stores may drop them from memory.
    pub(crate) fn local_state_written(&self) {
        for store in &self.attached {
            store.committed();
        }
    }

    /// Makes this task's global tables look up the stores of `global`, the instance's global
    /// state (see [`Topology::share_global_stores`]), and watch the persistent ones.
    pub(crate) fn share_global_stores(&mut self, global: &Task) {
        self.topology.share_global_stores(&global.topology);
        self.watched_global = global.attached.clone();
    }

    /// A persistent store whose read failed stops the task (Kafka's
    /// `ProcessorStateException`): the record it was read for went on without its state.
    /// The global stores its lookups read count too. Nothing to check (and no lock taken)
    /// when no store is persistent.
    fn check_persistent_stores(&self) -> Result<(), Error> {
        for store in self.attached.iter().chain(&self.watched_global) {
            if let Some(error) = store.take_failure() {
                return Err(error);
            }
        }
        Ok(())
    }

    /// When the next wall-clock punctuation is due (milliseconds since the epoch), so a
    /// runtime can wait for it; initializes the processors, which schedule in `init`.
    pub(crate) fn next_wall_clock_punctuation(&mut self) -> Result<Option<i64>, Error> {
        self.init_processors()?;
        Ok(self.ctx.processor_api.next_wall_clock_punctuation())
    }

    /// The partition counts of the topics this task writes with a partitioner.
    pub(crate) fn set_partition_counts(
        &mut self,
        counts: Arc<crate::partitioner::PartitionCounts>,
    ) {
        self.ctx.partition_counts = counts;
    }

    /// Replaces the system clock by a mocked one at `now` (the test driver).
    pub(crate) fn set_mock_wall_clock(&mut self, now: i64) {
        self.ctx.processor_api.clock = crate::processor::WallClock::Mock(now);
    }

    /// The task's wall-clock time.
    pub(crate) fn wall_clock_time(&self) -> i64 {
        self.ctx.processor_api.clock.now()
    }

    /// Closes the processor API's processors (each once).
    pub(crate) fn close_processors(&mut self) -> Result<(), Error> {
        for processor in &self.topology.processors {
            processor.close()?;
        }
        Ok(())
    }

    /// The value of a changelog record of `store` as the task and its local state hold it:
    /// a timestamped store's gets the record's timestamp back in front
    /// ([`crate::store::timestamped_value`]).
    pub(crate) fn changelog_value(
        &self,
        store: &str,
        record: &weir_client::consumer::ConsumerRecord,
    ) -> Option<Bytes> {
        let value = record.value.as_ref()?;
        Some(if self.topology.timestamped_changelog(store) {
            Bytes::from(crate::store::timestamped_value(record.timestamp, value))
        } else {
            value.clone()
        })
    }

    /// Puts one changelog record of `store` back into it.
    pub(crate) fn restore(
        &mut self,
        store: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), Error> {
        match self.topology.restorers.get_mut(store) {
            Some(restore) => restore(key, value),
            None => Err(Error::UnknownStore(store.to_string())),
        }
    }
}
