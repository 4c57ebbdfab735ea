//! DescribeTransactions: the state of transactional ids this broker coordinates (clients ask
//! each id's coordinator, found with FindCoordinator). NOT_COORDINATOR for ids of other
//! brokers, COORDINATOR_LOAD_IN_PROGRESS while the id's partition loads,
//! TRANSACTIONAL_ID_NOT_FOUND for unknown ids.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::ErrorCode;
use weir_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use weir_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse};

super::always_responds!(DescribeTransactionsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let txns = &broker.transactions;
    let described = txns.read(|c| c.describe_transactions(&request.transactional_ids));
    let transaction_states = request
        .transactional_ids
        .into_iter()
        .zip(described)
        .map(|(id, result)| {
            let loading = txns.loading(txns.partition_for(&id));
            match result {
                Ok(d) => TransactionState {
                    error_code: 0,
                    transactional_id: id,
                    transaction_state: d.state.as_str().to_string(),
                    transaction_timeout_ms: d.transaction_timeout_ms,
                    transaction_start_time_ms: d.transaction_start_time_ms,
                    producer_id: d.producer_id,
                    producer_epoch: d.producer_epoch,
                    topics: super::group_by_topic(
                        d.partitions.into_iter().map(|tp| (tp.topic, tp.partition)),
                    )
                    .into_iter()
                    .map(|(topic, partitions)| TopicData {
                        topic,
                        partitions,
                        ..TopicData::default()
                    })
                    .collect(),
                    ..TransactionState::default()
                },
                Err(e) => TransactionState {
                    error_code: if loading {
                        ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.code()
                    } else {
                        e.code()
                    },
                    transactional_id: id,
                    transaction_state: String::new(),
                    producer_id: -1,
                    producer_epoch: -1,
                    ..TransactionState::default()
                },
            }
        })
        .collect();
    DescribeTransactionsResponse {
        transaction_states,
        ..DescribeTransactionsResponse::default()
    }
}
