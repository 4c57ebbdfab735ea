//! ListOffsets: the earliest, latest or max-timestamp offset of partitions, or the first offset
//! at or after a timestamp.
//!
//! "Latest" is the high watermark (no transactions yet, so the last stable offset is the same
//! and both isolation levels get it); lookups by timestamp find nothing at or above it.
//! Found offsets report the partition's current leader epoch.
//! There is no tiered storage: "earliest local" is the log start offset, and "latest tiered" /
//! "earliest pending upload" find nothing (-1).

use crate::connection::RequestContext;
use crate::error::log_error_code;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_protocol::ErrorCode;
use weir_protocol::messages::list_offsets_request::ListOffsetsPartition;
use weir_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use weir_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

super::always_responds!(ListOffsetsRequest);

/// Special timestamps of ListOffsets (Kafka's `ListOffsetsRequest` constants).
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let fallback = error_response(&request, ErrorCode::KAFKA_STORAGE_ERROR);
    let task_broker = broker.clone();
    // Looking up by timestamp reads segment files.
    let topics = tokio::task::spawn_blocking(move || {
        request
            .topics
            .iter()
            .map(|topic| ListOffsetsTopicResponse {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| partition_offset(&task_broker, &topic.name, p))
                    .collect(),
                ..ListOffsetsTopicResponse::default()
            })
            .collect()
    })
    .await
    .unwrap_or(fallback);
    ListOffsetsResponse {
        topics,
        ..ListOffsetsResponse::default()
    }
}

fn error_response(request: &ListOffsetsRequest, code: ErrorCode) -> Vec<ListOffsetsTopicResponse> {
    request
        .topics
        .iter()
        .map(|topic| ListOffsetsTopicResponse {
            name: topic.name.clone(),
            partitions: topic
                .partitions
                .iter()
                .map(|p| failed(p.partition_index, code))
                .collect(),
            ..ListOffsetsTopicResponse::default()
        })
        .collect()
}

fn failed(partition_index: i32, code: ErrorCode) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse {
        partition_index,
        error_code: code.code(),
        ..ListOffsetsPartitionResponse::default()
    }
}

fn partition_offset(
    broker: &Broker,
    topic: &str,
    request: &ListOffsetsPartition,
) -> ListOffsetsPartitionResponse {
    let index = request.partition_index;
    let (log, leader_epoch) = match broker.leader_log(topic, index, request.current_leader_epoch) {
        Ok(found) => found,
        Err(code) => return failed(index, code),
    };
    let high_watermark = broker.high_watermark(topic, index);
    let found = match request.timestamp {
        EARLIEST | EARLIEST_LOCAL => Some((log.log_start_offset(), -1)),
        LATEST => Some((high_watermark, -1)),
        MAX_TIMESTAMP => match log.max_timestamp_offset() {
            Ok(found) => found
                .map(|t| (t.offset, t.timestamp))
                .filter(|(offset, _)| *offset < high_watermark),
            Err(e) => {
                debug!(topic, partition = index, error = %e, "max timestamp lookup failed");
                return failed(index, log_error_code(&e));
            }
        },
        t if t < 0 => None,
        t => match log.fetch_offset_by_timestamp(t) {
            Ok(found) => found
                .map(|t| (t.offset, t.timestamp))
                .filter(|(offset, _)| *offset < high_watermark),
            Err(e) => {
                debug!(topic, partition = index, error = %e, "offset lookup by timestamp failed");
                return failed(index, log_error_code(&e));
            }
        },
    };
    match found {
        Some((offset, timestamp)) => ListOffsetsPartitionResponse {
            partition_index: index,
            error_code: 0,
            timestamp,
            offset,
            leader_epoch,
            ..ListOffsetsPartitionResponse::default()
        },
        None => ListOffsetsPartitionResponse {
            partition_index: index,
            error_code: 0,
            ..ListOffsetsPartitionResponse::default()
        },
    }
}
