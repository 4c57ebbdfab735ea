//! Zstandard via the zstd crate.

use super::{corrupt, read_bounded};
use crate::Result;
use crate::batch::Compression;
use crate::error::CodecError;

/// The level Kafka's producers default to.
const LEVEL: i32 = 3;
/// Smallest window the decoder accepts, whatever the limit: Java producers stream without a
/// pledged size, so their frames declare the level's full window (2 MiB at level 3, 8 MiB up to
/// level 19) even for a small batch.
const MIN_WINDOW_LOG: u32 = 23;
/// zstd's own default ceiling for the decoder window (128 MiB).
const MAX_WINDOW_LOG: u32 = 27;

pub(super) fn compress(input: &[u8]) -> Result<Vec<u8>, CodecError> {
    zstd::bulk::compress(input, LEVEL).map_err(CodecError::new)
}

pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(input)
        .map_err(|_| corrupt(Compression::Zstd, "cannot create a zstd decoder"))?;
    // The window is the decoder's own buffer, separate from the output: bound it by the limit
    // too, so a frame declaring a huge window cannot make us allocate it.
    let window_log = limit
        .checked_next_power_of_two()
        .map_or(MAX_WINDOW_LOG, |p| p.trailing_zeros())
        .clamp(MIN_WINDOW_LOG, MAX_WINDOW_LOG);
    decoder
        .window_log_max(window_log)
        .map_err(|e| crate::Error::Decompression {
            codec: Compression::Zstd,
            source: CodecError::new(e),
        })?;
    read_bounded(Compression::Zstd, decoder, limit, input.len())
}
