//! ElectLeaders (KIP-460): elects preferred leaders (or, for UNCLEAN, a leader where there is
//! none) through the active controller, and answers once this broker has published the image
//! holding the result, so a Metadata request right after it shows the new leaders.
//!
//! Per partition the answer is Kafka's: ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
//! ELIGIBLE_LEADERS_NOT_AVAILABLE or UNKNOWN_TOPIC_OR_PARTITION. Weir never elects outside the
//! ISR, so an UNCLEAN election only succeeds where an in-sync replica can lead. A failure to
//! reach the controller in time is a top-level error, copied to every partition asked for
//! (v0 has no top-level error code), as Kafka's error response does.

use crate::connection::RequestContext;
use crate::error::{controller_call_error_code, election_error_code};
use crate::state::Broker;
use std::sync::Arc;
use weir_metadata::active::{ControllerOutcome, ControllerRequest};
use weir_metadata::{ElectionType, PartitionElection};
use weir_protocol::ErrorCode;
use weir_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use weir_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

super::always_responds!(ElectLeadersRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    // v0 carries no election type and its decoder leaves 0: PREFERRED.
    let election_type = match request.election_type {
        0 => ElectionType::Preferred,
        1 => ElectionType::Unclean,
        other => {
            return failed(
                &request,
                ErrorCode::INVALID_REQUEST,
                format!("Unknown election type {other}."),
            );
        }
    };
    let partitions: Option<Vec<(String, i32)>> = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), *p)))
            .collect()
    });
    let answer = super::call_controller(
        broker,
        ControllerRequest::ElectLeaders {
            election_type,
            partitions,
        },
        request.timeout_ms,
    )
    .await;
    match answer {
        Ok(ControllerOutcome::Elections(results)) => ElectLeadersResponse {
            replica_election_results: by_topic(results),
            ..ElectLeadersResponse::default()
        },
        Ok(other) => failed(
            &request,
            ErrorCode::UNKNOWN_SERVER_ERROR,
            format!("unexpected controller answer {other:?}"),
        ),
        Err(None) => failed(
            &request,
            ErrorCode::REQUEST_TIMED_OUT,
            "The election did not complete within the request's timeout.".to_string(),
        ),
        Err(Some(e)) => failed(&request, controller_call_error_code(&e), e.to_string()),
    }
}

/// The controller's results grouped by topic, topics in the order they first appear.
fn by_topic(results: Vec<PartitionElection>) -> Vec<ReplicaElectionResult> {
    let results = results.into_iter().map(|election| {
        let (error_code, error_message) = match &election.result {
            Ok(()) => (0, None),
            Err(e) => (election_error_code(e).code(), Some(e.to_string())),
        };
        let result = PartitionResult {
            partition_id: election.partition,
            error_code,
            error_message,
            ..PartitionResult::default()
        };
        (election.topic, result)
    });
    super::group_by_topic(results)
        .into_iter()
        .map(|(topic, partition_result)| ReplicaElectionResult {
            topic,
            partition_result,
            ..ReplicaElectionResult::default()
        })
        .collect()
}

/// A top-level error, also given to every partition asked for.
fn failed(request: &ElectLeadersRequest, code: ErrorCode, message: String) -> ElectLeadersResponse {
    let results = request
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| ReplicaElectionResult {
            topic: t.topic.clone(),
            partition_result: t
                .partitions
                .iter()
                .map(|p| PartitionResult {
                    partition_id: *p,
                    error_code: code.code(),
                    error_message: Some(message.clone()),
                    ..PartitionResult::default()
                })
                .collect(),
            ..ReplicaElectionResult::default()
        })
        .collect();
    ElectLeadersResponse {
        error_code: code.code(),
        replica_election_results: results,
        ..ElectLeadersResponse::default()
    }
}
