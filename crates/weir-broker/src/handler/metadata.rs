//! Metadata: brokers, topics and partition leaders; creates unknown topics on request when
//! `auto.create.topics.enable` is on.

use crate::connection::RequestContext;
use crate::partitions::LEADER_EPOCH;
use crate::state::Broker;
use crate::topics::Topic;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::debug;
use weir_protocol::ErrorCode;
use weir_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use weir_protocol::messages::{MetadataRequest, MetadataResponse};

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
    let topics = match request.topics {
        // Null (or, in v0, empty) means every topic.
        None => broker
            .topics
            .all()
            .iter()
            .map(|t| topic_entry(broker, t))
            .collect(),
        Some(list) if list.is_empty() && ctx.api_version == 0 => broker
            .topics
            .all()
            .iter()
            .map(|t| topic_entry(broker, t))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|requested| {
                let known = match &requested.name {
                    Some(name) => broker.topics.get(name),
                    None => broker.topics.by_id(requested.topic_id),
                };
                match (known, requested.name) {
                    (Some(topic), _) => topic_entry(broker, &topic),
                    (None, Some(name)) if allow_create => {
                        match broker.create_topic(
                            &name,
                            config.num_partitions,
                            BTreeMap::new(),
                            false,
                        ) {
                            Ok(topic) => topic_entry(broker, &topic),
                            // A concurrent request may have created it first.
                            Err(_) if broker.topics.get(&name).is_some() => {
                                broker.topics.get(&name).map_or_else(
                                    || {
                                        error_entry(
                                            Some(name.clone()),
                                            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                                        )
                                    },
                                    |t| topic_entry(broker, &t),
                                )
                            }
                            Err(e) => {
                                debug!(topic = %name, error = %e, "auto-creation failed");
                                error_entry(Some(name), e.code())
                            }
                        }
                    }
                    (None, name) => {
                        let code = match &name {
                            Some(n) if crate::topics::validate_name(n).is_err() => {
                                ErrorCode::INVALID_TOPIC_EXCEPTION
                            }
                            Some(_) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                            None => ErrorCode::UNKNOWN_TOPIC_ID,
                        };
                        MetadataResponseTopic {
                            topic_id: requested.topic_id,
                            ..error_entry(name, code)
                        }
                    }
                }
            })
            .collect(),
    };
    MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: i32::from(config.advertised_port),
            ..MetadataResponseBroker::default()
        }],
        cluster_id: Some(broker.cluster_id().to_string()),
        controller_id: config.node_id,
        topics,
        ..MetadataResponse::default()
    }
}

fn error_entry(name: Option<String>, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: code.code(),
        name,
        ..MetadataResponseTopic::default()
    }
}

fn topic_entry(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let node = broker.config().node_id;
    MetadataResponseTopic {
        error_code: 0,
        name: Some(topic.name.clone()),
        topic_id: topic.id,
        is_internal: topic.internal,
        partitions: (0..topic.partitions)
            .map(|partition_index| {
                // A partition on a failed data directory has no leader: its only replica is
                // offline (clients retry LEADER_NOT_AVAILABLE; requests that reach it get
                // KAFKA_STORAGE_ERROR).
                if broker.partitions.is_offline(&topic.name, partition_index) {
                    return MetadataResponsePartition {
                        error_code: ErrorCode::LEADER_NOT_AVAILABLE.code(),
                        partition_index,
                        leader_id: -1,
                        leader_epoch: LEADER_EPOCH,
                        replica_nodes: vec![node],
                        isr_nodes: Vec::new(),
                        offline_replicas: vec![node],
                        ..MetadataResponsePartition::default()
                    };
                }
                MetadataResponsePartition {
                    partition_index,
                    leader_id: node,
                    leader_epoch: LEADER_EPOCH,
                    replica_nodes: vec![node],
                    isr_nodes: vec![node],
                    ..MetadataResponsePartition::default()
                }
            })
            .collect(),
        ..MetadataResponseTopic::default()
    }
}
