//! Coordinator settings, named after Kafka's broker properties.

use crate::types::Millis;

/// Coordinator settings. Start from [`Config::default`] and set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `transaction.state.log.num.partitions`: how many `__transaction_state` partitions the
    /// transactional ids are spread over. Must be the existing topic's count once it exists:
    /// records are already placed by it.
    pub state_log_partitions: i32,
    /// `offsets.topic.num.partitions` (the existing `__consumer_offsets` count): AddOffsetsToTxn
    /// adds the group's partition of that topic.
    pub offsets_topic_partitions: i32,
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask
    /// for.
    pub max_transaction_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: how long a transactional id with no transaction open
    /// is kept without activity before it is deleted.
    pub transactional_id_expiration_ms: Millis,
    /// How long `tick` waits before retrying a write it started itself (a timeout abort, a
    /// completion after markers, an expiration) when the append failed. Kafka retries these on
    /// its cleanup intervals; a short fixed backoff keeps the broker's timer from spinning on a
    /// partition that cannot take writes.
    pub retry_backoff_ms: Millis,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_log_partitions: 50,
            offsets_topic_partitions: 50,
            max_transaction_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            retry_backoff_ms: 1_000,
        }
    }
}
