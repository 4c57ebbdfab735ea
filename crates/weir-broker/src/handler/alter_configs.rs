//! AlterConfigs: replaces a topic's whole set of config overrides (what is not named returns to
//! its default), validated as the log would apply it, persisted, and applied to the open logs.
//! A broker resource (this broker's id, or empty for the cluster-wide default) holds the dynamic
//! broker configs: the broker properties that default topic configs (`log.retention.ms`,
//! `min.insync.replicas`, ...), kept in the metadata log and applied by every broker as its
//! image moves; any other broker property is static and refused with INVALID_REQUEST.

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC, check_broker_name};
use crate::admin;
use crate::connection::RequestContext;
use crate::error::{AdminError, BrokerError};
use crate::state::Broker;
use crate::topic_config;
use crate::topics::{self, TopicError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use weir_metadata::ConfigResource;
use weir_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use weir_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

super::always_responds!(AlterConfigsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let keys: Vec<(i8, String)> = request
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.clone()))
        .collect();
    let duplicates = duplicate_resources(&keys);
    let validate_only = request.validate_only;
    let outcomes = admin::blocking(broker, move |broker| {
        request
            .resources
            .into_iter()
            .map(|resource| {
                if duplicates.contains(&(resource.resource_type, resource.resource_name.clone())) {
                    return Err(duplicate_error());
                }
                let mut overrides = BTreeMap::new();
                for config in resource.configs {
                    // A null value leaves the config at its default, as if it were not named.
                    if let Some(value) = config.value {
                        overrides.insert(config.name, value);
                    }
                }
                alter(
                    broker,
                    resource.resource_type,
                    &resource.resource_name,
                    validate_only,
                    |_current| Ok(overrides),
                )
            })
            .collect::<Vec<_>>()
    })
    .await;
    AlterConfigsResponse {
        responses: responses(keys, outcomes)
            .into_iter()
            .map(
                |(error_code, error_message, resource_type, resource_name)| {
                    AlterConfigsResourceResponse {
                        error_code,
                        error_message,
                        resource_type,
                        resource_name,
                        ..AlterConfigsResourceResponse::default()
                    }
                },
            )
            .collect(),
        ..AlterConfigsResponse::default()
    }
}

/// Resources named more than once in a request: Kafka refuses every entry of them.
pub(crate) fn duplicate_resources(keys: &[(i8, String)]) -> BTreeSet<(i8, String)> {
    let mut seen = BTreeSet::new();
    keys.iter()
        .filter(|k| !seen.insert((*k).clone()))
        .cloned()
        .collect()
}

/// The error for a resource named twice.
pub(crate) fn duplicate_error() -> AdminError {
    AdminError::InvalidRequest("Error due to duplicate resources in the request.".to_string())
}

/// Pairs each resource with its outcome: (error code, message, type, name).
pub(crate) fn responses(
    keys: Vec<(i8, String)>,
    outcomes: Option<Vec<Result<(), AdminError>>>,
) -> Vec<(i16, Option<String>, i8, String)> {
    let outcomes = outcomes.unwrap_or_default();
    let mut outcomes = outcomes.into_iter();
    keys.into_iter()
        .map(|(resource_type, resource_name)| {
            let outcome = outcomes
                .next()
                .unwrap_or(Err(AdminError::Broker(BrokerError::TaskFailed)));
            match outcome {
                Ok(()) => (0, None, resource_type, resource_name),
                Err(e) => (
                    e.code().code(),
                    Some(e.message()),
                    resource_type,
                    resource_name,
                ),
            }
        })
        .collect()
}

/// Changes one resource's overrides to what `change` makes of the current ones, after
/// validating the result; with `validate_only` nothing is changed.
pub(crate) fn alter(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AdminError>,
) -> Result<(), AdminError> {
    match resource_type {
        RESOURCE_TOPIC => {
            topics::validate_name(name).map_err(|e| AdminError::InvalidTopic(e.to_string()))?;
            let topic = broker
                .topics
                .get(name)
                .ok_or_else(|| AdminError::from(TopicError::Unknown(name.to_string())))?;
            let overrides = change(&topic.configs)?;
            topic_config::validate(broker, name, &overrides)?;
            if !validate_only {
                broker.set_topic_configs(name, overrides)?;
            }
            Ok(())
        }
        RESOURCE_BROKER => {
            check_broker_name(broker, name)?;
            let resource = if name.is_empty() {
                ConfigResource::ClusterDefault
            } else {
                ConfigResource::Broker(broker.config().node_id)
            };
            let current = broker
                .topics
                .image()
                .configs(&resource)
                .cloned()
                .unwrap_or_default();
            let configs = change(&current)?;
            topic_config::validate_dynamic(broker, &configs)?;
            if !validate_only && configs != current {
                broker.set_dynamic_broker_configs(resource, &current, configs)?;
            }
            Ok(())
        }
        other => Err(AdminError::InvalidRequest(format!(
            "Unsupported resource type {other}; configs can be altered for topics (2)."
        ))),
    }
}
