use crate::batch::Compression;
use std::fmt;
use std::sync::Arc;
use thiserror::Error;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why bytes are not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes are available than the format needs: a torn write or a partial batch at the
    /// end of a fetch response.
    #[error("truncated input: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the next item needs.
        needed: usize,
        /// Bytes that are available.
        available: usize,
    },
    /// The magic byte names a format this function does not handle.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The batch length field is smaller than a batch header or negative.
    #[error("invalid batch length {0}")]
    InvalidBatchLength(i32),
    /// The stored CRC does not match the bytes.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the batch header.
        stored: u32,
        /// CRC computed over the batch.
        computed: u32,
    },
    /// A record inside the batch is malformed.
    #[error("corrupt record: {0}")]
    CorruptRecord(&'static str),
    /// A varint runs past 5 bytes (varint) or 10 bytes (varlong).
    #[error("varint overflow")]
    VarintOverflow,
    /// The batch uses a compression codec this build does not support.
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u8),
    /// The batch would be larger than the format or the caller allows.
    #[error("batch too large: {size} bytes, limit {limit}")]
    TooLarge {
        /// Size that was needed.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Decompressing the records would produce more bytes than the caller allows: a
    /// decompression bomb, or a batch that needs a larger limit.
    #[error("{codec:?} records decompress to more than the limit of {limit} bytes")]
    DecompressionLimit {
        /// Codec of the batch.
        codec: Compression,
        /// The limit in bytes.
        limit: usize,
    },
    /// The compressed records are not valid for their codec.
    #[error("corrupt {codec:?} compressed records")]
    Decompression {
        /// Codec of the batch.
        codec: Compression,
        /// What the codec reported.
        #[source]
        source: CodecError,
    },
    /// A codec failed to compress records while building a batch.
    #[error("{codec:?} compression failed")]
    Compression {
        /// Codec of the batch.
        codec: Compression,
        /// What the codec reported.
        #[source]
        source: CodecError,
    },
    /// A control record's key or value is malformed.
    #[error("corrupt control record: {0}")]
    CorruptControlRecord(&'static str),
    /// A legacy (magic 0 or 1) message is malformed.
    #[error("corrupt legacy message: {0}")]
    CorruptMessage(&'static str),
}

/// An error reported by a compression library, kept so callers can walk the source chain.
///
/// Errors compare equal when their messages do, so [`enum@Error`] stays `PartialEq` for tests.
#[derive(Clone)]
pub struct CodecError(Arc<dyn std::error::Error + Send + Sync + 'static>);

#[cfg_attr(
    not(all(
        feature = "gzip",
        feature = "snappy",
        feature = "lz4",
        feature = "zstd"
    )),
    allow(
        dead_code,
        reason = "each helper serves only some codecs; `expect` would be unfulfilled in other feature sets"
    )
)]
impl CodecError {
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    pub(crate) fn msg(message: &'static str) -> Self {
        Self::new(Message(message))
    }
}

impl fmt::Debug for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for CodecError {
    // The wrapped error is this error (its message is printed by Display), so the chain
    // continues at its source; returning the wrapped error would print it twice.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for CodecError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for CodecError {}

/// A codec failure we detect ourselves (framing around the codec's own format).
#[cfg_attr(
    not(all(
        feature = "gzip",
        feature = "snappy",
        feature = "lz4",
        feature = "zstd"
    )),
    allow(
        dead_code,
        reason = "each helper serves only some codecs; `expect` would be unfulfilled in other feature sets"
    )
)]
#[derive(Debug)]
struct Message(&'static str);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Message {}
