//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

super::always_responds!(HeartbeatRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    if let Err(code) = crate::groups::check_coordinator(broker, &request.group_id).await {
        return HeartbeatResponse {
            error_code: code.code(),
            ..HeartbeatResponse::default()
        };
    }
    let heartbeat = weir_group::HeartbeatRequest {
        group_id: request.group_id,
        generation_id: request.generation_id,
        member_id: request.member_id,
        group_instance_id: request.group_instance_id,
    };
    let (result, _) = broker
        .groups
        .call(broker, |c, now| c.heartbeat(now, &heartbeat))
        .await;
    let error_code = match result {
        Ok(()) => 0,
        Err(e) => {
            debug!(group = %heartbeat.group_id, member = %heartbeat.member_id, error = %e, "Heartbeat refused");
            crate::error::group_error_code(&e).code()
        }
    };
    HeartbeatResponse {
        error_code,
        ..HeartbeatResponse::default()
    }
}
