//! EndTxn: a transactional producer commits or aborts its transaction. The transactional id's
//! coordinator (`transactions`) answers once PrepareCommit or PrepareAbort is durable in
//! `__transaction_state`; the markers are written to the transaction's partitions after that,
//! and the next transaction of the id waits (CONCURRENT_TRANSACTIONS) until they are.
//!
//! v5 is transaction version 2 (KIP-890 part 2) when the broker finalizes that level
//! (`weir.transaction.version`, default 2), as in Kafka: the coordinator bumps the producer's
//! epoch (or moves it to a new producer id at epoch 0 when the epoch runs out), the markers
//! carry the new epoch, and the answer names the identity the producer continues with.
//! Earlier versions keep the classic protocol: the epoch stays.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::messages::{EndTxnRequest, EndTxnResponse};
use weir_transaction::{
    EndTxnRequest as End, ProducerIdAndEpoch, TransactionResult, TransactionVersion,
};

super::always_responds!(EndTxnRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let respond = |code: weir_protocol::ErrorCode, producer: ProducerIdAndEpoch| EndTxnResponse {
        error_code: code.code(),
        producer_id: producer.producer_id,
        producer_epoch: producer.epoch,
        ..EndTxnResponse::default()
    };
    if let Err(code) =
        crate::transactions::check_coordinator(broker, &request.transactional_id).await
    {
        return respond(code, ProducerIdAndEpoch::default());
    }
    let end = End {
        transactional_id: request.transactional_id,
        producer: ProducerIdAndEpoch::new(request.producer_id, request.producer_epoch),
        result: if request.committed {
            TransactionResult::Commit
        } else {
            TransactionResult::Abort
        },
        transaction_version: if crate::transactions::uses_transaction_version_2(
            broker,
            ctx.api_version,
            5,
        ) {
            TransactionVersion::V2
        } else {
            TransactionVersion::V0
        },
    };
    let reply = broker
        .transactions
        .request(broker, false, |c, now, id, ids| {
            c.end_txn(now, id, &end, ids);
        })
        .await;
    match reply {
        Ok(producer) => respond(weir_protocol::ErrorCode::NONE, producer),
        // PRODUCER_FENCED exists for clients from v2 on.
        Err(f) => respond(f.code(ctx.api_version >= 2), ProducerIdAndEpoch::default()),
    }
}
