#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - [`config`]: [`LogConfig`] (Kafka property names and defaults) and the injectable [`Clock`].
//! - [`fs`]: the [`FileSystem`]/[`File`] seam every byte goes through; [`fault`] is an
//!   in-memory implementation that tears writes, fails fsyncs and crashes; [`journal`] wraps a
//!   real one ([`SyncJournalFs`]) to record what was fsynced, and [`power_loss`] cuts a data
//!   directory back to it, for power-loss tests of real processes.
//! - `validate`: checks an append (framing, size, CRC-32C, records, timestamps) before writing.
//! - `handles`: [`HandleCache`] bounds the open files of inactive segments.
//! - `index`: sparse offset and time indexes of a segment.
//! - `segment`: one `.log` file with its indexes; scanning and recovery of its batches.
//! - `txn_index`: the aborted-transaction index of a segment (`.txnindex`, [`AbortedTxn`]).
//! - [`epoch_cache`]: [`LeaderEpochCache`], the start offset of each leader epoch and Kafka's
//!   OffsetForLeaderEpoch answer ([`EpochEndOffset`]); pure, no I/O.
//! - `checkpoint`: the recovery-point/log-start-offset checkpoint, the cleaner checkpoint, the
//!   leader epoch checkpoint and the clean-shutdown marker.
//! - `cleaner`: compaction passes (bounded key map, delete horizons, merging of small
//!   segments) over inactive segments and their crash-safe swap.
//! - [`LogManager`] (`manager`): every partition of a node across data directories, opened
//!   concurrently; `manager/future_log` moves a partition's log between them ([`LogMove`]).
//! - [`Log`] (`log`): one partition — append, read, offsets, roll, flush, truncate, retention.
//!
//! Data flows: producer bytes → `validate` → [`Log::append`] stamps offsets → the active
//! `segment` file (+ its indexes) → `fs`; reads go [`Log::read`] → index lookup → a
//! [`LogSlice`] of whole batches in a segment file. Beside that path, `cleaner` rewrites
//! inactive segments and swaps them in, retention and truncation drop or cut segments, and the
//! [`LogManager`] owns the [`Log`] of every partition and drives flushes, checkpoints and
//! cleaning.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod checkpoint;
mod cleaner;
pub mod config;
pub mod epoch_cache;
mod error;
pub mod fault;
pub mod fs;
mod handles;
mod index;
pub mod journal;
mod log;
mod manager;
mod segment;
mod txn_index;
mod validate;

pub use cleaner::{CompactionStats, DEFAULT_DEDUPE_BUFFER_SIZE};
pub use config::{CleanupPolicy, Clock, LogConfig, ManualClock, SystemClock, TimestampType};
pub use epoch_cache::{
    EpochEndOffset, EpochEntry, LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_OFFSET,
};
pub use error::{Error, Result};
pub use fs::{File, FileSystem, StdFs};
pub use handles::HandleCache;
pub use journal::{PowerLossReport, SyncJournalFs, power_loss, power_loss_preview};
pub use log::{AppendInfo, AppendOrigin, Log, LogOptions, LogSlice, TimestampOffset};
pub use manager::{LogManager, LogManagerOptions, LogMove, OfflineDir, TopicPartition};
pub use txn_index::AbortedTxn;
