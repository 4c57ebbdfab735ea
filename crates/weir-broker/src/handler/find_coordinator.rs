//! FindCoordinator: on a single node this broker coordinates every group and (once
//! transactions exist) every transactional id. v4+ asks for several keys at once.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_protocol::ErrorCode;
use weir_protocol::messages::find_coordinator_response::Coordinator;
use weir_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

super::always_responds!(FindCoordinatorRequest);

/// `key_type` values.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let config = broker.config();
    let error = match request.key_type {
        // Transactions come later; answering with this node lets clients that look up a
        // transaction coordinator proceed to the (then unsupported) transactional APIs.
        GROUP | TRANSACTION => ErrorCode::NONE,
        _ => ErrorCode::INVALID_REQUEST,
    };
    // kafkajs treats any non-null error message as a failure, so it is null without an error.
    let message = error.is_error().then(|| error.name().to_string());
    let (node_id, host, port) = if error.is_error() {
        (-1, String::new(), -1)
    } else {
        (
            config.node_id,
            config.advertised_host.clone(),
            i32::from(config.advertised_port),
        )
    };
    let coordinator = |key: String| Coordinator {
        key,
        node_id,
        host: host.clone(),
        port,
        error_code: error.code(),
        error_message: message.clone(),
        ..Coordinator::default()
    };
    if ctx.api_version >= 4 {
        debug!(keys = ?request.coordinator_keys, key_type = request.key_type, "FindCoordinator");
        FindCoordinatorResponse {
            coordinators: request
                .coordinator_keys
                .into_iter()
                .map(coordinator)
                .collect(),
            ..FindCoordinatorResponse::default()
        }
    } else {
        debug!(key = %request.key, key_type = request.key_type, "FindCoordinator");
        let c = coordinator(request.key);
        FindCoordinatorResponse {
            error_code: c.error_code,
            error_message: c.error_message,
            node_id: c.node_id,
            host: c.host,
            port: c.port,
            ..FindCoordinatorResponse::default()
        }
    }
}
