//! The coordinator: one [`Entry`] per transactional id, each with at most one state transition
//! in flight. A transition is computed (`transition`), written (`Output::Persist`), and only
//! applied when the broker reports the append with [`Coordinator::persisted`]; a failed append
//! leaves the entry as it was. Request handlers (InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn) are in `requests`, the admin APIs and load/unload in `admin`.

use std::collections::{BTreeMap, BTreeSet};
use std::mem;

use crate::config::Config;
use crate::error::{Error, PersistError, Result};
use crate::partition::partition_for;
use crate::record::{TransactionLogValue, encode_key};
use crate::transition;
use crate::types::{
    MarkersToken, Millis, Output, PersistRecord, PersistToken, ProducerIdAndEpoch, RequestId,
    TopicPartition, TransactionResult, TxnMarkers, TxnState,
};

/// What to do once a transition's record is persisted (or fails to be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Answer InitProducerId with the new producer id and epoch.
    InitProducerId(RequestId),
    /// An Ongoing transaction is aborted to fence its producer: send abort markers, and answer
    /// the InitProducerId that asked for it (if any; `None` for a timeout) with
    /// CONCURRENT_TRANSACTIONS so that it retries once the abort completes.
    Fence(Option<RequestId>),
    /// Answer AddPartitionsToTxn.
    AddPartitions(RequestId),
    /// Answer AddOffsetsToTxn.
    AddOffsets(RequestId),
    /// Answer EndTxn, then send markers.
    EndTxn(RequestId),
    /// Markers are written; nothing to answer.
    Complete,
    /// The transactional id expired; drop it once its tombstone is persisted.
    Expire,
}

impl Then {
    /// Transitions the coordinator started on its own, retried after a backoff when they fail.
    fn is_internal(self) -> bool {
        matches!(self, Self::Fence(None) | Self::Complete | Self::Expire)
    }
}

/// A transition whose record is being appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) token: PersistToken,
    /// The state to apply once persisted; `None` for a tombstone.
    pub(crate) target: Option<TransactionLogValue>,
    pub(crate) then: Then,
}

/// One transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its `__transaction_state` partition.
    pub(crate) partition: i32,
    /// The state as last persisted (for a new id whose first record is in flight, the
    /// placeholder Kafka also keeps: producer id allocated, epoch -1, Empty).
    pub(crate) meta: TransactionLogValue,
    /// Whether `meta` has been persisted; an id whose first record fails is forgotten.
    pub(crate) persisted: bool,
    /// The transition in flight, if any. Requests that would start another get
    /// CONCURRENT_TRANSACTIONS.
    pub(crate) pending: Option<Pending>,
    /// In PrepareCommit/PrepareAbort: partitions whose marker the broker has not confirmed.
    /// In memory only, as in Kafka: a reload sends every partition's marker again, which
    /// partition leaders accept idempotently.
    pub(crate) markers_pending: BTreeSet<TopicPartition>,
    /// The token of the markers being written, while in PrepareCommit/PrepareAbort.
    pub(crate) markers_token: Option<MarkersToken>,
    /// After a failed internal write: not before then.
    pub(crate) retry_at: Option<Millis>,
}

impl Entry {
    pub(crate) fn new(partition: i32, meta: TransactionLogValue, persisted: bool) -> Self {
        Self {
            partition,
            meta,
            persisted,
            pending: None,
            markers_pending: BTreeSet::new(),
            markers_token: None,
            retry_at: None,
        }
    }

    /// When `tick` has work for this entry: a transaction timing out, an idle transactional id
    /// expiring, or a completion to (re)try.
    pub(crate) fn deadline(&self, config: &Config) -> Option<Millis> {
        if self.pending.is_some() || !self.persisted {
            return None;
        }
        let m = &self.meta;
        let due = match m.state {
            // Kafka aborts once `start + timeout < now`.
            TxnState::Ongoing => m
                .start_timestamp_ms
                .saturating_add(i64::from(m.transaction_timeout_ms))
                .saturating_add(1),
            s if s.expiration_allowed() => m
                .last_update_timestamp_ms
                .saturating_add(config.transactional_id_expiration_ms),
            s if s.is_prepare() && self.markers_pending.is_empty() => m.last_update_timestamp_ms,
            _ => return None,
        };
        Some(self.retry_at.map_or(due, |r| r.max(due)))
    }

    /// The state reported to DescribeTransactions and ListTransactions: PrepareEpochFence while
    /// a fencing abort is being written.
    pub(crate) fn reported_state(&self) -> TxnState {
        match self.pending.as_ref().map(|p| p.then) {
            Some(Then::Fence(_)) => TxnState::PrepareEpochFence,
            _ => self.meta.state,
        }
    }
}

/// The transaction coordinator for the transactional ids whose `__transaction_state`
/// partitions this broker leads.
///
/// Every call takes `now`; calls that change state queue [`Output`]s, which the broker takes
/// with [`Coordinator::take_outputs`] after each call. The broker arms one timer for
/// [`Coordinator::next_deadline`] and calls [`Coordinator::tick`] when it fires.
#[derive(Debug)]
pub struct Coordinator {
    pub(crate) config: Config,
    /// Loaded `__transaction_state` partitions and the leader epoch each was loaded at.
    pub(crate) loaded: BTreeMap<i32, i32>,
    pub(crate) entries: BTreeMap<String, Entry>,
    /// Which transactional id each in-flight append belongs to.
    pub(crate) tokens: BTreeMap<PersistToken, String>,
    pub(crate) outputs: Vec<Output>,
    next_token: u64,
}

impl Coordinator {
    /// A coordinator that leads no partition yet: every request gets NOT_COORDINATOR until
    /// [`Coordinator::load`].
    pub fn new(config: Config) -> Self {
        Self {
            config,
            loaded: BTreeMap::new(),
            entries: BTreeMap::new(),
            tokens: BTreeMap::new(),
            outputs: Vec::new(),
            next_token: 0,
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

    /// The `__transaction_state` partition of `transactional_id` (FindCoordinator).
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.config.state_log_partitions)
    }

    /// The earliest time [`Coordinator::tick`] has work: a transaction timing out, a
    /// transactional id expiring, or a failed write to retry. Entries with a write in flight
    /// have none until it is reported.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.entries
            .values()
            .filter_map(|e| e.deadline(&self.config))
            .min()
    }

    /// Handles every timer due at `now`: aborts transactions open longer than their timeout
    /// (bumping the epoch, which fences the producer), deletes transactional ids idle for
    /// `transactional.id.expiration.ms`, and retries failed completions.
    pub fn tick(&mut self, now: Millis) {
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline(&self.config).is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let state = entry.meta.state;
            let started = match state {
                TxnState::Ongoing => {
                    let target = transition::fence(&entry.meta, now);
                    self.begin(&id, Some(target), Then::Fence(None))
                }
                s if s.expiration_allowed() => self.begin(&id, None, Then::Expire),
                s if s.is_prepare() => self.begin_complete(&id, now),
                _ => Ok(()),
            };
            if started.is_err() {
                // Not reachable with a consistent entry; back off rather than spin.
                if let Some(e) = self.entries.get_mut(&id) {
                    e.retry_at = Some(now.saturating_add(self.config.retry_backoff_ms));
                }
            }
        }
    }

    /// Reports the outcome of the append behind an [`Output::Persist`]. On success the
    /// transition takes effect and its request is answered (and markers are sent after a
    /// PrepareCommit or PrepareAbort); on failure the transactional id stays as it was and the
    /// request gets NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or UNKNOWN_SERVER_ERROR
    /// ([`PersistError::client_error`]). Tokens from before an unload are ignored: their
    /// requests were answered NOT_COORDINATOR then.
    pub fn persisted(
        &mut self,
        now: Millis,
        token: PersistToken,
        result: Result<(), PersistError>,
    ) {
        let Some(id) = self.tokens.remove(&token) else {
            return;
        };
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.pending.as_ref().is_none_or(|p| p.token != token) {
            return;
        }
        let Some(pending) = entry.pending.take() else {
            return;
        };
        match result {
            Err(e) => {
                if !entry.persisted {
                    self.entries.remove(&id);
                } else if pending.then.is_internal() {
                    entry.retry_at = Some(now.saturating_add(self.config.retry_backoff_ms));
                }
                self.answer(pending.then, Err(e.client_error()));
            }
            Ok(()) => {
                let Some(target) = pending.target else {
                    // The tombstone is durable: the transactional id is gone.
                    self.entries.remove(&id);
                    return;
                };
                entry.meta = target;
                entry.persisted = true;
                entry.retry_at = None;
                entry.markers_token = None;
                let identity = client_identity(&entry.meta);
                match pending.then {
                    Then::Fence(request) => {
                        if let Some(request) = request {
                            self.outputs.push(Output::InitProducerId {
                                request,
                                response: Err(Error::ConcurrentTransactions),
                            });
                        }
                        self.start_markers(&id, now);
                    }
                    Then::EndTxn(_) => {
                        self.answer(pending.then, Ok(identity));
                        self.start_markers(&id, now);
                    }
                    then => self.answer(then, Ok(identity)),
                }
            }
        }
    }

    /// Reports that the markers of `partitions` are written for the [`TxnMarkers`] of
    /// `transactional_id` with `token`. Once every partition has its marker, CompleteCommit or
    /// CompleteAbort is written.
    ///
    /// The broker retries a marker that failed for a retriable reason itself, and reports a
    /// partition whose topic was deleted as written, as Kafka does. Reports for other markers
    /// (an earlier transaction, a previous load) are ignored.
    pub fn markers_written(
        &mut self,
        now: Millis,
        transactional_id: &str,
        token: MarkersToken,
        partitions: &[TopicPartition],
    ) {
        let Some(entry) = self.entries.get_mut(transactional_id) else {
            return;
        };
        if entry.pending.is_some()
            || !entry.meta.state.is_prepare()
            || entry.markers_token != Some(token)
            || entry.markers_pending.is_empty()
        {
            return;
        }
        for tp in partitions {
            entry.markers_pending.remove(tp);
        }
        if entry.markers_pending.is_empty() {
            // A failure here leaves `retry_at` for `tick`; nothing to answer.
            let _ = self.begin_complete(transactional_id, now);
        }
    }

    /// The loaded partition that owns `transactional_id`, or NOT_COORDINATOR.
    pub(crate) fn owner(&self, transactional_id: &str) -> Result<i32> {
        let partition = self.partition_for(transactional_id);
        if self.loaded.contains_key(&partition) {
            Ok(partition)
        } else {
            Err(Error::NotCoordinator)
        }
    }

    /// Starts a transition: checks it against Kafka's table, queues its record, and parks the
    /// entry until [`Coordinator::persisted`].
    pub(crate) fn begin(
        &mut self,
        id: &str,
        target: Option<TransactionLogValue>,
        then: Then,
    ) -> Result<()> {
        let Some(entry) = self.entries.get_mut(id) else {
            return Err(Error::InvalidProducerIdMapping);
        };
        if entry.pending.is_some() {
            return Err(Error::ConcurrentTransactions);
        }
        let from = entry.meta.state;
        let to = target.as_ref().map_or(TxnState::Dead, |t| t.state);
        let via_fence = matches!(then, Then::Fence(_));
        let valid = if via_fence {
            TxnState::PrepareEpochFence.can_follow(from)
                && to.can_follow(TxnState::PrepareEpochFence)
        } else {
            to.can_follow(from)
        };
        if !valid {
            return Err(Error::InvalidTxnState);
        }
        let Some(&coordinator_epoch) = self.loaded.get(&entry.partition) else {
            return Err(Error::NotCoordinator);
        };
        self.next_token += 1;
        let token = PersistToken(self.next_token);
        let record = PersistRecord {
            key: encode_key(id),
            value: target.as_ref().map(TransactionLogValue::encode),
        };
        entry.pending = Some(Pending {
            token,
            target,
            then,
        });
        self.tokens.insert(token, id.to_owned());
        self.outputs.push(Output::Persist {
            token,
            partition: entry.partition,
            coordinator_epoch,
            record,
        });
        Ok(())
    }

    /// After a PrepareCommit/PrepareAbort is persisted (or loaded): send the markers, or
    /// complete at once when the transaction has no partition.
    pub(crate) fn start_markers(&mut self, id: &str, now: Millis) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let m = &entry.meta;
        let result = match m.state {
            TxnState::PrepareCommit => TransactionResult::Commit,
            TxnState::PrepareAbort => TransactionResult::Abort,
            _ => return,
        };
        entry.markers_pending = m.partitions.clone();
        if entry.markers_pending.is_empty() {
            let _ = self.begin_complete(id, now);
            return;
        }
        let coordinator_epoch = self.loaded.get(&entry.partition).copied().unwrap_or(-1);
        self.next_token += 1;
        let token = MarkersToken(self.next_token);
        entry.markers_token = Some(token);
        self.outputs.push(Output::WriteMarkers(TxnMarkers {
            token,
            transactional_id: id.to_owned(),
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            result,
            coordinator_epoch,
            transaction_version: m.transaction_version,
            partitions: m.partitions.iter().cloned().collect(),
        }));
    }

    fn begin_complete(&mut self, id: &str, now: Millis) -> Result<()> {
        let Some(entry) = self.entries.get(id) else {
            return Ok(());
        };
        let target = transition::complete(&entry.meta, now);
        let result = self.begin(id, Some(target), Then::Complete);
        if result.is_err() {
            if let Some(e) = self.entries.get_mut(id) {
                e.retry_at = Some(now.saturating_add(self.config.retry_backoff_ms));
            }
        }
        result
    }

    /// Answers the request behind `then`, if any.
    pub(crate) fn answer(&mut self, then: Then, result: Result<ProducerIdAndEpoch>) {
        let output = match then {
            Then::InitProducerId(request) | Then::Fence(Some(request)) => Output::InitProducerId {
                request,
                response: result,
            },
            Then::AddPartitions(request) => Output::AddPartitions {
                request,
                response: result.map(|_| ()),
            },
            Then::AddOffsets(request) => Output::AddOffsets {
                request,
                response: result.map(|_| ()),
            },
            Then::EndTxn(request) => Output::EndTxn {
                request,
                response: result,
            },
            Then::Fence(None) | Then::Complete | Then::Expire => return,
        };
        self.outputs.push(output);
    }

    /// Forgets one transactional id (unload, or a reload replacing it), answering its parked
    /// request NOT_COORDINATOR.
    pub(crate) fn release(&mut self, id: &str) {
        let Some(entry) = self.entries.remove(id) else {
            return;
        };
        if let Some(pending) = entry.pending {
            self.tokens.remove(&pending.token);
            self.answer(pending.then, Err(Error::NotCoordinator));
        }
    }
}

/// The producer id and epoch a client continues with: with transaction version 2, once an
/// EndTxn ran the epoch out, the next producer id at epoch 0.
pub(crate) fn client_identity(m: &TransactionLogValue) -> ProducerIdAndEpoch {
    if m.next_producer_id >= 0 {
        ProducerIdAndEpoch::new(m.next_producer_id, 0)
    } else {
        ProducerIdAndEpoch::new(m.producer_id, m.producer_epoch)
    }
}
