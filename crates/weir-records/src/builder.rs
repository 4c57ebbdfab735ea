//! [`RecordBatchBuilder`]: encodes records into a RecordBatch v2.

use crate::batch::{
    Attributes, BATCH_HEADER_LEN, Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE, TimestampType, crc_of,
};
use crate::compression;
use crate::record::Record;
use crate::varint::{put_varint, put_varlong, varint_len, varlong_len};
use crate::{Error, Result};
use bytes::{BufMut, Bytes, BytesMut};

/// Builds one RecordBatch v2. Offsets of pushed records are assigned in order from the base
/// offset; their own `offset` field is ignored.
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: Attributes,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    preserved_last_offset_delta: Option<i32>,
    delete_horizon: Option<i64>,
    records: Vec<Record>,
}

impl Default for RecordBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordBatchBuilder {
    /// An empty builder: base offset 0, no producer id, CreateTime, no compression.
    pub fn new() -> Self {
        Self {
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            attributes: Attributes::default(),
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            preserved_last_offset_delta: None,
            delete_horizon: None,
            records: Vec::new(),
        }
    }

    /// Sets the base offset.
    pub fn base_offset(&mut self, offset: i64) -> &mut Self {
        self.base_offset = offset;
        self
    }

    /// Sets the partition leader epoch.
    pub fn partition_leader_epoch(&mut self, epoch: i32) -> &mut Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Sets the idempotent producer id, epoch and base sequence.
    pub fn producer(&mut self, id: i64, epoch: i16, base_sequence: i32) -> &mut Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the compression codec.
    pub fn compression(&mut self, compression: Compression) -> &mut Self {
        self.attributes = self.attributes.with_compression(compression);
        self
    }

    /// Sets the timestamp type.
    pub fn timestamp_type(&mut self, timestamp_type: TimestampType) -> &mut Self {
        self.attributes = self.attributes.with_timestamp_type(timestamp_type);
        self
    }

    /// Marks the batch transactional.
    pub fn transactional(&mut self, on: bool) -> &mut Self {
        self.attributes = self.attributes.with_transactional(on);
        self
    }

    /// Marks the batch as a control batch.
    pub fn control(&mut self, on: bool) -> &mut Self {
        self.attributes = self.attributes.with_control(on);
        self
    }

    /// Keeps each pushed record's own `offset` (its offset delta is `offset - base offset`)
    /// instead of numbering records from the base offset, and sets the batch's last offset
    /// delta. Compaction uses this to drop records from a batch without renumbering the rest.
    pub fn preserve_offsets(&mut self, last_offset_delta: i32) -> &mut Self {
        self.preserved_last_offset_delta = Some(last_offset_delta);
        self
    }

    /// Stores `horizon_ms` as the base timestamp and sets the delete horizon attribute
    /// (KIP-534): compaction stamps when the batch's tombstones may go. Record timestamps are
    /// kept, encoded relative to the horizon.
    pub fn delete_horizon(&mut self, horizon_ms: i64) -> &mut Self {
        self.delete_horizon = Some(horizon_ms);
        self.attributes = self.attributes.with_delete_horizon(true);
        self
    }

    /// Adds a record.
    pub fn push(&mut self, record: Record) -> &mut Self {
        self.records.push(record);
        self
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encodes the batch.
    pub fn build(&self) -> Result<Bytes> {
        let compression = self.attributes.compression()?;
        let base_timestamp = match self.delete_horizon {
            Some(horizon) => horizon,
            None => self.records.first().map_or(-1, |r| r.timestamp),
        };
        let max_timestamp = self.records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
        let count = i32::try_from(self.records.len()).map_err(|_| Error::TooLarge {
            size: self.records.len(),
            limit: i32::MAX as usize,
        })?;

        let mut buf = BytesMut::with_capacity(BATCH_HEADER_LEN + 64 * self.records.len());
        buf.put_i64(self.base_offset);
        buf.put_i32(0); // batch length, patched below
        buf.put_i32(self.partition_leader_epoch);
        buf.put_i8(crate::batch::MAGIC_V2);
        buf.put_u32(0); // CRC, patched below
        buf.put_i16(self.attributes.0);
        let last_offset_delta = self
            .preserved_last_offset_delta
            .unwrap_or(count.saturating_sub(1).max(0));
        buf.put_i32(last_offset_delta);
        buf.put_i64(base_timestamp);
        buf.put_i64(max_timestamp);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_i32(self.base_sequence);
        buf.put_i32(count);
        // Compressed batches encode their records here first; empty (no allocation) otherwise.
        let mut plain = BytesMut::new();
        let target = if compression == Compression::None {
            &mut buf
        } else {
            &mut plain
        };
        for (delta, record) in self.records.iter().enumerate() {
            let delta = match self.preserved_last_offset_delta {
                Some(_) => record.offset.wrapping_sub(self.base_offset) as i32,
                None => delta as i32,
            };
            encode_record(target, record, delta, base_timestamp)?;
        }
        if compression != Compression::None {
            buf.put_slice(&compression::compress(compression, &plain)?);
        }

        let batch_length =
            i32::try_from(buf.len() - crate::batch::LOG_OVERHEAD).map_err(|_| Error::TooLarge {
                size: buf.len(),
                limit: i32::MAX as usize,
            })?;
        if let Some(dst) = buf.get_mut(8..12) {
            dst.copy_from_slice(&batch_length.to_be_bytes());
        }
        let crc = crc_of(&buf);
        if let Some(dst) = buf.get_mut(17..21) {
            dst.copy_from_slice(&crc.to_be_bytes());
        }
        Ok(buf.freeze())
    }
}

fn nullable_len(field: Option<&Bytes>) -> Result<usize> {
    Ok(match field {
        None => varint_len(-1),
        Some(b) => varint_len(field_len(b.len())?) + b.len(),
    })
}

/// A key, value or header length as the varint the format stores.
fn field_len(len: usize) -> Result<i32> {
    i32::try_from(len).map_err(|_| Error::TooLarge {
        size: len,
        limit: i32::MAX as usize,
    })
}

fn put_nullable(buf: &mut BytesMut, field: Option<&Bytes>) {
    match field {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i32);
            buf.put_slice(b);
        }
    }
}

/// Appends one record in the v2 record encoding.
pub(crate) fn encode_record(
    buf: &mut BytesMut,
    record: &Record,
    offset_delta: i32,
    base_timestamp: i64,
) -> Result<()> {
    let timestamp_delta = record.timestamp.wrapping_sub(base_timestamp);
    let header_count = field_len(record.headers.len())?;
    let mut body_len = 1
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + nullable_len(record.key.as_ref())?
        + nullable_len(record.value.as_ref())?
        + varint_len(header_count);
    for header in &record.headers {
        body_len += nullable_len(Some(&header.key))? + nullable_len(header.value.as_ref())?;
    }
    put_varint(buf, field_len(body_len)?);
    buf.put_i8(record.attributes);
    put_varlong(buf, timestamp_delta);
    put_varint(buf, offset_delta);
    put_nullable(buf, record.key.as_ref());
    put_nullable(buf, record.value.as_ref());
    put_varint(buf, header_count);
    for header in &record.headers {
        put_nullable(buf, Some(&header.key));
        put_nullable(buf, header.value.as_ref());
    }
    Ok(())
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
    use crate::{Header, RecordBatch};
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<i64>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            proptest::collection::vec(
                (
                    // A small key space, so duplicate header keys are common.
                    proptest::collection::vec(0u8..3, 0..2),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                ),
                0..5,
            ),
        )
            .prop_map(|(ts, key, value, headers)| {
                let mut record = Record::new(ts, key.as_deref(), value.as_deref());
                for (k, v) in headers {
                    record = record.with_header(Header::new(&k, v.as_deref()));
                }
                record
            })
    }

    fn arb_compression() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Gzip),
            Just(Compression::Snappy),
            Just(Compression::Lz4),
            Just(Compression::Zstd),
        ]
    }

    #[test]
    fn preserved_offsets_keep_gaps() {
        let mut builder = RecordBatchBuilder::new();
        builder.base_offset(100).preserve_offsets(9);
        let mut a = Record::new(1, Some(b"a"), Some(b"1"));
        a.offset = 102;
        let mut b = Record::new(2, Some(b"b"), None);
        b.offset = 107;
        builder.push(a).push(b);
        let batch = RecordBatch::new(builder.build().unwrap()).unwrap();
        batch.verify_crc().unwrap();
        assert_eq!(
            (
                batch.base_offset(),
                batch.last_offset(),
                batch.record_count()
            ),
            (100, 109, 2)
        );
        let offsets: Vec<i64> = batch
            .records()
            .unwrap()
            .map(|r| r.unwrap().offset)
            .collect();
        assert_eq!(offsets, vec![102, 107]);
    }

    proptest! {
        #[test]
        fn build_then_decode(
            base in 0i64..1 << 40,
            codec in arb_compression(),
            transactional: bool,
            records in proptest::collection::vec(arb_record(), 1..16),
        ) {
            let mut builder = RecordBatchBuilder::new();
            builder.base_offset(base).compression(codec).transactional(transactional);
            for r in &records {
                builder.push(r.clone());
            }
            let batch = RecordBatch::new(builder.build().unwrap()).unwrap();
            batch.verify_crc().unwrap();
            prop_assert_eq!(batch.attributes().compression().unwrap(), codec);
            prop_assert_eq!(batch.attributes().is_transactional(), transactional);
            prop_assert_eq!(batch.record_count() as usize, records.len());
            prop_assert_eq!(batch.last_offset(), base + records.len() as i64 - 1);
            prop_assert_eq!(batch.max_timestamp(), records.iter().map(|r| r.timestamp).max().unwrap());
            let decoded: Vec<Record> = batch.records().unwrap().collect::<Result<_>>().unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(got.offset, base + i as i64);
                prop_assert_eq!(got.timestamp, want.timestamp);
                prop_assert_eq!(&got.key, &want.key);
                prop_assert_eq!(&got.value, &want.value);
                prop_assert_eq!(&got.headers, &want.headers);
            }
        }
    }
}
