//! ListOffsets: the earliest, latest or max-timestamp offset of partitions, or the first offset
//! at or after a timestamp.
//!
//! "Latest" is the high watermark for READ_UNCOMMITTED and the last stable offset for
//! READ_COMMITTED (isolation_level 1, from v2): below the first offset of every ongoing
//! transaction (see `producer_state`); lookups by timestamp and max timestamp find nothing at
//! or above that bound, as in Kafka.
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
/// `isolation_level` READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let fallback = error_response(&request, ErrorCode::KAFKA_STORAGE_ERROR);
    let task_broker = broker.clone();
    // Looking up by timestamp reads segment files.
    let topics = crate::blocking::spawn(move || {
        request
            .topics
            .iter()
            .map(|topic| ListOffsetsTopicResponse {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| {
                        partition_offset(
                            &task_broker,
                            &topic.name,
                            p,
                            request.isolation_level == READ_COMMITTED,
                        )
                    })
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
    read_committed: bool,
) -> ListOffsetsPartitionResponse {
    let index = request.partition_index;
    let (log, leader_epoch) = match broker.leader_log(topic, index, request.current_leader_epoch) {
        Ok(found) => found,
        Err(code) => return failed(index, code),
    };
    let high_watermark = broker.high_watermark(topic, index);
    // What a consumer of this isolation level can read up to; lookups find nothing past it.
    let high_watermark = if read_committed {
        let Some(topic_id) = broker.topics.get(topic).map(|t| t.id) else {
            return failed(index, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
        };
        match broker.producer_states.last_stable_offset(
            topic,
            topic_id,
            index,
            &log,
            high_watermark,
        ) {
            Ok(offset) => offset,
            Err(e) => {
                debug!(topic, partition = index, error = %e, "cannot load the producer state");
                return failed(index, log_error_code(&e));
            }
        }
    } else {
        high_watermark
    };
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
