//! The coordinator's inputs and outputs, in Kafka's vocabulary but free of any wire format: the
//! broker converts protocol messages to and from these.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::error::Error;

/// Milliseconds since the Unix epoch: the coordinator's clock.
///
/// Wall-clock time, as Kafka uses, because transaction start and update timestamps are persisted
/// and compared against the clock after a failover (timeouts, transactional id expiration).
pub type Millis = i64;

/// "No producer id": Kafka's `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;

/// "No producer epoch": Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// An opaque token for a request the coordinator answers later, after a record is persisted.
/// The broker picks the value; the coordinator hands it back in exactly one response [`Output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Identifies one [`Output::Persist`]; the broker reports its outcome with
/// [`Coordinator::persisted`](crate::Coordinator::persisted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistToken(pub u64);

/// Identifies one decided transaction's [`TxnMarkers`]; the broker quotes it in
/// [`Coordinator::markers_written`](crate::Coordinator::markers_written). Needed because with
/// transaction versions 0 and 1 consecutive transactions of a producer share its epoch, so the
/// producer id and epoch alone cannot tell a late report for the previous transaction from one
/// for the current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MarkersToken(pub u64);

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl From<(String, i32)> for TopicPartition {
    fn from((topic, partition): (String, i32)) -> Self {
        Self { topic, partition }
    }
}

/// A producer id with one of its epochs: the identity a transactional producer writes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerIdAndEpoch {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
}

impl ProducerIdAndEpoch {
    /// A producer id and epoch.
    pub fn new(producer_id: i64, epoch: i16) -> Self {
        Self { producer_id, epoch }
    }
}

/// No producer id and no epoch (`-1`, `-1`), as requests encode "none".
impl Default for ProducerIdAndEpoch {
    fn default() -> Self {
        Self::new(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
    }
}

/// The transaction protocol version a client negotiated (the `transaction.version` feature,
/// KIP-890): 0 and 1 are the classic protocol, 2 bumps the producer epoch at every EndTxn and
/// lets partition leaders add partitions on the client's behalf.
///
/// A number rather than an enum because it is persisted, and a later version read from the log
/// must survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TransactionVersion(pub i16);

impl TransactionVersion {
    /// The classic protocol (KIP-98).
    pub const V0: Self = Self(0);
    /// The classic protocol with a flexible `__transaction_state` value.
    pub const V1: Self = Self(1);
    /// KIP-890 part 2: an epoch bump at every EndTxn.
    pub const V2: Self = Self(2);

    /// Whether EndTxn bumps the producer epoch (transaction version 2 and later).
    pub fn bumps_epoch_on_end(self) -> bool {
        self.0 >= 2
    }
}

/// The outcome of a transaction, as EndTxn asks for it and markers record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransactionResult {
    /// Commit: the transaction's records become visible to `read_committed` consumers.
    Commit,
    /// Abort: the transaction's records are skipped.
    Abort,
}

impl TransactionResult {
    /// `true` for [`TransactionResult::Commit`], as EndTxn's `committed` and WriteTxnMarkers'
    /// `transaction_result` encode it.
    pub fn is_commit(self) -> bool {
        self == Self::Commit
    }
}

/// The state of a transactional id, with Kafka's ids (persisted) and names (DescribeTransactions,
/// ListTransactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    /// No transaction in progress (after InitProducerId).
    Empty,
    /// Partitions have been added; the transaction is open.
    Ongoing,
    /// EndTxn(commit) is persisted; commit markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fencing InitProducerId is persisted; abort markers are being
    /// written.
    PrepareAbort,
    /// Every commit marker is written.
    CompleteCommit,
    /// Every abort marker is written.
    CompleteAbort,
    /// The transactional id expired and is being deleted. Kafka writes a tombstone rather than this
    /// state, and so does Weir; the id exists so that a value carrying it still decodes.
    Dead,
    /// An Ongoing transaction is being aborted to fence its producer. Never persisted (the
    /// record written is PrepareAbort with the bumped epoch); reported while that write is in
    /// flight.
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in id order.
    pub const ALL: [Self; 8] = [
        Self::Empty,
        Self::Ongoing,
        Self::PrepareCommit,
        Self::PrepareAbort,
        Self::CompleteCommit,
        Self::CompleteAbort,
        Self::Dead,
        Self::PrepareEpochFence,
    ];

    /// Kafka's name for the state, as DescribeTransactions and ListTransactions report it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
            Self::Dead => "Dead",
            Self::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Parses a state name exactly, as ListTransactions' `state_filters` does (Kafka matches
    /// case-sensitively).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The state's id in a `__transaction_state` value (`TransactionStatus`).
    pub fn id(self) -> i8 {
        match self {
            Self::Empty => 0,
            Self::Ongoing => 1,
            Self::PrepareCommit => 2,
            Self::PrepareAbort => 3,
            Self::CompleteCommit => 4,
            Self::CompleteAbort => 5,
            Self::Dead => 6,
            Self::PrepareEpochFence => 7,
        }
    }

    /// The state with a `TransactionStatus` id.
    pub fn from_id(id: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }

    /// Kafka's transition table: whether a transactional id in state `from` may move to `self`.
    ///
    /// Empty ← Empty, CompleteCommit, CompleteAbort (InitProducerId);
    /// Ongoing ← Ongoing, Empty, CompleteCommit, CompleteAbort (add partitions or offsets);
    /// PrepareCommit ← Ongoing; PrepareAbort ← Ongoing, PrepareEpochFence, and (transaction
    /// version 2 only) Empty, CompleteCommit, CompleteAbort; CompleteCommit ← PrepareCommit;
    /// CompleteAbort ← PrepareAbort; Dead ← Empty, CompleteCommit, CompleteAbort;
    /// PrepareEpochFence ← Ongoing.
    pub fn can_follow(self, from: Self) -> bool {
        use TxnState::*;
        match self {
            Empty => matches!(from, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(from, Ongoing | Empty | CompleteCommit | CompleteAbort),
            PrepareCommit => from == Ongoing,
            PrepareAbort => matches!(
                from,
                Ongoing | PrepareEpochFence | Empty | CompleteCommit | CompleteAbort
            ),
            CompleteCommit => from == PrepareCommit,
            CompleteAbort => from == PrepareAbort,
            Dead => matches!(from, Empty | CompleteCommit | CompleteAbort),
            PrepareEpochFence => from == Ongoing,
        }
    }

    /// Whether a transactional id in this state may expire after
    /// `transactional.id.expiration.ms` without activity: only with no transaction open.
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            Self::Empty | Self::CompleteCommit | Self::CompleteAbort
        )
    }

    /// PrepareCommit or PrepareAbort: the outcome is decided and markers are being written.
    pub fn is_prepare(self) -> bool {
        matches!(self, Self::PrepareCommit | Self::PrepareAbort)
    }
}

/// An InitProducerId request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitProducerIdRequest {
    /// Transactional id; `None` for an idempotent (non-transactional) producer, which just gets a
    /// fresh producer id at epoch 0.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms` of the producer.
    pub transaction_timeout_ms: i32,
    /// The producer's current id and epoch (InitProducerId v3+, KIP-360), when it is recovering
    /// rather than starting: `None` when the request carries `-1`/`-1`.
    pub producer: Option<ProducerIdAndEpoch>,
}

/// An AddPartitionsToTxn request for one transaction (v4+ batches several; the broker splits
/// them). Also the verify-only form of KIP-890 part 1, via
/// [`Coordinator::verify_partitions_in_txn`](crate::Coordinator::verify_partitions_in_txn).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddPartitionsRequest {
    /// Transactional id.
    pub transactional_id: String,
    /// The producer's id and epoch.
    pub producer: ProducerIdAndEpoch,
    /// Partitions to add (or to check).
    pub partitions: Vec<TopicPartition>,
    /// The client's transaction version. A partition leader adding a partition implicitly for a
    /// version 2 client (KIP-890 part 2) passes [`TransactionVersion::V2`].
    pub transaction_version: TransactionVersion,
}

/// An AddOffsetsToTxn request: adds the group's `__consumer_offsets` partition to the
/// transaction so TxnOffsetCommit can write there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddOffsetsRequest {
    /// Transactional id.
    pub transactional_id: String,
    /// The producer's id and epoch.
    pub producer: ProducerIdAndEpoch,
    /// The consumer group whose offsets the transaction commits.
    pub group_id: String,
    /// The client's transaction version.
    pub transaction_version: TransactionVersion,
}

/// An EndTxn request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxnRequest {
    /// Transactional id.
    pub transactional_id: String,
    /// The producer's id and epoch.
    pub producer: ProducerIdAndEpoch,
    /// Commit or abort.
    pub result: TransactionResult,
    /// The client's transaction version: [`TransactionVersion::V2`] when EndTxn is v5+ and the
    /// cluster's `transaction.version` feature is 2, which makes EndTxn bump the epoch.
    pub transaction_version: TransactionVersion,
}

/// Transaction markers to write: one control record per partition, for one producer id and
/// epoch. Grouping the partitions by leader into WriteTxnMarkers requests is the broker's job;
/// it reports each written partition with
/// [`Coordinator::markers_written`](crate::Coordinator::markers_written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMarkers {
    /// Quote in `markers_written`.
    pub token: MarkersToken,
    /// The transactional id the markers end a transaction of.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch the markers carry. With transaction version 2 it is already the bumped
    /// epoch, which fences the producer's in-flight writes of the ended transaction.
    pub producer_epoch: i16,
    /// Commit or abort.
    pub result: TransactionResult,
    /// The `__transaction_state` partition leader epoch this coordinator loaded the
    /// transaction at; partition leaders reject markers from an older coordinator.
    pub coordinator_epoch: i32,
    /// The transaction version of the transaction (WriteTxnMarkers v2 `TransactionVersion`).
    pub transaction_version: TransactionVersion,
    /// The partitions to write to.
    pub partitions: Vec<TopicPartition>,
}

/// One key/value to append to `__transaction_state`; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistRecord {
    /// Encoded [`record::encode_key`](crate::record::encode_key).
    pub key: Bytes,
    /// Encoded [`TransactionLogValue`](crate::record::TransactionLogValue), or `None` to delete
    /// the transactional id.
    pub value: Option<Bytes>,
}

/// Something the broker must do after a call into the [`Coordinator`](crate::Coordinator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Append `record` to `__transaction_state` partition `partition`, which this broker leads
    /// at `coordinator_epoch`, then call
    /// [`Coordinator::persisted`](crate::Coordinator::persisted) with `token` and the outcome.
    /// The request the record belongs to is answered only then.
    Persist {
        /// Hand back to `persisted`.
        token: PersistToken,
        /// The `__transaction_state` partition.
        partition: i32,
        /// The leader epoch the coordinator loaded that partition at.
        coordinator_epoch: i32,
        /// The record.
        record: PersistRecord,
    },
    /// Answer an InitProducerId request.
    InitProducerId {
        /// The request being answered.
        request: RequestId,
        /// The producer id and epoch to use.
        response: Result<ProducerIdAndEpoch, Error>,
    },
    /// Answer an AddPartitionsToTxn request: the result applies to every partition of it.
    AddPartitions {
        /// The request being answered.
        request: RequestId,
        /// Its result.
        response: Result<(), Error>,
    },
    /// Answer an AddOffsetsToTxn request.
    AddOffsets {
        /// The request being answered.
        request: RequestId,
        /// Its result.
        response: Result<(), Error>,
    },
    /// Answer an EndTxn request.
    EndTxn {
        /// The request being answered.
        request: RequestId,
        /// The producer id and epoch to use from now on (EndTxn v5+): with transaction version
        /// 2 the bumped epoch, or a new producer id at epoch 0 when the epoch ran out; otherwise
        /// the request's own.
        response: Result<ProducerIdAndEpoch, Error>,
    },
    /// Write transaction markers.
    WriteMarkers(TxnMarkers),
}

/// A transaction in a DescribeTransactions response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// Transactional id.
    pub transactional_id: String,
    /// State.
    pub state: TxnState,
    /// Transaction timeout.
    pub transaction_timeout_ms: i32,
    /// When the current (or last) transaction started, `-1` if none has.
    pub transaction_start_time_ms: i64,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Partitions in the transaction; while markers are being written, only those still
    /// without one.
    pub partitions: BTreeSet<TopicPartition>,
}

/// A transaction in a ListTransactions response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// State.
    pub state: TxnState,
}

/// ListTransactions filters; empty or negative filters match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTransactionsFilter {
    /// State names (Kafka's, case-sensitive); names that match no state are returned in
    /// [`ListTransactionsResponse::unknown_state_filters`].
    pub states: Vec<String>,
    /// Producer ids.
    pub producer_ids: Vec<i64>,
    /// Only transactions whose start time is more than this many milliseconds ago (v1+);
    /// negative for no filter.
    pub duration_ms: i64,
}

impl Default for ListTransactionsFilter {
    fn default() -> Self {
        Self {
            states: Vec::new(),
            producer_ids: Vec::new(),
            duration_ms: -1,
        }
    }
}

/// A ListTransactions response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListTransactionsResponse {
    /// State filters that name no state.
    pub unknown_state_filters: Vec<String>,
    /// Matching transactions, by transactional id.
    pub transactions: Vec<TransactionListing>,
}
