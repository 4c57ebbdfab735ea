//! Replication on this broker: which local replicas lead and which follow, the high watermark
//! of each, and the waits of acks=all produces on it.
//!
//! The rules live in `weir-replication` (no I/O): [`LeaderPartition`] keeps each follower's
//! progress, the ISR and the high watermark of a partition this broker leads. This module
//! drives it:
//! - [`Replicas::apply`] runs for every published metadata image: a partition whose leader is
//!   this broker becomes (or stays) a leader here; one led elsewhere is handed to the replica
//!   fetcher of that leader (`replica_fetcher`); one without a leader waits.
//! - The leader counts its own log end offset, and with `durable.acks` (the default) only the
//!   fsynced part of it: every append schedules a group-commit fsync on the blocking pool.
//!   Followers fsync what they fetched before they fetch again, so the offset they fetch at is
//!   durable on them. The high watermark is the minimum over the ISR of these.
//! - Followers' fetches (the Fetch handler) report their offsets, which may move the high
//!   watermark and propose an ISR expansion; a periodic check proposes shrinking the ISR by
//!   followers that fell behind `replica.lag.time.max.ms`. ISR changes go to the controller
//!   (AlterPartition) and take effect when the controller's record comes back in an image.
//! - Every high watermark is published on a watch channel: acks=all produces wait on it, and
//!   waiting consumer fetches are woken when it moves.

use crate::config::ReplicationSettings;
use crate::state::Broker;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use weir_log::{Log, TopicPartition};
use weir_metadata::active::{ControllerCallError, ControllerOutcome, ControllerRequest};
use weir_metadata::{ControllerError, MetadataImage, NO_LEADER, PartitionRegistration, TopicId};
use weir_protocol::ErrorCode;
use weir_replication::{
    AlterIsr, AlterIsrRejected, LeaderAndIsr, LeaderPartition, ReplicationConfig,
};

/// What a waiting produce or fetch sees of a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplicaView {
    /// Offsets below this are committed (readable by consumers, acknowledged to acks=all).
    pub(crate) high_watermark: i64,
    /// The leader epoch while this broker leads the partition, else `None`.
    pub(crate) leading_epoch: Option<i32>,
}

/// This broker's role for one partition.
#[derive(Debug)]
pub(crate) enum Role {
    /// This broker leads it.
    Leader(Box<LeaderPartition>),
    /// Another broker leads it and this one fetches from it.
    Follower {
        /// The leader.
        leader: i32,
        /// Its leader epoch.
        leader_epoch: i32,
    },
    /// No broker leads it (its replicas are all down).
    Offline,
}

/// One local replica.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) tp: TopicPartition,
    pub(crate) topic_id: TopicId,
    pub(crate) log: Arc<Log>,
    /// Held while the role changes and while a follower appends or truncates, so replicated
    /// data never lands in a log that has become a leader's meanwhile.
    pub(crate) role: Mutex<Role>,
    /// Held shared across a leader append that has checked `role` (the Produce path), and
    /// exclusively, before `role`, by every change of role or log: such an append cannot
    /// outlive the role it checked, yet it does not hold `role` across its write. So the
    /// flusher counting an fsync toward the high watermark, and an acknowledgement checking
    /// the ISR, do not wait for the `pwrite` of the next append; under load they used to, and
    /// spun and yielded on `role` for up to milliseconds at a time.
    pub(crate) writes: RwLock<()>,
    view: watch::Sender<ReplicaView>,
    /// The leader's group-commit flusher.
    flusher: Flusher,
}

/// Whether a partition's group-commit flusher runs (see [`Replicas::run_flusher`]): appends
/// call [`Flusher::request`], the flusher [`Flusher::round_done`] after each fsync, so one
/// loop serves a stream of appends and every append is followed by a round that starts
/// after it.
#[derive(Debug, Default)]
struct Flusher(AtomicU8);

impl Flusher {
    /// No flusher runs.
    const IDLE: u8 = 0;
    /// A flusher runs and no append came since its round started.
    const RUNNING: u8 = 1;
    /// A flusher runs and an append came during its round: it goes round again.
    const RERUN: u8 = 2;

    /// The log grew: true when no flusher runs and the caller must start one.
    fn request(&self) -> bool {
        let mut state = self.0.load(Ordering::Acquire);
        loop {
            let next = match state {
                Self::IDLE => Self::RUNNING,
                Self::RUNNING => Self::RERUN,
                _ => return false,
            };
            match self
                .0
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return state == Self::IDLE,
                Err(seen) => state = seen,
            }
        }
    }

    /// The flusher finished a round: true when an append came during it (the flusher goes
    /// round again), false when it stopped.
    fn round_done(&self) -> bool {
        match self.0.compare_exchange(
            Self::RUNNING,
            Self::IDLE,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => false,
            Err(_) => {
                // RERUN: the next round reads the log end offset after this store, so it covers
                // every append that asked for it, including one that asks meanwhile (it sees
                // RUNNING and makes it RERUN again).
                self.0.store(Self::RUNNING, Ordering::Release);
                true
            }
        }
    }
}

impl Replica {
    /// Whether this broker leads the partition in `leader_epoch`.
    pub(crate) fn leads_in(&self, leader_epoch: i32) -> bool {
        matches!(&*self.role.lock(), Role::Leader(leader) if leader.leader_epoch() == leader_epoch)
    }

    /// The current high watermark.
    pub(crate) fn high_watermark(&self) -> i64 {
        self.view.borrow().high_watermark
    }

    /// Watches the high watermark and leadership.
    pub(crate) fn subscribe(&self) -> watch::Receiver<ReplicaView> {
        self.view.subscribe()
    }

    /// Raises the high watermark (never lowers it) and keeps the leadership as it is.
    fn raise_high_watermark(&self, high_watermark: i64) -> bool {
        self.view.send_if_modified(|v| {
            if high_watermark > v.high_watermark {
                v.high_watermark = high_watermark;
                true
            } else {
                false
            }
        })
    }

    fn set_leading(&self, leading_epoch: Option<i32>, high_watermark: i64) {
        self.view.send_modify(|v| {
            v.leading_epoch = leading_epoch;
            v.high_watermark = v.high_watermark.max(high_watermark);
        });
    }

    /// The follower's high watermark after a fetch: the leader's, capped by what it has.
    pub(crate) fn follower_high_watermark(&self, leader_high_watermark: i64) -> bool {
        let capped = leader_high_watermark.min(self.log.log_end_offset());
        self.raise_high_watermark(capped)
    }
}

/// Every local replica and its role.
#[derive(Debug)]
pub(crate) struct Replicas {
    node_id: i32,
    settings: ReplicationSettings,
    started: Instant,
    replicas: Mutex<HashMap<TopicPartition, Arc<Replica>>>,
    pub(crate) fetchers: crate::replica_fetcher::Fetchers,
    /// Wakes waiting fetches (the partition manager's append signal).
    appended: Arc<watch::Sender<u64>>,
}

/// Why a produce could not be acknowledged with acks=all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckError {
    /// The high watermark did not pass the batch within the request's timeout.
    TimedOut,
    /// Leadership moved away while waiting.
    NotLeader,
    /// The ISR shrank below `min.insync.replicas` while waiting.
    NotEnoughReplicasAfterAppend,
}

impl AckError {
    pub(crate) fn code(self) -> ErrorCode {
        match self {
            AckError::TimedOut => ErrorCode::REQUEST_TIMED_OUT,
            AckError::NotLeader => ErrorCode::NOT_LEADER_OR_FOLLOWER,
            AckError::NotEnoughReplicasAfterAppend => ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        }
    }
}

impl Replicas {
    pub(crate) fn new(
        node_id: i32,
        settings: ReplicationSettings,
        appended: Arc<watch::Sender<u64>>,
    ) -> Self {
        Self {
            appended,
            node_id,
            fetchers: crate::replica_fetcher::Fetchers::new(node_id, settings.clone()),
            settings,
            started: Instant::now(),
            replicas: Mutex::new(HashMap::new()),
        }
    }

    /// Milliseconds on this broker's monotonic clock.
    pub(crate) fn now_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    pub(crate) fn settings(&self) -> &ReplicationSettings {
        &self.settings
    }

    /// The local replica of a partition.
    pub(crate) fn get(&self, topic: &str, partition: i32) -> Option<Arc<Replica>> {
        self.replicas
            .lock()
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    /// Every local replica.
    pub(crate) fn all(&self) -> Vec<Arc<Replica>> {
        self.replicas.lock().values().cloned().collect()
    }

    /// The log end offset a replica counts towards the high watermark: with durable
    /// acknowledgement only what is fsynced.
    fn counted_log_end_offset(&self, log: &Log) -> i64 {
        if self.settings.durable_acks {
            log.flushed_offset().min(log.log_end_offset())
        } else {
            log.log_end_offset()
        }
    }

    fn config_for(&self, image: &MetadataImage, topic: &str) -> ReplicationConfig {
        ReplicationConfig {
            replica_lag_time_max_ms: self.settings.replica_lag_time_max_ms,
            min_insync_replicas: min_insync_replicas(image, topic, self.node_id, &self.settings),
        }
    }

    /// Makes every local replica's role match `image`: called by the publisher before handlers
    /// see the image, after the logs exist. Blocks (files change with roles): call it on the
    /// blocking pool.
    pub(crate) fn apply(&self, broker: &Arc<Broker>, image: &MetadataImage) {
        let now = self.now_ms();
        let mut seen = std::collections::HashSet::new();
        for topic in image.topics().values() {
            let config = self.config_for(image, &topic.name);
            for (index, registration) in topic.partitions.iter().enumerate() {
                if !registration.replicas.contains(&self.node_id) {
                    continue;
                }
                let Ok(partition) = i32::try_from(index) else {
                    continue;
                };
                let tp = TopicPartition::new(&topic.name, partition);
                let Some(log) = broker.partitions.log(&topic.name, partition) else {
                    continue;
                };
                seen.insert(tp.clone());
                let replica = {
                    let mut replicas = self.replicas.lock();
                    let entry = replicas
                        .entry(tp.clone())
                        .or_insert_with(|| self.new_replica(tp.clone(), topic.id, log.clone()));
                    if entry.topic_id != topic.id || !Arc::ptr_eq(&entry.log, &log) {
                        *entry = self.new_replica(tp.clone(), topic.id, log.clone());
                    }
                    entry.clone()
                };
                self.apply_partition(broker, image, &replica, registration, config, now);
            }
        }
        let mut gone: Vec<Arc<Replica>> = Vec::new();
        self.replicas.lock().retain(|tp, replica| {
            let kept = seen.contains(tp);
            if !kept {
                gone.push(replica.clone());
            }
            kept
        });
        for replica in gone {
            self.fetchers.remove(&replica.tp);
            if replica.tp.topic == crate::groups::OFFSETS_TOPIC {
                broker.groups.resign(replica.tp.partition);
            }
            if replica.tp.topic == crate::transactions::STATE_TOPIC {
                broker.transactions.resign(broker, replica.tp.partition);
            }
            {
                let _changing = replica.writes.write();
                *replica.role.lock() = Role::Offline;
            }
            replica.set_leading(None, 0);
        }
    }

    fn new_replica(&self, tp: TopicPartition, topic_id: TopicId, log: Arc<Log>) -> Arc<Replica> {
        let (view, _) = watch::channel(ReplicaView {
            // Nothing is known to be committed until a leader says so; with a single replica
            // the first image makes this broker the leader and the high watermark its end.
            high_watermark: log.log_start_offset(),
            leading_epoch: None,
        });
        Arc::new(Replica {
            tp,
            topic_id,
            log,
            role: Mutex::new(Role::Offline),
            writes: RwLock::new(()),
            view,
            flusher: Flusher::default(),
        })
    }

    fn apply_partition(
        &self,
        broker: &Arc<Broker>,
        image: &MetadataImage,
        replica: &Arc<Replica>,
        registration: &PartitionRegistration,
        config: ReplicationConfig,
        now: i64,
    ) {
        let state = LeaderAndIsr {
            leader: registration.leader,
            leader_epoch: registration.leader_epoch,
            partition_epoch: registration.partition_epoch,
            replicas: registration.replicas.clone(),
            isr: registration.isr.clone(),
        };
        let tp = &replica.tp;
        if registration.leader == self.node_id {
            let mut role = replica.role.lock();
            if let Role::Leader(leader) = &mut *role {
                if leader.leader_epoch() == registration.leader_epoch {
                    // `min.insync.replicas` may have changed (a topic or dynamic broker config).
                    leader.set_config(config);
                    if let Some(hw) = leader.update(state, now) {
                        drop(role);
                        self.high_watermark_moved(replica, hw);
                    }
                    return;
                }
            }
            // A change of role: every append checked against the old one finishes first.
            drop(role);
            let changing = replica.writes.write();
            let mut role = replica.role.lock();
            self.fetchers.remove(tp);
            // OffsetForLeaderEpoch answers for the new epoch before anything is appended in it.
            if let Err(e) = replica.log.assign_leader_epoch(registration.leader_epoch) {
                warn!(topic = %tp.topic, partition = tp.partition, error = %e, "cannot record the new leader epoch");
            }
            let leo = replica.log.log_end_offset();
            let counted = self.counted_log_end_offset(&replica.log);
            let leader = LeaderPartition::new(
                self.node_id,
                state,
                config,
                counted,
                replica.high_watermark(),
                now,
            )
            .with_leader_epoch_start_offset(leo);
            // Alone in the ISR the high watermark can move to the counted end at once; it is
            // published with the role, so no read sees the role without it (a fetch right
            // after a produce would otherwise find the high watermark of before).
            let mut leader = leader;
            leader.on_local_log_end_offset(counted);
            let hw = leader.high_watermark();
            *role = Role::Leader(Box::new(leader));
            // Published before the role lock is released: a produce that sees the new role
            // must not be followed by a fetch that still sees the high watermark of before.
            replica.set_leading(Some(registration.leader_epoch), hw);
            drop(role);
            drop(changing);
            // The producer state stays: as follower this broker tracked the batches it
            // appended (`replica_fetcher`), ongoing transactions included.
            info!(topic = %tp.topic, partition = tp.partition, leader_epoch = registration.leader_epoch, log_end_offset = leo, high_watermark = hw, isr = ?registration.isr, "became leader");
            if tp.topic == crate::groups::OFFSETS_TOPIC {
                broker
                    .groups
                    .become_leader(broker, tp.partition, registration.leader_epoch);
            }
            if tp.topic == crate::transactions::STATE_TOPIC {
                broker
                    .transactions
                    .become_leader(broker, tp.partition, registration.leader_epoch);
            }
            broker.partitions.notify_appended();
            // What recovery found may not be fsynced yet.
            broker.replicas.local_log_end_offset_moved(replica);
        } else if registration.leader == NO_LEADER {
            let changing = replica.writes.write();
            let mut role = replica.role.lock();
            if !matches!(*role, Role::Offline) {
                *role = Role::Offline;
                drop(role);
                drop(changing);
                self.fetchers.remove(tp);
                replica.set_leading(None, 0);
                info!(topic = %tp.topic, partition = tp.partition, "partition has no leader");
                if tp.topic == crate::groups::OFFSETS_TOPIC {
                    broker.groups.resign(tp.partition);
                }
                if tp.topic == crate::transactions::STATE_TOPIC {
                    broker.transactions.resign(broker, tp.partition);
                }
            }
        } else {
            let changing = replica.writes.write();
            let mut role = replica.role.lock();
            if let Role::Follower {
                leader,
                leader_epoch,
            } = &*role
            {
                if *leader == registration.leader && *leader_epoch == registration.leader_epoch {
                    return;
                }
            }
            *role = Role::Follower {
                leader: registration.leader,
                leader_epoch: registration.leader_epoch,
            };
            drop(role);
            drop(changing);
            replica.set_leading(None, 0);
            if tp.topic == crate::groups::OFFSETS_TOPIC {
                broker.groups.resign(tp.partition);
            }
            if tp.topic == crate::transactions::STATE_TOPIC {
                broker.transactions.resign(broker, tp.partition);
            }
            let endpoint = image
                .broker(registration.leader)
                .and_then(|b| b.endpoint("PLAINTEXT"))
                .map(|e| format!("{}:{}", e.host, e.port));
            info!(topic = %tp.topic, partition = tp.partition, leader = registration.leader, leader_epoch = registration.leader_epoch, "became follower");
            match endpoint {
                Some(address) => self.fetchers.add(
                    broker,
                    registration.leader,
                    address,
                    replica.clone(),
                    registration.leader_epoch,
                ),
                None => {
                    warn!(topic = %tp.topic, partition = tp.partition, leader = registration.leader, "the leader has no PLAINTEXT listener; not fetching");
                    self.fetchers.remove(tp);
                }
            }
        }
    }

    /// Lets go of every replica, and with them their logs, at shutdown: the log manager closes
    /// a log cleanly (recovery point checkpointed, clean-shutdown marker) only when it holds
    /// the last reference, and an unclean close makes the next start recover every log.
    pub(crate) fn release_all(&self) {
        self.replicas.lock().clear();
    }

    /// The leader's own log grew (an append) or became durable (an fsync): with durable
    /// acknowledgement an fsync is scheduled, else the high watermark may move at once.
    pub(crate) fn local_log_end_offset_moved(self: &Arc<Self>, replica: &Arc<Replica>) {
        if self.settings.durable_acks {
            if replica.log.flushed_offset() >= replica.log.log_end_offset() {
                self.count_local(replica);
            } else if replica.flusher.request() {
                let replicas = self.clone();
                let replica = replica.clone();
                crate::blocking::spawn(move || replicas.run_flusher(&replica));
            }
        } else {
            self.count_local(replica);
        }
    }

    /// Group commit for one partition (blocking: runs on the pool): fsyncs up to the log end
    /// offset, counts it toward the high watermark, and goes round again while appends keep
    /// coming. One loop for as long as appends keep coming, rather than a pool task per fsync
    /// round: with a task per round, the round scheduled during an fsync waited on the log's
    /// flush lock, and parking_lot's spinning there was 6–7 % of the broker's CPU under load.
    fn run_flusher(&self, replica: &Replica) {
        loop {
            let end = replica.log.log_end_offset();
            match replica.log.flush_to(end) {
                Ok(()) => self.count_local(replica),
                Err(e) => {
                    warn!(topic = %replica.tp.topic, partition = replica.tp.partition, error = %e, "fsync failed")
                }
            }
            if !replica.flusher.round_done() {
                return;
            }
        }
    }

    fn count_local(&self, replica: &Replica) {
        let counted = self.counted_log_end_offset(&replica.log);
        let moved = match &mut *replica.role.lock() {
            Role::Leader(leader) => leader.on_local_log_end_offset(counted),
            _ => None,
        };
        if let Some(hw) = moved {
            self.high_watermark_moved(replica, hw);
        }
    }

    fn high_watermark_moved(&self, replica: &Replica, high_watermark: i64) {
        if replica.raise_high_watermark(high_watermark) {
            self.appended.send_modify(|n| *n += 1);
        }
    }

    /// A follower fetched `fetch_offset` of a partition this broker leads in `leader_epoch`
    /// (checked by the caller): records its progress, moves the high watermark, and sends an
    /// ISR expansion to the controller when the follower has caught up.
    pub(crate) fn follower_fetched(
        &self,
        broker: &Arc<Broker>,
        replica: &Arc<Replica>,
        follower: i32,
        fetch_offset: i64,
    ) -> Result<(), ErrorCode> {
        let now = self.now_ms();
        let leo = replica.log.log_end_offset();
        let outcome = match &mut *replica.role.lock() {
            Role::Leader(leader) => leader
                .on_follower_fetch(follower, fetch_offset, leo, now)
                .map_err(|e| {
                    debug!(topic = %replica.tp.topic, partition = replica.tp.partition, follower, fetch_offset, error = %e, "follower fetch refused");
                    replication_error_code(&e)
                })?,
            _ => return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER),
        };
        if let Some(hw) = outcome.high_watermark {
            self.high_watermark_moved(replica, hw);
        }
        if let Some(change) = outcome.alter_isr {
            self.send_alter_isr(broker, replica, change);
        }
        Ok(())
    }

    /// The periodic ISR check of every partition this broker leads.
    pub(crate) fn check_isr(&self, broker: &Arc<Broker>) {
        let now = self.now_ms();
        for replica in self.all() {
            let change = match &mut *replica.role.lock() {
                Role::Leader(leader) => leader.tick(now),
                _ => None,
            };
            if let Some(change) = change {
                self.send_alter_isr(broker, &replica, change);
            }
        }
    }

    fn send_alter_isr(&self, broker: &Arc<Broker>, replica: &Arc<Replica>, change: AlterIsr) {
        let broker = broker.clone();
        let replica = replica.clone();
        tokio::spawn(async move {
            let request = ControllerRequest::AlterPartition(weir_metadata::AlterPartition {
                broker_id: broker.config().node_id,
                broker_epoch: broker.cluster.broker_epoch(),
                topic_id: replica.topic_id,
                partition: replica.tp.partition,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                new_isr: change.new_isr.clone(),
            });
            info!(topic = %replica.tp.topic, partition = replica.tp.partition, isr = ?change.new_isr, "asking the controller to change the ISR");
            let answer = broker.cluster.call(request).await;
            let result = match answer {
                Ok(response) => {
                    // The change is in effect once the image that holds it is published here.
                    broker.cluster.wait_published(response.offset).await;
                    match response.outcome {
                        ControllerOutcome::Partition(p) => Ok(LeaderAndIsr {
                            leader: p.leader,
                            leader_epoch: p.leader_epoch,
                            partition_epoch: p.partition_epoch,
                            replicas: p.replicas,
                            isr: p.isr,
                        }),
                        _ => Err(AlterIsrRejected::NoAnswer),
                    }
                }
                Err(e) => {
                    warn!(topic = %replica.tp.topic, partition = replica.tp.partition, error = %e, "ISR change refused");
                    Err(match e {
                        ControllerCallError::Refused(ControllerError::InvalidUpdateVersion {
                            ..
                        }) => AlterIsrRejected::InvalidUpdateVersion,
                        ControllerCallError::Refused(ControllerError::FencedLeaderEpoch {
                            ..
                        }) => AlterIsrRejected::FencedLeaderEpoch,
                        ControllerCallError::Refused(ControllerError::IneligibleReplica(_)) => {
                            AlterIsrRejected::IneligibleReplica
                        }
                        ControllerCallError::Refused(ControllerError::InvalidRequest(_)) => {
                            AlterIsrRejected::InvalidRequest
                        }
                        // Anything else (no active controller, a timeout, a lost connection)
                        // may still have been committed.
                        _ => AlterIsrRejected::NoAnswer,
                    })
                }
            };
            let now = broker.replicas.now_ms();
            let moved = match &mut *replica.role.lock() {
                Role::Leader(leader) => leader.alter_isr_completed(result, now),
                _ => None,
            };
            if let Some(hw) = moved {
                broker.replicas.high_watermark_moved(&replica, hw);
            }
        });
    }

    /// Whether the ISR of a partition this broker leads is large enough for acks=all.
    pub(crate) fn check_min_isr(&self, replica: &Replica) -> Result<(), ErrorCode> {
        match &*replica.role.lock() {
            Role::Leader(leader) => leader
                .check_min_isr()
                .map_err(|_| ErrorCode::NOT_ENOUGH_REPLICAS),
            _ => Err(ErrorCode::NOT_LEADER_OR_FOLLOWER),
        }
    }

    /// Waits until the high watermark passes `end_offset` (exclusive end of an appended batch)
    /// while this broker leads in `leader_epoch`, until `deadline`.
    /// Waits for every pending acknowledgement, all under one deadline (waiting for them one
    /// after another takes no longer than waiting for them together); returns the keys of those
    /// that failed, with why.
    pub(crate) async fn wait_for_acks<K>(
        &self,
        pending: Vec<(K, PendingAck)>,
        deadline: tokio::time::Instant,
    ) -> Vec<(K, AckError)> {
        let mut failed = Vec::new();
        for (key, ack) in pending {
            let waited = self
                .wait_for_commit(&ack.replica, ack.leader_epoch, ack.end_offset, deadline)
                .await;
            if let Err(e) = waited {
                failed.push((key, e));
            }
        }
        failed
    }

    pub(crate) async fn wait_for_commit(
        &self,
        replica: &Arc<Replica>,
        leader_epoch: i32,
        end_offset: i64,
        deadline: tokio::time::Instant,
    ) -> Result<(), AckError> {
        let mut view = replica.subscribe();
        let waited = tokio::time::timeout_at(
            deadline,
            view.wait_for(|v| {
                v.leading_epoch != Some(leader_epoch) || v.high_watermark >= end_offset
            }),
        )
        .await;
        let seen = match waited {
            Err(_) => return Err(AckError::TimedOut),
            Ok(Err(_)) => return Err(AckError::NotLeader),
            Ok(Ok(v)) => *v,
        };
        if seen.leading_epoch != Some(leader_epoch) {
            return Err(AckError::NotLeader);
        }
        if self.check_min_isr(replica).is_err() {
            return Err(AckError::NotEnoughReplicasAfterAppend);
        }
        Ok(())
    }
}

/// What an acknowledgement waits for after a leader append: the high watermark passing
/// `end_offset` while `replica` still leads in `leader_epoch`.
pub(crate) struct PendingAck {
    pub(crate) replica: Arc<Replica>,
    pub(crate) leader_epoch: i32,
    /// One past the last offset appended.
    pub(crate) end_offset: i64,
}

/// Why a leader append did not happen.
#[derive(Debug)]
pub(crate) enum LeaderAppendError {
    /// The replica does not lead in that epoch (any more).
    NotLeader,
    /// The log refused or failed it.
    Log(weir_log::Error),
}

/// Appends `records` as the leader in `leader_epoch`, holding [`Replica::writes`] so the
/// replica cannot turn follower meanwhile. Blocks: call it on the blocking pool.
pub(crate) fn append_as_leader(
    replica: &Replica,
    leader_epoch: i32,
    records: &[u8],
) -> Result<weir_log::AppendInfo, LeaderAppendError> {
    let _writing = replica.writes.read();
    if !replica.leads_in(leader_epoch) {
        return Err(LeaderAppendError::NotLeader);
    }
    crate::partitions::Partitions::append_blocking(&replica.log, records, leader_epoch)
        .map_err(LeaderAppendError::Log)
}

/// The `min.insync.replicas` of a topic: its own config, else this broker's dynamic config,
/// else the cluster-wide dynamic default, else the broker's property.
fn min_insync_replicas(
    image: &MetadataImage,
    topic: &str,
    node_id: i32,
    settings: &ReplicationSettings,
) -> usize {
    use weir_metadata::ConfigResource;
    [
        ConfigResource::Topic(topic.to_string()),
        ConfigResource::Broker(node_id),
        ConfigResource::ClusterDefault,
    ]
    .iter()
    .find_map(|resource| {
        image
            .configs(resource)
            .and_then(|c| c.get("min.insync.replicas"))
            .and_then(|v| v.trim().parse::<usize>().ok())
    })
    .unwrap_or(settings.min_insync_replicas)
}

/// The Kafka error code of a refused follower fetch.
fn replication_error_code(error: &weir_replication::ReplicationError) -> ErrorCode {
    match error {
        weir_replication::ReplicationError::OffsetOutOfRange { .. } => {
            ErrorCode::OFFSET_OUT_OF_RANGE
        }
        weir_replication::ReplicationError::NotEnoughReplicas { .. } => {
            ErrorCode::NOT_ENOUGH_REPLICAS
        }
        _ => ErrorCode::NOT_LEADER_OR_FOLLOWER,
    }
}

/// Runs the ISR check every half `replica.lag.time.max.ms` (as Kafka) until the server stops.
pub(crate) async fn isr_check_loop(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let period = Duration::from_millis(
        u64::try_from(broker.replicas.settings().replica_lag_time_max_ms / 2)
            .unwrap_or(15_000)
            .max(10),
    );
    let mut interval = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = interval.tick() => broker.replicas.check_isr(&broker),
            _ = stopped.changed() => return,
        }
    }
}

// Moving a replica's log between data directories (AlterReplicaLogDirs).

impl Replicas {
    /// Runs `swap` with the partition quiet and puts the log it returns under the replica.
    ///
    /// Holds the replica's `writes` and role locks throughout: every leader append
    /// (`append_as_leader`, the Produce handler) takes one and every other write (follower
    /// appends and truncation, transaction markers, transactional offset commits) the other,
    /// so nothing is written meanwhile. `Replica::log` is a plain `Arc<Log>` read by many, so the
    /// replica is replaced rather than changed: the new one, on the new log, takes over a
    /// leader's role (follower progress, ISR, pending ISR change) and shares the high
    /// watermark channel, so acks=all produces and fetches waiting on the old one carry on.
    /// The old one turns Offline, so a produce or replica fetch still holding it refuses
    /// instead of writing to the retired log. A follower's new replica starts Offline: the
    /// caller re-applies the current image ([`Replicas::apply`]), which hands it to the
    /// fetcher. Without a local replica (no image has given the partition a role yet) `swap`
    /// runs alone.
    pub(crate) fn swap_log<E>(
        &self,
        tp: &TopicPartition,
        swap: impl FnOnce() -> Result<Arc<Log>, E>,
    ) -> Result<(), E> {
        let Some(old) = self.replicas.lock().get(tp).cloned() else {
            return swap().map(drop);
        };
        let _changing = old.writes.write();
        let mut role = old.role.lock();
        let log = swap()?;
        let kept = match std::mem::replace(&mut *role, Role::Offline) {
            leader @ Role::Leader(_) => leader,
            _ => Role::Offline,
        };
        let new = Arc::new(Replica {
            tp: tp.clone(),
            topic_id: old.topic_id,
            log,
            role: Mutex::new(kept),
            writes: RwLock::new(()),
            view: old.view.clone(),
            flusher: Flusher::default(),
        });
        let mut replicas = self.replicas.lock();
        // An image applied meanwhile may have replaced it already (it saw the new log).
        if replicas.get(tp).is_some_and(|r| Arc::ptr_eq(r, &old)) {
            replicas.insert(tp.clone(), new);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Flusher;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn flusher_starts_once_and_goes_round_again_for_appends_during_a_round() {
        let flusher = Flusher::default();
        assert!(flusher.request(), "the first append starts the flusher");
        assert!(!flusher.request(), "a running flusher is not started twice");
        assert!(!flusher.request());
        assert!(
            flusher.round_done(),
            "appends during the round: one more round"
        );
        assert!(
            !flusher.round_done(),
            "nothing came during that round: it stops"
        );
        assert!(flusher.request(), "the next append starts a new flusher");
    }

    /// Appends from several threads, each flushed by a round that starts after it: at the end
    /// the flushed offset is the log end, and at most one flusher ever ran at a time.
    #[test]
    fn every_append_is_covered_by_a_later_round() {
        let flusher = Arc::new(Flusher::default());
        let log_end = Arc::new(AtomicU64::new(0));
        let flushed = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicU64::new(0));
        let run = {
            let (flusher, log_end, flushed, running) = (
                flusher.clone(),
                log_end.clone(),
                flushed.clone(),
                running.clone(),
            );
            move || {
                assert_eq!(
                    running.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two flushers at once"
                );
                loop {
                    let end = log_end.load(Ordering::SeqCst);
                    flushed.fetch_max(end, Ordering::SeqCst);
                    std::thread::yield_now();
                    // Decremented before the round ends: once it ends another may start.
                    running.fetch_sub(1, Ordering::SeqCst);
                    if !flusher.round_done() {
                        return;
                    }
                    running.fetch_add(1, Ordering::SeqCst);
                }
            }
        };
        let appenders: Vec<_> = (0..4)
            .map(|_| {
                let (flusher, log_end, run) = (flusher.clone(), log_end.clone(), run.clone());
                std::thread::spawn(move || {
                    let mut flushers = Vec::new();
                    for _ in 0..2_000 {
                        log_end.fetch_add(1, Ordering::SeqCst);
                        if flusher.request() {
                            flushers.push(std::thread::spawn(run.clone()));
                        }
                    }
                    for f in flushers {
                        f.join().unwrap();
                    }
                })
            })
            .collect();
        for a in appenders {
            a.join().unwrap();
        }
        assert_eq!(flushed.load(Ordering::SeqCst), 8_000);
        assert!(
            flusher.request(),
            "the flusher stopped once everything was flushed"
        );
    }
}
