//! Kafka's `__consumer_offsets` record formats: the keys and values the broker appends to the
//! internal compacted topic and replays into [`Coordinator::load`](crate::Coordinator::load).
//!
//! Every key and value starts with a big-endian `int16` version. Strings are `int16` length +
//! UTF-8 (`-1` = null), bytes are `int32` length + data, arrays are `int32` count + items.
//! Weir writes the versions current Kafka brokers write (offset commit key 1, value 3; group
//! metadata key 2, value 3) and reads every non-flexible version, so either broker can read the
//! other's topic. Keys of later versions (KIP-848 consumer groups, share groups) decode to
//! `None`: this coordinator does not own those groups and skips them. Trailing bytes are
//! ignored, as Kafka's readers do, so newer ignorable fields don't break older brokers.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    /// A committed offset (key versions 0 and 1).
    OffsetCommit {
        /// Group id.
        group: String,
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A group's metadata (key version 2).
    GroupMetadata {
        /// Group id.
        group: String,
    },
}

/// The value of an offset commit record (value versions 0–3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    /// The committed offset: the next record the group will consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, `-1` if unknown (version 3+).
    pub leader_epoch: i32,
    /// Client metadata stored with the offset.
    pub metadata: String,
    /// When the commit happened, in milliseconds since the Unix epoch.
    pub commit_timestamp: i64,
    /// An explicit expiry time (version 1 only, from OffsetCommit v2–v4 `retention_time_ms`).
    pub expire_timestamp: Option<i64>,
}

/// The value of a group metadata record (value versions 0–3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMetadataValue {
    /// Protocol type, e.g. `consumer`; empty for groups that only commit offsets.
    pub protocol_type: String,
    /// Generation id.
    pub generation: i32,
    /// Selected protocol (assignor), `None` while the group is empty.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the group entered its current state (version 2+, `-1` if unknown).
    pub current_state_timestamp: i64,
    /// Members with their subscription and assignment.
    pub members: Vec<MemberMetadata>,
}

/// One member inside a [`GroupMetadataValue`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    /// Member id.
    pub member_id: String,
    /// Static membership id (version 3+).
    pub group_instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout (version 1+; version 0 reads it as the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol.
    pub subscription: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const GROUP_METADATA_KEY_VERSION: i16 = 2;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

impl RecordKey {
    /// Encodes the key in the version current Kafka brokers write.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            Self::OffsetCommit {
                group,
                topic,
                partition,
            } => {
                buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
                put_string(&mut buf, group);
                put_string(&mut buf, topic);
                buf.put_i32(*partition);
            }
            Self::GroupMetadata { group } => {
                buf.put_i16(GROUP_METADATA_KEY_VERSION);
                put_string(&mut buf, group);
            }
        }
        buf.freeze()
    }

    /// Decodes a key; `Ok(None)` for key versions this coordinator does not own.
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>> {
        let mut r = Reader::new(bytes);
        let key = match r.i16()? {
            0 | 1 => Self::OffsetCommit {
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
            },
            2 => Self::GroupMetadata { group: r.string()? },
            _ => return Ok(None),
        };
        Ok(Some(key))
    }

    /// The group this record belongs to.
    pub fn group(&self) -> &str {
        match self {
            Self::OffsetCommit { group, .. } | Self::GroupMetadata { group } => group,
        }
    }
}

impl OffsetCommitValue {
    /// Encodes as value version 3, or version 1 when an explicit expiry time is set (the only
    /// version that carries one).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self.expire_timestamp {
            Some(expire) => {
                buf.put_i16(1);
                buf.put_i64(self.offset);
                put_string(&mut buf, &self.metadata);
                buf.put_i64(self.commit_timestamp);
                buf.put_i64(expire);
            }
            None => {
                buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
                buf.put_i64(self.offset);
                buf.put_i32(self.leader_epoch);
                put_string(&mut buf, &self.metadata);
                buf.put_i64(self.commit_timestamp);
            }
        }
        buf.freeze()
    }

    /// Decodes value versions 0–3.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.i16()?;
        let value = match version {
            0..=3 => {
                let offset = r.i64()?;
                let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
                let metadata = r.string()?;
                let commit_timestamp = r.i64()?;
                let expire_timestamp = if version == 1 { Some(r.i64()?) } else { None };
                Self {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp,
                    expire_timestamp: expire_timestamp.filter(|&t| t >= 0),
                }
            }
            _ => return Err(r.corrupt("unsupported offset commit value version")),
        };
        Ok(value)
    }
}

impl GroupMetadataValue {
    /// Encodes as value version 3.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(GROUP_METADATA_VALUE_VERSION);
        put_string(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_nullable_string(&mut buf, self.protocol.as_deref());
        put_nullable_string(&mut buf, self.leader.as_deref());
        buf.put_i64(self.current_state_timestamp);
        put_len(&mut buf, self.members.len());
        for m in &self.members {
            put_string(&mut buf, &m.member_id);
            put_nullable_string(&mut buf, m.group_instance_id.as_deref());
            put_string(&mut buf, &m.client_id);
            put_string(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    /// Decodes value versions 0–3.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(r.corrupt("unsupported group metadata value version"));
        }
        let protocol_type = r.string()?;
        let generation = r.i32()?;
        let protocol = r.nullable_string()?;
        let leader = r.nullable_string()?;
        let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
        // Each member takes at least 2+2+2+4+4+4 bytes even with empty fields.
        let count = r.count(18)?;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let member_id = r.string()?;
            let group_instance_id = if version >= 3 {
                r.nullable_string()?
            } else {
                None
            };
            let client_id = r.string()?;
            let client_host = r.string()?;
            let rebalance_timeout = if version >= 1 { Some(r.i32()?) } else { None };
            let session_timeout_ms = r.i32()?;
            members.push(MemberMetadata {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms: rebalance_timeout.unwrap_or(session_timeout_ms),
                session_timeout_ms,
                subscription: r.bytes()?,
                assignment: r.bytes()?,
            });
        }
        Ok(Self {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp,
            members,
        })
    }
}

fn put_len(buf: &mut BytesMut, len: usize) {
    buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
}

fn put_string(buf: &mut BytesMut, s: &str) {
    // Kafka strings are at most i16::MAX bytes; ids and metadata are validated far below that
    // before they reach the coordinator, so truncation here only guards against misuse.
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(bytes.get(..len).unwrap_or_default());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    put_len(buf, b.len());
    buf.put_slice(b);
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

    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn nullable_string(&mut self) -> Result<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let raw = self.take(len as usize)?;
        let s = std::str::from_utf8(raw).map_err(|_| self.corrupt("string is not UTF-8"))?;
        Ok(Some(s.to_owned()))
    }

    fn string(&mut self) -> Result<String> {
        self.nullable_string()?
            .ok_or_else(|| self.corrupt("null in a non-nullable string"))
    }

    fn bytes(&mut self) -> Result<Bytes> {
        let len = self.i32()?;
        if len < 0 {
            // Kafka writes empty, never null, but older tools wrote null for no assignment.
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }

    /// Reads an array count and checks that `count * min_item_size` bytes remain.
    fn count(&mut self, min_item_size: usize) -> Result<usize> {
        let count = self.i32()?;
        if count < 0 {
            return Ok(0);
        }
        let count = count as usize;
        let remaining = self.buf.len().saturating_sub(self.pos);
        if count.saturating_mul(min_item_size) > remaining {
            return Err(self.corrupt("array count exceeds the bytes left"));
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_commit_key_layout() {
        let key = RecordKey::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        let bytes = key.encode();
        assert_eq!(&bytes[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(RecordKey::decode(&bytes).unwrap(), Some(key));
    }

    #[test]
    fn group_metadata_key_layout() {
        let key = RecordKey::GroupMetadata { group: "ab".into() };
        assert_eq!(&key.encode()[..], &[0, 2, 0, 2, b'a', b'b']);
    }

    #[test]
    fn later_key_versions_are_skipped() {
        assert_eq!(RecordKey::decode(&[0, 3, 0, 1, b'g']).unwrap(), None);
    }

    #[test]
    fn offset_value_v3_layout() {
        let v = OffsetCommitValue {
            offset: 5,
            leader_epoch: 2,
            metadata: "m".into(),
            commit_timestamp: 9,
            expire_timestamp: None,
        };
        let bytes = v.encode();
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&[0, 1, b'm']);
        expected.extend_from_slice(&9i64.to_be_bytes());
        assert_eq!(&bytes[..], &expected[..]);
        assert_eq!(OffsetCommitValue::decode(&bytes).unwrap(), v);
    }

    #[test]
    fn offset_value_v1_carries_expiry() {
        let v = OffsetCommitValue {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 9,
            expire_timestamp: Some(100),
        };
        let bytes = v.encode();
        assert_eq!(&bytes[..2], &[0, 1]);
        assert_eq!(OffsetCommitValue::decode(&bytes).unwrap(), v);
    }

    #[test]
    fn truncated_and_hostile_input_is_an_error() {
        assert!(RecordKey::decode(&[]).is_err());
        assert!(RecordKey::decode(&[0, 1, 0, 5, b'a']).is_err());
        // A member count of i32::MAX with no bytes behind it must not allocate.
        let mut v = vec![0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        v.extend_from_slice(&(-1i64).to_be_bytes());
        v.extend_from_slice(&i32::MAX.to_be_bytes());
        let err = GroupMetadataValue::decode(&v).unwrap_err();
        assert_eq!(err.code(), 2);
        assert!(OffsetCommitValue::decode(&[0, 9, 0]).is_err());
    }

    fn member() -> impl Strategy<Value = MemberMetadata> {
        (
            "[a-z0-9-]{0,12}",
            proptest::option::of("[a-z]{1,8}"),
            "[a-z]{0,8}",
            "[a-z/.0-9]{0,12}",
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(id, inst, cid, host, rt, st, sub, asg)| MemberMetadata {
                member_id: id,
                group_instance_id: inst,
                client_id: cid,
                client_host: host,
                rebalance_timeout_ms: rt,
                session_timeout_ms: st,
                subscription: Bytes::from(sub),
                assignment: Bytes::from(asg),
            })
    }

    proptest! {
        #[test]
        fn group_metadata_round_trips(
            protocol_type in "[a-z]{0,8}",
            generation in any::<i32>(),
            protocol in proptest::option::of("[a-z-]{1,20}"),
            leader in proptest::option::of("[a-z0-9-]{1,20}"),
            ts in any::<i64>(),
            members in proptest::collection::vec(member(), 0..5),
        ) {
            let v = GroupMetadataValue {
                protocol_type, generation, protocol, leader, current_state_timestamp: ts, members,
            };
            prop_assert_eq!(GroupMetadataValue::decode(&v.encode()).unwrap(), v);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RecordKey::decode(&bytes);
            let _ = OffsetCommitValue::decode(&bytes);
            let _ = GroupMetadataValue::decode(&bytes);
        }
    }
}
