//! JoinGroup: parks until the group's rebalance completes. v4+ first joins get
//! MEMBER_ID_REQUIRED with a member id to rejoin with; v0–v3 members join in one round trip.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_group::{JoinRequest, Protocol};
use weir_protocol::messages::join_group_response::JoinGroupResponseMember;
use weir_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

super::always_responds!(JoinGroupRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    if let Err(code) = crate::groups::check_coordinator(broker, &request.group_id).await {
        return JoinGroupResponse {
            error_code: code.code(),
            ..JoinGroupResponse::default()
        };
    }
    let version = ctx.api_version;
    let member_id = request.member_id.clone();
    debug!(
        group = %request.group_id,
        member = %member_id,
        version,
        "JoinGroup"
    );
    let join = JoinRequest {
        group_id: request.group_id,
        member_id: request.member_id,
        group_instance_id: request.group_instance_id,
        protocol_type: request.protocol_type,
        protocols: request
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: p.name,
                metadata: p.metadata,
            })
            .collect(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves for both.
        rebalance_timeout_ms: if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: crate::groups::client_host(ctx.peer),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
        reason: request.reason,
    };
    match broker.groups.join(broker, join).await {
        Ok(joined) => JoinGroupResponse {
            generation_id: joined.generation_id,
            protocol_type: joined.protocol_type,
            // Not nullable before v7.
            protocol_name: if version >= 7 {
                joined.protocol_name
            } else {
                Some(joined.protocol_name.unwrap_or_default())
            },
            leader: joined.leader,
            skip_assignment: joined.skip_assignment,
            member_id: joined.member_id,
            members: joined
                .members
                .into_iter()
                .map(|m| JoinGroupResponseMember {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    metadata: m.metadata,
                    ..JoinGroupResponseMember::default()
                })
                .collect(),
            ..JoinGroupResponse::default()
        },
        Err(failure) => {
            let member_id = match &failure {
                crate::groups::GroupFailure::Coordinator(weir_group::Error::MemberIdRequired {
                    member_id,
                }) => member_id.clone(),
                _ => member_id,
            };
            debug!(error = failure.code().name(), "JoinGroup failed");
            JoinGroupResponse {
                error_code: failure.code().code(),
                generation_id: -1,
                protocol_name: if version >= 7 {
                    None
                } else {
                    Some(String::new())
                },
                member_id,
                ..JoinGroupResponse::default()
            }
        }
    }
}
