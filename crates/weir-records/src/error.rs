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
}
