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

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame declaring a `2^window_log` window and no content size, then one raw block.
    fn frame_with_window(window_log: u8) -> Vec<u8> {
        let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
        frame.push(0x00); // no content size, not single segment, no checksum, no dictionary
        frame.push((window_log - 10) << 3);
        frame.extend_from_slice(&[0x09, 0x00, 0x00, b'a']); // last raw block of 1 byte
        frame
    }

    #[test]
    fn declared_window_beyond_the_bound_is_refused() {
        assert_eq!(decompress(&frame_with_window(20), 1 << 20).unwrap(), b"a");
        assert!(matches!(
            decompress(&frame_with_window(30), 1 << 20),
            Err(crate::Error::Decompression {
                codec: Compression::Zstd,
                ..
            })
        ));
    }

    #[test]
    fn round_trip() {
        let data = b"zstd zstd zstd zstd".repeat(1000);
        assert_eq!(
            decompress(&compress(&data).unwrap(), 1 << 20).unwrap(),
            data
        );
    }
}
