//! Compression codecs for record payloads: gzip, Snappy (raw and xerial framing), LZ4 frame and
//! Zstandard, each behind a cargo feature of the same name.
//!
//! Decompression never trusts a size from the input: output grows in a [`Bounded`] buffer whose
//! capacity never exceeds the caller's limit, so a decompression bomb fails with
//! [`Error::DecompressionLimit`] after allocating at most the limit.

#[cfg(feature = "gzip")]
mod gzip;
#[cfg(feature = "lz4")]
pub(crate) mod lz4;
#[cfg(feature = "snappy")]
mod snappy;
#[cfg(feature = "zstd")]
mod zstd;

use crate::batch::Compression;
use crate::error::CodecError;
use crate::{Error, Result};

/// Compresses `input` with `codec` in the format every Kafka client reads.
pub(crate) fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>> {
    let compressed: Result<Vec<u8>, CodecError> = match codec {
        Compression::None => Ok(input.to_vec()),
        #[cfg(feature = "gzip")]
        Compression::Gzip => gzip::compress(input),
        #[cfg(feature = "snappy")]
        Compression::Snappy => snappy::compress(input),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => lz4::compress(input),
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd::compress(input),
        #[cfg_attr(
            all(
                feature = "gzip",
                feature = "snappy",
                feature = "lz4",
                feature = "zstd"
            ),
            expect(unreachable_patterns, reason = "every codec feature is enabled")
        )]
        other => return Err(Error::UnsupportedCompression(other.id())),
    };
    compressed.map_err(|source| Error::Compression { codec, source })
}

/// How a payload was framed, where the record format changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// RecordBatch v2 and magic 1 messages.
    Standard,
    /// Magic 0 messages: Kafka's first LZ4 writer computed the frame header checksum over the
    /// magic number too, so the checksum is not verified for these.
    LegacyLz4HeaderChecksum,
}

/// Decompresses `input`, refusing to produce more than `limit` bytes.
pub(crate) fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
    framing: Framing,
) -> Result<Vec<u8>> {
    #[cfg(not(feature = "lz4"))]
    let _ = framing;
    match codec {
        Compression::None => {
            let mut out = Bounded::new(codec, limit, input.len());
            out.extend(input)?;
            Ok(out.into_vec())
        }
        #[cfg(feature = "gzip")]
        Compression::Gzip => gzip::decompress(input, limit),
        #[cfg(feature = "snappy")]
        Compression::Snappy => snappy::decompress(input, limit),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => lz4::decompress(input, limit, framing),
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd::decompress(input, limit),
        #[cfg_attr(
            all(
                feature = "gzip",
                feature = "snappy",
                feature = "lz4",
                feature = "zstd"
            ),
            expect(unreachable_patterns, reason = "every codec feature is enabled")
        )]
        other => Err(Error::UnsupportedCompression(other.id())),
    }
}

/// An output buffer whose capacity never exceeds `limit`.
pub(crate) struct Bounded {
    codec: Compression,
    limit: usize,
    buf: Vec<u8>,
}

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
impl Bounded {
    /// Smallest growth step, so small payloads do not reallocate byte by byte.
    const MIN_GROWTH: usize = 4096;

    /// An empty buffer; `compressed_len` seeds the first allocation (a guess, never a promise).
    pub(crate) fn new(codec: Compression, limit: usize, compressed_len: usize) -> Self {
        let initial = compressed_len
            .saturating_mul(2)
            .clamp(Self::MIN_GROWTH, 1 << 20);
        Self {
            codec,
            limit,
            buf: Vec::with_capacity(initial.min(limit)),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes that may still be written before the limit.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    pub(crate) fn limit_error(&self) -> Error {
        Error::DecompressionLimit {
            codec: self.codec,
            limit: self.limit,
        }
    }

    /// Makes room for `additional` more bytes, failing if that passes the limit.
    pub(crate) fn reserve(&mut self, additional: usize) -> Result<()> {
        let needed = self
            .buf
            .len()
            .checked_add(additional)
            .filter(|&n| n <= self.limit)
            .ok_or_else(|| self.limit_error())?;
        if needed <= self.buf.capacity() {
            return Ok(());
        }
        // Double like Vec would, but never past the limit.
        let target = self
            .buf
            .capacity()
            .saturating_mul(2)
            .max(Self::MIN_GROWTH)
            .max(needed)
            .min(self.limit);
        self.buf
            .try_reserve_exact(target - self.buf.len())
            .map_err(|_| Error::TooLarge {
                size: target,
                limit: self.limit,
            })
    }

    pub(crate) fn extend(&mut self, data: &[u8]) -> Result<()> {
        self.reserve(data.len())?;
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Zero-extends by `additional` bytes and returns them, for decoders that write into a slice.
    pub(crate) fn spare(&mut self, additional: usize) -> Result<&mut [u8]> {
        self.reserve(additional)?;
        let start = self.buf.len();
        self.buf.resize(start + additional, 0);
        Ok(self.buf.get_mut(start..).unwrap_or_default())
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    #[cfg(feature = "lz4")]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Drains a streaming decoder into a [`Bounded`] buffer.
#[cfg(any(feature = "gzip", feature = "zstd"))]
pub(crate) fn read_bounded(
    codec: Compression,
    mut reader: impl std::io::Read,
    limit: usize,
    compressed_len: usize,
) -> Result<Vec<u8>> {
    let mut out = Bounded::new(codec, limit, compressed_len);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out.into_vec()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Decompression {
                    codec,
                    source: CodecError::new(e),
                });
            }
        };
        out.extend(chunk.get(..n).unwrap_or_default())?;
    }
}

/// The error for malformed framing we check ourselves.
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
pub(crate) fn corrupt(codec: Compression, what: &'static str) -> Error {
    Error::Decompression {
        codec,
        source: CodecError::msg(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_never_grows_past_the_limit() {
        let mut out = Bounded::new(Compression::None, 10_000, 1);
        for _ in 0..10 {
            out.extend(&[7; 1000]).unwrap();
        }
        assert!(out.buf.capacity() <= 10_000);
        assert_eq!(
            out.extend(&[1]),
            Err(Error::DecompressionLimit {
                codec: Compression::None,
                limit: 10_000
            })
        );
    }
}
