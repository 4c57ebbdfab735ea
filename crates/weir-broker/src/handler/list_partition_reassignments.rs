//! ListPartitionReassignments (KIP-455): the reassignments in progress, as the active
//! controller sees them (every partition, or those asked for; partitions that do not exist
//! are left out, as Kafka does), each with its replicas and the replicas being added and
//! removed. The answer comes once this broker has published the controller's image, so it
//! agrees with a Metadata request sent here right after it. A failure to reach the
//! controller in time is the top-level error (NOT_CONTROLLER, REQUEST_TIMED_OUT).

use crate::connection::RequestContext;
use crate::error::controller_call_error_code;
use crate::state::Broker;
use std::sync::Arc;
use weir_metadata::OngoingReassignment;
use weir_metadata::active::{ControllerOutcome, ControllerRequest};
use weir_protocol::ErrorCode;
use weir_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use weir_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

super::always_responds!(ListPartitionReassignmentsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let partitions: Option<Vec<(String, i32)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.clone(), *p)))
            .collect()
    });
    let answer = super::call_controller(
        broker,
        ControllerRequest::ListPartitionReassignments { partitions },
        request.timeout_ms,
    )
    .await;
    let (code, message) = match answer {
        Ok(ControllerOutcome::OngoingReassignments(ongoing)) => {
            return ListPartitionReassignmentsResponse {
                topics: by_topic(ongoing),
                ..ListPartitionReassignmentsResponse::default()
            };
        }
        Ok(other) => (
            ErrorCode::UNKNOWN_SERVER_ERROR,
            format!("unexpected controller answer {other:?}"),
        ),
        Err(None) => (
            ErrorCode::REQUEST_TIMED_OUT,
            "The controller did not answer within the request's timeout.".to_string(),
        ),
        Err(Some(e)) => (controller_call_error_code(&e), e.to_string()),
    };
    ListPartitionReassignmentsResponse {
        error_code: code.code(),
        error_message: Some(message),
        ..ListPartitionReassignmentsResponse::default()
    }
}

/// The reassignments grouped by topic, topics in the order they first appear.
fn by_topic(ongoing: Vec<OngoingReassignment>) -> Vec<OngoingTopicReassignment> {
    let ongoing = ongoing.into_iter().map(|reassignment| {
        let partition = OngoingPartitionReassignment {
            partition_index: reassignment.partition,
            replicas: reassignment.replicas,
            adding_replicas: reassignment.adding_replicas,
            removing_replicas: reassignment.removing_replicas,
            ..OngoingPartitionReassignment::default()
        };
        (reassignment.topic, partition)
    });
    super::group_by_topic(ongoing)
        .into_iter()
        .map(|(name, partitions)| OngoingTopicReassignment {
            name,
            partitions,
            ..OngoingTopicReassignment::default()
        })
        .collect()
}
