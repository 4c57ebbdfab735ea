//! The client's one error type.

use weir_protocol::{DecodeError, EncodeError, ErrorCode};

/// A `Result` whose error is the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket failed.
    #[error("I/O error talking to {addr}")]
    Io {
        /// The broker's address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A broker sent bytes that do not decode as the expected response.
    #[error("malformed response from {addr}")]
    Decode {
        /// The broker's address.
        addr: String,
        /// Where and why decoding failed.
        #[source]
        source: DecodeError,
    },
    /// A request could not be encoded (a field too long for its version, for example).
    #[error("cannot encode request: {0}")]
    Encode(#[from] EncodeError),
    /// The broker answered with a Kafka error code.
    #[error("{code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// The error code.
        code: ErrorCode,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// No response (or no progress) within the configured timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The connection closed while requests were in flight.
    #[error("connection to {0} closed")]
    Disconnected(String),
    /// A broker (a partition's leader, a group's coordinator) is not in the cluster metadata,
    /// even after a refresh: it was fenced or left. Retriable: the next metadata names the
    /// broker that took over.
    #[error("broker {0} is not in the cluster metadata")]
    BrokerNotInMetadata(i32),
    /// None of the bootstrap servers could be reached.
    #[error("no broker reachable (tried {0})")]
    NoBrokerReachable(String),
    /// The broker supports no version of an API in the range this client speaks.
    #[error("broker does not support {api} in versions {min}..={max}")]
    UnsupportedVersion {
        /// The API's name.
        api: &'static str,
        /// The lowest version this client speaks.
        min: i16,
        /// The highest version this client speaks.
        max: i16,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration {key}: {reason}")]
    Config {
        /// The property name.
        key: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// Records could not be encoded or decoded (a corrupt batch, a codec failure).
    #[error("record batch: {0}")]
    Records(#[from] weir_records::Error),
    /// The producer or consumer was closed.
    #[error("client is closed")]
    Closed,
    /// A consumer group's partition assignor failed, or returned an assignment that does not
    /// fit the group (a member not in it, a partition not in its subscription). An
    /// application's own [`PartitionAssignor`](crate::consumer::PartitionAssignor) returns it
    /// to refuse a group it cannot assign.
    #[error("partition assignor {assignor}: {reason}")]
    Assignor {
        /// The assignor's protocol name.
        assignor: String,
        /// What went wrong.
        reason: String,
    },
    /// A call the client's current state does not allow, such as seeking a partition the
    /// consumer is not assigned.
    #[error("illegal state: {0}")]
    IllegalState(String),
    /// A transactional producer met an error it cannot recover from: another producer with
    /// the same `transactional.id` fenced it (PRODUCER_FENCED), the coordinator refused the
    /// transaction's state (INVALID_TXN_STATE), authorization failed. Every later call
    /// returns this again; drop the producer and create a new one.
    #[error("transactional producer failed and cannot be used further")]
    FatalTransaction {
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// The current transaction cannot commit (one of its records was not delivered, an
    /// offset commit was refused): call
    /// [`Producer::abort_transaction`](crate::producer::Producer::abort_transaction), then
    /// start again.
    #[error("the transaction must be aborted")]
    AbortableTransaction {
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// The record was discarded, unsent, because its transaction was aborted.
    #[error("the record's transaction was aborted before it was sent")]
    TransactionAborted,
}

impl Error {
    /// A Kafka error without a message.
    pub fn kafka(code: ErrorCode) -> Self {
        Error::Kafka {
            code,
            message: None,
        }
    }

    /// The Kafka error code behind this error, looking through the transactional wrappers
    /// ([`Error::FatalTransaction`], [`Error::AbortableTransaction`]).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            Error::FatalTransaction { source } | Error::AbortableTransaction { source } => {
                source.code()
            }
            _ => None,
        }
    }

    /// Whether retrying the same operation (after a metadata refresh) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::Io { .. }
            | Error::Timeout(_)
            | Error::Disconnected(_)
            | Error::BrokerNotInMetadata(_) => true,
            _ => false,
        }
    }
}

impl Error {
    /// A copy of this error for each of several waiters on one failed operation (the records of
    /// a batch, the batches of a request). An I/O error keeps its kind and message.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { addr, source } => Error::Io {
                addr: addr.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Decode { addr, source } => Error::Decode {
                addr: addr.clone(),
                source: source.clone(),
            },
            Error::Encode(e) => Error::Encode(e.clone()),
            Error::Kafka { code, message } => Error::Kafka {
                code: *code,
                message: message.clone(),
            },
            Error::Timeout(d) => Error::Timeout(*d),
            Error::Disconnected(a) => Error::Disconnected(a.clone()),
            Error::BrokerNotInMetadata(id) => Error::BrokerNotInMetadata(*id),
            Error::NoBrokerReachable(a) => Error::NoBrokerReachable(a.clone()),
            Error::UnsupportedVersion { api, min, max } => Error::UnsupportedVersion {
                api,
                min: *min,
                max: *max,
            },
            Error::Config { key, reason } => Error::Config {
                key,
                reason: reason.clone(),
            },
            Error::Records(e) => Error::Records(e.clone()),
            Error::Assignor { assignor, reason } => Error::Assignor {
                assignor: assignor.clone(),
                reason: reason.clone(),
            },
            Error::Closed => Error::Closed,
            Error::IllegalState(s) => Error::IllegalState(s.clone()),
            Error::FatalTransaction { source } => Error::FatalTransaction {
                source: Box::new(source.duplicate()),
            },
            Error::AbortableTransaction { source } => Error::AbortableTransaction {
                source: Box::new(source.duplicate()),
            },
            Error::TransactionAborted => Error::TransactionAborted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the chaos test's finding: a leader that was fenced drops out of the metadata,
    /// and batches routed to it must be retried towards the new leader, not failed.
    #[test]
    fn a_broker_missing_from_the_metadata_is_retriable() {
        let error = Error::BrokerNotInMetadata(3);
        assert!(error.is_retriable());
        assert!(error.duplicate().is_retriable());
        assert_eq!(error.to_string(), "broker 3 is not in the cluster metadata");
    }
}
