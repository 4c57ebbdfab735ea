//! DescribeConfigs: every config of a topic (resource type 2) with its value and source
//! (topic override, broker property or default), and the broker's own properties (resource
//! type 4, all read-only); optionally filtered by key and with synonyms.

use crate::connection::RequestContext;
use crate::error::AdminError;
use crate::state::Broker;
use crate::topic_config::{self, Described};
use crate::topics::{self, TopicError};
use std::sync::Arc;
use weir_protocol::messages::describe_configs_request::DescribeConfigsResource;
use weir_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use weir_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

super::always_responds!(DescribeConfigsRequest);

/// Kafka's resource type ids.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
/// The broker resource type id.
pub(crate) const RESOURCE_BROKER: i8 = 4;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let described = describe(broker, &resource);
            let (resource_type, resource_name) = (resource.resource_type, resource.resource_name);
            match described {
                Ok(entries) => DescribeConfigsResult {
                    error_code: 0,
                    error_message: None,
                    resource_type,
                    resource_name,
                    configs: entries
                        .into_iter()
                        .filter(|d| {
                            resource
                                .configuration_keys
                                .as_ref()
                                // Null or empty asks for every config, as in Kafka.
                                .is_none_or(|keys| keys.is_empty() || keys.contains(&d.name))
                        })
                        .map(|d| entry(d, request.include_synonyms))
                        .collect(),
                    ..DescribeConfigsResult::default()
                },
                Err(e) => DescribeConfigsResult {
                    error_code: e.code().code(),
                    error_message: Some(e.message()),
                    resource_type,
                    resource_name,
                    configs: Vec::new(),
                    ..DescribeConfigsResult::default()
                },
            }
        })
        .collect();
    DescribeConfigsResponse {
        results,
        ..DescribeConfigsResponse::default()
    }
}

fn describe(
    broker: &Broker,
    resource: &DescribeConfigsResource,
) -> Result<Vec<Described>, AdminError> {
    match resource.resource_type {
        RESOURCE_TOPIC => {
            let name = &resource.resource_name;
            topics::validate_name(name).map_err(|e| AdminError::InvalidTopic(e.to_string()))?;
            let topic = broker
                .topics
                .get(name)
                .ok_or_else(|| AdminError::from(TopicError::Unknown(name.clone())))?;
            topic_config::describe_topic(broker, &topic)
        }
        RESOURCE_BROKER => {
            check_broker_name(broker, &resource.resource_name)?;
            Ok(topic_config::describe_broker(
                broker,
                !resource.resource_name.is_empty(),
            ))
        }
        other => Err(AdminError::InvalidRequest(format!(
            "Unsupported resource type {other}; this broker describes topics (2) and brokers (4)."
        ))),
    }
}

/// A broker resource names this broker's id, or is empty (the cluster-wide default).
pub(crate) fn check_broker_name(broker: &Broker, name: &str) -> Result<(), AdminError> {
    let node = broker.config().node_id;
    if name.is_empty() || name == node.to_string() {
        Ok(())
    } else {
        Err(AdminError::InvalidRequest(format!(
            "Unexpected broker id, expected {node} or empty string, but received {name}"
        )))
    }
}

fn entry(d: Described, include_synonyms: bool) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult {
        name: d.name,
        value: d.value,
        read_only: d.read_only,
        config_source: d.source as i8,
        is_sensitive: d.sensitive,
        synonyms: if include_synonyms {
            d.synonyms
                .into_iter()
                .map(|(name, value, source)| DescribeConfigsSynonym {
                    name,
                    value,
                    source: source as i8,
                    ..DescribeConfigsSynonym::default()
                })
                .collect()
        } else {
            Vec::new()
        },
        config_type: d.config_type as i8,
        documentation: None,
        ..DescribeConfigsResourceResult::default()
    }
}
