//! Metadata: the unfenced brokers, and per partition the leader, leader epoch, replicas, ISR and
//! offline replicas, from the published metadata image; creates unknown topics on request when
//! `auto.create.topics.enable` is on.

use crate::admin;
use crate::connection::RequestContext;
use crate::state::Broker;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::debug;
use weir_metadata::{MetadataImage, NO_LEADER, PartitionRegistration, TopicId, TopicImage};
use weir_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use weir_protocol::messages::{MetadataRequest, MetadataResponse};
use weir_protocol::{ErrorCode, Uuid};

super::always_responds!(MetadataRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: MetadataRequest,
) -> MetadataResponse {
    debug!(topics = ?request.topics, allow_auto_topic_creation = request.allow_auto_topic_creation, "metadata request");
    let config = broker.config();
    // Before v4 a Metadata request always allowed auto-creation.
    let allow_create = config.auto_create_topics_enable
        && (ctx.api_version < 4 || request.allow_auto_topic_creation);
    let all = match &request.topics {
        // Null (or, in v0, empty) means every topic.
        None => true,
        Some(list) => list.is_empty() && ctx.api_version == 0,
    };
    let mut missing = Vec::new();
    if let (false, Some(list)) = (all, &request.topics) {
        let image = broker.topics.image();
        for requested in list {
            if let Some(name) = &requested.name {
                if image.topic(name).is_none() && allow_create {
                    missing.push(name.clone());
                }
            }
        }
    }
    // Auto-creation goes through the controller and waits for the new logs: off the workers.
    let mut creation_errors = BTreeMap::new();
    if !missing.is_empty() {
        let partitions = config.num_partitions;
        let errors = admin::blocking(broker, move |broker| {
            missing
                .into_iter()
                .filter_map(|name| {
                    match broker.create_topic(&name, partitions, BTreeMap::new()) {
                        Ok(_) => None,
                        // A concurrent request may have created it first.
                        Err(_) if broker.topics.get(&name).is_some() => None,
                        Err(e) => {
                            debug!(topic = %name, error = %e, "auto-creation failed");
                            Some((name, e.code()))
                        }
                    }
                })
                .collect::<BTreeMap<_, _>>()
        })
        .await;
        creation_errors = errors.unwrap_or_default();
    }
    let image = broker.topics.image();
    let topics = if all {
        image
            .topics()
            .values()
            .map(|t| topic_entry(broker, &image, t))
            .collect()
    } else {
        request
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|requested| {
                let known = match &requested.name {
                    Some(name) => image.topic(name),
                    None => image.topic_by_id(TopicId(requested.topic_id.0)),
                };
                if let Some(topic) = known {
                    return topic_entry(broker, &image, topic);
                }
                let code = match &requested.name {
                    Some(n) if creation_errors.contains_key(n) => creation_errors
                        .get(n)
                        .copied()
                        .unwrap_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                    Some(n) if crate::topics::validate_name(n).is_err() => {
                        ErrorCode::INVALID_TOPIC_EXCEPTION
                    }
                    Some(_) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    None => ErrorCode::UNKNOWN_TOPIC_ID,
                };
                MetadataResponseTopic {
                    topic_id: requested.topic_id,
                    ..error_entry(requested.name, code)
                }
            })
            .collect()
    };
    MetadataResponse {
        brokers: brokers(&image),
        cluster_id: Some(broker.cluster_id().to_string()),
        // As in KRaft, clients never reach the controllers: any broker takes their admin
        // requests and forwards them. This one is up (it is answering), so name it; a client
        // that cached a dead controller id would otherwise send its admin requests nowhere until
        // its next metadata refresh (librdkafka: 5 minutes).
        controller_id: broker.config().node_id,
        topics,
        ..MetadataResponse::default()
    }
}

/// Every unfenced broker with its client listener, as clients must see them.
fn brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .unfenced_brokers()
        .filter_map(|b| {
            let endpoint = b.endpoint("PLAINTEXT")?;
            Some(MetadataResponseBroker {
                node_id: b.broker_id,
                host: endpoint.host.clone(),
                port: i32::from(endpoint.port),
                rack: b.rack.clone(),
                ..MetadataResponseBroker::default()
            })
        })
        .collect()
}

fn error_entry(name: Option<String>, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: code.code(),
        name,
        ..MetadataResponseTopic::default()
    }
}

fn topic_entry(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: 0,
        name: Some(topic.name.clone()),
        topic_id: Uuid(topic.id.0),
        is_internal: topic.is_internal(),
        partitions: topic
            .partitions
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let partition_index = i32::try_from(index).unwrap_or(i32::MAX);
                let state = PartitionState::of(broker, image, &topic.name, partition_index, p);
                MetadataResponsePartition {
                    error_code: state.error.code(),
                    partition_index,
                    leader_id: state.leader_id,
                    leader_epoch: state.leader_epoch,
                    replica_nodes: state.replicas,
                    isr_nodes: state.isr,
                    offline_replicas: state.offline_replicas,
                    ..MetadataResponsePartition::default()
                }
            })
            .collect(),
        ..MetadataResponseTopic::default()
    }
}

/// What clients are told of one partition, by Metadata and DescribeTopicPartitions alike.
pub(crate) struct PartitionState {
    /// LEADER_NOT_AVAILABLE while it has no leader (clients retry until one is elected).
    pub(crate) error: ErrorCode,
    pub(crate) leader_id: i32,
    pub(crate) leader_epoch: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
    pub(crate) offline_replicas: Vec<i32>,
}

impl PartitionState {
    /// The partition's registration in `image`, with this broker's own failed data directories
    /// taken into account.
    pub(crate) fn of(
        broker: &Broker,
        image: &MetadataImage,
        topic: &str,
        partition_index: i32,
        p: &PartitionRegistration,
    ) -> Self {
        let node = broker.config().node_id;
        let mut offline_replicas = p.offline_replicas(image);
        // A replica here on a failed data directory is offline too (requests that reach it get
        // KAFKA_STORAGE_ERROR).
        let local_offline =
            p.replicas.contains(&node) && broker.partitions.is_offline(topic, partition_index);
        if local_offline && !offline_replicas.contains(&node) {
            offline_replicas.push(node);
        }
        let leader_id = if local_offline && p.leader == node {
            NO_LEADER
        } else {
            p.leader
        };
        Self {
            error: if leader_id == NO_LEADER {
                ErrorCode::LEADER_NOT_AVAILABLE
            } else {
                ErrorCode::NONE
            },
            leader_id,
            leader_epoch: p.leader_epoch,
            replicas: p.replicas.clone(),
            isr: if leader_id == NO_LEADER && local_offline {
                Vec::new()
            } else {
                p.isr.clone()
            },
            offline_replicas,
        }
    }
}
