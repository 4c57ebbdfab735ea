//! DescribeTopicPartitions (KIP-966): Metadata's per-partition answer for admin clients'
//! describeTopics (Kafka 3.7+), paged. Topics are answered in name order from the request's
//! cursor on, at most `response_partition_limit` partitions per response; `next_cursor` names
//! the topic and partition the next page starts at, as Kafka's `KRaftMetadataCache` pages.

use super::metadata::PartitionState;
use crate::connection::RequestContext;
use crate::state::Broker;
use std::collections::BTreeSet;
use std::sync::Arc;
use weir_metadata::{MetadataImage, TopicImage};
use weir_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use weir_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use weir_protocol::{ErrorCode, Uuid};

super::always_responds!(DescribeTopicPartitionsRequest);

/// Most partitions in one response whatever the request asks: Kafka's default
/// `max.request.partition.size.limit`.
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

/// Topic operations a client may perform (there is no authorizer): READ (3), WRITE (4),
/// CREATE (5), DELETE (6), ALTER (7), DESCRIBE (8), DESCRIBE_CONFIGS (10) and ALTER_CONFIGS (11),
/// as Kafka's AclOperation bit positions. The request has no "include" flag: Kafka always
/// fills them in.
const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = broker.topics.image();
    describe(broker, &image, request)
}

fn describe(
    broker: &Broker,
    image: &MetadataImage,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    // An empty list asks for every topic; those that do not exist are then never mentioned.
    let all = request.topics.is_empty();
    let (cursor_topic, cursor_partition) = request.cursor.as_ref().map_or(("", 0), |c| {
        (c.topic_name.as_str(), c.partition_index.max(0))
    });
    let names: BTreeSet<&str> = if all {
        image.topics().keys().map(String::as_str).collect()
    } else {
        request.topics.iter().map(|t| t.name.as_str()).collect()
    };
    if !all && request.cursor.is_some() && !names.contains(cursor_topic) {
        // Kafka: "DescribeTopicPartitionsRequest topic list should contain the cursor topic".
        return DescribeTopicPartitionsResponse {
            topics: names
                .iter()
                .map(|name| error_entry(name, ErrorCode::INVALID_REQUEST))
                .collect(),
            ..DescribeTopicPartitionsResponse::default()
        };
    }
    // A limit below one would page forever without progress.
    let mut remaining = request
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.range(cursor_topic..) {
        if remaining == 0 {
            // The previous topic filled the page exactly: the next one starts the next page,
            // whether or not it exists.
            next_cursor = Some(cursor(name, 0));
            break;
        }
        let Some(topic) = image.topic(name) else {
            if !all {
                let code = if crate::topics::validate_name(name).is_err() {
                    ErrorCode::INVALID_TOPIC_EXCEPTION
                } else {
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                };
                topics.push(error_entry(name, code));
            }
            continue;
        };
        let start = if *name == cursor_topic {
            cursor_partition
        } else {
            0
        };
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let end = count.min(start.saturating_add(remaining));
        topics.push(topic_entry(broker, image, topic, start..end));
        if end < count {
            next_cursor = Some(cursor(name, end));
            break;
        }
        remaining -= (end - start).max(0);
    }
    DescribeTopicPartitionsResponse {
        topics,
        next_cursor,
        ..DescribeTopicPartitionsResponse::default()
    }
}

fn cursor(topic: &str, partition_index: i32) -> Cursor {
    Cursor {
        topic_name: topic.to_string(),
        partition_index,
        ..Cursor::default()
    }
}

fn error_entry(name: &str, code: ErrorCode) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic {
        error_code: code.code(),
        name: Some(name.to_string()),
        topic_id: Uuid::ZERO,
        is_internal: weir_metadata::image::is_internal_topic(name),
        ..DescribeTopicPartitionsResponseTopic::default()
    }
}

fn topic_entry(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
    partitions: std::ops::Range<i32>,
) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic {
        error_code: 0,
        name: Some(topic.name.clone()),
        topic_id: Uuid(topic.id.0),
        is_internal: topic.is_internal(),
        partitions: partitions
            .filter_map(|index| {
                let p = topic.partitions.get(usize::try_from(index).ok()?)?;
                let state = PartitionState::of(broker, image, &topic.name, index, p);
                Some(DescribeTopicPartitionsResponsePartition {
                    error_code: state.error.code(),
                    partition_index: index,
                    leader_id: state.leader_id,
                    leader_epoch: state.leader_epoch,
                    replica_nodes: state.replicas,
                    isr_nodes: state.isr,
                    // Weir has no eligible leader replicas (KIP-966's ELR).
                    eligible_leader_replicas: Some(Vec::new()),
                    last_known_elr: Some(Vec::new()),
                    offline_replicas: state.offline_replicas,
                    ..DescribeTopicPartitionsResponsePartition::default()
                })
            })
            .collect(),
        topic_authorized_operations: TOPIC_OPERATIONS,
        ..DescribeTopicPartitionsResponseTopic::default()
    }
}
