//! ListTransactions: the transactional ids this broker coordinates (admin clients ask every
//! broker and merge), filtered by state, producer id and (v1) how long the transaction has
//! been open. COORDINATOR_LOAD_IN_PROGRESS while a partition this broker leads loads.
//!
//! v2's transactional id pattern (a Java regular expression) is not served: Weir advertises
//! v0-1.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::ErrorCode;
use weir_protocol::messages::list_transactions_response::TransactionState;
use weir_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
use weir_transaction::ListTransactionsFilter;

super::always_responds!(ListTransactionsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let txns = &broker.transactions;
    if txns.any_loading() {
        return ListTransactionsResponse {
            error_code: ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.code(),
            ..ListTransactionsResponse::default()
        };
    }
    let filter = ListTransactionsFilter {
        states: request.state_filters,
        producer_ids: request.producer_id_filters,
        // v0 has no duration filter.
        duration_ms: if ctx.api_version >= 1 {
            request.duration_filter
        } else {
            -1
        },
    };
    let listed = txns.read(|c| c.list_transactions(crate::groups::now_ms(), &filter));
    ListTransactionsResponse {
        unknown_state_filters: listed.unknown_state_filters,
        transaction_states: listed
            .transactions
            .into_iter()
            .map(|t| TransactionState {
                transactional_id: t.transactional_id,
                producer_id: t.producer_id,
                transaction_state: t.state.as_str().to_string(),
                ..TransactionState::default()
            })
            .collect(),
        ..ListTransactionsResponse::default()
    }
}
