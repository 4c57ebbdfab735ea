//! gzip (RFC 1952) via flate2.

use super::read_bounded;
use crate::Result;
use crate::batch::Compression;
use crate::error::CodecError;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use std::io::Write;

pub(super) fn compress(input: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(input.len() / 2 + 64),
        flate2::Compression::default(),
    );
    encoder.write_all(input).map_err(CodecError::new)?;
    encoder.finish().map_err(CodecError::new)
}

pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    // Java's GZIPInputStream reads concatenated members, so a producer may legally send several.
    read_bounded(
        Compression::Gzip,
        MultiGzDecoder::new(input),
        limit,
        input.len(),
    )
}
