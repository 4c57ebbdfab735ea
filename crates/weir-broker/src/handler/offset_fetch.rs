//! OffsetFetch: a group's committed offsets; v8+ asks for several groups at once. A partition
//! without a committed offset answers offset -1. With `require_stable` (v7+, KIP-447) a
//! partition whose offset a transaction has committed but not yet ended (TxnOffsetCommit)
//! answers UNSTABLE_OFFSET_COMMIT, which clients retry. v10 names topics by id.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::debug;
use weir_group::{FetchedOffset, OffsetFetchRequest as Fetch, TopicPartition};
use weir_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use weir_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use weir_protocol::{ErrorCode, Uuid};

super::always_responds!(OffsetFetchRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let partitions = |topics: Vec<(String, Vec<i32>)>| {
        topics
            .into_iter()
            .flat_map(|(name, indexes)| {
                indexes
                    .into_iter()
                    .map(move |p| TopicPartition::new(name.clone(), p))
            })
            .collect::<Vec<_>>()
    };
    if ctx.api_version >= 8 {
        // v10 names topics by id: resolve them to names (offsets are stored by name), and
        // remember the ids this broker does not know, to answer UNKNOWN_TOPIC_ID for them.
        let by_id = ctx.api_version >= 10;
        let mut unknown_ids: Vec<Vec<(Uuid, Vec<i32>)>> = Vec::new();
        let fetches: Vec<Fetch> = request
            .groups
            .into_iter()
            .map(|g| {
                let mut unknown = Vec::new();
                let topics = g.topics.map(|topics| {
                    let named = topics
                        .into_iter()
                        .filter_map(|t| {
                            if !by_id {
                                return Some((t.name, t.partition_indexes));
                            }
                            match broker.topics.by_id(t.topic_id) {
                                Some(topic) => Some((topic.name, t.partition_indexes)),
                                None => {
                                    unknown.push((t.topic_id, t.partition_indexes));
                                    None
                                }
                            }
                        })
                        .collect();
                    partitions(named)
                });
                unknown_ids.push(unknown);
                Fetch {
                    group_id: g.group_id,
                    partitions: topics,
                }
            })
            .collect();
        debug!(groups = fetches.len(), "OffsetFetch");
        let mut checks = std::collections::BTreeMap::new();
        for f in &fetches {
            let check = crate::groups::check_coordinator(broker, &f.group_id).await;
            checks.insert(f.group_id.clone(), check);
        }
        let fetched = broker.groups.read(|c| c.fetch_offsets(&fetches));
        let require_stable = request.require_stable;
        let partition = |group: &str, o: FetchedOffset| {
            if require_stable && broker.groups.has_pending_txn_offset(group, &o.partition) {
                return OffsetFetchResponsePartitions {
                    partition_index: o.partition.partition,
                    committed_offset: -1,
                    committed_leader_epoch: -1,
                    metadata: Some(String::new()),
                    error_code: ErrorCode::UNSTABLE_OFFSET_COMMIT.code(),
                    ..OffsetFetchResponsePartitions::default()
                };
            }
            OffsetFetchResponsePartitions {
                partition_index: o.partition.partition,
                committed_offset: o.offset,
                committed_leader_epoch: o.leader_epoch,
                metadata: Some(o.metadata),
                ..OffsetFetchResponsePartitions::default()
            }
        };
        OffsetFetchResponse {
            groups: fetches
                .into_iter()
                .zip(fetched)
                .zip(unknown_ids)
                .map(|((f, offsets), unknown)| {
                    let group = f.group_id.clone();
                    let known = by_topic(offsets).into_iter().filter_map(|(name, offsets)| {
                        let topic_id = if by_id {
                            // A topic deleted since the commit has no id to report.
                            broker.topics.get(&name)?.id
                        } else {
                            Uuid::ZERO
                        };
                        Some(OffsetFetchResponseTopics {
                            name,
                            topic_id,
                            partitions: offsets.into_iter().map(|o| partition(&group, o)).collect(),
                            ..OffsetFetchResponseTopics::default()
                        })
                    });
                    let unknown =
                        unknown
                            .into_iter()
                            .map(|(topic_id, indexes)| OffsetFetchResponseTopics {
                                topic_id,
                                partitions: indexes
                                    .into_iter()
                                    .map(|partition_index| OffsetFetchResponsePartitions {
                                        partition_index,
                                        committed_offset: -1,
                                        metadata: Some(String::new()),
                                        error_code: ErrorCode::UNKNOWN_TOPIC_ID.code(),
                                        ..OffsetFetchResponsePartitions::default()
                                    })
                                    .collect(),
                                ..OffsetFetchResponseTopics::default()
                            });
                    if let Some(Err(code)) = checks.get(&f.group_id) {
                        return OffsetFetchResponseGroup {
                            group_id: f.group_id,
                            error_code: code.code(),
                            ..OffsetFetchResponseGroup::default()
                        };
                    }
                    OffsetFetchResponseGroup {
                        group_id: f.group_id,
                        topics: known.chain(unknown).collect(),
                        ..OffsetFetchResponseGroup::default()
                    }
                })
                .collect(),
            ..OffsetFetchResponse::default()
        }
    } else {
        if let Err(code) = crate::groups::check_coordinator(broker, &request.group_id).await {
            return OffsetFetchResponse {
                error_code: code.code(),
                ..OffsetFetchResponse::default()
            };
        }
        let fetch = Fetch {
            group_id: request.group_id,
            // v1 has no null (all partitions); later versions use null for it.
            partitions: request.topics.map(|topics| {
                partitions(
                    topics
                        .into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect(),
                )
            }),
        };
        debug!(group = %fetch.group_id, "OffsetFetch");
        let require_stable = ctx.api_version >= 7 && request.require_stable;
        let group_id = fetch.group_id.clone();
        let fetched = broker
            .groups
            .read(|c| c.fetch_offsets(std::slice::from_ref(&fetch)))
            .into_iter()
            .next()
            .unwrap_or_default();
        OffsetFetchResponse {
            topics: by_topic(fetched)
                .into_iter()
                .map(|(name, offsets)| OffsetFetchResponseTopic {
                    name,
                    partitions: offsets
                        .into_iter()
                        .map(|o| {
                            if require_stable
                                && broker
                                    .groups
                                    .has_pending_txn_offset(&group_id, &o.partition)
                            {
                                return OffsetFetchResponsePartition {
                                    partition_index: o.partition.partition,
                                    committed_offset: -1,
                                    committed_leader_epoch: -1,
                                    metadata: Some(String::new()),
                                    error_code: ErrorCode::UNSTABLE_OFFSET_COMMIT.code(),
                                    ..OffsetFetchResponsePartition::default()
                                };
                            }
                            OffsetFetchResponsePartition {
                                partition_index: o.partition.partition,
                                committed_offset: o.offset,
                                committed_leader_epoch: o.leader_epoch,
                                metadata: Some(o.metadata),
                                ..OffsetFetchResponsePartition::default()
                            }
                        })
                        .collect(),
                    ..OffsetFetchResponseTopic::default()
                })
                .collect(),
            ..OffsetFetchResponse::default()
        }
    }
}

/// Groups fetched offsets by topic, keeping the order topics first appear in.
fn by_topic(offsets: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut order: Vec<String> = Vec::new();
    let mut topics: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
    for o in offsets {
        let name = o.partition.topic.clone();
        if !topics.contains_key(&name) {
            order.push(name.clone());
        }
        topics.entry(name).or_default().push(o);
    }
    order
        .into_iter()
        .filter_map(|name| topics.remove(&name).map(|offsets| (name, offsets)))
        .collect()
}
