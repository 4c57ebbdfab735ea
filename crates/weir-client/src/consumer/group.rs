//! Membership of a consumer group through the classic protocol: JoinGroup, SyncGroup,
//! Heartbeat and LeaveGroup, plus OffsetCommit and OffsetFetch, all sent to the group's
//! coordinator.
//!
//! The coordinator requests go through a [`Client`] of their own: a broker serves one
//! connection's requests in order, and a JoinGroup parked for a whole rebalance must not hold
//! up fetches (nor a long-polling Fetch the heartbeats). That client's request timeout covers
//! the rebalance timeout, since the coordinator may park a JoinGroup that long.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use weir_protocol::ErrorCode;
use weir_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use weir_protocol::messages::leave_group_request::MemberIdentity;
use weir_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use weir_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use weir_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use weir_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};

use super::protocol::{OffsetAndMetadata, PROTOCOL_TYPE, TopicPartition};
use crate::{Client, Error, Result};

/// Why the consumer must rejoin, set by the heartbeat task or a failed group request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rejoin {
    /// The coordinator started a rebalance, or this member gave partitions up.
    Rebalance,
    /// The coordinator moved or went away: find it again, then rejoin.
    CoordinatorGone,
    /// The member was removed (session expired, fenced generation): its partitions are lost.
    Lost,
    /// The coordinator no longer knows the member id: partitions lost, join as a new member.
    UnknownMember,
}

/// A flag the heartbeat task raises and the consumer's `recv` notices.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    rejoin: Mutex<Option<Rejoin>>,
    notify: Notify,
}

impl Signal {
    /// Raises `reason`, keeping the most severe one raised so far.
    pub(crate) fn raise(&self, reason: Rejoin) {
        let mut rejoin = self.rejoin.lock();
        *rejoin = Some(rejoin.map_or(reason, |r| r.max(reason)));
        self.notify.notify_one();
    }

    pub(crate) fn take(&self) -> Option<Rejoin> {
        self.rejoin.lock().take()
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.rejoin.lock().is_some()
    }

    pub(crate) async fn raised(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

/// What a JoinGroup round gave this member.
pub(crate) struct Joined {
    pub(crate) generation: i32,
    pub(crate) protocol_name: Option<String>,
    /// Set when this member leads and must compute the assignment.
    pub(crate) members:
        Option<Vec<weir_protocol::messages::join_group_response::JoinGroupResponseMember>>,
}

/// The consumer's view of its group.
pub(crate) struct Group {
    pub(crate) client: Client,
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    coordinator: Option<i32>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    heartbeat_interval: Duration,
    heartbeat: Option<JoinHandle<()>>,
    pub(crate) signal: Arc<Signal>,
    /// OffsetFetch's `require_stable` (KIP-447), for a `read_committed` consumer: a partition
    /// with transactional offsets not yet committed or aborted answers
    /// UNSTABLE_OFFSET_COMMIT, retried, rather than the offset before them, which a
    /// transaction committing meanwhile would make stale (and its records read twice).
    pub(crate) require_stable: bool,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

impl Group {
    pub(crate) fn new(
        client: Client,
        id: String,
        instance_id: Option<String>,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        heartbeat_interval: Duration,
    ) -> Self {
        Self {
            client,
            id,
            instance_id,
            member_id: String::new(),
            generation: -1,
            coordinator: None,
            session_timeout,
            rebalance_timeout,
            heartbeat_interval,
            heartbeat: None,
            signal: Arc::new(Signal::default()),
            require_stable: false,
        }
    }

    pub(crate) async fn coordinator(&mut self) -> Result<i32> {
        match self.coordinator {
            Some(id) => Ok(id),
            None => {
                let id = self.client.find_coordinator(&self.id).await?;
                self.coordinator = Some(id);
                Ok(id)
            }
        }
    }

    /// Forgets the coordinator when `code` (or a transport failure) says it moved.
    fn check_coordinator(&mut self, code: ErrorCode) {
        if matches!(
            code,
            ErrorCode::NOT_COORDINATOR | ErrorCode::COORDINATOR_NOT_AVAILABLE
        ) {
            self.coordinator = None;
        }
    }

    fn forget_coordinator_on(&mut self, err: &Error) {
        if matches!(
            err,
            Error::Io { .. } | Error::Disconnected(_) | Error::Timeout(_)
        ) {
            self.coordinator = None;
        }
    }

    /// One JoinGroup, repeated for MEMBER_ID_REQUIRED, a moved coordinator and other
    /// retriable errors.
    pub(crate) async fn join(&mut self, protocols: Vec<(String, bytes::Bytes)>) -> Result<Joined> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let coordinator = self.coordinator().await?;
            let request = JoinGroupRequest {
                group_id: self.id.clone(),
                session_timeout_ms: millis_i32(self.session_timeout),
                rebalance_timeout_ms: millis_i32(self.rebalance_timeout),
                member_id: self.member_id.clone(),
                group_instance_id: self.instance_id.clone(),
                protocol_type: PROTOCOL_TYPE.to_string(),
                protocols: protocols
                    .iter()
                    .map(|(name, metadata)| JoinGroupRequestProtocol {
                        name: name.clone(),
                        metadata: metadata.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let response: JoinGroupResponse = match self.client.send_to(coordinator, request).await
            {
                Ok((response, _)) => response,
                Err(err) if err.is_retriable() => {
                    self.forget_coordinator_on(&err);
                    tracing::debug!(group = %self.id, %err, "JoinGroup failed, retrying");
                    pause(&mut backoff).await;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let code = ErrorCode(response.error_code);
            match code {
                ErrorCode::NONE => {}
                ErrorCode::MEMBER_ID_REQUIRED => {
                    self.member_id = response.member_id;
                    continue;
                }
                ErrorCode::UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                ErrorCode::REBALANCE_IN_PROGRESS => {
                    pause(&mut backoff).await;
                    continue;
                }
                code if code.is_retriable() => {
                    self.check_coordinator(code);
                    pause(&mut backoff).await;
                    continue;
                }
                code => return Err(Error::kafka(code)),
            }
            self.member_id = response.member_id;
            self.generation = response.generation_id;
            let leads = response.leader == self.member_id;
            return Ok(Joined {
                generation: response.generation_id,
                protocol_name: response.protocol_name,
                members: leads.then_some(response.members),
            });
        }
    }

    /// SyncGroup for the generation just joined. `Ok(None)` means the round failed in a way
    /// that calls for another JoinGroup.
    pub(crate) async fn sync(
        &mut self,
        protocol_name: Option<String>,
        assignments: BTreeMap<String, bytes::Bytes>,
    ) -> Result<Option<bytes::Bytes>> {
        let coordinator = self.coordinator().await?;
        let request = SyncGroupRequest {
            group_id: self.id.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.instance_id.clone(),
            protocol_type: Some(PROTOCOL_TYPE.to_string()),
            protocol_name,
            assignments: assignments
                .into_iter()
                .map(|(member_id, assignment)| SyncGroupRequestAssignment {
                    member_id,
                    assignment,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let response = match self.client.send_to(coordinator, request).await {
            Ok((response, _)) => response,
            Err(err) if err.is_retriable() => {
                self.forget_coordinator_on(&err);
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        match ErrorCode(response.error_code) {
            ErrorCode::NONE => Ok(Some(response.assignment)),
            ErrorCode::UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                Ok(None)
            }
            ErrorCode::REBALANCE_IN_PROGRESS | ErrorCode::ILLEGAL_GENERATION => Ok(None),
            code if code.is_retriable() => {
                self.check_coordinator(code);
                Ok(None)
            }
            code => Err(Error::kafka(code)),
        }
    }

    /// Starts heartbeating for the current generation.
    pub(crate) fn start_heartbeat(&mut self) {
        self.stop_heartbeat();
        let Some(coordinator) = self.coordinator else {
            self.signal.raise(Rejoin::CoordinatorGone);
            return;
        };
        let client = self.client.clone();
        let request = HeartbeatRequest {
            group_id: self.id.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.instance_id.clone(),
            ..Default::default()
        };
        let interval = self.heartbeat_interval;
        let session_timeout = self.session_timeout;
        let signal = self.signal.clone();
        self.heartbeat = Some(tokio::spawn(async move {
            let mut last_ok = Instant::now();
            loop {
                tokio::time::sleep(interval).await;
                let reason = match client.send_to(coordinator, request.clone()).await {
                    Ok((response, _)) => match ErrorCode(response.error_code) {
                        ErrorCode::NONE => {
                            last_ok = Instant::now();
                            continue;
                        }
                        // Keep heartbeating until `recv` rejoins, so a member that takes
                        // a while to come back is not expired meanwhile.
                        ErrorCode::REBALANCE_IN_PROGRESS => {
                            last_ok = Instant::now();
                            signal.raise(Rejoin::Rebalance);
                            continue;
                        }
                        ErrorCode::UNKNOWN_MEMBER_ID => Rejoin::UnknownMember,
                        ErrorCode::ILLEGAL_GENERATION | ErrorCode::FENCED_INSTANCE_ID => {
                            Rejoin::Lost
                        }
                        ErrorCode::NOT_COORDINATOR | ErrorCode::COORDINATOR_NOT_AVAILABLE => {
                            Rejoin::CoordinatorGone
                        }
                        code => {
                            tracing::warn!(%code, "heartbeat failed");
                            continue;
                        }
                    },
                    // A transient failure: keep trying while the session may still be alive.
                    Err(err) if last_ok.elapsed() < session_timeout => {
                        tracing::debug!(%err, "heartbeat failed, retrying");
                        continue;
                    }
                    Err(_) => Rejoin::CoordinatorGone,
                };
                signal.raise(reason);
                return;
            }
        }));
    }

    pub(crate) fn stop_heartbeat(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
    }

    /// Leaves the group (dynamic members only: a static member keeps its place until its
    /// session expires, so a restart finds it again).
    pub(crate) async fn leave(&mut self) -> Result<()> {
        self.stop_heartbeat();
        if self.instance_id.is_some() || self.member_id.is_empty() {
            return Ok(());
        }
        let coordinator = self.coordinator().await?;
        let request = LeaveGroupRequest {
            group_id: self.id.clone(),
            member_id: self.member_id.clone(),
            members: vec![MemberIdentity {
                member_id: self.member_id.clone(),
                group_instance_id: None,
                reason: Some("the consumer is closing".to_string()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (response, _) = self.client.send_to(coordinator, request).await?;
        self.member_id.clear();
        self.generation = -1;
        let code = ErrorCode(response.error_code);
        let code = if code.is_error() {
            code
        } else {
            response
                .members
                .iter()
                .map(|m| ErrorCode(m.error_code))
                .find(|c| c.is_error())
                .unwrap_or(ErrorCode::NONE)
        };
        match code {
            ErrorCode::NONE | ErrorCode::UNKNOWN_MEMBER_ID => Ok(()),
            code => Err(Error::kafka(code)),
        }
    }

    /// What a commit needs, detached from the consumer so it can run on its own task.
    pub(crate) fn commit_target(&self, in_generation: bool) -> CommitTarget {
        CommitTarget {
            client: self.client.clone(),
            group_id: self.id.clone(),
            generation: if in_generation { self.generation } else { -1 },
            member_id: if in_generation {
                self.member_id.clone()
            } else {
                String::new()
            },
            instance_id: if in_generation {
                self.instance_id.clone()
            } else {
                None
            },
            coordinator: self.coordinator,
            signal: self.signal.clone(),
        }
    }

    /// The committed offsets of `partitions` (`None` where nothing is committed).
    pub(crate) async fn fetch_committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
        Ok(self
            .fetch_committed_with_metadata(partitions)
            .await?
            .into_iter()
            .map(|(tp, committed)| (tp, committed.map(|c| c.offset)))
            .collect())
    }

    /// The committed offsets of `partitions` with their metadata (`None` where nothing is
    /// committed).
    pub(crate) async fn fetch_committed_with_metadata(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let request = OffsetFetchRequest {
            group_id: self.id.clone(),
            topics: Some(
                by_topic
                    .into_iter()
                    .map(|(name, partition_indexes)| OffsetFetchRequestTopic {
                        name: name.to_string(),
                        partition_indexes,
                        ..Default::default()
                    })
                    .collect(),
            ),
            require_stable: self.require_stable,
            ..Default::default()
        };
        let mut backoff = Duration::from_millis(50);
        let deadline = Instant::now() + self.client.config().request_timeout;
        loop {
            let coordinator = self.coordinator().await?;
            let result = self.client.send_to(coordinator, request.clone()).await;
            let code = match result {
                Ok((response, _)) => {
                    let mut code = ErrorCode(response.error_code);
                    let mut offsets = BTreeMap::new();
                    for topic in response.topics {
                        for p in topic.partitions {
                            if ErrorCode(p.error_code).is_error() && !code.is_error() {
                                code = ErrorCode(p.error_code);
                            }
                            let committed = (p.committed_offset >= 0).then(|| OffsetAndMetadata {
                                offset: p.committed_offset,
                                metadata: p.metadata.unwrap_or_default(),
                            });
                            offsets.insert(
                                TopicPartition::new(topic.name.clone(), p.partition_index),
                                committed,
                            );
                        }
                    }
                    if !code.is_error() {
                        return Ok(partitions
                            .iter()
                            .map(|tp| (tp.clone(), offsets.get(tp).cloned().flatten()))
                            .collect());
                    }
                    self.check_coordinator(code);
                    Error::kafka(code)
                }
                Err(err) => {
                    self.forget_coordinator_on(&err);
                    err
                }
            };
            if !code.is_retriable() || Instant::now() >= deadline {
                return Err(code);
            }
            pause(&mut backoff).await;
        }
    }
}

/// The group, member and generation a commit is made for.
#[derive(Debug, Clone)]
pub(crate) struct CommitTarget {
    client: Client,
    group_id: String,
    generation: i32,
    member_id: String,
    instance_id: Option<String>,
    coordinator: Option<i32>,
    signal: Arc<Signal>,
}

impl CommitTarget {
    /// Commits `offsets`, retrying retriable errors (a moved coordinator) within the request
    /// timeout. A commit refused because the group rebalanced asks the consumer to rejoin.
    pub(crate) async fn commit(self, offsets: Vec<(TopicPartition, i64)>) -> Result<()> {
        self.commit_with_metadata(
            offsets
                .into_iter()
                .map(|(tp, offset)| (tp, OffsetAndMetadata::new(offset)))
                .collect(),
        )
        .await
    }

    /// [`CommitTarget::commit`] with each partition's metadata string.
    pub(crate) async fn commit_with_metadata(
        mut self,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, committed) in offsets {
            by_topic
                .entry(tp.topic)
                .or_default()
                .push(OffsetCommitRequestPartition {
                    partition_index: tp.partition,
                    committed_offset: committed.offset,
                    committed_leader_epoch: -1,
                    committed_metadata: Some(committed.metadata),
                    ..Default::default()
                });
        }
        let request = OffsetCommitRequest {
            group_id: self.group_id.clone(),
            generation_id_or_member_epoch: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.instance_id.clone(),
            retention_time_ms: -1,
            topics: by_topic
                .into_iter()
                .map(|(name, partitions)| OffsetCommitRequestTopic {
                    name,
                    partitions,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut backoff = Duration::from_millis(50);
        let deadline = Instant::now() + self.client.config().request_timeout;
        loop {
            let coordinator = match self.coordinator {
                Some(id) => id,
                None => {
                    let id = self.client.find_coordinator(&self.group_id).await?;
                    self.coordinator = Some(id);
                    id
                }
            };
            let err = match self.client.send_to(coordinator, request.clone()).await {
                Ok((response, _)) => {
                    let code = response
                        .topics
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .map(|p| ErrorCode(p.error_code))
                        .find(|c| c.is_error())
                        .unwrap_or(ErrorCode::NONE);
                    match code {
                        ErrorCode::NONE => return Ok(()),
                        // The bare code would not say which limit the commit broke.
                        ErrorCode::OFFSET_METADATA_TOO_LARGE => {
                            return Err(Error::Kafka {
                                code,
                                message: Some(
                                    "a partition's commit metadata is longer than the broker's \
                                     offset.metadata.max.bytes"
                                        .to_string(),
                                ),
                            });
                        }
                        ErrorCode::REBALANCE_IN_PROGRESS => self.signal.raise(Rejoin::Rebalance),
                        ErrorCode::ILLEGAL_GENERATION => self.signal.raise(Rejoin::Lost),
                        ErrorCode::UNKNOWN_MEMBER_ID => self.signal.raise(Rejoin::UnknownMember),
                        ErrorCode::NOT_COORDINATOR | ErrorCode::COORDINATOR_NOT_AVAILABLE => {
                            self.coordinator = None
                        }
                        _ => {}
                    }
                    Error::kafka(code)
                }
                Err(err) => {
                    if matches!(err, Error::Io { .. } | Error::Disconnected(_)) {
                        self.coordinator = None;
                    }
                    err
                }
            };
            if !err.is_retriable() || Instant::now() >= deadline {
                return Err(err);
            }
            pause(&mut backoff).await;
        }
    }
}

async fn pause(backoff: &mut Duration) {
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(Duration::from_secs(1));
}

pub(crate) fn millis_i32(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
