//! Checks an append before anything is written: the batch framing, `max.message.bytes`, the
//! CRC-32C, the records against the header, and CreateTime timestamps against the clock.
//!
//! Uncompressed records are walked without decoding keys and values (length, timestamp delta and
//! offset delta only), and most records are checked with one comparison against a prediction
//! from the record before (see `walk_records`), which keeps validation cheap next to the write
//! itself. Compressed records
//! are decompressed (within weir-records' bomb limit) and checked by the same rules, as Kafka does.

use crate::config::LogConfig;
use crate::{Error, Result};
use weir_records::TimestampType;
use weir_records::batch::{BATCH_HEADER_LEN, BatchHeader, CRC_START};
use weir_records::varint::read_zigzag;
use weir_records::{Compression, Error as RecordsError, RecordBatch, crc32c};

/// What validation learned about one batch of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    /// Byte position within the appended buffer.
    pub(crate) position: usize,
    /// Total size.
    pub(crate) size: usize,
    /// Last offset delta (record count - 1 for appends from clients).
    pub(crate) last_offset_delta: i32,
    /// Base offset as received (meaningful for replicated appends).
    pub(crate) base_offset: i64,
    /// Largest timestamp in the batch.
    pub(crate) max_timestamp: i64,
    /// Offset delta of the first record with the largest timestamp.
    pub(crate) max_timestamp_delta: i32,
    /// Number of records.
    pub(crate) record_count: i32,
    /// Partition leader epoch as received (meaningful for replicated appends).
    pub(crate) partition_leader_epoch: i32,
}

/// Whether timestamps are checked against the clock (appends from producers) or trusted
/// (appends replicated from a leader, which checked them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampCheck {
    Clock(i64),
    Trust,
}

/// What validation learned about the batches of one append, in order: nearly always one (a
/// produce request carries one batch per partition), kept without an allocation.
#[derive(Debug)]
pub(crate) enum Metas {
    One([BatchMeta; 1]),
    Many(Vec<BatchMeta>),
}

impl Metas {
    fn push(metas: Option<Self>, meta: BatchMeta) -> Self {
        match metas {
            None => Self::One([meta]),
            Some(Self::One([first])) => Self::Many(vec![first, meta]),
            Some(Self::Many(mut all)) => {
                all.push(meta);
                Self::Many(all)
            }
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [BatchMeta] {
        match self {
            Self::One(one) => one,
            Self::Many(all) => all,
        }
    }
}

/// Validates every batch in `buf`; nothing is modified.
pub(crate) fn validate(buf: &[u8], config: &LogConfig, check: TimestampCheck) -> Result<Metas> {
    let mut metas = None;
    let mut position = 0;
    while position < buf.len() {
        let rest = buf.get(position..).unwrap_or_default();
        let invalid = |source| Error::InvalidBatch { position, source };
        let header = BatchHeader::parse(rest).map_err(invalid)?;
        let size = header.size();
        let Some(batch) = rest.get(..size) else {
            return Err(invalid(RecordsError::Truncated {
                needed: size,
                available: rest.len(),
            }));
        };
        if size > config.max_message_bytes as usize {
            return Err(Error::MessageTooLarge {
                size,
                limit: config.max_message_bytes,
            });
        }
        let computed = crc32c(batch.get(CRC_START..).unwrap_or_default());
        if computed != header.crc {
            return Err(invalid(RecordsError::CrcMismatch {
                stored: header.crc,
                computed,
            }));
        }
        let meta = check_records(batch, &header, position, config, check)?;
        metas = Some(Metas::push(metas, meta));
        position += size;
    }
    metas.ok_or(Error::EmptyAppend)
}

fn check_records(
    batch: &[u8],
    header: &BatchHeader,
    position: usize,
    config: &LogConfig,
    check: TimestampCheck,
) -> Result<BatchMeta> {
    let bad = |reason| Error::InvalidRecords { position, reason };
    if header.record_count < 1 {
        return Err(bad("a batch must hold at least one record"));
    }
    if header.last_offset_delta < header.record_count - 1 {
        return Err(bad(
            "last offset delta is smaller than the record count allows",
        ));
    }
    let compression = header
        .attributes
        .compression()
        .map_err(|source| Error::InvalidBatch { position, source })?;
    let check_clock = match check {
        TimestampCheck::Clock(now)
            if config.message_timestamp_type == TimestampType::CreateTime
                && header.attributes.timestamp_type() == TimestampType::CreateTime =>
        {
            Some(now)
        }
        _ => None,
    };
    let check_ts = |timestamp: i64| match check_clock {
        Some(now)
            if now.saturating_sub(timestamp) > config.message_timestamp_before_max_ms
                || timestamp.saturating_sub(now) > config.message_timestamp_after_max_ms =>
        {
            Err(Error::InvalidTimestamp { timestamp, now })
        }
        _ => Ok(()),
    };
    let mut meta = BatchMeta {
        position,
        size: batch.len(),
        last_offset_delta: header.last_offset_delta,
        base_offset: header.base_offset,
        max_timestamp: header.max_timestamp,
        max_timestamp_delta: header.last_offset_delta,
        record_count: header.record_count,
        partition_leader_epoch: header.partition_leader_epoch,
    };
    if compression != Compression::None {
        return check_compressed_records(batch, header, position, config, check_ts, meta);
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(bad("last offset delta does not match the record count"));
    }
    let records = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    let walk = walk_records(
        records,
        header.record_count,
        header.base_timestamp,
        config.cleanup_policy.compact,
    )
    .map_err(bad)?;
    let (min_timestamp, max_timestamp) = (walk.min_timestamp, walk.max_timestamp);
    meta.max_timestamp_delta = walk.max_timestamp_delta;
    let rest = records.get(walk.end..).unwrap_or_default();
    // The clock bounds are monotone in the timestamp: checking the extremes checks them all,
    // outside the per-record loop.
    if header.record_count > 0 {
        check_ts(min_timestamp)?;
        check_ts(max_timestamp)?;
    }
    if !rest.is_empty() {
        return Err(bad("bytes left after the last record"));
    }
    if header.attributes.timestamp_type() == TimestampType::CreateTime
        && max_timestamp != header.max_timestamp
    {
        return Err(bad("max timestamp does not match the records"));
    }
    if header.attributes.timestamp_type() == TimestampType::CreateTime {
        meta.max_timestamp = max_timestamp;
    }
    Ok(meta)
}

/// What the walk over a batch's records found.
struct Walk {
    min_timestamp: i64,
    max_timestamp: i64,
    /// Offset delta of the first record with the largest timestamp.
    max_timestamp_delta: i32,
    /// Where the last record ends.
    end: usize,
}

/// Checks the framing, offset deltas and (on compacted topics) keys of `count` uncompressed
/// records at the front of `records`, and finds their timestamp bounds.
///
/// Every record is checked, most by one comparison: records of a batch mostly repeat the
/// previous record's length, attributes and timestamp delta, and their offset delta is the
/// previous one plus one, so the first 8 bytes of a record can be predicted from the record
/// before. A prediction that holds also gives the next record's position before this record's
/// bytes are loaded, so consecutive records are checked in parallel instead of each waiting
/// for the previous length to be decoded; on topics that are not compacted, [`RUN`] records
/// are compared per branch. Records that differ take a 2-byte-varint decode when only the
/// timestamp changed, else a full decode, which reports every error.
fn walk_records(
    records: &[u8],
    count: i32,
    base_timestamp: i64,
    compact: bool,
) -> std::result::Result<Walk, &'static str> {
    let mut walk = Walk {
        min_timestamp: i64::MAX,
        max_timestamp: i64::MIN,
        max_timestamp_delta: count - 1,
        end: 0,
    };
    let mut at: usize = 0;
    // The first record always takes the full decode, which then predicts the next one.
    let mut prediction = Prediction::NONE;
    let mut expected_delta = 0;
    while expected_delta < count {
        let size = prediction.size;
        if !compact
            && count - expected_delta >= RUN as i32
            && prediction.same_heads(records, at, expected_delta)
        {
            at += RUN * size;
            expected_delta += RUN as i32;
            continue;
        }
        let window = records
            .get(at..at.saturating_add(prediction.span))
            .and_then(<[u8]>::first_chunk::<8>)
            .map(|window| u64::from_le_bytes(*window));
        let key_ok = |key_at: usize| {
            !compact || key_present(records.get(at + key_at..at + size).unwrap_or_default())
        };
        let same_head = window
            .and_then(|window| prediction.same_head(window, expected_delta))
            .filter(|&key_at| key_ok(key_at));
        if same_head.is_some() {
            // Same timestamp as the record before: the bounds cannot move.
            at += size;
            expected_delta += 1;
            continue;
        }
        let timestamp_delta = match window
            .and_then(|window| prediction.same_length(window, expected_delta))
            .filter(|checked| key_ok(checked.key_at))
        {
            Some(checked) => {
                at += size;
                checked.timestamp_delta
            }
            None => {
                let rest = records.get(at..).unwrap_or_default();
                let record = full_record(rest, expected_delta, compact)?;
                at += record.size;
                prediction = record.prediction;
                record.timestamp_delta
            }
        };
        let timestamp = base_timestamp.wrapping_add(timestamp_delta);
        if timestamp > walk.max_timestamp {
            walk.max_timestamp = timestamp;
            walk.max_timestamp_delta = expected_delta;
        }
        walk.min_timestamp = walk.min_timestamp.min(timestamp);
        expected_delta += 1;
    }
    walk.end = at;
    Ok(walk)
}

/// Records [`Prediction::same_heads`] checks at once.
const RUN: usize = 4;

/// One record decoded in full.
struct FullRecord {
    /// Bytes taken, length prefix included.
    size: usize,
    timestamp_delta: i64,
    prediction: Prediction,
}

/// Decodes the record at the front of `rest` (length, timestamp delta, offset delta and, on
/// compacted topics, key length; the key and value are skipped) and checks it.
fn full_record(
    rest: &[u8],
    expected_delta: i32,
    compact: bool,
) -> std::result::Result<FullRecord, &'static str> {
    const MALFORMED: &str = "malformed varint in a record";
    let (length, n) = read_zigzag(rest, 5).ok_or(MALFORMED)?;
    let length = usize::try_from(length).map_err(|_| "negative record length")?;
    let body = rest
        .get(n..n + length)
        .ok_or("record runs past the batch")?;
    // attributes (1 byte), timestamp delta (varlong), offset delta (varint), key length, ...
    let after_attributes = body.get(1..).ok_or("empty record")?;
    let (timestamp_delta, t) = read_zigzag(after_attributes, 10).ok_or(MALFORMED)?;
    let after_timestamp = after_attributes.get(t..).unwrap_or_default();
    let (offset_delta, o) = read_zigzag(after_timestamp, 5).ok_or(MALFORMED)?;
    if compact {
        let key = after_timestamp.get(o..).unwrap_or_default();
        let (key_length, _) = read_zigzag(key, 5).ok_or(MALFORMED)?;
        if key_length < 0 {
            return Err("records on a compacted topic need a key");
        }
    }
    if offset_delta != i64::from(expected_delta) {
        return Err("record offset deltas are not consecutive from 0");
    }
    let window = rest
        .first_chunk::<8>()
        .map(|window| u64::from_le_bytes(*window));
    let prediction = match window {
        // A prediction is checked within one 8-byte window: short prefixes only.
        Some(window) if n <= 2 && t <= 2 => Prediction::new(window, n + length, n, n + 1 + t),
        _ => Prediction::NONE,
    };
    Ok(FullRecord {
        size: n + length,
        timestamp_delta,
        prediction,
    })
}

/// A mask of the low `n` bytes of a u64 (`n` in 1..=8).
#[inline(always)]
fn low_bytes(n: usize) -> u64 {
    u64::MAX.wrapping_shr(64u32.wrapping_sub(8 * n as u32))
}

/// The next record guessed from the last one decoded, checked against the next record's first
/// 8 bytes (read little endian).
#[derive(Debug, Clone, Copy)]
struct Prediction {
    /// Bytes per record, length prefix included.
    size: usize,
    /// Bytes that must follow the record's start for a check: the record, and at least the
    /// 8-byte window.
    span: usize,
    /// Bytes of the length prefix (1 or 2).
    length_bytes: usize,
    /// The length prefix's bits.
    length_mask: u64,
    length_prefix: u64,
    /// Bytes before the offset delta: length, attributes, timestamp delta.
    head_bytes: usize,
    /// Those bytes of the last record.
    head: u64,
    /// Masks of the head and an offset delta of one or two bytes; 0 where that offset delta
    /// would not fit in the window or the record, which then never matches (no head is 0: its
    /// first byte is a positive length).
    mask_1: u64,
    mask_2: u64,
}

/// What [`Prediction::same_length`] learned about a record of the predicted length.
#[derive(Debug, Clone, Copy)]
struct Checked {
    timestamp_delta: i64,
    /// Where the key length starts, from the start of the record.
    key_at: usize,
}

impl Prediction {
    /// Never matches: its window is never read (`span` is past any batch).
    const NONE: Self = Self {
        size: 0,
        span: usize::MAX,
        length_bytes: 0,
        length_mask: 0,
        length_prefix: u64::MAX,
        head_bytes: 8,
        head: u64::MAX,
        mask_1: 0,
        mask_2: 0,
    };

    /// Predicts records like the one with first bytes `window`: `size` bytes long with
    /// `length_bytes` of length prefix and `head_bytes` before its offset delta.
    #[inline(always)]
    fn new(window: u64, size: usize, length_bytes: usize, head_bytes: usize) -> Self {
        let mut prediction = Self {
            size,
            span: size.max(8),
            length_bytes,
            length_mask: low_bytes(length_bytes),
            length_prefix: window & low_bytes(length_bytes),
            ..Self::NONE
        };
        prediction.set_head(window, head_bytes);
        prediction
    }

    #[inline(always)]
    fn set_head(&mut self, window: u64, head_bytes: usize) {
        let size = self.size;
        let mask = |delta_bytes: usize| {
            let end = head_bytes + delta_bytes;
            if end <= 8 && end <= size {
                low_bytes(end)
            } else {
                0
            }
        };
        self.head_bytes = head_bytes;
        self.head = window & low_bytes(head_bytes);
        self.mask_1 = mask(1);
        self.mask_2 = mask(2);
    }

    /// Whether the record with first bytes `window` repeats the last record's length,
    /// attributes and timestamp delta, followed by the offset delta `expected_delta`, all
    /// within the record; then where its key length starts.
    #[inline(always)]
    fn same_head(&self, window: u64, expected_delta: i32) -> Option<usize> {
        // The zig-zag form of an offset delta k >= 0 is 2k.
        let raw = 2 * u64::from(expected_delta.unsigned_abs());
        let (encoded, mask, delta_bytes) = if raw < 0x80 {
            (raw, self.mask_1, 1)
        } else if raw < 0x4000 {
            ((raw & 0x7f) | 0x80 | (raw >> 7) << 8, self.mask_2, 2)
        } else {
            return None;
        };
        let expected = self.head | encoded.wrapping_shl(8 * self.head_bytes as u32);
        (window & mask == expected).then_some(self.head_bytes + delta_bytes)
    }

    /// Whether the [`RUN`] records from `at` on each repeat the last record's length,
    /// attributes and timestamp delta with consecutive offset deltas from `first_delta`, all
    /// of one varint width (the common case, checked with one branch for the run).
    #[inline(always)]
    fn same_heads(&self, records: &[u8], at: usize, first_delta: i32) -> bool {
        let Some(run) = records.get(at..at.saturating_add((RUN - 1) * self.size + self.span))
        else {
            return false;
        };
        // Zig-zag offset deltas (2k for k >= 0) and their varint bytes: 1 below 0x80, else 2
        // below 0x4000 (low 7 bits with the continuation bit, then the rest).
        let first = 2 * u64::from(first_delta.unsigned_abs());
        let last = first + 2 * (RUN as u64 - 1);
        let (mask, two_bytes) = if last < 0x80 {
            (self.mask_1, false)
        } else if first >= 0x80 && last < 0x4000 {
            (self.mask_2, true)
        } else {
            return false;
        };
        let encode = |raw: u64| {
            if two_bytes {
                0x80 | (raw & 0x7f) | ((raw << 1) & 0x7f00)
            } else {
                raw
            }
        };
        let shift = 8 * self.head_bytes as u32;
        let mut differ = 0;
        for i in 0..RUN {
            let Some(window) = run.get(i * self.size..).and_then(<[u8]>::first_chunk::<8>) else {
                return false;
            };
            let window = u64::from_le_bytes(*window);
            let expected = self.head | encode(first + 2 * i as u64).wrapping_shl(shift);
            differ |= (window & mask) ^ expected;
        }
        differ == 0
    }

    /// Checks the record with first bytes `window` when its length prefix is the predicted
    /// one and its timestamp and offset deltas take one or two bytes each, and predicts its
    /// successor from it; anything else (including every bad record) returns `None` and takes
    /// [`full_record`], which reports the error.
    #[inline(always)]
    fn same_length(&mut self, window: u64, expected_delta: i32) -> Option<Checked> {
        if window & self.length_mask != self.length_prefix {
            return None;
        }
        let byte = |i: usize| (window.wrapping_shr(8 * i as u32) & 0xff) as u8;
        // Both deltas take at most 2 bytes here, so every byte read is within the window:
        // length (<= 2) + attributes (1) + timestamp delta (<= 2) + offset delta (<= 2).
        let mut at = self.length_bytes + 1;
        let (timestamp_raw, t) = two_byte_varint(byte(at), byte(at + 1))?;
        at += t;
        let head_bytes = at;
        let (offset_raw, o) = two_byte_varint(byte(at), byte(at + 1))?;
        at += o;
        // Both varints must lie inside the record.
        if at > self.size || offset_raw != 2 * u64::from(expected_delta.unsigned_abs()) {
            return None;
        }
        self.set_head(window, head_bytes);
        Some(Checked {
            timestamp_delta: ((timestamp_raw >> 1) as i64) ^ -((timestamp_raw & 1) as i64),
            key_at: at,
        })
    }
}

/// A varint of one or two bytes: its raw (still zig-zag) value and length.
#[inline(always)]
fn two_byte_varint(b0: u8, b1: u8) -> Option<(u64, usize)> {
    if b0 < 0x80 {
        Some((u64::from(b0), 1))
    } else if b1 < 0x80 {
        Some((u64::from(b0 & 0x7f) | u64::from(b1) << 7, 2))
    } else {
        None
    }
}

/// Whether the key length at the front of `key` is well formed and not negative (a null key).
#[inline(always)]
fn key_present(key: &[u8]) -> bool {
    read_zigzag(key, 5).is_some_and(|(length, _)| length >= 0)
}

/// Checks the records of a compressed batch: decompressed within weir-records' bomb limit,
/// then the same rules as for uncompressed records (consecutive offset deltas, keys on
/// compacted topics, timestamps against the clock and the header's max timestamp).
fn check_compressed_records(
    batch: &[u8],
    header: &BatchHeader,
    position: usize,
    config: &LogConfig,
    check_ts: impl Fn(i64) -> Result<()>,
    mut meta: BatchMeta,
) -> Result<BatchMeta> {
    let bad = |reason| Error::InvalidRecords { position, reason };
    let invalid = |source| Error::InvalidBatch { position, source };
    if header.last_offset_delta != header.record_count - 1 {
        return Err(bad("last offset delta does not match the record count"));
    }
    let view = RecordBatch::new(bytes::Bytes::copy_from_slice(batch)).map_err(invalid)?;
    let records = view.records().map_err(invalid)?;
    let mut max_timestamp = i64::MIN;
    let mut count = 0i32;
    for (expected_delta, record) in (0..header.record_count).zip(records) {
        let record = record.map_err(invalid)?;
        if record.offset.wrapping_sub(header.base_offset) != i64::from(expected_delta) {
            return Err(bad("record offset deltas are not consecutive from 0"));
        }
        if config.cleanup_policy.compact && record.key.is_none() {
            return Err(bad("records on a compacted topic need a key"));
        }
        check_ts(record.timestamp)?;
        if record.timestamp > max_timestamp {
            max_timestamp = record.timestamp;
            meta.max_timestamp_delta = expected_delta;
        }
        count += 1;
    }
    if count != header.record_count {
        return Err(bad("fewer records than the header claims"));
    }
    if header.attributes.timestamp_type() == TimestampType::CreateTime {
        if max_timestamp != header.max_timestamp {
            return Err(bad("max timestamp does not match the records"));
        }
        meta.max_timestamp = max_timestamp;
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_records::{Record, RecordBatchBuilder};

    /// Guards compressed appends: their records are checked like uncompressed ones (a gap the
    /// log helper's first version left while weir-records had no codecs).
    #[test]
    fn compressed_records_are_checked_like_plain_ones() {
        let compressed = |key: Option<&[u8]>, ts: i64| {
            let mut builder = RecordBatchBuilder::new();
            builder
                .compression(Compression::Gzip)
                .push(Record::new(ts, key, Some(b"v")));
            builder.build().unwrap().to_vec()
        };
        let now = 1_700_000_000_000;
        let plain = LogConfig::default();
        let mut metas =
            validate(&compressed(None, now), &plain, TimestampCheck::Clock(now)).unwrap();
        assert_eq!(metas.as_mut_slice()[0].max_timestamp, now);

        let mut compacted = LogConfig::default();
        compacted.set("cleanup.policy", "compact").unwrap();
        assert!(matches!(
            validate(
                &compressed(None, now),
                &compacted,
                TimestampCheck::Clock(now)
            ),
            Err(Error::InvalidRecords { .. })
        ));
        validate(
            &compressed(Some(b"k"), now),
            &compacted,
            TimestampCheck::Clock(now),
        )
        .unwrap();

        // A timestamp a day in the future is refused even inside a compressed batch.
        assert!(matches!(
            validate(
                &compressed(Some(b"k"), now + 86_400_000),
                &plain,
                TimestampCheck::Clock(now)
            ),
            Err(Error::InvalidTimestamp { .. })
        ));
    }

    fn batch(timestamps: &[i64]) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new();
        for &ts in timestamps {
            builder.push(Record::new(ts, Some(b"k"), Some(b"v")));
        }
        builder.build().unwrap().to_vec()
    }

    #[test]
    fn accepts_good_batches_and_reports_max_timestamp() {
        let mut buf = batch(&[10, 30, 20]);
        assert!(matches!(
            validate(&buf, &LogConfig::default(), TimestampCheck::Clock(50)).unwrap(),
            Metas::One(_)
        ));
        buf.extend(batch(&[40]));
        buf.extend(batch(&[5]));
        let mut metas = validate(&buf, &LogConfig::default(), TimestampCheck::Clock(50)).unwrap();
        let metas = metas.as_mut_slice();
        assert_eq!(metas.len(), 3);
        assert_eq!(metas[0].max_timestamp, 30);
        assert_eq!(metas[0].max_timestamp_delta, 1);
        assert_eq!(metas[0].last_offset_delta, 2);
        assert_eq!(metas[1].position, metas[0].size);
        assert_eq!(metas[2].position, metas[1].position + metas[1].size);
        assert_eq!(metas[2].max_timestamp, 5);
    }

    /// The walk decoding every record in full (the walk before predictions): the reference
    /// the predicted walk must agree with on every input.
    fn reference_walk(
        records: &[u8],
        count: i32,
        base_timestamp: i64,
        compact: bool,
    ) -> std::result::Result<(i64, i64, i32, usize), &'static str> {
        let (mut min, mut max, mut max_delta, mut at) = (i64::MAX, i64::MIN, count - 1, 0);
        for expected_delta in 0..count {
            let record = full_record(
                records.get(at..).unwrap_or_default(),
                expected_delta,
                compact,
            )?;
            at += record.size;
            let timestamp = base_timestamp.wrapping_add(record.timestamp_delta);
            if timestamp > max {
                max = timestamp;
                max_delta = expected_delta;
            }
            min = min.min(timestamp);
        }
        Ok((min, max, max_delta, at))
    }

    fn walk(
        records: &[u8],
        count: i32,
        base_timestamp: i64,
        compact: bool,
    ) -> std::result::Result<(i64, i64, i32, usize), &'static str> {
        walk_records(records, count, base_timestamp, compact).map(|w| {
            (
                w.min_timestamp,
                w.max_timestamp,
                w.max_timestamp_delta,
                w.end,
            )
        })
    }

    /// (timestamp delta, key length or null, value length) of each record; the records part
    /// of the batch built from them, its record count and base timestamp.
    fn records_of(specs: &[(i64, Option<usize>, usize)]) -> (Vec<u8>, i32, i64) {
        let mut builder = RecordBatchBuilder::new();
        for &(delta, key, value) in specs {
            let key = key.map(|n| vec![b'k'; n]);
            builder.push(Record::new(
                1_700_000_000_000 + delta,
                key.as_deref(),
                Some(&vec![b'v'; value]),
            ));
        }
        let batch = builder.build().unwrap().to_vec();
        let header = BatchHeader::parse(&batch).unwrap();
        (
            batch[BATCH_HEADER_LEN..].to_vec(),
            header.record_count,
            header.base_timestamp,
        )
    }

    proptest::proptest! {
        /// Runs of records that repeat, then change, their length, timestamp and key
        /// (including null keys, lengths whose varint changes size, offset deltas past 63),
        /// damaged in a record's first bytes or cut short, with a record count that may be off
        /// by one: the predicted walk accepts exactly what the full decode accepts, refuses
        /// with the same reason, and finds the same timestamps and end.
        #[test]
        fn walk_agrees_with_full_decode(
            runs in proptest::collection::vec(
                (
                    proptest::sample::select(vec![0i64, 0, 0, 1, 7, -3, 64, 9_000, 1 << 40]),
                    proptest::option::weighted(0.9, proptest::sample::select(vec![3usize, 4, 70])),
                    proptest::sample::select(vec![0usize, 5, 40, 100, 200]),
                    1usize..40,
                ),
                1..10,
            ),
            damage in proptest::option::of((
                proptest::prelude::any::<proptest::sample::Index>(),
                0usize..10,
                proptest::sample::select(vec![1u8, 2, 0x40, 0x7f, 0x80, 0xff]),
                0usize..3,
            )),
            count_off in proptest::sample::select(vec![0i32, 0, 0, 0, -1, 1]),
            compact in proptest::prelude::any::<bool>(),
        ) {
            let specs: Vec<_> = runs
                .iter()
                .flat_map(|&(delta, key, value, n)| std::iter::repeat_n((delta, key, value), n))
                .collect();
            let (mut records, count, base) = records_of(&specs);
            // Damage where predictions look: a bit pattern in a record's first bytes, or the
            // end cut off.
            if let Some((record, at, xor, kind)) = damage {
                let record = i32::try_from(record.index(specs.len())).unwrap();
                let (_, _, _, start) = reference_walk(&records, record, base, false).unwrap();
                match kind {
                    0 | 1 => {
                        let i = (start + at).min(records.len() - 1);
                        records[i] ^= xor;
                    }
                    _ => records.truncate(records.len() - 1 - at),
                }
            }
            let count = count + count_off;
            proptest::prop_assert_eq!(
                walk(&records, count, base, compact),
                reference_walk(&records, count, base, compact)
            );
        }
    }

    /// Offset deltas from 1 to 3 bytes (63/64 and 8191/8192) in records of the same length,
    /// and a batch whose last record ends less than 8 bytes before a short one.
    #[test]
    fn walk_handles_delta_widths_and_short_records() {
        let same: Vec<_> = (0..9_000).map(|_| (0, Some(1), 0)).collect();
        let (records, count, base) = records_of(&same);
        for compact in [false, true] {
            let expected = reference_walk(&records, count, base, compact);
            assert!(expected.is_ok());
            assert_eq!(walk(&records, count, base, compact), expected);
        }
        // A wrong last byte of any offset delta is caught, around every width change too.
        for k in [
            1, 2, 3, 4, 5, 62, 63, 64, 65, 66, 67, 127, 128, 8190, 8191, 8192, 8193,
        ] {
            let (_, _, _, start) = reference_walk(&records, k, base, true).unwrap();
            let (_, _, _, end) = reference_walk(&records, k + 1, base, true).unwrap();
            let mut bad = records.clone();
            // length, attributes, timestamp delta (1 byte each), offset delta, then 4 bytes of
            // key length, key, value length and header count.
            bad[end - 5] ^= 0x02;
            for compact in [false, true] {
                let expected = reference_walk(&bad, count, base, compact);
                assert!(expected.is_err(), "{k}");
                assert_eq!(walk(&bad, count, base, compact), expected, "{k}");
            }
            assert!(end - 5 >= start + 3);
        }
        // Records whose offset delta grows to 2 bytes while their value shrinks by one keep
        // their length: the second delta byte is still checked.
        let mut specs = vec![(0, Some(1), 1); 64];
        specs.extend([(0, Some(1), 0); 16]);
        let (mut widening, widening_count, base) = records_of(&specs);
        let (_, _, _, end) = reference_walk(&widening, 65, base, false).unwrap();
        let (_, _, _, sixty_four) = reference_walk(&widening, 64, base, false).unwrap();
        assert_eq!(end - sixty_four, sixty_four / 64);
        widening[end - 5] ^= 0x02;
        assert_eq!(
            walk(&widening, widening_count, base, false),
            Err("record offset deltas are not consecutive from 0")
        );
        // A repeated offset delta deep in the 2-byte range is caught.
        let mut bad = records.clone();
        let (_, _, _, at) = reference_walk(&records, 5_000, base, true).unwrap();
        let (_, _, _, next) = reference_walk(&records, 5_001, base, true).unwrap();
        bad[next + 3] = bad[at + 3];
        bad[next + 4] = bad[at + 4];
        for compact in [false, true] {
            assert_eq!(
                walk(&bad, count, base, compact),
                Err("record offset deltas are not consecutive from 0")
            );
        }

        let (records, count, base) = records_of(&[(0, Some(2), 30), (0, None, 0), (0, None, 0)]);
        assert_eq!(
            walk(&records, count, base, false),
            reference_walk(&records, count, base, false)
        );
        assert_eq!(
            walk(&records, count, base, true),
            Err("records on a compacted topic need a key")
        );
    }

    #[test]
    fn refuses_bad_input() {
        let config = LogConfig::default();
        let now = TimestampCheck::Clock(0);
        assert!(matches!(
            validate(&[], &config, now),
            Err(Error::EmptyAppend)
        ));
        let good = batch(&[0]);
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            validate(&flipped, &config, now),
            Err(Error::InvalidBatch {
                source: RecordsError::CrcMismatch { .. },
                ..
            })
        ));
        assert!(matches!(
            validate(&good[..good.len() - 1], &config, now),
            Err(Error::InvalidBatch { .. })
        ));
        let small = LogConfig {
            max_message_bytes: 10,
            ..LogConfig::default()
        };
        assert!(matches!(
            validate(&good, &small, now),
            Err(Error::MessageTooLarge { .. })
        ));
        let future = batch(&[10_000_000]);
        assert!(matches!(
            validate(&future, &config, now),
            Err(Error::InvalidTimestamp { .. })
        ));
        assert!(validate(&future, &config, TimestampCheck::Trust).is_ok());
        let mut keyless = RecordBatchBuilder::new();
        keyless.push(Record::new(0, None, Some(b"v")));
        let keyless = keyless.build().unwrap();
        let compacted = LogConfig {
            cleanup_policy: crate::CleanupPolicy::COMPACT,
            ..LogConfig::default()
        };
        assert!(validate(&keyless, &config, now).is_ok());
        assert!(matches!(
            validate(&keyless, &compacted, now),
            Err(Error::InvalidRecords { .. })
        ));
    }
}
