//! AddPartitionsToTxn: a transactional producer adds the partitions it is about to write to its
//! transaction, through the transactional id's coordinator (`transactions`), which answers once
//! the Ongoing state naming them is durable in `__transaction_state`.
//!
//! - v0-3 (what clients send): one transaction. Partitions of unknown topics get
//!   UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as Kafka answers;
//!   otherwise the coordinator's one result applies to every partition.
//! - v4+ (KIP-890, inter-broker): several transactions, each answered the same way; a
//!   `verify_only` transaction is only checked (OK for partitions in its ongoing transaction,
//!   TRANSACTION_ABORTABLE for the others), which writes nothing; any other is a partition
//!   leader's or group coordinator's implicit add for a transaction version 2 producer
//!   (KIP-890 part 2: Produce v12+, TxnOffsetCommit v5 without AddOffsetsToTxn).

use crate::connection::RequestContext;
use crate::state::Broker;
use crate::transactions::TxnFailure;
use std::sync::Arc;
use weir_protocol::ErrorCode;
use weir_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use weir_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use weir_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use weir_transaction::{
    AddPartitionsRequest, ProducerIdAndEpoch, TopicPartition, TransactionVersion,
};

super::always_responds!(AddPartitionsToTxnRequest);

/// PRODUCER_FENCED exists for clients from v2 on.
const KNOWS_PRODUCER_FENCED: i16 = 2;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let knows_fenced = ctx.api_version >= KNOWS_PRODUCER_FENCED;
    if ctx.api_version <= 3 {
        let results = one_transaction(
            broker,
            request.v3_and_below_transactional_id,
            ProducerIdAndEpoch::new(
                request.v3_and_below_producer_id,
                request.v3_and_below_producer_epoch,
            ),
            false,
            TransactionVersion::V0,
            &request.v3_and_below_topics,
            knows_fenced,
        )
        .await;
        return AddPartitionsToTxnResponse {
            results_by_topic_v3_and_below: results,
            ..AddPartitionsToTxnResponse::default()
        };
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for txn in request.transactions {
        let topic_results = one_transaction(
            broker,
            txn.transactional_id.clone(),
            ProducerIdAndEpoch::new(txn.producer_id, txn.producer_epoch),
            txn.verify_only,
            TransactionVersion::V2,
            &txn.topics,
            knows_fenced,
        )
        .await;
        results.push(AddPartitionsToTxnResult {
            transactional_id: txn.transactional_id,
            topic_results,
            ..AddPartitionsToTxnResult::default()
        });
    }
    AddPartitionsToTxnResponse {
        results_by_transaction: results,
        ..AddPartitionsToTxnResponse::default()
    }
}

async fn one_transaction(
    broker: &Arc<Broker>,
    transactional_id: String,
    producer: ProducerIdAndEpoch,
    verify_only: bool,
    transaction_version: TransactionVersion,
    topics: &[AddPartitionsToTxnTopic],
    knows_fenced: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let partitions: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(&t.name, p))
        })
        .collect();
    let image = broker.topics.image();
    let unknown: Vec<bool> = partitions
        .iter()
        .map(|tp| {
            image
                .topic(&tp.topic)
                .and_then(|t| t.partition(tp.partition))
                .is_none()
        })
        .collect();
    if unknown.iter().any(|u| *u) {
        let codes = unknown.iter().map(|&u| {
            if u {
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                ErrorCode::OPERATION_NOT_ATTEMPTED
            }
        });
        return results(&partitions, codes);
    }
    if let Err(code) = crate::transactions::check_coordinator(broker, &transactional_id).await {
        return results(&partitions, std::iter::repeat(code));
    }
    let add = AddPartitionsRequest {
        transactional_id,
        producer,
        partitions: partitions.clone(),
        transaction_version,
    };
    if verify_only {
        let verified = broker
            .transactions
            .read(|c| c.verify_partitions_in_txn(&add));
        return match verified {
            Ok(each) => {
                let codes: Vec<ErrorCode> = each
                    .iter()
                    .map(|(_, r)| match r {
                        Ok(()) => ErrorCode::NONE,
                        Err(e) => ErrorCode(e.code_for_version(knows_fenced)),
                    })
                    .collect();
                results(&partitions, codes)
            }
            Err(e) => results(
                &partitions,
                std::iter::repeat(ErrorCode(e.code_for_version(knows_fenced))),
            ),
        };
    }
    let reply = broker
        .transactions
        .request(broker, false, |c, now, id, _| {
            c.add_partitions_to_txn(now, id, &add);
        })
        .await;
    let code = reply.map_or_else(|f: TxnFailure| f.code(knows_fenced), |_| ErrorCode::NONE);
    results(&partitions, std::iter::repeat(code))
}

/// Per-partition results grouped by topic, each partition with the next code.
fn results(
    partitions: &[TopicPartition],
    codes: impl IntoIterator<Item = ErrorCode>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let each = partitions.iter().zip(codes).map(|(tp, code)| {
        (
            tp.topic.clone(),
            AddPartitionsToTxnPartitionResult {
                partition_index: tp.partition,
                partition_error_code: code.code(),
                ..AddPartitionsToTxnPartitionResult::default()
            },
        )
    });
    super::group_by_topic(each)
        .into_iter()
        .map(
            |(name, results_by_partition)| AddPartitionsToTxnTopicResult {
                name,
                results_by_partition,
                ..AddPartitionsToTxnTopicResult::default()
            },
        )
        .collect()
}
