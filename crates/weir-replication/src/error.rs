//! The crate's error type.

use thiserror::Error;

use crate::BrokerId;

/// Why a replication operation was refused; the broker maps each variant to a Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// A fetch came from a broker that is not a follower replica of the partition
    /// (`NOT_LEADER_OR_FOLLOWER` / `UNKNOWN_SERVER_ERROR` in Kafka, depending on the version).
    #[error("broker {broker} is not a follower replica of this partition")]
    NotAReplica {
        /// The broker that fetched.
        broker: BrokerId,
    },
    /// A follower fetched beyond the leader's log end offset (`OFFSET_OUT_OF_RANGE`): it has
    /// data the leader lacks and must truncate by leader epoch first.
    #[error(
        "fetch offset {fetch_offset} is outside the leader's log, which ends at {log_end_offset}"
    )]
    OffsetOutOfRange {
        /// The follower's fetch offset.
        fetch_offset: i64,
        /// The leader's log end offset at the time of the fetch.
        log_end_offset: i64,
    },
    /// Fewer in-sync replicas than `min.insync.replicas` for an acks=all produce
    /// (`NOT_ENOUGH_REPLICAS`).
    #[error("not enough in-sync replicas: {isr} in the ISR, {required} required")]
    NotEnoughReplicas {
        /// The ISR size.
        isr: usize,
        /// `min.insync.replicas`.
        required: usize,
    },
}
