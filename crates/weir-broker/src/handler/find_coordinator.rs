//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets`
//! partition, a transactional id's the leader of its `__transaction_state` partition (each topic
//! is created on the first lookup, as Kafka does). v4+ asks for several keys at once.

use crate::connection::RequestContext;
use crate::groups::OFFSETS_TOPIC;
use crate::state::Broker;
use crate::transactions::STATE_TOPIC;
use std::sync::Arc;
use tracing::debug;
use weir_protocol::messages::find_coordinator_response::Coordinator;
use weir_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use weir_protocol::{ErrorCode, Uuid};

super::always_responds!(FindCoordinatorRequest);

/// `key_type` values.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let created = match request.key_type {
        GROUP => crate::groups::ensure_offsets_topic(broker).await,
        TRANSACTION => crate::transactions::ensure_state_topic(broker).await,
        _ => Ok(()),
    };
    // The group's coordinator is the leader of its `__consumer_offsets` partition.
    let group_coordinator = |key: &str| -> Result<(i32, String, i32), ErrorCode> {
        if created.is_err() {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        let partition = broker.groups.partition_for(key);
        broker
            .leader_hint(OFFSETS_TOPIC, Uuid::ZERO, partition)
            .map(|leader| (leader.leader_id, leader.host, leader.port))
            .ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE)
    };
    // A transactional id's coordinator is the leader of its `__transaction_state` partition.
    let transaction_coordinator = |key: &str| -> Result<(i32, String, i32), ErrorCode> {
        if created.is_err() {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        let partition = broker.transactions.partition_for(key);
        broker
            .leader_hint(STATE_TOPIC, Uuid::ZERO, partition)
            .map(|leader| (leader.leader_id, leader.host, leader.port))
            .ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE)
    };
    let locate = |key: &str| match request.key_type {
        GROUP => group_coordinator(key),
        TRANSACTION => transaction_coordinator(key),
        _ => Err(ErrorCode::INVALID_REQUEST),
    };
    let coordinator = |key: String| {
        let (node_id, host, port, error) = match locate(&key) {
            Ok((node_id, host, port)) => (node_id, host, port, ErrorCode::NONE),
            Err(error) => (-1, String::new(), -1, error),
        };
        Coordinator {
            key,
            node_id,
            host,
            port,
            error_code: error.code(),
            // kafkajs treats any non-null error message as a failure, so it is null without
            // an error.
            error_message: error.is_error().then(|| error.name().to_string()),
            ..Coordinator::default()
        }
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
