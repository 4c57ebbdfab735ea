//! DeleteTopics: deletes topics by name (v1-v5 `topic_names`, v6 `topics`) or by id (v6), with
//! their partition logs. Internal topics are refused.

use crate::admin::{self, INTERNAL_TOPICS};
use crate::connection::RequestContext;
use crate::error::{AdminError, BrokerError};
use crate::state::Broker;
use crate::topics::TopicError;
use std::collections::BTreeSet;
use std::sync::Arc;
use weir_protocol::Uuid;
use weir_protocol::messages::delete_topics_response::DeletableTopicResult;
use weir_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

super::always_responds!(DeleteTopicsRequest);

/// One topic to delete, as the request names it.
#[derive(Debug, Clone)]
enum Target {
    Name(String),
    Id(Uuid),
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<Target> = if ctx.api_version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| match t.name {
                Some(name) => Target::Name(name),
                None => Target::Id(t.topic_id),
            })
            .collect()
    } else {
        request.topic_names.into_iter().map(Target::Name).collect()
    };
    let fallback = targets.clone();
    let responses = admin::blocking(broker, move |broker| delete_all(broker, targets))
        .await
        .unwrap_or_else(|| {
            fallback
                .into_iter()
                .map(|t| result(t, Err(AdminError::Broker(BrokerError::TaskFailed))))
                .collect()
        });
    DeleteTopicsResponse {
        responses,
        ..DeleteTopicsResponse::default()
    }
}

fn delete_all(broker: &Broker, targets: Vec<Target>) -> Vec<DeletableTopicResult> {
    let mut seen = BTreeSet::new();
    let duplicates: BTreeSet<String> = targets
        .iter()
        .map(|t| format!("{t:?}"))
        .filter(|key| !seen.insert(key.clone()))
        .collect();
    targets
        .into_iter()
        .map(|target| {
            if duplicates.contains(&format!("{target:?}")) {
                let error = AdminError::InvalidRequest("Duplicate topic in request.".to_string());
                return result(target, Err(error));
            }
            let outcome = delete_one(broker, &target);
            result(target, outcome)
        })
        .collect()
}

/// Deletes one topic; returns its name and id.
fn delete_one(broker: &Broker, target: &Target) -> Result<(String, Uuid), AdminError> {
    let topic = match target {
        Target::Name(name) => broker
            .topics
            .get(name)
            .ok_or_else(|| AdminError::from(TopicError::Unknown(name.clone())))?,
        Target::Id(id) => broker.topics.by_id(*id).ok_or_else(|| {
            AdminError::UnknownTopicId(format!("Topic id {id:?} does not exist."))
        })?,
    };
    if topic.internal || INTERNAL_TOPICS.contains(&topic.name.as_str()) {
        return Err(AdminError::InvalidTopic(format!(
            "Cannot delete internal topic {}.",
            topic.name
        )));
    }
    let deleted = broker.delete_topic(&topic.name)?;
    Ok((deleted.name, deleted.id))
}

fn result(target: Target, outcome: Result<(String, Uuid), AdminError>) -> DeletableTopicResult {
    let (name, topic_id) = match &target {
        Target::Name(name) => (Some(name.clone()), Uuid::ZERO),
        Target::Id(id) => (None, *id),
    };
    match outcome {
        Ok((name, id)) => DeletableTopicResult {
            name: Some(name),
            topic_id: id,
            error_code: 0,
            error_message: None,
            ..DeletableTopicResult::default()
        },
        Err(e) => DeletableTopicResult {
            name,
            topic_id,
            error_code: e.code().code(),
            error_message: Some(e.message()),
            ..DeletableTopicResult::default()
        },
    }
}
