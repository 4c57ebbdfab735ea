//! InitProducerId: gives an idempotent producer its producer id, at epoch 0.
//!
//! As Kafka does when there is no transactional id, every request gets a fresh id: a
//! non-transactional producer bumps its epoch itself (KIP-360) and only comes back when it
//! needs a new id, so a producer id/epoch carried in the request (v3+) needs no check.
//! Transactions do not exist yet: a request with a transactional id is served the same way
//! (a fresh id, epoch 0) rather than refused, so such producers can at least connect; fencing
//! of an earlier instance with the same transactional id comes with the transaction
//! coordinator.

use crate::connection::RequestContext;
use crate::error::{AdminError, BrokerError};
use crate::state::Broker;
use std::sync::Arc;
use tracing::{debug, warn};
use weir_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};

super::always_responds!(InitProducerIdRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let task_broker = broker.clone();
    // Now and then a new block of ids comes from the controller (a metadata log write).
    let allocated =
        tokio::task::spawn_blocking(move || task_broker.producer_ids.allocate(&task_broker))
            .await
            .map_err(|_| AdminError::Broker(BrokerError::TaskFailed))
            .and_then(|r| r);
    match allocated {
        Ok(producer_id) => {
            debug!(
                producer_id,
                transactional_id = request.transactional_id.as_deref().unwrap_or(""),
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
            InitProducerIdResponse {
                error_code: e.code().code(),
                producer_id: -1,
                producer_epoch: -1,
                ..InitProducerIdResponse::default()
            }
        }
    }
}
