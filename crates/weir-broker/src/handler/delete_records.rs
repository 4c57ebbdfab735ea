//! DeleteRecords: moves partitions' log start offsets forward (whole segments below it are
//! deleted) and answers the new low watermark.

use crate::connection::RequestContext;
use crate::error::log_error_code;
use crate::state::Broker;
use std::sync::Arc;
use tracing::{debug, info};
use weir_protocol::ErrorCode;
use weir_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use weir_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

super::always_responds!(DeleteRecordsRequest);

/// The offset that means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let fallback: Vec<DeleteRecordsTopicResult> = request
        .topics
        .iter()
        .map(|t| DeleteRecordsTopicResult {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| failed(p.partition_index, ErrorCode::KAFKA_STORAGE_ERROR))
                .collect(),
            ..DeleteRecordsTopicResult::default()
        })
        .collect();
    let task_broker = broker.clone();
    // Deleting segments is file I/O.
    let topics = crate::blocking::spawn(move || {
        request
            .topics
            .iter()
            .map(|topic| DeleteRecordsTopicResult {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| delete_before(&task_broker, &topic.name, p.partition_index, p.offset))
                    .collect(),
                ..DeleteRecordsTopicResult::default()
            })
            .collect()
    })
    .await
    .unwrap_or(fallback);
    DeleteRecordsResponse {
        topics,
        ..DeleteRecordsResponse::default()
    }
}

fn failed(partition_index: i32, code: ErrorCode) -> DeleteRecordsPartitionResult {
    DeleteRecordsPartitionResult {
        partition_index,
        low_watermark: -1,
        error_code: code.code(),
        ..DeleteRecordsPartitionResult::default()
    }
}

fn delete_before(
    broker: &Broker,
    topic: &str,
    partition: i32,
    offset: i64,
) -> DeleteRecordsPartitionResult {
    let (log, _) = match broker.leader_log(topic, partition, -1) {
        Ok(found) => found,
        Err(code) => return failed(partition, code),
    };
    // As Kafka: records above the high watermark (not yet committed) cannot be deleted.
    let high_watermark = broker.high_watermark(topic, partition);
    let offset = if offset == HIGH_WATERMARK {
        high_watermark
    } else {
        offset
    };
    if offset > high_watermark {
        debug!(
            topic,
            partition, offset, high_watermark, "delete records above the high watermark refused"
        );
        return failed(partition, weir_protocol::ErrorCode::OFFSET_OUT_OF_RANGE);
    }
    match log.delete_records_before(offset) {
        Ok(low_watermark) => {
            info!(topic, partition, low_watermark, "deleted records");
            DeleteRecordsPartitionResult {
                partition_index: partition,
                low_watermark,
                error_code: 0,
                ..DeleteRecordsPartitionResult::default()
            }
        }
        Err(e) => {
            debug!(topic, partition, offset, error = %e, "delete records refused");
            failed(partition, log_error_code(&e))
        }
    }
}
