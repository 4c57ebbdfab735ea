//! What the consumer hands the application, and the hooks it calls around rebalances.

use std::sync::Arc;

use bytes::Bytes;
use weir_records::Header;

use super::protocol::TopicPartition;

/// One record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic (shared by every record of the partition).
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset in the partition.
    pub offset: i64,
    /// Milliseconds since the Unix epoch: the producer's create time, or the broker's append
    /// time for topics with `message.timestamp.type=LogAppendTime`.
    pub timestamp: i64,
    /// The key, or null.
    pub key: Option<Bytes>,
    /// The value, or null (a tombstone on a compacted topic).
    pub value: Option<Bytes>,
    /// The headers in the order the producer added them.
    pub headers: Vec<Header>,
}

impl ConsumerRecord {
    /// The record's topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.as_ref(), self.partition)
    }
}

/// Called by a group consumer, from inside [`Consumer::recv`](super::Consumer::recv), as its
/// assignment changes. Under eager assignors (`range`, `roundrobin`) every rebalance revokes
/// the whole assignment and assigns the new one; under `cooperative-sticky` only partitions
/// that move are revoked, and `assigned` lists only the new ones. With auto commit on, the
/// positions of revoked partitions are committed before `revoked` is called.
pub trait RebalanceListener: Send {
    /// The consumer no longer consumes these partitions; another member may already own them
    /// only after this returns.
    fn revoked(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }

    /// The consumer starts consuming these partitions.
    fn assigned(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }

    /// The consumer was removed from the group (its session expired or it was fenced); the
    /// partitions may already belong to another member, so committing them is pointless.
    /// Defaults to [`RebalanceListener::revoked`].
    fn lost(&mut self, partitions: &[TopicPartition]) {
        self.revoked(partitions);
    }
}
