//! DescribeCluster: this single node is the whole cluster, broker and controller.

use crate::connection::RequestContext;
use crate::error::AdminError;
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use weir_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

super::always_responds!(DescribeClusterRequest);

/// Endpoint type 1: brokers (the only kind a broker listener describes).
const ENDPOINT_BROKERS: i8 = 1;

/// Kafka's "authorized operations were not requested" value.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// Cluster operations a client may perform (there is no authorizer): ALTER (7), DESCRIBE (8),
/// CLUSTER_ACTION (9), DESCRIBE_CONFIGS (10), ALTER_CONFIGS (11), IDEMPOTENT_WRITE (12), and
/// CREATE (5), as Kafka's AclOperation bit positions.
const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    // v0 has no endpoint type and means brokers.
    let endpoint_type = if ctx.api_version >= 1 {
        request.endpoint_type
    } else {
        ENDPOINT_BROKERS
    };
    if endpoint_type != ENDPOINT_BROKERS {
        let error = AdminError::UnsupportedEndpointType(
            "The broker listener describes brokers (endpoint type 1) only.".to_string(),
        );
        return DescribeClusterResponse {
            error_code: error.code().code(),
            error_message: Some(error.message()),
            endpoint_type,
            cluster_id: broker.cluster_id().to_string(),
            controller_id: -1,
            brokers: Vec::new(),
            cluster_authorized_operations: OPERATIONS_NOT_REQUESTED,
            ..DescribeClusterResponse::default()
        };
    }
    let image = broker.topics.image();
    // Fenced brokers only when asked (v2's include_fenced_brokers), as Kafka answers.
    let brokers = image
        .brokers()
        .values()
        .filter(|b| !b.fenced || request.include_fenced_brokers)
        .filter_map(|b| {
            let endpoint = b.endpoint("PLAINTEXT")?;
            Some(DescribeClusterBroker {
                broker_id: b.broker_id,
                host: endpoint.host.clone(),
                port: i32::from(endpoint.port),
                rack: b.rack.clone(),
                is_fenced: b.fenced,
                ..DescribeClusterBroker::default()
            })
        })
        .collect();
    DescribeClusterResponse {
        error_code: 0,
        error_message: None,
        endpoint_type,
        cluster_id: broker.cluster_id().to_string(),
        controller_id: broker.cluster.active_controller().unwrap_or(-1),
        brokers,
        cluster_authorized_operations: if request.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        },
        ..DescribeClusterResponse::default()
    }
}
