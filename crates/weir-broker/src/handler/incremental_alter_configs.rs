//! IncrementalAlterConfigs: changes single topic configs or dynamic broker configs: SET (0),
//! DELETE (1, back to the default), and for list configs (`cleanup.policy`) APPEND (2) and
//! SUBTRACT (3), which start from the current value (the override, or the default). The result
//! is validated, persisted and applied to the open logs as in AlterConfigs.

use super::alter_configs::{alter, duplicate_error, duplicate_resources, responses};
use super::describe_configs::RESOURCE_BROKER;
use crate::admin;
use crate::connection::RequestContext;
use crate::error::AdminError;
use crate::state::Broker;
use crate::topic_config::{self, ConfigType};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use weir_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use weir_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use weir_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

super::always_responds!(IncrementalAlterConfigsRequest);

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
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
                let ops = resource.configs;
                let scope = resource.resource_type;
                alter(
                    broker,
                    resource.resource_type,
                    &resource.resource_name,
                    validate_only,
                    |current| apply_ops(broker, scope, current, ops),
                )
            })
            .collect::<Vec<_>>()
    })
    .await;
    IncrementalAlterConfigsResponse {
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
        ..IncrementalAlterConfigsResponse::default()
    }
}

/// The overrides after applying `ops` to `current` (of a topic, or of a broker resource when
/// `resource_type` says so: its names are broker properties).
fn apply_ops(
    broker: &Broker,
    resource_type: i8,
    current: &BTreeMap<String, String>,
    ops: Vec<AlterableConfig>,
) -> Result<BTreeMap<String, String>, AdminError> {
    let mut seen = BTreeSet::new();
    if let Some(dup) = ops.iter().find(|op| !seen.insert(op.name.clone())) {
        return Err(AdminError::InvalidRequest(format!(
            "Error due to duplicate config keys: {}",
            dup.name
        )));
    }
    let mut overrides = current.clone();
    for op in ops {
        let def = if resource_type == RESOURCE_BROKER {
            topic_config::def_by_broker_key(&op.name).ok_or_else(|| {
                AdminError::InvalidRequest(format!(
                    "Cannot update these configs dynamically: {}",
                    op.name
                ))
            })?
        } else {
            topic_config::def(&op.name).ok_or_else(|| {
                AdminError::InvalidConfig(format!("Unknown topic config name: {}", op.name))
            })?
        };
        match op.config_operation {
            SET => {
                let value = op.value.ok_or_else(|| {
                    AdminError::InvalidRequest(format!(
                        "Null value not supported for : {}",
                        op.name
                    ))
                })?;
                overrides.insert(op.name, value);
            }
            DELETE => {
                overrides.remove(&op.name);
            }
            APPEND | SUBTRACT => {
                if def.config_type != ConfigType::List {
                    return Err(AdminError::InvalidConfig(format!(
                        "Config value append or subtract is not allowed for config key: {}",
                        op.name
                    )));
                }
                let base = match overrides.get(&op.name) {
                    Some(v) => Some(v.clone()),
                    None => topic_config::default_value(broker, def.name)?,
                };
                let mut items: Vec<String> = base
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                let given: Vec<String> = op
                    .value
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if op.config_operation == APPEND {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|item| !given.contains(item));
                }
                overrides.insert(op.name, items.join(","));
            }
            other => {
                return Err(AdminError::InvalidRequest(format!(
                    "Unknown config operation {other} for {}",
                    op.name
                )));
            }
        }
    }
    Ok(overrides)
}
