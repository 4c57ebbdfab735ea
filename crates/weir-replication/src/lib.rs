#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - `types`: the vocabulary shared with the broker and the controller ([`LeaderAndIsr`],
//!   [`AlterIsr`], [`ReplicationConfig`], [`BrokerId`], the undefined epoch and offset),
//!   re-exported at the crate root.
//! - `leader`: [`LeaderPartition`], the leader's view of one partition: follower log end
//!   offsets, the high watermark over the (maximal) ISR, ISR expansion on fetch and shrink on
//!   [`LeaderPartition::tick`], at most one [`AlterIsr`] in flight, `min.insync.replicas`.
//! - `truncation`: [`truncation_offset`], where a follower truncates its log when it starts
//!   following a new leader (KIP-101 and KIP-279, OffsetForLeaderEpoch).
//! - `error`: [`ReplicationError`], the one error type.
//!
//! Data flows one way: the broker applies a metadata image → builds or updates a
//! [`LeaderPartition`] (or, as a follower, asks the leader OffsetForLeaderEpoch and calls
//! [`truncation_offset`]) → feeds it fetches, its own log end offset and periodic ticks →
//! publishes the high watermarks and sends the [`AlterIsr`] requests it returns → feeds the
//! controller's answer back through [`LeaderPartition::alter_isr_completed`].
//!
//! The crate holds no log and does no I/O: which log end offset counts (the fsynced one under
//! durable acknowledgement) is the caller's choice, and so is checking leader epochs on
//! incoming requests.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod error;
mod leader;
mod truncation;
mod types;

pub use error::ReplicationError;
pub use leader::{FollowerFetchOutcome, FollowerProgress, LeaderPartition};
pub use truncation::{EpochEndOffset, Truncation, truncation_offset};
pub use types::*;
