//! The crate's error type.

use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a log operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system call failed.
    #[error("I/O error: {op} {path}")]
    Io {
        /// What the log was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A write or fsync failed earlier, so the page cache can no longer be trusted; the log
    /// refuses further appends and reads until it is reopened (recovery decides what survived).
    #[error("log {path} is offline after an earlier storage error")]
    Offline {
        /// The partition directory.
        path: PathBuf,
    },
    /// A record batch in an append is malformed (bad magic, length, CRC or records).
    #[error("invalid record batch at byte {position} of the append")]
    InvalidBatch {
        /// Byte position of the batch within the appended buffer.
        position: usize,
        /// What is wrong with it.
        #[source]
        source: weir_records::Error,
    },
    /// The append holds no batch.
    #[error("append holds no record batch")]
    EmptyAppend,
    /// A batch is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {limit}")]
    MessageTooLarge {
        /// Size of the batch.
        size: usize,
        /// The configured limit.
        limit: u32,
    },
    /// The records of a batch disagree with its header (offset deltas, record count, last
    /// offset delta, max timestamp) or do not fill it exactly.
    #[error("invalid records in batch at byte {position}: {reason}")]
    InvalidRecords {
        /// Byte position of the batch within the appended buffer.
        position: usize,
        /// Which check failed.
        reason: &'static str,
    },
    /// A CreateTime timestamp lies outside `message.timestamp.before.max.ms` /
    /// `message.timestamp.after.max.ms` of the broker's clock.
    #[error("timestamp {timestamp} is out of the accepted range around {now}")]
    InvalidTimestamp {
        /// The offending timestamp.
        timestamp: i64,
        /// The broker's clock.
        now: i64,
    },
    /// A replicated append does not continue the log (offsets not increasing).
    #[error("replicated batch at offset {offset} does not follow log end offset {log_end_offset}")]
    OutOfOrderOffset {
        /// Base offset of the batch.
        offset: i64,
        /// The log end offset it should be at or above.
        log_end_offset: i64,
    },
    /// The requested offset is outside `[log start offset, log end offset]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// First offset in the log.
        log_start_offset: i64,
        /// Offset the next append gets.
        log_end_offset: i64,
    },
    /// A configuration value is not valid.
    #[error("invalid value {value:?} for {name}: {reason}")]
    InvalidConfig {
        /// Kafka property name.
        name: String,
        /// The given value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A path is not one of the data directories (`log.dirs`).
    #[error("{path} is not a data directory")]
    UnknownDataDir {
        /// The path given.
        path: PathBuf,
    },
    /// The node has no log of the partition.
    #[error("no log of partition {partition}")]
    UnknownPartition {
        /// `<topic>-<partition>`.
        partition: String,
    },
    /// The partition's log is already being moved to another data directory.
    #[error("partition {partition} is already being moved")]
    MoveInProgress {
        /// `<topic>-<partition>`.
        partition: String,
    },
    /// A file the log owns has content it cannot use and cannot repair by truncation.
    #[error("corrupt log file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
