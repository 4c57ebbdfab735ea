#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - `types`: the inputs and outputs in Kafka's vocabulary ([`JoinRequest`], [`Output`], …),
//!   re-exported at the crate root.
//! - `group`: one group's bookkeeping (members, generation, protocol vote, offsets).
//! - [`Coordinator`]: the classic protocol transitions (JoinGroup, SyncGroup, Heartbeat,
//!   LeaveGroup, timers), then committed offsets (OffsetCommit, OffsetFetch, OffsetDelete,
//!   retention) and the admin APIs (DescribeGroups, ListGroups, DeleteGroups, load, unload).
//! - [`record`]: the `__consumer_offsets` key and value formats.
//! - [`partition_for`]: which `__consumer_offsets` partition owns a group (FindCoordinator).
//!
//! Data flows one way: the broker decodes a request → calls the [`Coordinator`] with `now` →
//! takes [`Output`]s (persist records, then responses, some for other members' parked
//! requests) → arms one timer at [`Coordinator::next_deadline`] → calls
//! [`Coordinator::tick`]. On becoming leader of a `__consumer_offsets` partition the broker
//! replays it into [`Coordinator::load`].
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod admin;
mod config;
mod coordinator;
mod error;
mod group;
mod offsets;
mod partition;
pub mod record;
mod types;

pub use config::Config;
pub use coordinator::Coordinator;
pub use error::{Error, Result};
pub use partition::partition_for;
pub use types::*;

#[cfg(test)]
mod tests;
