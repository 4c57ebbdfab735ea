//! The producer: batching per partition, compression, idempotence and partitioning.
