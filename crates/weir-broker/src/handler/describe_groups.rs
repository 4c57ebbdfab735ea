//! DescribeGroups: state, protocol and members of each group. An unknown group is reported as
//! `Dead` with no error before v6 and as GROUP_ID_NOT_FOUND from v6, as Kafka does.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_protocol::ErrorCode;
use weir_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use weir_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

super::always_responds!(DescribeGroupsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    debug!(groups = ?request.groups, "DescribeGroups");
    let described = broker.groups.read(|c| c.describe_groups(&request.groups));
    let groups = request
        .groups
        .into_iter()
        .zip(described)
        .map(|(group_id, result)| match result {
            Ok(g) => DescribedGroup {
                group_id: g.group_id,
                group_state: g.state.as_str().to_string(),
                protocol_type: g.protocol_type,
                protocol_data: g.protocol_name,
                members: g
                    .members
                    .into_iter()
                    .map(|m| DescribedGroupMember {
                        member_id: m.member_id,
                        group_instance_id: m.group_instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        member_metadata: m.metadata,
                        member_assignment: m.assignment,
                        ..DescribedGroupMember::default()
                    })
                    .collect(),
                ..DescribedGroup::default()
            },
            Err(weir_group::Error::GroupIdNotFound) if ctx.api_version < 6 => DescribedGroup {
                group_id,
                group_state: weir_group::GroupState::Dead.as_str().to_string(),
                ..DescribedGroup::default()
            },
            Err(e) => {
                let code: ErrorCode = crate::error::group_error_code(&e);
                DescribedGroup {
                    error_code: code.code(),
                    error_message: Some(format!("Group {group_id}: {e}")),
                    group_id,
                    group_state: weir_group::GroupState::Dead.as_str().to_string(),
                    ..DescribedGroup::default()
                }
            }
        })
        .collect();
    DescribeGroupsResponse {
        groups,
        ..DescribeGroupsResponse::default()
    }
}
