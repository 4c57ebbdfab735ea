//! DescribeGroups, ListGroups, DeleteGroups, and loading or unloading a `__consumer_offsets`
//! partition.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::coordinator::Coordinator;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::partition::partition_for;
use crate::record::{GroupMetadataValue, OffsetCommitValue, RecordKey};
use crate::types::{
    GroupDescription, GroupListing, GroupState, MemberDescription, Millis, Output, PersistRecord,
    TopicPartition,
};

impl Coordinator {
    /// Handles DescribeGroups: one result per group id. An unknown group is
    /// [`Error::GroupIdNotFound`]; DescribeGroups before v6 reports it as state `Dead` with no
    /// error instead, which the broker does.
    pub fn describe_groups(&self, group_ids: &[String]) -> Vec<Result<GroupDescription>> {
        group_ids
            .iter()
            .map(|id| {
                let g = self.groups.get(id).ok_or(Error::GroupIdNotFound)?;
                let stable = g.state == GroupState::Stable;
                Ok(GroupDescription {
                    group_id: g.group_id.clone(),
                    state: g.state,
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    protocol_name: if stable {
                        g.protocol_name.clone().unwrap_or_default()
                    } else {
                        String::new()
                    },
                    generation_id: g.generation,
                    leader: g.leader.clone(),
                    members: g
                        .members
                        .values()
                        .map(|m| MemberDescription {
                            member_id: m.member_id.clone(),
                            group_instance_id: m.group_instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: if stable {
                                m.metadata_for(g.protocol_name.as_deref())
                            } else {
                                Bytes::new()
                            },
                            assignment: if stable {
                                m.assignment.clone()
                            } else {
                                Bytes::new()
                            },
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// Handles ListGroups. Empty filters match everything; protocol types match exactly.
    pub fn list_groups(&self, states: &[GroupState], types: &[String]) -> Vec<GroupListing> {
        self.groups
            .values()
            .filter(|g| states.is_empty() || states.contains(&g.state))
            .filter(|g| {
                types.is_empty()
                    || types.contains(g.protocol_type.as_ref().unwrap_or(&String::new()))
            })
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect()
    }

    /// Handles DeleteGroups: one result per group id. Deleting writes tombstones for the
    /// group's metadata and every offset.
    pub fn delete_groups(&mut self, group_ids: &[String]) -> Vec<Result<()>> {
        group_ids
            .iter()
            .map(|id| {
                let g = self.groups.get(id).ok_or(Error::GroupIdNotFound)?;
                if g.state != GroupState::Empty {
                    return Err(Error::NonEmptyGroup);
                }
                let mut records: Vec<PersistRecord> = g
                    .offsets
                    .keys()
                    .map(|tp| PersistRecord {
                        key: RecordKey::OffsetCommit {
                            group: id.clone(),
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                        }
                        .encode(),
                        value: None,
                    })
                    .collect();
                records.push(PersistRecord {
                    key: RecordKey::GroupMetadata { group: id.clone() }.encode(),
                    value: None,
                });
                self.groups.remove(id);
                self.outputs.push(Output::Persist {
                    group_id: id.clone(),
                    records,
                });
                Ok(())
            })
            .collect()
    }

    /// Rebuilds groups from replayed `__consumer_offsets` records `(key, value)` in log order:
    /// the last value of a key wins and a `None` value (tombstone) deletes it. Groups that
    /// appear in the records replace any in memory. Keys this coordinator does not own are
    /// skipped; a record that does not decode is an error and loads nothing.
    pub fn load<I, K, V>(&mut self, now: Millis, records: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, Option<V>)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut metadata: BTreeMap<String, Option<GroupMetadataValue>> = BTreeMap::new();
        let mut offsets: BTreeMap<(String, TopicPartition), Option<OffsetCommitValue>> =
            BTreeMap::new();
        for (key, value) in records {
            match RecordKey::decode(key.as_ref())? {
                None => {}
                Some(RecordKey::GroupMetadata { group }) => {
                    let value = value
                        .map(|v| GroupMetadataValue::decode(v.as_ref()))
                        .transpose()?;
                    metadata.insert(group, value);
                }
                Some(RecordKey::OffsetCommit {
                    group,
                    topic,
                    partition,
                }) => {
                    let value = value
                        .map(|v| OffsetCommitValue::decode(v.as_ref()))
                        .transpose()?;
                    offsets.insert((group, TopicPartition { topic, partition }), value);
                }
            }
        }
        let mut loaded: BTreeMap<String, Group> = BTreeMap::new();
        for (group_id, value) in metadata {
            if let Some(value) = value {
                let g = Group::from_metadata(group_id.clone(), value, now);
                loaded.insert(group_id, g);
            }
        }
        for ((group_id, tp), value) in offsets {
            let Some(value) = value else { continue };
            loaded
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(group_id, now))
                .offsets
                .insert(tp, value);
        }
        self.arm_offset_expiry(now);
        for (group_id, g) in loaded {
            if let Some(old) = self.groups.insert(group_id, g) {
                self.release_parked(old, Error::NotCoordinator);
            }
        }
        Ok(())
    }

    /// Drops the groups of one `__consumer_offsets` partition when this broker stops leading
    /// it. Parked JoinGroup and SyncGroup requests are answered with NOT_COORDINATOR so that
    /// clients find the new coordinator.
    pub fn unload(&mut self, partition: i32, num_partitions: i32) {
        let ids: Vec<String> = self
            .groups
            .keys()
            .filter(|id| partition_for(id, num_partitions) == partition)
            .cloned()
            .collect();
        for id in ids {
            if let Some(g) = self.groups.remove(&id) {
                self.release_parked(g, Error::NotCoordinator);
            }
        }
    }

    fn release_parked(&mut self, g: Group, error: Error) {
        for m in g.members.into_values() {
            if let Some(request) = m.join_request {
                self.outputs.push(Output::Join {
                    request,
                    response: Err(error.clone()),
                });
            }
            if let Some(request) = m.sync_request {
                self.outputs.push(Output::Sync {
                    request,
                    response: Err(error.clone()),
                });
            }
        }
    }
}
