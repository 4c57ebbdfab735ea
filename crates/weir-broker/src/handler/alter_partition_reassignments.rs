//! AlterPartitionReassignments (KIP-455): starts or cancels partition reassignments through
//! the active controller, and answers once this broker has published the image holding the
//! change, so a ListPartitionReassignments or Metadata request right after it shows it.
//!
//! A reassignment moves a partition to its target replicas: the new ones are added and
//! follow the leader, and once every target replica is in the ISR the controller drops the
//! others (which delete their logs) and, if the leader was one of them, elects a target
//! replica. Per partition the answer is Kafka's: UNKNOWN_TOPIC_OR_PARTITION,
//! INVALID_REPLICA_ASSIGNMENT (an empty target, a broker named twice or not registered) or
//! NO_REASSIGNMENT_IN_PROGRESS (a cancellation of nothing). A failure to reach the controller
//! in time is a top-level error (NOT_CONTROLLER, REQUEST_TIMED_OUT), copied to every
//! partition asked for, as Kafka's error response does.

use crate::connection::RequestContext;
use crate::error::{controller_call_error_code, reassignment_error_code};
use crate::state::Broker;
use std::sync::Arc;
use weir_metadata::active::{ControllerOutcome, ControllerRequest};
use weir_metadata::{Reassignment, ReassignmentResult};
use weir_protocol::ErrorCode;
use weir_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use weir_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};

super::always_responds!(AlterPartitionReassignmentsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let reassignments: Vec<Reassignment> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Reassignment {
                topic: t.name.clone(),
                partition: p.partition_index,
                target: p.replicas.clone(),
            })
        })
        .collect();
    let answer = super::call_controller(
        broker,
        ControllerRequest::AlterPartitionReassignments(reassignments),
        request.timeout_ms,
    )
    .await;
    match answer {
        Ok(ControllerOutcome::Reassignments(results)) => AlterPartitionReassignmentsResponse {
            responses: by_topic(results),
            ..AlterPartitionReassignmentsResponse::default()
        },
        Ok(other) => failed(
            &request,
            ErrorCode::UNKNOWN_SERVER_ERROR,
            format!("unexpected controller answer {other:?}"),
        ),
        Err(None) => failed(
            &request,
            ErrorCode::REQUEST_TIMED_OUT,
            "The reassignment was not applied within the request's timeout.".to_string(),
        ),
        Err(Some(e)) => failed(&request, controller_call_error_code(&e), e.to_string()),
    }
}

/// The controller's results grouped by topic, topics in the order they first appear.
fn by_topic(results: Vec<ReassignmentResult>) -> Vec<ReassignableTopicResponse> {
    let results = results.into_iter().map(|result| {
        let (error_code, error_message) = match &result.result {
            Ok(()) => (0, None),
            Err(e) => (reassignment_error_code(e).code(), Some(e.to_string())),
        };
        let response = ReassignablePartitionResponse {
            partition_index: result.partition,
            error_code,
            error_message,
            ..ReassignablePartitionResponse::default()
        };
        (result.topic, response)
    });
    super::group_by_topic(results)
        .into_iter()
        .map(|(name, partitions)| ReassignableTopicResponse {
            name,
            partitions,
            ..ReassignableTopicResponse::default()
        })
        .collect()
}

/// A top-level error, also given to every partition asked for.
fn failed(
    request: &AlterPartitionReassignmentsRequest,
    code: ErrorCode,
    message: String,
) -> AlterPartitionReassignmentsResponse {
    let responses = request
        .topics
        .iter()
        .map(|t| ReassignableTopicResponse {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| ReassignablePartitionResponse {
                    partition_index: p.partition_index,
                    error_code: code.code(),
                    error_message: Some(message.clone()),
                    ..ReassignablePartitionResponse::default()
                })
                .collect(),
            ..ReassignableTopicResponse::default()
        })
        .collect();
    AlterPartitionReassignmentsResponse {
        error_code: code.code(),
        error_message: Some(message),
        responses,
        ..AlterPartitionReassignmentsResponse::default()
    }
}
