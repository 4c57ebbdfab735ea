use thiserror::Error;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the coordinator refused a request, or why a `__consumer_offsets` record is unreadable.
///
/// Each variant is one Kafka error code ([`Error::code`]); the broker turns them into response
/// error codes in one place.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// CORRUPT_MESSAGE (2): a `__consumer_offsets` record does not decode.
    #[error("corrupt __consumer_offsets record at byte {at}: {reason}")]
    CorruptRecord {
        /// Byte position in the key or value where decoding failed.
        at: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// UNKNOWN_TOPIC_OR_PARTITION (3).
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// OFFSET_METADATA_TOO_LARGE (12): the commit's metadata string exceeds
    /// `offset.metadata.max.bytes`.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// COORDINATOR_LOAD_IN_PROGRESS (14).
    #[error("coordinator load in progress")]
    CoordinatorLoadInProgress,
    /// COORDINATOR_NOT_AVAILABLE (15).
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// NOT_COORDINATOR (16): the group's `__consumer_offsets` partition moved away while a
    /// request was parked.
    #[error("not the coordinator for this group")]
    NotCoordinator,
    /// ILLEGAL_GENERATION (22): the request names a generation other than the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// INCONSISTENT_GROUP_PROTOCOL (23): the protocol type differs from the group's, or no
    /// protocol is supported by every member.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// INVALID_GROUP_ID (24).
    #[error("invalid group id")]
    InvalidGroupId,
    /// UNKNOWN_MEMBER_ID (25).
    #[error("unknown member id")]
    UnknownMemberId,
    /// INVALID_SESSION_TIMEOUT (26): outside `group.min.session.timeout.ms` ..=
    /// `group.max.session.timeout.ms`.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// REBALANCE_IN_PROGRESS (27).
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// NON_EMPTY_GROUP (68).
    #[error("the group is not empty")]
    NonEmptyGroup,
    /// GROUP_ID_NOT_FOUND (69).
    #[error("group id not found")]
    GroupIdNotFound,
    /// MEMBER_ID_REQUIRED (79): a first JoinGroup (v4+) gets a member id and must rejoin with it.
    #[error("member id required: rejoin with {member_id}")]
    MemberIdRequired {
        /// The member id the coordinator gave; the JoinGroup response carries it.
        member_id: String,
    },
    /// GROUP_MAX_SIZE_REACHED (81): `group.max.size` members already.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// FENCED_INSTANCE_ID (82): another member now owns this group instance id.
    #[error("fenced group instance id")]
    FencedInstanceId,
    /// GROUP_SUBSCRIBED_TO_TOPIC (86): OffsetDelete on a topic an active member subscribes to.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
}

impl Error {
    /// Kafka's numeric error code for this error.
    pub fn code(&self) -> i16 {
        match self {
            Self::CorruptRecord { .. } => 2,
            Self::UnknownTopicOrPartition => 3,
            Self::OffsetMetadataTooLarge => 12,
            Self::CoordinatorLoadInProgress => 14,
            Self::CoordinatorNotAvailable => 15,
            Self::NotCoordinator => 16,
            Self::IllegalGeneration => 22,
            Self::InconsistentGroupProtocol => 23,
            Self::InvalidGroupId => 24,
            Self::UnknownMemberId => 25,
            Self::InvalidSessionTimeout => 26,
            Self::RebalanceInProgress => 27,
            Self::NonEmptyGroup => 68,
            Self::GroupIdNotFound => 69,
            Self::MemberIdRequired { .. } => 79,
            Self::GroupMaxSizeReached => 81,
            Self::FencedInstanceId => 82,
            Self::GroupSubscribedToTopic => 86,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(Error::UnknownMemberId.code(), 25);
        assert_eq!(Error::IllegalGeneration.code(), 22);
        assert_eq!(Error::RebalanceInProgress.code(), 27);
        assert_eq!(
            Error::MemberIdRequired {
                member_id: String::new()
            }
            .code(),
            79
        );
        assert_eq!(Error::FencedInstanceId.code(), 82);
        assert_eq!(Error::InconsistentGroupProtocol.code(), 23);
        assert_eq!(Error::GroupIdNotFound.code(), 69);
        assert_eq!(Error::NonEmptyGroup.code(), 68);
        assert_eq!(Error::CoordinatorNotAvailable.code(), 15);
        assert_eq!(Error::InvalidSessionTimeout.code(), 26);
        assert_eq!(Error::GroupMaxSizeReached.code(), 81);
        assert_eq!(Error::UnknownTopicOrPartition.code(), 3);
        assert_eq!(Error::InvalidGroupId.code(), 24);
        assert_eq!(Error::GroupSubscribedToTopic.code(), 86);
    }
}
