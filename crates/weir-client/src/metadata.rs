//! The metadata cache: brokers, topics, partitions and their leaders.
//!
//! The cache holds what the last Metadata response said about the brokers and about the topics
//! the client has asked for. It is refreshed when it is older than `metadata.max.age.ms`, when
//! a caller reports an error code that means the cached leader or topic is wrong
//! ([`invalidates_metadata`]), and when a lookup misses.

use std::collections::HashMap;
use std::time::Instant;
use weir_protocol::messages::MetadataResponse;
use weir_protocol::messages::metadata_response::MetadataResponseTopic;
use weir_protocol::{ErrorCode, Uuid};

/// A broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// The broker id (`node.id`).
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

impl BrokerMetadata {
    /// `host:port`, bracketing IPv6 hosts.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id (zero when the broker does not report one).
    pub topic_id: Uuid,
    /// Whether the topic is internal (`__consumer_offsets`, ...).
    pub is_internal: bool,
    /// Partitions in partition-index order.
    pub partitions: Vec<PartitionMetadata>,
}

/// One partition's leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id, or -1 while there is none.
    pub leader_id: i32,
    /// Leader epoch, or -1 when unknown.
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// The partition-level error the broker reported (LEADER_NOT_AVAILABLE, ...).
    pub error: ErrorCode,
}

/// A topic entry: either the topic or the error the broker gave for it.
#[derive(Debug, Clone)]
pub(crate) enum TopicEntry {
    Known(TopicMetadata),
    Error(ErrorCode),
}

/// What the client knows about the cluster.
#[derive(Debug, Default)]
pub(crate) struct Metadata {
    pub(crate) cluster_id: Option<String>,
    pub(crate) controller_id: i32,
    pub(crate) brokers: HashMap<i32, BrokerMetadata>,
    pub(crate) topics: HashMap<String, TopicEntry>,
    /// When the last refresh succeeded; `None` before the first.
    pub(crate) refreshed_at: Option<Instant>,
    /// Set when an error showed that the cache is wrong.
    pub(crate) stale: bool,
    /// Counts successful refreshes, so concurrent refreshers can tell one happened.
    pub(crate) generation: u64,
}

impl Metadata {
    /// Merges a Metadata response that answered for `requested` topics.
    pub(crate) fn update(&mut self, response: MetadataResponse, requested: &[String]) {
        self.cluster_id = response.cluster_id;
        self.controller_id = response.controller_id;
        self.brokers = response
            .brokers
            .into_iter()
            .map(|b| {
                (
                    b.node_id,
                    BrokerMetadata {
                        node_id: b.node_id,
                        host: b.host,
                        port: b.port,
                        rack: b.rack,
                    },
                )
            })
            .collect();
        for name in requested {
            // A topic the broker left out is as good as unknown.
            self.topics.insert(
                name.clone(),
                TopicEntry::Error(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
            );
        }
        for topic in response.topics {
            if let Some((name, entry)) = topic_entry(topic) {
                self.topics.insert(name, entry);
            }
        }
        self.refreshed_at = Some(Instant::now());
        self.stale = false;
        self.generation += 1;
    }
}

/// A Metadata response's topic as the client keeps it: the topic or its error. `None` for an
/// entry without a name (a v10+ broker answering a lookup by id).
pub(crate) fn topic_entry(topic: MetadataResponseTopic) -> Option<(String, TopicEntry)> {
    let name = topic.name?;
    let code = ErrorCode(topic.error_code);
    let entry = if code.is_error() {
        TopicEntry::Error(code)
    } else {
        let mut partitions: Vec<PartitionMetadata> = topic
            .partitions
            .into_iter()
            .map(|p| PartitionMetadata {
                partition: p.partition_index,
                leader_id: p.leader_id,
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes,
                isr: p.isr_nodes,
                error: ErrorCode(p.error_code),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        TopicEntry::Known(TopicMetadata {
            name: name.clone(),
            topic_id: topic.topic_id,
            is_internal: topic.is_internal,
            partitions,
        })
    };
    Some((name, entry))
}

/// Whether a partition- or topic-level error code means the cached metadata is wrong: the
/// leader moved, the topic is gone or new, or the leader epoch changed.
pub fn invalidates_metadata(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            | ErrorCode::LEADER_NOT_AVAILABLE
            | ErrorCode::NOT_LEADER_OR_FOLLOWER
            | ErrorCode::REPLICA_NOT_AVAILABLE
            | ErrorCode::KAFKA_STORAGE_ERROR
            | ErrorCode::FENCED_LEADER_EPOCH
            | ErrorCode::UNKNOWN_LEADER_EPOCH
            | ErrorCode::OFFSET_NOT_AVAILABLE
            | ErrorCode::UNKNOWN_TOPIC_ID
            | ErrorCode::INCONSISTENT_TOPIC_ID
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };

    #[test]
    fn update_replaces_brokers_and_marks_missing_topics_unknown() {
        let mut metadata = Metadata {
            stale: true,
            ..Metadata::default()
        };
        let response = MetadataResponse {
            brokers: vec![MetadataResponseBroker {
                node_id: 1,
                host: "::1".into(),
                port: 9092,
                ..Default::default()
            }],
            topics: vec![MetadataResponseTopic {
                name: Some("t".into()),
                partitions: vec![
                    MetadataResponsePartition {
                        partition_index: 1,
                        leader_id: 1,
                        ..Default::default()
                    },
                    MetadataResponsePartition {
                        partition_index: 0,
                        leader_id: -1,
                        error_code: ErrorCode::LEADER_NOT_AVAILABLE.code(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        metadata.update(response, &["t".into(), "gone".into()]);
        assert!(!metadata.stale);
        assert_eq!(metadata.brokers[&1].address(), "[::1]:9092");
        let Some(TopicEntry::Known(t)) = metadata.topics.get("t") else {
            panic!("t unknown");
        };
        assert_eq!(t.partitions[0].partition, 0);
        assert_eq!(t.partitions[0].error, ErrorCode::LEADER_NOT_AVAILABLE);
        assert!(matches!(
            metadata.topics.get("gone"),
            Some(TopicEntry::Error(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION))
        ));
    }

    #[test]
    fn leader_errors_invalidate() {
        assert!(invalidates_metadata(ErrorCode::NOT_LEADER_OR_FOLLOWER));
        assert!(!invalidates_metadata(ErrorCode::NONE));
        assert!(!invalidates_metadata(ErrorCode::OFFSET_OUT_OF_RANGE));
    }
}
