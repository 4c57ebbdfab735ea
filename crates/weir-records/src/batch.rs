//! [`RecordBatch`]: a zero-copy view over one RecordBatch v2 (magic 2).
//!
//! On the wire and on disk a batch is:
//!
//! | bytes  | field                  | covered by CRC |
//! |--------|------------------------|----------------|
//! | 0..8   | base offset            | no             |
//! | 8..12  | batch length (after this field) | no    |
//! | 12..16 | partition leader epoch | no             |
//! | 16     | magic (2)              | no             |
//! | 17..21 | CRC-32C                | no             |
//! | 21..23 | attributes             | yes            |
//! | 23..27 | last offset delta      | yes            |
//! | 27..35 | base timestamp         | yes            |
//! | 35..43 | max timestamp          | yes            |
//! | 43..51 | producer id            | yes            |
//! | 51..53 | producer epoch         | yes            |
//! | 53..57 | base sequence          | yes            |
//! | 57..61 | record count           | yes            |
//! | 61..   | records (maybe compressed) | yes        |
//!
//! Because the CRC does not cover the base offset or the partition leader epoch, a broker can
//! assign offsets without re-checksumming.

use crate::compression::{self, Framing};
use crate::{Error, Result, record::Records};
use bytes::Bytes;

/// Size of the fixed RecordBatch v2 header.
pub const BATCH_HEADER_LEN: usize = 61;
/// Size of the prefix every batch format shares: base offset (8) and batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Offset of the magic byte, the same in every message format.
pub const MAGIC_OFFSET: usize = 16;
/// Offset of the first byte the CRC-32C covers (the attributes).
pub const CRC_START: usize = 21;
/// The current record format.
pub const MAGIC_V2: i8 = 2;
/// Producer id of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;
/// Producer epoch of a batch written without idempotence.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Base sequence of a batch written without idempotence.
pub const NO_SEQUENCE: i32 = -1;
/// Partition leader epoch of a batch a client has not stamped.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// Compression codec, bits 0-2 of the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Snappy, raw or in xerial framing.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec id stored in the attributes.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec for an attributes id.
    pub fn from_id(id: u8) -> Result<Self> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(Error::UnsupportedCompression(other)),
        })
    }
}

/// Whether timestamps were set by the producer or by the broker on append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker; the batch's max timestamp is the append time.
    LogAppendTime,
}

/// The 16-bit attributes of a RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Attributes(pub i16);

impl Attributes {
    const COMPRESSION_MASK: i16 = 0x07;
    const TIMESTAMP_TYPE: i16 = 0x08;
    const TRANSACTIONAL: i16 = 0x10;
    const CONTROL: i16 = 0x20;
    const DELETE_HORIZON: i16 = 0x40;

    /// The compression codec (bits 0-2). Unknown ids are an error.
    pub fn compression(self) -> Result<Compression> {
        Compression::from_id((self.0 & Self::COMPRESSION_MASK) as u8)
    }

    /// The timestamp type (bit 3).
    pub fn timestamp_type(self) -> TimestampType {
        if self.0 & Self::TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction (bit 4).
    pub fn is_transactional(self) -> bool {
        self.0 & Self::TRANSACTIONAL != 0
    }

    /// Whether the batch holds a control record (bit 5), such as a transaction marker.
    pub fn is_control(self) -> bool {
        self.0 & Self::CONTROL != 0
    }

    /// Whether the base timestamp is a delete horizon set by compaction (bit 6).
    pub fn has_delete_horizon(self) -> bool {
        self.0 & Self::DELETE_HORIZON != 0
    }

    /// Returns these attributes with the compression codec replaced.
    pub fn with_compression(self, compression: Compression) -> Self {
        Self((self.0 & !Self::COMPRESSION_MASK) | i16::from(compression.id()))
    }

    /// Returns these attributes with the timestamp type replaced.
    pub fn with_timestamp_type(self, timestamp_type: TimestampType) -> Self {
        match timestamp_type {
            TimestampType::CreateTime => Self(self.0 & !Self::TIMESTAMP_TYPE),
            TimestampType::LogAppendTime => Self(self.0 | Self::TIMESTAMP_TYPE),
        }
    }

    /// Returns these attributes with the transactional bit set or cleared.
    pub fn with_transactional(self, on: bool) -> Self {
        self.with_bit(Self::TRANSACTIONAL, on)
    }

    /// Returns these attributes with the control bit set or cleared.
    pub fn with_control(self, on: bool) -> Self {
        self.with_bit(Self::CONTROL, on)
    }

    /// Returns these attributes with the delete horizon bit set or cleared.
    pub fn with_delete_horizon(self, on: bool) -> Self {
        self.with_bit(Self::DELETE_HORIZON, on)
    }

    fn with_bit(self, bit: i16, on: bool) -> Self {
        if on {
            Self(self.0 | bit)
        } else {
            Self(self.0 & !bit)
        }
    }
}

/// The fixed header fields of a RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length of the batch after the length field.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version, 2.
    pub magic: i8,
    /// CRC-32C over attributes..end.
    pub crc: u32,
    /// Attribute bits.
    pub attributes: Attributes,
    /// Offset of the last record relative to the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (or the delete horizon).
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the 61-byte header at the front of `input`; the magic must be 2.
    pub fn parse(input: &[u8]) -> Result<Self> {
        let mut r = Reader(input);
        let base_offset = r.i64()?;
        let batch_length = r.i32()?;
        let partition_leader_epoch = r.i32()?;
        let magic = r.i8()?;
        if magic != MAGIC_V2 {
            return Err(Error::UnsupportedMagic(magic));
        }
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(Error::InvalidBatchLength(batch_length));
        }
        Ok(Self {
            base_offset,
            batch_length,
            partition_leader_epoch,
            magic,
            crc: r.i32()? as u32,
            attributes: Attributes(r.i16()?),
            last_offset_delta: r.i32()?,
            base_timestamp: r.i64()?,
            max_timestamp: r.i64()?,
            producer_id: r.i64()?,
            producer_epoch: r.i16()?,
            base_sequence: r.i32()?,
            record_count: r.i32()?,
        })
    }

    /// Total size of the batch including the offset and length fields.
    pub fn size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }
}

/// Big-endian reader over a slice that reports truncation instead of panicking.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self.0.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.0 = rest;
                Ok(*head)
            }
            None => Err(Error::Truncated {
                needed: N,
                available: self.0.len(),
            }),
        }
    }
    fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.take()?))
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

/// A zero-copy view over exactly one RecordBatch v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl RecordBatch {
    /// Wraps `bytes`, which must hold exactly one batch (header checked, CRC not verified).
    pub fn new(bytes: Bytes) -> Result<Self> {
        let header = BatchHeader::parse(&bytes)?;
        if header.size() != bytes.len() {
            return Err(Error::Truncated {
                needed: header.size(),
                available: bytes.len(),
            });
        }
        Ok(Self { header, bytes })
    }

    /// The parsed header fields.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch as stored.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Consumes the view, returning the batch bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Size in bytes of the whole batch.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }

    /// Offset of the last record (base offset + last offset delta).
    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    /// Offset right after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// Attribute bits.
    pub fn attributes(&self) -> Attributes {
        self.header.attributes
    }

    /// Number of records the header claims.
    pub fn record_count(&self) -> i32 {
        self.header.record_count
    }

    /// Largest timestamp in the batch.
    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp
    }

    /// Computes the CRC-32C over attributes..end.
    pub fn compute_crc(&self) -> u32 {
        crc_of(&self.bytes)
    }

    /// Checks the stored CRC against the bytes.
    pub fn verify_crc(&self) -> Result<()> {
        let computed = self.compute_crc();
        if computed == self.header.crc {
            Ok(())
        } else {
            Err(Error::CrcMismatch {
                stored: self.header.crc,
                computed,
            })
        }
    }

    /// The record bytes after the header, possibly compressed.
    pub fn records_payload(&self) -> Bytes {
        self.bytes.slice(BATCH_HEADER_LEN.min(self.bytes.len())..)
    }

    /// Decodes the records lazily, decompressing them first if the batch is compressed, with
    /// the default limit [`RecordBatch::default_decompression_limit`].
    pub fn records(&self) -> Result<Records> {
        self.records_with_limit(self.default_decompression_limit())
    }

    /// Decodes the records lazily; a compressed payload may decompress to at most `max_bytes`,
    /// or the call fails with [`Error::DecompressionLimit`] having allocated no more than that.
    /// Uncompressed payloads are not copied and not limited (they are already in memory).
    pub fn records_with_limit(&self, max_bytes: usize) -> Result<Records> {
        let payload = self.records_payload();
        match self.header.attributes.compression()? {
            Compression::None => Ok(Records::new(payload, self.header)),
            codec => {
                let decompressed =
                    compression::decompress(codec, &payload, max_bytes, Framing::Standard)?;
                Ok(Records::new(Bytes::from(decompressed), self.header))
            }
        }
    }

    /// The decompressed-size limit [`RecordBatch::records`] uses:
    /// [`DECOMPRESSION_RATIO`] times the batch size, at least [`MIN_DECOMPRESSION_LIMIT`] and at
    /// most [`MAX_DECOMPRESSION_LIMIT`].
    pub fn default_decompression_limit(&self) -> usize {
        self.size()
            .saturating_mul(DECOMPRESSION_RATIO)
            .clamp(MIN_DECOMPRESSION_LIMIT, MAX_DECOMPRESSION_LIMIT)
    }
}

/// Decompression ratio [`RecordBatch::records`] accepts before refusing a batch as a
/// decompression bomb. Text and JSON compress 5-20x; 64x leaves headroom for very repetitive
/// payloads, while a bomb (gzip reaches ~1000x) still fails early.
pub const DECOMPRESSION_RATIO: usize = 64;
/// Floor of the default decompression limit, so small batches of repetitive records decode.
pub const MIN_DECOMPRESSION_LIMIT: usize = 1 << 20;
/// Ceiling of the default decompression limit: a 1 MiB batch (Kafka's default
/// `message.max.bytes`) may expand to 64 MiB. Callers that need more use
/// [`RecordBatch::records_with_limit`].
pub const MAX_DECOMPRESSION_LIMIT: usize = 64 << 20;

/// CRC-32C of a batch from its attributes to its end; 0 for a buffer shorter than a header.
pub(crate) fn crc_of(batch: &[u8]) -> u32 {
    batch.get(CRC_START..).map_or(0, crc32c)
}

/// CRC-32C (Castagnoli) of `bytes`: the RecordBatch v2 checksum, which covers a batch from its
/// attributes (at [`CRC_START`]) to its end.
///
/// `crc-fast` folds with carry-less multiplication (VPCLMULQDQ or PCLMULQDQ where available),
/// 2-3 times the `crc32c` crate's throughput on 16 KiB batches; the checksum is the largest share
/// of a log append's CPU time, which is why weir-log calls this rather than its own copy.
#[inline]
pub fn crc32c(bytes: &[u8]) -> u32 {
    // A CRC-32 fits in the low 32 bits of the u64 `crc-fast` returns for every width.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// Sets the base offset of the batch at the front of `batch`.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<()> {
    write_at(batch, 0, &base_offset.to_be_bytes())
}

/// Sets the partition leader epoch of the batch at the front of `batch`.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<()> {
    write_at(batch, 12, &epoch.to_be_bytes())
}

/// Marks the batch at the front of `batch` as LogAppendTime with `timestamp` as its max
/// timestamp, and rewrites the CRC, which covers both fields.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) -> Result<()> {
    let header = BatchHeader::parse(batch)?;
    let attributes = header
        .attributes
        .with_timestamp_type(TimestampType::LogAppendTime);
    write_at(batch, 21, &attributes.0.to_be_bytes())?;
    write_at(batch, 35, &timestamp.to_be_bytes())?;
    let end = header.size().min(batch.len());
    let crc = batch.get(..end).map_or(0, crc_of);
    write_at(batch, 17, &crc.to_be_bytes())
}

fn write_at(batch: &mut [u8], at: usize, value: &[u8]) -> Result<()> {
    let available = batch.len();
    match batch.get_mut(at..at + value.len()) {
        Some(dst) => {
            dst.copy_from_slice(value);
            Ok(())
        }
        None => Err(Error::Truncated {
            needed: at + value.len(),
            available,
        }),
    }
}

/// Splits a buffer of concatenated batches (a produce request's records, a fetch response, a
/// segment file) into [`RecordBatch`] views.
///
/// A partial batch at the end yields one [`Error::Truncated`] and ends the iteration; fetch
/// responses may legally end that way and log recovery truncates there.
#[derive(Debug, Clone)]
pub struct RecordBatches {
    rest: Bytes,
    failed: bool,
}

impl RecordBatches {
    /// Iterates over the batches in `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        Self {
            rest: bytes,
            failed: false,
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &Bytes {
        &self.rest
    }
}

impl Iterator for RecordBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let result = BatchHeader::parse(&self.rest).and_then(|header| {
            let size = header.size();
            if size > self.rest.len() {
                return Err(Error::Truncated {
                    needed: size,
                    available: self.rest.len(),
                });
            }
            Ok(RecordBatch {
                header,
                bytes: self.rest.split_to(size),
            })
        });
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_crc32c() {
        let data: Vec<u8> = (0..20_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) as u8)
            .collect();
        for len in [0, 1, 7, 16, 63, 64, 65, 255, 256, 1_000, 16_363, 20_000] {
            assert_eq!(crc32c(&data[..len]), crc32c::crc32c(&data[..len]), "{len}");
        }
    }
    use crate::{Record, RecordBatchBuilder};

    fn sample() -> Bytes {
        let mut builder = RecordBatchBuilder::new();
        builder.push(Record::new(1_000, Some(b"k"), Some(b"v1")));
        builder.push(Record::new(1_005, None, Some(b"v2")));
        builder.build().unwrap()
    }

    #[test]
    fn header_fields_and_crc() {
        let batch = RecordBatch::new(sample()).unwrap();
        assert_eq!(batch.base_offset(), 0);
        assert_eq!(batch.last_offset(), 1);
        assert_eq!(batch.record_count(), 2);
        assert_eq!(batch.max_timestamp(), 1_005);
        batch.verify_crc().unwrap();
    }

    #[test]
    fn delete_horizon_keeps_record_timestamps() {
        let mut builder = RecordBatchBuilder::new();
        builder.delete_horizon(5_000);
        builder.push(Record::new(1_000, Some(b"k"), None));
        builder.push(Record::new(1_005, Some(b"j"), Some(b"v")));
        let batch = RecordBatch::new(builder.build().unwrap()).unwrap();
        batch.verify_crc().unwrap();
        assert!(batch.attributes().has_delete_horizon());
        assert_eq!(batch.header().base_timestamp, 5_000);
        assert_eq!(batch.max_timestamp(), 1_005);
        let timestamps: Vec<i64> = batch
            .records()
            .unwrap()
            .map(|r| r.unwrap().timestamp)
            .collect();
        assert_eq!(timestamps, [1_000, 1_005]);
    }

    #[test]
    fn base_offset_and_epoch_do_not_change_crc() {
        let mut bytes = sample().to_vec();
        set_base_offset(&mut bytes, 42).unwrap();
        set_partition_leader_epoch(&mut bytes, 7).unwrap();
        let batch = RecordBatch::new(Bytes::from(bytes)).unwrap();
        assert_eq!(batch.base_offset(), 42);
        assert_eq!(batch.header().partition_leader_epoch, 7);
        batch.verify_crc().unwrap();
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut bytes = sample().to_vec();
        set_log_append_time(&mut bytes, 9_999).unwrap();
        let batch = RecordBatch::new(Bytes::from(bytes)).unwrap();
        assert_eq!(batch.max_timestamp(), 9_999);
        assert_eq!(
            batch.attributes().timestamp_type(),
            TimestampType::LogAppendTime
        );
        batch.verify_crc().unwrap();
        // Consumers see the append time on every record, as Kafka's do.
        let timestamps: Vec<i64> = batch
            .records()
            .unwrap()
            .map(|r| r.unwrap().timestamp)
            .collect();
        assert_eq!(timestamps, [9_999, 9_999]);
    }

    #[test]
    fn flipped_byte_fails_crc() {
        let mut bytes = sample().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let batch = RecordBatch::new(Bytes::from(bytes)).unwrap();
        assert!(matches!(batch.verify_crc(), Err(Error::CrcMismatch { .. })));
    }

    #[test]
    fn batches_iterator_reports_torn_tail() {
        let one = sample();
        let mut two = one.to_vec();
        two.extend_from_slice(&one[..one.len() - 3]);
        let mut it = RecordBatches::new(Bytes::from(two));
        assert!(it.next().unwrap().is_ok());
        assert!(matches!(it.next(), Some(Err(Error::Truncated { .. }))));
        assert!(it.next().is_none());
    }

    /// Codec tests need every codec feature.
    #[cfg(all(
        feature = "gzip",
        feature = "snappy",
        feature = "lz4",
        feature = "zstd"
    ))]
    mod codecs {
        use super::*;

        const CODECS: [Compression; 5] = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];

        fn build_with(codec: Compression, records: &[Record]) -> RecordBatch {
            let mut builder = RecordBatchBuilder::new();
            builder.compression(codec).base_offset(100);
            for record in records {
                builder.push(record.clone());
            }
            RecordBatch::new(builder.build().unwrap()).unwrap()
        }

        #[test]
        fn every_codec_round_trips() {
            let records: Vec<Record> = (0..500)
                .map(|i| {
                    Record::new(
                        1_000 + i,
                        (i % 3 != 0).then_some(format!("key-{i}").as_bytes()),
                        (i % 7 != 0).then_some(
                            format!("value {i} {}", "x".repeat(i as usize % 40)).as_bytes(),
                        ),
                    )
                    .with_header(crate::Header::new(b"h", Some(b"1")))
                    .with_header(crate::Header::new(b"h", None))
                })
                .collect();
            for codec in CODECS {
                let batch = build_with(codec, &records);
                batch.verify_crc().unwrap();
                assert_eq!(batch.attributes().compression().unwrap(), codec);
                let decoded: Vec<Record> = batch.records().unwrap().collect::<Result<_>>().unwrap();
                assert_eq!(decoded.len(), records.len(), "{codec:?}");
                for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
                    assert_eq!(got.offset, 100 + i as i64);
                    assert_eq!(
                        (&got.key, &got.value, &got.headers, got.timestamp),
                        (&want.key, &want.value, &want.headers, want.timestamp),
                        "{codec:?}"
                    );
                }
                if codec != Compression::None {
                    assert!(
                        batch.size() < 20_000,
                        "{codec:?} did not compress: {}",
                        batch.size()
                    );
                }
            }
        }

        #[test]
        fn decompression_bomb_is_refused_for_every_codec() {
            let bomb = [Record::new(0, None, Some(&[0u8; 256 * 1024]))];
            for codec in CODECS.into_iter().skip(1) {
                let batch = build_with(codec, &bomb);
                assert!(batch.size() < 16 * 1024, "{codec:?}: {}", batch.size());
                assert_eq!(
                    batch.records_with_limit(64 * 1024).err(),
                    Some(Error::DecompressionLimit {
                        codec,
                        limit: 64 * 1024
                    }),
                    "{codec:?}"
                );
                assert_eq!(batch.records_with_limit(300 * 1024).unwrap().count(), 1);
            }
        }

        #[test]
        fn default_limit_refuses_a_high_ratio_batch() {
            let bomb = [Record::new(0, None, Some(&vec![0u8; 8 << 20]))];
            for codec in [Compression::Gzip, Compression::Zstd] {
                let batch = build_with(codec, &bomb);
                assert_eq!(batch.default_decompression_limit(), MIN_DECOMPRESSION_LIMIT);
                assert!(matches!(
                    batch.records(),
                    Err(Error::DecompressionLimit { .. })
                ));
            }
        }

        #[test]
        fn corrupt_compressed_payload_is_a_typed_error() {
            for codec in CODECS.into_iter().skip(1) {
                let good = build_with(codec, &[Record::new(0, Some(b"k"), Some(b"some value"))]);
                let mut bytes = good.as_bytes().to_vec();
                let payload_start = BATCH_HEADER_LEN;
                for b in bytes[payload_start..].iter_mut() {
                    *b ^= 0x5a;
                }
                let batch = RecordBatch::new(Bytes::from(bytes)).unwrap();
                let result = batch.records().and_then(|r| r.collect::<Result<Vec<_>>>());
                assert!(result.is_err(), "{codec:?}");
            }
        }
    }
}
