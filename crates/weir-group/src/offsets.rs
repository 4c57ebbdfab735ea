//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete and retention.

use std::collections::BTreeSet;

use crate::coordinator::{Coordinator, Tx};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::record::{OffsetCommitValue, RecordKey};
use crate::types::{
    FetchedOffset, GroupState, Millis, OffsetCommitRequest, OffsetFetchRequest, PersistRecord,
    TopicPartition,
};

fn offset_key(group_id: &str, tp: &TopicPartition) -> bytes::Bytes {
    RecordKey::OffsetCommit {
        group: group_id.to_owned(),
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
    .encode()
}

fn tombstone(group_id: &str, tp: &TopicPartition) -> PersistRecord {
    PersistRecord {
        key: offset_key(group_id, tp),
        value: None,
    }
}

impl Coordinator {
    /// Handles OffsetCommit: one result per offset, in request order. Accepted offsets are
    /// queued as an [`Output::Persist`](crate::Output::Persist), which the broker makes durable
    /// before answering.
    pub fn commit_offsets(&mut self, now: Millis, req: &OffsetCommitRequest) -> Vec<Result<()>> {
        self.arm_offset_expiry(now);
        let fail = |e: Error| req.offsets.iter().map(|_| Err(e.clone())).collect();
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id >= 0 {
                // Either a member of a group this coordinator lost, or a stale generation.
                return fail(Error::IllegalGeneration);
            }
            // A consumer that assigns partitions itself only uses the group for offsets.
            self.groups
                .insert(req.group_id.clone(), Group::new(req.group_id.clone(), now));
        }
        let Some(g) = self.groups.get_mut(&req.group_id) else {
            return fail(Error::CoordinatorNotAvailable);
        };
        if g.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return fail(Error::FencedInstanceId);
        }
        if !(req.generation_id < 0 && g.state == GroupState::Empty) {
            let (generation, state) = (g.generation, g.state);
            let Some(m) = g.members.get_mut(&req.member_id) else {
                return fail(Error::UnknownMemberId);
            };
            if req.generation_id != generation {
                return fail(Error::IllegalGeneration);
            }
            // PreparingRebalance still accepts commits of the current generation: members
            // learn of the rebalance from their next heartbeat and commit before rejoining
            // (cooperative members keep consuming throughout). Between join and sync the
            // member cannot know its new assignment yet, so its commit would be a guess.
            if state == GroupState::CompletingRebalance {
                return fail(Error::RebalanceInProgress);
            }
            // A commit is as good as a heartbeat.
            m.heartbeat_deadline = now.saturating_add(i64::from(m.session_timeout_ms));
        }
        let mut records = Vec::new();
        let results = req
            .offsets
            .iter()
            .map(|c| {
                let metadata = c.metadata.clone().unwrap_or_default();
                if metadata.len() > self.config.offset_metadata_max_bytes {
                    return Err(Error::OffsetMetadataTooLarge);
                }
                let value = OffsetCommitValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata,
                    commit_timestamp: now,
                    expire_timestamp: req
                        .retention_time_ms
                        .filter(|r| *r >= 0)
                        .map(|r| now.saturating_add(r)),
                };
                records.push(PersistRecord {
                    key: offset_key(&req.group_id, &c.partition),
                    value: Some(value.encode()),
                });
                g.offsets.insert(c.partition.clone(), value);
                Ok(())
            })
            .collect();
        let mut tx = Tx {
            config: &self.config,
            outputs: &mut self.outputs,
            now,
        };
        tx.persist(&req.group_id, records);
        results
    }

    /// Checks a TxnOffsetCommit (KIP-98, KIP-447) as Kafka's `handleTxnCommitOffsets` does,
    /// without committing anything: the offsets wait for the transaction's marker and are then
    /// applied with [`Coordinator::commit_transactional_offsets`]. An unknown group is fine
    /// for a producer outside group management (generation `-1`); a named member must belong
    /// to the group, and a given generation must be the current one.
    pub fn check_txn_offset_commit(&self, req: &OffsetCommitRequest) -> Result<()> {
        let Some(g) = self.groups.get(&req.group_id) else {
            return if req.generation_id < 0 {
                Ok(())
            } else {
                Err(Error::IllegalGeneration)
            };
        };
        if g.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return Err(Error::FencedInstanceId);
        }
        if !req.member_id.is_empty() && !g.members.contains_key(&req.member_id) {
            return Err(Error::UnknownMemberId);
        }
        if req.generation_id >= 0 && req.generation_id != g.generation {
            return Err(Error::IllegalGeneration);
        }
        for c in &req.offsets {
            if c.metadata.as_ref().map_or(0, String::len) > self.config.offset_metadata_max_bytes {
                return Err(Error::OffsetMetadataTooLarge);
            }
        }
        Ok(())
    }

    /// Applies the offsets of a committed transaction: its COMMIT marker is on the group's
    /// partition, so the offsets TxnOffsetCommit checked earlier become the group's committed
    /// offsets, whatever the group's generation is by now (as Kafka completes pending
    /// transactional offsets). Queued as an [`Output::Persist`](crate::Output::Persist).
    pub fn commit_transactional_offsets(
        &mut self,
        now: Millis,
        group_id: &str,
        offsets: &[crate::types::OffsetCommit],
    ) {
        self.arm_offset_expiry(now);
        let g = self
            .groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id.to_owned(), now));
        let mut records = Vec::new();
        for c in offsets {
            let value = OffsetCommitValue {
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata.clone().unwrap_or_default(),
                commit_timestamp: now,
                expire_timestamp: None,
            };
            records.push(PersistRecord {
                key: offset_key(group_id, &c.partition),
                value: Some(value.encode()),
            });
            g.offsets.insert(c.partition.clone(), value);
        }
        let mut tx = Tx {
            config: &self.config,
            outputs: &mut self.outputs,
            now,
        };
        tx.persist(group_id, records);
    }

    /// Handles OffsetFetch for one or more groups. A partition without a committed offset, or a
    /// group this coordinator does not know, yields offset `-1`.
    pub fn fetch_offsets(&self, requests: &[OffsetFetchRequest]) -> Vec<Vec<FetchedOffset>> {
        requests
            .iter()
            .map(|req| {
                let group = self.groups.get(&req.group_id);
                let fetched = |tp: &TopicPartition| {
                    let value = group.and_then(|g| g.offsets.get(tp));
                    FetchedOffset {
                        partition: tp.clone(),
                        offset: value.map_or(-1, |v| v.offset),
                        leader_epoch: value.map_or(-1, |v| v.leader_epoch),
                        metadata: value.map(|v| v.metadata.clone()).unwrap_or_default(),
                    }
                };
                match &req.partitions {
                    Some(partitions) => partitions.iter().map(fetched).collect(),
                    None => group
                        .map(|g| g.offsets.keys().map(fetched).collect())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Handles OffsetDelete: the group-level result, then one result per partition.
    pub fn delete_offsets(
        &mut self,
        now: Millis,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Result<()>>> {
        let g = self
            .groups
            .get_mut(group_id)
            .ok_or(Error::GroupIdNotFound)?;
        let consumer = g.protocol_type.as_deref() == Some("consumer");
        if g.state != GroupState::Empty && !consumer {
            return Err(Error::NonEmptyGroup);
        }
        let subscribed = if g.state == GroupState::Empty {
            Some(BTreeSet::new())
        } else {
            subscribed_topics(g)
        };
        let mut records = Vec::new();
        let results = partitions
            .iter()
            .map(|tp| {
                if subscribed.as_ref().is_none_or(|s| s.contains(&tp.topic)) {
                    return Err(Error::GroupSubscribedToTopic);
                }
                if g.offsets.remove(tp).is_some() {
                    records.push(tombstone(group_id, tp));
                }
                Ok(())
            })
            .collect();
        let mut tx = Tx {
            config: &self.config,
            outputs: &mut self.outputs,
            now,
        };
        tx.persist(group_id, records);
        Ok(results)
    }

    /// Removes offsets past `offsets.retention.minutes`, and empty groups left with none.
    pub(crate) fn expire_offsets(&mut self, now: Millis) {
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        let mut batches = Vec::new();
        for g in self.groups.values_mut() {
            // Only a Stable group knows what its members read; in other states nothing expires.
            let subscribed = if g.state == GroupState::Stable {
                subscribed_topics(g)
            } else {
                None
            };
            let expired: Vec<TopicPartition> = g
                .offsets
                .iter()
                .filter(|(tp, v)| {
                    let base = if g.state == GroupState::Empty && g.protocol_type.is_some() {
                        // An empty consumer group keeps its offsets for the retention period
                        // after its last member left (KIP-211), or after the last commit if
                        // that is later.
                        g.state_timestamp.max(v.commit_timestamp)
                    } else if g.state == GroupState::Empty {
                        v.commit_timestamp
                    } else if subscribed.as_ref().is_some_and(|s| !s.contains(&tp.topic)) {
                        // An active group stops protecting topics it no longer reads.
                        v.commit_timestamp
                    } else {
                        return false;
                    };
                    match v.expire_timestamp {
                        Some(expire) => now >= expire,
                        None => now.saturating_sub(base) >= retention,
                    }
                })
                .map(|(tp, _)| tp.clone())
                .collect();
            let mut records = Vec::new();
            for tp in expired {
                g.offsets.remove(&tp);
                records.push(tombstone(&g.group_id, &tp));
            }
            if g.state == GroupState::Empty
                && g.offsets.is_empty()
                && g.members.is_empty()
                && g.pending_members.is_empty()
            {
                records.push(PersistRecord {
                    key: RecordKey::GroupMetadata {
                        group: g.group_id.clone(),
                    }
                    .encode(),
                    value: None,
                });
                dead.push(g.group_id.clone());
            }
            batches.push((g.group_id.clone(), records));
        }
        let mut tx = Tx {
            config: &self.config,
            outputs: &mut self.outputs,
            now,
        };
        for (group_id, records) in batches {
            tx.persist(&group_id, records);
        }
        for id in dead {
            self.groups.remove(&id);
        }
    }
}

/// Topics the members of a `consumer` group subscribe to, read from the selected protocol's
/// metadata (ConsumerProtocolSubscription: a version, then the topic array, in every version).
/// `None` when unknown (another protocol type, or metadata that does not parse): as in Kafka,
/// the group then counts as subscribed to every topic, so nothing is deleted or expired.
pub(crate) fn subscribed_topics(g: &Group) -> Option<BTreeSet<String>> {
    if g.protocol_type.as_deref() != Some("consumer") {
        return None;
    }
    let protocol = g.protocol_name.as_deref()?;
    let mut topics = BTreeSet::new();
    for m in g.members.values() {
        let p = m.protocols.iter().find(|p| p.name == protocol)?;
        parse_subscription_topics(&p.metadata, &mut topics)?;
    }
    Some(topics)
}

fn parse_subscription_topics(metadata: &[u8], topics: &mut BTreeSet<String>) -> Option<()> {
    let (_version, rest) = metadata.split_at_checked(2)?;
    let (count, mut rest) = rest.split_first_chunk::<4>()?;
    let count = i32::from_be_bytes(*count);
    for _ in 0..count.max(0) {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::try_from(i16::from_be_bytes(*len)).ok()?;
        let (name, tail) = tail.split_at_checked(len)?;
        topics.insert(std::str::from_utf8(name).ok()?.to_owned());
        rest = tail;
    }
    Some(())
}
