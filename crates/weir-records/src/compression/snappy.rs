//! Snappy, in the two shapes Kafka clients send.
//!
//! - Xerial framing, written by the Java client (snappy-java's `SnappyOutputStream`): a 16-byte
//!   header (`\x82SNAPPY\0`, version 1, compatible version 1), then blocks of a big-endian
//!   int32 length and one raw Snappy block each.
//! - One raw Snappy block, written by librdkafka and several other clients.
//!
//! librdkafka, snappy-java (and so the Java client) and the other major clients read xerial
//! framing, while some older consumers read nothing else, so [`compress`] writes xerial framing;
//! [`decompress`] reads both.

use super::{Bounded, corrupt};
use crate::batch::Compression;
use crate::error::CodecError;
use crate::{Error, Result};

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
const XERIAL_VERSION: i32 = 1;
const XERIAL_COMPATIBLE_VERSION: i32 = 1;
/// Uncompressed bytes per xerial block; snappy-java's default.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;

pub(super) fn compress(input: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(
        XERIAL_HEADER_LEN
            + snap::raw::max_compress_len(input.len())
            + 4 * (input.len() / XERIAL_BLOCK_SIZE + 1),
    );
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_COMPATIBLE_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    let mut block = vec![0; snap::raw::max_compress_len(XERIAL_BLOCK_SIZE)];
    for chunk in input.chunks(XERIAL_BLOCK_SIZE) {
        let n = encoder
            .compress(chunk, &mut block)
            .map_err(CodecError::new)?;
        let compressed = block.get(..n).unwrap_or_default();
        let len = i32::try_from(n).map_err(|_| CodecError::msg("snappy block too large"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(compressed);
    }
    Ok(out)
}

pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Bounded::new(Compression::Snappy, limit, input.len());
    if input.starts_with(&XERIAL_MAGIC) {
        decompress_xerial(input, &mut out)?;
    } else {
        decompress_raw(input, &mut out)?;
    }
    Ok(out.into_vec())
}

fn decompress_xerial(mut input: &[u8], out: &mut Bounded) -> Result<()> {
    while !input.is_empty() {
        // snappy-java tolerates concatenated streams, each with its own header.
        if input.starts_with(&XERIAL_MAGIC) {
            input = input
                .get(XERIAL_HEADER_LEN..)
                .ok_or_else(|| corrupt(Compression::Snappy, "truncated xerial header"))?;
            continue;
        }
        let (len, rest) = input
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(Compression::Snappy, "truncated xerial block length"))?;
        let len = usize::try_from(i32::from_be_bytes(*len))
            .map_err(|_| corrupt(Compression::Snappy, "negative xerial block length"))?;
        if len > rest.len() {
            return Err(corrupt(
                Compression::Snappy,
                "xerial block longer than the input",
            ));
        }
        let (block, rest) = rest.split_at(len);
        decompress_raw(block, out)?;
        input = rest;
    }
    Ok(())
}

/// Decodes one raw Snappy block, appending to `out`.
fn decompress_raw(block: &[u8], out: &mut Bounded) -> Result<()> {
    let snappy_error = |e: snap::Error| Error::Decompression {
        codec: Compression::Snappy,
        source: CodecError::new(e),
    };
    // The block declares its decoded length; check it against the limit before allocating
    // and let the decoder prove it (it fails unless the output is exactly that long).
    let declared = snap::raw::decompress_len(block).map_err(snappy_error)?;
    if declared > out.room() {
        return Err(out.limit_error());
    }
    let start = out.len();
    let dst = out.spare(declared)?;
    let n = snap::raw::Decoder::new()
        .decompress(block, dst)
        .map_err(snappy_error)?;
    out.truncate(start + n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_xerial_framing() {
        let out = compress(b"hello hello hello").unwrap();
        assert_eq!(out[..8], XERIAL_MAGIC);
        assert_eq!(out[8..16], [0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn reads_raw_and_xerial() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(&raw, 1 << 20).unwrap(), data);
        let xerial = compress(&data).unwrap();
        assert_ne!(raw, xerial);
        assert_eq!(decompress(&xerial, 1 << 20).unwrap(), data);
        // Two concatenated xerial streams decode to both payloads.
        let mut twice = xerial.clone();
        twice.extend_from_slice(&xerial);
        assert_eq!(decompress(&twice, 1 << 20).unwrap().len(), 2 * data.len());
    }

    #[test]
    fn declared_length_beyond_limit_is_refused_before_allocating() {
        // A raw block whose preamble claims 1 GiB.
        let block = [0x80, 0x80, 0x80, 0x80, 0x04, 0x00];
        assert_eq!(
            decompress(&block, 1 << 20),
            Err(Error::DecompressionLimit {
                codec: Compression::Snappy,
                limit: 1 << 20
            })
        );
    }
}
