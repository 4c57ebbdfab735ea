//! The metadata cache: brokers, topics, partitions and their leaders.
