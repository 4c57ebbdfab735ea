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
