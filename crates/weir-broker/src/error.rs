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
    /// The node's setup cannot work (configuration, a data directory of another cluster): the
    /// process exits with status 2.
    #[error("{0}")]
    Setup(String),
    /// Joining the cluster or a call to the controller failed.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A blocking storage task did not complete.
    #[error("storage task failed")]
    TaskFailed,
}

impl BrokerError {
    /// Whether the node's setup cannot work (the process exits with status 2).
    pub fn is_setup(&self) -> bool {
        matches!(self, BrokerError::Setup(_))
    }

    /// The Kafka error code a client sees for this error.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            BrokerError::Log(e) => log_error_code(e),
            BrokerError::Topic(e) => e.code(),
            // The controller could not be reached or did not answer in time: retriable.
            BrokerError::Cluster(_) => ErrorCode::REQUEST_TIMED_OUT,
            BrokerError::Setup(_) => ErrorCode::UNKNOWN_SERVER_ERROR,
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
    /// Leadership of the group's partition moved away: clients look the coordinator up again.
    NotCoordinator,
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
            E::NotLeader | E::NotCommitted(crate::replication::AckError::NotLeader) => {
                Self::NotCoordinator
            }
            E::NotCommitted(_) => Self::Unavailable,
        }
    }

    /// The code a group request carries for it, as Kafka's coordinator answers: unavailable
    /// (clients look the coordinator up again and retry), and an oversized write is
    /// INVALID_COMMIT_OFFSET_SIZE for OffsetCommit and UNKNOWN_SERVER_ERROR for the rest.
    pub(crate) fn code(self, offset_commit: bool) -> ErrorCode {
        match self {
            Self::Unavailable => ErrorCode::COORDINATOR_NOT_AVAILABLE,
            Self::NotCoordinator => ErrorCode::NOT_COORDINATOR,
            Self::TooLarge if offset_commit => ErrorCode::INVALID_COMMIT_OFFSET_SIZE,
            Self::TooLarge | Self::Internal => ErrorCode::UNKNOWN_SERVER_ERROR,
        }
    }
}

/// Why an admin request (topic, partition or config change) was refused for one resource.
/// Each carries the message the client shows its user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// The request is malformed (duplicate names, conflicting fields, unknown operations).
    #[error("{0}")]
    InvalidRequest(String),
    /// A config name is unknown or its value is refused.
    #[error("{0}")]
    InvalidConfig(String),
    /// The replication factor cannot be met on this single node.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A manual replica assignment names another broker or is inconsistent.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// The partition count is not positive or would not grow the topic.
    #[error("{0}")]
    InvalidPartitions(String),
    /// The topic name is invalid or the operation is not allowed on an internal topic.
    #[error("{0}")]
    InvalidTopic(String),
    /// No topic has the id.
    #[error("{0}")]
    UnknownTopicId(String),
    /// The endpoint type in DescribeCluster is not served by a broker listener.
    #[error("{0}")]
    UnsupportedEndpointType(String),
    /// The registry or a log failed.
    #[error("{0}")]
    Broker(#[from] BrokerError),
}

impl From<TopicError> for AdminError {
    fn from(error: TopicError) -> Self {
        AdminError::Broker(BrokerError::Topic(error))
    }
}

impl From<weir_log::Error> for AdminError {
    fn from(error: weir_log::Error) -> Self {
        match error {
            // A refused value is the client's mistake; name it in the message.
            weir_log::Error::InvalidConfig { .. } => AdminError::InvalidConfig(error.to_string()),
            other => AdminError::Broker(BrokerError::Log(other)),
        }
    }
}

impl AdminError {
    /// The Kafka error code a client sees for this error.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            AdminError::InvalidRequest(_) => ErrorCode::INVALID_REQUEST,
            AdminError::InvalidConfig(_) => ErrorCode::INVALID_CONFIG,
            AdminError::InvalidReplicationFactor(_) => ErrorCode::INVALID_REPLICATION_FACTOR,
            AdminError::InvalidReplicaAssignment(_) => ErrorCode::INVALID_REPLICA_ASSIGNMENT,
            AdminError::InvalidPartitions(_) => ErrorCode::INVALID_PARTITIONS,
            AdminError::InvalidTopic(_) => ErrorCode::INVALID_TOPIC_EXCEPTION,
            AdminError::UnknownTopicId(_) => ErrorCode::UNKNOWN_TOPIC_ID,
            AdminError::UnsupportedEndpointType(_) => ErrorCode::UNSUPPORTED_ENDPOINT_TYPE,
            AdminError::Broker(e) => e.code(),
        }
    }

    /// The error message for the response: the error itself, with the cause of a storage
    /// error so an operator sees which file failed.
    pub(crate) fn message(&self) -> String {
        match self {
            AdminError::Broker(BrokerError::Topic(e)) => e.to_string(),
            AdminError::Broker(BrokerError::Log(e)) => e.to_string(),
            other => other.to_string(),
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
        E::UnknownDataDir { .. } => ErrorCode::LOG_DIR_NOT_FOUND,
        // What Kafka answers when this broker holds no replica of the partition.
        E::UnknownPartition { .. } => ErrorCode::REPLICA_NOT_AVAILABLE,
        // Another AlterReplicaLogDirs is moving it; Kafka has no closer code.
        E::MoveInProgress { .. } => ErrorCode::REASSIGNMENT_IN_PROGRESS,
        _ => ErrorCode::KAFKA_STORAGE_ERROR,
    }
}

/// The Kafka error code for one partition's ElectLeaders result.
pub(crate) fn election_error_code(error: &weir_metadata::ElectionError) -> ErrorCode {
    use weir_metadata::ElectionError as E;
    match error {
        E::NotNeeded { .. } => ErrorCode::ELECTION_NOT_NEEDED,
        E::PreferredLeaderNotAvailable { .. } => ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE,
        E::EligibleLeadersNotAvailable { .. } => ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE,
        E::UnknownTopicOrPartition { .. } => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        _ => ErrorCode::UNKNOWN_SERVER_ERROR,
    }
}

/// The Kafka error code for one partition's AlterPartitionReassignments result.
pub(crate) fn reassignment_error_code(error: &weir_metadata::ReassignmentError) -> ErrorCode {
    use weir_metadata::ReassignmentError as E;
    match error {
        E::UnknownTopicOrPartition { .. } => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        E::InvalidReplicaAssignment { .. } => ErrorCode::INVALID_REPLICA_ASSIGNMENT,
        E::NoReassignmentInProgress { .. } => ErrorCode::NO_REASSIGNMENT_IN_PROGRESS,
        _ => ErrorCode::UNKNOWN_SERVER_ERROR,
    }
}

/// The top-level Kafka error code of a controller call that failed as a whole (ElectLeaders,
/// the reassignment APIs):
/// no active controller reachable is NOT_CONTROLLER, a write that did not commit in time is
/// REQUEST_TIMED_OUT; both are retriable.
pub(crate) fn controller_call_error_code(
    error: &weir_metadata::active::ControllerCallError,
) -> ErrorCode {
    use weir_metadata::active::{AppendError, ControllerCallError as E};
    match error {
        E::NotActive { .. } | E::Log(AppendError::NotLeader { .. }) => ErrorCode::NOT_CONTROLLER,
        E::Log(AppendError::Failed(_)) | E::Stopped => ErrorCode::REQUEST_TIMED_OUT,
        _ => ErrorCode::UNKNOWN_SERVER_ERROR,
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
        E::InvalidTxnState { .. } | E::UnverifiedTxn { .. } => ErrorCode::INVALID_TXN_STATE,
        E::CoordinatorFenced { .. } => ErrorCode::TRANSACTION_COORDINATOR_FENCED,
    }
}
