#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - [`varint`]: zig-zag varints and varlongs used inside records, including the inlined
//!   [`varint::read_zigzag`] that weir-log's append check uses.
//! - [`batch`]: [`RecordBatch`], a zero-copy view over one RecordBatch v2 (magic 2) that
//!   exposes every header field without decoding records, verifies the CRC-32C ([`crc32c`], the
//!   one implementation Weir uses) and lets the broker stamp the fields it owns (base offset,
//!   partition leader epoch).
//! - [`record`]: [`Record`] and [`Header`], decoded lazily by [`Records`].
//! - `compression` (private): the gzip, Snappy (xerial and raw), LZ4 frame and Zstandard codecs,
//!   each behind a cargo feature; decompression is bounded by a caller's limit.
//! - [`builder`]: [`RecordBatchBuilder`], which encodes (and compresses) records into a batch.
//! - [`control`]: [`ControlRecord`] keys and [`EndTransactionMarker`]s, the records of control
//!   batches.
//! - [`legacy`]: [`LegacyRecords`], a reader for magic 0 and 1 message sets, including
//!   compressed wrapper messages.
//!
//! Data flows one way: bytes from the wire or a segment file → [`RecordBatches`] splits them
//! into [`RecordBatch`] views → [`RecordBatch::records`] decompresses and decodes records on
//! demand. Old data takes the side path through [`LegacyRecords`].
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod batch;
pub mod builder;
mod compression;
pub mod control;
mod error;
pub mod legacy;
pub mod record;
pub mod varint;

pub use batch::{Attributes, Compression, RecordBatch, RecordBatches, TimestampType, crc32c};
pub use builder::RecordBatchBuilder;
pub use control::{ControlRecord, ControlRecordType, EndTransactionMarker};
pub use error::{CodecError, Error, Result};
pub use legacy::LegacyRecords;
pub use record::{Header, Record, Records};
