//! SyncGroup: the leader hands in the assignment; every member parks until it arrives.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_group::SyncRequest;
use weir_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

super::always_responds!(SyncGroupRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    if let Err(code) = crate::groups::check_coordinator(broker, &request.group_id).await {
        return SyncGroupResponse {
            error_code: code.code(),
            ..SyncGroupResponse::default()
        };
    }
    debug!(
        group = %request.group_id,
        member = %request.member_id,
        generation = request.generation_id,
        assignments = request.assignments.len(),
        version = ctx.api_version,
        "SyncGroup"
    );
    let sync = SyncRequest {
        group_id: request.group_id,
        generation_id: request.generation_id,
        member_id: request.member_id,
        group_instance_id: request.group_instance_id,
        protocol_type: request.protocol_type,
        protocol_name: request.protocol_name,
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id, a.assignment))
            .collect(),
    };
    match broker.groups.sync(broker, sync).await {
        Ok(synced) => SyncGroupResponse {
            protocol_type: synced.protocol_type,
            protocol_name: synced.protocol_name,
            assignment: synced.assignment,
            ..SyncGroupResponse::default()
        },
        Err(failure) => {
            debug!(error = failure.code().name(), "SyncGroup failed");
            SyncGroupResponse {
                error_code: failure.code().code(),
                ..SyncGroupResponse::default()
            }
        }
    }
}
