//! OffsetCommit: stores a group's consumed positions in `__consumer_offsets`; answers after
//! the records are appended. Partitions of unknown topics are refused one by one, as Kafka does.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_group::{OffsetCommit, OffsetCommitRequest as Commit, TopicPartition};
use weir_protocol::ErrorCode;
use weir_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use weir_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

super::always_responds!(OffsetCommitRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    // Per partition in request order: `None` to commit, or the error already decided.
    let mut decided: Vec<(String, i32, Option<ErrorCode>)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in request.topics {
        let known = broker.topics.get(&topic.name);
        for p in topic.partitions {
            let exists = known
                .as_ref()
                .is_some_and(|t| (0..t.partitions).contains(&p.partition_index));
            if exists {
                offsets.push(OffsetCommit {
                    partition: TopicPartition::new(topic.name.clone(), p.partition_index),
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata,
                });
                decided.push((topic.name.clone(), p.partition_index, None));
            } else {
                decided.push((
                    topic.name.clone(),
                    p.partition_index,
                    Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                ));
            }
        }
    }
    let commit = Commit {
        group_id: request.group_id,
        generation_id: request.generation_id_or_member_epoch,
        member_id: request.member_id,
        group_instance_id: request.group_instance_id,
        // Only v2–v4 carry a retention time; later versions leave it to the broker.
        retention_time_ms: (ctx.api_version <= 4).then_some(request.retention_time_ms),
        offsets,
    };
    debug!(
        group = %commit.group_id,
        member = %commit.member_id,
        generation = commit.generation_id,
        partitions = commit.offsets.len(),
        "OffsetCommit"
    );
    let mut results = if commit.offsets.is_empty() {
        Vec::new()
    } else {
        let (results, persisted) = broker
            .groups
            .call(broker, |c, now| c.commit_offsets(now, &commit))
            .await;
        results
            .into_iter()
            .map(|r| match (r, persisted) {
                (Err(e), _) => crate::error::group_error_code(&e),
                (Ok(()), Err(failure)) => failure.code(true),
                (Ok(()), Ok(())) => ErrorCode::NONE,
            })
            .collect()
    }
    .into_iter();
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (name, partition_index, error) in decided {
        let code = error.unwrap_or_else(|| results.next().unwrap_or(ErrorCode::NONE));
        let partition = OffsetCommitResponsePartition {
            partition_index,
            error_code: code.code(),
            ..OffsetCommitResponsePartition::default()
        };
        match topics.last_mut() {
            Some(t) if t.name == name => t.partitions.push(partition),
            _ => topics.push(OffsetCommitResponseTopic {
                name,
                partitions: vec![partition],
                ..OffsetCommitResponseTopic::default()
            }),
        }
    }
    OffsetCommitResponse {
        topics,
        ..OffsetCommitResponse::default()
    }
}
