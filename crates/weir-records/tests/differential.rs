//! Differential test against the `kafka-protocol` crate (uncompressed batches; its codecs are
//! off): batches we build it decodes to the same records and re-encodes to the same bytes, and
//! batches it encodes we decode to the same records.
//!
//! Both encoders are fed what they agree on: unique UTF-8 header keys (it keeps headers in a
//! map), non-decreasing timestamps (it takes the minimum as the base timestamp, we take the first
//! record's, as the Java client does) and CreateTime (it does not write the timestamp type bit).
#![cfg(all(
    feature = "gzip",
    feature = "snappy",
    feature = "lz4",
    feature = "zstd"
))]
#![expect(
    clippy::unwrap_used,
    reason = "fixture helpers outside #[test] fail loudly"
)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as TheirCompression, Record as TheirRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as TheirTimestampType,
};
use proptest::prelude::*;
use weir_records::{Header, Record, RecordBatch, RecordBatchBuilder, RecordBatches};

/// Timestamp step from the previous record, key, value and header values.
type InputRecord = (u32, Option<Vec<u8>>, Option<Vec<u8>>, Vec<Option<Vec<u8>>>);

#[derive(Debug, Clone)]
struct Input {
    base_offset: i64,
    first_timestamp: i64,
    /// (producer id, epoch, base sequence), or a plain producer.
    producer: Option<(i64, i16, i32)>,
    transactional: bool,
    records: Vec<InputRecord>,
}

fn arb_input() -> impl Strategy<Value = Input> {
    let record = (
        0u32..10_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..48)),
        proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            0..4,
        ),
    );
    (
        0i64..1 << 48,
        -1i64..1 << 42,
        proptest::option::of((0i64..1 << 40, 0i16..100, 0i32..1 << 30)),
        any::<bool>(),
        proptest::collection::vec(record, 1..12),
    )
        .prop_map(
            |(base_offset, first_timestamp, producer, transactional, records)| Input {
                base_offset,
                first_timestamp,
                producer,
                transactional: transactional && producer.is_some(),
                records,
            },
        )
}

/// Timestamps of the input: non-decreasing from the first.
fn timestamps(input: &Input) -> Vec<i64> {
    let mut t = input.first_timestamp;
    input
        .records
        .iter()
        .map(|(step, ..)| {
            t += i64::from(*step);
            t
        })
        .collect()
}

fn header_key(i: usize) -> String {
    format!("header-{i}")
}

fn ours(input: &Input) -> Vec<Record> {
    input
        .records
        .iter()
        .zip(timestamps(input))
        .map(|((_, key, value, headers), ts)| {
            let mut record = Record::new(ts, key.as_deref(), value.as_deref());
            for (i, value) in headers.iter().enumerate() {
                record =
                    record.with_header(Header::new(header_key(i).as_bytes(), value.as_deref()));
            }
            record
        })
        .collect()
}

fn theirs(input: &Input) -> Vec<TheirRecord> {
    let (producer_id, producer_epoch, base_sequence) = input.producer.unwrap_or((-1, -1, -1));
    input
        .records
        .iter()
        .zip(timestamps(input))
        .enumerate()
        .map(|(i, ((_, key, value, headers), timestamp))| TheirRecord {
            transactional: input.transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TheirTimestampType::Creation,
            offset: input.base_offset + i as i64,
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp,
            key: key.clone().map(Bytes::from),
            value: value.clone().map(Bytes::from),
            headers: headers
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    (
                        StrBytes::from_string(header_key(i)),
                        v.clone().map(Bytes::from),
                    )
                })
                .collect::<IndexMap<_, _>>(),
        })
        .collect()
}

fn build_ours(input: &Input) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    builder
        .base_offset(input.base_offset)
        .transactional(input.transactional);
    if let Some((id, epoch, sequence)) = input.producer {
        builder.producer(id, epoch, sequence);
    }
    for record in ours(input) {
        builder.push(record);
    }
    builder.build().unwrap()
}

fn encode_theirs(records: &[TheirRecord]) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: TheirCompression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).unwrap();
    buf.freeze()
}

/// Our decoded records, with the batch-level fields kafka-protocol puts on each record.
fn assert_same(
    batch: &RecordBatch,
    ours: &[Record],
    theirs: &[TheirRecord],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(ours.len(), theirs.len());
    let header = batch.header();
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        prop_assert_eq!(o.offset, t.offset);
        prop_assert_eq!(o.timestamp, t.timestamp);
        prop_assert_eq!(&o.key, &t.key);
        prop_assert_eq!(&o.value, &t.value);
        let their_headers: Vec<(Bytes, Option<Bytes>)> = t
            .headers
            .iter()
            .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v.clone()))
            .collect();
        let our_headers: Vec<(Bytes, Option<Bytes>)> = o
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        prop_assert_eq!(our_headers, their_headers);
        prop_assert_eq!(header.producer_id, t.producer_id);
        prop_assert_eq!(header.producer_epoch, t.producer_epoch);
        prop_assert_eq!(header.base_sequence.wrapping_add(i as i32), t.sequence);
        prop_assert_eq!(header.partition_leader_epoch, t.partition_leader_epoch);
        prop_assert_eq!(batch.attributes().is_transactional(), t.transactional);
        prop_assert_eq!(batch.attributes().is_control(), t.control);
    }
    Ok(())
}

fn decode_ours(bytes: Bytes) -> (RecordBatch, Vec<Record>) {
    let mut batches: Vec<RecordBatch> =
        RecordBatches::new(bytes).collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 1);
    let batch = batches.remove(0);
    batch.verify_crc().unwrap();
    let records = batch.records().unwrap().collect::<Result<_, _>>().unwrap();
    (batch, records)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn they_decode_what_we_build_and_reencode_the_same_bytes(input in arb_input()) {
        let ours_bytes = build_ours(&input);
        let mut buf = ours_bytes.clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        prop_assert!(buf.is_empty());
        let (batch, decoded) = decode_ours(ours_bytes.clone());
        assert_same(&batch, &decoded, &set.records)?;
        prop_assert_eq!(encode_theirs(&set.records), ours_bytes);
    }

    #[test]
    fn we_decode_what_they_encode(input in arb_input()) {
        let records = theirs(&input);
        let their_bytes = encode_theirs(&records);
        let (batch, decoded) = decode_ours(their_bytes.clone());
        assert_same(&batch, &decoded, &records)?;
        // And our builder, fed the same records, writes the same bytes.
        prop_assert_eq!(build_ours(&input), their_bytes);
    }
}
