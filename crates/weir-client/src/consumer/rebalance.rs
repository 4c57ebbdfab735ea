//! One rebalance round trip, run on a task of its own: commit what is being given up, then
//! JoinGroup, the assignor (when this member leads) and SyncGroup until a generation is
//! joined.
//!
//! It runs apart from [`Consumer::recv`](super::Consumer::recv) because `recv` may be
//! cancelled (a `select!`, a timeout) at any await: a JoinGroup whose answer is dropped, or a
//! SyncGroup never sent, would leave the member behind while the group moves on. The task owns
//! the [`Group`] while it runs and hands it back with the result.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use weir_protocol::messages::join_group_response::JoinGroupResponseMember;

use super::assignor::{Assignor, Member, RebalanceProtocol};
use super::group::Group;
use super::protocol::{Assignment, Subscription, TopicPartition};
use crate::{Client, Result};

/// What the consumer knows when it starts to rejoin.
pub(crate) struct Rejoin {
    pub(crate) topics: Vec<String>,
    pub(crate) assignor: Assignor,
    /// Partitions kept through the rebalance (cooperative only).
    pub(crate) owned: Vec<TopicPartition>,
    /// Positions of partitions given up, committed before joining so their next owner
    /// starts where this member stopped.
    pub(crate) commit_first: Vec<(TopicPartition, i64)>,
}

/// What a finished round gave this member.
pub(crate) struct Joined {
    pub(crate) partitions: Vec<TopicPartition>,
    /// When this member led: the partition counts it assigned, to watch for changes.
    pub(crate) partition_counts: Option<BTreeMap<String, i32>>,
}

/// Runs the rebalance and returns the group with the new assignment.
pub(crate) async fn run(
    mut group: Group,
    client: Client,
    rejoin: Rejoin,
) -> (Group, Result<Joined>) {
    let result = rebalance(&mut group, &client, rejoin).await;
    (group, result)
}

async fn rebalance(group: &mut Group, client: &Client, rejoin: Rejoin) -> Result<Joined> {
    if !rejoin.commit_first.is_empty() {
        let target = group.commit_target(true);
        if let Err(err) = target.commit(rejoin.commit_first).await {
            tracing::warn!(%err, "commit before giving up partitions failed");
        }
    }
    let cooperative = rejoin.assignor.rebalance_protocol() == RebalanceProtocol::Cooperative;
    loop {
        let subscription = Subscription {
            topics: rejoin.topics.clone(),
            // Asked at every join: it may describe what the member holds now.
            user_data: rejoin.assignor.subscription_user_data(&rejoin.topics),
            owned_partitions: if cooperative {
                rejoin.owned.clone()
            } else {
                Vec::new()
            },
            generation_id: if cooperative { group.generation } else { -1 },
        };
        let joined = group
            .join(vec![(
                rejoin.assignor.name().to_string(),
                subscription.encode()?,
            )])
            .await?;
        let (assignments, partition_counts) = match &joined.members {
            Some(members) => {
                let used = rejoin.assignor.chosen(joined.protocol_name.as_deref());
                let (assignments, counts) = match lead(client, &used, members).await {
                    Ok(led) => led,
                    Err(err) => {
                        // No SyncGroup for this generation: the others' fails once this
                        // member rejoins, and the group tries again.
                        tracing::error!(
                            group = %group.id, generation = joined.generation,
                            assignor = used.name(), %err,
                            "no assignment for this generation: leading it failed"
                        );
                        return Err(err);
                    }
                };
                (assignments, Some(counts))
            }
            None => (BTreeMap::new(), None),
        };
        let Some(bytes) = group.sync(joined.protocol_name, assignments).await? else {
            tracing::debug!(group = %group.id, "SyncGroup failed, rejoining");
            continue;
        };
        let assignment = Assignment::decode(bytes)?;
        // Before the consumer takes the partitions or calls its listener.
        rejoin.assignor.on_assignment(&assignment);
        tracing::debug!(
            group = %group.id, generation = joined.generation,
            partitions = assignment.partitions.len(), "joined"
        );
        group.start_heartbeat();
        return Ok(Joined {
            partitions: assignment.partitions,
            partition_counts,
        });
    }
}

/// Runs the assignor as the group's leader over the members' subscriptions and the partition
/// counts of every topic any of them wants; returns the assignments and those counts.
async fn lead(
    client: &Client,
    assignor: &Assignor,
    members: &[JoinGroupResponseMember],
) -> Result<(BTreeMap<String, Bytes>, BTreeMap<String, i32>)> {
    let mut decoded = Vec::with_capacity(members.len());
    for m in members {
        decoded.push(Member {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            subscription: Subscription::decode(m.metadata.clone())?,
        });
    }
    let topics: BTreeSet<&String> = decoded
        .iter()
        .flat_map(|m| &m.subscription.topics)
        .collect();
    let mut partition_counts = BTreeMap::new();
    for topic in topics {
        match client.topic(topic).await {
            Ok(metadata) => {
                let count = i32::try_from(metadata.partitions.len()).unwrap_or(i32::MAX);
                partition_counts.insert(topic.clone(), count);
            }
            Err(err) => {
                tracing::warn!(%topic, %err, "subscribed topic left out of the assignment");
            }
        }
    }
    let mut assignments = BTreeMap::new();
    for (member_id, assignment) in assignor.assign(&partition_counts, &decoded)? {
        assignments.insert(member_id, assignment.encode()?);
    }
    Ok((assignments, partition_counts))
}
