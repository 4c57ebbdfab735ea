//! A partition's time in its offset commit's metadata, in Kafka Streams' format, so that a
//! task restarted here or in a Kafka Streams application resumes the stream time of the one
//! that committed.
//!
//! The metadata is base64 (standard alphabet, padded) of a version byte and the partition
//! time as an 8-byte big-endian integer. Version 1 ends there; version 2 may follow it with
//! processor metadata (a 4-byte count of entries, each a 4-byte key length, the UTF-8 key and
//! an 8-byte value: Kafka's windowed aggregations keep their last emitted window end there).
//! This runtime writes version 2 without processor metadata, which is what Kafka Streams
//! writes when its processors have none, and reads versions 1 and 2, skipping the processor
//! metadata it has no use for.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The version written: the latest Kafka Streams reads.
const VERSION: u8 = 2;

/// The commit metadata carrying `partition_time`.
pub(crate) fn encode(partition_time: i64) -> String {
    let mut bytes = [0u8; 9];
    bytes[0] = VERSION;
    bytes[1..].copy_from_slice(&partition_time.to_be_bytes());
    STANDARD.encode(bytes)
}

/// The partition time in commit metadata; `None` for metadata not in this format (another
/// application's, a future version's, garbage) and for an unknown time (Kafka writes `-1`).
pub(crate) fn decode(metadata: &str) -> Option<i64> {
    let bytes = STANDARD.decode(metadata).ok()?;
    let (&version, rest) = bytes.split_first()?;
    if !matches!(version, 1 | 2) {
        return None;
    }
    let time = i64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    (time >= 0).then_some(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for time in [0, 1, 1_700_000_000_000, i64::MAX] {
            assert_eq!(decode(&encode(time)), Some(time), "{time}");
        }
    }

    #[test]
    fn reads_what_kafka_streams_writes() {
        // Version 2, partition time 1000, no processor metadata: 02 00..00 03 e8.
        assert_eq!(encode(1000), "AgAAAAAAAAPo");
        assert_eq!(decode("AgAAAAAAAAPo"), Some(1000));
        // Committed by Apache Kafka Streams 4.4.0 for an input whose latest record had
        // timestamp 1,000,000,040,000 (`benches/scripts/streams.py compare`, windowed-count):
        // weir-streams commits the same string.
        assert_eq!(decode("AgAAAOjUpaxA"), Some(1_000_000_040_000));
        assert_eq!(encode(1_000_000_040_000), "AgAAAOjUpaxA");
        // Version 1 (Kafka Streams 2.x), same time.
        assert_eq!(decode("AQAAAAAAAAPo"), Some(1000));
        // Version 2 with processor metadata {"a": 7}: the time is read, the rest skipped.
        let mut bytes = vec![2, 0, 0, 0, 0, 0, 0, 3, 0xe8];
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.push(b'a');
        bytes.extend_from_slice(&7i64.to_be_bytes());
        assert_eq!(decode(&STANDARD.encode(bytes)), Some(1000));
        // Kafka's unknown partition time.
        assert_eq!(decode(&encode(-1)), None);
    }

    #[test]
    fn garbage_is_none() {
        for metadata in [
            "",
            "not base64!",
            "AQ==",         // version 1, no time
            "AwAAAAAAAAPo", // version 3
            "AgAAAAAAAAA=", // version 2, a time cut short
            "{\"app\":\"x\"}",
        ] {
            assert_eq!(decode(metadata), None, "{metadata}");
        }
    }
}
