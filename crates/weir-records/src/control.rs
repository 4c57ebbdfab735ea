//! Control records: the records of a control batch, which brokers and transaction coordinators
//! write and consumers never see as data.
//!
//! The key is a version (int16, 0) and a type (int16). For transaction markers (types abort and
//! commit) the value is an [`EndTransactionMarker`]: version (int16, 0) and the coordinator
//! epoch (int32). Both parts are read leniently for forward compatibility, as Kafka does: a
//! newer version is accepted and bytes after the known fields are ignored.

use crate::batch::NO_SEQUENCE;
use crate::builder::RecordBatchBuilder;
use crate::record::Record;
use crate::{Error, Result};
use bytes::Bytes;

/// The control record version this crate writes.
pub const CONTROL_RECORD_VERSION: i16 = 0;
/// The end transaction marker version this crate writes.
pub const END_TXN_MARKER_VERSION: i16 = 0;

/// The type in a control record's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ControlRecordType {
    /// Ends a transaction whose records consumers must skip.
    Abort,
    /// Ends a transaction whose records consumers may read.
    Commit,
    /// A type this crate does not interpret (KRaft leader change, snapshot markers, ...).
    Unknown(i16),
}

impl ControlRecordType {
    /// The id stored in the key.
    pub fn id(self) -> i16 {
        match self {
            Self::Abort => 0,
            Self::Commit => 1,
            Self::Unknown(id) => id,
        }
    }

    /// The type for a stored id.
    pub fn from_id(id: i16) -> Self {
        match id {
            0 => Self::Abort,
            1 => Self::Commit,
            other => Self::Unknown(other),
        }
    }
}

/// The key of a control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlRecord {
    /// Key version.
    pub version: i16,
    /// What the record controls.
    pub record_type: ControlRecordType,
}

impl ControlRecord {
    /// Parses a control record key.
    pub fn parse_key(key: &[u8]) -> Result<Self> {
        let (version, rest) = key
            .split_first_chunk::<2>()
            .ok_or(Error::CorruptControlRecord("key shorter than 4 bytes"))?;
        let (record_type, _) = rest
            .split_first_chunk::<2>()
            .ok_or(Error::CorruptControlRecord("key shorter than 4 bytes"))?;
        let version = i16::from_be_bytes(*version);
        if version < 0 {
            return Err(Error::CorruptControlRecord("negative key version"));
        }
        Ok(Self {
            version,
            record_type: ControlRecordType::from_id(i16::from_be_bytes(*record_type)),
        })
    }

    /// Parses the key of `record`, which must come from a control batch.
    pub fn from_record(record: &Record) -> Result<Self> {
        Self::parse_key(
            record
                .key
                .as_deref()
                .ok_or(Error::CorruptControlRecord("null key"))?,
        )
    }

    /// Encodes the key.
    pub fn to_key(self) -> Bytes {
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&self.version.to_be_bytes());
        key.extend_from_slice(&self.record_type.id().to_be_bytes());
        Bytes::from(key)
    }
}

/// A transaction marker: the control record that commits or aborts a producer's transaction on
/// one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndTransactionMarker {
    /// Commit or abort.
    pub commit: bool,
    /// Epoch of the transaction coordinator that wrote the marker, so a stale coordinator's
    /// markers can be fenced.
    pub coordinator_epoch: i32,
}

impl EndTransactionMarker {
    /// A commit marker.
    pub fn commit(coordinator_epoch: i32) -> Self {
        Self {
            commit: true,
            coordinator_epoch,
        }
    }

    /// An abort marker.
    pub fn abort(coordinator_epoch: i32) -> Self {
        Self {
            commit: false,
            coordinator_epoch,
        }
    }

    /// The control record type of this marker.
    pub fn record_type(self) -> ControlRecordType {
        if self.commit {
            ControlRecordType::Commit
        } else {
            ControlRecordType::Abort
        }
    }

    /// Parses a control record as a marker; `Ok(None)` if it is another kind of control record.
    pub fn from_record(record: &Record) -> Result<Option<Self>> {
        let commit = match ControlRecord::from_record(record)?.record_type {
            ControlRecordType::Commit => true,
            ControlRecordType::Abort => false,
            ControlRecordType::Unknown(_) => return Ok(None),
        };
        let value = record
            .value
            .as_deref()
            .ok_or(Error::CorruptControlRecord("marker with a null value"))?;
        let (version, rest) = value
            .split_first_chunk::<2>()
            .ok_or(Error::CorruptControlRecord(
                "marker value shorter than 6 bytes",
            ))?;
        if i16::from_be_bytes(*version) < 0 {
            return Err(Error::CorruptControlRecord("negative marker version"));
        }
        let (epoch, _) = rest
            .split_first_chunk::<4>()
            .ok_or(Error::CorruptControlRecord(
                "marker value shorter than 6 bytes",
            ))?;
        Ok(Some(Self {
            commit,
            coordinator_epoch: i32::from_be_bytes(*epoch),
        }))
    }

    /// The marker as a record (offset assigned by the batch).
    pub fn to_record(self, timestamp: i64) -> Record {
        let key = ControlRecord {
            version: CONTROL_RECORD_VERSION,
            record_type: self.record_type(),
        }
        .to_key();
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&END_TXN_MARKER_VERSION.to_be_bytes());
        value.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        Record {
            timestamp,
            key: Some(key),
            value: Some(Bytes::from(value)),
            ..Record::default()
        }
    }

    /// A builder holding a control batch with this marker for the producer's transaction: the
    /// transactional and control attributes set, no sequence (markers are not sequenced).
    pub fn batch_builder(
        self,
        producer_id: i64,
        producer_epoch: i16,
        timestamp: i64,
    ) -> RecordBatchBuilder {
        let mut builder = RecordBatchBuilder::new();
        builder
            .producer(producer_id, producer_epoch, NO_SEQUENCE)
            .transactional(true)
            .control(true)
            .push(self.to_record(timestamp));
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordBatch;

    #[test]
    fn marker_batch_round_trip() {
        for marker in [
            EndTransactionMarker::commit(7),
            EndTransactionMarker::abort(-1),
        ] {
            let bytes = marker
                .batch_builder(4_000, 3, 1_234)
                .base_offset(50)
                .build()
                .unwrap();
            let batch = RecordBatch::new(bytes).unwrap();
            batch.verify_crc().unwrap();
            assert!(batch.attributes().is_control());
            assert!(batch.attributes().is_transactional());
            assert_eq!(batch.header().producer_id, 4_000);
            assert_eq!(batch.header().producer_epoch, 3);
            assert_eq!(batch.header().base_sequence, NO_SEQUENCE);
            let records: Vec<Record> = batch.records().unwrap().collect::<Result<_>>().unwrap();
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].offset, 50);
            assert_eq!(
                EndTransactionMarker::from_record(&records[0]).unwrap(),
                Some(marker)
            );
            assert_eq!(
                ControlRecord::from_record(&records[0]).unwrap(),
                ControlRecord {
                    version: 0,
                    record_type: marker.record_type()
                }
            );
        }
    }

    #[test]
    fn known_bytes() {
        let record = EndTransactionMarker::commit(0x0102_0304).to_record(0);
        assert_eq!(record.key.as_deref(), Some(&[0, 0, 0, 1][..]));
        assert_eq!(record.value.as_deref(), Some(&[0, 0, 1, 2, 3, 4][..]));
    }

    #[test]
    fn newer_versions_and_trailing_bytes_are_read() {
        let record = Record::new(0, Some(&[0, 1, 0, 0, 9]), Some(&[0, 3, 0, 0, 0, 5, 0xff]));
        assert_eq!(
            EndTransactionMarker::from_record(&record).unwrap(),
            Some(EndTransactionMarker::abort(5))
        );
    }

    #[test]
    fn other_control_types_and_malformed_keys() {
        let leader_change = Record::new(0, Some(&[0, 0, 0, 2]), Some(b"..."));
        assert_eq!(
            EndTransactionMarker::from_record(&leader_change).unwrap(),
            None
        );
        assert_eq!(
            ControlRecord::from_record(&leader_change)
                .unwrap()
                .record_type,
            ControlRecordType::Unknown(2)
        );
        for key in [None, Some(&[0u8, 0, 0][..]), Some(&[0xff, 0xff, 0, 0][..])] {
            let record = Record::new(0, key, Some(&[0, 0, 0, 0, 0, 0]));
            assert!(matches!(
                EndTransactionMarker::from_record(&record),
                Err(Error::CorruptControlRecord(_))
            ));
        }
        let short_value = Record::new(0, Some(&[0, 0, 0, 1]), Some(&[0, 0, 0]));
        assert!(EndTransactionMarker::from_record(&short_value).is_err());
    }
}
