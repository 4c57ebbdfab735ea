//! The consumer protocol's member metadata and assignment, carried as opaque bytes inside
//! JoinGroup and SyncGroup.
//!
//! Kafka writes both as an int16 version followed by the struct in that version. A reader
//! that meets a newer version than it knows decodes it with the newest layout it has: later
//! versions only append fields, so the prefix it understands is laid out the same way. Bytes
//! after the fields it knows are ignored for the same reason.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use weir_protocol::messages::consumer_protocol_assignment as wire_assignment;
use weir_protocol::messages::consumer_protocol_subscription as wire_subscription;
use weir_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use weir_protocol::{ErrorCode, Message};

use crate::{Error, Result};

/// The protocol type consumers register under in JoinGroup.
pub(crate) const PROTOCOL_TYPE: &str = "consumer";

/// The subscription version this client writes: v1 carries owned partitions (cooperative
/// rebalancing needs them), v2 the generation they were owned in. v3 only adds a rack id.
const SUBSCRIPTION_VERSION: i16 = 2;
/// Assignment versions all share one layout; v0 is what every client reads.
const ASSIGNMENT_VERSION: i16 = 0;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A committed offset with the metadata string the group keeps beside it (Kafka's
/// `OffsetAndMetadata`): free text for the application, such as Kafka Streams' partition
/// time, bounded by the broker's `offset.metadata.max.bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetAndMetadata {
    /// The next offset to read, as Kafka stores it.
    pub offset: i64,
    /// The metadata; empty when none was committed.
    pub metadata: String,
}

impl OffsetAndMetadata {
    /// An offset with empty metadata.
    pub fn new(offset: i64) -> Self {
        Self {
            offset,
            metadata: String::new(),
        }
    }

    /// An offset with `metadata`.
    pub fn with_metadata(offset: i64, metadata: impl Into<String>) -> Self {
        Self {
            offset,
            metadata: metadata.into(),
        }
    }
}

/// What a member sends in JoinGroup: the topics it wants and, for cooperative rebalancing,
/// the partitions it still owns and the generation it got them in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Subscription {
    pub(crate) topics: Vec<String>,
    pub(crate) user_data: Option<Bytes>,
    pub(crate) owned_partitions: Vec<TopicPartition>,
    /// -1 when the member owns nothing from a known generation.
    pub(crate) generation_id: i32,
}

/// What the leader hands each member through SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Assignment {
    pub(crate) partitions: Vec<TopicPartition>,
    pub(crate) user_data: Option<Bytes>,
}

impl Subscription {
    pub(crate) fn encode(&self) -> Result<Bytes> {
        let message = ConsumerProtocolSubscription {
            topics: self.topics.clone(),
            user_data: self.user_data.clone(),
            owned_partitions: group_by_topic(&self.owned_partitions)
                .into_iter()
                .map(|(topic, partitions)| wire_subscription::TopicPartition { topic, partitions })
                .collect(),
            generation_id: self.generation_id,
            rack_id: None,
        };
        encode_versioned(&message, SUBSCRIPTION_VERSION)
    }

    pub(crate) fn decode(bytes: Bytes) -> Result<Self> {
        let message: ConsumerProtocolSubscription = decode_versioned(bytes)?;
        Ok(Self {
            topics: message.topics,
            user_data: message.user_data,
            owned_partitions: message
                .owned_partitions
                .into_iter()
                .flat_map(|tp| {
                    let topic = tp.topic;
                    tp.partitions
                        .into_iter()
                        .map(move |p| TopicPartition::new(topic.clone(), p))
                })
                .collect(),
            generation_id: message.generation_id,
        })
    }
}

impl Assignment {
    pub(crate) fn encode(&self) -> Result<Bytes> {
        let message = ConsumerProtocolAssignment {
            assigned_partitions: group_by_topic(&self.partitions)
                .into_iter()
                .map(|(topic, partitions)| wire_assignment::TopicPartition { topic, partitions })
                .collect(),
            user_data: self.user_data.clone(),
        };
        encode_versioned(&message, ASSIGNMENT_VERSION)
    }

    /// An empty byte string is an empty assignment: the coordinator sends one to members the
    /// leader left out (and librdkafka sends one for members with nothing).
    pub(crate) fn decode(bytes: Bytes) -> Result<Self> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let message: ConsumerProtocolAssignment = decode_versioned(bytes)?;
        Ok(Self {
            partitions: message
                .assigned_partitions
                .into_iter()
                .flat_map(|tp| {
                    let topic = tp.topic;
                    tp.partitions
                        .into_iter()
                        .map(move |p| TopicPartition::new(topic.clone(), p))
                })
                .collect(),
            user_data: message.user_data,
        })
    }
}

fn group_by_topic(partitions: &[TopicPartition]) -> BTreeMap<String, Vec<i32>> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic
            .entry(tp.topic.clone())
            .or_default()
            .push(tp.partition);
    }
    for partitions in by_topic.values_mut() {
        partitions.sort_unstable();
    }
    by_topic
}

fn encode_versioned<M: Message>(message: &M, version: i16) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

fn decode_versioned<M: Message>(mut bytes: Bytes) -> Result<M> {
    if bytes.len() < 2 {
        return Err(corrupt(M::NAME, "shorter than its version field"));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(corrupt(M::NAME, &format!("negative version {version}")));
    }
    let version = version.min(M::VERSIONS.max);
    M::decode(&mut bytes, version).map_err(|e| corrupt(M::NAME, &e.to_string()))
}

fn corrupt(what: &str, why: &str) -> Error {
    Error::Kafka {
        code: ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
        message: Some(format!("malformed {what}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subscription_bytes_match_kafkas_layout() {
        let sub = Subscription {
            topics: vec!["t".into()],
            user_data: None,
            owned_partitions: vec![TopicPartition::new("t", 1), TopicPartition::new("t", 0)],
            generation_id: 7,
        };
        let bytes = sub.encode().unwrap();
        let expected: &[u8] = &[
            0, 2, // version
            0, 0, 0, 1, 0, 1, b't', // topics
            0xff, 0xff, 0xff, 0xff, // user data: null
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, // owned partitions
            0, 0, 0, 7, // generation
        ];
        assert_eq!(&bytes[..], expected);
    }

    #[test]
    fn v0_subscription_from_an_old_client_decodes() {
        // librdkafka's eager assignors send version 0: topics and user data only.
        let bytes = Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b'a', 0xff, 0xff, 0xff, 0xff]);
        let sub = Subscription::decode(bytes).unwrap();
        assert_eq!(sub.topics, vec!["a".to_string()]);
        assert!(sub.owned_partitions.is_empty());
        assert_eq!(sub.generation_id, -1);
    }

    #[test]
    fn newer_versions_decode_with_the_newest_known_layout() {
        let mut buf = BytesMut::new();
        buf.put_i16(9);
        ConsumerProtocolSubscription {
            topics: vec!["a".into()],
            generation_id: 3,
            rack_id: Some("r1".into()),
            ..Default::default()
        }
        .encode(&mut buf, 3)
        .unwrap();
        buf.put_slice(b"future fields");
        let sub = Subscription::decode(buf.freeze()).unwrap();
        assert_eq!(sub.generation_id, 3);
    }

    #[test]
    fn malformed_metadata_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[0][..],
            &[0xff, 0xff][..],
            &[0, 0, 0xff, 0xff, 0xff, 0xf0][..],
        ] {
            assert!(Subscription::decode(Bytes::copy_from_slice(bytes)).is_err());
        }
        assert!(Assignment::decode(Bytes::from_static(&[0, 0, 0x7f, 0, 0, 0])).is_err());
        assert_eq!(
            Assignment::decode(Bytes::new()).unwrap(),
            Assignment::default()
        );
    }

    fn arb_partitions() -> impl Strategy<Value = Vec<TopicPartition>> {
        proptest::collection::btree_set(("[a-c]{1,3}", 0i32..20), 0..12).prop_map(|set| {
            set.into_iter()
                .map(|(t, p)| TopicPartition::new(t, p))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn subscription_round_trips(
            topics in proptest::collection::vec("[a-z]{1,8}", 0..5),
            owned in arb_partitions(),
            generation_id in -1i32..1000,
            user_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        ) {
            let sub = Subscription {
                topics,
                user_data: user_data.map(Bytes::from),
                owned_partitions: owned,
                generation_id,
            };
            prop_assert_eq!(Subscription::decode(sub.encode().unwrap()).unwrap(), sub);
        }

        #[test]
        fn assignment_round_trips(
            partitions in arb_partitions(),
            user_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        ) {
            let assignment = Assignment { partitions, user_data: user_data.map(Bytes::from) };
            prop_assert_eq!(Assignment::decode(assignment.encode().unwrap()).unwrap(), assignment);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Subscription::decode(Bytes::from(bytes.clone()));
            let _ = Assignment::decode(Bytes::from(bytes));
        }
    }
}
