//! InitProducerId: gives a producer its producer id and epoch.
//!
//! - Without a transactional id (an idempotent producer), as Kafka does, every request gets a
//!   fresh id at epoch 0: a non-transactional producer bumps its epoch itself (KIP-360) and only
//!   comes back when it needs a new id, so a producer id/epoch carried in the request (v3+)
//!   needs no check.
//! - With one, the transaction coordinator of the id answers (`transactions`): this broker must
//!   lead the id's `__transaction_state` partition (else NOT_COORDINATOR); a new id gets a
//!   producer id from the controller's blocks, a known one the next epoch, which fences the
//!   earlier producer (an open transaction of it is aborted first, and the request answered
//!   CONCURRENT_TRANSACTIONS meanwhile, which clients retry).

use crate::connection::RequestContext;
use crate::error::{AdminError, BrokerError};
use crate::state::Broker;
use std::sync::Arc;
use tracing::{debug, warn};
use weir_protocol::ErrorCode;
use weir_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use weir_transaction::ProducerIdAndEpoch;

super::always_responds!(InitProducerIdRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if let Some(transactional_id) = request.transactional_id.clone().filter(|t| !t.is_empty()) {
        return transactional(broker, ctx, transactional_id, &request).await;
    }
    let task_broker = broker.clone();
    // Now and then a new block of ids comes from the controller (a metadata log write).
    let allocated = crate::blocking::spawn(move || task_broker.producer_ids.allocate(&task_broker))
        .await
        .map_err(|_| AdminError::Broker(BrokerError::TaskFailed))
        .and_then(|r| r);
    match allocated {
        Ok(producer_id) => {
            debug!(
                producer_id,
                client_id = ctx.client_id.as_deref().unwrap_or(""),
                "allocated producer id"
            );
            InitProducerIdResponse {
                error_code: 0,
                producer_id,
                producer_epoch: 0,
                ..InitProducerIdResponse::default()
            }
        }
        Err(e) => {
            warn!(error = %e, cause = ?std::error::Error::source(&e), "cannot allocate a producer id");
            failed(e.code())
        }
    }
}

fn failed(code: ErrorCode) -> InitProducerIdResponse {
    InitProducerIdResponse {
        error_code: code.code(),
        producer_id: -1,
        producer_epoch: -1,
        ..InitProducerIdResponse::default()
    }
}

async fn transactional(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    transactional_id: String,
    request: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    if let Err(code) = crate::transactions::check_coordinator(broker, &transactional_id).await {
        return failed(code);
    }
    let init = weir_transaction::InitProducerIdRequest {
        transactional_id: Some(transactional_id.clone()),
        transaction_timeout_ms: request.transaction_timeout_ms,
        // v3+ (KIP-360): a producer recovering from an error names its current id and epoch.
        producer: (request.producer_id >= 0 && request.producer_epoch >= 0)
            .then(|| ProducerIdAndEpoch::new(request.producer_id, request.producer_epoch)),
    };
    let reply = broker
        .transactions
        .request(broker, true, |c, now, id, ids| {
            c.init_producer_id(now, id, &init, ids);
        })
        .await;
    match reply {
        Ok(producer) => {
            debug!(
                transactional_id,
                producer_id = producer.producer_id,
                producer_epoch = producer.epoch,
                client_id = ctx.client_id.as_deref().unwrap_or(""),
                "initialized transactional producer"
            );
            InitProducerIdResponse {
                error_code: 0,
                producer_id: producer.producer_id,
                producer_epoch: producer.epoch,
                ..InitProducerIdResponse::default()
            }
        }
        // PRODUCER_FENCED exists for clients from v4 on.
        Err(failure) => failed(failure.code(ctx.api_version >= 4)),
    }
}
