//! One classic group's state: members, generation, selected protocol, committed offsets.
//! Only bookkeeping lives here; the transitions are in `coordinator`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::record::{GroupMetadataValue, MemberMetadata, OffsetCommitValue};
use crate::types::{GroupState, Millis, Protocol, RequestId, TopicPartition};

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) assignment: Bytes,
    /// A parked JoinGroup, answered when the rebalance completes.
    pub(crate) join_request: Option<RequestId>,
    /// A parked SyncGroup, answered when the leader's assignment arrives.
    pub(crate) sync_request: Option<RequestId>,
    /// Whether the member sent SyncGroup for the current generation.
    pub(crate) synced: bool,
    pub(crate) heartbeat_deadline: Millis,
}

impl Member {
    pub(crate) fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|name| self.protocols.iter().find(|p| p.name == name))
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// A parked request keeps a member alive: it is waiting on the coordinator, not silent.
    pub(crate) fn is_parked(&self) -> bool {
        self.join_request.is_some() || self.sync_request.is_some()
    }
}

/// The first rebalance of an empty group waits `group.initial.rebalance.delay.ms` for more
/// members, extending by the same delay while members keep arriving, within the rebalance
/// timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitialDelay {
    pub(crate) deadline: Millis,
    pub(crate) remaining_ms: i64,
    pub(crate) new_member_added: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) generation: i32,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// Group instance id → member id of the current holder.
    pub(crate) static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pub(crate) pending_members: BTreeMap<String, Millis>,
    pub(crate) state_timestamp: Millis,
    pub(crate) initial_delay: Option<InitialDelay>,
    pub(crate) rebalance_deadline: Option<Millis>,
    /// Members that have not synced by then are removed (Kafka's pending-sync timeout).
    pub(crate) sync_deadline: Option<Millis>,
    pub(crate) offsets: BTreeMap<TopicPartition, OffsetCommitValue>,
}

impl Group {
    pub(crate) fn new(group_id: String, now: Millis) -> Self {
        Self {
            group_id,
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            state_timestamp: now,
            initial_delay: None,
            rebalance_deadline: None,
            sync_deadline: None,
            offsets: BTreeMap::new(),
        }
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// A static member presenting a member id other than the one its group instance id now
    /// maps to has been replaced by a newer instance.
    pub(crate) fn is_fenced(&self, group_instance_id: Option<&str>, member_id: &str) -> bool {
        group_instance_id
            .and_then(|id| self.static_members.get(id))
            .is_some_and(|current| current != member_id)
    }

    /// Protocols every member except `excluding` supports.
    fn common_protocols(&self, excluding: Option<&str>) -> Option<BTreeSet<&str>> {
        let mut common: Option<BTreeSet<&str>> = None;
        for m in self.members.values() {
            if Some(m.member_id.as_str()) == excluding {
                continue;
            }
            let names: BTreeSet<&str> = m.protocols.iter().map(|p| p.name.as_str()).collect();
            common = Some(match common {
                None => names,
                Some(c) => c.intersection(&names).copied().collect(),
            });
        }
        common
    }

    /// Whether a member with these protocols can be in the group alongside the others.
    pub(crate) fn supports(
        &self,
        member_id: &str,
        protocol_type: &str,
        protocols: &[Protocol],
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        match self.common_protocols(Some(member_id)) {
            None => true,
            Some(common) => {
                self.protocol_type.as_deref() == Some(protocol_type)
                    && protocols.iter().any(|p| common.contains(p.name.as_str()))
            }
        }
    }

    /// Kafka's vote: among protocols every member supports, each member votes for the first
    /// in its own preference order; most votes wins, ties going to the smaller name so the
    /// choice is deterministic.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols(None)?;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(p) = m
                .protocols
                .iter()
                .find(|p| common.contains(p.name.as_str()))
            {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    pub(crate) fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    pub(crate) fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_request.is_some())
    }

    /// Earliest time `tick` has work for this group.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut consider = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        self.pending_members
            .values()
            .copied()
            .for_each(&mut consider);
        if let Some(d) = self.initial_delay {
            consider(d.deadline);
        } else if let Some(d) = self.rebalance_deadline {
            consider(d);
        }
        if let Some(d) = self.sync_deadline {
            consider(d);
        }
        self.members
            .values()
            .for_each(|m| consider(m.heartbeat_deadline));
        next
    }

    pub(crate) fn to_metadata_value(&self) -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(self.protocol_name.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds a group from its persisted metadata. A group with members comes back Stable
    /// with fresh session deadlines: members that are still alive heartbeat and carry on,
    /// the others expire as they would have.
    pub(crate) fn from_metadata(group_id: String, value: GroupMetadataValue, now: Millis) -> Self {
        let mut group = Self::new(group_id, now);
        group.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        group.generation = value.generation;
        group.protocol_name = value.protocol;
        group.leader = value.leader;
        if value.current_state_timestamp >= 0 {
            group.state_timestamp = value.current_state_timestamp;
        }
        for m in value.members {
            let protocols = group
                .protocol_name
                .iter()
                .map(|name| Protocol {
                    name: name.clone(),
                    metadata: m.subscription.clone(),
                })
                .collect();
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    join_request: None,
                    sync_request: None,
                    synced: true,
                    heartbeat_deadline: now.saturating_add(i64::from(m.session_timeout_ms)),
                },
            );
        }
        if group.members.is_empty() {
            group.leader = None;
        } else {
            group.state = GroupState::Stable;
            if group
                .leader
                .as_ref()
                .is_none_or(|l| !group.members.contains_key(l))
            {
                group.leader = group.members.keys().next().cloned();
            }
        }
        group
    }
}
