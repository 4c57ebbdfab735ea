//! TxnOffsetCommit: a transactional producer commits a consumer group's offsets inside its
//! transaction (`sendOffsetsToTransaction`, after AddOffsetsToTxn added the group's
//! `__consumer_offsets` partition to the transaction). Sent to the group's coordinator.
//!
//! The request is checked as Kafka does (this broker coordinates the group; the member, if
//! named, belongs to it and the generation, if given, is current; unknown topics are refused
//! one by one) and verified with the transaction coordinator (KIP-890 part 1: the group's
//! partition is in the producer's ongoing transaction; from v5, when the broker finalizes
//! transaction version 2, the partition is added to it instead, since such producers send no
//! AddOffsetsToTxn). The offsets are then written to the
//! group's `__consumer_offsets` partition as a transactional batch of the producer (as Kafka
//! writes them) and held as pending in `groups` until the transaction's marker lands on that
//! partition: COMMIT makes them the group's committed offsets, ABORT drops them. A new
//! coordinator rebuilds pending offsets from the log (`groups::replay`).

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_group::{OffsetCommit, OffsetCommitRequest as Commit, TopicPartition};
use weir_protocol::ErrorCode;
use weir_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use weir_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

super::always_responds!(TxnOffsetCommitRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let not_coordinator = crate::groups::check_coordinator(broker, &request.group_id)
        .await
        .err();
    // Per partition in request order: topic, partition, and the error already decided.
    let mut decided: Vec<(String, i32, Option<ErrorCode>)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let known = broker.topics.get(&topic.name);
        for p in &topic.partitions {
            let error = if not_coordinator.is_some() {
                not_coordinator
            } else {
                match &known {
                    Some(t) if (0..t.partitions).contains(&p.partition_index) => {
                        offsets.push(OffsetCommit {
                            partition: TopicPartition::new(t.name.clone(), p.partition_index),
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.clone(),
                        });
                        None
                    }
                    _ => Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                }
            };
            decided.push((topic.name.clone(), p.partition_index, error));
        }
    }
    let commit = Commit {
        group_id: request.group_id,
        generation_id: request.generation_id,
        member_id: request.member_id,
        group_instance_id: request.group_instance_id,
        retention_time_ms: None,
        offsets,
    };
    let checked = if not_coordinator.is_some() || commit.offsets.is_empty() {
        Ok(())
    } else {
        broker
            .groups
            .read(|c| c.check_txn_offset_commit(&commit))
            .map_err(|e| crate::error::group_error_code(&e))
    };
    debug!(
        group = %commit.group_id,
        producer_id = request.producer_id,
        partitions = commit.offsets.len(),
        error = checked.err().map(|c| c.name()),
        "TxnOffsetCommit"
    );
    let mut checked = checked;
    if checked.is_ok() && not_coordinator.is_none() && !commit.offsets.is_empty() {
        checked = persist(
            broker,
            &request.transactional_id,
            (request.producer_id, request.producer_epoch),
            commit,
            crate::transactions::TxnCheck::for_version(broker, ctx.api_version, 5),
        )
        .await;
    }
    let each = decided.into_iter().map(|(topic, partition, error)| {
        let code = error.unwrap_or_else(|| checked.err().unwrap_or(ErrorCode::NONE));
        (
            topic,
            TxnOffsetCommitResponsePartition {
                partition_index: partition,
                error_code: code.code(),
                ..TxnOffsetCommitResponsePartition::default()
            },
        )
    });
    TxnOffsetCommitResponse {
        topics: super::group_by_topic(each)
            .into_iter()
            .map(|(name, partitions)| TxnOffsetCommitResponseTopic {
                name,
                partitions,
                ..TxnOffsetCommitResponseTopic::default()
            })
            .collect(),
        ..TxnOffsetCommitResponse::default()
    }
}

/// Verifies the transaction, writes the offsets and holds them until the marker.
async fn persist(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer: (i64, i16),
    commit: Commit,
    check: crate::transactions::TxnCheck,
) -> Result<(), ErrorCode> {
    let partition = broker.groups.partition_for(&commit.group_id);
    let guard = broker
        .groups
        .begin_txn_offsets_verification(broker, producer, &commit.group_id)
        .await?;
    crate::transactions::verify_in_txn(
        broker,
        transactional_id,
        weir_transaction::ProducerIdAndEpoch::new(producer.0, producer.1),
        weir_transaction::TopicPartition::new(crate::groups::OFFSETS_TOPIC, partition),
        check,
    )
    .await
    .map_err(|code| match code {
        ErrorCode::TRANSACTION_ABORTABLE | ErrorCode::INVALID_TXN_STATE => {
            ErrorCode::INVALID_TXN_STATE
        }
        ErrorCode::PRODUCER_FENCED | ErrorCode::INVALID_PRODUCER_EPOCH => {
            ErrorCode::INVALID_PRODUCER_EPOCH
        }
        ErrorCode::INVALID_PRODUCER_ID_MAPPING | ErrorCode::CONCURRENT_TRANSACTIONS => code,
        // The transaction coordinator is moving or loading: the client retries.
        _ => ErrorCode::COORDINATOR_NOT_AVAILABLE,
    })?;
    broker
        .groups
        .append_txn_offsets(broker, (producer, guard), &commit.group_id, &commit.offsets)
        .await
        .map_err(|code| match code {
            ErrorCode::PRODUCER_FENCED => ErrorCode::INVALID_PRODUCER_EPOCH,
            code => code,
        })?;
    broker
        .groups
        .add_txn_offsets(producer.0, &commit.group_id, commit.offsets);
    Ok(())
}
