//! DeleteGroups: removes empty groups with their offsets (tombstones in `__consumer_offsets`);
//! NON_EMPTY_GROUP while members exist.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::{debug, info};
use weir_protocol::messages::delete_groups_response::DeletableGroupResult;
use weir_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

super::always_responds!(DeleteGroupsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    debug!(groups = ?request.groups_names, "DeleteGroups");
    let names = request.groups_names;
    let (results, persisted) = broker
        .groups
        .call(broker, |c, _| c.delete_groups(&names))
        .await;
    DeleteGroupsResponse {
        results: names
            .into_iter()
            .zip(results)
            .map(|(group_id, result)| {
                let error_code = match (result, persisted) {
                    (Err(e), _) => crate::error::group_error_code(&e).code(),
                    (Ok(()), Err(failure)) => failure.code(false).code(),
                    (Ok(()), Ok(())) => {
                        info!(group = %group_id, "deleted group");
                        0
                    }
                };
                DeletableGroupResult {
                    group_id,
                    error_code,
                    ..DeletableGroupResult::default()
                }
            })
            .collect(),
        ..DeleteGroupsResponse::default()
    }
}
