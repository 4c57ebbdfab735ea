//! [`KGroupedTable`]: a table regrouped by a new key (Kafka's `KTable#groupBy`), then
//! counted, reduced or aggregated with an adder and a subtractor.
//!
//! Kafka's design, record for record:
//! 1. each update of the table is mapped by the selector (Kafka's `KTableRepartitionMap`):
//!    its new value gives the pair to add, its old value the pair to subtract. When both
//!    pairs have the same key they travel as one change (KIP-904), else the subtraction goes
//!    first, then the addition;
//! 2. the changes go through the repartition topic `<store>-repartition` (or
//!    `<Grouped name>-repartition`), every time: the new key decides the task. Values are
//!    in Kafka's `ChangedSerializer` format ([`ChangedSerde`]), so a Java application's
//!    repartition topic reads here and the other way round;
//! 3. the task of the new key applies the subtractor to the old value, then the adder (or
//!    the initializer, then the adder) to the new one (Kafka's `KTableAggregate` and
//!    `KTableReduce`), stores the result with the largest timestamp that went into it, logs
//!    it and forwards it with the previous aggregate as the old value.
//!
//! The subtraction needs the table's old values: a table read from a topic, an aggregation,
//! and their `filter`/`map_values` send them. A join's result does not here (Kafka
//! materializes the join for it), and grouping one is refused when the topology is built.

use std::sync::Arc;

use parking_lot::Mutex;
use weir_records::varint::{put_varint, read_varint};

use crate::Error;
use crate::kstream::{Grouped, Materialized, register_store, repartition};
use crate::ktable::{Change, KTable};
use crate::serdes::{I64Serde, Serde};
use crate::store::{
    SharedStore, ValueFormat, logged_store, register_persistent_store, write_changelog,
};
use crate::topology::{BuilderState, Data, Lineage, Node, Record, SerdeRef};

/// Kafka's `ChangedSerializer` and `ChangedDeserializer` over a value serde: the new value
/// then a `1`; the old value then a `0`; or both, the new value's length first (a zigzag
/// varint), then a `2`.
pub(crate) struct ChangedSerde<V> {
    inner: SerdeRef<V>,
}

/// The flag bytes that end a serialized change.
const OLD_ONLY: u8 = 0;
const NEW_ONLY: u8 = 1;
const NEW_AND_OLD: u8 = 2;

impl<V: 'static> Serde<Change<V>> for ChangedSerde<V> {
    fn serialize(&self, change: &Change<V>) -> Result<Vec<u8>, Error> {
        let new = change
            .new
            .as_ref()
            .map(|v| self.inner.serialize(v))
            .transpose()?;
        let old = change
            .old
            .as_ref()
            .map(|v| self.inner.serialize(v))
            .transpose()?;
        let mut out = Vec::new();
        match (new, old) {
            (Some(new), Some(old)) => {
                let length = i32::try_from(new.len())
                    .map_err(|_| Error::Serde("a change's new value over 2 GiB".to_string()))?;
                put_varint(&mut out, length);
                out.extend_from_slice(&new);
                out.extend_from_slice(&old);
                out.push(NEW_AND_OLD);
            }
            (Some(new), None) => {
                out.extend_from_slice(&new);
                out.push(NEW_ONLY);
            }
            (None, Some(old)) => {
                out.extend_from_slice(&old);
                out.push(OLD_ONLY);
            }
            (None, None) => {
                return Err(Error::Serde(
                    "a change with neither a new nor an old value".to_string(),
                ));
            }
        }
        Ok(out)
    }

    fn deserialize(&self, data: &[u8]) -> Result<Change<V>, Error> {
        let invalid = |why: &str| Error::Serde(format!("invalid change: {why}"));
        let (flag, body) = data.split_last().ok_or_else(|| invalid("empty"))?;
        match *flag {
            NEW_ONLY => Ok(Change {
                new: Some(self.inner.deserialize(body)?),
                old: None,
            }),
            OLD_ONLY => Ok(Change {
                new: None,
                old: Some(self.inner.deserialize(body)?),
            }),
            NEW_AND_OLD => {
                let (length, read) = read_varint(body).map_err(|_| invalid("bad length"))?;
                let rest = &body[read..];
                let length = usize::try_from(length)
                    .ok()
                    .filter(|length| *length <= rest.len())
                    .ok_or_else(|| invalid("length beyond the data"))?;
                let (new, old) = rest.split_at(length);
                Ok(Change {
                    new: Some(self.inner.deserialize(new)?),
                    old: Some(self.inner.deserialize(old)?),
                })
            }
            other => Err(invalid(&format!("unknown flag {other}"))),
        }
    }
}

/// A table regrouped by a new key (Kafka's `KGroupedTable`), from [`KTable::group_by`]:
/// count, reduce or aggregate it with an adder and a subtractor. Its changes go through a
/// repartition topic, which needs its key and value serdes (from [`Grouped`]).
pub struct KGroupedTable<K, V> {
    /// The selected changes, before the repartition topic.
    node: Node<K, Change<V>>,
    state: Arc<Mutex<BuilderState>>,
    key_serde: Option<SerdeRef<K>>,
    value_serde: Option<SerdeRef<V>>,
    repartition_name: Option<String>,
}

impl<K, V> std::fmt::Debug for KGroupedTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedTable")
            .field("repartition_name", &self.repartition_name)
            .finish_non_exhaustive()
    }
}

impl<K: Data + Ord, V: Data> KTable<K, V> {
    /// Regroups the table by the key `selector` computes from each row (Kafka's
    /// `KTable#groupBy`); `selector` also maps the value. The repartition topic needs the
    /// new key's and value's serdes: see [`KTable::group_by_with`].
    pub fn group_by<KR: Data + Ord, VR: Data>(
        &self,
        selector: impl FnMut(&K, &V) -> (KR, VR) + Send + 'static,
    ) -> KGroupedTable<KR, VR> {
        self.group_by_with(selector, Grouped::default())
    }

    /// [`KTable::group_by`] with the serdes (and the repartition topic's name) of `grouped`.
    pub fn group_by_with<KR: Data + Ord, VR: Data>(
        &self,
        mut selector: impl FnMut(&K, &V) -> (KR, VR) + Send + 'static,
        grouped: Grouped<KR, VR>,
    ) -> KGroupedTable<KR, VR> {
        if !self.old_values {
            self.state.lock().errors.push(format!(
                "group_by of {}: a join's result does not send its old values, which the \
                 regrouped aggregation subtracts (group the joined tables' sources, or write \
                 the join's result to a topic and read it back as a table)",
                self.store_name
                    .as_deref()
                    .unwrap_or("a table computed by a join"),
            ));
        }
        let node = Node::new();
        let next = node.clone();
        self.node.add_sink(move |ctx, record| {
            let timestamp = record.timestamp;
            let Change { new, old } = record.value;
            let new = new.map(|value| selector(&record.key, &value));
            let old = old.map(|value| selector(&record.key, &value));
            match (new, old) {
                // One key: one change, subtracted then added by its task (KIP-904).
                (Some((new_key, new)), Some((old_key, old))) if new_key == old_key => next.forward(
                    ctx,
                    Record {
                        key: new_key,
                        value: Change {
                            new: Some(new),
                            old: Some(old),
                        },
                        timestamp,
                    },
                ),
                (new, old) => {
                    if let Some((key, old)) = old {
                        let value = Change {
                            new: None,
                            old: Some(old),
                        };
                        next.forward(
                            ctx,
                            Record {
                                key,
                                value,
                                timestamp,
                            },
                        )?;
                    }
                    match new {
                        Some((key, new)) => {
                            let value = Change {
                                new: Some(new),
                                old: None,
                            };
                            next.forward(
                                ctx,
                                Record {
                                    key,
                                    value,
                                    timestamp,
                                },
                            )
                        }
                        None => Ok(()),
                    }
                }
            }
        });
        KGroupedTable {
            node,
            state: Arc::clone(&self.state),
            key_serde: grouped.key_serde,
            value_serde: grouped.value_serde,
            repartition_name: grouped.name,
        }
    }
}

/// How a regrouped table combines a change with a key's aggregate (`None`: none yet): the
/// new aggregate, `None` to delete it.
type TableUpdate<K, V, VR> = Box<dyn FnMut(&K, Change<V>, Option<VR>) -> Option<VR> + Send>;

impl<K: Data + Ord, V: Data> KGroupedTable<K, V> {
    /// Counts the rows per key: each added row counts one, each subtracted row one less
    /// (Kafka's `KGroupedTable#count`); a count that falls to 0 stays, as 0.
    pub fn count(&self) -> KTable<K, i64> {
        self.count_with(Materialized::default())
    }

    /// [`KGroupedTable::count`] into the store `materialized` describes (its value serde is
    /// [`I64Serde`] unless given).
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let materialized = Materialized {
            value_serde: materialized
                .value_serde
                .or_else(|| Some(Arc::new(I64Serde))),
            ..materialized
        };
        self.aggregate_with(
            || 0,
            |_, _, count| count + 1,
            |_, _, count| count - 1,
            materialized,
        )
    }

    /// Combines each key's rows with `adder(aggregate, value)` and takes a row back out with
    /// `subtractor(aggregate, value)` (Kafka's `KGroupedTable#reduce`); a key's first value
    /// is its first aggregate. The store's changelog uses the grouping's value serde.
    pub fn reduce(
        &self,
        adder: impl FnMut(V, V) -> V + Send + 'static,
        subtractor: impl FnMut(V, V) -> V + Send + 'static,
    ) -> KTable<K, V> {
        self.reduce_with(adder, subtractor, Materialized::default())
    }

    /// [`KGroupedTable::reduce`] into the store `materialized` describes.
    pub fn reduce_with(
        &self,
        mut adder: impl FnMut(V, V) -> V + Send + 'static,
        mut subtractor: impl FnMut(V, V) -> V + Send + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let materialized = Materialized {
            value_serde: materialized
                .value_serde
                .or_else(|| self.value_serde.clone()),
            ..materialized
        };
        // Kafka's KTableReduce: subtract the old value from the aggregate, if both exist,
        // then add the new one (which is the aggregate if there is none).
        let update: TableUpdate<K, V, V> = Box::new(move |_, change, aggregate| {
            let intermediate = match (change.old, aggregate) {
                (Some(old), Some(aggregate)) => Some(subtractor(aggregate, old)),
                (_, aggregate) => aggregate,
            };
            match (change.new, intermediate) {
                (Some(new), Some(intermediate)) => Some(adder(intermediate, new)),
                (Some(new), None) => Some(new),
                (None, intermediate) => intermediate,
            }
        });
        self.aggregation("KTABLE-REDUCE-STATE-STORE", update, materialized)
    }

    /// Aggregates each key's rows from `initializer()` with `adder(key, value, aggregate)`
    /// and takes a row back out with `subtractor(key, value, aggregate)` (Kafka's
    /// `KGroupedTable#aggregate`). The store's changelog needs the aggregate's serde: see
    /// [`KGroupedTable::aggregate_with`].
    pub fn aggregate<VR: Data>(
        &self,
        initializer: impl FnMut() -> VR + Send + 'static,
        adder: impl FnMut(&K, V, VR) -> VR + Send + 'static,
        subtractor: impl FnMut(&K, V, VR) -> VR + Send + 'static,
    ) -> KTable<K, VR> {
        self.aggregate_with(initializer, adder, subtractor, Materialized::default())
    }

    /// [`KGroupedTable::aggregate`] into the store `materialized` describes.
    pub fn aggregate_with<VR: Data>(
        &self,
        mut initializer: impl FnMut() -> VR + Send + 'static,
        mut adder: impl FnMut(&K, V, VR) -> VR + Send + 'static,
        mut subtractor: impl FnMut(&K, V, VR) -> VR + Send + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        // Kafka's KTableAggregate: subtract the old value from the aggregate, if both exist,
        // then add the new one to the result (or to the initializer's value).
        let update: TableUpdate<K, V, VR> = Box::new(move |key, change, aggregate| {
            let intermediate = match (change.old, aggregate) {
                (Some(old), Some(aggregate)) => Some(subtractor(key, old, aggregate)),
                (_, aggregate) => aggregate,
            };
            match change.new {
                Some(new) => Some(adder(
                    key,
                    new,
                    intermediate.unwrap_or_else(&mut initializer),
                )),
                None => intermediate,
            }
        });
        self.aggregation("KTABLE-AGGREGATE-STATE-STORE", update, materialized)
    }

    /// The aggregation into a store named by `materialized`, else `<generated_prefix>-<n>`,
    /// of the changes read back from the repartition topic.
    fn aggregation<VR: Data>(
        &self,
        generated_prefix: &str,
        mut update: TableUpdate<K, V, VR>,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        let name = materialized
            .store_name
            .unwrap_or_else(|| self.state.lock().generated_name(generated_prefix));
        let topic_name = self
            .repartition_name
            .clone()
            .unwrap_or_else(|| name.clone());
        let changes = self
            .value_serde
            .clone()
            .map(|inner| Arc::new(ChangedSerde { inner }) as SerdeRef<Change<V>>);
        let input = repartition(
            &self.node,
            &self.state,
            &topic_name,
            self.key_serde.clone(),
            changes,
            &name,
        );
        let key_serde = materialized.key_serde.or_else(|| self.key_serde.clone());
        let logging = match (key_serde, materialized.value_serde) {
            (Some(key_serde), Some(value_serde)) => Some((key_serde, value_serde)),
            (_, None) => {
                self.state.lock().errors.push(format!(
                    "{name}: the aggregation's store needs a value serde for its changelog \
                     topic {name}-changelog (give it with Materialized::with)"
                ));
                None
            }
            // The repartition topic has already refused the topology for its key serde.
            (None, Some(_)) => None,
        };
        let store: SharedStore<K, VR> = crate::store::new_store();
        register_store(&self.state, Some(name.clone()), &store);
        let changelog = logging.as_ref().map(|(key_serde, value_serde)| {
            let mut state = self.state.lock();
            let serdes = (Arc::clone(key_serde), Arc::clone(value_serde));
            register_persistent_store(&mut state, &name, &store, serdes, ValueFormat::Timestamped);
            let topic = logged_store(
                &mut state,
                &name,
                &store,
                Arc::clone(key_serde),
                Arc::clone(value_serde),
                ValueFormat::Timestamped,
            );
            (topic, Arc::clone(key_serde), Arc::clone(value_serde))
        });
        let table = Node::new();
        let next = table.clone();
        let shared = Arc::clone(&store);
        input.add_sink(move |ctx, record| {
            let key = record.key;
            let (new, old, timestamp) = {
                let mut store = shared.lock();
                let previous = store.get(&key);
                // The largest timestamp that went into the aggregate (KIP-258).
                let timestamp = previous
                    .as_ref()
                    .map_or(record.timestamp, |(_, t)| record.timestamp.max(*t));
                let old = previous.map(|(value, _)| value);
                let new = update(&key, record.value, old.clone());
                store.put(key.clone(), new.clone().map(|value| (value, timestamp)));
                (new, old, timestamp)
            };
            if let Some((topic, key_serde, value_serde)) = &changelog {
                write_changelog(
                    ctx,
                    topic,
                    &**key_serde,
                    &**value_serde,
                    &key,
                    new.as_ref(),
                    timestamp,
                )?;
            }
            next.forward(
                ctx,
                Record {
                    key,
                    value: Change { new, old },
                    timestamp,
                },
            )
        });
        let mut result = KTable::materialized(table, &self.state, name, store, None);
        result.key_serde = self.key_serde.clone();
        result.value_serde = logging.map(|(_, value_serde)| value_serde);
        result.lineage = Lineage::source(&format!("{topic_name}-repartition"));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StringSerde;

    fn serde() -> ChangedSerde<String> {
        ChangedSerde {
            inner: Arc::new(StringSerde),
        }
    }

    fn change(new: Option<&str>, old: Option<&str>) -> Change<String> {
        Change {
            new: new.map(str::to_string),
            old: old.map(str::to_string),
        }
    }

    /// Kafka's `ChangedSerializer` bytes: the flag last, the new value's length first (zigzag
    /// varint: 3 is 6) when both are there.
    #[test]
    fn a_change_is_in_kafkas_changed_format() {
        let cases: [(Change<String>, &[u8]); 3] = [
            (change(Some("new"), None), b"new\x01"),
            (change(None, Some("old")), b"old\x00"),
            (change(Some("new"), Some("old")), b"\x06newold\x02"),
        ];
        for (value, bytes) in cases {
            assert_eq!(serde().serialize(&value).unwrap(), bytes);
            let read = serde().deserialize(bytes).unwrap();
            assert_eq!((read.new, read.old), (value.new, value.old));
        }
        let long = "x".repeat(300);
        let bytes = serde().serialize(&change(Some(&long), Some("o"))).unwrap();
        assert_eq!(&bytes[..2], &[0xd8, 0x04], "600 as a varint");
        assert_eq!(serde().deserialize(&bytes).unwrap().new.unwrap(), long);
    }

    #[test]
    fn a_bad_change_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"x\x07",
            b"\x7f\x02",
            b"\xff\xff\xff\xff\xff\xff\x02",
        ] {
            assert!(serde().deserialize(bytes).is_err(), "{bytes:?}");
        }
        assert!(serde().serialize(&change(None, None)).is_err());
    }
}
