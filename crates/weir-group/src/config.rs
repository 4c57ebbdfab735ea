//! Coordinator settings, named after Kafka's broker properties.

use crate::types::Millis;

/// Coordinator settings. Start from [`Config::default`] and set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `group.min.session.timeout.ms`: the shortest session timeout a member may ask for.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: the longest session timeout a member may ask for.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members. Weir defaults to 100 ms, not Kafka's 3 s: see `docs/groups.md`.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`: the most members (including those holding a fresh member id) a group
    /// admits.
    pub max_size: usize,
    /// `offsets.retention.minutes`, in milliseconds: how long an empty group keeps its offsets.
    pub offsets_retention_ms: Millis,
    /// `offsets.retention.check.interval.ms`: how often `tick` looks for expired offsets.
    pub offsets_retention_check_interval_ms: Millis,
    /// `offset.metadata.max.bytes`: the largest metadata string a commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// Mixed into generated member ids. The broker passes a random value at start so that ids
    /// handed out before and after a restart never collide.
    pub member_id_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 100,
            max_size: i32::MAX as usize,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            member_id_seed: 0,
        }
    }
}
