//! AddOffsetsToTxn: a transactional producer that will commit a consumer group's offsets in
//! its transaction (`sendOffsetsToTransaction`) adds the group's `__consumer_offsets` partition
//! to the transaction, so that the transaction's markers reach it too. Answered by the
//! transactional id's coordinator (`transactions`) once that is durable.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use weir_transaction::{AddOffsetsRequest, ProducerIdAndEpoch, TransactionVersion};

super::always_responds!(AddOffsetsToTxnRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let respond = |code: weir_protocol::ErrorCode| AddOffsetsToTxnResponse {
        error_code: code.code(),
        ..AddOffsetsToTxnResponse::default()
    };
    if let Err(code) =
        crate::transactions::check_coordinator(broker, &request.transactional_id).await
    {
        return respond(code);
    }
    let add = AddOffsetsRequest {
        transactional_id: request.transactional_id,
        producer: ProducerIdAndEpoch::new(request.producer_id, request.producer_epoch),
        group_id: request.group_id,
        transaction_version: TransactionVersion::V0,
    };
    let reply = broker
        .transactions
        .request(broker, false, |c, now, id, _| {
            c.add_offsets_to_txn(now, id, &add);
        })
        .await;
    // PRODUCER_FENCED exists for clients from v2 on.
    respond(reply.map_or_else(
        |f| f.code(ctx.api_version >= 2),
        |_| weir_protocol::ErrorCode::NONE,
    ))
}
