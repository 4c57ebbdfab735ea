//! The classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the timers that
//! drive rebalances. Offsets and the admin APIs are in `offsets` and `admin`.

use std::collections::BTreeMap;
use std::mem;

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::group::{Group, InitialDelay, Member};
use crate::record::RecordKey;
use crate::types::{
    GroupState, HeartbeatRequest, JoinMember, JoinRequest, JoinResponse, LeavingMember, Millis,
    Output, PersistRecord, RequestId, SyncRequest, SyncResponse,
};

/// The group coordinator for the groups whose `__consumer_offsets` partitions this broker leads.
///
/// Every call takes `now`; calls that change state may queue [`Output`]s, which the broker takes
/// with [`Coordinator::take_outputs`] after each call. The broker arms one timer for
/// [`Coordinator::next_deadline`] and calls [`Coordinator::tick`] when it fires.
#[derive(Debug)]
pub struct Coordinator {
    pub(crate) config: Config,
    pub(crate) groups: BTreeMap<String, Group>,
    pub(crate) outputs: Vec<Output>,
    /// When `tick` next checks offset retention; armed the first time the clock is seen.
    pub(crate) next_offset_expiry: Option<Millis>,
    member_id_counter: u64,
}

impl Coordinator {
    /// A coordinator with no groups.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            groups: BTreeMap::new(),
            outputs: Vec::new(),
            next_offset_expiry: None,
            member_id_counter: 0,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes the outputs queued by previous calls, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        mem::take(&mut self.outputs)
    }

    /// The earliest time [`Coordinator::tick`] has work: a session, join, sync or initial
    /// rebalance delay expiring, or the next offset retention check.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.groups
            .values()
            .filter_map(Group::next_deadline)
            .chain(self.next_offset_expiry)
            .min()
    }

    /// Handles every timer due at `now`: lapsed member ids, initial rebalance delays,
    /// rebalance and sync timeouts, session timeouts and offset retention.
    pub fn tick(&mut self, now: Millis) {
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for group_id in due {
            self.tick_group(&group_id, now);
        }
        if self.next_offset_expiry.is_some_and(|t| t <= now) {
            self.expire_offsets(now);
            self.next_offset_expiry = None;
        }
        self.arm_offset_expiry(now);
    }

    fn tick_group(&mut self, group_id: &str, now: Millis) {
        let Some(mut g) = self.groups.remove(group_id) else {
            return;
        };
        let mut tx = Tx {
            config: &self.config,
            outputs: &mut self.outputs,
            now,
        };
        // A member id handed out with MEMBER_ID_REQUIRED lapses if nobody rejoins with it.
        let lapsed: Vec<String> = g
            .pending_members
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if !lapsed.is_empty() {
            for id in lapsed {
                g.pending_members.remove(&id);
            }
            tx.maybe_complete_join(&mut g);
        }
        if let Some(delay) = g.initial_delay.filter(|d| d.deadline <= now) {
            if delay.new_member_added && delay.remaining_ms > 0 {
                let step =
                    i64::from(self.config.initial_rebalance_delay_ms).min(delay.remaining_ms);
                g.initial_delay = Some(InitialDelay {
                    deadline: now.saturating_add(step),
                    remaining_ms: delay.remaining_ms - step,
                    new_member_added: false,
                });
            } else {
                tx.complete_join(&mut g);
            }
        } else if g.state == GroupState::PreparingRebalance
            && g.initial_delay.is_none()
            && g.rebalance_deadline.is_some_and(|d| d <= now)
        {
            tx.complete_join(&mut g);
        }
        if g.sync_deadline.is_some_and(|d| d <= now) {
            g.sync_deadline = None;
            if matches!(
                g.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) {
                let unsynced: Vec<String> = g
                    .members
                    .values()
                    .filter(|m| !m.synced)
                    .map(|m| m.member_id.clone())
                    .collect();
                for id in unsynced {
                    tx.remove_member(&mut g, &id, Error::RebalanceInProgress);
                }
            }
        }
        let expired: Vec<String> = g
            .members
            .values()
            .filter(|m| m.heartbeat_deadline <= now)
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            // Removing an earlier member may have completed a rebalance, which restarts
            // everyone's session.
            let Some(m) = g
                .members
                .get_mut(&id)
                .filter(|m| m.heartbeat_deadline <= now)
            else {
                continue;
            };
            if m.is_parked() {
                m.heartbeat_deadline = now.saturating_add(i64::from(m.session_timeout_ms));
            } else {
                tx.remove_member(&mut g, &id, Error::UnknownMemberId);
            }
        }
        self.groups.insert(group_id.to_owned(), g);
    }

    /// Handles JoinGroup. The response comes as an [`Output::Join`] for `request`, at once or
    /// when the rebalance completes.
    pub fn join_group(&mut self, now: Millis, request: RequestId, req: JoinRequest) {
        if let Err(error) = self.try_join(now, request, req) {
            self.outputs.push(Output::Join {
                request,
                response: Err(error),
            });
        }
    }

    /// Offset retention is checked every `offsets.retention.check.interval.ms` from the first
    /// time the coordinator sees the clock.
    pub(crate) fn arm_offset_expiry(&mut self, now: Millis) {
        if self.next_offset_expiry.is_none() {
            self.next_offset_expiry =
                Some(now.saturating_add(self.config.offsets_retention_check_interval_ms));
        }
    }

    fn try_join(&mut self, now: Millis, request: RequestId, req: JoinRequest) -> Result<()> {
        self.arm_offset_expiry(now);
        if req.group_id.is_empty() {
            return Err(Error::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err(Error::InvalidSessionTimeout);
        }
        let exists = self.groups.contains_key(&req.group_id);
        if !exists && !req.member_id.is_empty() {
            return Err(Error::UnknownMemberId);
        }
        let new_member_id = req
            .member_id
            .is_empty()
            .then(|| self.generate_member_id(&req.client_id));
        let mut g = self
            .groups
            .remove(&req.group_id)
            .unwrap_or_else(|| Group::new(req.group_id.clone(), now));
        let mut tx = Tx {
            config: &self.config,
            outputs: &mut self.outputs,
            now,
        };
        // A static member rejoining under a new member id replaces its old self.
        let joining_as = match (&new_member_id, &req.group_instance_id) {
            (Some(_), Some(instance)) => {
                g.static_members.get(instance).cloned().unwrap_or_default()
            }
            _ => req.member_id.clone(),
        };
        let result = if !g.supports(&joining_as, &req.protocol_type, &req.protocols) {
            Err(Error::InconsistentGroupProtocol)
        } else if let Some(new_id) = new_member_id {
            tx.join_unknown_member(&mut g, request, req, new_id)
        } else {
            tx.join_known_member(&mut g, request, req)
        };
        // A group created only for this failed join must not linger.
        if exists || !g.members.is_empty() || !g.pending_members.is_empty() {
            self.groups.insert(g.group_id.clone(), g);
        }
        result
    }

    fn generate_member_id(&mut self, client_id: &str) -> String {
        self.member_id_counter += 1;
        let a = splitmix64(self.config.member_id_seed ^ self.member_id_counter);
        let b = splitmix64(a ^ self.member_id_counter.rotate_left(32));
        format!(
            "{client_id}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// Handles SyncGroup. The response comes as an [`Output::Sync`] for `request`, at once or
    /// when the leader's assignment arrives.
    pub fn sync_group(&mut self, now: Millis, request: RequestId, req: SyncRequest) {
        if let Err(error) = self.try_sync(now, request, req) {
            self.outputs.push(Output::Sync {
                request,
                response: Err(error),
            });
        }
    }

    fn try_sync(&mut self, now: Millis, request: RequestId, req: SyncRequest) -> Result<()> {
        let g = self
            .groups
            .get_mut(&req.group_id)
            .ok_or(Error::UnknownMemberId)?;
        if g.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return Err(Error::FencedInstanceId);
        }
        if !g.members.contains_key(&req.member_id) {
            return Err(Error::UnknownMemberId);
        }
        if req.generation_id != g.generation {
            return Err(Error::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| g.protocol_type.as_ref() != Some(t))
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| g.protocol_name.as_ref() != Some(n))
        {
            return Err(Error::InconsistentGroupProtocol);
        }
        let mut tx = Tx {
            config: &self.config,
            outputs: &mut self.outputs,
            now,
        };
        match g.state {
            GroupState::Empty | GroupState::Dead => Err(Error::UnknownMemberId),
            GroupState::PreparingRebalance => Err(Error::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let is_leader = g.is_leader(&req.member_id);
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    if let Some(old) = m.sync_request.replace(request) {
                        tx.respond_sync(old, Err(Error::RebalanceInProgress));
                    }
                    m.synced = true;
                    m.heartbeat_deadline = now.saturating_add(i64::from(m.session_timeout_ms));
                }
                if is_leader {
                    tx.apply_assignment(g, req.assignments);
                }
                Ok(())
            }
            GroupState::Stable => {
                let response = SyncResponse {
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol_name.clone(),
                    assignment: Bytes::new(),
                };
                let m = g
                    .members
                    .get_mut(&req.member_id)
                    .ok_or(Error::UnknownMemberId)?;
                m.synced = true;
                m.heartbeat_deadline = now.saturating_add(i64::from(m.session_timeout_ms));
                let response = SyncResponse {
                    assignment: m.assignment.clone(),
                    ..response
                };
                tx.respond_sync(request, Ok(response));
                Ok(())
            }
        }
    }

    /// Handles Heartbeat: keeps the member's session alive and tells it whether to rejoin
    /// ([`Error::RebalanceInProgress`]).
    pub fn heartbeat(&mut self, now: Millis, req: &HeartbeatRequest) -> Result<()> {
        let g = self
            .groups
            .get_mut(&req.group_id)
            .ok_or(Error::UnknownMemberId)?;
        if g.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return Err(Error::FencedInstanceId);
        }
        let state = g.state;
        let generation = g.generation;
        let m = g
            .members
            .get_mut(&req.member_id)
            .ok_or(Error::UnknownMemberId)?;
        if req.generation_id != generation {
            return Err(Error::IllegalGeneration);
        }
        m.heartbeat_deadline = now.saturating_add(i64::from(m.session_timeout_ms));
        match state {
            GroupState::Empty | GroupState::Dead => Err(Error::UnknownMemberId),
            GroupState::PreparingRebalance => Err(Error::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// Handles LeaveGroup: one result per leaving member, in order.
    pub fn leave_group(
        &mut self,
        now: Millis,
        group_id: &str,
        members: &[LeavingMember],
    ) -> Vec<Result<()>> {
        let Some(g) = self.groups.get_mut(group_id) else {
            return members
                .iter()
                .map(|_| Err(Error::UnknownMemberId))
                .collect();
        };
        let mut tx = Tx {
            config: &self.config,
            outputs: &mut self.outputs,
            now,
        };
        members
            .iter()
            .map(|leaving| {
                let member_id = match &leaving.group_instance_id {
                    Some(instance) => {
                        let current = g
                            .static_members
                            .get(instance)
                            .cloned()
                            .ok_or(Error::UnknownMemberId)?;
                        if !leaving.member_id.is_empty() && leaving.member_id != current {
                            return Err(Error::FencedInstanceId);
                        }
                        current
                    }
                    None => leaving.member_id.clone(),
                };
                if g.pending_members.remove(&member_id).is_some() {
                    tx.maybe_complete_join(g);
                    Ok(())
                } else if g.members.contains_key(&member_id) {
                    tx.remove_member(g, &member_id, Error::UnknownMemberId);
                    Ok(())
                } else {
                    Err(Error::UnknownMemberId)
                }
            })
            .collect()
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One call's context: the settings, the output queue and the time. The transitions live here
/// so that they can borrow a group mutably while queueing outputs.
pub(crate) struct Tx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) outputs: &'a mut Vec<Output>,
    pub(crate) now: Millis,
}

impl Tx<'_> {
    fn respond_join(&mut self, request: RequestId, response: Result<JoinResponse>) {
        self.outputs.push(Output::Join { request, response });
    }

    fn respond_sync(&mut self, request: RequestId, response: Result<SyncResponse>) {
        self.outputs.push(Output::Sync { request, response });
    }

    pub(crate) fn persist(&mut self, group_id: &str, records: Vec<PersistRecord>) {
        if !records.is_empty() {
            self.outputs.push(Output::Persist {
                group_id: group_id.to_owned(),
                records,
            });
        }
    }

    fn persist_group(&mut self, g: &Group) {
        let record = PersistRecord {
            key: RecordKey::GroupMetadata {
                group: g.group_id.clone(),
            }
            .encode(),
            value: Some(g.to_metadata_value().encode()),
        };
        self.persist(&g.group_id, vec![record]);
    }

    fn session_deadline(&self, session_timeout_ms: i32) -> Millis {
        self.now.saturating_add(i64::from(session_timeout_ms))
    }

    fn is_full(&self, g: &Group) -> bool {
        g.members.len() + g.pending_members.len() >= self.config.max_size
    }

    fn join_unknown_member(
        &mut self,
        g: &mut Group,
        request: RequestId,
        req: JoinRequest,
        new_member_id: String,
    ) -> Result<()> {
        if let Some(old_member_id) = req
            .group_instance_id
            .as_ref()
            .and_then(|i| g.static_members.get(i))
            .cloned()
        {
            return self.replace_static_member(g, request, req, old_member_id, new_member_id);
        }
        if self.is_full(g) {
            return Err(Error::GroupMaxSizeReached);
        }
        if req.group_instance_id.is_none() && req.require_known_member_id {
            // The member id is only admitted once the client proves it received it, so a
            // client that times out and retries does not leave a ghost member behind.
            let deadline = self.session_deadline(req.session_timeout_ms);
            g.pending_members.insert(new_member_id.clone(), deadline);
            return Err(Error::MemberIdRequired {
                member_id: new_member_id,
            });
        }
        self.add_member_and_rebalance(g, request, req, new_member_id);
        Ok(())
    }

    fn join_known_member(
        &mut self,
        g: &mut Group,
        request: RequestId,
        req: JoinRequest,
    ) -> Result<()> {
        if g.pending_members.contains_key(&req.member_id) {
            let member_id = req.member_id.clone();
            self.add_member_and_rebalance(g, request, req, member_id);
            return Ok(());
        }
        if g.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return Err(Error::FencedInstanceId);
        }
        if !g.members.contains_key(&req.member_id) {
            return Err(Error::UnknownMemberId);
        }
        let member_id = req.member_id.clone();
        let unchanged = g
            .members
            .get(&member_id)
            .is_some_and(|m| m.protocols == req.protocols);
        match g.state {
            GroupState::Empty | GroupState::Dead => Err(Error::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.update_member(g, &member_id, request, req);
                self.maybe_complete_join(g);
                Ok(())
            }
            GroupState::CompletingRebalance if unchanged => {
                // The member lost its JoinGroup response; give it the same one again.
                let response = self.join_response(g, &member_id);
                self.respond_join(request, Ok(response));
                Ok(())
            }
            GroupState::Stable if unchanged && !g.is_leader(&member_id) => {
                // A follower rejoining with nothing new needs no rebalance.
                let response = self.join_response(g, &member_id);
                self.respond_join(request, Ok(response));
                Ok(())
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(g, &member_id, request, req);
                self.prepare_rebalance(g);
                self.maybe_complete_join(g);
                Ok(())
            }
        }
    }

    fn update_member(
        &mut self,
        g: &mut Group,
        member_id: &str,
        request: RequestId,
        req: JoinRequest,
    ) {
        let Some(m) = g.members.get_mut(member_id) else {
            return;
        };
        m.protocols = req.protocols;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        m.heartbeat_deadline = self.now.saturating_add(i64::from(req.session_timeout_ms));
        if let Some(old) = m.join_request.replace(request) {
            // Only the latest JoinGroup of a member is answered; the client has given up on
            // the older one.
            self.respond_join(old, Err(Error::RebalanceInProgress));
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        g: &mut Group,
        request: RequestId,
        req: JoinRequest,
        member_id: String,
    ) {
        g.pending_members.remove(&member_id);
        if g.members.is_empty() {
            g.protocol_type = Some(req.protocol_type.clone());
        }
        if g.leader.is_none() {
            g.leader = Some(member_id.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            g.static_members.insert(instance.clone(), member_id.clone());
        }
        g.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                session_timeout_ms: req.session_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_request: Some(request),
                sync_request: None,
                synced: false,
                heartbeat_deadline: self.session_deadline(req.session_timeout_ms),
            },
        );
        if let Some(delay) = &mut g.initial_delay {
            delay.new_member_added = true;
        }
        if g.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(g);
        }
        self.maybe_complete_join(g);
    }

    fn replace_static_member(
        &mut self,
        g: &mut Group,
        request: RequestId,
        req: JoinRequest,
        old_member_id: String,
        new_member_id: String,
    ) -> Result<()> {
        let Some(mut m) = g.members.remove(&old_member_id) else {
            return Err(Error::UnknownMemberId);
        };
        // The old incarnation's parked requests belong to a process that has been replaced.
        if let Some(old) = m.join_request.take() {
            self.respond_join(old, Err(Error::FencedInstanceId));
        }
        if let Some(old) = m.sync_request.take() {
            self.respond_sync(old, Err(Error::FencedInstanceId));
        }
        let previous_leader = g.leader.clone().unwrap_or_default();
        if g.is_leader(&old_member_id) {
            g.leader = Some(new_member_id.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            g.static_members
                .insert(instance.clone(), new_member_id.clone());
        }
        m.member_id = new_member_id.clone();
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.protocols = req.protocols;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        m.heartbeat_deadline = self.session_deadline(req.session_timeout_ms);
        g.members.insert(new_member_id.clone(), m);
        match g.state {
            GroupState::Stable if g.select_protocol() == g.protocol_name => {
                // Restarted within its session: same assignment, no rebalance.
                self.persist_group(g);
                let response = if g.is_leader(&new_member_id) && req.supports_skip_assignment {
                    // KIP-814: the leader learns the members (to watch their subscriptions)
                    // but is told not to assign.
                    JoinResponse {
                        skip_assignment: true,
                        ..self.join_response(g, &new_member_id)
                    }
                } else {
                    // Older clients get the old leader id, so that a restarted leader does not
                    // believe it must assign: its SyncGroup in a Stable group would not be
                    // broadcast.
                    JoinResponse {
                        generation_id: g.generation,
                        protocol_type: g.protocol_type.clone(),
                        protocol_name: g.protocol_name.clone(),
                        leader: previous_leader,
                        skip_assignment: false,
                        member_id: new_member_id,
                        members: Vec::new(),
                    }
                };
                self.respond_join(request, Ok(response));
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                if let Some(m) = g.members.get_mut(&new_member_id) {
                    m.join_request = Some(request);
                }
                self.prepare_rebalance(g);
                self.maybe_complete_join(g);
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = g.members.get_mut(&new_member_id) {
                    m.join_request = Some(request);
                }
                self.maybe_complete_join(g);
            }
            GroupState::Empty | GroupState::Dead => return Err(Error::UnknownMemberId),
        }
        Ok(())
    }

    fn join_response(&self, g: &Group, member_id: &str) -> JoinResponse {
        let members = if g.is_leader(member_id) {
            g.members
                .values()
                .map(|m| JoinMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(g.protocol_name.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            generation_id: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol_name.clone(),
            leader: g.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members,
        }
    }

    pub(crate) fn prepare_rebalance(&mut self, g: &mut Group) {
        if g.state == GroupState::CompletingRebalance {
            // The assignment being computed is for a membership that no longer holds.
            for m in g.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(req) = m.sync_request.take() {
                    self.outputs.push(Output::Sync {
                        request: req,
                        response: Err(Error::RebalanceInProgress),
                    });
                }
            }
        }
        let rebalance_timeout = g.max_rebalance_timeout();
        g.rebalance_deadline = Some(self.now.saturating_add(rebalance_timeout));
        g.initial_delay = None;
        g.sync_deadline = None;
        let delay = i64::from(self.config.initial_rebalance_delay_ms).min(rebalance_timeout);
        if g.state == GroupState::Empty && delay > 0 {
            g.initial_delay = Some(InitialDelay {
                deadline: self.now.saturating_add(delay),
                remaining_ms: rebalance_timeout - delay,
                new_member_added: false,
            });
        }
        g.state = GroupState::PreparingRebalance;
        g.state_timestamp = self.now;
    }

    pub(crate) fn maybe_complete_join(&mut self, g: &mut Group) {
        if g.state == GroupState::PreparingRebalance
            && g.initial_delay.is_none()
            && g.all_members_joined()
        {
            self.complete_join(g);
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, the generation advances,
    /// the protocol is chosen and every parked JoinGroup is answered.
    pub(crate) fn complete_join(&mut self, g: &mut Group) {
        if g.state != GroupState::PreparingRebalance {
            return;
        }
        g.initial_delay = None;
        g.rebalance_deadline = None;
        let not_rejoined: Vec<String> = g
            .members
            .values()
            .filter(|m| m.join_request.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in not_rejoined {
            self.drop_member(g, &id, Error::UnknownMemberId);
        }
        g.generation = g.generation.wrapping_add(1);
        g.state_timestamp = self.now;
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            g.protocol_name = None;
            g.leader = None;
            self.persist_group(g);
            return;
        }
        g.state = GroupState::CompletingRebalance;
        g.protocol_name = g.select_protocol();
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g.sync_deadline = Some(self.now.saturating_add(g.max_rebalance_timeout()));
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(g, &id);
            let now = self.now;
            if let Some(m) = g.members.get_mut(&id) {
                m.synced = false;
                m.heartbeat_deadline = now.saturating_add(i64::from(m.session_timeout_ms));
                if let Some(req) = m.join_request.take() {
                    self.outputs.push(Output::Join {
                        request: req,
                        response: Ok(response),
                    });
                }
            }
        }
    }

    fn apply_assignment(&mut self, g: &mut Group, assignments: Vec<(String, Bytes)>) {
        let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for m in g.members.values_mut() {
            m.assignment = given.remove(&m.member_id).unwrap_or_default();
        }
        g.state = GroupState::Stable;
        g.state_timestamp = self.now;
        // Persist before answering: a member must never act on an assignment the group could
        // forget on failover.
        self.persist_group(g);
        for m in g.members.values_mut() {
            if let Some(req) = m.sync_request.take() {
                self.outputs.push(Output::Sync {
                    request: req,
                    response: Ok(SyncResponse {
                        protocol_type: g.protocol_type.clone(),
                        protocol_name: g.protocol_name.clone(),
                        assignment: m.assignment.clone(),
                    }),
                });
            }
        }
    }

    /// Removes a member without touching the group's state.
    fn drop_member(&mut self, g: &mut Group, member_id: &str, error: Error) {
        let Some(m) = g.members.remove(member_id) else {
            return;
        };
        if let Some(req) = m.join_request {
            self.respond_join(req, Err(error.clone()));
        }
        if let Some(req) = m.sync_request {
            self.respond_sync(req, Err(error));
        }
        if let Some(instance) = &m.group_instance_id {
            if g.static_members
                .get(instance)
                .is_some_and(|id| id == member_id)
            {
                g.static_members.remove(instance);
            }
        }
        if g.is_leader(member_id) {
            g.leader = g.members.keys().next().cloned();
        }
    }

    /// Removes a member (leave, session or sync timeout) and rebalances the rest.
    pub(crate) fn remove_member(&mut self, g: &mut Group, member_id: &str, error: Error) {
        self.drop_member(g, member_id, error);
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(g);
                self.maybe_complete_join(g);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(g),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}
