//! ListConfigResources (KIP-1142; v0 was ListClientMetricsResources): the names of resources
//! that have configs, by type.
//!
//! - v1 with `resource_types` empty lists every type Weir has: topics (2), brokers (4), groups
//!   (32); client metrics (16) have none here. A requested type Weir does not list
//!   (BROKER_LOGGER 8, or unknown) is answered with INVALID_REQUEST, as Kafka does for
//!   unsupported types.
//! - v0 lists client metrics resources only, so its answer is empty.
//! - Topics and brokers come from the published metadata image (every registered broker,
//!   fenced ones included, since their configs can still be described); groups are those whose
//!   coordinator is this broker (group state is kept by the coordinators, as in Kafka's
//!   classic groups).

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::ErrorCode;
use weir_protocol::messages::list_config_resources_response::ConfigResource;
use weir_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};

super::always_responds!(ListConfigResourcesRequest);

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ListConfigResourcesRequest,
) -> ListConfigResourcesResponse {
    let types: Vec<i8> = if ctx.api_version == 0 {
        vec![CLIENT_METRICS]
    } else if request.resource_types.is_empty() {
        vec![TOPIC, BROKER, CLIENT_METRICS, GROUP]
    } else {
        request.resource_types
    };
    if let Some(other) = types
        .iter()
        .find(|t| ![TOPIC, BROKER, CLIENT_METRICS, GROUP].contains(t))
    {
        tracing::debug!(
            resource_type = other,
            "ListConfigResources: unsupported type"
        );
        return ListConfigResourcesResponse {
            error_code: ErrorCode::INVALID_REQUEST.code(),
            ..ListConfigResourcesResponse::default()
        };
    }
    let image = broker.topics.image();
    let mut resources = Vec::new();
    let mut add = |resource_type: i8, names: Vec<String>| {
        resources.extend(names.into_iter().map(|resource_name| ConfigResource {
            resource_name,
            resource_type,
            ..ConfigResource::default()
        }));
    };
    for resource_type in types {
        match resource_type {
            TOPIC => add(TOPIC, image.topics().keys().cloned().collect()),
            BROKER => add(
                BROKER,
                image.brokers().keys().map(|id| id.to_string()).collect(),
            ),
            GROUP => add(
                GROUP,
                broker
                    .groups
                    .read(|c| c.list_groups(&[], &[]))
                    .into_iter()
                    .map(|g| g.group_id)
                    .collect(),
            ),
            _ => {}
        }
    }
    ListConfigResourcesResponse {
        config_resources: resources,
        ..ListConfigResourcesResponse::default()
    }
}
