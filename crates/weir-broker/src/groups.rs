//! The group coordinator driver: performs the I/O that `weir_group::Coordinator` asks for.
//!
//! The coordinator is a state machine behind a mutex. This module
//! - parks JoinGroup and SyncGroup requests on `oneshot` channels keyed by [`RequestId`] until
//!   the coordinator answers them (possibly during another member's request or a timer tick);
//! - appends [`Output::Persist`] records to the group's partition of the internal compacted
//!   topic `__consumer_offsets`, and only then releases the responses queued after them;
//! - runs a timer task ([`run_timer`]) that sleeps until [`Coordinator::next_deadline`] and calls
//!   [`Coordinator::tick`], woken through a [`Notify`] whenever a call may have moved the
//!   deadline;
//! - loads the groups of a `__consumer_offsets` partition when this broker becomes its leader
//!   ([`Groups::become_leader`]: the log is replayed into [`Coordinator::load`]) and unloads them
//!   when leadership moves away ([`Groups::resign`], parked requests answered NOT_COORDINATOR),
//!   as the replicas' roles follow the metadata (`replication`). Until a partition's groups are
//!   loaded, its group requests get COORDINATOR_LOAD_IN_PROGRESS, so no request ever sees a
//!   half-loaded coordinator;
//! - waits, after each append, until the high watermark passes it (the offsets topic is
//!   replicated like any other): a commit is answered once it would survive the leader's loss.
//!
//! Ordering: every coordinator call that may queue outputs holds the `pipeline` lock from the
//! call until its outputs are performed. Records therefore reach the log in the order the
//! coordinator produced them (the last commit of a partition is also the last in the log), and a
//! response never overtakes the records it depends on.

use crate::config::BrokerConfig;
use crate::error::PersistFailure;
use crate::state::Broker;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, oneshot, watch};
use tracing::{debug, error, info, warn};
use weir_group::record::{GroupMetadataValue, OffsetCommitValue, RecordKey};
use weir_group::{
    Config, Coordinator, JoinRequest, JoinResponse, Millis, Output, PersistRecord, RequestId,
    SyncRequest, SyncResponse,
};
use weir_protocol::ErrorCode;
use weir_records::{Record, RecordBatchBuilder, RecordBatches};

/// The internal topic holding group metadata and committed offsets.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How much of a `__consumer_offsets` log one replay read takes.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// Why a group request failed.
#[derive(Debug, Clone)]
pub(crate) enum GroupFailure {
    /// The coordinator refused the request.
    Coordinator(weir_group::Error),
    /// Appending to `__consumer_offsets` failed.
    Persist(PersistFailure),
    /// The broker is shutting down: parked requests are released, as Kafka does when it unloads
    /// a group, so that clients look for the coordinator again.
    ShuttingDown,
}

impl GroupFailure {
    /// The error code the client sees.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            GroupFailure::Coordinator(e) => crate::error::group_error_code(e),
            GroupFailure::Persist(failure) => failure.code(false),
            GroupFailure::ShuttingDown => ErrorCode::NOT_COORDINATOR,
        }
    }
}

/// Why appending to `__consumer_offsets` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PersistError {
    /// The group's partition has no log (the topic was deleted underneath us).
    #[error("__consumer_offsets partition {0} has no log")]
    MissingPartition(i32),
    /// The records did not encode into a batch.
    #[error("cannot build a __consumer_offsets batch")]
    Records(#[source] weir_records::Error),
    /// The log refused or failed the append.
    #[error("cannot append to __consumer_offsets")]
    Log(#[source] weir_log::Error),
    /// This broker no longer leads the partition.
    #[error("this broker no longer leads the __consumer_offsets partition")]
    NotLeader,
    /// The append did not reach the high watermark (in time, or before leadership moved).
    #[error("the __consumer_offsets append was not committed: {0:?}")]
    NotCommitted(crate::replication::AckError),
}

impl From<crate::replication::LeaderAppendError> for PersistError {
    fn from(e: crate::replication::LeaderAppendError) -> Self {
        match e {
            crate::replication::LeaderAppendError::NotLeader => PersistError::NotLeader,
            crate::replication::LeaderAppendError::Log(e) => PersistError::Log(e),
        }
    }
}

type Reply<T> = Result<T, GroupFailure>;

/// A parked request's way back to its handler.
#[derive(Debug)]
enum Waiter {
    /// The group id is kept for the log line when the rebalance completes.
    Join(String, oneshot::Sender<Reply<JoinResponse>>),
    Sync(oneshot::Sender<Reply<SyncResponse>>),
}

#[derive(Debug, Default)]
struct Parked {
    /// Set at shutdown: nothing parks any more.
    closing: bool,
    waiters: HashMap<RequestId, Waiter>,
}

/// The broker's group coordinator: the state machine plus the requests parked on it.
#[derive(Debug)]
pub(crate) struct Groups {
    coordinator: Mutex<Coordinator>,
    /// Held from a coordinator call that may queue outputs until those outputs are performed.
    pipeline: tokio::sync::Mutex<()>,
    parked: Mutex<Parked>,
    next_request: AtomicU64,
    /// Wakes the timer task: the next deadline may have changed.
    wake: Notify,
    /// Partitions of `__consumer_offsets`: what `partition_for` divides by (the existing
    /// topic's count, once [`open`] has looked).
    num_partitions: AtomicI32,
    /// The `__consumer_offsets` partitions this broker leads, and whether their groups are
    /// loaded.
    owned: crate::internal_topics::PartitionLoads,
    /// `offsets.commit.timeout.ms`: how long an append waits for the high watermark.
    commit_timeout: Duration,
    /// Offsets committed inside open transactions (TxnOffsetCommit), by producer id, then
    /// group, then partition: applied when the transaction's COMMIT marker lands on the group's
    /// partition, dropped on ABORT. In memory only (see `docs/transactions.md`).
    pending_txn: Mutex<PendingTxnOffsets>,
}

/// Transactional offsets waiting for their marker: producer id → group → partition → offset.
type PendingTxnOffsets =
    HashMap<i64, BTreeMap<String, BTreeMap<weir_group::TopicPartition, weir_group::OffsetCommit>>>;

impl Groups {
    /// A coordinator with no groups yet; [`open`] loads them.
    pub(crate) fn new(config: &BrokerConfig) -> Self {
        Self {
            coordinator: Mutex::new(Coordinator::new(coordinator_config(config))),
            pipeline: tokio::sync::Mutex::new(()),
            parked: Mutex::new(Parked::default()),
            next_request: AtomicU64::new(1),
            wake: Notify::new(),
            num_partitions: AtomicI32::new(config.offsets_topic_num_partitions),
            owned: crate::internal_topics::PartitionLoads::default(),
            pending_txn: Mutex::new(HashMap::new()),
            commit_timeout: Duration::from_millis(config.groups.offsets_commit_timeout_ms),
        }
    }

    /// This broker now leads `partition` of `__consumer_offsets` in `leader_epoch`: replays its
    /// log into the coordinator in the background. Group requests for it get
    /// COORDINATOR_LOAD_IN_PROGRESS until it is done.
    pub(crate) fn become_leader(&self, broker: &Arc<Broker>, partition: i32, leader_epoch: i32) {
        if !self.owned.claim(partition, leader_epoch) {
            return;
        }
        let broker = broker.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let groups = &broker.groups;
            let records = match replay_partition(&broker, partition).await {
                Ok(records) => records,
                Err(e) => {
                    error!(partition, error = %e, "cannot load __consumer_offsets partition; its groups stay unavailable");
                    return;
                }
            };
            let loaded = records.records.len();
            let outputs = {
                let mut coordinator = groups.coordinator.lock();
                let loaded = groups.owned.finish(partition, leader_epoch, || {
                    coordinator.unload(partition, groups.num_partitions.load(Ordering::SeqCst));
                    groups.restore_pending(partition, &records.pending);
                    load_partition(&mut coordinator, partition, records.records);
                    Some(coordinator.take_outputs())
                });
                // Leadership moved on meanwhile.
                let Some(outputs) = loaded else {
                    return;
                };
                outputs
            };
            for output in outputs {
                groups.answer(output, None);
            }
            groups.wake.notify_one();
            info!(
                partition,
                leader_epoch,
                records = loaded,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "loaded the groups of a __consumer_offsets partition"
            );
        });
    }

    /// This broker no longer leads `partition` of `__consumer_offsets`: its groups are dropped
    /// and their parked requests answered NOT_COORDINATOR.
    pub(crate) fn resign(&self, partition: i32) {
        let outputs = {
            let mut coordinator = self.coordinator.lock();
            if !self.owned.release(partition) {
                return;
            }
            coordinator.unload(partition, self.num_partitions.load(Ordering::SeqCst));
            // The next leader rebuilds them from the log; kept here they could outlive the
            // marker that decides them.
            self.restore_pending(partition, &BTreeMap::new());
            coordinator.take_outputs()
        };
        for output in outputs {
            self.answer(output, None);
        }
        info!(
            partition,
            "unloaded the groups of a __consumer_offsets partition"
        );
    }

    /// Read-only access to the coordinator (OffsetFetch, DescribeGroups, ListGroups).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Coordinator) -> T) -> T {
        f(&self.coordinator.lock())
    }

    /// The partition of `__consumer_offsets` that holds `group_id`.
    pub(crate) fn partition_for(&self, group_id: &str) -> i32 {
        weir_group::partition_for(group_id, self.num_partitions.load(Ordering::SeqCst))
    }

    /// Runs `call` on the coordinator, then performs the outputs it queued in order. Returns
    /// the call's result and the first persistence failure, if any.
    pub(crate) async fn call<T>(
        &self,
        broker: &Broker,
        call: impl FnOnce(&mut Coordinator, Millis) -> T,
    ) -> (T, Result<(), PersistFailure>) {
        let _turn = self.pipeline.lock().await;
        let (result, outputs) = {
            let mut coordinator = self.coordinator.lock();
            let result = call(&mut coordinator, now_ms());
            (result, coordinator.take_outputs())
        };
        self.wake.notify_one();
        let persisted = self.perform(broker, outputs).await;
        (result, persisted)
    }

    /// Holds the offsets of a TxnOffsetCommit until the transaction of `producer_id` ends.
    pub(crate) fn add_txn_offsets(
        &self,
        producer_id: i64,
        group_id: &str,
        offsets: Vec<weir_group::OffsetCommit>,
    ) {
        let mut pending = self.pending_txn.lock();
        let group = pending
            .entry(producer_id)
            .or_default()
            .entry(group_id.to_string())
            .or_default();
        for offset in offsets {
            group.insert(offset.partition.clone(), offset);
        }
    }

    /// Whether an open transaction has committed an offset of `group_id` for `partition`
    /// (OffsetFetch's `require_stable`).
    pub(crate) fn has_pending_txn_offset(
        &self,
        group_id: &str,
        partition: &weir_group::TopicPartition,
    ) -> bool {
        self.pending_txn.lock().values().any(|groups| {
            groups
                .get(group_id)
                .is_some_and(|o| o.contains_key(partition))
        })
    }

    /// Replaces the pending transactional offsets of the groups of `partition` with those
    /// replayed from its log (transactional offset records without a marker yet).
    fn restore_pending(
        &self,
        partition: i32,
        replayed: &BTreeMap<i64, Vec<(Bytes, Option<Bytes>)>>,
    ) {
        let mut pending = self.pending_txn.lock();
        for groups in pending.values_mut() {
            groups.retain(|g, _| self.partition_for(g) != partition);
        }
        pending.retain(|_, groups| !groups.is_empty());
        for (producer_id, records) in replayed {
            for (key, value) in records {
                let (
                    Ok(Some(RecordKey::OffsetCommit {
                        group,
                        topic,
                        partition: p,
                    })),
                    Some(value),
                ) = (RecordKey::decode(key), value)
                else {
                    continue;
                };
                let Ok(value) = OffsetCommitValue::decode(value) else {
                    continue;
                };
                let tp = weir_group::TopicPartition::new(topic, p);
                pending
                    .entry(*producer_id)
                    .or_default()
                    .entry(group)
                    .or_default()
                    .insert(
                        tp.clone(),
                        weir_group::OffsetCommit {
                            partition: tp,
                            offset: value.offset,
                            leader_epoch: value.leader_epoch,
                            metadata: Some(value.metadata),
                        },
                    );
            }
        }
    }

    /// Writes the offsets of a TxnOffsetCommit to the group's `__consumer_offsets` partition
    /// as a transactional batch of the producer, as Kafka does: they survive a coordinator
    /// change (the next leader replays them as pending) until the transaction's marker decides
    /// them. Answers once the high watermark passes the batch.
    /// Starts a KIP-890 verification of `producer`'s TxnOffsetCommit on the group's partition
    /// (see `ProducerTable::begin_verification`): the guard [`Groups::append_txn_offsets`]
    /// presents, `None` when the producer's transaction is already ongoing there.
    pub(crate) async fn begin_txn_offsets_verification(
        &self,
        broker: &Arc<Broker>,
        producer: (i64, i16),
        group_id: &str,
    ) -> Result<Option<u64>, ErrorCode> {
        let partition = self.partition_for(group_id);
        let (log, _) = broker
            .leader_log(OFFSETS_TOPIC, partition, -1)
            .map_err(|_| ErrorCode::NOT_COORDINATOR)?;
        let topic_id = broker
            .topics
            .get(OFFSETS_TOPIC)
            .ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE)?
            .id;
        let task_broker = broker.clone();
        crate::blocking::spawn(move || {
            task_broker
                .producer_states
                .with_table(OFFSETS_TOPIC, topic_id, partition, &log, |table| {
                    table.begin_verification(producer.0, producer.1)
                })
                .map_err(|_| ErrorCode::COORDINATOR_NOT_AVAILABLE)
        })
        .await
        .map_err(|_| ErrorCode::COORDINATOR_NOT_AVAILABLE)?
    }

    pub(crate) async fn append_txn_offsets(
        &self,
        broker: &Arc<Broker>,
        (producer, guard): ((i64, i16), Option<u64>),
        group_id: &str,
        offsets: &[weir_group::OffsetCommit],
    ) -> Result<(), ErrorCode> {
        let (producer_id, producer_epoch) = producer;
        let partition = self.partition_for(group_id);
        let (replica, leader_epoch) = broker
            .leader_replica(OFFSETS_TOPIC, partition, -1)
            .map_err(|_| ErrorCode::NOT_COORDINATOR)?;
        let topic_id = broker
            .topics
            .get(OFFSETS_TOPIC)
            .ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE)?
            .id;
        let now = now_ms();
        let mut builder = RecordBatchBuilder::new();
        // Kafka writes these batches with no sequence: they are not idempotent produces.
        builder
            .producer(producer_id, producer_epoch, -1)
            .transactional(true);
        for c in offsets {
            builder.push(Record {
                timestamp: now,
                key: Some(
                    RecordKey::OffsetCommit {
                        group: group_id.to_string(),
                        topic: c.partition.topic.clone(),
                        partition: c.partition.partition,
                    }
                    .encode(),
                ),
                value: Some(
                    OffsetCommitValue {
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: c.metadata.clone().unwrap_or_default(),
                        commit_timestamp: now,
                        expire_timestamp: None,
                    }
                    .encode(),
                ),
                ..Record::default()
            });
        }
        let batch = builder
            .build()
            .map_err(|_| ErrorCode::UNKNOWN_SERVER_ERROR)?;
        let task_broker = broker.clone();
        let appending = replica.clone();
        let appended = crate::blocking::spawn(move || {
            append_txn_batch(
                &task_broker,
                &appending,
                (topic_id, leader_epoch),
                (producer, guard),
                &batch,
            )
        })
        .await
        .map_err(|_| ErrorCode::COORDINATOR_NOT_AVAILABLE)??;
        broker.partitions.notify_appended();
        broker.replicas.local_log_end_offset_moved(&replica);
        let deadline = tokio::time::Instant::now() + self.commit_timeout;
        broker
            .replicas
            .wait_for_commit(&replica, leader_epoch, appended, deadline)
            .await
            .map_err(|e| match e {
                crate::replication::AckError::NotLeader => ErrorCode::NOT_COORDINATOR,
                _ => ErrorCode::COORDINATOR_NOT_AVAILABLE,
            })
    }

    /// The marker of `producer_id`'s transaction is on `__consumer_offsets` partition
    /// `partition`: its offsets for the groups of that partition become committed (`commit`)
    /// or are dropped. On a failed append they stay pending, for the marker's retry.
    pub(crate) async fn complete_txn(
        &self,
        broker: &Broker,
        producer_id: i64,
        partition: i32,
        commit: bool,
    ) -> Result<(), PersistFailure> {
        // Until the partition's groups are loaded, its pending offsets may not be restored
        // yet: the marker is reported unwritten, and its retry finds them.
        if !self.owned.is_loaded(partition) {
            return Err(PersistFailure::Unavailable);
        }
        let taken: Vec<(String, Vec<weir_group::OffsetCommit>)> = {
            let mut pending = self.pending_txn.lock();
            let Some(groups) = pending.get_mut(&producer_id) else {
                return Ok(());
            };
            let ours: Vec<String> = groups
                .keys()
                .filter(|g| self.partition_for(g) == partition)
                .cloned()
                .collect();
            let taken = ours
                .into_iter()
                .filter_map(|g| groups.remove(&g).map(|o| (g, o.into_values().collect())))
                .collect();
            if groups.is_empty() {
                pending.remove(&producer_id);
            }
            taken
        };
        if !commit {
            return Ok(());
        }
        let mut taken = taken.into_iter();
        while let Some((group, offsets)) = taken.next() {
            let ((), persisted) = self
                .call(broker, |c, now| {
                    c.commit_transactional_offsets(now, &group, &offsets);
                })
                .await;
            if let Err(failure) = persisted {
                // Back to pending, this group and the ones not tried yet.
                for (g, o) in std::iter::once((group, offsets)).chain(taken) {
                    self.add_txn_offsets(producer_id, &g, o);
                }
                return Err(failure);
            }
            debug!(group, producer_id, "transactional offsets committed");
        }
        Ok(())
    }

    /// JoinGroup: parks until the coordinator answers.
    pub(crate) async fn join(&self, broker: &Broker, request: JoinRequest) -> Reply<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        let id = self.park(Waiter::Join(request.group_id.clone(), tx))?;
        // A persistence failure reaches the handler through its reply.
        let ((), _persisted) = self
            .call(broker, |c, now| c.join_group(now, id, request))
            .await;
        rx.await.unwrap_or(Err(GroupFailure::ShuttingDown))
    }

    /// SyncGroup: parks until the leader's assignment arrives (or the rebalance fails).
    pub(crate) async fn sync(&self, broker: &Broker, request: SyncRequest) -> Reply<SyncResponse> {
        let (tx, rx) = oneshot::channel();
        let id = self.park(Waiter::Sync(tx))?;
        let ((), _persisted) = self
            .call(broker, |c, now| c.sync_group(now, id, request))
            .await;
        rx.await.unwrap_or(Err(GroupFailure::ShuttingDown))
    }

    fn park(&self, waiter: Waiter) -> Result<RequestId, GroupFailure> {
        let id = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        let mut parked = self.parked.lock();
        if parked.closing {
            return Err(GroupFailure::ShuttingDown);
        }
        parked.waiters.insert(id, waiter);
        Ok(id)
    }

    /// Performs outputs in order: appends, and answers parked requests. Once an append fails,
    /// the responses after it carry the failure instead: they must not promise state that is
    /// not on disk. The failed partition is then reloaded from its log, so the coordinator
    /// holds only what is durable again (as after a leader change).
    async fn perform(&self, broker: &Broker, outputs: Vec<Output>) -> Result<(), PersistFailure> {
        let mut failed: Option<PersistFailure> = None;
        let mut failed_partitions = Vec::new();
        for output in outputs {
            match output {
                Output::Persist { group_id, records } => {
                    if let Err(e) = self.append(broker, &group_id, records).await {
                        error!(group = %group_id, error = %e, cause = ?std::error::Error::source(&e), "cannot persist group state");
                        failed.get_or_insert(PersistFailure::of(&e));
                        failed_partitions.push(self.partition_for(&group_id));
                    }
                }
                answer => self.answer(answer, failed),
            }
        }
        failed_partitions.sort_unstable();
        failed_partitions.dedup();
        for partition in failed_partitions {
            self.reload(broker, partition).await;
        }
        failed.map_or(Ok(()), Err)
    }

    /// Answers a parked request (`Output::Join` or `Output::Sync`), with `failed` instead of
    /// the coordinator's answer when an append before it failed.
    fn answer(&self, output: Output, failed: Option<PersistFailure>) {
        match output {
            Output::Join { request, response } => {
                let reply = failed.map_or_else(
                    || response.map_err(GroupFailure::Coordinator),
                    |f| Err(GroupFailure::Persist(f)),
                );
                let waiter = self.parked.lock().waiters.remove(&request);
                if let Some(Waiter::Join(group, tx)) = waiter {
                    if let Ok(joined) = &reply {
                        // Only the leader's response lists the members: one line per rebalance.
                        if joined.leader == joined.member_id {
                            info!(
                                group,
                                generation = joined.generation_id,
                                members = joined.members.len(),
                                protocol = joined.protocol_name.as_deref().unwrap_or(""),
                                "group rebalanced"
                            );
                        }
                    }
                    let _ = tx.send(reply);
                }
            }
            Output::Sync { request, response } => {
                let reply = failed.map_or_else(
                    || response.map_err(GroupFailure::Coordinator),
                    |f| Err(GroupFailure::Persist(f)),
                );
                if let Some(Waiter::Sync(tx)) = self.parked.lock().waiters.remove(&request) {
                    let _ = tx.send(reply);
                }
            }
            Output::Persist { group_id, .. } => {
                error!(group = %group_id, "unexpected records to persist while answering");
            }
        }
    }

    /// Replaces the groups of one `__consumer_offsets` partition with what its log holds.
    async fn reload(&self, broker: &Broker, partition: i32) {
        if !self.owned.is_loaded(partition) {
            return;
        }
        let records = replay_partition(broker, partition).await;
        let outputs = {
            let mut coordinator = self.coordinator.lock();
            coordinator.unload(partition, self.num_partitions.load(Ordering::SeqCst));
            match records {
                Ok(records) => {
                    self.restore_pending(partition, &records.pending);
                    load_partition(&mut coordinator, partition, records.records);
                }
                // The groups stay unloaded: nothing is better than state that is not on disk.
                Err(e) => {
                    error!(partition, error = %e, "cannot reload __consumer_offsets partition")
                }
            }
            coordinator.take_outputs()
        };
        warn!(
            partition,
            "reloaded __consumer_offsets partition after a failed append"
        );
        for output in outputs {
            self.answer(output, None);
        }
    }

    /// Appends one output's records to the group's `__consumer_offsets` partition as one batch.
    async fn append(
        &self,
        broker: &Broker,
        group_id: &str,
        records: Vec<PersistRecord>,
    ) -> Result<(), PersistError> {
        use crate::internal_topics::AppendFailure;
        let partition = self.partition_for(group_id);
        let offset = crate::internal_topics::append(
            broker,
            OFFSETS_TOPIC,
            (partition, -1),
            records.into_iter().map(|r| (r.key, r.value)),
            self.commit_timeout,
        )
        .await
        .map_err(|e| match e {
            AppendFailure::NotLeader(_) => PersistError::MissingPartition(partition),
            AppendFailure::Records(e) => PersistError::Records(e),
            AppendFailure::Append(e) => e.into(),
            AppendFailure::NotCommitted(e) => PersistError::NotCommitted(e),
        })?;
        debug!(
            group = group_id,
            partition, offset, "persisted group records"
        );
        Ok(())
    }

    /// Releases every parked request and refuses new ones (shutdown).
    fn close(&self) {
        let mut parked = self.parked.lock();
        parked.closing = true;
        let released = parked.waiters.len();
        // Dropping the senders wakes the handlers with `ShuttingDown`.
        parked.waiters.clear();
        if released > 0 {
            info!(released, "released parked group requests for shutdown");
        }
    }
}

/// Appends a transactional offsets batch as the partition's leader, under the role and
/// producer-state locks (in that order, as Produce takes them), recording the producer's
/// ongoing transaction so its marker ends it. Returns one past the batch's last offset.
fn append_txn_batch(
    broker: &Broker,
    replica: &crate::replication::Replica,
    (topic_id, leader_epoch): (weir_protocol::Uuid, i32),
    ((producer_id, producer_epoch), guard): ((i64, i16), Option<u64>),
    batch: &[u8],
) -> Result<i64, ErrorCode> {
    let producer_batch = crate::producers::ProducerBatch {
        producer_id,
        producer_epoch,
        first_sequence: -1,
        last_sequence: -1,
        transactional: true,
    };
    let role = replica.role.lock();
    match &*role {
        crate::replication::Role::Leader(leader) if leader.leader_epoch() == leader_epoch => {}
        _ => return Err(ErrorCode::NOT_COORDINATOR),
    }
    let log = &replica.log;
    let tp = &replica.tp;
    let appended = broker
        .producer_states
        .with_table(&tp.topic, topic_id, tp.partition, log, |table| {
            if table
                .current_epoch(producer_id)
                .is_some_and(|current| producer_epoch < current)
            {
                return Err(ErrorCode::PRODUCER_FENCED);
            }
            // KIP-890: the transaction verified must not have ended since.
            table
                .check_verified(&producer_batch, guard)
                .map_err(|_| ErrorCode::INVALID_TXN_STATE)?;
            let info = crate::partitions::Partitions::append_blocking(log, batch, leader_epoch)
                .map_err(|_| ErrorCode::COORDINATOR_NOT_AVAILABLE)?;
            table.record(
                &producer_batch,
                crate::producers::BatchMetadata {
                    first_sequence: -1,
                    last_sequence: -1,
                    first_offset: info.first_offset,
                    last_offset: info.last_offset,
                    log_append_time: info.log_append_time,
                },
                now_ms(),
            );
            Ok(info.last_offset + 1)
        })
        .map_err(|_| ErrorCode::COORDINATOR_NOT_AVAILABLE)??;
    drop(role);
    Ok(appended)
}

/// Drives the coordinator's timers until `stopped`, then releases parked requests. Holds an
/// `Arc<Broker>` only while running, so the server can reclaim the broker after shutdown.
pub(crate) async fn run_timer(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let groups = &broker.groups;
    let mut just_ticked = false;
    loop {
        if *stopped.borrow() {
            break;
        }
        let deadline = groups.coordinator.lock().next_deadline();
        let wait = deadline.map(|d| {
            let ms = u64::try_from(d.saturating_sub(now_ms())).unwrap_or(0);
            // A deadline the last tick left in the past must not spin the loop.
            Duration::from_millis(if just_ticked { ms.max(1) } else { ms })
        });
        just_ticked = false;
        tokio::select! {
            () = sleep_for(wait) => {
                // Failures were logged and reached the parked requests they concern.
                let ((), _persisted) = groups.call(&broker, |c, now| c.tick(now)).await;
                just_ticked = true;
            }
            () = groups.wake.notified() => {}
            _ = stopped.changed() => break,
        }
    }
    groups.close();
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// What a replay of an internal topic partition found.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// `(key, value)` in log order: plain records where they are, a committed transaction's
    /// records where its COMMIT marker is (that is when they took effect); aborted ones left
    /// out.
    pub(crate) records: Vec<(Bytes, Option<Bytes>)>,
    /// Records of transactions with no marker yet, by producer id (TxnOffsetCommit offsets
    /// still waiting for their transaction's outcome).
    pub(crate) pending: BTreeMap<i64, Vec<(Bytes, Option<Bytes>)>>,
}

/// Reads one partition of an internal topic (`__consumer_offsets`, `__transaction_state`) from
/// its log start to its end. Transactional batches (TxnOffsetCommit offsets) count from their
/// producer's COMMIT marker on, and not at all after an ABORT.
pub(crate) fn replay(log: &weir_log::Log, partition: i32) -> Result<Replayed, crate::BrokerError> {
    let end = log.log_end_offset();
    let mut from = log.log_start_offset();
    let mut replayed = Replayed::default();
    while from < end {
        let slice = log.read(from, REPLAY_READ_BYTES, end)?;
        if slice.is_empty() {
            break;
        }
        for batch in RecordBatches::new(slice.to_bytes()?) {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    error!(partition, error = %e, "unreadable internal topic batch");
                    break;
                }
            };
            let decoded = batch
                .records()
                .and_then(|rs| rs.collect::<Result<Vec<_>, _>>());
            let batch_records = match decoded {
                Ok(batch_records) => batch_records,
                Err(e) => {
                    error!(
                        partition,
                        offset = batch.base_offset(),
                        error = %e,
                        "unreadable internal topic batch"
                    );
                    continue;
                }
            };
            let attributes = batch.attributes();
            let producer_id = batch.header().producer_id;
            if attributes.is_control() {
                let marker = batch_records
                    .first()
                    .and_then(|r| weir_records::EndTransactionMarker::from_record(r).ok())
                    .flatten();
                let txn = replayed.pending.remove(&producer_id);
                if let (Some(marker), Some(txn)) = (marker, txn) {
                    if marker.commit {
                        replayed.records.extend(txn);
                    }
                }
                continue;
            }
            let keyed = batch_records
                .into_iter()
                .filter_map(|r| r.key.map(|k| (k, r.value)));
            if attributes.is_transactional() && producer_id >= 0 {
                replayed
                    .pending
                    .entry(producer_id)
                    .or_default()
                    .extend(keyed);
            } else {
                replayed.records.extend(keyed);
            }
        }
        if slice.next_offset() <= from {
            break;
        }
        from = slice.next_offset();
    }
    Ok(replayed)
}

/// Loads one partition's replayed records. A record this coordinator cannot read is skipped
/// (with an error logged) rather than losing every group of the partition.
/// The records of one `__consumer_offsets` partition's log, read on the blocking pool (none
/// when this broker has no log of it).
async fn replay_partition(broker: &Broker, partition: i32) -> Result<Replayed, crate::BrokerError> {
    match broker.partitions.log(OFFSETS_TOPIC, partition) {
        Some(log) => crate::blocking::spawn(move || replay(&log, partition))
            .await
            .map_err(|_| crate::BrokerError::TaskFailed)?,
        None => Ok(Replayed::default()),
    }
}

fn load_partition(
    coordinator: &mut Coordinator,
    partition: i32,
    records: Vec<(Bytes, Option<Bytes>)>,
) {
    if let Err(e) = coordinator.load(now_ms(), records.iter().cloned()) {
        error!(partition, error = %e, "unreadable __consumer_offsets record; skipping it");
        let readable: Vec<_> = records.into_iter().filter(decodes).collect();
        if let Err(e) = coordinator.load(now_ms(), readable) {
            error!(partition, error = %e, "cannot load __consumer_offsets partition");
        }
    }
}

/// Whether the coordinator can read a replayed record.
fn decodes(record: &(Bytes, Option<Bytes>)) -> bool {
    let (key, value) = record;
    match (RecordKey::decode(key), value) {
        (Ok(None), _) | (Ok(Some(_)), None) => true,
        (Ok(Some(RecordKey::OffsetCommit { .. })), Some(v)) => OffsetCommitValue::decode(v).is_ok(),
        (Ok(Some(RecordKey::GroupMetadata { .. })), Some(v)) => {
            GroupMetadataValue::decode(v).is_ok()
        }
        (Err(_), _) => false,
    }
}

/// The coordinator settings from the broker's `group.*` and `offsets.*` properties.
fn coordinator_config(config: &BrokerConfig) -> Config {
    let clamp = |v: i64| i32::try_from(v.max(0)).unwrap_or(i32::MAX);
    let mut c = Config::default();
    c.min_session_timeout_ms = clamp(config.group_min_session_timeout_ms);
    c.max_session_timeout_ms = clamp(config.group_max_session_timeout_ms);
    c.initial_rebalance_delay_ms = clamp(config.group_initial_rebalance_delay_ms);
    c.offsets_retention_ms = config.offsets_retention_minutes.saturating_mul(60_000);
    c.max_size = config.groups.max_size;
    c.offsets_retention_check_interval_ms = config.groups.offsets_retention_check_interval_ms;
    c.offset_metadata_max_bytes = config.groups.offset_metadata_max_bytes;
    // Random per start, so member ids handed out before and after a restart never collide.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    c.member_id_seed = hasher.finish();
    c
}

/// Takes the partition count of an existing `__consumer_offsets` (groups are placed by it).
/// Groups themselves load as this broker becomes the leader of their partitions
/// ([`Groups::become_leader`]). The topic is created on first use
/// ([`ensure_offsets_topic`]), as Kafka does, once the cluster's brokers are up to share it.
pub(crate) fn open(broker: &Arc<Broker>) {
    let Some(topic) = broker.topics.get(OFFSETS_TOPIC) else {
        return;
    };
    let config = broker.config();
    let num_partitions = topic.partitions;
    if num_partitions != config.offsets_topic_num_partitions {
        // Records already sit in the existing partitions; placement must follow them.
        warn!(
            existing = num_partitions,
            configured = config.offsets_topic_num_partitions,
            "offsets.topic.num.partitions differs from the existing topic; using the topic's"
        );
    }
    broker
        .groups
        .num_partitions
        .store(num_partitions, Ordering::SeqCst);
}

/// Creates `__consumer_offsets` through the controller if it does not exist yet (compacted,
/// `offsets.topic.num.partitions` partitions spread over the unfenced brokers), and waits until
/// this broker has published it. Its new partitions are empty: nothing to load.
pub(crate) async fn ensure_offsets_topic(broker: &Arc<Broker>) -> Result<(), crate::BrokerError> {
    if let Some(topic) = broker.topics.image().topic(OFFSETS_TOPIC) {
        broker
            .groups
            .num_partitions
            .store(topic.partition_count(), Ordering::SeqCst);
        return Ok(());
    }
    let config = broker.config();
    crate::internal_topics::create_topic(
        broker,
        OFFSETS_TOPIC,
        config.offsets_topic_num_partitions,
        config.replication.offsets_topic_replication_factor,
        |_| BTreeMap::new(),
    )
    .await?;
    if let Some(topic) = broker.topics.get(OFFSETS_TOPIC) {
        broker
            .groups
            .num_partitions
            .store(topic.partitions, Ordering::SeqCst);
    }
    Ok(())
}

/// Whether this broker coordinates `group_id`: it leads the group's `__consumer_offsets`
/// partition. NOT_COORDINATOR otherwise (the client looks the coordinator up again), and
/// COORDINATOR_NOT_AVAILABLE when the partition has no leader. A group request that arrives
/// before any FindCoordinator creates `__consumer_offsets` first.
pub(crate) async fn check_coordinator(
    broker: &Arc<Broker>,
    group_id: &str,
) -> Result<(), ErrorCode> {
    if broker.topics.image().topic(OFFSETS_TOPIC).is_none() {
        ensure_offsets_topic(broker)
            .await
            .map_err(|_| ErrorCode::COORDINATOR_NOT_AVAILABLE)?;
    }
    let partition = broker.groups.partition_for(group_id);
    crate::internal_topics::check_coordinator(
        broker,
        OFFSETS_TOPIC,
        partition,
        &broker.groups.owned,
    )
    .await
}

/// The coordinator's clock: wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Millis {
    crate::producers::wall_clock_ms()
}

/// The client host as Kafka reports it in DescribeGroups (`InetAddress.toString`: `/1.2.3.4`).
pub(crate) fn client_host(peer: std::net::SocketAddr) -> String {
    format!("/{}", peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_properties_map_onto_the_coordinator_config() {
        let props = [
            ("group.initial.rebalance.delay.ms", "250"),
            ("group.min.session.timeout.ms", "100"),
            ("group.max.session.timeout.ms", "60000"),
            ("offsets.retention.minutes", "2"),
            ("group.max.size", "7"),
            ("offset.metadata.max.bytes", "10"),
        ];
        let config = BrokerConfig::from_properties(
            props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap();
        let c = coordinator_config(&config);
        assert_eq!(c.initial_rebalance_delay_ms, 250);
        assert_eq!(c.min_session_timeout_ms, 100);
        assert_eq!(c.max_session_timeout_ms, 60_000);
        assert_eq!(c.offsets_retention_ms, 120_000);
        assert_eq!(c.max_size, 7);
        assert_eq!(c.offset_metadata_max_bytes, 10);
        // Each start gets its own member id seed.
        assert_ne!(c.member_id_seed, coordinator_config(&config).member_id_seed);
    }

    #[test]
    fn unreadable_records_are_told_apart() {
        let key = RecordKey::GroupMetadata { group: "g".into() }.encode();
        assert!(decodes(&(key.clone(), None)));
        assert!(!decodes(&(key, Some(Bytes::from_static(b"\x00")))));
        assert!(!decodes(&(Bytes::from_static(b"\x00"), None)));
        // Keys of newer group kinds belong to another coordinator and are skipped, not errors.
        assert!(decodes(&(Bytes::from_static(b"\x00\x07"), None)));
    }
}
