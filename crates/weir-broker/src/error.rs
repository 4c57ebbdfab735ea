//! Domain errors and their Kafka error codes, mapped in exactly one place.

use crate::topics::TopicError;
use weir_protocol::ErrorCode;

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A partition log refused or failed an operation.
    #[error("partition log error")]
    Log(#[from] weir_log::Error),
    /// A topic operation failed.
    #[error("topic error")]
    Topic(#[from] TopicError),
    /// A blocking storage task did not complete.
    #[error("storage task failed")]
    TaskFailed,
}

impl BrokerError {
    /// The Kafka error code a client sees for this error.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            BrokerError::Log(e) => log_error_code(e),
            BrokerError::Topic(e) => e.code(),
            BrokerError::TaskFailed => ErrorCode::KAFKA_STORAGE_ERROR,
        }
    }
}

/// The Kafka error code for a refusal of the group coordinator.
pub(crate) fn group_error_code(error: &weir_group::Error) -> ErrorCode {
    // weir-group's errors each stand for exactly one Kafka code.
    ErrorCode(error.code())
}

/// How an append to `__consumer_offsets` failed, as far as clients are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PersistFailure {
    /// The log cannot take writes: the coordinator is unavailable until it can.
    Unavailable,
    /// The records exceed the topic's `max.message.bytes`.
    TooLarge,
    /// A bug: the records did not encode.
    Internal,
}

impl PersistFailure {
    /// Classifies an append failure.
    pub(crate) fn of(error: &crate::groups::PersistError) -> Self {
        use crate::groups::PersistError as E;
        match error {
            E::MissingPartition(_) => Self::Unavailable,
            E::Records(_) => Self::Internal,
            E::Log(weir_log::Error::MessageTooLarge { .. }) => Self::TooLarge,
            E::Log(_) => Self::Unavailable,
        }
    }

    /// The code a group request carries for it, as Kafka's coordinator answers: unavailable
    /// (clients look the coordinator up again and retry), and an oversized write is
    /// INVALID_COMMIT_OFFSET_SIZE for OffsetCommit and UNKNOWN_SERVER_ERROR for the rest.
    pub(crate) fn code(self, offset_commit: bool) -> ErrorCode {
        match self {
            Self::Unavailable => ErrorCode::COORDINATOR_NOT_AVAILABLE,
            Self::TooLarge if offset_commit => ErrorCode::INVALID_COMMIT_OFFSET_SIZE,
            Self::TooLarge | Self::Internal => ErrorCode::UNKNOWN_SERVER_ERROR,
        }
    }
}

/// The Kafka error code for a log error.
pub(crate) fn log_error_code(error: &weir_log::Error) -> ErrorCode {
    use weir_log::Error as E;
    match error {
        E::InvalidBatch { .. } | E::EmptyAppend => ErrorCode::CORRUPT_MESSAGE,
        E::MessageTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
        E::InvalidRecords { .. } => ErrorCode::INVALID_RECORD,
        E::InvalidTimestamp { .. } => ErrorCode::INVALID_TIMESTAMP,
        E::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
        E::InvalidConfig { .. } => ErrorCode::INVALID_CONFIG,
        _ => ErrorCode::KAFKA_STORAGE_ERROR,
    }
}
