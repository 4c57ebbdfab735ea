//! CreatePartitions: grows topics (never shrinks them, never internal ones) and creates the new
//! partition logs; with `validate_only` it only checks.

use crate::admin::{self, INTERNAL_TOPICS, shrink_error};
use crate::connection::RequestContext;
use crate::error::{AdminError, BrokerError};
use crate::state::Broker;
use crate::topics::TopicError;
use std::collections::BTreeSet;
use std::sync::Arc;
use weir_metadata::active::ControllerRequest;
use weir_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use weir_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use weir_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

super::always_responds!(CreatePartitionsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let names: Vec<String> = request.topics.iter().map(|t| t.name.clone()).collect();
    let results = admin::blocking(broker, move |broker| {
        let mut seen = BTreeSet::new();
        let duplicates: BTreeSet<String> = request
            .topics
            .iter()
            .filter(|t| !seen.insert(t.name.clone()))
            .map(|t| t.name.clone())
            .collect();
        request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.name.clone();
                let outcome = if duplicates.contains(&name) {
                    Err(AdminError::InvalidRequest(
                        "Duplicate topic in request.".to_string(),
                    ))
                } else {
                    grow(broker, topic, request.validate_only)
                };
                result(name, outcome)
            })
            .collect()
    })
    .await
    .unwrap_or_else(|| {
        names
            .into_iter()
            .map(|name| result(name, Err(AdminError::Broker(BrokerError::TaskFailed))))
            .collect()
    });
    CreatePartitionsResponse {
        results,
        ..CreatePartitionsResponse::default()
    }
}

fn grow(
    broker: &Broker,
    request: CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), AdminError> {
    let topic = broker
        .topics
        .get(&request.name)
        .ok_or_else(|| AdminError::from(TopicError::Unknown(request.name.clone())))?;
    // Groups are placed on `__consumer_offsets` partitions by hashing over the partition count;
    // growing it would move groups away from their committed offsets.
    if topic.internal || INTERNAL_TOPICS.contains(&topic.name.as_str()) {
        return Err(AdminError::InvalidTopic(format!(
            "Cannot change the partition count of internal topic {}.",
            topic.name
        )));
    }
    if request.count <= topic.partitions {
        return Err(shrink_error(topic.partitions, request.count));
    }
    // An empty list is read as "no manual assignment", like null.
    let assignments: Option<Vec<Vec<i32>>> = request
        .assignments
        .as_ref()
        .filter(|a| !a.is_empty())
        .map(|a| a.iter().map(|p| p.broker_ids.clone()).collect());
    if let Some(assignments) = &assignments {
        let added = request.count - topic.partitions;
        if i32::try_from(assignments.len()).ok() != Some(added) {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "Increasing the number of partitions by {added} but {} assignments provided.",
                assignments.len()
            )));
        }
    }
    if validate_only {
        broker
            .cluster
            .call_blocking(ControllerRequest::CreatePartitions {
                topic: request.name.clone(),
                count: request.count,
                assignments,
                validate_only: true,
            })?;
        return Ok(());
    }
    broker.grow_topic(&request.name, request.count, assignments)?;
    Ok(())
}

fn result(name: String, outcome: Result<(), AdminError>) -> CreatePartitionsTopicResult {
    match outcome {
        Ok(()) => CreatePartitionsTopicResult {
            name,
            error_code: 0,
            error_message: None,
            ..CreatePartitionsTopicResult::default()
        },
        Err(e) => CreatePartitionsTopicResult {
            name,
            error_code: e.code().code(),
            error_message: Some(e.message()),
            ..CreatePartitionsTopicResult::default()
        },
    }
}
