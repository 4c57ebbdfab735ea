//! Kafka's error codes as data: code, name, whether a client may retry, and a message.
//!
//! Errors travel as 16-bit codes inside response bodies. [`ErrorCode`] is a plain newtype so
//! codes this table does not list still round-trip; [`ErrorCode::info`] looks up the table.

/// A Kafka error code as carried in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ErrorCode(pub i16);

/// One row of the error table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The wire code.
    pub code: i16,
    /// Kafka's name, e.g. `NOT_LEADER_OR_FOLLOWER`.
    pub name: &'static str,
    /// Whether a client may retry the request unchanged.
    pub retriable: bool,
    /// A short explanation for people.
    pub message: &'static str,
}

macro_rules! error_codes {
    ($(($code:expr, $konst:ident, $name:expr, $retriable:expr, $message:expr),)*) => {
        impl ErrorCode {
            $(
                #[doc = $message]
                pub const $konst: ErrorCode = ErrorCode($code);
            )*
        }

        /// Every error code Kafka defines, in code order.
        pub static ERROR_CODES: &[ErrorInfo] = &[
            $(ErrorInfo { code: $code, name: $name, retriable: $retriable, message: $message },)*
        ];
    };
}

impl ErrorCode {
    /// The table row for this code, if Kafka defines it.
    pub fn info(self) -> Option<&'static ErrorInfo> {
        ERROR_CODES.iter().find(|e| e.code == self.0)
    }

    /// Kafka's name for the code, or `UNKNOWN` for codes outside the table.
    pub fn name(self) -> &'static str {
        self.info().map_or("UNKNOWN", |e| e.name)
    }

    /// Whether a client may retry after this error.
    pub fn is_retriable(self) -> bool {
        self.info().is_some_and(|e| e.retriable)
    }

    /// Whether this is an error at all.
    pub fn is_error(self) -> bool {
        self.0 != 0
    }

    /// The code as carried on the wire.
    pub fn code(self) -> i16 {
        self.0
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

error_codes! {
    (-1, UNKNOWN_SERVER_ERROR, "UNKNOWN_SERVER_ERROR", false, "The server hit an unexpected error."),
    (0, NONE, "NONE", false, "No error."),
    (1, OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE", false, "The requested offset is outside the range the partition holds."),
    (2, CORRUPT_MESSAGE, "CORRUPT_MESSAGE", true, "A record failed its CRC check, was of an invalid size or was otherwise malformed."),
    (3, UNKNOWN_TOPIC_OR_PARTITION, "UNKNOWN_TOPIC_OR_PARTITION", true, "This server does not host this topic-partition."),
    (4, INVALID_FETCH_SIZE, "INVALID_FETCH_SIZE", false, "The requested fetch size is invalid."),
    (5, LEADER_NOT_AVAILABLE, "LEADER_NOT_AVAILABLE", true, "The partition has no leader right now, for example during an election."),
    (6, NOT_LEADER_OR_FOLLOWER, "NOT_LEADER_OR_FOLLOWER", true, "This broker is neither the leader nor a follower of the partition."),
    (7, REQUEST_TIMED_OUT, "REQUEST_TIMED_OUT", true, "The request timed out."),
    (8, BROKER_NOT_AVAILABLE, "BROKER_NOT_AVAILABLE", false, "The broker is not available."),
    (9, REPLICA_NOT_AVAILABLE, "REPLICA_NOT_AVAILABLE", true, "The replica is not available for the requested partition."),
    (10, MESSAGE_TOO_LARGE, "MESSAGE_TOO_LARGE", false, "The batch is larger than the broker accepts."),
    (11, STALE_CONTROLLER_EPOCH, "STALE_CONTROLLER_EPOCH", false, "The controller epoch is older than the broker's."),
    (12, OFFSET_METADATA_TOO_LARGE, "OFFSET_METADATA_TOO_LARGE", false, "The metadata attached to the offset commit is too large."),
    (13, NETWORK_EXCEPTION, "NETWORK_EXCEPTION", true, "The connection closed before the response arrived."),
    (14, COORDINATOR_LOAD_IN_PROGRESS, "COORDINATOR_LOAD_IN_PROGRESS", true, "The coordinator is still loading its state."),
    (15, COORDINATOR_NOT_AVAILABLE, "COORDINATOR_NOT_AVAILABLE", true, "The coordinator is not available."),
    (16, NOT_COORDINATOR, "NOT_COORDINATOR", true, "This broker is not the coordinator for the group or transaction."),
    (17, INVALID_TOPIC_EXCEPTION, "INVALID_TOPIC_EXCEPTION", false, "The topic name is invalid or the operation is not allowed on an internal topic."),
    (18, RECORD_LIST_TOO_LARGE, "RECORD_LIST_TOO_LARGE", false, "The request's records exceed the maximum segment size."),
    (19, NOT_ENOUGH_REPLICAS, "NOT_ENOUGH_REPLICAS", true, "Fewer in-sync replicas than min.insync.replicas; the write was refused."),
    (20, NOT_ENOUGH_REPLICAS_AFTER_APPEND, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", true, "The write was appended but fewer in-sync replicas than required acknowledged it."),
    (21, INVALID_REQUIRED_ACKS, "INVALID_REQUIRED_ACKS", false, "The acks value is not one of -1, 0 or 1."),
    (22, ILLEGAL_GENERATION, "ILLEGAL_GENERATION", false, "The generation id is not the group's current one."),
    (23, INCONSISTENT_GROUP_PROTOCOL, "INCONSISTENT_GROUP_PROTOCOL", false, "The member's protocol type or protocols do not match the group's."),
    (24, INVALID_GROUP_ID, "INVALID_GROUP_ID", false, "The group id is empty or invalid."),
    (25, UNKNOWN_MEMBER_ID, "UNKNOWN_MEMBER_ID", false, "The coordinator does not know this member id."),
    (26, INVALID_SESSION_TIMEOUT, "INVALID_SESSION_TIMEOUT", false, "The session timeout is outside the broker's allowed range."),
    (27, REBALANCE_IN_PROGRESS, "REBALANCE_IN_PROGRESS", false, "The group is rebalancing; the member must rejoin."),
    (28, INVALID_COMMIT_OFFSET_SIZE, "INVALID_COMMIT_OFFSET_SIZE", false, "The committing offset data size is not valid."),
    (29, TOPIC_AUTHORIZATION_FAILED, "TOPIC_AUTHORIZATION_FAILED", false, "Not authorized to access the topic."),
    (30, GROUP_AUTHORIZATION_FAILED, "GROUP_AUTHORIZATION_FAILED", false, "Not authorized to access the group."),
    (31, CLUSTER_AUTHORIZATION_FAILED, "CLUSTER_AUTHORIZATION_FAILED", false, "Not authorized for this cluster operation."),
    (32, INVALID_TIMESTAMP, "INVALID_TIMESTAMP", false, "A record timestamp is outside the accepted range."),
    (33, UNSUPPORTED_SASL_MECHANISM, "UNSUPPORTED_SASL_MECHANISM", false, "The broker does not support the requested SASL mechanism."),
    (34, ILLEGAL_SASL_STATE, "ILLEGAL_SASL_STATE", false, "The request is not valid in the current SASL state."),
    (35, UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION", false, "The broker does not support this version of the API."),
    (36, TOPIC_ALREADY_EXISTS, "TOPIC_ALREADY_EXISTS", false, "The topic already exists."),
    (37, INVALID_PARTITIONS, "INVALID_PARTITIONS", false, "The number of partitions is invalid."),
    (38, INVALID_REPLICATION_FACTOR, "INVALID_REPLICATION_FACTOR", false, "The replication factor is invalid."),
    (39, INVALID_REPLICA_ASSIGNMENT, "INVALID_REPLICA_ASSIGNMENT", false, "The replica assignment is invalid."),
    (40, INVALID_CONFIG, "INVALID_CONFIG", false, "The configuration is invalid."),
    (41, NOT_CONTROLLER, "NOT_CONTROLLER", true, "This broker is not the active controller."),
    (42, INVALID_REQUEST, "INVALID_REQUEST", false, "The request is malformed or violates the protocol; the broker log has details."),
    (43, UNSUPPORTED_FOR_MESSAGE_FORMAT, "UNSUPPORTED_FOR_MESSAGE_FORMAT", false, "The message format version does not support the request."),
    (44, POLICY_VIOLATION, "POLICY_VIOLATION", false, "The request violates a configured policy."),
    (45, OUT_OF_ORDER_SEQUENCE_NUMBER, "OUT_OF_ORDER_SEQUENCE_NUMBER", false, "The broker received an out-of-order sequence number from the producer."),
    (46, DUPLICATE_SEQUENCE_NUMBER, "DUPLICATE_SEQUENCE_NUMBER", false, "The broker received a duplicate sequence number."),
    (47, INVALID_PRODUCER_EPOCH, "INVALID_PRODUCER_EPOCH", false, "The producer's epoch is older than the current one; it has been fenced."),
    (48, INVALID_TXN_STATE, "INVALID_TXN_STATE", false, "The operation is not valid in the transaction's current state."),
    (49, INVALID_PRODUCER_ID_MAPPING, "INVALID_PRODUCER_ID_MAPPING", false, "The producer id is not mapped to this transactional id."),
    (50, INVALID_TRANSACTION_TIMEOUT, "INVALID_TRANSACTION_TIMEOUT", false, "The transaction timeout exceeds transaction.max.timeout.ms."),
    (51, CONCURRENT_TRANSACTIONS, "CONCURRENT_TRANSACTIONS", true, "Another transaction operation for this producer is in progress."),
    (52, TRANSACTION_COORDINATOR_FENCED, "TRANSACTION_COORDINATOR_FENCED", false, "A newer transaction coordinator exists for this transactional id."),
    (53, TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", false, "Not authorized for this transactional id."),
    (54, SECURITY_DISABLED, "SECURITY_DISABLED", false, "Security features are disabled."),
    (55, OPERATION_NOT_ATTEMPTED, "OPERATION_NOT_ATTEMPTED", false, "The operation was not attempted because another part of the request failed."),
    (56, KAFKA_STORAGE_ERROR, "KAFKA_STORAGE_ERROR", true, "A disk error occurred while accessing the log."),
    (57, LOG_DIR_NOT_FOUND, "LOG_DIR_NOT_FOUND", false, "The log directory was not found."),
    (58, SASL_AUTHENTICATION_FAILED, "SASL_AUTHENTICATION_FAILED", false, "SASL authentication failed."),
    (59, UNKNOWN_PRODUCER_ID, "UNKNOWN_PRODUCER_ID", false, "The broker has no state for this producer id."),
    (60, REASSIGNMENT_IN_PROGRESS, "REASSIGNMENT_IN_PROGRESS", false, "A partition reassignment is in progress."),
    (61, DELEGATION_TOKEN_AUTH_DISABLED, "DELEGATION_TOKEN_AUTH_DISABLED", false, "Delegation token authentication is disabled."),
    (62, DELEGATION_TOKEN_NOT_FOUND, "DELEGATION_TOKEN_NOT_FOUND", false, "The delegation token was not found."),
    (63, DELEGATION_TOKEN_OWNER_MISMATCH, "DELEGATION_TOKEN_OWNER_MISMATCH", false, "The principal does not own the delegation token."),
    (64, DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED", false, "Delegation token requests are not allowed on this connection."),
    (65, DELEGATION_TOKEN_AUTHORIZATION_FAILED, "DELEGATION_TOKEN_AUTHORIZATION_FAILED", false, "Not authorized for delegation token operations."),
    (66, DELEGATION_TOKEN_EXPIRED, "DELEGATION_TOKEN_EXPIRED", false, "The delegation token has expired."),
    (67, INVALID_PRINCIPAL_TYPE, "INVALID_PRINCIPAL_TYPE", false, "The principal type is not supported."),
    (68, NON_EMPTY_GROUP, "NON_EMPTY_GROUP", false, "The group still has members."),
    (69, GROUP_ID_NOT_FOUND, "GROUP_ID_NOT_FOUND", false, "The group does not exist."),
    (70, FETCH_SESSION_ID_NOT_FOUND, "FETCH_SESSION_ID_NOT_FOUND", true, "The fetch session id was not found."),
    (71, INVALID_FETCH_SESSION_EPOCH, "INVALID_FETCH_SESSION_EPOCH", true, "The fetch session epoch is invalid."),
    (72, LISTENER_NOT_FOUND, "LISTENER_NOT_FOUND", true, "The leader has no endpoint for the listener the request arrived on."),
    (73, TOPIC_DELETION_DISABLED, "TOPIC_DELETION_DISABLED", false, "Topic deletion is disabled."),
    (74, FENCED_LEADER_EPOCH, "FENCED_LEADER_EPOCH", true, "The request's leader epoch is older than the broker's."),
    (75, UNKNOWN_LEADER_EPOCH, "UNKNOWN_LEADER_EPOCH", true, "The request's leader epoch is newer than the broker's."),
    (76, UNSUPPORTED_COMPRESSION_TYPE, "UNSUPPORTED_COMPRESSION_TYPE", false, "The requesting client does not support the compression type."),
    (77, STALE_BROKER_EPOCH, "STALE_BROKER_EPOCH", false, "The broker epoch has changed."),
    (78, OFFSET_NOT_AVAILABLE, "OFFSET_NOT_AVAILABLE", true, "The offset is not yet available, for example while the high watermark catches up."),
    (79, MEMBER_ID_REQUIRED, "MEMBER_ID_REQUIRED", false, "The member must rejoin with the member id the coordinator assigned."),
    (80, PREFERRED_LEADER_NOT_AVAILABLE, "PREFERRED_LEADER_NOT_AVAILABLE", true, "The preferred leader is not available."),
    (81, GROUP_MAX_SIZE_REACHED, "GROUP_MAX_SIZE_REACHED", false, "The group has reached group.max.size members."),
    (82, FENCED_INSTANCE_ID, "FENCED_INSTANCE_ID", false, "Another member with the same group.instance.id has fenced this one."),
    (83, ELIGIBLE_LEADERS_NOT_AVAILABLE, "ELIGIBLE_LEADERS_NOT_AVAILABLE", true, "No eligible leader is available for the election."),
    (84, ELECTION_NOT_NEEDED, "ELECTION_NOT_NEEDED", true, "The leader election was not needed."),
    (85, NO_REASSIGNMENT_IN_PROGRESS, "NO_REASSIGNMENT_IN_PROGRESS", false, "No partition reassignment is in progress."),
    (86, GROUP_SUBSCRIBED_TO_TOPIC, "GROUP_SUBSCRIBED_TO_TOPIC", false, "The group has committed offsets for a topic it is still subscribed to."),
    (87, INVALID_RECORD, "INVALID_RECORD", false, "A record failed the broker's validation."),
    (88, UNSTABLE_OFFSET_COMMIT, "UNSTABLE_OFFSET_COMMIT", true, "Pending transactional offset commits exist for the partition."),
    (89, THROTTLING_QUOTA_EXCEEDED, "THROTTLING_QUOTA_EXCEEDED", true, "The request exceeded a throttling quota."),
    (90, PRODUCER_FENCED, "PRODUCER_FENCED", false, "A producer with the same transactional id and a newer epoch exists."),
    (91, RESOURCE_NOT_FOUND, "RESOURCE_NOT_FOUND", false, "The resource does not exist."),
    (92, DUPLICATE_RESOURCE, "DUPLICATE_RESOURCE", false, "The request names a resource more than once."),
    (93, UNACCEPTABLE_CREDENTIAL, "UNACCEPTABLE_CREDENTIAL", false, "The credential does not meet the broker's requirements."),
    (94, INCONSISTENT_VOTER_SET, "INCONSISTENT_VOTER_SET", false, "The voter set is inconsistent with the leader's."),
    (95, INVALID_UPDATE_VERSION, "INVALID_UPDATE_VERSION", false, "The update version is invalid."),
    (96, FEATURE_UPDATE_FAILED, "FEATURE_UPDATE_FAILED", false, "The feature update could not be applied."),
    (97, PRINCIPAL_DESERIALIZATION_FAILURE, "PRINCIPAL_DESERIALIZATION_FAILURE", false, "The forwarded principal could not be deserialized."),
    (98, SNAPSHOT_NOT_FOUND, "SNAPSHOT_NOT_FOUND", false, "The requested snapshot was not found."),
    (99, POSITION_OUT_OF_RANGE, "POSITION_OUT_OF_RANGE", false, "The requested position is outside the snapshot."),
    (100, UNKNOWN_TOPIC_ID, "UNKNOWN_TOPIC_ID", true, "This server does not host a topic with this id."),
    (101, DUPLICATE_BROKER_REGISTRATION, "DUPLICATE_BROKER_REGISTRATION", false, "A broker with this id is already registered."),
    (102, BROKER_ID_NOT_REGISTERED, "BROKER_ID_NOT_REGISTERED", false, "The broker id is not registered."),
    (103, INCONSISTENT_TOPIC_ID, "INCONSISTENT_TOPIC_ID", true, "The topic id does not match the log's."),
    (104, INCONSISTENT_CLUSTER_ID, "INCONSISTENT_CLUSTER_ID", false, "The cluster id does not match."),
    (105, TRANSACTIONAL_ID_NOT_FOUND, "TRANSACTIONAL_ID_NOT_FOUND", false, "The transactional id was not found."),
    (106, FETCH_SESSION_TOPIC_ID_ERROR, "FETCH_SESSION_TOPIC_ID_ERROR", true, "The fetch session hit a topic id error."),
    (107, INELIGIBLE_REPLICA, "INELIGIBLE_REPLICA", false, "The replica is not eligible for the ISR."),
    (108, NEW_LEADER_ELECTED, "NEW_LEADER_ELECTED", false, "A new leader was elected; the ISR change was not applied."),
    (109, OFFSET_MOVED_TO_TIERED_STORAGE, "OFFSET_MOVED_TO_TIERED_STORAGE", false, "The offset has moved to tiered storage."),
    (110, FENCED_MEMBER_EPOCH, "FENCED_MEMBER_EPOCH", false, "The member epoch is fenced; the member must rejoin with epoch 0."),
    (111, UNRELEASED_INSTANCE_ID, "UNRELEASED_INSTANCE_ID", false, "The group.instance.id is still in use by another member."),
    (112, UNSUPPORTED_ASSIGNOR, "UNSUPPORTED_ASSIGNOR", false, "The requested assignor is not supported."),
    (113, STALE_MEMBER_EPOCH, "STALE_MEMBER_EPOCH", false, "The member epoch is stale."),
    (114, MISMATCHED_ENDPOINT_TYPE, "MISMATCHED_ENDPOINT_TYPE", false, "The request was sent to an endpoint of the wrong type."),
    (115, UNSUPPORTED_ENDPOINT_TYPE, "UNSUPPORTED_ENDPOINT_TYPE", false, "This endpoint type does not support the request."),
    (116, UNKNOWN_CONTROLLER_ID, "UNKNOWN_CONTROLLER_ID", false, "The controller id is unknown."),
    (117, UNKNOWN_SUBSCRIPTION_ID, "UNKNOWN_SUBSCRIPTION_ID", false, "The telemetry subscription id is unknown."),
    (118, TELEMETRY_TOO_LARGE, "TELEMETRY_TOO_LARGE", false, "The telemetry payload is too large."),
    (119, INVALID_REGISTRATION, "INVALID_REGISTRATION", false, "The controller rejected the registration."),
    (120, TRANSACTION_ABORTABLE, "TRANSACTION_ABORTABLE", false, "The transaction must be aborted."),
    (121, INVALID_RECORD_STATE, "INVALID_RECORD_STATE", false, "The record state is invalid."),
    (122, SHARE_SESSION_NOT_FOUND, "SHARE_SESSION_NOT_FOUND", true, "The share session was not found."),
    (123, INVALID_SHARE_SESSION_EPOCH, "INVALID_SHARE_SESSION_EPOCH", true, "The share session epoch is invalid."),
    (124, FENCED_STATE_EPOCH, "FENCED_STATE_EPOCH", false, "The share coordinator state epoch is fenced."),
    (125, INVALID_VOTER_KEY, "INVALID_VOTER_KEY", false, "The voter key does not match the receiving replica."),
    (126, DUPLICATE_VOTER, "DUPLICATE_VOTER", false, "The voter is already in the voter set."),
    (127, VOTER_NOT_FOUND, "VOTER_NOT_FOUND", false, "The voter is not in the voter set."),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(ERROR_CODES.windows(2).all(|w| w[0].code < w[1].code));
    }

    #[test]
    fn lookups() {
        assert_eq!(
            ErrorCode::NOT_LEADER_OR_FOLLOWER.name(),
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert!(ErrorCode::NOT_LEADER_OR_FOLLOWER.is_retriable());
        assert!(!ErrorCode::UNSUPPORTED_VERSION.is_retriable());
        assert_eq!(ErrorCode(12_345).name(), "UNKNOWN");
        assert!(!ErrorCode::NONE.is_error());
    }
}
