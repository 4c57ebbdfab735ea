//! CreateTopics: creates topics through the controller, with a partition count and replication
//! factor (replicas placed over the unfenced brokers) or a manual assignment, and validated
//! config overrides; with `validate_only` the controller checks everything and writes nothing.

use crate::admin::{self, INTERNAL_TOPICS};
use crate::connection::RequestContext;
use crate::error::{AdminError, BrokerError};
use crate::state::Broker;
use crate::topic_config;
use crate::topics::{self, Topic};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tracing::info;
use weir_metadata::active::ControllerRequest;
use weir_metadata::{CreateTopic, TopicId};
use weir_protocol::Uuid;
use weir_protocol::messages::create_topics_request::CreatableTopic;
use weir_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use weir_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

super::always_responds!(CreateTopicsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let names: Vec<String> = request.topics.iter().map(|t| t.name.clone()).collect();
    let topics = admin::blocking(broker, move |broker| create_all(broker, request))
        .await
        .unwrap_or_else(|| {
            names
                .into_iter()
                .map(|name| error_result(name, &AdminError::Broker(BrokerError::TaskFailed)))
                .collect()
        });
    CreateTopicsResponse {
        topics,
        ..CreateTopicsResponse::default()
    }
}

fn create_all(broker: &Broker, request: CreateTopicsRequest) -> Vec<CreatableTopicResult> {
    // Kafka refuses every entry of a name that appears more than once.
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
        .map(|creatable| {
            let name = creatable.name.clone();
            if duplicates.contains(&name) {
                return error_result(
                    name,
                    &AdminError::InvalidRequest(
                        "Create topics request contains multiple entries for this topic."
                            .to_string(),
                    ),
                );
            }
            match create_one(broker, creatable, request.validate_only) {
                Ok(result) => result,
                Err(e) => error_result(name, &e),
            }
        })
        .collect()
}

fn create_one(
    broker: &Broker,
    creatable: CreatableTopic,
    validate_only: bool,
) -> Result<CreatableTopicResult, AdminError> {
    let name = creatable.name.clone();
    topics::validate_name(&name).map_err(|e| AdminError::InvalidTopic(e.to_string()))?;
    if INTERNAL_TOPICS.contains(&name.as_str()) {
        return Err(AdminError::InvalidRequest(format!(
            "Creation of internal topic {name} is prohibited."
        )));
    }
    if broker.topics.get(&name).is_some() {
        return Err(AdminError::Broker(
            crate::topics::TopicError::AlreadyExists(name).into(),
        ));
    }
    // Kafka metric names replace '.' with '_', so two such names would collide.
    let collision_key = name.replace('.', "_");
    if let Some(other) = broker
        .topics
        .all()
        .into_iter()
        .find(|t| t.name.replace('.', "_") == collision_key)
    {
        return Err(AdminError::InvalidTopic(format!(
            "Topic '{name}' collides with existing topic: {}",
            other.name
        )));
    }

    if !creatable.assignments.is_empty()
        && (creatable.num_partitions != -1 || creatable.replication_factor != -1)
    {
        return Err(AdminError::InvalidRequest(
            "Both numPartitions or replicationFactor and replicasAssignments were set. \
             Both cannot be used at the same time."
                .to_string(),
        ));
    }
    let assignments = if creatable.assignments.is_empty() {
        None
    } else {
        Some(check_assignments(&creatable)?)
    };
    if creatable.num_partitions == 0 || creatable.num_partitions < -1 {
        return Err(AdminError::InvalidPartitions(
            "Number of partitions was set to an invalid non-positive value.".to_string(),
        ));
    }
    if creatable.replication_factor == 0 || creatable.replication_factor < -1 {
        return Err(AdminError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".to_string(),
        ));
    }

    let mut configs = BTreeMap::new();
    for config in creatable.configs {
        let Some(value) = config.value else {
            return Err(AdminError::InvalidConfig(format!(
                "Null value not supported for topic configs: {}",
                config.name
            )));
        };
        if configs.insert(config.name.clone(), value).is_some() {
            return Err(AdminError::InvalidRequest(format!(
                "Duplicate config name: {}",
                config.name
            )));
        }
    }
    topic_config::validate(broker, &name, &configs)?;

    let request = CreateTopic {
        name: name.clone(),
        num_partitions: (creatable.num_partitions != -1).then_some(creatable.num_partitions),
        replication_factor: (creatable.replication_factor != -1)
            .then_some(creatable.replication_factor),
        assignments,
        configs: configs.clone(),
    };
    broker
        .cluster
        .call_blocking(ControllerRequest::CreateTopic {
            topic_id: TopicId(topics::new_topic_id().0),
            request: request.clone(),
            validate_only,
        })?;
    let (topic, replication_factor) = if validate_only {
        let partitions = match &request.assignments {
            Some(a) => i32::try_from(a.len()).unwrap_or(i32::MAX),
            None => request
                .num_partitions
                .unwrap_or(broker.config().num_partitions),
        };
        let factor = match &request.assignments {
            Some(a) => a
                .first()
                .map_or(1, |r| i16::try_from(r.len()).unwrap_or(i16::MAX)),
            None => request
                .replication_factor
                .unwrap_or(broker.config().default_replication_factor),
        };
        let topic = Topic {
            name,
            id: Uuid::ZERO,
            partitions,
            configs,
            internal: false,
        };
        (topic, factor)
    } else {
        let image = broker.topics.image();
        let created = image
            .topic(&name)
            .ok_or_else(|| AdminError::from(crate::topics::TopicError::Unknown(name.clone())))?;
        let factor = created
            .partitions
            .first()
            .map_or(1, |p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX));
        info!(topic = %name, partitions = created.partition_count(), replication_factor = factor, "created topic");
        (Topic::of(&image, created), factor)
    };
    let configs = topic_config::describe_topic(broker, &topic)?
        .into_iter()
        .map(|d| CreatableTopicConfigs {
            name: d.name,
            value: d.value,
            read_only: d.read_only,
            config_source: d.source as i8,
            is_sensitive: d.sensitive,
            ..CreatableTopicConfigs::default()
        })
        .collect();
    Ok(CreatableTopicResult {
        name: topic.name,
        topic_id: topic.id,
        error_code: 0,
        error_message: None,
        num_partitions: topic.partitions,
        replication_factor,
        configs: Some(configs),
        ..CreatableTopicResult::default()
    })
}

/// Checks a manual assignment's shape (partitions numbered 0..n) and returns the replicas of
/// each partition in order; the controller checks the brokers.
fn check_assignments(creatable: &CreatableTopic) -> Result<Vec<Vec<i32>>, AdminError> {
    let mut assignments: Vec<(i32, Vec<i32>)> = creatable
        .assignments
        .iter()
        .map(|a| (a.partition_index, a.broker_ids.clone()))
        .collect();
    assignments.sort_unstable_by_key(|(p, _)| *p);
    let contiguous = assignments
        .iter()
        .enumerate()
        .all(|(i, (p, _))| i32::try_from(i).is_ok_and(|i| i == *p));
    if !contiguous {
        return Err(AdminError::InvalidReplicaAssignment(
            "Partitions must be numbered consecutively from 0.".to_string(),
        ));
    }
    Ok(assignments
        .into_iter()
        .map(|(_, replicas)| replicas)
        .collect())
}

fn error_result(name: String, error: &AdminError) -> CreatableTopicResult {
    CreatableTopicResult {
        name,
        error_code: error.code().code(),
        error_message: Some(error.message()),
        num_partitions: -1,
        replication_factor: -1,
        configs: None,
        ..CreatableTopicResult::default()
    }
}
