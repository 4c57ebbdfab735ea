//! The producer-facing APIs: InitProducerId, AddPartitionsToTxn (including KIP-890's
//! verify-only form), AddOffsetsToTxn and EndTxn. Each validates the request against the
//! persisted state in Kafka's order of checks, then either answers at once or starts a
//! transition whose answer follows [`Coordinator::persisted`].

use std::collections::BTreeSet;

use crate::coordinator::{Coordinator, Entry, Then, client_identity};
use crate::error::{Error, Result};
use crate::partition::partition_for;
use crate::producer_id::ProducerIdAllocator;
use crate::record::TransactionLogValue;
use crate::transition::{self, epoch_exhausted};
use crate::types::{
    AddOffsetsRequest, AddPartitionsRequest, EndTxnRequest, InitProducerIdRequest, Millis,
    NO_PRODUCER_EPOCH, Output, ProducerIdAndEpoch, RequestId, TopicPartition, TransactionResult,
    TransactionVersion, TxnState,
};

/// The topic AddOffsetsToTxn adds a partition of.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// What EndTxn decided before anything is written.
enum EndDecision {
    /// Already done (a retry): answer at once with this identity.
    Answered(ProducerIdAndEpoch),
    /// Write this PrepareCommit/PrepareAbort.
    Write(TransactionLogValue),
}

impl Coordinator {
    /// Handles InitProducerId. The answer comes as an [`Output::InitProducerId`] for
    /// `request`: at once for errors and idempotent producers, after the new epoch is persisted
    /// otherwise. An Ongoing transaction of the transactional id is first aborted with a
    /// bumped epoch (fencing its producer), and the request is answered
    /// CONCURRENT_TRANSACTIONS once that abort is persisted; the client retries and gets its
    /// epoch when the abort has completed.
    pub fn init_producer_id(
        &mut self,
        now: Millis,
        request: RequestId,
        req: &InitProducerIdRequest,
        ids: &mut impl ProducerIdAllocator,
    ) {
        if let Err(error) = self.try_init(now, request, req, ids) {
            self.outputs.push(Output::InitProducerId {
                request,
                response: Err(error),
            });
        }
    }

    fn try_init(
        &mut self,
        now: Millis,
        request: RequestId,
        req: &InitProducerIdRequest,
        ids: &mut impl ProducerIdAllocator,
    ) -> Result<()> {
        let Some(id) = req.transactional_id.as_deref() else {
            // An idempotent producer needs nothing but a fresh id.
            let producer_id = ids.allocate().ok_or(Error::CoordinatorLoadInProgress)?;
            self.outputs.push(Output::InitProducerId {
                request,
                response: Ok(ProducerIdAndEpoch::new(producer_id, 0)),
            });
            return Ok(());
        };
        if id.is_empty() {
            return Err(Error::InvalidRequest);
        }
        if req.transaction_timeout_ms <= 0
            || req.transaction_timeout_ms > self.config.max_transaction_timeout_ms
        {
            return Err(Error::InvalidTransactionTimeout);
        }
        let partition = self.owner(id)?;
        let created = !self.entries.contains_key(id);
        if created {
            let producer_id = ids.allocate().ok_or(Error::CoordinatorLoadInProgress)?;
            let meta = transition::new_id(producer_id, req.transaction_timeout_ms, now);
            self.entries
                .insert(id.to_owned(), Entry::new(partition, meta, false));
        }
        let decided = self
            .entries
            .get(id)
            .ok_or(Error::NotCoordinator)
            .and_then(|entry| prepare_init(entry, request, req, ids, now));
        let started = decided.and_then(|(target, then)| self.begin(id, Some(target), then));
        if started.is_err() && created {
            // Nothing was written for the id this call created: forget it.
            self.entries.remove(id);
        }
        started
    }

    /// Handles AddPartitionsToTxn for one transaction (not verify-only). The answer, which
    /// applies to every partition, comes as an [`Output::AddPartitions`] for `request`: at once
    /// when nothing changes (an error, or every partition is already in the transaction), after
    /// the Ongoing state is persisted otherwise. A partition leader adding a partition for a
    /// transaction version 2 producer (KIP-890 part 2) calls this too.
    pub fn add_partitions_to_txn(
        &mut self,
        now: Millis,
        request: RequestId,
        req: &AddPartitionsRequest,
    ) {
        let added: BTreeSet<TopicPartition> = req.partitions.iter().cloned().collect();
        let then = Then::AddPartitions(request);
        if let Err(error) = self.try_add(
            now,
            &req.transactional_id,
            req.producer,
            &added,
            req.transaction_version,
            then,
        ) {
            self.answer(then, Err(error));
        }
    }

    /// Handles AddOffsetsToTxn: adds the group's `__consumer_offsets` partition
    /// ([`partition_for`] over [`Config::offsets_topic_partitions`](crate::Config)) to the
    /// transaction. Answered like AddPartitionsToTxn, as an [`Output::AddOffsets`].
    pub fn add_offsets_to_txn(&mut self, now: Millis, request: RequestId, req: &AddOffsetsRequest) {
        let partition = partition_for(&req.group_id, self.config.offsets_topic_partitions);
        let added = BTreeSet::from([TopicPartition::new(CONSUMER_OFFSETS_TOPIC, partition)]);
        let then = Then::AddOffsets(request);
        if let Err(error) = self.try_add(
            now,
            &req.transactional_id,
            req.producer,
            &added,
            req.transaction_version,
            then,
        ) {
            self.answer(then, Err(error));
        }
    }

    fn try_add(
        &mut self,
        now: Millis,
        id: &str,
        producer: ProducerIdAndEpoch,
        added: &BTreeSet<TopicPartition>,
        version: TransactionVersion,
        then: Then,
    ) -> Result<()> {
        let entry = self.producer_entry(id, producer)?;
        if entry.pending.is_some() || entry.meta.state.is_prepare() {
            return Err(Error::ConcurrentTransactions);
        }
        let m = &entry.meta;
        if m.state == TxnState::Ongoing && added.is_subset(&m.partitions) {
            // Nothing to write: the partitions are already durable in the transaction.
            self.answer(then, Ok(client_identity(m)));
            return Ok(());
        }
        let target = transition::add_partitions(m, added, version, now);
        self.begin(id, Some(target), then)
    }

    /// Handles verify-only AddPartitionsToTxn (KIP-890 part 1), which a partition leader sends
    /// before appending a transactional write: per partition, OK when it is in the ongoing
    /// transaction, TRANSACTION_ABORTABLE when not (the write is refused and the producer must
    /// abort). The outer error applies to every partition. Read-only, so answered directly;
    /// only persisted partitions count, so a partition whose add is still being written is
    /// not yet in.
    pub fn verify_partitions_in_txn(
        &self,
        req: &AddPartitionsRequest,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let entry = self.producer_entry(&req.transactional_id, req.producer)?;
        if entry.meta.state.is_prepare() {
            return Err(Error::ConcurrentTransactions);
        }
        Ok(req
            .partitions
            .iter()
            .map(|tp| {
                let result = if entry.meta.partitions.contains(tp) {
                    Ok(())
                } else {
                    Err(Error::TransactionAbortable)
                };
                (tp.clone(), result)
            })
            .collect())
    }

    /// The entry of `id`, checked against the producer's id and epoch as AddPartitionsToTxn
    /// and AddOffsetsToTxn do.
    fn producer_entry(&self, id: &str, producer: ProducerIdAndEpoch) -> Result<&Entry> {
        if id.is_empty() {
            return Err(Error::InvalidRequest);
        }
        self.owner(id)?;
        let entry = self
            .entries
            .get(id)
            .filter(|e| e.persisted)
            .ok_or(Error::InvalidProducerIdMapping)?;
        let m = &entry.meta;
        if m.state.is_prepare() && client_identity(m) == producer {
            // A version 2 client already holds the producer id it continues with after an
            // epoch overflow; its transaction starts once the markers are written.
            return Err(Error::ConcurrentTransactions);
        }
        if m.producer_id != producer.producer_id {
            return Err(Error::InvalidProducerIdMapping);
        }
        if m.producer_epoch != producer.epoch {
            return Err(Error::ProducerFenced);
        }
        Ok(entry)
    }

    /// Handles EndTxn. The answer comes as an [`Output::EndTxn`] for `request`: at once for
    /// errors and retries of a completed EndTxn, after PrepareCommit/PrepareAbort is persisted
    /// otherwise (then the markers are sent: the client need not wait for them). With
    /// transaction version 2 the epoch is bumped and the answer carries the producer id and
    /// epoch to continue with; `ids` supplies a new producer id when that exhausts the epoch.
    pub fn end_txn(
        &mut self,
        now: Millis,
        request: RequestId,
        req: &EndTxnRequest,
        ids: &mut impl ProducerIdAllocator,
    ) {
        let then = Then::EndTxn(request);
        let decided = self.decide_end(now, req, ids);
        let result = match decided {
            Ok(EndDecision::Answered(identity)) => {
                self.answer(then, Ok(identity));
                Ok(())
            }
            Ok(EndDecision::Write(target)) => self.begin(&req.transactional_id, Some(target), then),
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            self.answer(then, Err(error));
        }
    }

    fn decide_end(
        &self,
        now: Millis,
        req: &EndTxnRequest,
        ids: &mut impl ProducerIdAllocator,
    ) -> Result<EndDecision> {
        let id = req.transactional_id.as_str();
        if id.is_empty() {
            return Err(Error::InvalidRequest);
        }
        self.owner(id)?;
        let entry = self
            .entries
            .get(id)
            .filter(|e| e.persisted)
            .ok_or(Error::InvalidProducerIdMapping)?;
        if req.transaction_version.bumps_epoch_on_end() {
            decide_end_v2(entry, req, ids, now)
        } else {
            decide_end_v1(entry, req, now)
        }
    }
}

/// InitProducerId against an existing (or just created) entry, in Kafka's order of checks.
fn prepare_init(
    entry: &Entry,
    request: RequestId,
    req: &InitProducerIdRequest,
    ids: &mut impl ProducerIdAllocator,
    now: Millis,
) -> Result<(TransactionLogValue, Then)> {
    let m = &entry.meta;
    if entry.pending.is_some() {
        return Err(Error::ConcurrentTransactions);
    }
    if let Some(expected) = req.producer {
        // KIP-360: a producer naming its id and epoch is fenced unless the id is brand new, it
        // names the current id, it names the id before a rotation at an exhausted epoch (a
        // retry of that rotation), or it names the id it was told to continue with after a
        // version 2 overflow.
        let valid = m.producer_epoch == NO_PRODUCER_EPOCH
            || expected.producer_id == m.producer_id
            || (expected.producer_id == m.previous_producer_id && epoch_exhausted(expected.epoch))
            || (m.next_producer_id >= 0 && expected.producer_id == m.next_producer_id);
        if !valid {
            return Err(Error::ProducerFenced);
        }
    }
    let timeout = req.transaction_timeout_ms;
    match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => Err(Error::ConcurrentTransactions),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let target = if epoch_exhausted(m.producer_epoch)
                && req.producer.is_none_or(|e| e.epoch == m.producer_epoch)
            {
                let new_id = ids.allocate().ok_or(Error::CoordinatorLoadInProgress)?;
                transition::rotate_producer_id(m, new_id, timeout, req.producer.is_some(), now)
            } else {
                transition::increment_epoch(m, timeout, req.producer, now)?
            };
            Ok((target, Then::InitProducerId(request)))
        }
        TxnState::Ongoing => Ok((transition::fence(m, now), Then::Fence(Some(request)))),
        // Neither is ever applied to an entry.
        TxnState::Dead | TxnState::PrepareEpochFence => Err(Error::InvalidTxnState),
    }
}

/// EndTxn for transaction versions 0 and 1: the producer's epoch must be the current one.
fn decide_end_v1(entry: &Entry, req: &EndTxnRequest, now: Millis) -> Result<EndDecision> {
    let m = &entry.meta;
    if m.producer_id != req.producer.producer_id {
        return Err(Error::InvalidProducerIdMapping);
    }
    if m.producer_epoch != req.producer.epoch {
        return Err(Error::ProducerFenced);
    }
    if entry.pending.is_some() {
        return Err(Error::ConcurrentTransactions);
    }
    use TransactionResult::{Abort, Commit};
    match (m.state, req.result) {
        (TxnState::Ongoing, result) => Ok(EndDecision::Write(transition::end(
            m,
            result,
            req.transaction_version,
            -1,
            false,
            now,
        ))),
        // A retry of the EndTxn that decided the transaction.
        (TxnState::CompleteCommit, Commit) | (TxnState::CompleteAbort, Abort) => {
            Ok(EndDecision::Answered(client_identity(m)))
        }
        (TxnState::PrepareCommit, Commit) | (TxnState::PrepareAbort, Abort) => {
            Err(Error::ConcurrentTransactions)
        }
        _ => Err(Error::InvalidTxnState),
    }
}

/// EndTxn for transaction version 2. The epoch is bumped at every end, so a retry carries the
/// epoch just before the current one (or the last epoch of the previous producer id after an
/// overflow), and the same epoch as the current one is a new request. An abort is accepted in
/// Empty and Complete* too, since the client may not know whether its transaction started.
///
/// | state          | abort, retry | abort, current | commit, retry | commit, current |
/// |----------------|--------------|----------------|---------------|-----------------|
/// | Empty          | fenced       | bump           | fenced        | invalid state   |
/// | CompleteAbort  | OK           | bump           | invalid state | invalid state   |
/// | CompleteCommit | invalid state| bump           | OK            | invalid state   |
fn decide_end_v2(
    entry: &Entry,
    req: &EndTxnRequest,
    ids: &mut impl ProducerIdAllocator,
    now: Millis,
) -> Result<EndDecision> {
    let m = &entry.meta;
    let p = req.producer;
    // Only an epoch bumped by a version 2 end (or by the fence of a version 2 transaction) can
    // be retried from the epoch before it. Kafka does not check this; without it, a producer
    // fenced by a newer InitProducerId could, after the new producer's version 1 EndTxn, pass
    // its old epoch off as a version 2 retry and be handed the new producer's epoch.
    let bumped_at_end = m.transaction_version.bumps_epoch_on_end();
    let retry_on_overflow = bumped_at_end
        && m.previous_producer_id == p.producer_id
        && p.epoch == i16::MAX - 1
        && m.producer_epoch == 0;
    let retry_on_bump = bumped_at_end && i32::from(m.producer_epoch) == i32::from(p.epoch) + 1;
    let valid_epoch = match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
        TxnState::CompleteCommit | TxnState::CompleteAbort => {
            retry_on_bump || retry_on_overflow || p.epoch == m.producer_epoch
        }
        _ => p.epoch == m.producer_epoch,
    };
    if m.producer_id != p.producer_id && !retry_on_overflow {
        return Err(Error::InvalidProducerIdMapping);
    }
    if !valid_epoch {
        return Err(Error::ProducerFenced);
    }
    if entry.pending.is_some() {
        return Err(Error::ConcurrentTransactions);
    }
    let is_retry = retry_on_bump || retry_on_overflow;
    let mut write = |no_partition_added: bool| -> Result<EndDecision> {
        let next_producer_id = if epoch_exhausted(m.producer_epoch) {
            ids.allocate().ok_or(Error::CoordinatorLoadInProgress)?
        } else {
            -1
        };
        Ok(EndDecision::Write(transition::end(
            m,
            req.result,
            req.transaction_version,
            next_producer_id,
            no_partition_added,
            now,
        )))
    };
    use TransactionResult::{Abort, Commit};
    match (m.state, req.result) {
        (TxnState::Ongoing, _) => write(false),
        (TxnState::CompleteCommit, Commit) | (TxnState::CompleteAbort, Abort) if is_retry => {
            Ok(EndDecision::Answered(client_identity(m)))
        }
        (TxnState::CompleteCommit, Abort) if is_retry => Err(Error::InvalidTxnState),
        (TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Empty, Abort) => {
            write(true)
        }
        (TxnState::PrepareCommit, Commit) | (TxnState::PrepareAbort, Abort) => {
            Err(Error::ConcurrentTransactions)
        }
        _ => Err(Error::InvalidTxnState),
    }
}
