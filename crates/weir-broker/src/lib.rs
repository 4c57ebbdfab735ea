//! The Weir broker: a Kafka-compatible server composed of Weir's library crates.
//!
//! # Layout
//! - [`config`]: [`BrokerConfig`] from defaults, a file, the environment and flags, with
//!   Kafka's property names.
//! - [`server`]: binds the listener, accepts connections within limits, shuts down gracefully;
//!   `descriptors` raises the open-file limit and backs the accept loops off when it runs out.
//! - `connection`: one client connection: frames in, requests handled in order, responses out;
//!   `request_memory` caps the bytes of requests held at once (`queued.max.request.bytes`).
//! - `router`: API key → handler; the ApiVersions answer is derived from this table.
//! - `handler`: one module per Kafka API.
//! - `groups`: drives the group coordinator (weir-group): parked JoinGroup/SyncGroup requests,
//!   `__consumer_offsets` persistence and replay, the coordinator's timers.
//! - `transactions`: drives the transaction coordinator (weir-transaction) the same way over
//!   `__transaction_state`, and sends transaction markers to partition leaders.
//! - `cluster`: this node in the cluster: the metadata quorum and active controller
//!   (weir-metadata), joining, heartbeats, and the local logs kept in step with each metadata
//!   image before handlers see it.
//! - [`Broker`] (`state`): the state the handlers share: the topics of the published metadata
//!   image (`topics`) and the partition logs (`partitions`).
//! - `producers`: the idempotent producer state machine of one partition (no I/O);
//!   `producer_state` loads it from the log and snapshots it; `producer_ids` allocates ids.
//! - `replication`: each local replica's role (leader, follower, offline) from the metadata
//!   image, driving weir-replication's leader state: high watermark, ISR changes, acks=all
//!   waits, durable acknowledgement; `replica_fetcher` copies followed partitions from their
//!   leaders (OffsetForLeaderEpoch truncation, then Fetch as a replica).
//! - `error`: domain errors and the one place they become Kafka error codes.
//! - `admin` (topic deletion, growth, config changes on [`Broker`]) and `topic_config` (the
//!   topic config catalog and how values are described) serve the admin API handlers.
//! - `metrics` (request, byte, connection and log counters) and `admin_http` (the
//!   `weir.admin.listener` HTTP port: `/health`, `/metrics`).
//!
//! Data flows: socket → `connection` (frame, header) → `router` → `handler::<api>` → shared
//! state → response encoded back on the same connection, in request order.

mod admin;
mod admin_http;
mod append_lane;
mod blocking;
mod cluster;
pub mod config;
mod connection;
mod controller_node;
mod descriptors;
mod error;
mod groups;
mod handler;
mod internal_topics;
mod metrics;
mod partitions;
mod peer;
mod producer_ids;
mod producer_state;
mod producers;
mod replica_fetcher;
mod replication;
mod request_memory;
mod router;
pub mod server;

mod state;
mod topic_config;
mod topics;
mod transactions;

pub use config::{BrokerConfig, ConfigError};
pub use controller_node::ControllerNode;
pub use error::BrokerError;
pub use server::{Server, ServerError};
pub use state::Broker;
pub use topics::TopicError;

/// The broker's version, reported at startup and in ApiVersions.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
