//! DescribeQuorum (KIP-595): the metadata quorum as its leader sees it — leader, epoch (the
//! Raft term), high watermark, and each voter's log end offset — for the one partition of
//! `__cluster_metadata`. Any broker answers: it asks the leader when it does not lead.
//!
//! Offsets are Kafka's: a Raft index `i` is offset `i`, so the log end offset and high
//! watermark are the last index plus one. Voters' fetch times are not tracked (-1). Observers
//! are the broker-only nodes that fetched the metadata log from the leader in the last minute,
//! with their last fetch time.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::ErrorCode;
use weir_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use weir_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};

super::always_responds!(DescribeQuorumRequest);

/// The metadata log's topic name, as Kafka's tools ask for it.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let described = broker.cluster.describe_quorum().await;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let known = topic.topic_name == METADATA_TOPIC && p.partition_index == 0;
                    match (&described, known) {
                        (_, false) => {
                            failed(p.partition_index, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
                        }
                        (None, true) => {
                            failed(p.partition_index, ErrorCode::NOT_LEADER_OR_FOLLOWER)
                        }
                        (Some(quorum), true) => PartitionData {
                            partition_index: 0,
                            error_code: 0,
                            leader_id: quorum
                                .leader
                                .and_then(|l| i32::try_from(l).ok())
                                .unwrap_or(-1),
                            leader_epoch: i32::try_from(quorum.term).unwrap_or(i32::MAX),
                            high_watermark: end_offset(quorum.commit_index),
                            current_voters: quorum
                                .voters
                                .iter()
                                .map(|v| ReplicaState {
                                    replica_id: i32::try_from(v.node_id).unwrap_or(-1),
                                    log_end_offset: end_offset(v.matched_index),
                                    last_fetch_timestamp: -1,
                                    last_caught_up_timestamp: -1,
                                    ..ReplicaState::default()
                                })
                                .collect(),
                            observers: quorum
                                .observers
                                .iter()
                                .map(|o| ReplicaState {
                                    replica_id: i32::try_from(o.node_id).unwrap_or(-1),
                                    log_end_offset: end_offset(Some(o.matched_index)),
                                    last_fetch_timestamp: o.last_fetch_ms,
                                    last_caught_up_timestamp: -1,
                                    ..ReplicaState::default()
                                })
                                .collect(),
                            ..PartitionData::default()
                        },
                    }
                })
                .collect();
            TopicData {
                topic_name: topic.topic_name,
                partitions,
                ..TopicData::default()
            }
        })
        .collect();
    DescribeQuorumResponse {
        error_code: 0,
        topics,
        // v2: where each voter's CONTROLLER listener is.
        nodes: broker
            .cluster
            .voters()
            .iter()
            .filter_map(|(id, address)| {
                let (host, port) = address.rsplit_once(':')?;
                Some(Node {
                    node_id: i32::try_from(*id).ok()?,
                    listeners: vec![Listener {
                        name: "CONTROLLER".into(),
                        host: host.to_string(),
                        port: port.parse().ok()?,
                        ..Listener::default()
                    }],
                    ..Node::default()
                })
            })
            .collect(),
        ..DescribeQuorumResponse::default()
    }
}

/// Kafka's offset after the entry at Raft index `index` (-1 when unknown).
fn end_offset(index: Option<u64>) -> i64 {
    index
        .and_then(|i| i64::try_from(i).ok())
        .map_or(-1, |i| i.saturating_add(1))
}

fn failed(partition_index: i32, code: ErrorCode) -> PartitionData {
    PartitionData {
        partition_index,
        error_code: code.code(),
        leader_id: -1,
        leader_epoch: -1,
        high_watermark: -1,
        ..PartitionData::default()
    }
}
