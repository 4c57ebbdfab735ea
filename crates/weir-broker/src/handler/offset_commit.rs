//! OffsetCommit: stores a group's consumed positions in `__consumer_offsets`; answers after
//! the records are appended. Partitions of unknown topics are refused one by one, as Kafka does.
//! v10 names topics by id; offsets are still stored by topic name, as Kafka stores them.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use tracing::debug;
use weir_group::{OffsetCommit, OffsetCommitRequest as Commit, TopicPartition};
use weir_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use weir_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use weir_protocol::{ErrorCode, Uuid};

super::always_responds!(OffsetCommitRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let by_id = ctx.api_version >= 10;
    // Per partition in request order: the topic as the client named it, and `None` to commit
    // or the error already decided.
    let mut decided: Vec<(String, Uuid, i32, Option<ErrorCode>)> = Vec::new();
    let mut offsets = Vec::new();
    let not_coordinator = crate::groups::check_coordinator(broker, &request.group_id)
        .await
        .err();
    for topic in request.topics {
        let known = if by_id {
            broker.topics.by_id(topic.topic_id)
        } else {
            broker.topics.get(&topic.name)
        };
        let unknown = if by_id {
            ErrorCode::UNKNOWN_TOPIC_ID
        } else {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        };
        for p in topic.partitions {
            let error = if not_coordinator.is_some() {
                not_coordinator
            } else {
                match &known {
                    Some(t) if (0..t.partitions).contains(&p.partition_index) => {
                        offsets.push(OffsetCommit {
                            partition: TopicPartition::new(t.name.clone(), p.partition_index),
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata,
                        });
                        None
                    }
                    Some(_) => Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                    None => Some(unknown),
                }
            };
            decided.push((topic.name.clone(), topic.topic_id, p.partition_index, error));
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
    for (name, topic_id, partition_index, error) in decided {
        let code = error.unwrap_or_else(|| results.next().unwrap_or(ErrorCode::NONE));
        let partition = OffsetCommitResponsePartition {
            partition_index,
            error_code: code.code(),
            ..OffsetCommitResponsePartition::default()
        };
        match topics.last_mut() {
            Some(t) if t.name == name && t.topic_id == topic_id => t.partitions.push(partition),
            _ => topics.push(OffsetCommitResponseTopic {
                name,
                topic_id,
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
