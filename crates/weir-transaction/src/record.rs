//! Kafka's `__transaction_state` record format: the key and value the coordinator appends for
//! every state change and replays in [`Coordinator::load`](crate::Coordinator::load).
//!
//! Key: `TransactionLogKey` version 0 — big-endian `int16` version, then the transactional id as
//! an `int16`-length string. Keys of other versions decode to `None` and are skipped.
//!
//! Value: `TransactionLogValue`. Weir writes version 1, the flexible version current Kafka
//! brokers write (compact strings and arrays, tagged fields), and reads versions 0 and 1; a later
//! version is read as version 1, because KIP-915 allows later versions to add tagged fields
//! only. Fields, in order: producer id (`int64`), producer epoch (`int16`), transaction timeout
//! (`int32`), state id (`int8`), the partitions as a nullable array of (topic, partition ids),
//! last update time (`int64`), start time (`int64`), then tagged fields: 0 previous producer id,
//! 1 next producer id, 2 client transaction version (Kafka's), and
//! [`LAST_PRODUCER_EPOCH_TAG`] the last producer epoch (Weir's; see the crate docs for why).
//! A tagged field is written only when it differs from its default, as Kafka's generated code
//! does, and unknown tags are skipped, so each broker reads the other's records.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::types::{
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TopicPartition, TransactionVersion, TxnState,
};

/// The tagged field Weir adds to `TransactionLogValue` for the last producer epoch, which Kafka
/// keeps in memory only. Far above Kafka's own tags (0–2) so that a later Kafka field does not
/// collide with it; Kafka readers skip it as an unknown tag.
pub const LAST_PRODUCER_EPOCH_TAG: u32 = 22_341;

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 1;
const PREVIOUS_PRODUCER_ID_TAG: u32 = 0;
const NEXT_PRODUCER_ID_TAG: u32 = 1;
const CLIENT_TRANSACTION_VERSION_TAG: u32 = 2;

/// A transactional id's persisted state: the value of its `__transaction_state` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionLogValue {
    /// Producer id in use.
    pub producer_id: i64,
    /// The producer id before the last transition (differs from `producer_id` right after a
    /// rotation); `-1` if none. Lets a producer that missed the response of a rotation retry.
    pub previous_producer_id: i64,
    /// With transaction version 2, the producer id the client continues with once the
    /// current transaction completes, when its epoch ran out; `-1` otherwise.
    pub next_producer_id: i64,
    /// Current producer epoch; `-1` before the first InitProducerId completes.
    pub producer_epoch: i16,
    /// The epoch before the last bump, `-1` if the client cannot have it (after a fence). Lets
    /// a retried InitProducerId (KIP-360) or EndTxn (version 2) be recognised as a retry.
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub transaction_timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions of the open (or deciding) transaction.
    pub partitions: BTreeSet<TopicPartition>,
    /// When the transactional id last changed state; expiration counts from here.
    pub last_update_timestamp_ms: i64,
    /// When the current (or last) transaction started, `-1` if none has.
    pub start_timestamp_ms: i64,
    /// The client's transaction version at the last transition.
    pub transaction_version: TransactionVersion,
}

/// Encodes the key of `transactional_id`'s records.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

/// Decodes a key to its transactional id; `Ok(None)` for key versions other than 0.
pub fn decode_key(bytes: &[u8]) -> Result<Option<String>> {
    let mut r = Reader::new(bytes);
    match r.i16()? {
        KEY_VERSION => Ok(Some(r.string()?)),
        _ => Ok(None),
    }
}

impl TransactionLogValue {
    /// Encodes as value version 1.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(VALUE_VERSION);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_i32(self.transaction_timeout_ms);
        buf.put_i8(self.state.id());
        let by_topic = self.partitions_by_topic();
        put_uvarint(&mut buf, len_u32(by_topic.len()).saturating_add(1));
        for (topic, partitions) in &by_topic {
            put_compact_string(&mut buf, topic);
            put_uvarint(&mut buf, len_u32(partitions.len()).saturating_add(1));
            for p in partitions {
                buf.put_i32(*p);
            }
            // No tagged fields in the partition struct.
            put_uvarint(&mut buf, 0);
        }
        buf.put_i64(self.last_update_timestamp_ms);
        buf.put_i64(self.start_timestamp_ms);
        let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
        if self.previous_producer_id != NO_PRODUCER_ID {
            tags.push((
                PREVIOUS_PRODUCER_ID_TAG,
                self.previous_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if self.next_producer_id != NO_PRODUCER_ID {
            tags.push((
                NEXT_PRODUCER_ID_TAG,
                self.next_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if self.transaction_version != TransactionVersion::V0 {
            tags.push((
                CLIENT_TRANSACTION_VERSION_TAG,
                self.transaction_version.0.to_be_bytes().to_vec(),
            ));
        }
        if self.last_producer_epoch != NO_PRODUCER_EPOCH {
            tags.push((
                LAST_PRODUCER_EPOCH_TAG,
                self.last_producer_epoch.to_be_bytes().to_vec(),
            ));
        }
        put_uvarint(&mut buf, len_u32(tags.len()));
        for (tag, data) in tags {
            put_uvarint(&mut buf, tag);
            put_uvarint(&mut buf, len_u32(data.len()));
            buf.put_slice(&data);
        }
        buf.freeze()
    }

    /// Decodes value versions 0 and 1 (and later versions as 1).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.i16()?;
        if version < 0 {
            return Err(r.corrupt("negative value version"));
        }
        let flexible = version >= 1;
        let producer_id = r.i64()?;
        let producer_epoch = r.i16()?;
        let transaction_timeout_ms = r.i32()?;
        let state_id = r.i8()?;
        let state = TxnState::from_id(state_id).ok_or_else(|| r.corrupt("unknown state id"))?;
        let mut partitions = BTreeSet::new();
        // Each topic entry takes at least a length and a partition count.
        let topics = if flexible {
            r.compact_count(2)?
        } else {
            r.count(6)?
        };
        for _ in 0..topics {
            let topic = if flexible {
                r.compact_string()?
            } else {
                r.string()?
            };
            let ids = if flexible {
                r.compact_count(4)?
            } else {
                r.count(4)?
            };
            for _ in 0..ids {
                partitions.insert(TopicPartition::new(topic.clone(), r.i32()?));
            }
            if flexible {
                r.skip_tagged_fields()?;
            }
        }
        let last_update_timestamp_ms = r.i64()?;
        let start_timestamp_ms = r.i64()?;
        let mut value = Self {
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            transaction_timeout_ms,
            state,
            partitions,
            last_update_timestamp_ms,
            start_timestamp_ms,
            transaction_version: TransactionVersion::V0,
        };
        if flexible {
            let count = r.uvarint()?;
            for _ in 0..count {
                let tag = r.uvarint()?;
                let size = r.uvarint()? as usize;
                let data = r.take(size)?;
                let mut field = Reader::new(data);
                match tag {
                    PREVIOUS_PRODUCER_ID_TAG => value.previous_producer_id = field.i64()?,
                    NEXT_PRODUCER_ID_TAG => value.next_producer_id = field.i64()?,
                    CLIENT_TRANSACTION_VERSION_TAG => {
                        value.transaction_version = TransactionVersion(field.i16()?);
                    }
                    LAST_PRODUCER_EPOCH_TAG => value.last_producer_epoch = field.i16()?,
                    _ => {}
                }
            }
        }
        Ok(value)
    }

    fn partitions_by_topic(&self) -> BTreeMap<&str, Vec<i32>> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in &self.partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        by_topic
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_string(buf: &mut BytesMut, s: &str) {
    // Kafka strings are at most i16::MAX bytes; transactional ids and topic names are validated
    // far below that before they reach the coordinator, so truncation only guards misuse.
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(bytes.get(..len).unwrap_or_default());
}

fn put_compact_string(buf: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    put_uvarint(buf, len_u32(len) + 1);
    buf.put_slice(bytes.get(..len).unwrap_or_default());
}

/// A bounds-checked big-endian reader: every length is checked against the bytes left before
/// anything is allocated.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn corrupt(&self, reason: &'static str) -> Error {
        Error::CorruptRecord {
            at: self.pos,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.corrupt("length overflow"))?;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.corrupt("truncated"))?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        <[u8; N]>::try_from(slice).map_err(|_| self.corrupt("truncated"))
    }

    fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn uvarint(&mut self) -> Result<u32> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let [byte] = self.array::<1>()?;
            value |= u32::from(byte & 0x7f)
                .checked_shl(shift)
                .ok_or_else(|| self.corrupt("varint too long"))?;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.corrupt("varint too long"))
    }

    fn utf8(&self, raw: &[u8]) -> Result<String> {
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| self.corrupt("string is not UTF-8"))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.i16()?;
        if len < 0 {
            return Err(self.corrupt("null in a non-nullable string"));
        }
        let raw = self.take(len as usize)?;
        self.utf8(raw)
    }

    fn compact_string(&mut self) -> Result<String> {
        let len = self.uvarint()?;
        if len == 0 {
            return Err(self.corrupt("null in a non-nullable string"));
        }
        let raw = self.take((len - 1) as usize)?;
        self.utf8(raw)
    }

    /// Checks that `count * min_item_size` bytes remain before anything is allocated.
    fn check_count(&self, count: usize, min_item_size: usize) -> Result<usize> {
        let remaining = self.buf.len().saturating_sub(self.pos);
        if count.saturating_mul(min_item_size) > remaining {
            return Err(self.corrupt("array count exceeds the bytes left"));
        }
        Ok(count)
    }

    /// An `int32` array count; null (negative) reads as empty.
    fn count(&mut self, min_item_size: usize) -> Result<usize> {
        let count = self.i32()?;
        if count < 0 {
            return Ok(0);
        }
        self.check_count(count as usize, min_item_size)
    }

    /// A compact array count (`uvarint` count + 1); null (0) reads as empty.
    fn compact_count(&mut self, min_item_size: usize) -> Result<usize> {
        let n = self.uvarint()?;
        if n == 0 {
            return Ok(0);
        }
        self.check_count((n - 1) as usize, min_item_size)
    }

    fn skip_tagged_fields(&mut self) -> Result<()> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> TransactionLogValue {
        TransactionLogValue {
            producer_id: 1000,
            previous_producer_id: 1000,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: 3,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            transaction_timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [TopicPartition::new("a", 1), TopicPartition::new("a", 0)]
                .into_iter()
                .collect(),
            last_update_timestamp_ms: 7,
            start_timestamp_ms: 5,
            transaction_version: TransactionVersion::V0,
        }
    }

    #[test]
    fn key_layout() {
        let key = encode_key("tx");
        assert_eq!(&key[..], &[0, 0, 0, 2, b't', b'x']);
        assert_eq!(decode_key(&key).unwrap().as_deref(), Some("tx"));
        assert_eq!(decode_key(&[0, 1, 0, 0]).unwrap(), None);
    }

    #[test]
    fn value_v1_layout_matches_kafka() {
        let bytes = sample().encode();
        let mut expected = vec![0, 1];
        expected.extend_from_slice(&1000i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(1); // Ongoing
        expected.push(2); // one topic
        expected.extend_from_slice(&[2, b'a']); // compact string "a"
        expected.push(3); // two partitions
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.push(0); // no tagged fields in the topic entry
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.push(1); // one tagged field: previous producer id
        expected.extend_from_slice(&[0, 8]);
        expected.extend_from_slice(&1000i64.to_be_bytes());
        assert_eq!(&bytes[..], &expected[..]);
        assert_eq!(TransactionLogValue::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn value_v0_decodes() {
        // Version 0: classic strings and int32 array counts, a null partition array.
        let mut v0 = vec![0, 0];
        v0.extend_from_slice(&9i64.to_be_bytes());
        v0.extend_from_slice(&1i16.to_be_bytes());
        v0.extend_from_slice(&100i32.to_be_bytes());
        v0.push(5); // CompleteAbort
        v0.extend_from_slice(&(-1i32).to_be_bytes());
        v0.extend_from_slice(&20i64.to_be_bytes());
        v0.extend_from_slice(&10i64.to_be_bytes());
        let value = TransactionLogValue::decode(&v0).unwrap();
        assert_eq!(value.producer_id, 9);
        assert_eq!(value.state, TxnState::CompleteAbort);
        assert!(value.partitions.is_empty());
        assert_eq!(value.previous_producer_id, NO_PRODUCER_ID);
        assert_eq!(value.last_producer_epoch, NO_PRODUCER_EPOCH);
    }

    #[test]
    fn unknown_tags_are_skipped() {
        let mut bytes = sample().encode().to_vec();
        // Replace the tag section with one unknown tag (7) and the previous producer id.
        let tags_at = bytes.len() - 11;
        bytes.truncate(tags_at);
        bytes.extend_from_slice(&[2, 0, 8]);
        bytes.extend_from_slice(&1000i64.to_be_bytes());
        bytes.extend_from_slice(&[7, 2, 0xab, 0xcd]);
        assert_eq!(TransactionLogValue::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn hostile_input_is_an_error() {
        assert!(decode_key(&[]).is_err());
        assert!(TransactionLogValue::decode(&[0, 1, 0]).is_err());
        let mut bad_state = sample().encode().to_vec();
        bad_state[16] = 42;
        assert_eq!(
            TransactionLogValue::decode(&bad_state).unwrap_err().code(),
            2
        );
        // A topic count far beyond the bytes left must not allocate.
        let mut huge = vec![0, 0];
        huge.extend_from_slice(&[0; 14]);
        huge.push(0);
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(TransactionLogValue::decode(&huge).is_err());
    }

    fn value() -> impl Strategy<Value = TransactionLogValue> {
        (
            (any::<i64>(), any::<i64>(), any::<i64>()),
            (any::<i16>(), any::<i16>(), any::<i32>()),
            0..8i8,
            proptest::collection::btree_set(("[a-z_]{1,6}", 0..100i32), 0..6),
            (any::<i64>(), any::<i64>(), any::<i16>()),
        )
            .prop_map(
                |((pid, prev, next), (epoch, last, timeout), state, parts, (upd, start, tv))| {
                    TransactionLogValue {
                        producer_id: pid,
                        previous_producer_id: prev,
                        next_producer_id: next,
                        producer_epoch: epoch,
                        last_producer_epoch: last,
                        transaction_timeout_ms: timeout,
                        state: TxnState::from_id(state).unwrap(),
                        partitions: parts
                            .into_iter()
                            .map(|(t, p)| TopicPartition::new(t, p))
                            .collect(),
                        last_update_timestamp_ms: upd,
                        start_timestamp_ms: start,
                        transaction_version: TransactionVersion(tv),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn values_round_trip(v in value()) {
            prop_assert_eq!(TransactionLogValue::decode(&v.encode()).unwrap(), v);
        }

        #[test]
        fn keys_round_trip(id in "\\PC{0,40}") {
            prop_assert_eq!(decode_key(&encode_key(&id)).unwrap(), Some(id));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = decode_key(&bytes);
            let _ = TransactionLogValue::decode(&bytes);
        }
    }
}
