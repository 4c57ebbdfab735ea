//! Reader for legacy message sets (magic 0 and 1), the format before RecordBatch v2, so old
//! segment files and old clients' data stay readable. There is no writer.
//!
//! Each message is: offset (int64), message size (int32), CRC-32/IEEE over the rest (uint32),
//! magic (int8), attributes (int8: bits 0-2 codec, bit 3 timestamp type in magic 1),
//! timestamp (int64, magic 1 only), key and value (int32 length, -1 for null, then bytes).
//!
//! A compressed message is a wrapper whose value is a whole compressed message set. Inner
//! offsets are absolute in magic 0; in magic 1 they are relative and the wrapper carries the
//! absolute offset of the last inner message. Under LogAppendTime the wrapper's timestamp
//! applies to every inner message.

use crate::batch::{
    Compression, DECOMPRESSION_RATIO, LOG_OVERHEAD, MAX_DECOMPRESSION_LIMIT,
    MIN_DECOMPRESSION_LIMIT, TimestampType,
};
use crate::compression::{self, Framing};
use crate::record::Record;
use crate::{Error, Result};
use bytes::Bytes;

/// Message format of Kafka 0.8 to 0.9.
pub const MAGIC_V0: i8 = 0;
/// Message format of Kafka 0.10 (adds a timestamp).
pub const MAGIC_V1: i8 = 1;
/// Timestamp of magic 0 messages, which have none.
pub const NO_TIMESTAMP: i64 = -1;

const TIMESTAMP_TYPE_BIT: i8 = 0x08;
const COMPRESSION_MASK: i8 = 0x07;

/// Iterates over the records of a legacy message set, unwrapping compressed messages.
///
/// Every message's CRC is verified. A partial message at the end yields one
/// [`Error::Truncated`] and ends the iteration, as [`crate::RecordBatches`] does.
#[derive(Debug, Clone)]
pub struct LegacyRecords {
    rest: Bytes,
    limit: Option<usize>,
    inner: std::vec::IntoIter<Record>,
    failed: bool,
}

impl LegacyRecords {
    /// Reads `bytes`; each compressed wrapper may decompress to the same default limit as
    /// [`crate::RecordBatch::records`] gives a batch of the wrapper's size.
    pub fn new(bytes: Bytes) -> Self {
        Self {
            rest: bytes,
            limit: None,
            inner: Vec::new().into_iter(),
            failed: false,
        }
    }

    /// Reads `bytes`; each compressed wrapper may decompress to at most `max_bytes`.
    pub fn with_limit(bytes: Bytes, max_bytes: usize) -> Self {
        Self {
            limit: Some(max_bytes),
            ..Self::new(bytes)
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &Bytes {
        &self.rest
    }

    fn next_message(&mut self) -> Result<Option<Record>> {
        let message = Message::split_from(&mut self.rest)?;
        let codec = message.compression()?;
        if codec == Compression::None {
            let (offset, timestamp) = (message.offset, message.timestamp);
            return Ok(Some(message.into_record(offset, timestamp)));
        }
        let limit = self.limit.unwrap_or_else(|| {
            message
                .size
                .saturating_mul(DECOMPRESSION_RATIO)
                .clamp(MIN_DECOMPRESSION_LIMIT, MAX_DECOMPRESSION_LIMIT)
        });
        self.inner = message.unwrap(codec, limit)?.into_iter();
        Ok(self.inner.next())
    }
}

impl Iterator for LegacyRecords {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.inner.next() {
            return Some(Ok(record));
        }
        // An empty compressed wrapper yields nothing; move on to the next message.
        while !self.failed && !self.rest.is_empty() {
            match self.next_message() {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// One message, CRC verified.
struct Message {
    offset: i64,
    /// Size of the whole message including offset and size fields.
    size: usize,
    magic: i8,
    attributes: i8,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

impl Message {
    /// Splits one message off the front of `rest`.
    fn split_from(rest: &mut Bytes) -> Result<Self> {
        let available = rest.len();
        let truncated = |needed| Error::Truncated { needed, available };
        let (offset, after) = rest
            .split_first_chunk::<8>()
            .ok_or(truncated(LOG_OVERHEAD))?;
        let (size, _) = after
            .split_first_chunk::<4>()
            .ok_or(truncated(LOG_OVERHEAD))?;
        let offset = i64::from_be_bytes(*offset);
        let size = usize::try_from(i32::from_be_bytes(*size))
            .ok()
            .filter(|&s| s >= MIN_MESSAGE_V0)
            .ok_or(Error::CorruptMessage("message size smaller than a message"))?;
        let total = LOG_OVERHEAD + size;
        if total > available {
            // Even a torn tail must at least name a format we read.
            if let Some(&magic) = rest.get(LOG_OVERHEAD + 4) {
                if magic as i8 > MAGIC_V1 || (magic as i8) < MAGIC_V0 {
                    return Err(Error::UnsupportedMagic(magic as i8));
                }
            }
            return Err(truncated(total));
        }
        let mut message = rest.split_to(total);
        let _ = message.split_to(LOG_OVERHEAD);
        Self::parse(offset, message)
    }

    /// Parses a message body (from the CRC on) of a message at `offset`.
    fn parse(offset: i64, body: Bytes) -> Result<Self> {
        let size = LOG_OVERHEAD + body.len();
        let mut r = Reader {
            bytes: body,
            pos: 0,
        };
        let stored = r.u32()?;
        let computed = crc32fast::hash(r.rest());
        let magic = r.i8()?;
        if magic != MAGIC_V0 && magic != MAGIC_V1 {
            return Err(Error::UnsupportedMagic(magic));
        }
        if stored != computed {
            return Err(Error::CrcMismatch { stored, computed });
        }
        let attributes = r.i8()?;
        let timestamp = if magic == MAGIC_V1 {
            r.i64()?
        } else {
            NO_TIMESTAMP
        };
        let key = r.nullable_bytes()?;
        let value = r.nullable_bytes()?;
        if r.remaining() != 0 {
            return Err(Error::CorruptMessage(
                "message size does not match its fields",
            ));
        }
        Ok(Self {
            offset,
            size,
            magic,
            attributes,
            timestamp,
            key,
            value,
        })
    }

    fn compression(&self) -> Result<Compression> {
        match Compression::from_id((self.attributes & COMPRESSION_MASK) as u8)? {
            // Zstandard arrived with magic 2; older formats cannot carry it.
            Compression::Zstd => Err(Error::CorruptMessage("zstd requires magic 2")),
            codec => Ok(codec),
        }
    }

    fn timestamp_type(&self) -> TimestampType {
        if self.magic == MAGIC_V1 && self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    fn into_record(self, offset: i64, timestamp: i64) -> Record {
        Record {
            attributes: self.attributes,
            offset,
            timestamp,
            key: self.key,
            value: self.value,
            headers: Vec::new(),
        }
    }

    /// Decompresses a wrapper and returns its inner messages as records.
    fn unwrap(self, codec: Compression, limit: usize) -> Result<Vec<Record>> {
        let compressed = self.value.as_ref().ok_or(Error::CorruptMessage(
            "compressed message with a null value",
        ))?;
        let framing = if self.magic == MAGIC_V0 {
            Framing::LegacyLz4HeaderChecksum
        } else {
            Framing::Standard
        };
        let mut rest = Bytes::from(compression::decompress(codec, compressed, limit, framing)?);
        let mut inner = Vec::new();
        while !rest.is_empty() {
            let message = Message::split_from(&mut rest)?;
            if message.magic != self.magic {
                return Err(Error::CorruptMessage(
                    "inner message magic differs from its wrapper",
                ));
            }
            if message.compression()? != Compression::None {
                return Err(Error::CorruptMessage("nested compressed message"));
            }
            inner.push(message);
        }
        let log_append_time = self.timestamp_type() == TimestampType::LogAppendTime;
        // Magic 1 inner offsets are relative; the wrapper holds the last one's absolute offset.
        let base = match (self.magic, inner.last()) {
            (MAGIC_V1, Some(last)) => self.offset.wrapping_sub(last.offset),
            _ => 0,
        };
        Ok(inner
            .into_iter()
            .map(|m| {
                let timestamp = if log_append_time {
                    self.timestamp
                } else {
                    m.timestamp
                };
                let offset = base.wrapping_add(m.offset);
                m.into_record(offset, timestamp)
            })
            .collect())
    }
}

/// Smallest magic 0 message body: CRC, magic, attributes, key and value lengths.
const MIN_MESSAGE_V0: usize = 4 + 1 + 1 + 4 + 4;

struct Reader {
    bytes: Bytes,
    pos: usize,
}

impl Reader {
    fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, _) = self
            .rest()
            .split_first_chunk::<N>()
            .ok_or(Error::CorruptMessage("message shorter than its fields"))?;
        let head = *head;
        self.pos += N;
        Ok(head)
    }
    fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn nullable_bytes(&mut self) -> Result<Option<Bytes>> {
        let len = i32::from_be_bytes(self.take()?);
        let Ok(len) = usize::try_from(len) else {
            return if len == -1 {
                Ok(None)
            } else {
                Err(Error::CorruptMessage("negative length"))
            };
        };
        if len > self.remaining() {
            return Err(Error::CorruptMessage("field length exceeds message size"));
        }
        let out = self.bytes.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(Some(out))
    }
}

#[cfg(all(
    test,
    all(
        feature = "gzip",
        feature = "snappy",
        feature = "lz4",
        feature = "zstd"
    )
))]
mod tests {
    use super::*;

    /// Encodes one message by hand, the way Kafka 0.8-0.10 wrote them.
    fn message(
        offset: i64,
        magic: i8,
        attributes: i8,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut body = vec![magic as u8, attributes as u8];
        if magic == MAGIC_V1 {
            body.extend_from_slice(&timestamp.to_be_bytes());
        }
        for field in [key, value] {
            match field {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    body.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    body.extend_from_slice(b);
                }
            }
        }
        let mut out = offset.to_be_bytes().to_vec();
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn read(bytes: Vec<u8>) -> Result<Vec<Record>> {
        LegacyRecords::new(Bytes::from(bytes)).collect()
    }

    type Summary<'a> = (i64, i64, Option<&'a [u8]>, Option<&'a [u8]>);

    fn kv(records: &[Record]) -> Vec<Summary<'_>> {
        records
            .iter()
            .map(|r| (r.offset, r.timestamp, r.key.as_deref(), r.value.as_deref()))
            .collect()
    }

    #[test]
    fn magic_0_message_set() {
        let mut set = message(5, 0, 0, 0, Some(b"k"), Some(b"v"));
        set.extend(message(6, 0, 0, 0, None, None));
        let records = read(set).unwrap();
        assert_eq!(
            kv(&records),
            [
                (5, NO_TIMESTAMP, Some(&b"k"[..]), Some(&b"v"[..])),
                (6, NO_TIMESTAMP, None, None)
            ]
        );
    }

    #[test]
    fn magic_1_message_set_keeps_timestamps() {
        let mut set = message(0, 1, 0, 1_500, None, Some(b"a"));
        set.extend(message(1, 1, 0, 1_400, Some(b""), Some(b"b")));
        let records = read(set).unwrap();
        assert_eq!(
            kv(&records),
            [
                (0, 1_500, None, Some(&b"a"[..])),
                (1, 1_400, Some(&b""[..]), Some(&b"b"[..]))
            ]
        );
    }

    fn inner_set(magic: i8, offsets: [i64; 3]) -> Vec<u8> {
        offsets
            .iter()
            .enumerate()
            .flat_map(|(i, &o)| {
                message(
                    o,
                    magic,
                    0,
                    100 + i as i64,
                    None,
                    Some(format!("m{i}").as_bytes()),
                )
            })
            .collect()
    }

    #[test]
    fn magic_1_compressed_wrapper_has_relative_inner_offsets() {
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
            let inner = compression::compress(codec, &inner_set(1, [0, 1, 2])).unwrap();
            let wrapper = message(12, 1, codec.id() as i8, 999, None, Some(&inner));
            let records = read(wrapper).unwrap();
            assert_eq!(
                kv(&records),
                [
                    (10, 100, None, Some(&b"m0"[..])),
                    (11, 101, None, Some(&b"m1"[..])),
                    (12, 102, None, Some(&b"m2"[..])),
                ],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn magic_1_log_append_time_wrapper_stamps_inner_messages() {
        let inner = compression::compress(Compression::Gzip, &inner_set(1, [0, 1, 2])).unwrap();
        let wrapper = message(
            2,
            1,
            Compression::Gzip.id() as i8 | TIMESTAMP_TYPE_BIT,
            777,
            None,
            Some(&inner),
        );
        let records = read(wrapper).unwrap();
        assert!(records.iter().all(|r| r.timestamp == 777));
    }

    #[test]
    fn magic_0_compressed_wrapper_has_absolute_inner_offsets() {
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
            let mut inner = compression::compress(codec, &inner_set(0, [40, 41, 42])).unwrap();
            if codec == Compression::Lz4 {
                compression::lz4::tests::break_header_checksum(&mut inner);
            }
            let mut set = message(42, 0, codec.id() as i8, 0, None, Some(&inner));
            set.extend(message(43, 0, 0, 0, None, Some(b"after")));
            let records = read(set).unwrap();
            assert_eq!(
                records.iter().map(|r| r.offset).collect::<Vec<_>>(),
                [40, 41, 42, 43],
                "{codec:?}"
            );
            assert_eq!(records[2].value.as_deref(), Some(&b"m2"[..]));
        }
    }

    #[test]
    fn corrupt_crc_is_detected() {
        let mut set = message(0, 1, 0, 1, Some(b"key"), Some(b"value"));
        let last = set.len() - 1;
        set[last] ^= 0x20;
        assert!(matches!(read(set), Err(Error::CrcMismatch { .. })));
    }

    #[test]
    fn torn_tail_ends_with_truncated() {
        let mut set = message(0, 0, 0, 0, None, Some(b"one"));
        let two = message(1, 0, 0, 0, None, Some(b"two"));
        set.extend_from_slice(&two[..two.len() - 2]);
        let mut it = LegacyRecords::new(Bytes::from(set));
        assert!(it.next().unwrap().is_ok());
        assert!(matches!(it.next(), Some(Err(Error::Truncated { .. }))));
        assert!(it.next().is_none());
    }

    #[test]
    fn invalid_wrappers_are_refused() {
        // Zstandard needs magic 2.
        let wrapper = message(0, 1, Compression::Zstd.id() as i8, 0, None, Some(b"x"));
        assert!(matches!(read(wrapper), Err(Error::CorruptMessage(_))));
        // A compressed message inside a compressed message.
        let nested = message(0, 1, Compression::Gzip.id() as i8, 0, None, Some(b"x"));
        let inner = compression::compress(Compression::Gzip, &nested).unwrap();
        let wrapper = message(0, 1, Compression::Gzip.id() as i8, 0, None, Some(&inner));
        assert_eq!(
            read(wrapper),
            Err(Error::CorruptMessage("nested compressed message"))
        );
        // A v2 batch is not a legacy message.
        let mut builder = crate::RecordBatchBuilder::new();
        builder.push(Record::new(0, None, Some(b"v")));
        let batch = builder.build().unwrap();
        assert_eq!(read(batch.to_vec()), Err(Error::UnsupportedMagic(2)));
    }

    #[test]
    fn wrapper_bomb_is_refused() {
        let inner: Vec<u8> = (0..2000)
            .flat_map(|i| message(i, 1, 0, 0, None, Some(&[0; 1000])))
            .collect();
        let compressed = compression::compress(Compression::Gzip, &inner).unwrap();
        let wrapper = message(
            1999,
            1,
            Compression::Gzip.id() as i8,
            0,
            None,
            Some(&compressed),
        );
        let result: Result<Vec<Record>> =
            LegacyRecords::with_limit(Bytes::from(wrapper), 64 * 1024).collect();
        assert!(matches!(result, Err(Error::DecompressionLimit { .. })));
    }
}
