//! Metadata records: the entries of the replicated metadata log.
//!
//! Kafka's KRaft records are the model (RegisterBrokerRecord, TopicRecord, PartitionRecord,
//! PartitionChangeRecord, ConfigRecord, RemoveTopicRecord, ProducerIdsRecord, ...); the
//! encoding is Weir's own (serde). Records say *what changed*; derived values that must be the
//! same on every node (leader and partition epochs, registration offsets) are computed when a
//! record is applied, so a record can never carry an inconsistent epoch.

use crate::types::{BrokerId, BrokerRegistration, ConfigResource, TopicId};
use serde::{Deserialize, Serialize};

/// One change to the cluster's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MetadataRecord {
    /// The cluster's id, written once by the first active controller.
    ClusterId {
        /// The id (22 characters, as Kafka's).
        cluster_id: String,
    },
    /// A feature's finalized level (`metadata.version` and friends).
    FeatureLevel {
        /// The feature name.
        name: String,
        /// Its level; 0 removes it.
        level: i16,
    },
    /// A broker (re)registered. Replaces any earlier registration of the same id. Its
    /// `registered_at_offset` is ignored: the image sets it to the record's offset.
    RegisterBroker(BrokerRegistration),
    /// A registered broker was fenced, unfenced or entered controlled shutdown.
    BrokerRegistrationChange {
        /// The broker.
        broker_id: BrokerId,
        /// The registration this applies to; a stale epoch makes the record invalid.
        broker_epoch: i64,
        /// The new fenced state, if it changes.
        fenced: Option<bool>,
        /// The new controlled-shutdown state, if it changes.
        in_controlled_shutdown: Option<bool>,
    },
    /// A broker left the cluster for good.
    UnregisterBroker {
        /// The broker.
        broker_id: BrokerId,
        /// The registration being removed.
        broker_epoch: i64,
    },
    /// A topic was created; its partitions follow as [`MetadataRecord::Partition`] records.
    Topic {
        /// The name.
        name: String,
        /// The id.
        topic_id: TopicId,
    },
    /// A partition was created. Epochs start at 0.
    Partition {
        /// Its topic.
        topic_id: TopicId,
        /// Its index: the next index of the topic (partitions are created in order).
        partition: i32,
        /// Replicas, the preferred leader first.
        replicas: Vec<BrokerId>,
        /// In-sync replicas.
        isr: Vec<BrokerId>,
        /// The leader, or [`crate::NO_LEADER`].
        leader: BrokerId,
    },
    /// A partition's leader, ISR or replicas changed. The partition epoch grows by one; the
    /// leader epoch grows by one when the leader changes.
    PartitionChange {
        /// Its topic.
        topic_id: TopicId,
        /// Its index.
        partition: i32,
        /// The new leader, if it changes.
        leader: Option<BrokerId>,
        /// The new ISR, if it changes.
        isr: Option<Vec<BrokerId>>,
        /// The new replicas, if they change.
        replicas: Option<Vec<BrokerId>>,
        /// The replicas a reassignment adds, if they change (empty: none). Absent in records
        /// written before reassignments existed.
        #[serde(default)]
        adding_replicas: Option<Vec<BrokerId>>,
        /// The replicas a reassignment removes, if they change (empty: none).
        #[serde(default)]
        removing_replicas: Option<Vec<BrokerId>>,
        /// The replicas before the reassignment, in order, if they change (empty: none).
        #[serde(default)]
        original_replicas: Option<Vec<BrokerId>>,
    },
    /// A config entry was set (`Some`) or removed (`None`).
    Config {
        /// Whose entry.
        resource: ConfigResource,
        /// The Kafka property name.
        name: String,
        /// The value, or `None` to remove the entry.
        value: Option<String>,
    },
    /// A topic was deleted, with its partitions and configs.
    RemoveTopic {
        /// The topic.
        topic_id: TopicId,
    },
    /// A block of producer ids was handed to a broker; ids below `next_producer_id` are never
    /// handed out again.
    ProducerIds {
        /// The broker that got the block; -1 for the controller's own bootstrap import.
        broker_id: BrokerId,
        /// Its registration.
        broker_epoch: i64,
        /// The first id not yet handed out.
        next_producer_id: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_serde() {
        let records = vec![
            MetadataRecord::ClusterId {
                cluster_id: "abc".into(),
            },
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: TopicId([7; 16]),
            },
            MetadataRecord::PartitionChange {
                topic_id: TopicId([7; 16]),
                partition: 0,
                leader: Some(2),
                isr: None,
                replicas: None,
                adding_replicas: Some(vec![3]),
                removing_replicas: None,
                original_replicas: Some(vec![1, 2]),
            },
            MetadataRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: "retention.ms".into(),
                value: Some("1".into()),
            },
        ];
        let text = serde_json::to_string(&records).unwrap();
        let back: Vec<MetadataRecord> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, records);
    }

    /// A PartitionChange written before reassignments existed still loads.
    #[test]
    fn partition_change_without_reassignment_fields_loads() {
        let old = r#"{"PartitionChange":{"topic_id":"07070707070707070707070707070707","partition":0,"leader":2,"isr":null,"replicas":null}}"#;
        let record: MetadataRecord = serde_json::from_str(old).unwrap();
        assert!(matches!(
            record,
            MetadataRecord::PartitionChange {
                adding_replicas: None,
                removing_replicas: None,
                original_replicas: None,
                ..
            }
        ));
    }
}
