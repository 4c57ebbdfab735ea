//! CreateTopics: creates topics with a partition count (or manual assignment to this node),
//! a replication factor this single node can meet, and validated config overrides; with
//! `validate_only` it checks everything and creates nothing.

use crate::admin::{self, INTERNAL_TOPICS};
use crate::connection::RequestContext;
use crate::error::{AdminError, BrokerError};
use crate::state::Broker;
use crate::topic_config;
use crate::topics::{self, Topic};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
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
    let node = broker.config().node_id;
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

    let partitions = if creatable.assignments.is_empty() {
        match creatable.num_partitions {
            -1 => broker.config().num_partitions,
            n if n > 0 => n,
            _ => {
                return Err(AdminError::InvalidPartitions(
                    "Number of partitions was set to an invalid non-positive value.".to_string(),
                ));
            }
        }
    } else {
        if creatable.num_partitions != -1 || creatable.replication_factor != -1 {
            return Err(AdminError::InvalidRequest(
                "Both numPartitions or replicationFactor and replicasAssignments were set. \
                 Both cannot be used at the same time."
                    .to_string(),
            ));
        }
        check_assignments(&creatable, node)?
    };
    let replication_factor = match creatable.replication_factor {
        -1 => broker.config().default_replication_factor,
        n => n,
    };
    if replication_factor < 1 {
        return Err(AdminError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".to_string(),
        ));
    }
    if replication_factor > 1 {
        return Err(AdminError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {replication_factor} time(s): The target \
             replication factor of {replication_factor} cannot be reached because only 1 \
             broker(s) are registered."
        )));
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

    let topic = if validate_only {
        Topic {
            name,
            id: Uuid::ZERO,
            partitions,
            configs,
            internal: false,
        }
    } else {
        broker.create_topic(&name, partitions, configs, false)?
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
        replication_factor: 1,
        configs: Some(configs),
        ..CreatableTopicResult::default()
    })
}

/// Checks a manual assignment: partitions 0..n, each on exactly this node. Returns n.
fn check_assignments(creatable: &CreatableTopic, node: i32) -> Result<i32, AdminError> {
    let mut indexes: Vec<i32> = creatable
        .assignments
        .iter()
        .map(|a| a.partition_index)
        .collect();
    indexes.sort_unstable();
    let contiguous = indexes
        .iter()
        .enumerate()
        .all(|(i, p)| i32::try_from(i).is_ok_and(|i| i == *p));
    if !contiguous {
        return Err(AdminError::InvalidReplicaAssignment(
            "Partitions must be numbered consecutively from 0.".to_string(),
        ));
    }
    for assignment in &creatable.assignments {
        if assignment.broker_ids != [node] {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "Partition {} is assigned to brokers {:?}; this single-node cluster has only \
                 broker {node}.",
                assignment.partition_index, assignment.broker_ids
            )));
        }
    }
    i32::try_from(indexes.len())
        .map_err(|_| AdminError::InvalidReplicaAssignment("Too many partitions.".to_string()))
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
