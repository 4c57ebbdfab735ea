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

/// The Kafka error code for a refusal of the group coordinator.
pub(crate) fn group_error_code(error: &weir_group::Error) -> ErrorCode {
    // weir-group's errors each stand for exactly one Kafka code.
    ErrorCode(error.code())
}

/// The Kafka error code group requests carry when appending to `__consumer_offsets` failed,
/// following Kafka's coordinator: a log that cannot take the write makes the coordinator
/// unavailable (clients look it up again and retry); an oversized write is the request's fault.
pub(crate) fn persist_error_code(error: &crate::groups::PersistError) -> ErrorCode {
    use crate::groups::PersistError as E;
    match error {
        E::MissingPartition(_) => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        E::Records(_) => ErrorCode::UNKNOWN_SERVER_ERROR,
        E::Log(weir_log::Error::MessageTooLarge { .. }) => ErrorCode::INVALID_COMMIT_OFFSET_SIZE,
        E::Log(_) => ErrorCode::COORDINATOR_NOT_AVAILABLE,
    }
}
