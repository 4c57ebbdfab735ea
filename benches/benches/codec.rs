//! Codec throughput: decoding and encoding a Produce request and a Fetch response that each
//! carry 1 MiB of record batches. Baseline: copying the same frame once into a reused buffer
//! (`memcpy`). A zero-copy decoder should beat it by far because it never touches the record
//! bytes; an encoder has to copy them once, so about 1.0 is its ceiling.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use weir_benches::{report, seconds_per_iter};
use weir_protocol::Message;
use weir_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_protocol::messages::{FetchResponse, ProduceRequest};
use weir_records::{Record, RecordBatchBuilder};

const PARTITIONS: i32 = 16;
const BATCH_BYTES: usize = 16 * 1024;
const BATCHES_PER_PARTITION: usize = 4;

/// 16 partitions × 4 batches × 16 KiB = 1 MiB of 1 KiB records.
fn partition_records() -> Bytes {
    let mut all = BytesMut::new();
    for b in 0..BATCHES_PER_PARTITION {
        let mut builder = RecordBatchBuilder::new();
        builder.base_offset((b * 16) as i64);
        let value = vec![b'x'; 1000];
        while builder.len() * 1024 < BATCH_BYTES - 1024 {
            builder.push(Record::new(1_700_000_000_000, Some(b"key"), Some(&value)));
        }
        all.extend_from_slice(&builder.build().unwrap_or_default());
    }
    all.freeze()
}

fn produce_request(records: &Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "bench".into(),
            partition_data: (0..PARTITIONS)
                .map(|index| PartitionProduceData {
                    index,
                    records: Some(records.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn fetch_response(records: &Bytes) -> FetchResponse {
    FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "bench".into(),
            partitions: (0..PARTITIONS)
                .map(|partition_index| PartitionData {
                    partition_index,
                    high_watermark: 1_000,
                    records: Some(records.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn bench_message<M: Message>(c: &mut Criterion, name: &str, message: &M, version: i16) {
    let mut encoded = BytesMut::new();
    message.encode(&mut encoded, version).unwrap_or_default();
    let encoded = encoded.freeze();
    let size = encoded.len();

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("decode", |b| {
        b.iter(|| M::decode_exact(black_box(encoded.clone()), version))
    });
    group.bench_function("encode", |b| {
        let mut buf = BytesMut::with_capacity(size);
        b.iter(|| {
            buf.clear();
            black_box(message).encode(&mut buf, version)
        })
    });
    group.bench_function("memcpy-baseline", |b| {
        let mut buf = BytesMut::with_capacity(size);
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(&encoded));
        })
    });
    group.finish();

    let budget = Duration::from_millis(500);
    let mut copy = BytesMut::with_capacity(size);
    let memcpy = seconds_per_iter(budget, || {
        copy.clear();
        copy.extend_from_slice(black_box(&encoded));
        black_box(&copy);
    });
    let decode = seconds_per_iter(budget, || {
        let _ = black_box(M::decode_exact(black_box(encoded.clone()), version));
    });
    let mut buf = BytesMut::with_capacity(size);
    let encode = seconds_per_iter(budget, || {
        buf.clear();
        let _ = black_box(message).encode(&mut buf, version);
    });
    report(name, "decode", size, decode, memcpy);
    report(name, "encode", size, encode, memcpy);
}

fn codec(c: &mut Criterion) {
    let records = partition_records();
    bench_message(c, "produce-v9", &produce_request(&records), 9);
    bench_message(c, "fetch-response-v12", &fetch_response(&records), 12);
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    codec(&mut criterion);
    criterion.final_summary();
}
