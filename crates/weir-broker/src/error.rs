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
    /// Producer ids could not be reserved.
    #[error("producer id allocation failed")]
    ProducerIds(#[from] crate::producer_ids::ProducerIdError),
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
            BrokerError::ProducerIds(_) => ErrorCode::KAFKA_STORAGE_ERROR,
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

/// The Kafka error code for a refused idempotent batch.
pub(crate) fn producer_error_code(error: &crate::producers::ProducerError) -> ErrorCode {
    use crate::producers::ProducerError as E;
    match error {
        E::OutOfOrderSequence { .. } => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
        // Kafka answers an old epoch on Produce with INVALID_PRODUCER_EPOCH (KIP-588);
        // PRODUCER_FENCED is for the transaction coordinator's APIs.
        E::InvalidProducerEpoch { .. } => ErrorCode::INVALID_PRODUCER_EPOCH,
    }
}
