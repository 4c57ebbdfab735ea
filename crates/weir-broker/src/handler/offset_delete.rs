//! OffsetDelete: removes a group's committed offsets for topics no active member subscribes to.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_group::TopicPartition;
use weir_protocol::ErrorCode;
use weir_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use weir_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

super::always_responds!(OffsetDeleteRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    // Partitions of unknown topics are refused before the coordinator sees the rest.
    let mut requested: Vec<(String, i32, Option<ErrorCode>)> = Vec::new();
    let mut partitions = Vec::new();
    for topic in request.topics {
        let known = broker.topics.get(&topic.name);
        for p in topic.partitions {
            let exists = known
                .as_ref()
                .is_some_and(|t| (0..t.partitions).contains(&p.partition_index));
            if exists {
                partitions.push(TopicPartition::new(topic.name.clone(), p.partition_index));
                requested.push((topic.name.clone(), p.partition_index, None));
            } else {
                requested.push((
                    topic.name.clone(),
                    p.partition_index,
                    Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                ));
            }
        }
    }
    let group_id = request.group_id;
    debug!(group = %group_id, partitions = partitions.len(), "OffsetDelete");
    let (result, persisted) = broker
        .groups
        .call(broker, |c, now| {
            c.delete_offsets(now, &group_id, &partitions)
        })
        .await;
    let mut results = match (result, persisted) {
        (Err(e), _) => {
            return OffsetDeleteResponse {
                error_code: crate::error::group_error_code(&e).code(),
                ..OffsetDeleteResponse::default()
            };
        }
        (Ok(_), Err(failure)) => {
            return OffsetDeleteResponse {
                error_code: failure.code(false).code(),
                ..OffsetDeleteResponse::default()
            };
        }
        (Ok(results), Ok(())) => results.into_iter(),
    };
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (name, partition_index, error) in requested {
        let code = error.unwrap_or_else(|| {
            results.next().map_or(ErrorCode::NONE, |r| {
                r.map_or_else(|e| crate::error::group_error_code(&e), |()| ErrorCode::NONE)
            })
        });
        let partition = OffsetDeleteResponsePartition {
            partition_index,
            error_code: code.code(),
        };
        match topics.last_mut() {
            Some(t) if t.name == name => t.partitions.push(partition),
            _ => topics.push(OffsetDeleteResponseTopic {
                name,
                partitions: vec![partition],
            }),
        }
    }
    OffsetDeleteResponse {
        topics,
        ..OffsetDeleteResponse::default()
    }
}
