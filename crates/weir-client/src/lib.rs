//! An async client for Kafka-compatible brokers (Weir, Apache Kafka, Redpanda).
//!
//! # Layout
//! - [`ClientConfig`] and [`Client`]: bootstrap, one pipelined connection per broker, API
//!   version negotiation and a metadata cache that the producer, consumer and admin share.
//!   Requests flow `Client::send_to` → a broker's connection (writer task) → socket → reader
//!   task → the waiter for that correlation id → decoded by the caller at the negotiated
//!   version.
//! - [`producer`]: batching per partition, compression, idempotence, transactions
//!   (`transactional.id`: commit, abort, offsets sent to a transaction, fencing), the Java
//!   client's default partitioner.
//! - [`consumer`]: consumer groups (classic protocol) or hand-assigned partitions, a `Stream`
//!   of records, commits; the built-in assignors or an application's own
//!   ([`consumer::PartitionAssignor`]), with user data in JoinGroup and SyncGroup;
//!   `isolation.level=read_committed`, and the group metadata a transactional producer commits
//!   offsets with ([`consumer::Consumer::group_metadata`]).
//! - [`admin`]: topics, partitions, configs, groups, offsets, records, the cluster.
//!
//! Everything runs on tokio; nothing here blocks a runtime thread.

pub mod admin;
mod client;
mod config;
mod connection;
pub mod consumer;
mod error;
mod metadata;
pub mod producer;

pub use client::Client;
pub use config::ClientConfig;
pub use error::{Error, Result};
pub use metadata::{BrokerMetadata, PartitionMetadata, TopicMetadata, invalidates_metadata};
