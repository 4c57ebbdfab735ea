//! The vocabulary shared with the broker and the controller.

/// A broker's id (`node.id`).
pub type BrokerId = i32;

/// A leader epoch that is not known (Kafka's `UNDEFINED_EPOCH`).
pub const UNDEFINED_EPOCH: i32 = -1;

/// An offset that is not known (Kafka's `UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED_OFFSET: i64 = -1;

/// What the controller says about a partition (from the metadata image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderAndIsr {
    /// The leader, or `-1` when the partition has none.
    pub leader: BrokerId,
    /// Bumped by the controller on every leader change.
    pub leader_epoch: i32,
    /// Bumped by the controller on every change of the partition (leader, ISR, replicas); an
    /// [`AlterIsr`] must name the current one.
    pub partition_epoch: i32,
    /// The assigned replicas.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas, the leader among them.
    pub isr: Vec<BrokerId>,
}

/// The replication settings of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: an ISR follower that has not caught up with the leader for
    /// this long is proposed for removal (Kafka's default is 30 000).
    pub replica_lag_time_max_ms: i64,
    /// `min.insync.replicas`: the ISR size below which acks=all produces are refused (default 1).
    pub min_insync_replicas: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
        }
    }
}

/// An ISR change the leader asks the controller for (Kafka's AlterPartition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterIsr {
    /// The leader epoch the request is made in; the controller rejects other epochs.
    pub leader_epoch: i32,
    /// The partition epoch the change is based on; the controller rejects it if the partition
    /// changed since (`INVALID_UPDATE_VERSION`).
    pub partition_epoch: i32,
    /// The proposed ISR, always with the leader in it.
    pub new_isr: Vec<BrokerId>,
}

/// Why the controller did not apply an [`AlterIsr`] (or why no answer came).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlterIsrRejected {
    /// The partition changed since the request's partition epoch (`INVALID_UPDATE_VERSION`).
    InvalidUpdateVersion,
    /// The request's leader epoch is not the current one (`FENCED_LEADER_EPOCH`).
    FencedLeaderEpoch,
    /// A proposed ISR member is fenced or shutting down (`INELIGIBLE_REPLICA`).
    IneligibleReplica,
    /// The request is malformed (the leader missing from the ISR, a member not a replica):
    /// not applied (`INVALID_REQUEST`).
    InvalidRequest,
    /// No definitive answer (a timeout, a lost connection, the controller moved, any other
    /// error): the controller may still commit the request. The leader may propose again, but
    /// keeps counting the request's members toward the high watermark until an image with a
    /// newer partition epoch settles whether it was committed.
    NoAnswer,
}
