//! LZ4 frame format (not raw LZ4 blocks), as Kafka uses it since 0.10.
//!
//! The frame layer is parsed here and only blocks are handed to lz4_flex's safe decoder, so every
//! block lands directly in the bounded output and no size field from the input (block maximum,
//! content size) decides an allocation.
//!
//! Writers: the Java client writes 64 KiB independent blocks without block or content
//! checksums; librdkafka likewise uses independent blocks. We write the same.

use super::{Bounded, Framing, corrupt};
use crate::Result;
use crate::batch::Compression;
use crate::error::CodecError;
use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
use std::io::Write;
use twox_hash::XxHash32;

const MAGIC: u32 = 0x184D_2204;
const SKIPPABLE_MAGIC_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// Blocks reference at most this far back.
const WINDOW: usize = 64 * 1024;

const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
const FLG_BLOCK_INDEPENDENT: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_RESERVED: u8 = 0b0000_0010;
const FLG_DICT_ID: u8 = 0b0000_0001;
const BD_RESERVED: u8 = 0b1000_1111;
const BLOCK_UNCOMPRESSED: u32 = 0x8000_0000;

pub(super) fn compress(input: &[u8]) -> Result<Vec<u8>, CodecError> {
    let info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent);
    let mut encoder = FrameEncoder::with_frame_info(info, Vec::with_capacity(input.len() / 2 + 32));
    encoder.write_all(input).map_err(CodecError::new)?;
    encoder.finish().map_err(CodecError::new)
}

pub(super) fn decompress(input: &[u8], limit: usize, framing: Framing) -> Result<Vec<u8>> {
    let mut out = Bounded::new(Compression::Lz4, limit, input.len());
    let mut input = Input(input);
    while !input.0.is_empty() {
        let magic = u32::from_le_bytes(input.take::<4>("truncated frame magic")?);
        if magic & SKIPPABLE_MAGIC_MASK == SKIPPABLE_MAGIC {
            let len = u32::from_le_bytes(input.take::<4>("truncated skippable frame")?);
            input.slice(len as usize, "truncated skippable frame")?;
            continue;
        }
        if magic != MAGIC {
            return Err(err("not an LZ4 frame"));
        }
        decode_frame(&mut input, &mut out, framing)?;
    }
    Ok(out.into_vec())
}

fn decode_frame(input: &mut Input<'_>, out: &mut Bounded, framing: Framing) -> Result<()> {
    let descriptor_start = input.0;
    let [flg, bd] = input.take::<2>("truncated frame descriptor")?;
    if flg & FLG_VERSION_MASK != FLG_VERSION_01 {
        return Err(err("unsupported LZ4 frame version"));
    }
    if flg & FLG_RESERVED != 0 || bd & BD_RESERVED != 0 {
        return Err(err("reserved LZ4 frame bits set"));
    }
    if flg & FLG_DICT_ID != 0 {
        return Err(err("LZ4 dictionaries are not supported"));
    }
    let block_max = match (bd >> 4) & 0x07 {
        4 => 64 * 1024,
        5 => 256 * 1024,
        6 => 1024 * 1024,
        7 => 4 * 1024 * 1024,
        _ => return Err(err("invalid LZ4 block maximum size")),
    };
    let content_size = if flg & FLG_CONTENT_SIZE != 0 {
        Some(u64::from_le_bytes(
            input.take::<8>("truncated content size")?,
        ))
    } else {
        None
    };
    let descriptor_len = descriptor_start.len() - input.0.len();
    let descriptor = descriptor_start.get(..descriptor_len).unwrap_or_default();
    let [checksum] = input.take::<1>("truncated header checksum")?;
    if framing == Framing::Standard && checksum != header_checksum(descriptor) {
        return Err(err("LZ4 frame header checksum mismatch"));
    }

    let frame_start = out.len();
    loop {
        let word = u32::from_le_bytes(input.take::<4>("truncated block size")?);
        if word == 0 {
            break;
        }
        let len = (word & !BLOCK_UNCOMPRESSED) as usize;
        if len > block_max {
            return Err(err("LZ4 block larger than the frame's maximum"));
        }
        let block = input.slice(len, "truncated block")?;
        if flg & FLG_BLOCK_CHECKSUM != 0 {
            let stored = u32::from_le_bytes(input.take::<4>("truncated block checksum")?);
            if stored != XxHash32::oneshot(0, block) {
                return Err(err("LZ4 block checksum mismatch"));
            }
        }
        if word & BLOCK_UNCOMPRESSED != 0 {
            out.extend(block)?;
            continue;
        }
        // Decode straight into the output; a block may fill up to its maximum, but never past
        // the caller's limit.
        let start = out.len();
        let room = block_max.min(out.room());
        let cut_by_limit = room < block_max;
        let dict_start = if flg & FLG_BLOCK_INDEPENDENT != 0 {
            start
        } else {
            start.saturating_sub(WINDOW).max(frame_start)
        };
        out.spare(room)?;
        let decoded = {
            let buf = out.as_mut_slice();
            let (head, tail) = buf.split_at_mut(start.min(buf.len()));
            let dict = head.get(dict_start..).unwrap_or_default();
            lz4_flex::block::decompress_into_with_dict(block, tail, dict)
        };
        match decoded {
            Ok(n) => out.truncate(start + n),
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) if cut_by_limit => {
                return Err(out.limit_error());
            }
            Err(e) => {
                return Err(crate::Error::Decompression {
                    codec: Compression::Lz4,
                    source: CodecError::new(e),
                });
            }
        }
    }
    let content = out.as_slice().get(frame_start..).unwrap_or_default();
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        let stored = u32::from_le_bytes(input.take::<4>("truncated content checksum")?);
        if stored != XxHash32::oneshot(0, content) {
            return Err(err("LZ4 content checksum mismatch"));
        }
    }
    if content_size.is_some_and(|size| size != content.len() as u64) {
        return Err(err("LZ4 content size mismatch"));
    }
    Ok(())
}

/// The frame header checksum: the second byte of xxHash-32 over the frame descriptor.
fn header_checksum(descriptor: &[u8]) -> u8 {
    (XxHash32::oneshot(0, descriptor) >> 8) as u8
}

fn err(what: &'static str) -> crate::Error {
    corrupt(Compression::Lz4, what)
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or_else(|| err(what))?;
        self.0 = rest;
        Ok(*head)
    }

    fn slice(&mut self, len: usize, what: &'static str) -> Result<&'a [u8]> {
        if len > self.0.len() {
            return Err(err(what));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Rewrites a frame's header checksum the way Kafka's magic 0 LZ4 writer computed it: over
    /// the magic number and the descriptor.
    pub(crate) fn break_header_checksum(frame: &mut [u8]) {
        let descriptor_end = 6 + if frame[4] & FLG_CONTENT_SIZE != 0 {
            8
        } else {
            0
        };
        frame[descriptor_end] = (XxHash32::oneshot(0, &frame[..descriptor_end]) >> 8) as u8;
    }

    #[test]
    fn writes_64k_independent_blocks_without_checksums() {
        let frame = compress(&[1; 200_000]).unwrap();
        assert_eq!(frame[..4], MAGIC.to_le_bytes());
        assert_eq!(frame[4], FLG_VERSION_01 | FLG_BLOCK_INDEPENDENT);
        assert_eq!(frame[5], 4 << 4);
        assert_eq!(frame[6], header_checksum(&frame[4..6]));
    }

    #[test]
    fn reads_lz4_flex_frames_with_checksums_and_linked_blocks() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 97) as u8 ^ (i / 1000) as u8)
            .collect();
        for mode in [BlockMode::Independent, BlockMode::Linked] {
            let info = FrameInfo::new()
                .block_size(BlockSize::Max256KB)
                .block_mode(mode)
                .block_checksums(true)
                .content_checksum(true)
                .content_size(Some(data.len() as u64));
            let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
            encoder.write_all(&data).unwrap();
            let frame = encoder.finish().unwrap();
            assert_eq!(
                decompress(&frame, 1 << 20, Framing::Standard).unwrap(),
                data
            );
        }
    }

    #[test]
    fn legacy_header_checksum_only_accepted_for_magic_0() {
        let mut frame = compress(b"old kafka lz4 old kafka lz4").unwrap();
        break_header_checksum(&mut frame);
        assert!(decompress(&frame, 1024, Framing::Standard).is_err());
        assert_eq!(
            decompress(&frame, 1024, Framing::LegacyLz4HeaderChecksum).unwrap(),
            b"old kafka lz4 old kafka lz4"
        );
    }

    #[test]
    fn corrupt_checksums_are_detected() {
        let mut frame = compress(b"abc").unwrap();
        frame[6] ^= 1;
        assert!(decompress(&frame, 1024, Framing::Standard).is_err());
    }
}
