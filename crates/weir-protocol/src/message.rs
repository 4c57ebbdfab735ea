//! The traits every generated message implements.

use crate::api_key::ApiKey;
use crate::codec::{Ctx, PResult};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use bytes::{Buf, Bytes, BytesMut};

/// An inclusive range of message versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

impl VersionRange {
    /// Whether `version` is in the range.
    pub const fn contains(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// Encoding and decoding of a struct in a given version; implemented by every generated
/// message and nested struct. Use [`Message::decode`] and [`Message::encode`] instead.
pub trait Wire: Sized {
    /// Parses the struct from `input`, a slice of the buffer behind `ctx`.
    #[doc(hidden)]
    fn read<'a>(ctx: &Ctx<'_>, input: &'a [u8], version: i16) -> PResult<'a, Self>;

    /// Appends the struct's encoding.
    #[doc(hidden)]
    fn write(&self, buf: &mut BytesMut, version: i16) -> Result<(), EncodeError>;
}

/// A top-level Kafka message (request, response, header or data record).
pub trait Message: Wire + Default + Clone + PartialEq + std::fmt::Debug {
    /// The schema name, e.g. `ProduceRequest`.
    const NAME: &'static str;
    /// Versions the schema defines.
    const VERSIONS: VersionRange;
    /// The first flexible version (compact encodings and tagged fields), if any.
    const FLEXIBLE_MIN: Option<i16>;

    /// Decodes one message from the front of `buf` and advances it past the message.
    fn decode(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError> {
        if !Self::VERSIONS.contains(version) {
            return Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::UnsupportedVersion {
                    api_key: -1,
                    version,
                },
            });
        }
        let src = buf.clone();
        let ctx = Ctx::new(&src);
        let (rest, message) = Self::read(&ctx, &src, version).map_err(|e| ctx.error(e))?;
        let consumed = ctx.offset_of(rest);
        buf.advance(consumed);
        Ok(message)
    }

    /// Decodes a message that must span all of `buf`.
    fn decode_exact(mut buf: Bytes, version: i16) -> Result<Self, DecodeError> {
        let total = buf.len();
        let message = Self::decode(&mut buf, version)?;
        if buf.is_empty() {
            Ok(message)
        } else {
            Err(DecodeError {
                offset: total - buf.len(),
                kind: DecodeErrorKind::TrailingBytes(buf.len()),
            })
        }
    }

    /// Appends the message encoded in `version`.
    fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), EncodeError> {
        if !Self::VERSIONS.contains(version) {
            return Err(EncodeError::UnsupportedVersion {
                message: Self::NAME,
                version,
            });
        }
        self.write(buf, version)
    }

    /// Whether `version` uses the flexible encoding.
    fn is_flexible(version: i16) -> bool {
        Self::FLEXIBLE_MIN.is_some_and(|min| version >= min)
    }
}

/// A request, paired with its response type.
pub trait Request: Message {
    /// The API key of the request.
    const API_KEY: ApiKey;
    /// The response to this request.
    type Response: Response;
}

/// A response.
pub trait Response: Message {
    /// The API key of the response.
    const API_KEY: ApiKey;
}
