//! Transactions (the Java client's `TransactionManager`): the transaction's state, what each
//! call may do in it, and the requests to the transaction and group coordinators.
//!
//! The state lives in the producer's [`State`](super::accumulator::State) so that the sender
//! sees it under the same lock as the batches: a partition's batches are drained only once
//! AddPartitionsToTxn has added it to the transaction (the sender asks for every partition
//! waiting at that moment in one request), and once the transaction has failed, batches not
//! yet sent are failed instead of sent.
//!
//! Errors follow the Java client: a *fatal* error (fenced, INVALID_TXN_STATE, authorization)
//! leaves the producer unusable, every later call returns it; an *abortable* error (a record
//! not delivered, an offset commit refused) leaves only `abort_transaction` usable.

use super::accumulator::{Batch, Shared};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use weir_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use weir_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest,
    TxnOffsetCommitRequest,
};
use weir_protocol::{ErrorCode, Request};

use crate::consumer::{ConsumerGroupMetadata, OffsetAndMetadata, TopicPartition};

/// A partition as the producer's queues key it.
pub(crate) type PartitionKey = (Arc<str>, i32);

/// Where a transactional producer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before `init_transactions` has succeeded.
    Uninitialized,
    /// Between transactions.
    Ready,
    /// After `begin_transaction`.
    InTransaction,
    /// `commit_transaction` runs (or timed out and may be called again).
    Committing,
    /// `abort_transaction` runs (or timed out and may be called again).
    Aborting,
    /// The transaction failed; only `abort_transaction` may go on.
    AbortableError,
    /// The producer failed for good.
    FatalError,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::Uninitialized => "before init_transactions",
            Phase::Ready => "outside a transaction (call begin_transaction first)",
            Phase::InTransaction => "inside a transaction",
            Phase::Committing => "while the transaction commits",
            Phase::Aborting => "while the transaction aborts",
            Phase::AbortableError => "after the transaction failed",
            Phase::FatalError => "after a fatal error",
        }
    }
}

/// The transactional state of a producer with a `transactional.id`.
#[derive(Debug)]
pub(crate) struct Transaction {
    pub(crate) id: String,
    pub(crate) timeout_ms: i32,
    pub(crate) phase: Phase,
    /// Why the transaction must abort (AbortableError) or the producer is unusable
    /// (FatalError).
    error: Option<Error>,
    /// Partitions AddPartitionsToTxn has added to the current transaction.
    pub(crate) added: HashSet<PartitionKey>,
    /// Partitions of the AddPartitionsToTxn in flight.
    pub(crate) adding: HashSet<PartitionKey>,
    /// AddOffsetsToTxn succeeded in the current transaction.
    offsets_added: bool,
    /// The transaction coordinator, until it answers NOT_COORDINATOR.
    coordinator: Option<i32>,
    /// A batch with a sequence number failed or was discarded: the broker's next expected
    /// sequence is unknown, so the epoch is bumped (KIP-360) before the next transaction and
    /// sequences start again at 0.
    pub(crate) bump_epoch: bool,
}

impl Transaction {
    pub(crate) fn new(id: String, timeout: Duration) -> Self {
        Self {
            id,
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            phase: Phase::Uninitialized,
            error: None,
            added: HashSet::new(),
            adding: HashSet::new(),
            offsets_added: false,
            coordinator: None,
            bump_epoch: false,
        }
    }

    /// Ok if `op` may run in the current phase (one of `allowed`), else the error to return:
    /// the fatal or abortable error that stopped the producer, or an illegal-state error.
    pub(crate) fn check(&self, op: &str, allowed: &[Phase]) -> Result<()> {
        if self.phase == Phase::FatalError {
            return Err(self.failure());
        }
        if allowed.contains(&self.phase) {
            return Ok(());
        }
        if self.phase == Phase::AbortableError {
            return Err(self.failure());
        }
        Err(Error::IllegalState(format!(
            "{op} is not allowed {}",
            self.phase.describe()
        )))
    }

    /// The error that stopped the transaction or producer, wrapped as its phase says.
    pub(crate) fn failure(&self) -> Error {
        let source = Box::new(
            self.error
                .as_ref()
                .map_or(Error::TransactionAborted, Error::duplicate),
        );
        match self.phase {
            Phase::FatalError => Error::FatalTransaction { source },
            _ => Error::AbortableTransaction { source },
        }
    }

    /// Records `err` as fatal or abortable (a fatal error is never downgraded) and returns it
    /// wrapped accordingly.
    pub(crate) fn fail(&mut self, err: Error) -> Error {
        let err = fenced(err);
        let fatal = is_fatal(&err);
        self.fail_as(err, fatal)
    }

    fn fail_as(&mut self, err: Error, fatal: bool) -> Error {
        if self.phase != Phase::FatalError {
            self.phase = if fatal {
                Phase::FatalError
            } else {
                Phase::AbortableError
            };
            self.error = Some(err);
        }
        self.failure()
    }

    /// A record of the transaction failed: the transaction must abort (or, fenced, the
    /// producer is done). Failures of an abort's own discarded batches change nothing.
    pub(crate) fn record_failed(&mut self, err: &Error, sequenced: bool) {
        if sequenced {
            self.bump_epoch = true;
        }
        let err = fenced(err.duplicate());
        // A partition leader answers INVALID_TXN_STATE when it cannot verify the batch with
        // the coordinator (KIP-890): the transaction is lost, not the producer.
        let fatal = is_fatal(&err) && err.code() != Some(ErrorCode::INVALID_TXN_STATE);
        match self.phase {
            Phase::InTransaction | Phase::Committing => {
                self.fail_as(err, fatal);
            }
            Phase::Aborting if fatal => {
                self.fail_as(err, fatal);
            }
            _ => {}
        }
    }

    /// Whether a batch must fail instead of being sent: the transaction failed.
    pub(crate) fn failed(&self) -> bool {
        matches!(self.phase, Phase::AbortableError | Phase::FatalError)
    }

    /// Back to Ready with nothing added, after EndTxn.
    fn finish(&mut self) {
        self.phase = Phase::Ready;
        self.error = None;
        self.added.clear();
        self.offsets_added = false;
    }
}

/// On the transactional path INVALID_PRODUCER_EPOCH is reported as fencing: a newer epoch
/// exists (another instance, or the coordinator's abort of a timed-out transaction), and the
/// next coordinator call would answer PRODUCER_FENCED anyway (docs/transactions.md).
fn fenced(err: Error) -> Error {
    match err {
        Error::Kafka {
            code: ErrorCode::INVALID_PRODUCER_EPOCH,
            message,
        } => Error::Kafka {
            code: ErrorCode::PRODUCER_FENCED,
            message: Some(message.unwrap_or_else(|| {
                "INVALID_PRODUCER_EPOCH: a newer producer epoch exists".to_string()
            })),
        },
        other => other,
    }
}

/// Errors after which the producer cannot go on.
fn is_fatal(err: &Error) -> bool {
    matches!(
        err.code(),
        Some(
            ErrorCode::PRODUCER_FENCED
                | ErrorCode::INVALID_PRODUCER_EPOCH
                | ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                | ErrorCode::INVALID_TXN_STATE
                | ErrorCode::CLUSTER_AUTHORIZATION_FAILED
                | ErrorCode::UNSUPPORTED_VERSION
                | ErrorCode::UNSUPPORTED_FOR_MESSAGE_FORMAT
        )
    ) || matches!(err, Error::UnsupportedVersion { .. })
}

/// How a coordinator's answer is handled.
enum Answer<T> {
    Done(T),
    /// Try again after a backoff.
    Retry(Error),
    /// Find the coordinator again, then try again.
    Refind(Error),
    /// Give up.
    Fail(Error),
}

/// The usual reading of a transaction coordinator's error code.
fn coordinator_answer(code: ErrorCode, message: Option<String>) -> Answer<()> {
    let error = Error::Kafka { code, message };
    match code {
        ErrorCode::NONE => Answer::Done(()),
        ErrorCode::NOT_COORDINATOR | ErrorCode::COORDINATOR_NOT_AVAILABLE => Answer::Refind(error),
        ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
        | ErrorCode::CONCURRENT_TRANSACTIONS
        | ErrorCode::REQUEST_TIMED_OUT
        | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        // Only ever answered for partitions next to one that failed.
        | ErrorCode::OPERATION_NOT_ATTEMPTED => Answer::Retry(error),
        _ => Answer::Fail(error),
    }
}

/// Whose coordinator a request goes to.
enum Target<'a> {
    Transaction,
    Group(&'a str),
}

/// Sends requests made by `make` to the coordinator until `read` accepts an answer, finding the
/// coordinator again when it moved, until `deadline` (`max.block.ms`). Gives up with the last
/// error, said to have been retried.
async fn call<R, T>(
    shared: &Shared,
    target: Target<'_>,
    deadline: Instant,
    mut make: impl FnMut(&Shared) -> R,
    mut read: impl FnMut(R::Response) -> Answer<T>,
) -> Result<T>
where
    R: Request,
{
    let mut backoff = shared.client.retry_backoff();
    loop {
        let node = match &target {
            Target::Transaction => {
                let cached = shared.state.lock().txn.as_ref().and_then(|t| t.coordinator);
                match cached {
                    Some(node) => Ok(node),
                    None => {
                        let id = transactional_id(shared);
                        let found = shared.client.find_coordinator_of(&id, 1).await;
                        if let (Ok(node), Some(txn)) = (&found, shared.state.lock().txn.as_mut()) {
                            txn.coordinator = Some(*node);
                        }
                        found
                    }
                }
            }
            Target::Group(group) => shared.client.find_coordinator_of(group, 0).await,
        };
        let error = match node {
            Err(err) => err,
            Ok(node) => match shared.client.send_to(node, make(shared)).await {
                Ok((response, _)) => match read(response) {
                    Answer::Done(value) => return Ok(value),
                    Answer::Retry(err) => err,
                    Answer::Refind(err) => {
                        forget_coordinator(shared);
                        err
                    }
                    Answer::Fail(err) => return Err(err),
                },
                Err(err) => {
                    forget_coordinator(shared);
                    err
                }
            },
        };
        let retriable = error.is_retriable()
            || matches!(
                error.code(),
                Some(ErrorCode::CONCURRENT_TRANSACTIONS | ErrorCode::OPERATION_NOT_ATTEMPTED)
            );
        if !retriable {
            return Err(error);
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::debug!(%error, "transactional request still failing, giving up");
            return Err(match error {
                Error::Kafka { code, message } => Error::Kafka {
                    code,
                    message: Some(format!(
                        "still failing after retrying for max.block.ms ({:?}){}",
                        shared.config.max_block,
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    )),
                },
                _ => Error::Timeout(shared.config.max_block),
            });
        }
        tracing::debug!(%error, "retrying transactional request");
        tokio::time::sleep(backoff.next().min(deadline - now)).await;
    }
}

fn forget_coordinator(shared: &Shared) {
    if let Some(txn) = shared.state.lock().txn.as_mut() {
        txn.coordinator = None;
    }
}

fn transactional_id(shared: &Shared) -> String {
    shared
        .state
        .lock()
        .txn
        .as_ref()
        .map(|t| t.id.clone())
        .unwrap_or_default()
}

/// Runs `f` on the transaction, or fails for a producer without a `transactional.id`.
fn with_txn<T>(shared: &Shared, f: impl FnOnce(&mut Transaction) -> Result<T>) -> Result<T> {
    let mut state = shared.state.lock();
    match state.txn.as_mut() {
        Some(txn) => f(txn),
        None => Err(Error::IllegalState(
            "transactions need a transactional.id".into(),
        )),
    }
}

fn identity(shared: &Shared) -> (i64, i16) {
    let producer = shared.state.lock().producer;
    (producer.id, producer.epoch)
}

/// InitProducerId for the transactional id: `current` is the producer id and epoch to bump
/// (KIP-360), or `None` for a fresh start that fences older instances. Resets every
/// partition's sequence.
async fn init_producer_id(shared: &Shared, current: Option<(i64, i16)>) -> Result<()> {
    let deadline = Instant::now() + shared.config.max_block;
    let (id, timeout_ms) = with_txn(shared, |t| Ok((t.id.clone(), t.timeout_ms)))?;
    let (producer_id, producer_epoch) = current.unwrap_or((-1, -1));
    let (new_id, new_epoch) = call(
        shared,
        Target::Transaction,
        deadline,
        |_| InitProducerIdRequest {
            transactional_id: Some(id.clone()),
            transaction_timeout_ms: timeout_ms,
            producer_id,
            producer_epoch,
            ..InitProducerIdRequest::default()
        },
        |response| match coordinator_answer(ErrorCode(response.error_code), None) {
            Answer::Done(()) => Answer::Done((response.producer_id, response.producer_epoch)),
            Answer::Retry(e) => Answer::Retry(e),
            Answer::Refind(e) => Answer::Refind(e),
            Answer::Fail(e) => Answer::Fail(e),
        },
    )
    .await?;
    let mut state = shared.state.lock();
    state.producer.id = new_id;
    state.producer.epoch = new_epoch;
    for queue in state.partitions.values_mut() {
        queue.next_sequence = 0;
    }
    if let Some(txn) = state.txn.as_mut() {
        txn.bump_epoch = false;
    }
    Ok(())
}

/// `init_transactions`.
pub(crate) async fn init_transactions(shared: &Shared) -> Result<()> {
    let _op = shared.txn_op.lock().await;
    with_txn(shared, |t| {
        t.check("init_transactions", &[Phase::Uninitialized])
    })?;
    match init_producer_id(shared, None).await {
        Ok(()) => {
            with_txn(shared, |t| {
                t.phase = Phase::Ready;
                Ok(())
            })?;
            Ok(())
        }
        // A timeout may be retried by calling again, as in the Java client.
        Err(err) if is_fatal(&fenced(err.duplicate())) => {
            Err(with_txn(shared, |t| Ok(t.fail(err)))?)
        }
        Err(err) => Err(err),
    }
}

/// `begin_transaction`.
pub(crate) fn begin_transaction(shared: &Shared) -> Result<()> {
    with_txn(shared, |t| {
        t.check("begin_transaction", &[Phase::Ready])?;
        t.phase = Phase::InTransaction;
        Ok(())
    })
}

/// A record of the transaction was refused before it reached a batch (an unknown partition,
/// too large, no metadata within `max.block.ms`): as in the Java client the transaction must
/// abort, so that a commit cannot leave the record out unnoticed. Errors of the call's state
/// itself change nothing.
pub(crate) fn send_failed(shared: &Shared, err: &Error) {
    if matches!(
        err,
        Error::IllegalState(_)
            | Error::FatalTransaction { .. }
            | Error::AbortableTransaction { .. }
            | Error::TransactionAborted
            | Error::Closed
    ) {
        return;
    }
    if let Some(txn) = shared.state.lock().txn.as_mut() {
        if txn.phase == Phase::InTransaction {
            txn.fail(err.duplicate());
        }
    }
}

/// Adds `partitions` to the transaction (AddPartitionsToTxn), for the sender. On failure the
/// transaction fails, and the sender fails the partitions' batches.
pub(crate) async fn add_partitions(shared: Arc<Shared>, partitions: Vec<PartitionKey>) {
    let result = send_add_partitions(&shared, &partitions).await;
    {
        let mut state = shared.state.lock();
        if let Some(txn) = state.txn.as_mut() {
            for key in &partitions {
                txn.adding.remove(key);
            }
            match result {
                Ok(()) => txn.added.extend(partitions),
                Err(err) => {
                    tracing::debug!(%err, "AddPartitionsToTxn failed");
                    txn.fail(err);
                }
            }
        }
    }
    shared.wake.notify_one();
    shared.txn_changed.notify_waiters();
}

async fn send_add_partitions(shared: &Shared, partitions: &[PartitionKey]) -> Result<()> {
    let deadline = Instant::now() + shared.config.max_block;
    let id = transactional_id(shared);
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, partition) in partitions {
        match topics.iter_mut().find(|t| *t.name == **topic) {
            Some(t) => t.partitions.push(*partition),
            None => topics.push(AddPartitionsToTxnTopic {
                name: topic.to_string(),
                partitions: vec![*partition],
                ..AddPartitionsToTxnTopic::default()
            }),
        }
    }
    call(
        shared,
        Target::Transaction,
        deadline,
        |shared| {
            let (producer_id, producer_epoch) = identity(shared);
            AddPartitionsToTxnRequest {
                v3_and_below_transactional_id: id.clone(),
                v3_and_below_producer_id: producer_id,
                v3_and_below_producer_epoch: producer_epoch,
                v3_and_below_topics: topics.clone(),
                ..AddPartitionsToTxnRequest::default()
            }
        },
        |response| {
            let top = ErrorCode(response.error_code);
            if top.is_error() {
                return coordinator_answer(top, None);
            }
            // v0-3 answer one result per partition; the worst one decides. Partitions not
            // attempted only accompany a real error, which is the one to act on.
            let mut worst = Answer::Done(());
            for result in response.results_by_topic_v3_and_below.iter().flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(move |p| (t.name.as_str(), p))
            }) {
                let (topic, p) = result;
                let code = ErrorCode(p.partition_error_code);
                let message = Some(format!(
                    "adding {topic}-{} to the transaction",
                    p.partition_index
                ));
                let answer = coordinator_answer(code, message);
                worst = match (worst, answer) {
                    (Answer::Fail(e), _) | (_, Answer::Fail(e)) => Answer::Fail(e),
                    (Answer::Refind(e), _) | (_, Answer::Refind(e)) => Answer::Refind(e),
                    (Answer::Retry(e), Answer::Retry(f)) => {
                        if e.code() == Some(ErrorCode::OPERATION_NOT_ATTEMPTED) {
                            Answer::Retry(f)
                        } else {
                            Answer::Retry(e)
                        }
                    }
                    (Answer::Retry(e), _) | (_, Answer::Retry(e)) => Answer::Retry(e),
                    (Answer::Done(()), Answer::Done(())) => Answer::Done(()),
                };
            }
            worst
        },
    )
    .await
}

/// `send_offsets_to_transaction`: AddOffsetsToTxn, then TxnOffsetCommit to the group's
/// coordinator.
pub(crate) async fn send_offsets(
    shared: &Shared,
    offsets: &[(TopicPartition, OffsetAndMetadata)],
    group: &ConsumerGroupMetadata,
) -> Result<()> {
    let _op = shared.txn_op.lock().await;
    with_txn(shared, |t| {
        t.check("send_offsets_to_transaction", &[Phase::InTransaction])
    })?;
    let id = transactional_id(shared);
    let result = async {
        let deadline = Instant::now() + shared.config.max_block;
        call(
            shared,
            Target::Transaction,
            deadline,
            |shared| {
                let (producer_id, producer_epoch) = identity(shared);
                AddOffsetsToTxnRequest {
                    transactional_id: id.clone(),
                    producer_id,
                    producer_epoch,
                    group_id: group.group_id.clone(),
                    ..AddOffsetsToTxnRequest::default()
                }
            },
            |response| coordinator_answer(ErrorCode(response.error_code), None),
        )
        .await?;
        with_txn(shared, |t| {
            t.offsets_added = true;
            Ok(())
        })?;
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (tp, offset) in offsets {
            let partition = TxnOffsetCommitRequestPartition {
                partition_index: tp.partition,
                committed_offset: offset.offset,
                committed_leader_epoch: -1,
                committed_metadata: Some(offset.metadata.clone()),
                ..TxnOffsetCommitRequestPartition::default()
            };
            match topics.iter_mut().find(|t| t.name == tp.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(TxnOffsetCommitRequestTopic {
                    name: tp.topic.clone(),
                    partitions: vec![partition],
                    ..TxnOffsetCommitRequestTopic::default()
                }),
            }
        }
        if topics.is_empty() {
            return Ok(());
        }
        call(
            shared,
            Target::Group(&group.group_id),
            deadline,
            |shared| {
                let (producer_id, producer_epoch) = identity(shared);
                TxnOffsetCommitRequest {
                    transactional_id: id.clone(),
                    group_id: group.group_id.clone(),
                    producer_id,
                    producer_epoch,
                    generation_id: group.generation_id,
                    member_id: group.member_id.clone(),
                    group_instance_id: group.group_instance_id.clone(),
                    topics: topics.clone(),
                    ..TxnOffsetCommitRequest::default()
                }
            },
            |response| {
                let mut worst = Answer::Done(());
                for topic in &response.topics {
                    for p in &topic.partitions {
                        let code = ErrorCode(p.error_code);
                        let message = Some(format!(
                            "committing the offset of {}-{} in the transaction",
                            topic.name, p.partition_index
                        ));
                        let answer = match code {
                            // The group moved on: the consumer must rejoin; this transaction
                            // aborts (Java's CommitFailedException).
                            ErrorCode::UNKNOWN_MEMBER_ID
                            | ErrorCode::ILLEGAL_GENERATION
                            | ErrorCode::FENCED_INSTANCE_ID
                            | ErrorCode::REBALANCE_IN_PROGRESS => {
                                Answer::Fail(Error::Kafka { code, message })
                            }
                            _ => coordinator_answer(code, message),
                        };
                        worst = match (worst, answer) {
                            (Answer::Fail(e), _) | (_, Answer::Fail(e)) => Answer::Fail(e),
                            (Answer::Refind(e), _) | (_, Answer::Refind(e)) => Answer::Refind(e),
                            (Answer::Retry(e), _) | (_, Answer::Retry(e)) => Answer::Retry(e),
                            (Answer::Done(()), Answer::Done(())) => Answer::Done(()),
                        };
                    }
                }
                worst
            },
        )
        .await
    }
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(err) => Err(with_txn(shared, |t| Ok(t.fail(err)))?),
    }
}

/// EndTxn, retried.
async fn end_txn(shared: &Shared, committed: bool) -> Result<()> {
    let deadline = Instant::now() + shared.config.max_block;
    let id = transactional_id(shared);
    call(
        shared,
        Target::Transaction,
        deadline,
        |shared| {
            let (producer_id, producer_epoch) = identity(shared);
            EndTxnRequest {
                transactional_id: id.clone(),
                producer_id,
                producer_epoch,
                committed,
                ..EndTxnRequest::default()
            }
        },
        |response| coordinator_answer(ErrorCode(response.error_code), None),
    )
    .await
}

/// Whether anything went to the coordinator in this transaction, so that there is one to end.
fn started(shared: &Shared) -> Result<bool> {
    with_txn(shared, |t| Ok(!t.added.is_empty() || t.offsets_added))
}

/// `commit_transaction`: flushes, then commits unless a record of the transaction failed.
pub(crate) async fn commit_transaction(shared: &Shared) -> Result<()> {
    let _op = shared.txn_op.lock().await;
    with_txn(shared, |t| {
        t.check(
            "commit_transaction",
            &[Phase::InTransaction, Phase::Committing],
        )?;
        t.phase = Phase::Committing;
        Ok(())
    })?;
    shared.flush().await;
    wait_for_adds(shared).await;
    // A record that failed meanwhile moved the phase to AbortableError (or fatal).
    with_txn(shared, |t| {
        t.check("commit_transaction", &[Phase::Committing])
    })?;
    if started(shared)? {
        end(shared, true).await?;
    }
    with_txn(shared, |t| {
        t.finish();
        Ok(())
    })
}

/// `abort_transaction`: discards what was not sent, waits for what was, aborts.
pub(crate) async fn abort_transaction(shared: &Shared) -> Result<()> {
    let _op = shared.txn_op.lock().await;
    with_txn(shared, |t| {
        t.check(
            "abort_transaction",
            &[Phase::InTransaction, Phase::AbortableError, Phase::Aborting],
        )?;
        t.phase = Phase::Aborting;
        Ok(())
    })?;
    discard_unsent(shared);
    shared.flush().await;
    // An AddPartitionsToTxn arriving after EndTxn would open a new transaction at the
    // coordinator that nothing ends.
    wait_for_adds(shared).await;
    // An AddPartitionsToTxn that failed meanwhile made the transaction abortable, which is
    // what is being done.
    with_txn(shared, |t| {
        t.check(
            "abort_transaction",
            &[Phase::Aborting, Phase::AbortableError],
        )?;
        t.phase = Phase::Aborting;
        Ok(())
    })?;
    if started(shared)? {
        end(shared, false).await?;
    }
    let bump = with_txn(shared, |t| Ok(t.bump_epoch))?;
    if bump {
        let current = identity(shared);
        if let Err(err) = init_producer_id(shared, Some(current)).await {
            // Without a new epoch the partitions' sequences cannot be trusted.
            return Err(with_txn(shared, |t| {
                t.phase = Phase::FatalError;
                t.error = Some(fenced(err));
                Ok(t.failure())
            })?);
        }
    }
    with_txn(shared, |t| {
        t.finish();
        Ok(())
    })
}

/// EndTxn; a timeout leaves the phase so the call can be repeated, any other failure is
/// fatal (the coordinator's state is no longer the producer's).
async fn end(shared: &Shared, committed: bool) -> Result<()> {
    match end_txn(shared, committed).await {
        Ok(()) => Ok(()),
        Err(err) if err.is_retriable() => Err(err),
        Err(err) => Err(with_txn(shared, |t| {
            t.phase = Phase::FatalError;
            t.error = Some(fenced(err));
            Ok(t.failure())
        })?),
    }
}

/// Waits until no AddPartitionsToTxn is in flight.
async fn wait_for_adds(shared: &Shared) {
    loop {
        let changed = shared.txn_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let adding = shared
            .state
            .lock()
            .txn
            .as_ref()
            .is_some_and(|t| !t.adding.is_empty());
        if !adding {
            return;
        }
        changed.await;
    }
}

/// Fails every batch not yet sent with [`Error::TransactionAborted`].
fn discard_unsent(shared: &Shared) {
    let mut discarded: Vec<Batch> = Vec::new();
    {
        let mut state = shared.state.lock();
        for queue in state.partitions.values_mut() {
            discarded.extend(queue.open.take());
            discarded.extend(queue.ready.drain(..));
            queue.retrying = false;
        }
    }
    for batch in discarded {
        shared.complete(batch, Err(Error::TransactionAborted));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn() -> Transaction {
        Transaction::new("t".into(), Duration::from_secs(60))
    }

    #[test]
    fn calls_in_the_wrong_phase_are_illegal_state_errors() {
        let mut t = txn();
        let err = t.check("send", &[Phase::InTransaction]).unwrap_err();
        assert!(
            matches!(&err, Error::IllegalState(m) if m.contains("before init_transactions")),
            "{err}"
        );
        t.phase = Phase::Ready;
        let err = t.check("send", &[Phase::InTransaction]).unwrap_err();
        assert!(
            matches!(&err, Error::IllegalState(m) if m.contains("begin_transaction first")),
            "{err}"
        );
        t.phase = Phase::InTransaction;
        assert!(t.check("send", &[Phase::InTransaction]).is_ok());
        let err = t.check("begin_transaction", &[Phase::Ready]).unwrap_err();
        assert!(matches!(err, Error::IllegalState(_)), "{err}");
    }

    #[test]
    fn a_failed_record_makes_the_transaction_abortable() {
        let mut t = txn();
        t.phase = Phase::InTransaction;
        t.record_failed(&Error::Timeout(Duration::from_secs(1)), true);
        assert_eq!(t.phase, Phase::AbortableError);
        assert!(t.bump_epoch);
        let err = t
            .check("commit_transaction", &[Phase::InTransaction])
            .unwrap_err();
        assert!(matches!(err, Error::AbortableTransaction { .. }), "{err}");
        assert!(
            t.check("abort_transaction", &[Phase::AbortableError])
                .is_ok()
        );
    }

    #[test]
    fn fencing_is_fatal_and_sticks() {
        let mut t = txn();
        t.phase = Phase::InTransaction;
        let err = t.fail(Error::kafka(ErrorCode::INVALID_PRODUCER_EPOCH));
        assert!(matches!(err, Error::FatalTransaction { .. }), "{err}");
        assert_eq!(err.code(), Some(ErrorCode::PRODUCER_FENCED));
        // A later abortable error does not downgrade it, and every call returns it.
        t.fail(Error::Timeout(Duration::from_secs(1)));
        for (op, allowed) in [
            ("abort_transaction", &[Phase::AbortableError][..]),
            ("begin_transaction", &[Phase::Ready][..]),
        ] {
            let err = t.check(op, allowed).unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::PRODUCER_FENCED), "{err}");
            assert!(matches!(err, Error::FatalTransaction { .. }));
        }
    }

    #[test]
    fn a_record_refused_by_verification_only_aborts_the_transaction() {
        let mut t = txn();
        t.phase = Phase::InTransaction;
        t.record_failed(&Error::kafka(ErrorCode::INVALID_TXN_STATE), false);
        assert_eq!(t.phase, Phase::AbortableError);
        assert!(!t.bump_epoch);
        let mut t = txn();
        t.phase = Phase::Committing;
        t.record_failed(&Error::kafka(ErrorCode::INVALID_PRODUCER_EPOCH), true);
        assert_eq!(t.phase, Phase::FatalError);
    }

    #[test]
    fn discarded_batches_of_an_abort_change_nothing() {
        let mut t = txn();
        t.phase = Phase::Aborting;
        t.record_failed(&Error::TransactionAborted, false);
        assert_eq!(t.phase, Phase::Aborting);
        t.record_failed(&Error::kafka(ErrorCode::PRODUCER_FENCED), false);
        assert_eq!(t.phase, Phase::FatalError);
    }
}
