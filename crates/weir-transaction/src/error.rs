use thiserror::Error;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the coordinator refused a request, or why a `__transaction_state` record is unreadable.
///
/// Each variant is one Kafka error code ([`Error::code`]); the broker turns them into response
/// error codes in one place.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// UNKNOWN_SERVER_ERROR (-1): the record could not be appended for a reason the client cannot
    /// act on (too large, storage failure), as Kafka reports it.
    #[error("unknown server error")]
    UnknownServerError,
    /// CORRUPT_MESSAGE (2): a `__transaction_state` record does not decode.
    #[error("corrupt __transaction_state record at byte {at}: {reason}")]
    CorruptRecord {
        /// Byte position in the key or value where decoding failed.
        at: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// COORDINATOR_LOAD_IN_PROGRESS (14): no producer id is available yet (the broker is
    /// waiting for a block from the controller), as Kafka's producer id manager says.
    #[error("coordinator load in progress")]
    CoordinatorLoadInProgress,
    /// COORDINATOR_NOT_AVAILABLE (15): the record could not be replicated in time.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// NOT_COORDINATOR (16): this broker does not lead the transactional id's
    /// `__transaction_state` partition (any more).
    #[error("not the coordinator for this transactional id")]
    NotCoordinator,
    /// INVALID_REQUEST (42): an empty transactional id.
    #[error("invalid request")]
    InvalidRequest,
    /// INVALID_PRODUCER_EPOCH (47): what [`Error::ProducerFenced`] is reported as to clients
    /// that predate PRODUCER_FENCED (see [`Error::code_for_version`]).
    #[error("invalid producer epoch")]
    InvalidProducerEpoch,
    /// INVALID_TXN_STATE (48): the request does not fit the transaction's state (EndTxn with
    /// the other result of a decided transaction, commit without a transaction).
    #[error("invalid transaction state")]
    InvalidTxnState,
    /// INVALID_PRODUCER_ID_MAPPING (49): the transactional id is unknown or has another producer
    /// id.
    #[error("invalid producer id mapping")]
    InvalidProducerIdMapping,
    /// INVALID_TRANSACTION_TIMEOUT (50): not in `1..=transaction.max.timeout.ms`.
    #[error("invalid transaction timeout")]
    InvalidTransactionTimeout,
    /// CONCURRENT_TRANSACTIONS (51): another operation on the transactional id is in flight, or
    /// the previous transaction's markers are still being written; retriable.
    #[error("concurrent transactions")]
    ConcurrentTransactions,
    /// PRODUCER_FENCED (90): a newer epoch of the producer exists.
    #[error("producer fenced")]
    ProducerFenced,
    /// TRANSACTIONAL_ID_NOT_FOUND (105).
    #[error("transactional id not found")]
    TransactionalIdNotFound,
    /// TRANSACTION_ABORTABLE (120): verify-only AddPartitionsToTxn found the partition outside
    /// the ongoing transaction, so the write must not be appended and the client must abort.
    #[error("transaction abortable")]
    TransactionAbortable,
}

impl Error {
    /// Kafka's numeric error code for this error.
    pub fn code(&self) -> i16 {
        match self {
            Self::UnknownServerError => -1,
            Self::CorruptRecord { .. } => 2,
            Self::CoordinatorLoadInProgress => 14,
            Self::CoordinatorNotAvailable => 15,
            Self::NotCoordinator => 16,
            Self::InvalidRequest => 42,
            Self::InvalidProducerEpoch => 47,
            Self::InvalidTxnState => 48,
            Self::InvalidProducerIdMapping => 49,
            Self::InvalidTransactionTimeout => 50,
            Self::ConcurrentTransactions => 51,
            Self::ProducerFenced => 90,
            Self::TransactionalIdNotFound => 105,
            Self::TransactionAbortable => 120,
        }
    }

    /// The code for a client that may predate PRODUCER_FENCED: `knows_producer_fenced` is true
    /// for InitProducerId v4+ and AddPartitionsToTxn, AddOffsetsToTxn and EndTxn v2+. Older
    /// clients get INVALID_PRODUCER_EPOCH instead, as Kafka's request handlers do.
    pub fn code_for_version(&self, knows_producer_fenced: bool) -> i16 {
        match self {
            Self::ProducerFenced if !knows_producer_fenced => Self::InvalidProducerEpoch.code(),
            other => other.code(),
        }
    }
}

/// Why an append to `__transaction_state` failed, as the broker reports it to
/// [`Coordinator::persisted`](crate::Coordinator::persisted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PersistError {
    /// This broker no longer leads the partition (NOT_LEADER_OR_FOLLOWER, a newer leader epoch,
    /// a storage error): the client is told NOT_COORDINATOR and looks the coordinator up again.
    NotLeader,
    /// The append did not reach enough replicas in time (NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT,
    /// the partition is offline): the client is told COORDINATOR_NOT_AVAILABLE and retries.
    Unavailable,
    /// Anything else (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, …): UNKNOWN_SERVER_ERROR.
    Other,
}

impl PersistError {
    /// The error a client whose request depended on the append gets, mapped as Kafka's
    /// `TransactionStateManager.appendTransactionToLog` does.
    pub fn client_error(self) -> Error {
        match self {
            Self::NotLeader => Error::NotCoordinator,
            Self::Unavailable => Error::CoordinatorNotAvailable,
            Self::Other => Error::UnknownServerError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(Error::UnknownServerError.code(), -1);
        assert_eq!(Error::CorruptRecord { at: 0, reason: "" }.code(), 2);
        assert_eq!(Error::CoordinatorLoadInProgress.code(), 14);
        assert_eq!(Error::CoordinatorNotAvailable.code(), 15);
        assert_eq!(Error::NotCoordinator.code(), 16);
        assert_eq!(Error::InvalidRequest.code(), 42);
        assert_eq!(Error::InvalidProducerEpoch.code(), 47);
        assert_eq!(Error::InvalidTxnState.code(), 48);
        assert_eq!(Error::InvalidProducerIdMapping.code(), 49);
        assert_eq!(Error::InvalidTransactionTimeout.code(), 50);
        assert_eq!(Error::ConcurrentTransactions.code(), 51);
        assert_eq!(Error::ProducerFenced.code(), 90);
        assert_eq!(Error::TransactionalIdNotFound.code(), 105);
        assert_eq!(Error::TransactionAbortable.code(), 120);
    }

    #[test]
    fn old_clients_see_invalid_producer_epoch() {
        assert_eq!(Error::ProducerFenced.code_for_version(false), 47);
        assert_eq!(Error::ProducerFenced.code_for_version(true), 90);
        assert_eq!(Error::ConcurrentTransactions.code_for_version(false), 51);
    }

    #[test]
    fn persist_failures_map_like_kafka() {
        assert_eq!(
            PersistError::NotLeader.client_error(),
            Error::NotCoordinator
        );
        assert_eq!(
            PersistError::Unavailable.client_error(),
            Error::CoordinatorNotAvailable
        );
        assert_eq!(
            PersistError::Other.client_error(),
            Error::UnknownServerError
        );
    }
}
