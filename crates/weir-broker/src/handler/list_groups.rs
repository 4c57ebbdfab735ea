//! ListGroups: every group this coordinator owns, filtered by state (v4+) and group type (v5+).

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_group::GroupState;
use weir_protocol::messages::list_groups_response::ListedGroup;
use weir_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

super::always_responds!(ListGroupsRequest);

/// The group type of every group here: the classic protocol (KIP-848 groups are "consumer").
const CLASSIC: &str = "classic";

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    debug!(states = ?request.states_filter, types = ?request.types_filter, "ListGroups");
    let states: Vec<GroupState> = request
        .states_filter
        .iter()
        .filter_map(|s| GroupState::parse(s))
        .collect();
    // A filter naming only states or types that never occur here matches nothing; an empty
    // filter matches everything.
    let no_state_matches = !request.states_filter.is_empty() && states.is_empty();
    let no_type_matches = !request.types_filter.is_empty()
        && !request
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(CLASSIC));
    let groups = if no_state_matches || no_type_matches {
        Vec::new()
    } else {
        broker.groups.read(|c| c.list_groups(&states, &[]))
    };
    ListGroupsResponse {
        groups: groups
            .into_iter()
            .map(|g| ListedGroup {
                group_id: g.group_id,
                protocol_type: g.protocol_type,
                group_state: g.state.as_str().to_string(),
                group_type: if ctx.api_version >= 5 {
                    CLASSIC.to_string()
                } else {
                    String::new()
                },
                ..ListedGroup::default()
            })
            .collect(),
        ..ListGroupsResponse::default()
    }
}
