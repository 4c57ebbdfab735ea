//! Typed decode and encode errors. Kafka error codes are data, see [`crate::error_code`].

use thiserror::Error;

/// Why bytes could not be decoded as a Kafka message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind} at byte {offset}")]
pub struct DecodeError {
    /// Byte offset from the start of the decoded buffer where decoding failed.
    pub offset: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended before the field did.
    #[error("unexpected end of input")]
    UnexpectedEof,
    /// A length or count is negative (other than -1 for null) or does not fit the bytes left.
    #[error("invalid length {length} with {remaining} bytes remaining")]
    InvalidLength {
        /// The length or count read.
        length: i64,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A null was sent for a field that is not nullable in this version.
    #[error("null value for a non-nullable field")]
    NullNotAllowed,
    /// A nullable struct marker other than -1 or 1.
    #[error("invalid nullable struct marker {0}")]
    InvalidStructMarker(i8),
    /// A string is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// An unsigned varint is longer than 5 bytes.
    #[error("varint overflow")]
    VarintOverflow,
    /// A tagged field's declared size does not match its content, or tags are out of order.
    #[error("malformed tagged field {tag}")]
    InvalidTaggedField {
        /// The tag of the field.
        tag: u32,
    },
    /// Bytes are left over after the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The API key is not one Kafka defines.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The version is outside the message's valid range.
    #[error("unsupported version {version} of API key {api_key}")]
    UnsupportedVersion {
        /// The API key.
        api_key: i16,
        /// The requested version.
        version: i16,
    },
    /// The frame's size prefix exceeds the configured limit or is negative.
    #[error("frame size {size} outside 0..={limit}")]
    FrameTooLarge {
        /// The size prefix.
        size: i64,
        /// The configured limit.
        limit: usize,
    },
}

/// Why a message could not be encoded in the requested version.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A field holds null in a version where it is not nullable.
    #[error("field `{0}` is null but not nullable in this version")]
    NullNotAllowed(&'static str),
    /// A string, byte array or array is longer than its length prefix can express.
    #[error("value of {0} bytes or items is too long for its length prefix")]
    TooLong(usize),
    /// The version is outside the message's valid range.
    #[error("unsupported version {version} of {message}")]
    UnsupportedVersion {
        /// The message name.
        message: &'static str,
        /// The requested version.
        version: i16,
    },
}
