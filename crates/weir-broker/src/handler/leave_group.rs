//! LeaveGroup: members leave at once instead of waiting for their session to expire. v3+
//! leaves several members (by member id or group instance id) with one error each.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_group::LeavingMember;
use weir_protocol::messages::leave_group_response::MemberResponse;
use weir_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

super::always_responds!(LeaveGroupRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    if let Err(code) = crate::groups::check_coordinator(broker, &request.group_id).await {
        return LeaveGroupResponse {
            error_code: code.code(),
            ..LeaveGroupResponse::default()
        };
    }
    let members: Vec<LeavingMember> = if ctx.api_version >= 3 {
        request
            .members
            .into_iter()
            .map(|m| LeavingMember {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                reason: m.reason,
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id,
            ..LeavingMember::default()
        }]
    };
    let group_id = request.group_id;
    if group_id.is_empty() {
        return LeaveGroupResponse {
            error_code: weir_protocol::ErrorCode::INVALID_GROUP_ID.code(),
            ..LeaveGroupResponse::default()
        };
    }
    debug!(group = %group_id, members = members.len(), "LeaveGroup");
    let (results, _) = broker
        .groups
        .call(broker, |c, now| c.leave_group(now, &group_id, &members))
        .await;
    let codes: Vec<i16> = results
        .iter()
        .map(|r| {
            r.as_ref()
                .map_or_else(|e| crate::error::group_error_code(e).code(), |()| 0)
        })
        .collect();
    if ctx.api_version >= 3 {
        LeaveGroupResponse {
            members: members
                .into_iter()
                .zip(codes)
                .map(|(m, error_code)| MemberResponse {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    error_code,
                    ..MemberResponse::default()
                })
                .collect(),
            ..LeaveGroupResponse::default()
        }
    } else {
        LeaveGroupResponse {
            error_code: codes.first().copied().unwrap_or(0),
            ..LeaveGroupResponse::default()
        }
    }
}
