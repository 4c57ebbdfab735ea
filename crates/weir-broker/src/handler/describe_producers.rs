//! DescribeProducers: the idempotent and transactional producers a partition leader knows, with
//! their epoch, last sequence and the start of any open transaction — what
//! `kafka-transactions.sh describe-producers` shows to find a hanging transaction. Asked of
//! each partition's leader: NOT_LEADER_OR_FOLLOWER elsewhere, UNKNOWN_TOPIC_OR_PARTITION for a
//! partition that does not exist.
//!
//! `last_timestamp` is the broker's clock at the producer's last append, where Kafka reports
//! the last batch's max timestamp (the client's clock): the producer table keeps the former,
//! which is what producer expiration goes by.

use crate::connection::RequestContext;
use crate::error::log_error_code;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_protocol::ErrorCode;
use weir_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use weir_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};

super::always_responds!(DescribeProducersRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let fallback = each_partition(&request, |_, p| failed(p, ErrorCode::KAFKA_STORAGE_ERROR));
    let task_broker = broker.clone();
    // A producer table not loaded yet is rebuilt from the log, which reads segment files.
    let topics = crate::blocking::spawn(move || {
        each_partition(&request, |topic, p| {
            describe_partition(&task_broker, topic, p)
        })
    })
    .await
    .unwrap_or(fallback);
    DescribeProducersResponse {
        topics,
        ..DescribeProducersResponse::default()
    }
}

/// The response's topics, with `describe` answering each requested partition.
fn each_partition(
    request: &DescribeProducersRequest,
    describe: impl Fn(&str, i32) -> PartitionResponse,
) -> Vec<TopicResponse> {
    request
        .topics
        .iter()
        .map(|topic| TopicResponse {
            name: topic.name.clone(),
            partitions: topic
                .partition_indexes
                .iter()
                .map(|&p| describe(&topic.name, p))
                .collect(),
            ..TopicResponse::default()
        })
        .collect()
}

fn failed(partition_index: i32, code: ErrorCode) -> PartitionResponse {
    PartitionResponse {
        partition_index,
        error_code: code.code(),
        ..PartitionResponse::default()
    }
}

fn describe_partition(broker: &Broker, topic: &str, partition: i32) -> PartitionResponse {
    let (log, _) = match broker.leader_log(topic, partition, -1) {
        Ok(found) => found,
        Err(code) => return failed(partition, code),
    };
    let Some(topic_id) = broker.topics.get(topic).map(|t| t.id) else {
        return failed(partition, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let producers = broker
        .producer_states
        .with_table(topic, topic_id, partition, &log, |t| t.active_producers());
    match producers {
        Ok(producers) => PartitionResponse {
            partition_index: partition,
            active_producers: producers
                .into_iter()
                .map(|p| ProducerState {
                    producer_id: p.producer_id,
                    producer_epoch: i32::from(p.epoch),
                    last_sequence: p.last_sequence,
                    last_timestamp: p.last_append_ms,
                    coordinator_epoch: p.coordinator_epoch,
                    current_txn_start_offset: p.current_txn_first_offset.unwrap_or(-1),
                    ..ProducerState::default()
                })
                .collect(),
            ..PartitionResponse::default()
        },
        Err(e) => {
            debug!(topic, partition, error = %e, "cannot load the producer state");
            failed(partition, log_error_code(&e))
        }
    }
}
