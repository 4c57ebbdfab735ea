//! The coordinator's inputs and outputs, in Kafka's vocabulary but free of any wire format: the
//! broker converts protocol messages to and from these.

use bytes::Bytes;

use crate::error::Error;

/// Milliseconds since the Unix epoch: the coordinator's clock.
///
/// Wall-clock time, as Kafka uses, because commit timestamps and the state timestamp are
/// persisted and compared against the clock after a restart for offset retention. Every
/// deadline the coordinator returns is on the same clock.
pub type Millis = i64;

/// An opaque token for a request the coordinator may answer later (JoinGroup and SyncGroup
/// wait for a rebalance). The broker picks the value; the coordinator hands it back in
/// [`Output::Join`] or [`Output::Sync`] exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

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

/// One protocol (assignor) a member supports, with its metadata for that protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Protocol name, e.g. `range`, `roundrobin`, `cooperative-sticky`.
    pub name: String,
    /// Opaque metadata (for `consumer`: the subscription).
    pub metadata: Bytes,
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id; empty on a member's first join.
    pub member_id: String,
    /// Static membership id (`group.instance.id`).
    pub group_instance_id: Option<String>,
    /// Protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// Supported protocols, most preferred first.
    pub protocols: Vec<Protocol>,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// How long the member may take to rejoin during a rebalance (v0 uses the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Client id from the request header.
    pub client_id: String,
    /// Client host as the broker sees it.
    pub client_host: String,
    /// True for JoinGroup v4+: a first join without a member id gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// True for JoinGroup v9+: the client understands `skip_assignment` (KIP-814).
    pub supports_skip_assignment: bool,
    /// Why the member joins (v8+), for logs.
    pub reason: Option<String>,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// The member's metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A successful JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// The generation the member joined.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// True when the leader must not compute a new assignment: a static leader restarted in a
    /// Stable group (KIP-814, JoinGroup v9+).
    pub skip_assignment: bool,
    /// The member's id.
    pub member_id: String,
    /// All members with their metadata, for the leader only; empty for followers.
    pub members: Vec<JoinMember>,
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncRequest {
    /// Group id.
    pub group_id: String,
    /// Generation the member believes it is in.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Protocol type (v5+), checked against the group's when present.
    pub protocol_type: Option<String>,
    /// Protocol name (v5+), checked against the group's when present.
    pub protocol_name: Option<String>,
    /// The leader's assignment, `(member id, assignment)`; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A successful SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

/// A Heartbeat request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatRequest {
    /// Group id.
    pub group_id: String,
    /// Generation the member believes it is in.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
}

/// One member leaving in a LeaveGroup request (v3+ leaves in batches).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeavingMember {
    /// Member id; may be empty when the group instance id identifies the member.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Why the member leaves (v5+), for logs.
    pub reason: Option<String>,
}

/// One partition's offset in an OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// The partition.
    pub partition: TopicPartition,
    /// The offset to commit.
    pub offset: i64,
    /// Leader epoch of the last consumed record, `-1` if unknown.
    pub leader_epoch: i32,
    /// Client metadata; `None` is stored as empty.
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitRequest {
    /// Group id.
    pub group_id: String,
    /// Generation, or `-1` for a consumer outside group management (standalone or admin).
    pub generation_id: i32,
    /// Member id; empty for standalone commits.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// How long to keep these offsets (OffsetCommit v2–v4 `retention_time_ms`); `None` or a
    /// negative value leaves it to `offsets.retention.minutes`.
    pub retention_time_ms: Option<i64>,
    /// Offsets to commit.
    pub offsets: Vec<OffsetCommit>,
}

/// A committed offset as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    /// The partition.
    pub partition: TopicPartition,
    /// Committed offset, `-1` when none.
    pub offset: i64,
    /// Leader epoch, `-1` when unknown.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
}

/// One group in an OffsetFetch request (v8+ fetches several groups at once).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchRequest {
    /// Group id.
    pub group_id: String,
    /// Partitions to fetch; `None` fetches every committed offset of the group.
    pub partitions: Option<Vec<TopicPartition>>,
}

/// The state of a classic group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Removed; only ever reported, never stored.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state, as DescribeGroups and ListGroups report it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }

    /// Parses a state name case-insensitively, as ListGroups' `states_filter` does.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Empty,
            Self::PreparingRebalance,
            Self::CompletingRebalance,
            Self::Stable,
            Self::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

/// A member in a DescribeGroups response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the selected protocol (Stable only, else empty).
    pub metadata: Bytes,
    /// Current assignment (Stable only, else empty).
    pub assignment: Bytes,
}

/// A group in a DescribeGroups response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: GroupState,
    /// Protocol type, empty when none.
    pub protocol_type: String,
    /// Selected protocol (Stable only, else empty).
    pub protocol_name: String,
    /// Generation id; not in Kafka's response, useful to operators and tests.
    pub generation_id: i32,
    /// Leader member id, if any.
    pub leader: Option<String>,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A group in a ListGroups response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type, empty for groups that only commit offsets.
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
}

/// One key/value to append to `__consumer_offsets`; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistRecord {
    /// Encoded [`RecordKey`](crate::record::RecordKey).
    pub key: Bytes,
    /// Encoded value, or `None` to delete the key.
    pub value: Option<Bytes>,
}

/// Something the broker must do after a call into the [`Coordinator`](crate::Coordinator).
///
/// Outputs are ordered: the broker makes every [`Output::Persist`] durable before it sends any
/// response that comes after it, and before the direct result of the call that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Answer a parked JoinGroup request.
    Join {
        /// The request being answered.
        request: RequestId,
        /// Its response.
        response: Result<JoinResponse, Error>,
    },
    /// Answer a parked SyncGroup request.
    Sync {
        /// The request being answered.
        request: RequestId,
        /// Its response.
        response: Result<SyncResponse, Error>,
    },
    /// Append records to the group's `__consumer_offsets` partition.
    Persist {
        /// The group; its partition is [`partition_for`](crate::partition_for).
        group_id: String,
        /// Records in append order.
        records: Vec<PersistRecord>,
    },
}
