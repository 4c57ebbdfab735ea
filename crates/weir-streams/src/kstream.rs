//! The DSL: [`StreamsBuilder`] makes streams and tables from topics; [`KStream`] transforms
//! them, branches, merges, joins and writes them to topics; [`KGroupedStream`] and the
//! windowed streams aggregate them into [`KTable`]s backed by state stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::Error;
use crate::join::stream_stream_join;
use crate::ktable::{Change, GlobalKTable, KTable};
use crate::serdes::Serde;
use crate::store::SharedStore;
use crate::topology::{BuilderState, Context, Data, Node, RawRecord, Record, Topology};
use crate::window::{JoinWindows, SessionWindows, SlidingWindows, TimeWindows};
use crate::windowed::{SessionWindowedKStream, TimeWindowedKStream, TimeWindowing};

/// Gives a record its event time (Kafka's `TimestampExtractor`). The default,
/// [`RecordTimestamp`], takes the Kafka record's own timestamp. A negative result skips the
/// record (Kafka's `LogAndSkipOnInvalidTimestamp`), counted in
/// [`TaskMetrics::dropped_invalid_timestamp`](crate::TaskMetrics::dropped_invalid_timestamp).
pub trait TimestampExtractor<K, V>: Send + 'static {
    /// The event time of a record with this key and value; `record_timestamp` is the Kafka
    /// record's timestamp and `stream_time` the largest timestamp the task has seen (`-1`
    /// before the first record).
    fn extract(&mut self, key: &K, value: &V, record_timestamp: i64, stream_time: i64) -> i64;
}

/// The Kafka record's timestamp (Kafka's `FailOnInvalidTimestamp`, but skipping instead of
/// failing).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordTimestamp;

impl<K, V> TimestampExtractor<K, V> for RecordTimestamp {
    fn extract(&mut self, _key: &K, _value: &V, record_timestamp: i64, _stream_time: i64) -> i64 {
        record_timestamp
    }
}

/// Any `FnMut(&key, &value, record_timestamp) -> timestamp` is an extractor.
impl<K, V, F> TimestampExtractor<K, V> for F
where
    F: FnMut(&K, &V, i64) -> i64 + Send + 'static,
{
    fn extract(&mut self, key: &K, value: &V, record_timestamp: i64, _stream_time: i64) -> i64 {
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
        let node = Node::new();
        let next = node.clone();
        let source = Box::new(move |ctx: &mut Context, raw: &RawRecord| {
            let failed = |part, source| deserialize_failed(raw, part, source);
            let key = key_serde
                .deserialize_nullable(raw.key.as_deref())
                .map_err(|e| failed("key", e))?;
            let value = value_serde
                .deserialize_nullable(raw.value.as_deref())
                .map_err(|e| failed("value", e))?;
            let timestamp = extractor.extract(&key, &value, raw.timestamp, ctx.stream_time);
            if timestamp < 0 {
                ctx.metrics.dropped_invalid_timestamp += 1;
                return Ok(());
            }
            ctx.metrics.process_total += 1;
            ctx.stream_time = ctx.stream_time.max(timestamp);
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
        let node: Node<K, Change<V>> = Node::new();
        let next = node.clone();
        let shared = Arc::clone(&store);
        let source = Box::new(move |ctx: &mut Context, raw: &RawRecord| {
            let Some((key, value)) = table_record(raw, &key_serde, &value_serde, "table")? else {
                return Ok(());
            };
            if raw.timestamp < 0 {
                ctx.metrics.dropped_invalid_timestamp += 1;
                return Ok(());
            }
            ctx.metrics.process_total += 1;
            ctx.stream_time = ctx.stream_time.max(raw.timestamp);
            let old = {
                let mut entries = shared.lock();
                match &value {
                    Some(value) => entries.insert(key.clone(), (value.clone(), raw.timestamp)),
                    None => entries.remove(&key),
                }
                .map(|(old, _)| old)
            };
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
        KTable::materialized(node, &self.state, name, store, None)
    }

    /// The records of `topic` as a [`GlobalKTable`] (Kafka's `StreamsBuilder#globalTable`),
    /// in a key-value store named `<topic>-STATE-STORE-<n>`; a null value deletes the key.
    /// Unlike Kafka, which reads a global topic to its end before processing anything, the
    /// runtime reads it alongside the other topics.
    pub fn global_table<K: Data + Ord, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<Option<V>>,
    ) -> GlobalKTable<K, V> {
        let (store, name) = self.table_store(topic);
        let shared = Arc::clone(&store);
        let source = Box::new(move |_: &mut Context, raw: &RawRecord| {
            let Some((key, value)) = table_record(raw, &key_serde, &value_serde, "global table")?
            else {
                return Ok(());
            };
            let mut entries = shared.lock();
            match value {
                Some(value) => entries.insert(key, (value, raw.timestamp)),
                None => entries.remove(&key),
            };
            Ok(())
        });
        self.state.lock().add_source(topic, source);
        GlobalKTable {
            getter: Arc::new(move |key: &K| store.lock().get(key).cloned()),
            store_name: name,
        }
    }

    /// A new key-value store for a table read from `topic`, registered under a generated name.
    fn table_store<K: Data + Ord, V: Data>(&self, topic: &str) -> (SharedStore<K, V>, String) {
        let store: SharedStore<K, V> = Arc::new(Mutex::new(BTreeMap::new()));
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
            sink_topics: state.sink_topics,
            processors: state.processors,
        })
    }
}

/// A table topic's record as (key, new value or `None` for a tombstone); `None` for a record
/// without a key, which tables skip (logged), as Kafka does.
fn table_record<K, V>(
    raw: &RawRecord,
    key_serde: &impl Serde<K>,
    value_serde: &impl Serde<Option<V>>,
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

fn deserialize_failed(raw: &RawRecord, part: &'static str, source: Error) -> Error {
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
pub struct KStream<K, V> {
    pub(crate) node: Node<K, V>,
    pub(crate) state: Arc<Mutex<BuilderState>>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            state: Arc::clone(&self.state),
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
        KStream {
            node: child,
            state: Arc::clone(&self.state),
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
    }

    /// The same records, after `action` has seen each (logging, metrics).
    pub fn peek(&self, mut action: impl FnMut(&K, &V) + Send + 'static) -> KStream<K, V> {
        self.derive(move |ctx, record, next| {
            action(&record.key, &record.value);
            next.forward(ctx, record)
        })
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
        let merged = self.derive(|ctx, record, next| next.forward(ctx, record));
        let next = merged.node.clone();
        other
            .node
            .add_sink(move |ctx, record| next.forward(ctx, record));
        merged
    }

    /// Writes every record to `topic`, with its timestamp; the producer's partitioner picks
    /// the partition from the serialized key.
    pub fn to(&self, topic: &str, key_serde: impl Serde<K>, value_serde: impl Serde<V>) {
        self.state.lock().sink_topics.insert(topic.to_string());
        let topic = topic.to_string();
        self.node.add_sink(move |ctx, record| {
            let failed = |part, source| Error::Serialize {
                topic: topic.clone(),
                part,
                source: Box::new(source),
            };
            let key = key_serde
                .serialize_nullable(&record.key)
                .map_err(|e| failed("key", e))?;
            let value = value_serde
                .serialize_nullable(&record.value)
                .map_err(|e| failed("value", e))?;
            ctx.outputs.push(RawRecord {
                topic: topic.clone(),
                partition: -1,
                offset: -1,
                key: key.map(Into::into),
                value: value.map(Into::into),
                timestamp: record.timestamp,
            });
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
        self.lookup_join(
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
        self.lookup_join(
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

    /// Groups the records by their key, for an aggregation.
    pub fn group_by_key(&self) -> KGroupedStream<K, V>
    where
        K: Ord,
    {
        KGroupedStream {
            node: self.node.clone(),
            state: Arc::clone(&self.state),
            store_name: None,
        }
    }

    /// Groups the records by a new key computed from each. There is no repartition topic
    /// yet: the aggregation sees the records of this task only (see the crate docs).
    pub fn group_by<KR: Data + Ord>(
        &self,
        selector: impl FnMut(&K, &V) -> KR + Send + 'static,
    ) -> KGroupedStream<KR, V> {
        self.select_key(selector).group_by_key()
    }
}

/// A branch predicate for [`KStream::branch`].
pub type Predicate<K, V> = Box<dyn FnMut(&K, &V) -> bool + Send>;

type Branches<K, V> = Arc<Mutex<Vec<(Predicate<K, V>, Node<K, V>)>>>;

/// A stream being split into branches (Kafka's `BranchedKStream`); see [`KStream::split`].
pub struct BranchedKStream<K, V> {
    branches: Branches<K, V>,
    state: Arc<Mutex<BuilderState>>,
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
        self.aggregate(|| 0, |_, _, count| count + 1)
    }

    /// Combines each key's values with `reducer(aggregate, value)`; a key's first value is
    /// its first aggregate.
    pub fn reduce(&self, reducer: impl FnMut(V, V) -> V + Send + 'static) -> KTable<K, V> {
        self.aggregation(reducing(reducer))
    }

    /// Folds each key's values into an aggregate that starts at `initializer()`, with
    /// `aggregator(key, value, aggregate)`.
    pub fn aggregate<VR: Data>(
        &self,
        initializer: impl FnMut() -> VR + Send + 'static,
        aggregator: impl FnMut(&K, V, VR) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.aggregation(folding(initializer, aggregator, |key: &K| key))
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
        SessionWindowedKStream {
            node: self.node.clone(),
            state: Arc::clone(&self.state),
            store_name: self.store_name.clone(),
            windows,
        }
    }

    fn time_windowed(&self, windows: TimeWindowing) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            node: self.node.clone(),
            state: Arc::clone(&self.state),
            store_name: self.store_name.clone(),
            windows,
        }
    }

    fn aggregation<VR: Data>(&self, update: Update<K, V, VR>) -> KTable<K, VR> {
        aggregate_into_store(
            &self.node,
            &self.state,
            self.store_name.clone(),
            update,
            None,
        )
    }
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
pub(crate) fn aggregate_into_store<K: Data + Ord, V: Data, VR: Data>(
    node: &Node<K, V>,
    state: &Arc<Mutex<BuilderState>>,
    store_name: Option<String>,
    mut update: Update<K, V, VR>,
    grace_ms: Option<i64>,
) -> KTable<K, VR> {
    let store: SharedStore<K, VR> = Arc::new(Mutex::new(BTreeMap::new()));
    let name = register_store(state, store_name, &store);
    let table = Node::new();
    let next = table.clone();
    let shared = Arc::clone(&store);
    node.add_sink(move |ctx, record| {
        let key = record.key;
        let (value, old, timestamp) = {
            let mut entries = shared.lock();
            let (previous, previous_timestamp) = match entries.remove(&key) {
                Some((value, timestamp)) => (Some(value), timestamp),
                None => (None, record.timestamp),
            };
            let value = update(&key, record.value, previous.clone());
            let timestamp = previous_timestamp.max(record.timestamp);
            entries.insert(key.clone(), (value.clone(), timestamp));
            (value, previous, timestamp)
        };
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
    KTable::materialized(table, state, name, store, grace_ms)
}
