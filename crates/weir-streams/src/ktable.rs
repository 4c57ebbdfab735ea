//! [`KTable`]: a changelog stream held in a state store, its operators (filter, map_values,
//! to_stream), table-table joins, and suppress ("emit final results") for windowed tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::Error;
use crate::fk_join::TableJoined;
use crate::kstream::KStream;
use crate::store::{SharedStore, log_change, register_changelog, serialize_failed, serialize_key};
use crate::topology::{BuilderState, Context, Data, Lineage, Node, Record, Restorer, SerdeRef};
use crate::window::Windowed;

/// An update of one key of a table: the new value (`None`: the key was deleted, a tombstone)
/// and the value it replaced, which left and outer joins need to tell a deletion of a key
/// they emitted from one they never saw (Kafka's `Change`, with old values always sent).
#[derive(Debug, Clone)]
pub(crate) struct Change<V> {
    pub(crate) new: Option<V>,
    pub(crate) old: Option<V>,
}

/// Reads a table's current value and its timestamp by key (Kafka's `KTableValueGetter`):
/// joins look the other side up through it.
pub(crate) type Getter<K, V> = Arc<dyn Fn(&K) -> Option<(V, i64)> + Send + Sync>;

/// A changelog stream (Kafka's `KTable`): the latest value per key. Every update is forwarded
/// downstream as it happens (Kafka Streams with record caching off); a deleted key is
/// forwarded as a tombstone (`None`).
pub struct KTable<K, V> {
    pub(crate) node: Node<K, Change<V>>,
    pub(crate) state: Arc<Mutex<BuilderState>>,
    pub(crate) store_name: Option<String>,
    pub(crate) getter: Getter<K, V>,
    /// The grace period of the windowed aggregation upstream, which suppress needs.
    pub(crate) grace_ms: Option<i64>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) lineage: Lineage,
    /// Whether its updates carry the replaced value (`Change::old`), which a regrouping
    /// subtracts: a join's result and a suppression's do not.
    pub(crate) old_values: bool,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            state: Arc::clone(&self.state),
            store_name: self.store_name.clone(),
            getter: Arc::clone(&self.getter),
            grace_ms: self.grace_ms,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            lineage: self.lineage.clone(),
            old_values: self.old_values,
        }
    }
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KTable")
            .field("store_name", &self.store_name)
            .finish_non_exhaustive()
    }
}

impl<K: Data + Ord, V: Data> KTable<K, V> {
    /// A table materialized in `store`, whose updates arrive on `node`.
    pub(crate) fn materialized(
        node: Node<K, Change<V>>,
        state: &Arc<Mutex<BuilderState>>,
        store_name: String,
        store: SharedStore<K, V>,
        grace_ms: Option<i64>,
    ) -> Self {
        Self {
            node,
            state: Arc::clone(state),
            store_name: Some(store_name),
            getter: Arc::new(move |key: &K| store.lock().get(key)),
            grace_ms,
            key_serde: None,
            value_serde: None,
            lineage: Lineage::default(),
            old_values: true,
        }
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    /// The name of the state store behind the table (Kafka's `queryableStoreName`); `None`
    /// for a table computed from another (filter, map_values, joins), which has no store of
    /// its own.
    pub fn store_name(&self) -> Option<&str> {
        self.store_name.as_deref()
    }

    /// The table's updates as a stream; a deleted key comes as `None` (Kafka's null value).
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let node = Node::new();
        let next = node.clone();
        self.node.add_sink(move |ctx, record| {
            next.forward(
                ctx,
                Record {
                    key: record.key,
                    value: record.value.new,
                    timestamp: record.timestamp,
                },
            )
        });
        let mut stream = KStream::on(node, &self.state, self.lineage.clone());
        stream.key_serde = self.key_serde.clone();
        stream
    }

    /// A table computed from this one (no store of its own), fed by `process`.
    fn derive<VR: Data>(
        &self,
        getter: Getter<K, VR>,
        mut process: impl FnMut(Change<V>) -> Change<VR> + Send + 'static,
    ) -> KTable<K, VR> {
        let node = Node::new();
        let next = node.clone();
        self.node.add_sink(move |ctx, record| {
            let value = process(record.value);
            next.forward(
                ctx,
                Record {
                    key: record.key,
                    value,
                    timestamp: record.timestamp,
                },
            )
        });
        KTable {
            node,
            state: Arc::clone(&self.state),
            store_name: None,
            getter,
            grace_ms: self.grace_ms,
            key_serde: self.key_serde.clone(),
            value_serde: None,
            lineage: self.lineage.clone(),
            old_values: self.old_values,
        }
    }

    /// The entries for which `predicate` holds. An update that fails it is forwarded as a
    /// tombstone for its key, as Kafka's `KTable#filter` does when old values are not
    /// sent: downstream, the key is not in the filtered table.
    pub fn filter(&self, predicate: impl FnMut(&K, &V) -> bool + Send + 'static) -> KTable<K, V> {
        // The processor and the getter both apply the predicate.
        let predicate = Arc::new(Mutex::new(predicate));
        let shared = Arc::clone(&predicate);
        let parent = Arc::clone(&self.getter);
        let getter: Getter<K, V> =
            Arc::new(move |key: &K| parent(key).filter(|(value, _)| (shared.lock())(key, value)));
        let node = Node::new();
        let next = node.clone();
        self.node.add_sink(move |ctx, record| {
            let key = record.key;
            let (new, old) = {
                let mut predicate = predicate.lock();
                (
                    record.value.new.filter(|value| (*predicate)(&key, value)),
                    record.value.old.filter(|value| (*predicate)(&key, value)),
                )
            };
            next.forward(
                ctx,
                Record {
                    key,
                    value: Change { new, old },
                    timestamp: record.timestamp,
                },
            )
        });
        KTable {
            node,
            state: Arc::clone(&self.state),
            store_name: None,
            getter,
            grace_ms: self.grace_ms,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            lineage: self.lineage.clone(),
            old_values: self.old_values,
        }
    }

    /// The table with each value mapped; tombstones stay tombstones. The mapper should be a
    /// pure function: it also runs on lookups by joins and on replaced values.
    pub fn map_values<VR: Data>(
        &self,
        mapper: impl FnMut(V) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        let mapper = Arc::new(Mutex::new(mapper));
        let shared = Arc::clone(&mapper);
        let parent = Arc::clone(&self.getter);
        let getter: Getter<K, VR> = Arc::new(move |key: &K| {
            parent(key).map(|(value, timestamp)| ((shared.lock())(value), timestamp))
        });
        self.derive(getter, move |change| {
            let mut mapper = mapper.lock();
            Change {
                new: change.new.map(&mut *mapper),
                old: change.old.map(&mut *mapper),
            }
        })
    }

    /// The inner join with `other` on the key (Kafka's `KTable#join`): an update on either
    /// side emits `joiner(this, other)` when both sides have the key, and a tombstone when
    /// one side deletes a key the other side has. The result's timestamp is the larger of
    /// the two sides'.
    pub fn join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        mut joiner: impl FnMut(&V, &VO) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, (true, true), move |left, right| {
            match (left, right) {
                (Some(left), Some(right)) => Some(joiner(left, right)),
                _ => None,
            }
        })
    }

    /// The left join with `other` (Kafka's `KTable#leftJoin`): every key of this table is in
    /// the result, with `joiner(this, None)` while `other` does not have it; an update on
    /// `other` re-emits the keys this table has.
    pub fn left_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        mut joiner: impl FnMut(&V, Option<&VO>) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, (true, false), move |left, right| {
            left.map(|left| joiner(left, right))
        })
    }

    /// The outer join with `other` (Kafka's `KTable#outerJoin`): every key of either table
    /// is in the result; a tombstone once both sides have deleted it.
    pub fn outer_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        mut joiner: impl FnMut(Option<&V>, Option<&VO>) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, (false, false), move |left, right| {
            Some(joiner(left, right))
        })
    }

    /// Both sides of a table-table join. `required` says which sides must hold the key for
    /// a result (inner: both; left: this one; outer: neither); the joiner returns `None`
    /// only when a required side is missing.
    fn table_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        required: (bool, bool),
        joiner: impl FnMut(Option<&V>, Option<&VO>) -> Option<VR> + Send + 'static,
    ) -> KTable<K, VR> {
        let joiner = Arc::new(Mutex::new(joiner));
        let node: Node<K, Change<VR>> = Node::new();

        let (left_getter, right_getter) = (Arc::clone(&self.getter), Arc::clone(&other.getter));
        let shared = Arc::clone(&joiner);
        let getter: Getter<K, VR> = Arc::new(move |key: &K| {
            let left = left_getter(key);
            let right = right_getter(key);
            if (required.0 && left.is_none()) || (required.1 && right.is_none()) {
                return None;
            }
            let timestamp = match (&left, &right) {
                (Some((_, l)), Some((_, r))) => (*l).max(*r),
                (Some((_, t)), None) | (None, Some((_, t))) => *t,
                (None, None) => return None,
            };
            let value = (shared.lock())(left.as_ref().map(|l| &l.0), right.as_ref().map(|r| &r.0));
            value.map(|value| (value, timestamp))
        });

        // An update of the left side, looked up against the right, and the other way round.
        let right_getter = Arc::clone(&other.getter);
        let shared = Arc::clone(&joiner);
        let next = node.clone();
        self.node.add_sink(move |ctx, record| {
            let other = right_getter(&record.key);
            let joined = join_update(record.value, other, record.timestamp, required, |l, r| {
                (shared.lock())(l, r)
            });
            match joined {
                Some((value, timestamp)) => next.forward(
                    ctx,
                    Record {
                        key: record.key,
                        value,
                        timestamp,
                    },
                ),
                None => Ok(()),
            }
        });
        let left_getter = Arc::clone(&self.getter);
        let next = node.clone();
        other.node.add_sink(move |ctx, record| {
            let other = left_getter(&record.key);
            let joined = join_update(
                record.value,
                other,
                record.timestamp,
                (required.1, required.0),
                |r, l| (joiner.lock())(l, r),
            );
            match joined {
                Some((value, timestamp)) => next.forward(
                    ctx,
                    Record {
                        key: record.key,
                        value,
                        timestamp,
                    },
                ),
                None => Ok(()),
            }
        });
        let lineage = self.lineage.union(&other.lineage);
        {
            let mut state = self.state.lock();
            let name = format!("KTABLE-JOIN-{:010}", state.copartition_groups.len() + 1);
            state.copartition(&name, &lineage.sources);
        }
        KTable {
            node,
            state: Arc::clone(&self.state),
            store_name: None,
            getter,
            grace_ms: None,
            key_serde: self.key_serde.clone(),
            value_serde: None,
            lineage,
            old_values: false,
        }
    }
}

impl<K: Data + Ord, V: Data> KTable<K, V> {
    /// The inner foreign-key join with `other` (Kafka's `KTable#join(other,
    /// foreignKeyExtractor, joiner)`): each row of this table joins the row of `other` whose
    /// key `extractor` takes from its value; the result is keyed by this table's key. The
    /// tables need no co-partitioning: subscriptions and answers go through two internal
    /// topics, as in Kafka (see the crate's *Joins*). A new row emits its joined row if
    /// `other` holds the foreign key; an updated row emits it, or (when it moved to a
    /// foreign key `other` lacks) a tombstone for the result it may have had; a deleted row
    /// emits a tombstone. An update of `other` re-emits every row of this table that refers
    /// to it (a tombstone when `other` deleted it). Results carry the left record's
    /// timestamp, or the right row's when later. Needs this table's key serde and `other`'s
    /// key and value serdes.
    ///
    /// `extractor` returns the foreign key, or an `Option` of it: a row whose foreign key is
    /// `None` (Java's null) joins nothing, as a deleted row (a tombstone for the result it
    /// had), which Kafka logs as skipped.
    pub fn join_foreign_key<KO: Data + Ord, VO: Data, VR: Data, F: Into<Option<KO>>>(
        &self,
        other: &KTable<KO, VO>,
        mut extractor: impl FnMut(&V) -> F + Send + 'static,
        joiner: impl FnMut(&V, &VO) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.join_foreign_key_with_key(other, move |_: &K, value: &V| extractor(value), joiner)
    }

    /// [`KTable::join_foreign_key`] with an extractor that takes the row's key as well as its
    /// value (Kafka 4's `KTable#join(other, BiFunction<K, V, KO>, joiner)`, KIP-1104).
    pub fn join_foreign_key_with_key<KO: Data + Ord, VO: Data, VR: Data, F: Into<Option<KO>>>(
        &self,
        other: &KTable<KO, VO>,
        extractor: impl FnMut(&K, &V) -> F + Send + 'static,
        joiner: impl FnMut(&V, &VO) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.join_foreign_key_with(other, extractor, joiner, TableJoined::default())
    }

    /// [`KTable::join_foreign_key_with_key`], named and partitioned as `table_joined` says
    /// (Kafka's `KTable#join(other, foreignKeyExtractor, joiner, TableJoined)`). A value-only
    /// extractor `f` is `|_, value| f(value)` here.
    pub fn join_foreign_key_with<KO: Data + Ord, VO: Data, VR: Data, F: Into<Option<KO>>>(
        &self,
        other: &KTable<KO, VO>,
        mut extractor: impl FnMut(&K, &V) -> F + Send + 'static,
        mut joiner: impl FnMut(&V, &VO) -> VR + Send + 'static,
        table_joined: TableJoined<K, KO>,
    ) -> KTable<K, VR> {
        let extractor = move |key: &K, value: &V| extractor(key, value).into();
        let joiner = move |value: &V, other: Option<&VO>| other.map(|other| joiner(value, other));
        self.foreign_key_join(other, extractor, false, joiner, table_joined)
    }

    /// The left foreign-key join with `other` (Kafka's `KTable#leftJoin(other,
    /// foreignKeyExtractor, joiner)`): as [`KTable::join_foreign_key`], but a row whose
    /// foreign key `other` does not hold is emitted as `joiner(value, None)`, and so is a row
    /// whose foreign key is `None` (Java's null, as Kafka 3.7's KIP-962), at once: it
    /// subscribes to nothing.
    pub fn left_join_foreign_key<KO: Data + Ord, VO: Data, VR: Data, F: Into<Option<KO>>>(
        &self,
        other: &KTable<KO, VO>,
        mut extractor: impl FnMut(&V) -> F + Send + 'static,
        joiner: impl FnMut(&V, Option<&VO>) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.left_join_foreign_key_with_key(other, move |_: &K, value: &V| extractor(value), joiner)
    }

    /// [`KTable::left_join_foreign_key`] with an extractor that takes the row's key as well
    /// as its value (Kafka 4's `KTable#leftJoin(other, BiFunction<K, V, KO>, joiner)`,
    /// KIP-1104).
    pub fn left_join_foreign_key_with_key<
        KO: Data + Ord,
        VO: Data,
        VR: Data,
        F: Into<Option<KO>>,
    >(
        &self,
        other: &KTable<KO, VO>,
        extractor: impl FnMut(&K, &V) -> F + Send + 'static,
        joiner: impl FnMut(&V, Option<&VO>) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.left_join_foreign_key_with(other, extractor, joiner, TableJoined::default())
    }

    /// [`KTable::left_join_foreign_key_with_key`], named and partitioned as `table_joined`
    /// says (Kafka's `KTable#leftJoin(other, foreignKeyExtractor, joiner, TableJoined)`).
    pub fn left_join_foreign_key_with<KO: Data + Ord, VO: Data, VR: Data, F: Into<Option<KO>>>(
        &self,
        other: &KTable<KO, VO>,
        mut extractor: impl FnMut(&K, &V) -> F + Send + 'static,
        mut joiner: impl FnMut(&V, Option<&VO>) -> VR + Send + 'static,
        table_joined: TableJoined<K, KO>,
    ) -> KTable<K, VR> {
        let extractor = move |key: &K, value: &V| extractor(key, value).into();
        let joiner = move |value: &V, other: Option<&VO>| Some(joiner(value, other));
        self.foreign_key_join(other, extractor, true, joiner, table_joined)
    }

    /// Both kinds of foreign-key join, through the subscription and response topics of
    /// [`crate::fk_join`].
    fn foreign_key_join<KO: Data + Ord, VO: Data, VR: Data>(
        &self,
        other: &KTable<KO, VO>,
        extractor: impl FnMut(&K, &V) -> Option<KO> + Send + 'static,
        left: bool,
        joiner: impl FnMut(&V, Option<&VO>) -> Option<VR> + Send + 'static,
        table_joined: TableJoined<K, KO>,
    ) -> KTable<K, VR> {
        crate::fk_join::foreign_key_join(self, other, extractor, left, joiner, table_joined)
    }
}

/// One side's update of a table-table join against the other side's current value: what to
/// forward, if anything, and its timestamp. Follows Kafka's `KTableKTable*Join` processors:
/// nothing when a required other side is missing, nor for a deletion of a key neither side
/// had; otherwise the joined value, or a tombstone when this side's new value is missing and
/// required, or both sides are missing.
fn join_update<T, O, R>(
    change: Change<T>,
    other: Option<(O, i64)>,
    timestamp: i64,
    (this_required, other_required): (bool, bool),
    mut joiner: impl FnMut(Option<&T>, Option<&O>) -> Option<R>,
) -> Option<(Change<R>, i64)> {
    if other_required && other.is_none() {
        return None;
    }
    if other.is_none() && change.new.is_none() && change.old.is_none() {
        return None;
    }
    let timestamp = other.as_ref().map_or(timestamp, |(_, t)| timestamp.max(*t));
    let other = other.as_ref().map(|(value, _)| value);
    let new = match &change.new {
        None if this_required || other.is_none() => None,
        new => joiner(new.as_ref(), other),
    };
    Some((Change { new, old: None }, timestamp))
}

/// A table replicated in full to every instance (Kafka's `GlobalKTable`), for joins whose
/// lookup key comes from the stream record ([`KStream::join_global`]). Its updates only fill
/// its store: they neither emit records nor move stream time.
pub struct GlobalKTable<K, V> {
    pub(crate) getter: Getter<K, V>,
    pub(crate) store_name: String,
}

impl<K, V> Clone for GlobalKTable<K, V> {
    fn clone(&self) -> Self {
        Self {
            getter: Arc::clone(&self.getter),
            store_name: self.store_name.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for GlobalKTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalKTable")
            .field("store_name", &self.store_name)
            .finish_non_exhaustive()
    }
}

impl<K, V> GlobalKTable<K, V> {
    /// The name of the store behind the table (Kafka's `queryableStoreName`).
    pub fn store_name(&self) -> &str {
        &self.store_name
    }
}

/// How a windowed table is suppressed (Kafka's `Suppressed`). Only "emit final results" is
/// built: [`Suppressed::until_window_closes`], with an unbounded buffer.
#[derive(Debug, Clone, Copy)]
pub struct Suppressed {
    _final_results: (),
}

impl Suppressed {
    /// Holds back every update of a window and emits its final value once, when the window
    /// closes (Kafka's `Suppressed.untilWindowCloses(BufferConfig.unbounded())`).
    pub fn until_window_closes() -> Self {
        Self { _final_results: () }
    }
}

impl<K: Data + Ord, V: Data> KTable<Windowed<K>, V> {
    /// Emits each window's final result once (Kafka's `suppress(untilWindowCloses(...))`):
    /// updates wait in a buffer, the latest per windowed key, until the stream time seen by
    /// the suppression passes the window's end by the grace period of the windowed
    /// aggregation upstream; then they are emitted in window-end order. Tombstones (merged
    /// sessions) are never emitted. The topology is refused when no windowed aggregation is
    /// upstream. Lookups (joins) see the unsuppressed table. The buffer is logged to
    /// `KTABLE-SUPPRESS-STATE-STORE-<n>-changelog` and restored with its task, so a window
    /// still open when its task moves emits its final result on the next instance.
    pub fn suppress(&self, _suppressed: Suppressed) -> KTable<Windowed<K>, V> {
        let grace = match self.grace_ms {
            Some(grace) => grace,
            None => {
                let mut state = self.state.lock();
                let name = state.generated_name("KTABLE-SUPPRESS");
                state.errors.push(format!(
                    "{name}: suppress(untilWindowCloses) needs a windowed aggregation upstream"
                ));
                0
            }
        };
        // Ordered by window end (Kafka's buffer time), then key: the order windows close in.
        let buffer: SharedBuffer<K, V> = Arc::new(Mutex::new(BTreeMap::new()));
        let log = match (&self.key_serde, &self.value_serde) {
            (Some(key_serde), Some(value_serde)) => {
                let mut state = self.state.lock();
                let store = state.generated_name("KTABLE-SUPPRESS-STATE-STORE");
                Some(logged_suppression_buffer(
                    &mut state,
                    &store,
                    &buffer,
                    Arc::clone(key_serde),
                    Arc::clone(value_serde),
                ))
            }
            // Only a windowed aggregation upstream gives a windowed table, always with its
            // serdes (its own store refuses the build without them).
            _ => None,
        };
        let mut observed = i64::MIN;
        let node = Node::new();
        let next = node.clone();
        self.node.add_sink(move |ctx, record| {
            // Kafka's suppression keeps its own stream time, from the records reaching it.
            observed = observed.max(record.timestamp);
            let buffer_time = record.key.window.end;
            let evicted = {
                let mut buffer = buffer.lock();
                let slot = (buffer_time, record.key);
                // Kafka's prior value: the old value of the first update buffered for the key.
                let prior = match buffer.get(&slot) {
                    Some(buffered) => buffered.prior.clone(),
                    None => record.value.old.clone(),
                };
                if let Some(log) = &log {
                    log.write_buffered(
                        ctx,
                        &slot.1,
                        &BufferValue {
                            context: RecordContext::of(ctx, record.timestamp),
                            prior: prior.as_ref(),
                            old: record.value.old.as_ref(),
                            new: record.value.new.as_ref(),
                            buffer_time,
                        },
                    )?;
                }
                buffer.insert(
                    slot,
                    Buffered {
                        value: record.value.new,
                        timestamp: record.timestamp,
                        prior,
                    },
                );
                let expiry = observed.saturating_sub(grace);
                let mut evicted = Vec::new();
                while let Some(entry) = buffer.first_entry() {
                    if entry.key().0 > expiry {
                        break;
                    }
                    evicted.push(entry.remove_entry());
                }
                evicted
            };
            for ((_, key), buffered) in evicted {
                // The evicted key leaves the buffer: a tombstone, so a restore leaves it out.
                if let Some(log) = &log {
                    log.write_evicted(ctx, &key, record.timestamp)?;
                }
                if let Some(value) = buffered.value {
                    next.forward(
                        ctx,
                        Record {
                            key,
                            value: Change {
                                new: Some(value),
                                old: None,
                            },
                            timestamp: buffered.timestamp,
                        },
                    )?;
                }
            }
            Ok(())
        });
        KTable {
            node,
            state: Arc::clone(&self.state),
            store_name: None,
            getter: Arc::clone(&self.getter),
            grace_ms: self.grace_ms,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            lineage: self.lineage.clone(),
            old_values: false,
        }
    }
}

/// One windowed key's entry in a suppression buffer: its latest value (`None`: a tombstone,
/// buffered but never emitted), that update's timestamp, and Kafka's prior value (the
/// serialized old value of the first update buffered), which its changelog records carry.
struct Buffered<V> {
    value: Option<V>,
    timestamp: i64,
    prior: Option<V>,
}

/// A suppression buffer, by buffer time (the window end) then key.
type SharedBuffer<K, V> = Arc<Mutex<BTreeMap<(i64, Windowed<K>), Buffered<V>>>>;

/// The input record an update came from, as Kafka's suppression changelog keeps it (its
/// `ProcessorRecordContext`; headers are not carried here, so none are written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordContext {
    pub(crate) timestamp: i64,
    pub(crate) offset: i64,
    pub(crate) topic: String,
    pub(crate) partition: i32,
}

impl RecordContext {
    /// The context of the input record being processed (none in a punctuation: offset and
    /// partition `-1`, an empty topic).
    fn of(ctx: &Context, timestamp: i64) -> Self {
        match &ctx.processor_api.record_metadata {
            Some(metadata) => Self {
                timestamp,
                offset: metadata.offset,
                topic: metadata.topic.clone(),
                partition: metadata.partition,
            },
            None => Self {
                timestamp,
                offset: -1,
                topic: String::new(),
                partition: -1,
            },
        }
    }
}

/// A suppression buffer's changelog value (Kafka's `BufferValue`, version 3), typed.
pub(crate) struct BufferValue<'a, V> {
    pub(crate) context: RecordContext,
    pub(crate) prior: Option<&'a V>,
    pub(crate) old: Option<&'a V>,
    pub(crate) new: Option<&'a V>,
    pub(crate) buffer_time: i64,
}

/// The format version of the suppression changelog values written here, which Kafka reads
/// from the records' header `v` (without it, it would take them for its version 0).
const SUPPRESSION_CHANGELOG_VERSION: u8 = 3;

/// The length sentinel of a null value in the buffer format.
const NULL_VALUE: i32 = -1;
/// The length sentinel of an old value equal to the prior value (written once).
const OLD_IS_PRIOR: i32 = -2;

fn put_sized(data: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            data.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            data.extend_from_slice(bytes);
        }
        None => data.extend_from_slice(&NULL_VALUE.to_be_bytes()),
    }
}

/// Kafka's version-3 suppression changelog value: the record context (timestamp, offset,
/// size-prefixed topic, partition, header count), the prior, old and new values (each
/// size-prefixed, `-1` for null; the old value `-2` when it equals the prior), then the
/// buffer time; every number big-endian.
pub(crate) fn encode_buffer_value<V>(
    serde: &(impl crate::Serde<V> + ?Sized),
    value: &BufferValue<'_, V>,
) -> Result<Vec<u8>, Error> {
    let bytes = |value: Option<&V>| -> Result<Option<Vec<u8>>, Error> {
        match value {
            Some(value) => serde.serialize_nullable(value),
            None => Ok(None),
        }
    };
    let (prior, old, new) = (bytes(value.prior)?, bytes(value.old)?, bytes(value.new)?);
    let context = &value.context;
    let mut data = Vec::new();
    data.extend_from_slice(&context.timestamp.to_be_bytes());
    data.extend_from_slice(&context.offset.to_be_bytes());
    put_sized(&mut data, Some(context.topic.as_bytes()));
    data.extend_from_slice(&context.partition.to_be_bytes());
    data.extend_from_slice(&0_i32.to_be_bytes());
    put_sized(&mut data, prior.as_deref());
    match &old {
        Some(old) if prior.as_ref() == Some(old) => {
            data.extend_from_slice(&OLD_IS_PRIOR.to_be_bytes());
        }
        old => put_sized(&mut data, old.as_deref()),
    }
    put_sized(&mut data, new.as_deref());
    data.extend_from_slice(&value.buffer_time.to_be_bytes());
    Ok(data)
}

/// A suppression buffer's changelog value, as its serialized parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedBufferValue {
    pub(crate) context: RecordContext,
    pub(crate) prior: Option<Vec<u8>>,
    pub(crate) old: Option<Vec<u8>>,
    pub(crate) new: Option<Vec<u8>>,
    pub(crate) buffer_time: i64,
}

/// Reads a value [`encode_buffer_value`] wrote (and Kafka's version 3, headers included).
pub(crate) fn decode_buffer_value(data: &[u8]) -> Result<DecodedBufferValue, Error> {
    let mut reader = Reader { data, at: 0 };
    let timestamp = i64::from_be_bytes(reader.take()?);
    let offset = i64::from_be_bytes(reader.take()?);
    let topic = reader.sized()?.unwrap_or_default();
    let topic = String::from_utf8(topic).map_err(Error::Utf8)?;
    let partition = i32::from_be_bytes(reader.take()?);
    let headers = i32::from_be_bytes(reader.take()?);
    for _ in 0..headers.max(0) {
        reader.sized()?;
        reader.sized()?;
    }
    let prior = reader.sized()?;
    let old = match i32::from_be_bytes(reader.take()?) {
        OLD_IS_PRIOR => prior.clone(),
        length => reader.bytes(length)?,
    };
    let new = reader.sized()?;
    let buffer_time = i64::from_be_bytes(reader.take()?);
    Ok(DecodedBufferValue {
        context: RecordContext {
            timestamp,
            offset,
            topic,
            partition,
        },
        prior,
        old,
        new,
        buffer_time,
    })
}

/// Reads big-endian fields off a changelog value, failing on a short one.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn slice(&mut self, length: usize) -> Result<&[u8], Error> {
        let end = self.at.saturating_add(length);
        let slice = self.data.get(self.at..end).ok_or(Error::DataSize {
            expected: end,
            actual: self.data.len(),
        })?;
        self.at = end;
        Ok(slice)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut array = [0; N];
        array.copy_from_slice(self.slice(N)?);
        Ok(array)
    }

    /// `length` bytes, or null for a negative length.
    fn bytes(&mut self, length: i32) -> Result<Option<Vec<u8>>, Error> {
        match usize::try_from(length) {
            Ok(length) => Ok(Some(self.slice(length)?.to_vec())),
            Err(_) => Ok(None),
        }
    }

    fn sized(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let length = i32::from_be_bytes(self.take()?);
        self.bytes(length)
    }
}

/// Where a suppression buffer is logged (Kafka's `KTABLE-SUPPRESS-STATE-STORE-<n>`): its
/// changelog topic and the windowed key and value serdes.
struct SuppressionLog<K, V> {
    topic: String,
    key_serde: SerdeRef<Windowed<K>>,
    value_serde: SerdeRef<V>,
}

impl<K: 'static, V: 'static> SuppressionLog<K, V> {
    fn key(&self, key: &Windowed<K>) -> Result<Vec<u8>, Error> {
        serialize_key(&self.topic, &*self.key_serde, key)
    }

    fn write_buffered(
        &self,
        ctx: &mut Context,
        key: &Windowed<K>,
        value: &BufferValue<'_, V>,
    ) -> Result<(), Error> {
        let key = self.key(key)?;
        let data = encode_buffer_value(&*self.value_serde, value)
            .map_err(|e| serialize_failed(&self.topic, "value", e))?;
        log_change(ctx, &self.topic, key, Some(data), value.context.timestamp);
        Ok(())
    }

    fn write_evicted(
        &self,
        ctx: &mut Context,
        key: &Windowed<K>,
        timestamp: i64,
    ) -> Result<(), Error> {
        let key = self.key(key)?;
        log_change(ctx, &self.topic, key, None, timestamp);
        Ok(())
    }
}

/// Registers the changelog of the suppression buffer `store` and its restorer, which puts
/// each buffered update back (a tombstone removes the key).
fn logged_suppression_buffer<K: Data + Ord, V: Data>(
    state: &mut BuilderState,
    store: &str,
    buffer: &SharedBuffer<K, V>,
    key_serde: SerdeRef<Windowed<K>>,
    value_serde: SerdeRef<V>,
) -> SuppressionLog<K, V> {
    let (restored, keys, values) = (
        Arc::clone(buffer),
        Arc::clone(&key_serde),
        Arc::clone(&value_serde),
    );
    let restorer: Restorer = Box::new(move |key, value| {
        let Some(key) = key else {
            return Ok(());
        };
        let key = keys.deserialize(key)?;
        let mut buffer = restored.lock();
        let Some(data) = value else {
            buffer.retain(|(_, buffered), _| *buffered != key);
            return Ok(());
        };
        let decoded = decode_buffer_value(data)?;
        let typed = |bytes: Option<Vec<u8>>| -> Result<Option<V>, Error> {
            match bytes {
                Some(bytes) => values.deserialize(&bytes).map(Some),
                None => Ok(None),
            }
        };
        // A key is buffered once: its restored entry replaces any other of its.
        buffer.retain(|(_, buffered), _| *buffered != key);
        buffer.insert(
            (decoded.buffer_time, key),
            Buffered {
                value: typed(decoded.new)?,
                timestamp: decoded.context.timestamp,
                prior: typed(decoded.prior)?,
            },
        );
        Ok(())
    });
    let topic = register_changelog(state, store, restorer);
    state
        .changelog_versions
        .insert(topic.clone(), SUPPRESSION_CHANGELOG_VERSION);
    SuppressionLog {
        topic,
        key_serde,
        value_serde,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{BufferValue, RecordContext, decode_buffer_value, encode_buffer_value};
    use crate::StringSerde;

    fn context() -> RecordContext {
        RecordContext {
            timestamp: 5,
            offset: 7,
            topic: "t".to_string(),
            partition: 0,
        }
    }

    /// Kafka's version-3 suppression buffer value, byte by byte: context, prior, old and new
    /// values (`-1`: null), buffer time.
    #[test]
    fn a_buffer_value_is_kafkas_version_3_format() {
        let new = "v".to_string();
        let value = BufferValue {
            context: context(),
            prior: None,
            old: None,
            new: Some(&new),
            buffer_time: 10,
        };
        let data = encode_buffer_value(&StringSerde, &value).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&5_i64.to_be_bytes());
        expected.extend_from_slice(&7_i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, b't']);
        expected.extend_from_slice(&[0, 0, 0, 0]); // partition
        expected.extend_from_slice(&[0, 0, 0, 0]); // no headers
        expected.extend_from_slice(&[0xFF; 4]); // prior: null
        expected.extend_from_slice(&[0xFF; 4]); // old: null
        expected.extend_from_slice(&[0, 0, 0, 1, b'v']);
        expected.extend_from_slice(&10_i64.to_be_bytes());
        assert_eq!(data, expected);
        let decoded = decode_buffer_value(&data).unwrap();
        assert_eq!(decoded.context, context());
        assert_eq!(
            (decoded.prior, decoded.old, decoded.new, decoded.buffer_time),
            (None, None, Some(b"v".to_vec()), 10)
        );
    }

    /// An old value equal to the prior one is written once (the `-2` sentinel) and reads back
    /// as both; a value cut short is an error, not a panic.
    #[test]
    fn an_old_value_equal_to_the_prior_is_written_once() {
        let (prior, new) = ("p".to_string(), "n".to_string());
        let value = BufferValue {
            context: context(),
            prior: Some(&prior),
            old: Some(&prior),
            new: Some(&new),
            buffer_time: -1,
        };
        let data = encode_buffer_value(&StringSerde, &value).unwrap();
        assert!(data.windows(4).any(|w| w == (-2_i32).to_be_bytes()));
        let decoded = decode_buffer_value(&data).unwrap();
        assert_eq!(decoded.prior, Some(b"p".to_vec()));
        assert_eq!(decoded.old, Some(b"p".to_vec()));
        assert_eq!(decoded.new, Some(b"n".to_vec()));
        assert_eq!(decoded.buffer_time, -1);
        for cut in [0, 10, data.len() - 1] {
            assert!(decode_buffer_value(&data[..cut]).is_err(), "cut at {cut}");
        }
    }
}
