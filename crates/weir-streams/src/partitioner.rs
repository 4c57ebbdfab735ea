//! Where a topology's writes go: [`StreamPartitioner`] (Kafka's), the sink options of
//! [`KStream::to_with`](crate::KStream::to_with) ([`Produced`]), and the partition counts a
//! task needs to call a partitioner.
//!
//! A record without a partitioner, or whose partitioner answers `None`, keeps the producer's
//! default partitioner (murmur2 of the serialized key, as Kafka's). A partitioner sees the
//! typed key and value, so it can partition by a field that the serialized key hides.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Error;
use crate::serdes::Serde;
use crate::topology::SerdeRef;

/// Chooses the partitions of a record written to `topic` (Kafka 3.4's
/// `StreamPartitioner#partitions`, KIP-837):
/// - `None`: the producer's default partitioner (by the serialized key);
/// - `Some` of an empty list: the record is dropped;
/// - `Some` of several partitions: the record is written to each (multicast).
///
/// `num_partitions` is the topic's partition count; a partition outside `0..num_partitions`
/// fails the task, as Kafka's producer refuses it. Closures of the same shape implement it.
pub trait StreamPartitioner<K, V>: Send + Sync + 'static {
    /// The partitions of the record with `key` and `value` written to `topic`.
    fn partitions(&self, topic: &str, key: &K, value: &V, num_partitions: i32) -> Option<Vec<i32>>;
}

impl<K, V, F> StreamPartitioner<K, V> for F
where
    F: Fn(&str, &K, &V, i32) -> Option<Vec<i32>> + Send + Sync + 'static,
{
    fn partitions(&self, topic: &str, key: &K, value: &V, num_partitions: i32) -> Option<Vec<i32>> {
        self(topic, key, value, num_partitions)
    }
}

/// A shared partitioner.
pub(crate) type PartitionerRef<K, V> = Arc<dyn StreamPartitioner<K, V>>;

/// How [`KStream::to_with`](crate::KStream::to_with) writes (Kafka's `Produced`): the serdes,
/// and optionally a [`StreamPartitioner`].
pub struct Produced<K, V> {
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
    pub(crate) partitioner: Option<PartitionerRef<K, V>>,
}

impl<K, V> std::fmt::Debug for Produced<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Produced")
            .field("partitioner", &self.partitioner.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: 'static, V: 'static> Produced<K, V> {
    /// Writes with these serdes and the producer's default partitioner.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self {
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            partitioner: None,
        }
    }

    /// Chooses partitions with `partitioner` instead.
    pub fn with_stream_partitioner(mut self, partitioner: impl StreamPartitioner<K, V>) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }
}

/// The partition counts of the topics a task writes with a partitioner: the runtime's, looked
/// up when the instance starts; the test driver's, one partition per topic.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionCounts {
    counts: BTreeMap<String, i32>,
    /// The count of a topic not in `counts`; `None`: such a topic is an error.
    otherwise: Option<i32>,
}

impl PartitionCounts {
    /// The counts in `counts`, no other topic.
    pub(crate) fn of(counts: BTreeMap<String, i32>) -> Self {
        Self {
            counts,
            otherwise: None,
        }
    }

    /// `count` partitions for every topic.
    pub(crate) fn every_topic(count: i32) -> Self {
        Self {
            counts: BTreeMap::new(),
            otherwise: Some(count),
        }
    }

    pub(crate) fn count(&self, topic: &str) -> Result<i32, Error> {
        self.counts
            .get(topic)
            .copied()
            .or(self.otherwise)
            .ok_or_else(|| {
                Error::Partitioner(format!("the partition count of topic {topic} is unknown"))
            })
    }
}

/// The partitions `partitioner` chooses for a record written to `topic`, checked against
/// the topic's partition count; `None`: the default partitioner's.
pub(crate) fn choose_partitions<K: 'static, V: 'static>(
    partitioner: &dyn StreamPartitioner<K, V>,
    counts: &PartitionCounts,
    topic: &str,
    key: &K,
    value: &V,
) -> Result<Option<Vec<i32>>, Error> {
    let count = counts.count(topic)?;
    let Some(mut partitions) = partitioner.partitions(topic, key, value, count) else {
        return Ok(None);
    };
    if let Some(invalid) = partitions.iter().find(|p| !(0..count).contains(*p)) {
        return Err(Error::Partitioner(format!(
            "partition {invalid} of topic {topic} is not in [0, {count})"
        )));
    }
    // Kafka's partitioner answers a set: a partition named twice is written once.
    partitions.sort_unstable();
    partitions.dedup();
    Ok(Some(partitions))
}

/// The producer's default partition of a record with the serialized `key` (Kafka's murmur2
/// partitioner), for a topic of `count` partitions.
pub(crate) fn partition_for_key(key: &[u8], count: i32) -> i32 {
    let count = usize::try_from(count).unwrap_or(1).max(1);
    weir_client::producer::partitioner::partition_for_key(key, count)
}

/// The one partition `partitioner` chooses for a foreign-key join's internal record, as
/// Kafka requires there (a single partition, or `None` for the default).
pub(crate) fn choose_single_partition<K: 'static, V: 'static>(
    partitioner: &dyn StreamPartitioner<K, V>,
    counts: &PartitionCounts,
    topic: &str,
    key: &K,
    value: &V,
) -> Result<Option<i32>, Error> {
    match choose_partitions(partitioner, counts, topic, key, value)? {
        None => Ok(None),
        Some(partitions) => match partitions[..] {
            [partition] => Ok(Some(partition)),
            _ => Err(Error::Partitioner(format!(
                "a foreign-key join's partitioner must choose one partition of topic {topic}, \
                 it chose {partitions:?}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_value(_: &str, _: &String, value: &i32, _: i32) -> Option<Vec<i32>> {
        match *value {
            v if v < 0 => None,
            100 => Some(vec![]),
            200 => Some(vec![2, 0, 2]),
            v => Some(vec![v]),
        }
    }

    #[test]
    fn partitions_are_checked_against_the_topics_count() {
        let counts = PartitionCounts::of(BTreeMap::from([("t".to_string(), 3)]));
        let key = "k".to_string();
        let choose = |value: i32| choose_partitions(&by_value, &counts, "t", &key, &value);
        assert_eq!(choose(-1).unwrap(), None);
        assert_eq!(choose(100).unwrap(), Some(vec![]));
        assert_eq!(choose(200).unwrap(), Some(vec![0, 2]));
        assert_eq!(choose(1).unwrap(), Some(vec![1]));
        let error = choose(3).unwrap_err().to_string();
        assert!(
            error.contains("partition 3 of topic t is not in [0, 3)"),
            "{error}"
        );
        let unknown = choose_partitions(&by_value, &counts, "u", &key, &1).unwrap_err();
        assert!(
            unknown.to_string().contains("topic u is unknown"),
            "{unknown}"
        );
        let any = PartitionCounts::every_topic(5);
        assert_eq!(
            choose_partitions(&by_value, &any, "u", &key, &4).unwrap(),
            Some(vec![4])
        );
    }

    #[test]
    fn a_foreign_key_joins_partitioner_chooses_one_partition() {
        let counts = PartitionCounts::every_topic(3);
        let key = "k".to_string();
        let choose = |value: i32| choose_single_partition(&by_value, &counts, "t", &key, &value);
        assert_eq!(choose(-1).unwrap(), None);
        assert_eq!(choose(2).unwrap(), Some(2));
        for several in [100, 200] {
            let error = choose(several).unwrap_err().to_string();
            assert!(error.contains("must choose one partition"), "{error}");
        }
    }
}
