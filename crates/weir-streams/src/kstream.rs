//! The DSL: [`StreamsBuilder`] makes streams and tables from topics; [`KStream`] transforms
//! them, branches, merges, joins and writes them to topics; [`KGroupedStream`] and the
//! windowed streams aggregate them into [`KTable`]s backed by state stores.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::Error;
use crate::join::stream_stream_join;
use crate::ktable::{Change, GlobalKTable, KTable};
use crate::partitioner::{Produced, choose_partitions};
use crate::serdes::{I64Serde, Serde};
use crate::store::{
    SharedStore, SomeOf, ValueFormat, logged_store, persistent_store, register_persistent_store,
    write_changelog,
};
use crate::topology::{
    BuilderState, Context, Data, GlobalSlot, GlobalStore, InternalTopic, InternalTopicKind,
    Lineage, Node, RawRecord, Record, SerdeRef, Topology,
};
use crate::window::{JoinWindows, SessionWindows, SlidingWindows, TimeWindows};
use crate::windowed::{SessionWindowedKStream, TimeWindowedKStream, TimeWindowing};

/// Gives a record its event time (Kafka's `TimestampExtractor`). The default,
/// [`RecordTimestamp`], takes the Kafka record's own timestamp. A negative result skips the
/// record (Kafka's `LogAndSkipOnInvalidTimestamp`), counted in
/// [`TaskMetrics::dropped_invalid_timestamp`](crate::TaskMetrics::dropped_invalid_timestamp).
pub trait TimestampExtractor<K, V>: Send + 'static {
    /// The event time of a record with this key and value; `record_timestamp` is the Kafka
    /// record's timestamp and `partition_time` the largest event time seen so far on the
    /// record's partition (`-1` before its first; Kafka's `partitionTime`), restored from the
    /// commit metadata when the task is created, so an extractor that falls back to it
    /// stays monotonic across restarts.
    fn extract(&mut self, key: &K, value: &V, record_timestamp: i64, partition_time: i64) -> i64;
}

/// The Kafka record's timestamp (Kafka's `FailOnInvalidTimestamp`, but skipping instead of
/// failing).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordTimestamp;

impl<K, V> TimestampExtractor<K, V> for RecordTimestamp {
    fn extract(
        &mut self,
        _key: &K,
        _value: &V,
        record_timestamp: i64,
        _partition_time: i64,
    ) -> i64 {
        record_timestamp
    }
}

/// Any `FnMut(&key, &value, record_timestamp) -> timestamp` is an extractor.
impl<K, V, F> TimestampExtractor<K, V> for F
where
    F: FnMut(&K, &V, i64) -> i64 + Send + 'static,
{
    fn extract(&mut self, key: &K, value: &V, record_timestamp: i64, _partition_time: i64) -> i64 {
        self(key, value, record_timestamp)
    }
}

/// Builds a topology (Kafka's `StreamsBuilder`). Streams and tables made from it are handles
/// on one shared graph; [`StreamsBuilder::build`] hands the graph over as a [`Topology`].
#[derive(Default)]
pub struct StreamsBuilder {
    pub(crate) state: Arc<Mutex<BuilderState>>,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder").finish_non_exhaustive()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records of `topic` as a stream, with their Kafka timestamps as event time.
    pub fn stream<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KStream<K, V> {
        self.stream_with_timestamp_extractor(topic, key_serde, value_serde, RecordTimestamp)
    }

    /// The records of `topic` as a stream, with event time from `extractor`.
    pub fn stream_with_timestamp_extractor<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        mut extractor: impl TimestampExtractor<K, V>,
    ) -> KStream<K, V> {
        let key_serde: SerdeRef<K> = Arc::new(key_serde);
        let value_serde: SerdeRef<V> = Arc::new(value_serde);
        let (keys, values) = (Arc::clone(&key_serde), Arc::clone(&value_serde));
        let node = Node::new();
        let next = node.clone();
        let source = Box::new(move |ctx: &mut Context, raw: &RawRecord| {
            let (key_serde, value_serde) = (&keys, &values);
            let failed = |part, source| deserialize_failed(raw, part, source);
            let key = key_serde
                .deserialize_nullable(raw.key.as_deref())
                .map_err(|e| failed("key", e))?;
            let value = value_serde
                .deserialize_nullable(raw.value.as_deref())
                .map_err(|e| failed("value", e))?;
            let partition_time = ctx.partition_times.get(&raw.topic).copied().unwrap_or(-1);
            let timestamp = extractor.extract(&key, &value, raw.timestamp, partition_time);
            if timestamp < 0 {
                ctx.metrics.dropped_invalid_timestamp += 1;
                return Ok(());
            }
            ctx.metrics.process_total += 1;
            ctx.observe(&raw.topic, timestamp);
            next.forward(
                ctx,
                Record {
                    key,
                    value,
                    timestamp,
                },
            )
        });
        self.state.lock().add_source(topic, source);
        KStream {
            node,
            state: Arc::clone(&self.state),
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
            lineage: Lineage::source(topic),
        }
    }

    /// The records of `topic` as a table (Kafka's `StreamsBuilder#table`), materialized in a
    /// key-value store named `<topic>-STATE-STORE-<n>`: each record is the new value of its
    /// key, and a null value (`None` from the value serde, e.g. a
    /// [`Nullable`](crate::Nullable) one) deletes the key and is forwarded as a tombstone.
    /// Records without a key are skipped, as Kafka does.
    pub fn table<K: Data + Ord, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<Option<V>>,
    ) -> KTable<K, V> {
        let (store, name) = self.table_store(topic);
        let key_serde: SerdeRef<K> = Arc::new(key_serde);
        let nullable: SerdeRef<Option<V>> = Arc::new(value_serde);
        let value_serde: SerdeRef<V> = Arc::new(SomeOf(Arc::clone(&nullable)));
        let changelog = {
            let mut state = self.state.lock();
            register_persistent_store(
                &mut state,
                &name,
                &store,
                (Arc::clone(&key_serde), Arc::clone(&value_serde)),
                ValueFormat::Timestamped,
            );
            logged_store(
                &mut state,
                &name,
                &store,
                Arc::clone(&key_serde),
                Arc::clone(&value_serde),
                ValueFormat::Timestamped,
            )
        };
        let (keys, values, logged) = (Arc::clone(&key_serde), nullable, Arc::clone(&value_serde));
        let node: Node<K, Change<V>> = Node::new();
        let next = node.clone();
        let shared = Arc::clone(&store);
        let source = Box::new(move |ctx: &mut Context, raw: &RawRecord| {
            let Some((key, value)) = table_record(raw, &*keys, &*values, "table")? else {
                return Ok(());
            };
            if raw.timestamp < 0 {
                ctx.metrics.dropped_invalid_timestamp += 1;
                return Ok(());
            }
            ctx.metrics.process_total += 1;
            ctx.observe(&raw.topic, raw.timestamp);
            let old = {
                let mut entries = shared.lock();
                match &value {
                    Some(value) => entries.insert(key.clone(), (value.clone(), raw.timestamp)),
                    None => entries.remove(&key),
                }
                .map(|(old, _)| old)
            };
            write_changelog(
                ctx,
                &changelog,
                &*keys,
                &*logged,
                &key,
                value.as_ref(),
                raw.timestamp,
            )?;
            next.forward(
                ctx,
                Record {
                    key,
                    value: Change { new: value, old },
                    timestamp: raw.timestamp,
                },
            )
        });
        self.state.lock().add_source(topic, source);
        let mut table = KTable::materialized(node, &self.state, name, store, None);
        table.key_serde = Some(key_serde);
        table.value_serde = Some(value_serde);
        table.lineage = Lineage::source(topic);
        table
    }

    /// The records of `topic` as a [`GlobalKTable`] (Kafka's `StreamsBuilder#globalTable`),
    /// in a key-value store named `<topic>-STATE-STORE-<n>`; a null value deletes the key.
    /// [`KafkaStreams`](crate::KafkaStreams) reads every partition of the topic into one
    /// store per instance, which all its tasks look up, to its end before any task
    /// processes a record (Kafka's global state).
    pub fn global_table<K: Data + Ord, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<Option<V>>,
    ) -> GlobalKTable<K, V> {
        let (store, name) = self.table_store(topic);
        let key_serde: SerdeRef<K> = Arc::new(key_serde);
        let nullable: SerdeRef<Option<V>> = Arc::new(value_serde);
        // The global local state keeps each record's timestamp before its value's bytes.
        let persistent = persistent_store(
            topic,
            &store,
            Arc::clone(&key_serde),
            Arc::new(SomeOf(Arc::clone(&nullable))),
            ValueFormat::Timestamped,
        );
        self.state
            .lock()
            .global_persistent_stores
            .insert(topic.to_string(), persistent);
        let shared = Arc::clone(&store);
        let source = Box::new(move |_: &mut Context, raw: &RawRecord| {
            let Some((key, value)) = table_record(raw, &*key_serde, &*nullable, "global table")?
            else {
                return Ok(());
            };
            shared
                .lock()
                .put(key, value.map(|value| (value, raw.timestamp)));
            Ok(())
        });
        // The lookups go through a slot, so that the runtime can point every task's lookups
        // at the one store its instance fills.
        let slot: Arc<GlobalSlot<K, V>> = Arc::new(Mutex::new(store));
        let mut state = self.state.lock();
        state.add_source(topic, source);
        state.global_topics.insert(topic.to_string());
        state
            .global_stores
            .insert(name.clone(), Arc::clone(&slot) as Arc<dyn GlobalStore>);
        drop(state);
        GlobalKTable {
            getter: Arc::new(move |key: &K| slot.lock().lock().get(key)),
            store_name: name,
        }
    }

    /// A new key-value store for a table read from `topic`, registered under a generated name.
    fn table_store<K: Data + Ord, V: Data>(&self, topic: &str) -> (SharedStore<K, V>, String) {
        let store: SharedStore<K, V> = crate::store::new_store();
        let mut state = self.state.lock();
        let name = state.generated_name(&format!("{topic}-STATE-STORE"));
        state.add_store(&name, Arc::new(Arc::clone(&store)));
        (store, name)
    }

    /// The topology built so far; refused if it is invalid (a topic read by two sources, a
    /// store name used twice, no source at all), with a message naming the topic or store.
    /// Streams and tables from this builder must not be extended afterwards: their operators
    /// would join the built topology half-way (no new sources or stores).
    pub fn build(self) -> Result<Topology, Error> {
        let mut state = std::mem::take(&mut *self.state.lock());
        state.connect_processor_stores();
        if !state.errors.is_empty() {
            return Err(Error::InvalidTopology(state.errors.join("; ")));
        }
        if state.sources.is_empty() {
            return Err(Error::InvalidTopology(
                "the topology has no source".to_string(),
            ));
        }
        Ok(Topology {
            sources: state.sources,
            stores: state.stores,
            windowed_stores: state.windowed_stores,
            sink_topics: state.sink_topics,
            partitioned_sink_topics: state.partitioned_sink_topics,
            processors: state.processors,
            internal_topics: state.internal_topics,
            restorers: state.restorers,
            copartition_groups: state.copartition_groups,
            global_topics: state.global_topics,
            global_stores: state.global_stores,
            changelog_versions: state.changelog_versions,
            timestamped_changelogs: state.timestamped_changelogs,
            persistent_stores: state.persistent_stores,
            global_persistent_stores: state.global_persistent_stores,
        })
    }
}

/// A table topic's record as (key, new value or `None` for a tombstone); `None` for a record
/// without a key, which tables skip (logged), as Kafka does.
fn table_record<K, V>(
    raw: &RawRecord,
    key_serde: &(impl Serde<K> + ?Sized),
    value_serde: &(impl Serde<Option<V>> + ?Sized),
    what: &str,
) -> Result<Option<(K, Option<V>)>, Error> {
    if raw.key.is_none() {
        tracing::warn!(
            topic = %raw.topic,
            partition = raw.partition,
            offset = raw.offset,
            "skipping a {what} record without a key"
        );
        return Ok(None);
    }
    let failed = |part, source| deserialize_failed(raw, part, source);
    let key = key_serde
        .deserialize_nullable(raw.key.as_deref())
        .map_err(|e| failed("key", e))?;
    let value = value_serde
        .deserialize_nullable(raw.value.as_deref())
        .map_err(|e| failed("value", e))?;
    Ok(Some((key, value)))
}

pub(crate) fn deserialize_failed(raw: &RawRecord, part: &'static str, source: Error) -> Error {
    Error::Deserialize {
        topic: raw.topic.clone(),
        partition: raw.partition,
        offset: raw.offset,
        part,
        source: Box::new(source),
    }
}

/// A record stream (Kafka's `KStream`): every record is an independent event. A handle: it can
/// feed several operators, each of which gets every record.
///
/// A stream carries the serdes it was read with while its key and value types stay (Kafka's
/// serde inheritance): `filter`, `peek`, `merge`, branches and `group_by_key` keep them,
/// `map_values` drops the value serde, `select_key` the key serde, `map` both. Repartition
/// topics and changelogs use them, or the ones given by [`Grouped`] and [`Materialized`].
pub struct KStream<K, V> {
    pub(crate) node: Node<K, V>,
    pub(crate) state: Arc<Mutex<BuilderState>>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) lineage: Lineage,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            state: Arc::clone(&self.state),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            lineage: self.lineage.clone(),
        }
    }
}

impl<K, V> KStream<K, V> {
    /// A stream on `node` with no serdes.
    pub(crate) fn on(node: Node<K, V>, state: &Arc<Mutex<BuilderState>>, lineage: Lineage) -> Self {
        Self {
            node,
            state: Arc::clone(state),
            key_serde: None,
            value_serde: None,
            lineage,
        }
    }

    pub(crate) fn with_serdes(
        self,
        key_serde: Option<SerdeRef<K>>,
        value_serde: Option<SerdeRef<V>>,
    ) -> Self {
        Self {
            key_serde,
            value_serde,
            ..self
        }
    }

    /// The stream after an operator that changed its key.
    fn rekeyed(self) -> Self {
        Self {
            lineage: self.lineage.rekeyed(),
            ..self
        }
    }
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KStream").finish_non_exhaustive()
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    /// A new stream fed by `process`, which gets each record of this one and the new node.
    fn derive<KR: Data, VR: Data>(
        &self,
        mut process: impl FnMut(&mut Context, Record<K, V>, &Node<KR, VR>) -> Result<(), Error>
        + Send
        + 'static,
    ) -> KStream<KR, VR> {
        let child = Node::new();
        let next = child.clone();
        self.node
            .add_sink(move |ctx, record| process(ctx, record, &next));
        KStream::on(child, &self.state, self.lineage.clone())
    }

    /// This stream read back from a repartition topic if its key was changed upstream, so a
    /// stateful operator (`operator`, for messages) sees every record of a key in one task;
    /// otherwise this stream itself.
    pub(crate) fn repartitioned(&self, operator: &str) -> KStream<K, V> {
        if !self.lineage.repartition_required {
            return self.clone();
        }
        let name = self.state.lock().generated_name("KSTREAM-REPARTITION");
        let node = repartition(
            &self.node,
            &self.state,
            &name,
            self.key_serde.clone(),
            self.value_serde.clone(),
            operator,
        );
        KStream {
            node,
            state: Arc::clone(&self.state),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            lineage: Lineage::source(&format!("{name}-repartition")),
        }
    }

    /// The records for which `predicate` holds.
    pub fn filter(
        &self,
        mut predicate: impl FnMut(&K, &V) -> bool + Send + 'static,
    ) -> KStream<K, V> {
        self.derive(move |ctx, record, next| {
            if predicate(&record.key, &record.value) {
                next.forward(ctx, record)
            } else {
                Ok(())
            }
        })
        .with_serdes(self.key_serde.clone(), self.value_serde.clone())
    }

    /// The records for which `predicate` does not hold.
    pub fn filter_not(
        &self,
        mut predicate: impl FnMut(&K, &V) -> bool + Send + 'static,
    ) -> KStream<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Each record turned into a new key and value; the timestamp stays.
    pub fn map<KR: Data, VR: Data>(
        &self,
        mut mapper: impl FnMut(K, V) -> (KR, VR) + Send + 'static,
    ) -> KStream<KR, VR> {
        self.derive(move |ctx, record, next| {
            let (key, value) = mapper(record.key, record.value);
            next.forward(
                ctx,
                Record {
                    key,
                    value,
                    timestamp: record.timestamp,
                },
            )
        })
        .rekeyed()
    }

    /// Each record with a new value; key and timestamp stay.
    pub fn map_values<VR: Data>(
        &self,
        mut mapper: impl FnMut(V) -> VR + Send + 'static,
    ) -> KStream<K, VR> {
        self.derive(move |ctx, record, next| {
            let value = mapper(record.value);
            next.forward(
                ctx,
                Record {
                    key: record.key,
                    value,
                    timestamp: record.timestamp,
                },
            )
        })
        .with_serdes(self.key_serde.clone(), None)
    }

    /// Each record turned into zero or more records, in order, with its timestamp.
    pub fn flat_map<KR: Data, VR: Data, I>(
        &self,
        mut mapper: impl FnMut(K, V) -> I + Send + 'static,
    ) -> KStream<KR, VR>
    where
        I: IntoIterator<Item = (KR, VR)>,
    {
        self.derive(move |ctx, record, next| {
            for (key, value) in mapper(record.key, record.value) {
                next.forward(
                    ctx,
                    Record {
                        key,
                        value,
                        timestamp: record.timestamp,
                    },
                )?;
            }
            Ok(())
        })
        .rekeyed()
    }

    /// Each record turned into zero or more records with its key and timestamp.
    pub fn flat_map_values<VR: Data, I>(
        &self,
        mut mapper: impl FnMut(V) -> I + Send + 'static,
    ) -> KStream<K, VR>
    where
        I: IntoIterator<Item = VR>,
    {
        self.derive(move |ctx, record, next| {
            for value in mapper(record.value) {
                let key = record.key.clone();
                next.forward(
                    ctx,
                    Record {
                        key,
                        value,
                        timestamp: record.timestamp,
                    },
                )?;
            }
            Ok(())
        })
        .with_serdes(self.key_serde.clone(), None)
    }

    /// Each record with a new key computed from it; value and timestamp stay.
    pub fn select_key<KR: Data>(
        &self,
        mut selector: impl FnMut(&K, &V) -> KR + Send + 'static,
    ) -> KStream<KR, V> {
        self.derive(move |ctx, record, next| {
            let key = selector(&record.key, &record.value);
            next.forward(
                ctx,
                Record {
                    key,
                    value: record.value,
                    timestamp: record.timestamp,
                },
            )
        })
        .with_serdes(None, self.value_serde.clone())
        .rekeyed()
    }

    /// The same records, after `action` has seen each (logging, metrics).
    pub fn peek(&self, mut action: impl FnMut(&K, &V) + Send + 'static) -> KStream<K, V> {
        self.derive(move |ctx, record, next| {
            action(&record.key, &record.value);
            next.forward(ctx, record)
        })
        .with_serdes(self.key_serde.clone(), self.value_serde.clone())
    }

    /// Calls `action` for each record; the end of this branch of the topology.
    pub fn foreach(&self, mut action: impl FnMut(&K, &V) + Send + 'static) {
        self.node.add_sink(move |_, record| {
            action(&record.key, &record.value);
            Ok(())
        });
    }

    /// Splits the stream by predicates (Kafka's `split()`): each record goes to the first
    /// branch whose predicate holds, or to the default branch, or nowhere.
    pub fn split(&self) -> BranchedKStream<K, V> {
        let branches: Branches<K, V> = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&branches);
        self.node.add_sink(move |ctx, record| {
            let mut branches = shared.lock();
            for (predicate, node) in branches.iter_mut() {
                if predicate(&record.key, &record.value) {
                    return node.forward(ctx, record);
                }
            }
            Ok(())
        });
        BranchedKStream {
            branches,
            state: Arc::clone(&self.state),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            lineage: self.lineage.clone(),
        }
    }

    /// One stream per predicate (Kafka's older `branch(...)`): each record goes to the first
    /// whose predicate holds, or is dropped.
    pub fn branch(&self, predicates: Vec<Predicate<K, V>>) -> Vec<KStream<K, V>> {
        let mut split = self.split();
        predicates
            .into_iter()
            .map(|predicate| split.branch(predicate))
            .collect()
    }

    /// The records of this stream and of `other`, in the order they arrive.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let mut merged = self
            .derive(|ctx, record, next| next.forward(ctx, record))
            .with_serdes(self.key_serde.clone(), self.value_serde.clone());
        merged.lineage = self.lineage.union(&other.lineage);
        let next = merged.node.clone();
        other
            .node
            .add_sink(move |ctx, record| next.forward(ctx, record));
        merged
    }

    /// Writes every record to `topic`, with its timestamp; the producer's partitioner picks
    /// the partition from the serialized key.
    pub fn to(&self, topic: &str, key_serde: impl Serde<K>, value_serde: impl Serde<V>) {
        self.to_with(topic, Produced::with(key_serde, value_serde));
    }

    /// Writes every record to `topic` as `produced` says (Kafka's `to(topic, Produced)`):
    /// with its serdes, and with its [`StreamPartitioner`](crate::StreamPartitioner) if it
    /// has one, which may drop a record or write it to several partitions. The instance
    /// looks up the partition count of a topic written with a partitioner when it starts,
    /// and refuses to start if the topic does not exist.
    pub fn to_with(&self, topic: &str, produced: Produced<K, V>) {
        let mut state = self.state.lock();
        state.sink_topics.insert(topic.to_string());
        if produced.partitioner.is_some() {
            state.partitioned_sink_topics.insert(topic.to_string());
        }
        drop(state);
        let topic = topic.to_string();
        self.node.add_sink(move |ctx, record| {
            let Produced {
                key_serde,
                value_serde,
                partitioner,
            } = &produced;
            let partitions = match partitioner {
                Some(partitioner) => choose_partitions(
                    &**partitioner,
                    &ctx.partition_counts,
                    &topic,
                    &record.key,
                    &record.value,
                )?,
                None => None,
            };
            let raw = sink_record(&topic, &**key_serde, &**value_serde, &record)?;
            match partitions {
                None => ctx.outputs.push(raw),
                Some(partitions) => {
                    for partition in partitions {
                        ctx.outputs.push(RawRecord {
                            partition,
                            ..raw.clone()
                        });
                    }
                }
            }
            Ok(())
        });
    }

    /// Joins each record with the table's current value for its key (Kafka's
    /// `KStream#join(KTable)`): `joiner(value, table value)` with the stream record's
    /// timestamp; a record whose key the table does not hold is dropped. Table updates do
    /// not trigger output.
    pub fn join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        mut joiner: impl FnMut(&V, &VT) -> VR + Send + 'static,
    ) -> KStream<K, VR> {
        let getter = Arc::clone(&table.getter);
        self.table_side(table, "KSTREAM-JOIN").lookup_join(
            move |key, _| getter(key).map(|(value, _)| value),
            move |value, found| found.map(|found| joiner(value, found)),
        )
    }

    /// Like [`KStream::join_table`], but a record whose key the table does not hold is
    /// joined with `None` (Kafka's `KStream#leftJoin(KTable)`).
    pub fn left_join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        mut joiner: impl FnMut(&V, Option<&VT>) -> VR + Send + 'static,
    ) -> KStream<K, VR> {
        let getter = Arc::clone(&table.getter);
        self.table_side(table, "KSTREAM-LEFTJOIN").lookup_join(
            move |key, _| getter(key).map(|(value, _)| value),
            move |value, found| Some(joiner(value, found)),
        )
    }

    /// Joins each record with the global table's value for the key `key_selector` computes
    /// from the record (Kafka's `KStream#join(GlobalKTable, KeyValueMapper, ValueJoiner)`);
    /// a record whose lookup key the table does not hold is dropped. The result keeps the
    /// stream record's key and timestamp.
    pub fn join_global<GK: Data, VG: Data, VR: Data>(
        &self,
        global: &GlobalKTable<GK, VG>,
        mut key_selector: impl FnMut(&K, &V) -> GK + Send + 'static,
        mut joiner: impl FnMut(&V, &VG) -> VR + Send + 'static,
    ) -> KStream<K, VR> {
        let getter = Arc::clone(&global.getter);
        self.lookup_join(
            move |key, value| getter(&key_selector(key, value)).map(|(found, _)| found),
            move |value, found| found.map(|found| joiner(value, found)),
        )
    }

    /// Like [`KStream::join_global`], but a record whose lookup key the table does not hold
    /// is joined with `None` (Kafka's `KStream#leftJoin(GlobalKTable, ...)`).
    pub fn left_join_global<GK: Data, VG: Data, VR: Data>(
        &self,
        global: &GlobalKTable<GK, VG>,
        mut key_selector: impl FnMut(&K, &V) -> GK + Send + 'static,
        mut joiner: impl FnMut(&V, Option<&VG>) -> VR + Send + 'static,
    ) -> KStream<K, VR> {
        let getter = Arc::clone(&global.getter);
        self.lookup_join(
            move |key, value| getter(&key_selector(key, value)).map(|(found, _)| found),
            move |value, found| Some(joiner(value, found)),
        )
    }

    /// The stream side of a stream-table join: repartitioned if its key changed, and required
    /// co-partitioned with the table's topics.
    fn table_side<VT>(&self, table: &KTable<K, VT>, operator: &str) -> KStream<K, V> {
        let stream = self.repartitioned(operator);
        let mut state = self.state.lock();
        let node = format!("{operator}-{:010}", state.copartition_groups.len() + 1);
        state.copartition(&node, &stream.lineage.union(&table.lineage).sources);
        drop(state);
        stream
    }

    /// The stream through a repartition topic (Kafka's `repartition(Repartitioned)`),
    /// `<application.id>-<name>-repartition` with the name and serdes of `repartitioned`
    /// (the stream's serdes where it has none): records are spread over the topic's
    /// partitions by their serialized key, so the stateful operators after it need no other
    /// repartition.
    pub fn repartition_with(&self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        let name = match repartitioned.name {
            Some(name) => name,
            None => self.state.lock().generated_name("KSTREAM-REPARTITION"),
        };
        let key_serde = repartitioned.key_serde.or_else(|| self.key_serde.clone());
        let value_serde = repartitioned
            .value_serde
            .or_else(|| self.value_serde.clone());
        let node = repartition(
            &self.node,
            &self.state,
            &name,
            key_serde.clone(),
            value_serde.clone(),
            &name,
        );
        KStream {
            node,
            state: Arc::clone(&self.state),
            key_serde,
            value_serde,
            lineage: Lineage::source(&format!("{name}-repartition")),
        }
    }

    /// The stream-table joins: each record looks its partner up (`lookup`), and `joiner`
    /// decides the output from the record's value and the partner found, if any (`None`:
    /// nothing is forwarded). The output keeps the record's key and timestamp.
    fn lookup_join<T, VR: Data>(
        &self,
        mut lookup: impl FnMut(&K, &V) -> Option<T> + Send + 'static,
        mut joiner: impl FnMut(&V, Option<&T>) -> Option<VR> + Send + 'static,
    ) -> KStream<K, VR> {
        self.derive(move |ctx, record, next| {
            let found = lookup(&record.key, &record.value);
            match joiner(&record.value, found.as_ref()) {
                Some(value) => next.forward(
                    ctx,
                    Record {
                        key: record.key,
                        value,
                        timestamp: record.timestamp,
                    },
                ),
                None => Ok(()),
            }
        })
        .with_serdes(self.key_serde.clone(), None)
    }

    /// The windowed inner join with `other` (Kafka's `KStream#join(KStream, ValueJoiner,
    /// JoinWindows)`): a record at `t` joins every record of `other` with the same key and a
    /// timestamp in `[t - before, t + after]` (other's records look the other way), whichever
    /// arrives second triggering `joiner(this, other)`, with the larger timestamp of the
    /// two.
    pub fn join<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        mut joiner: impl FnMut(&V, &VO) -> VR + Send + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR>
    where
        K: Ord,
    {
        let joiner = Box::new(
            move |left: Option<&V>, right: Option<&VO>| match (left, right) {
                (Some(left), Some(right)) => Some(joiner(left, right)),
                _ => None,
            },
        );
        stream_stream_join(self, other, windows, (false, false), joiner)
    }

    /// The windowed left join with `other`: as [`KStream::join`], and a record of this
    /// stream that joined nothing is emitted as `joiner(this, None)` with its own timestamp
    /// once its window has closed (stream time past `t + after + grace`), as Kafka does
    /// since 3.1.
    pub fn left_join<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        mut joiner: impl FnMut(&V, Option<&VO>) -> VR + Send + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR>
    where
        K: Ord,
    {
        let joiner = Box::new(move |left: Option<&V>, right: Option<&VO>| {
            left.map(|left| joiner(left, right))
        });
        stream_stream_join(self, other, windows, (true, false), joiner)
    }

    /// The windowed outer join with `other`: as [`KStream::left_join`] for both sides; a
    /// record of `other` that joined nothing is emitted as `joiner(None, other)` once stream
    /// time passes `t + before + grace`.
    pub fn outer_join<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        mut joiner: impl FnMut(Option<&V>, Option<&VO>) -> VR + Send + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR>
    where
        K: Ord,
    {
        let joiner =
            Box::new(move |left: Option<&V>, right: Option<&VO>| Some(joiner(left, right)));
        stream_stream_join(self, other, windows, (true, true), joiner)
    }

    /// Groups the records by their key, for an aggregation, with the stream's serdes. If
    /// the key was changed upstream (`select_key`, `map`, `flat_map`), the aggregation reads
    /// the records back from a repartition topic, which needs both serdes.
    pub fn group_by_key(&self) -> KGroupedStream<K, V>
    where
        K: Ord,
    {
        self.group_by_key_with(Grouped::default())
    }

    /// [`KStream::group_by_key`] with the serdes (and the repartition topic's name) of
    /// `grouped`, which override the stream's (Kafka's `groupByKey(Grouped)`).
    pub fn group_by_key_with(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V>
    where
        K: Ord,
    {
        KGroupedStream {
            node: self.node.clone(),
            state: Arc::clone(&self.state),
            store_name: None,
            key_serde: grouped.key_serde.or_else(|| self.key_serde.clone()),
            value_serde: grouped.value_serde.or_else(|| self.value_serde.clone()),
            lineage: self.lineage.clone(),
            repartition_name: grouped.name,
        }
    }

    /// Groups the records by a new key computed from each; the aggregation reads them back
    /// from a repartition topic, so records with one key meet in one task. The new key has
    /// no serde: give it with [`KStream::group_by_with`], or the topology is refused.
    pub fn group_by<KR: Data + Ord>(
        &self,
        selector: impl FnMut(&K, &V) -> KR + Send + 'static,
    ) -> KGroupedStream<KR, V> {
        self.group_by_with(selector, Grouped::default())
    }

    /// [`KStream::group_by`] with the serdes (and the repartition topic's name) of `grouped`
    /// (Kafka's `groupBy(KeyValueMapper, Grouped)`).
    pub fn group_by_with<KR: Data + Ord>(
        &self,
        selector: impl FnMut(&K, &V) -> KR + Send + 'static,
        grouped: Grouped<KR, V>,
    ) -> KGroupedStream<KR, V> {
        self.select_key(selector).group_by_key_with(grouped)
    }
}

/// A branch predicate for [`KStream::branch`].
pub type Predicate<K, V> = Box<dyn FnMut(&K, &V) -> bool + Send>;

type Branches<K, V> = Arc<Mutex<Vec<(Predicate<K, V>, Node<K, V>)>>>;

/// A stream being split into branches (Kafka's `BranchedKStream`); see [`KStream::split`].
pub struct BranchedKStream<K, V> {
    branches: Branches<K, V>,
    state: Arc<Mutex<BuilderState>>,
    key_serde: Option<SerdeRef<K>>,
    value_serde: Option<SerdeRef<V>>,
    lineage: Lineage,
}

impl<K, V> std::fmt::Debug for BranchedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchedKStream").finish_non_exhaustive()
    }
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    /// The records that match `predicate` and no earlier branch.
    pub fn branch(
        &mut self,
        predicate: impl FnMut(&K, &V) -> bool + Send + 'static,
    ) -> KStream<K, V> {
        let node = Node::new();
        self.branches
            .lock()
            .push((Box::new(predicate), node.clone()));
        KStream {
            node,
            state: Arc::clone(&self.state),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            lineage: self.lineage.clone(),
        }
    }

    /// The records that match no branch.
    pub fn default_branch(mut self) -> KStream<K, V> {
        self.branch(|_, _| true)
    }
}

/// A stream grouped by key, ready for an aggregation (Kafka's `KGroupedStream`).
pub struct KGroupedStream<K, V> {
    node: Node<K, V>,
    state: Arc<Mutex<BuilderState>>,
    store_name: Option<String>,
    key_serde: Option<SerdeRef<K>>,
    value_serde: Option<SerdeRef<V>>,
    lineage: Lineage,
    /// The repartition topic's name from [`Grouped::named`]; else the store's name.
    repartition_name: Option<String>,
}

/// How a stream is grouped (Kafka's `Grouped`): the serdes of the repartition topic and
/// of the aggregation's store (overriding the stream's), and the repartition topic's name.
pub struct Grouped<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Self {
            name: None,
            key_serde: None,
            value_serde: None,
        }
    }
}

impl<K, V> std::fmt::Debug for Grouped<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouped")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K: 'static, V: 'static> Grouped<K, V> {
    /// With both serdes (Kafka's `Grouped.with(keySerde, valueSerde)`).
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self::default()
            .with_key_serde(key_serde)
            .with_value_serde(value_serde)
    }

    /// The repartition topic `<application.id>-<name>-repartition` (Kafka's
    /// `Grouped.as(name)`); the serdes come from the stream.
    pub fn named(name: &str) -> Self {
        Self::default().with_name(name)
    }

    /// With this key serde only (Kafka's `Grouped.keySerde`).
    pub fn key_serde(key_serde: impl Serde<K>) -> Self {
        Self::default().with_key_serde(key_serde)
    }

    /// With this value serde only (Kafka's `Grouped.valueSerde`).
    pub fn value_serde(value_serde: impl Serde<V>) -> Self {
        Self::default().with_value_serde(value_serde)
    }

    /// Names the repartition topic.
    pub fn with_name(self, name: &str) -> Self {
        Self {
            name: Some(name.to_string()),
            ..self
        }
    }

    /// Sets the key serde.
    pub fn with_key_serde(self, key_serde: impl Serde<K>) -> Self {
        Self {
            key_serde: Some(Arc::new(key_serde)),
            ..self
        }
    }

    /// Sets the value serde.
    pub fn with_value_serde(self, value_serde: impl Serde<V>) -> Self {
        Self {
            value_serde: Some(Arc::new(value_serde)),
            ..self
        }
    }
}

/// How [`KStream::repartition_with`] repartitions (Kafka's `Repartitioned`): the topic's
/// name and serdes, as [`Grouped`] gives them (the partition count is the number of tasks,
/// or that of the user topic the stream is then joined with).
pub type Repartitioned<K, V> = Grouped<K, V>;

/// How an aggregation's result is stored (Kafka's `Materialized`): the store's name and the
/// serdes of its changelog topic (overriding the grouped stream's key serde; the value serde
/// is the aggregate's, which only `count` and `reduce` know without one).
pub struct Materialized<K, V> {
    pub(crate) store_name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    /// A windowed store's retention in ms (Kafka's `Materialized.withRetention`).
    pub(crate) retention_ms: Option<i64>,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Self {
            store_name: None,
            retention_ms: None,
            key_serde: None,
            value_serde: None,
        }
    }
}

impl<K, V> std::fmt::Debug for Materialized<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Materialized")
            .field("store_name", &self.store_name)
            .finish_non_exhaustive()
    }
}

impl<K: 'static, V: 'static> Materialized<K, V> {
    /// The store `store_name` (Kafka's `Materialized.as(storeName)`).
    pub fn as_store(store_name: &str) -> Self {
        Self {
            store_name: Some(store_name.to_string()),
            ..Self::default()
        }
    }

    /// With both serdes (Kafka's `Materialized.with(keySerde, valueSerde)`).
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self::default()
            .with_key_serde(key_serde)
            .with_value_serde(value_serde)
    }

    /// Sets the key serde.
    pub fn with_key_serde(self, key_serde: impl Serde<K>) -> Self {
        Self {
            key_serde: Some(Arc::new(key_serde)),
            ..self
        }
    }

    /// Sets the value serde.
    pub fn with_value_serde(self, value_serde: impl Serde<V>) -> Self {
        Self {
            value_serde: Some(Arc::new(value_serde)),
            ..self
        }
    }

    /// How long a windowed aggregation's store keeps a window (Kafka's
    /// `Materialized.withRetention`), counted back from the latest window start put (for
    /// sessions: the latest session end). The topology is refused when it is less than the
    /// windows need: window size plus grace (time windows), twice the time difference plus
    /// grace (sliding windows), inactivity gap plus grace (sessions). Key-value stores
    /// ignore it.
    pub fn with_retention(self, retention: std::time::Duration) -> Self {
        Self {
            retention_ms: Some(crate::window::duration_ms(retention)),
            ..self
        }
    }
}

impl<K, V> std::fmt::Debug for KGroupedStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedStream")
            .field("store_name", &self.store_name)
            .finish()
    }
}

/// How an aggregation updates a key's aggregate with a new record.
pub(crate) type Update<K, V, VR> = Box<dyn FnMut(&K, V, Option<VR>) -> VR + Send>;

/// `reduce`'s update: a key's first value is its first aggregate.
pub(crate) fn reducing<K, V: 'static>(
    mut reducer: impl FnMut(V, V) -> V + Send + 'static,
) -> Update<K, V, V> {
    Box::new(move |_, value, aggregate| match aggregate {
        Some(aggregate) => reducer(aggregate, value),
        None => value,
    })
}

/// `aggregate`'s update on store keys `SK` (the record key, or it windowed): the aggregate
/// starts at `initializer()` and the aggregator sees the record key `key_of` gives.
pub(crate) fn folding<SK, K, V: 'static, VR: 'static>(
    mut initializer: impl FnMut() -> VR + Send + 'static,
    mut aggregator: impl FnMut(&K, V, VR) -> VR + Send + 'static,
    key_of: impl Fn(&SK) -> &K + Send + 'static,
) -> Update<SK, V, VR> {
    Box::new(move |key, value, aggregate| {
        let aggregate = aggregate.unwrap_or_else(&mut initializer);
        aggregator(key_of(key), value, aggregate)
    })
}

impl<K: Data + Ord, V: Data> KGroupedStream<K, V> {
    /// Names the state store of the aggregation that follows (Kafka's `Materialized.as`);
    /// otherwise it gets a generated name, [`KTable::store_name`].
    pub fn materialized_as(self, store_name: &str) -> Self {
        Self {
            store_name: Some(store_name.to_string()),
            ..self
        }
    }

    /// The number of records per key.
    pub fn count(&self) -> KTable<K, i64> {
        self.count_with(Materialized::default())
    }

    /// [`KGroupedStream::count`] into the store `materialized` describes (its value serde is
    /// [`I64Serde`] unless given).
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let materialized = Materialized {
            value_serde: materialized
                .value_serde
                .or_else(|| Some(Arc::new(I64Serde))),
            ..materialized
        };
        self.aggregation(
            folding(|| 0, |_, _, count| count + 1, |key: &K| key),
            materialized,
        )
    }

    /// Combines each key's values with `reducer(aggregate, value)`; a key's first value is
    /// its first aggregate. The store's changelog uses the stream's value serde.
    pub fn reduce(&self, reducer: impl FnMut(V, V) -> V + Send + 'static) -> KTable<K, V> {
        self.reduce_with(reducer, Materialized::default())
    }

    /// [`KGroupedStream::reduce`] into the store `materialized` describes.
    pub fn reduce_with(
        &self,
        reducer: impl FnMut(V, V) -> V + Send + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let materialized = Materialized {
            value_serde: materialized
                .value_serde
                .or_else(|| self.value_serde.clone()),
            ..materialized
        };
        self.aggregation(reducing(reducer), materialized)
    }

    /// Folds each key's values into an aggregate that starts at `initializer()`, with
    /// `aggregator(key, value, aggregate)`. The aggregate has no serde for the store's
    /// changelog: give one with [`KGroupedStream::aggregate_with`], or the topology is
    /// refused.
    pub fn aggregate<VR: Data>(
        &self,
        initializer: impl FnMut() -> VR + Send + 'static,
        aggregator: impl FnMut(&K, V, VR) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.aggregate_with(initializer, aggregator, Materialized::default())
    }

    /// [`KGroupedStream::aggregate`] into the store `materialized` describes (Kafka's
    /// `aggregate(Initializer, Aggregator, Materialized)`).
    pub fn aggregate_with<VR: Data>(
        &self,
        initializer: impl FnMut() -> VR + Send + 'static,
        aggregator: impl FnMut(&K, V, VR) -> VR + Send + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        self.aggregation(
            folding(initializer, aggregator, |key: &K| key),
            materialized,
        )
    }

    /// Aggregates per key and per time window (tumbling or hopping).
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        self.time_windowed(TimeWindowing::Time(windows))
    }

    /// Aggregates per key and per sliding window (Kafka's `windowedBy(SlidingWindows)`).
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> TimeWindowedKStream<K, V> {
        self.time_windowed(TimeWindowing::Sliding(windows))
    }

    /// Aggregates per key and per session (Kafka's `windowedBy(SessionWindows)`).
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        let (node, store_name) = self.windowed_input();
        SessionWindowedKStream {
            node,
            state: Arc::clone(&self.state),
            store_name,
            windows,
            retention_ms: None,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }

    fn time_windowed(&self, windows: TimeWindowing) -> TimeWindowedKStream<K, V> {
        let (node, store_name) = self.windowed_input();
        TimeWindowedKStream {
            node,
            state: Arc::clone(&self.state),
            store_name,
            windows,
            retention_ms: None,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }

    /// The input of a windowed aggregation and its store's name: when a repartition is
    /// needed, the store's name is fixed now, since the repartition topic is named after it.
    fn windowed_input(&self) -> (Node<K, V>, Option<String>) {
        if !self.lineage.repartition_required {
            return (self.node.clone(), self.store_name.clone());
        }
        let store_name = self.store_name_or_generated();
        (self.input(&store_name), Some(store_name))
    }

    fn store_name_or_generated(&self) -> String {
        self.store_name.clone().unwrap_or_else(|| {
            self.state
                .lock()
                .generated_name("KSTREAM-AGGREGATE-STATE-STORE")
        })
    }

    /// The records the aggregation into `store_name` sees: read back from a repartition topic
    /// when the key was changed upstream, so every record of a key reaches one task.
    fn input(&self, store_name: &str) -> Node<K, V> {
        if !self.lineage.repartition_required {
            if self.lineage.sources.len() > 1 {
                // One store fed by several topics needs a key's records from all in one task.
                self.state
                    .lock()
                    .copartition(store_name, &self.lineage.sources);
            }
            return self.node.clone();
        }
        repartition(
            &self.node,
            &self.state,
            self.repartition_name.as_deref().unwrap_or(store_name),
            self.key_serde.clone(),
            self.value_serde.clone(),
            store_name,
        )
    }

    fn aggregation<VR: Data>(
        &self,
        update: Update<K, V, VR>,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        let store_name = materialized
            .store_name
            .unwrap_or_else(|| self.store_name_or_generated());
        let input = self.input(&store_name);
        let key_serde = materialized.key_serde.or_else(|| self.key_serde.clone());
        let logging = match (key_serde, materialized.value_serde) {
            (Some(key_serde), Some(value_serde)) => Some((key_serde, value_serde)),
            (key_serde, value_serde) => {
                let missing = match (key_serde.is_none(), value_serde.is_none()) {
                    (true, true) => "a key serde and a value serde",
                    (true, false) => "a key serde",
                    _ => "a value serde",
                };
                self.state.lock().errors.push(format!(
                    "{store_name}: the aggregation's store needs {missing} for its changelog \
                     topic {store_name}-changelog (give them with Grouped::with or \
                     Materialized::with)"
                ));
                None
            }
        };
        let value_serde = logging
            .as_ref()
            .map(|(_, value_serde)| Arc::clone(value_serde));
        let mut table = aggregate_into_store(
            &input,
            &self.state,
            Some(store_name.clone()),
            update,
            None,
            logging,
        );
        table.key_serde = self.key_serde.clone();
        table.value_serde = value_serde;
        // The table's records come from the topics read by the aggregation: joins with it
        // need them co-partitioned.
        table.lineage = if self.lineage.repartition_required {
            let name = self.repartition_name.as_deref().unwrap_or(&store_name);
            Lineage::source(&format!("{name}-repartition"))
        } else {
            self.lineage.clone()
        };
        table
    }
}

/// Sends the records of `node` through the repartition topic `<name>-repartition` (written
/// by a sink, read by a new source) and returns the source's node. The sink leaves the
/// partition to the producer's default partitioner on the serialized key (murmur2), so
/// records with one key meet in one task. Without both serdes the topology is refused,
/// naming `operator`.
pub(crate) fn repartition<K: Data, V: Data>(
    node: &Node<K, V>,
    state: &Arc<Mutex<BuilderState>>,
    name: &str,
    key_serde: Option<SerdeRef<K>>,
    value_serde: Option<SerdeRef<V>>,
    operator: &str,
) -> Node<K, V> {
    let topic = format!("{name}-repartition");
    let (key_serde, value_serde) = match (key_serde, value_serde) {
        (Some(key_serde), Some(value_serde)) => (key_serde, value_serde),
        (key_serde, _) => {
            let missing = if key_serde.is_none() { "key" } else { "value" };
            state.lock().errors.push(format!(
                "{operator}: the key was changed upstream (select_key, map, flat_map or \
                 group_by), so records go through the repartition topic {topic}, which needs a \
                 {missing} serde (give it with Grouped::with / group_by_with)"
            ));
            return node.clone();
        }
    };
    let (keys, values) = (Arc::clone(&key_serde), Arc::clone(&value_serde));
    let sink_topic = topic.clone();
    node.add_sink(move |ctx, record| {
        ctx.outputs
            .push(sink_record(&sink_topic, &keys, &values, &record)?);
        Ok(())
    });
    let read = Node::new();
    let next = read.clone();
    let source = Box::new(move |ctx: &mut Context, raw: &RawRecord| {
        let failed = |part, source| deserialize_failed(raw, part, source);
        let key = key_serde
            .deserialize_nullable(raw.key.as_deref())
            .map_err(|e| failed("key", e))?;
        let value = value_serde
            .deserialize_nullable(raw.value.as_deref())
            .map_err(|e| failed("value", e))?;
        // Not counted in process_total: the record was counted when it entered from its
        // user topic.
        ctx.observe(&raw.topic, raw.timestamp);
        next.forward(
            ctx,
            Record {
                key,
                value,
                timestamp: raw.timestamp,
            },
        )
    });
    let mut state = state.lock();
    state.add_source(&topic, source);
    state.internal_topics.insert(InternalTopic {
        name: topic,
        kind: InternalTopicKind::Repartition,
    });
    read
}

/// Registers `store` under `store_name`, or a generated name; returns the name.
pub(crate) fn register_store<K: Send + 'static, V: Send + 'static>(
    state: &Arc<Mutex<BuilderState>>,
    store_name: Option<String>,
    store: &SharedStore<K, V>,
) -> String {
    let mut state = state.lock();
    let name = store_name.unwrap_or_else(|| state.generated_name("KSTREAM-AGGREGATE-STATE-STORE"));
    state.add_store(&name, Arc::new(Arc::clone(store)));
    name
}

/// Registers an in-memory store and an aggregation over `node` that keeps one aggregate per
/// store key, and forwards each updated aggregate with the largest timestamp that went into
/// it (Kafka's semantics since KIP-258). `grace_ms` is the windows' grace period for a
/// windowed aggregation.
///
/// With `logging` (the store's key and value serdes), every update is also written to the
/// store's changelog topic.
pub(crate) fn aggregate_into_store<K: Data + Ord, V: Data, VR: Data>(
    node: &Node<K, V>,
    state: &Arc<Mutex<BuilderState>>,
    store_name: Option<String>,
    update: Update<K, V, VR>,
    grace_ms: Option<i64>,
    logging: Option<(SerdeRef<K>, SerdeRef<VR>)>,
) -> KTable<K, VR> {
    let store: SharedStore<K, VR> = crate::store::new_store();
    let name = register_store(state, store_name, &store);
    if let Some((key_serde, value_serde)) = &logging {
        register_persistent_store(
            &mut state.lock(),
            &name,
            &store,
            (Arc::clone(key_serde), Arc::clone(value_serde)),
            ValueFormat::Timestamped,
        );
    }
    aggregate_into(node, state, name, &store, update, grace_ms, logging)
}

/// [`aggregate_into_store`] with the store made and registered as `name` by the caller.
pub(crate) fn aggregate_into<K: Data + Ord, V: Data, VR: Data>(
    node: &Node<K, V>,
    state: &Arc<Mutex<BuilderState>>,
    name: String,
    store: &SharedStore<K, VR>,
    mut update: Update<K, V, VR>,
    grace_ms: Option<i64>,
    logging: Option<(SerdeRef<K>, SerdeRef<VR>)>,
) -> KTable<K, VR> {
    let changelog = logging.map(|(key_serde, value_serde)| {
        let topic = logged_store(
            &mut state.lock(),
            &name,
            store,
            Arc::clone(&key_serde),
            Arc::clone(&value_serde),
            ValueFormat::Timestamped,
        );
        (topic, key_serde, value_serde)
    });
    let table = Node::new();
    let next = table.clone();
    let shared = Arc::clone(store);
    node.add_sink(move |ctx, record| {
        let key = record.key;
        let (value, old, timestamp) = {
            let (old, (value, timestamp)) = shared.lock().update(key.clone(), |previous| {
                let (previous, previous_timestamp) = match previous {
                    Some((value, timestamp)) => (Some(value.clone()), *timestamp),
                    None => (None, record.timestamp),
                };
                let value = update(&key, record.value, previous);
                (value, previous_timestamp.max(record.timestamp))
            });
            (value, old.map(|(value, _)| value), timestamp)
        };
        if let Some((topic, key_serde, value_serde)) = &changelog {
            write_changelog(
                ctx,
                topic,
                &**key_serde,
                &**value_serde,
                &key,
                Some(&value),
                timestamp,
            )?;
        }
        next.forward(
            ctx,
            Record {
                key,
                value: Change {
                    new: Some(value),
                    old,
                },
                timestamp,
            },
        )
    });
    KTable::materialized(table, state, name, Arc::clone(store), grace_ms)
}

/// The output record a sink writes to `topic` for `record` (the producer's partitioner picks
/// its partition).
fn sink_record<K, V>(
    topic: &str,
    key_serde: &(impl Serde<K> + ?Sized),
    value_serde: &(impl Serde<V> + ?Sized),
    record: &Record<K, V>,
) -> Result<RawRecord, Error> {
    let failed = |part, source| Error::Serialize {
        topic: topic.to_string(),
        part,
        source: Box::new(source),
    };
    let key = key_serde
        .serialize_nullable(&record.key)
        .map_err(|e| failed("key", e))?;
    let value = value_serde
        .serialize_nullable(&record.value)
        .map_err(|e| failed("value", e))?;
    Ok(RawRecord {
        topic: topic.to_string(),
        partition: -1,
        offset: -1,
        key: key.map(Into::into),
        value: value.map(Into::into),
        timestamp: record.timestamp,
    })
}
