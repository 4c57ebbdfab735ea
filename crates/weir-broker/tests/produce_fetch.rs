//! The data path against an in-process broker: Produce, Fetch (long poll, limits, errors),
//! ListOffsets, DeleteRecords, InitProducerId and idempotent produce across restarts.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions fail the test on any error"
)]

#[expect(
    unreachable_pub,
    reason = "support items are pub for every test binary that includes the module"
)]
mod support;

use bytes::{Bytes, BytesMut};
use std::time::{Duration, Instant};
use support::{RawClient, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_protocol::header::{decode_response, encode_request};
use weir_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use weir_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir_protocol::messages::fetch_response::PartitionData;
use weir_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use weir_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_protocol::messages::produce_response::PartitionProduceResponse;
use weir_protocol::messages::{
    ApiVersionsRequest, DeleteRecordsRequest, FetchRequest, InitProducerIdRequest,
    ListOffsetsRequest, ProduceRequest, RequestBody, RequestHeader,
};
use weir_protocol::{ErrorCode, Uuid};
use weir_records::{Compression, Header, Record, RecordBatchBuilder, RecordBatches};

fn batch(records: &[(Option<&str>, &str, i64)], compression: Compression) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    builder.compression(compression);
    for (key, value, timestamp) in records {
        builder.push(
            Record::new(*timestamp, key.map(str::as_bytes), Some(value.as_bytes()))
                .with_header(Header::new(b"h", Some(value.as_bytes()))),
        );
    }
    builder.build().unwrap()
}

fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    builder.producer(producer_id, epoch, sequence);
    for value in values {
        builder.push(Record::new(now_ms(), None, Some(value.as_bytes())));
    }
    builder.build().unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest {
        acks,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn produce(client: &mut RawClient, topic: &str, records: Bytes) -> PartitionProduceResponse {
    let response = client.send(produce_request(topic, 0, records, -1), 9).await;
    response.responses[0].partition_responses[0].clone()
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 50 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn fetch(client: &mut RawClient, topic: &str, offset: i64) -> PartitionData {
    let response = client.send(fetch_request(topic, offset, 0), 12).await;
    assert_eq!(response.error_code, 0);
    response.responses[0].partitions[0].clone()
}

/// A fetched record: (offset, key, value, timestamp, header values).
type Row = (i64, Option<Bytes>, Bytes, i64, Vec<Bytes>);

/// Every record in a fetch response.
fn records(data: &PartitionData) -> Vec<Row> {
    let mut out = Vec::new();
    for batch in RecordBatches::new(data.records.clone().unwrap_or_default()) {
        let batch = batch.unwrap();
        batch.verify_crc().unwrap();
        for record in batch.records().unwrap() {
            let r = record.unwrap();
            out.push((
                r.offset,
                r.key,
                r.value.unwrap(),
                r.timestamp,
                r.headers.into_iter().filter_map(|h| h.value).collect(),
            ));
        }
    }
    out
}

async fn list_offset(
    client: &mut RawClient,
    topic: &str,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let response = client
        .send(
            ListOffsetsRequest {
                replica_id: -1,
                topics: vec![ListOffsetsTopic {
                    name: topic.into(),
                    partitions: vec![ListOffsetsPartition {
                        partition_index: 0,
                        current_leader_epoch: -1,
                        timestamp,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
            7,
        )
        .await;
    response.topics[0].partitions[0].clone()
}

#[tokio::test]
async fn produce_then_fetch_round_trips_every_codec() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let topic_id = support::auto_create_topic(&mut client, "events").await;
    let t0 = now_ms();
    let mut expected = Vec::new();
    for (i, compression) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let base = i as i64 * 2;
        let key = format!("key-{i}");
        let (v1, v2) = (format!("value-{i}-a"), format!("value-{i}-b"));
        let records = batch(
            &[(Some(&key), &v1, t0 + base), (None, &v2, t0 + base + 1)],
            compression,
        );
        let response = produce(&mut client, "events", records).await;
        assert_eq!(response.error_code, 0, "{compression:?}");
        assert_eq!(response.base_offset, base);
        assert_eq!(response.log_append_time_ms, -1);
        assert_eq!(response.log_start_offset, 0);
        expected.push((
            base,
            Some(Bytes::from(key)),
            Bytes::from(v1.clone()),
            t0 + base,
            vec![Bytes::from(v1)],
        ));
        expected.push((
            base + 1,
            None,
            Bytes::from(v2.clone()),
            t0 + base + 1,
            vec![Bytes::from(v2)],
        ));
    }

    // By name (v12) and by topic id (v13+), which the response echoes.
    let data = fetch(&mut client, "events", 0).await;
    assert_eq!(data.high_watermark, 10);
    assert_eq!(data.last_stable_offset, 10);
    assert_eq!(data.log_start_offset, 0);
    assert_eq!(records(&data), expected);
    let mut by_id = fetch_request("", 4, 0);
    by_id.topics[0].topic_id = topic_id;
    let response = client.send(by_id, 16).await;
    assert_eq!(response.responses[0].topic_id, topic_id);
    let tail = records(&response.responses[0].partitions[0]);
    assert_eq!(tail.first().map(|r| r.0), Some(4));
    assert_eq!(tail.len(), 6);
    // The oldest version the broker serves.
    let response = client.send(fetch_request("events", 0, 0), 4).await;
    assert_eq!(records(&response.responses[0].partitions[0]), expected);

    // Unknown topic id / name.
    let mut unknown = fetch_request("", 0, 0);
    unknown.topics[0].topic_id = Uuid([7; 16]);
    let response = client.send(unknown, 13).await;
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_ID.code()
    );
    let response = client.send(fetch_request("missing", 0, 0), 12).await;
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    broker.stop().await;
}

#[tokio::test]
async fn fetch_limits_return_whole_batches() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "big").await;
    let value = "x".repeat(10_000);
    for _ in 0..3 {
        let response = produce(
            &mut client,
            "big",
            batch(&[(None, &value, now_ms())], Compression::None),
        )
        .await;
        assert_eq!(response.error_code, 0);
    }
    // Smaller limits than one batch still return the first batch whole (KIP-74).
    let mut request = fetch_request("big", 0, 0);
    request.max_bytes = 100;
    request.topics[0].partitions[0].partition_max_bytes = 100;
    let response = client.send(request, 12).await;
    let got = records(&response.responses[0].partitions[0]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2.len(), 10_000);
    // Two batches' worth.
    let mut request = fetch_request("big", 0, 0);
    request.topics[0].partitions[0].partition_max_bytes = 45_000; // each batch is ~20 kB (value and header)
    let response = client.send(request, 12).await;
    assert_eq!(records(&response.responses[0].partitions[0]).len(), 2);
    broker.stop().await;
}

#[tokio::test]
async fn acks_zero_gets_no_response_and_the_next_request_gets_its_own() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "fire").await;
    let mut stream = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
    let header = RequestHeader {
        request_api_key: 0,
        request_api_version: 9,
        correlation_id: 1000,
        client_id: Some("acks0".into()),
        ..Default::default()
    };
    let mut buf = BytesMut::new();
    let body = RequestBody::from(produce_request(
        "fire",
        0,
        batch(&[(None, "no answer", now_ms())], Compression::None),
        0,
    ));
    encode_request(&mut buf, &header, &body).unwrap();
    stream.write_all(&buf).await.unwrap();
    // The same connection: the next response back is the next request's.
    let header = RequestHeader {
        request_api_key: 18,
        request_api_version: 3,
        correlation_id: 1001,
        ..header
    };
    let mut buf = BytesMut::new();
    encode_request(
        &mut buf,
        &header,
        &RequestBody::from(ApiVersionsRequest::default()),
    )
    .unwrap();
    stream.write_all(&buf).await.unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.unwrap();
    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).await.unwrap();
    let (response_header, _) =
        decode_response(frame.into(), weir_protocol::ApiKey::ApiVersions, 3).unwrap();
    assert_eq!(response_header.correlation_id, 1001);
    // The record becomes readable once the high watermark passes it (after its fsync, with
    // durable acknowledgement), which acks=0 does not wait for.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut data = fetch(&mut client, "fire", 0).await;
    while records(&data).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        data = fetch(&mut client, "fire", 0).await;
    }
    assert_eq!(records(&data).len(), 1);

    // A failed acks=0 produce (unknown topic) closes the connection, as Kafka does, since
    // there is no response to carry the error.
    let mut raw = broker.client().await;
    let header = RequestHeader {
        request_api_key: 0,
        request_api_version: 9,
        correlation_id: 1002,
        ..header
    };
    let mut buf = BytesMut::new();
    let body = RequestBody::from(produce_request(
        "no-such-topic",
        0,
        batch(&[(None, "lost", now_ms())], Compression::None),
        0,
    ));
    encode_request(&mut buf, &header, &body).unwrap();
    raw.write_raw(&buf).await.unwrap();
    assert!(raw.is_closed().await);
    // A successful acks=0 produce keeps the connection open.
    let mut raw = broker.client().await;
    let mut buf = BytesMut::new();
    let body = RequestBody::from(produce_request(
        "fire",
        0,
        batch(&[(None, "kept", now_ms())], Compression::None),
        0,
    ));
    encode_request(&mut buf, &header, &body).unwrap();
    raw.write_raw(&buf).await.unwrap();
    assert!(!raw.is_closed().await);
    broker.stop().await;
}

#[tokio::test]
async fn long_poll_wakes_on_produce_and_times_out_empty() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "poll").await;

    // Nothing arrives: an empty answer after max_wait.
    let response = client.send(fetch_request("poll", 0, 200), 12).await;
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert_eq!(data.records.as_ref().map(Bytes::len), Some(0));

    // A produce lands while the fetch waits (max_wait 20 s): it returns long before that.
    let mut waiter = broker.client().await;
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        let response = waiter.send(fetch_request("poll", 0, 20_000), 12).await;
        (response, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = produce(
        &mut client,
        "poll",
        batch(&[(None, "wake", now_ms())], Compression::None),
    )
    .await;
    assert_eq!(response.error_code, 0);
    let (response, elapsed) = waiting.await.unwrap();
    assert!(elapsed < Duration::from_secs(10), "woke after {elapsed:?}");
    assert_eq!(
        records(&response.responses[0].partitions[0])[0].2,
        Bytes::from("wake")
    );
    broker.stop().await;
}

#[tokio::test]
async fn produce_and_fetch_errors() {
    let broker = TestBroker::start(&[("message.max.bytes", "2000")]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "errs").await;
    let ok = produce(
        &mut client,
        "errs",
        batch(&[(None, "a", now_ms())], Compression::None),
    )
    .await;
    assert_eq!(ok.error_code, 0);

    // OFFSET_OUT_OF_RANGE, with the offsets the client needs to reset.
    let data = fetch(&mut client, "errs", 5).await;
    assert_eq!(data.error_code, ErrorCode::OFFSET_OUT_OF_RANGE.code());
    assert_eq!(data.high_watermark, 1);
    assert_eq!(data.log_start_offset, 0);

    // MESSAGE_TOO_LARGE.
    let big = "x".repeat(5000);
    let response = produce(
        &mut client,
        "errs",
        batch(&[(None, &big, now_ms())], Compression::None),
    )
    .await;
    assert_eq!(response.error_code, ErrorCode::MESSAGE_TOO_LARGE.code());
    assert_eq!(response.base_offset, -1);

    // CORRUPT_MESSAGE: one flipped byte in a record fails the CRC.
    let mut corrupt = batch(&[(None, "flip me", now_ms())], Compression::None).to_vec();
    let last = corrupt.len() - 3;
    corrupt[last] ^= 0xff;
    let response = produce(&mut client, "errs", corrupt.into()).await;
    assert_eq!(response.error_code, ErrorCode::CORRUPT_MESSAGE.code());
    assert!(response.error_message.is_some());

    // INVALID_RECORD: two batches for one partition.
    let mut two = batch(&[(None, "1", now_ms())], Compression::None).to_vec();
    two.extend_from_slice(&batch(&[(None, "2", now_ms())], Compression::None));
    let response = produce(&mut client, "errs", two.into()).await;
    assert_eq!(response.error_code, ErrorCode::INVALID_RECORD.code());

    // INVALID_TIMESTAMP, naming the record (v8+).
    let future = now_ms() + 24 * 3_600_000;
    let response = produce(
        &mut client,
        "errs",
        batch(
            &[(None, "now", now_ms()), (None, "later", future)],
            Compression::None,
        ),
    )
    .await;
    assert_eq!(response.error_code, ErrorCode::INVALID_TIMESTAMP.code());
    assert_eq!(response.record_errors.len(), 1);
    assert_eq!(response.record_errors[0].batch_index, 1);

    // UNKNOWN_TOPIC_OR_PARTITION: Produce does not create topics.
    let response = produce(
        &mut client,
        "nope",
        batch(&[(None, "a", now_ms())], Compression::None),
    )
    .await;
    assert_eq!(
        response.error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );

    // INVALID_REQUIRED_ACKS.
    let response = client
        .send(
            produce_request(
                "errs",
                0,
                batch(&[(None, "a", now_ms())], Compression::None),
                2,
            ),
            9,
        )
        .await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ErrorCode::INVALID_REQUIRED_ACKS.code()
    );

    // Nothing but the first record was appended.
    assert_eq!(fetch(&mut client, "errs", 0).await.high_watermark, 1);
    broker.stop().await;
}

#[tokio::test]
async fn incremental_fetch_for_unknown_session_is_refused() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "s").await;
    let mut request = fetch_request("s", 0, 0);
    request.session_id = 1234;
    request.session_epoch = 1;
    let response = client.send(request, 12).await;
    assert_eq!(
        response.error_code,
        ErrorCode::FETCH_SESSION_ID_NOT_FOUND.code()
    );
    // A full fetch asking to create a session gets none (session id 0) and all partitions.
    let mut request = fetch_request("s", 0, 0);
    request.session_epoch = 0;
    let response = client.send(request, 12).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.session_id, 0);
    assert_eq!(response.responses[0].partitions.len(), 1);
    broker.stop().await;
}

#[tokio::test]
async fn idempotent_produce_deduplicates_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "idem").await;
    let init = client.send(InitProducerIdRequest::default(), 4).await;
    assert_eq!(init.error_code, 0);
    assert_eq!(init.producer_epoch, 0);
    let pid = init.producer_id;
    assert!(pid >= 0);

    let first = idempotent_batch(pid, 0, 0, &["a", "b", "c"]);
    assert_eq!(
        produce(&mut client, "idem", first.clone())
            .await
            .base_offset,
        0
    );
    // A retry gets the original offsets and is not appended again.
    let retry = produce(&mut client, "idem", first.clone()).await;
    assert_eq!((retry.error_code, retry.base_offset), (0, 0));
    let second = idempotent_batch(pid, 0, 3, &["d"]);
    assert_eq!(
        produce(&mut client, "idem", second.clone())
            .await
            .base_offset,
        3
    );
    // A gap in the sequence.
    let gap = produce(&mut client, "idem", idempotent_batch(pid, 0, 10, &["x"])).await;
    assert_eq!(
        gap.error_code,
        ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code()
    );
    assert_eq!(fetch(&mut client, "idem", 0).await.high_watermark, 4);
    broker.stop().await;

    // After a clean restart (state from the snapshot) ...
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    let retry = produce(&mut client, "idem", second.clone()).await;
    assert_eq!((retry.error_code, retry.base_offset), (0, 3));
    let third = idempotent_batch(pid, 0, 4, &["e"]);
    assert_eq!(
        produce(&mut client, "idem", third.clone())
            .await
            .base_offset,
        4
    );
    // A new producer id never repeats one handed out before the restart.
    let again = client.send(InitProducerIdRequest::default(), 4).await;
    assert!(again.producer_id > pid);
    // A bumped epoch starts again at sequence 0; the old epoch is then fenced.
    let bumped = produce(&mut client, "idem", idempotent_batch(pid, 1, 0, &["f"])).await;
    assert_eq!((bumped.error_code, bumped.base_offset), (0, 5));
    let fenced = produce(&mut client, "idem", idempotent_batch(pid, 0, 5, &["g"])).await;
    assert_eq!(fenced.error_code, ErrorCode::INVALID_PRODUCER_EPOCH.code());
    broker.stop().await;

    // ... and without the snapshot (state rebuilt by scanning the log).
    let snapshot = dir.path().join("idem-0").join("producer-state.json");
    assert!(snapshot.exists());
    std::fs::remove_file(&snapshot).unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    let retry = produce(&mut client, "idem", idempotent_batch(pid, 1, 0, &["f"])).await;
    assert_eq!((retry.error_code, retry.base_offset), (0, 5));
    let fenced = produce(&mut client, "idem", idempotent_batch(pid, 0, 5, &["g"])).await;
    assert_eq!(fenced.error_code, ErrorCode::INVALID_PRODUCER_EPOCH.code());
    let data = fetch(&mut client, "idem", 0).await;
    let values: Vec<Bytes> = records(&data).into_iter().map(|r| r.2).collect();
    assert_eq!(
        values,
        ["a", "b", "c", "d", "e", "f"].map(Bytes::from).to_vec()
    );
    broker.stop().await;
}

/// A batch of `values` from an idempotent producer, every record stamped `timestamp`.
fn idempotent_batch_at(producer_id: i64, sequence: i32, timestamp: i64, values: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    builder.producer(producer_id, 0, sequence);
    for value in values {
        builder.push(Record::new(timestamp, None, Some(value.as_bytes())));
    }
    builder.build().unwrap()
}

/// Issue 15: idle producers were expired in the append path by comparing their batches'
/// record timestamps with now, so a producer replaying records stamped in 2017 was forgotten
/// right after its first batch, and its out-of-order next batch was appended (at offset 3)
/// instead of refused. Producers now expire by the broker's clock of their last append; the
/// same holds after a clean restart (the snapshot keeps that time) and after a crash (the
/// state rebuilt from the log counts as fresh).
#[tokio::test]
async fn old_record_timestamps_do_not_expire_an_idempotent_producer() {
    /// 2017-07-14, far more than `producer.id.expiration.ms` (one day) ago.
    const OLD: i64 = 1_500_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "replay").await;
    let init = client.send(InitProducerIdRequest::default(), 4).await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id;

    let first = idempotent_batch_at(pid, 0, OLD, &["a", "b", "c"]);
    let appended = produce(&mut client, "replay", first.clone()).await;
    assert_eq!((appended.error_code, appended.base_offset), (0, 0));
    let out_of_order = produce(
        &mut client,
        "replay",
        idempotent_batch_at(pid, 1, OLD, &["x"]),
    )
    .await;
    assert_eq!(
        (out_of_order.error_code, out_of_order.base_offset),
        (ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code(), -1)
    );
    // A retry is still recognised, and the next batch in sequence appends.
    let retry = produce(&mut client, "replay", first.clone()).await;
    assert_eq!((retry.error_code, retry.base_offset), (0, 0));
    let next = produce(
        &mut client,
        "replay",
        idempotent_batch_at(pid, 3, OLD, &["d"]),
    )
    .await;
    assert_eq!((next.error_code, next.base_offset), (0, 3));
    broker.stop().await;
    // A graceful stop closes the log cleanly, so the next start recovers nothing and the high
    // watermark is the log end at once (a shared log used to be only flushed).
    assert!(
        dir.path().join("replay-0").join(".clean-shutdown").exists(),
        "no clean-shutdown marker after a graceful stop"
    );

    // After a clean restart (the snapshot) and after losing it (the log is scanned).
    for lose_snapshot in [false, true] {
        if lose_snapshot {
            std::fs::remove_file(dir.path().join("replay-0").join("producer-state.json")).unwrap();
        }
        let broker = TestBroker::start_in(dir.path(), &[]).await;
        let mut client = broker.client().await;
        let gap = produce(
            &mut client,
            "replay",
            idempotent_batch_at(pid, 1, OLD, &["x"]),
        )
        .await;
        assert_eq!(
            gap.error_code,
            ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code(),
            "lose_snapshot: {lose_snapshot}"
        );
        let values: Vec<Bytes> = records(&fetch(&mut client, "replay", 0).await)
            .into_iter()
            .map(|r| r.2)
            .collect();
        assert_eq!(values, ["a", "b", "c", "d"].map(Bytes::from).to_vec());
        broker.stop().await;
    }
}

/// `producer.id.expiration.ms` still forgets idle producers, in the periodic check
/// (`producer.id.expiration.check.interval.ms`): a forgotten producer is accepted again at any
/// sequence, as Kafka accepts an unknown one.
#[tokio::test]
async fn idle_producers_expire_in_the_periodic_check() {
    let broker = TestBroker::start(&[
        ("producer.id.expiration.ms", "300"),
        ("producer.id.expiration.check.interval.ms", "100"),
    ])
    .await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "idle").await;
    let pid = client
        .send(InitProducerIdRequest::default(), 4)
        .await
        .producer_id;
    let first = produce(&mut client, "idle", idempotent_batch(pid, 0, 0, &["a"])).await;
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    let gap = produce(&mut client, "idle", idempotent_batch(pid, 0, 7, &["b"])).await;
    assert_eq!(
        gap.error_code,
        ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code()
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let after = produce(&mut client, "idle", idempotent_batch(pid, 0, 7, &["b"])).await;
    assert_eq!((after.error_code, after.base_offset), (0, 1));
    broker.stop().await;
}

#[tokio::test]
async fn list_offsets_and_delete_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "lo").await;
    let t0 = now_ms() - 60_000;
    for i in 0..4 {
        let r = produce(
            &mut client,
            "lo",
            batch(&[(None, "v", t0 + i * 1000)], Compression::None),
        )
        .await;
        assert_eq!(r.error_code, 0);
    }
    let earliest = list_offset(&mut client, "lo", -2).await;
    assert_eq!((earliest.error_code, earliest.offset), (0, 0));
    let latest = list_offset(&mut client, "lo", -1).await;
    assert_eq!(latest.offset, 4);
    assert_eq!(latest.leader_epoch, 0);
    let by_time = list_offset(&mut client, "lo", t0 + 1500).await;
    assert_eq!((by_time.offset, by_time.timestamp), (2, t0 + 2000));
    let max = list_offset(&mut client, "lo", -3).await;
    assert_eq!((max.offset, max.timestamp), (3, t0 + 3000));
    let none = list_offset(&mut client, "lo", t0 + 10_000).await;
    assert_eq!((none.error_code, none.offset, none.timestamp), (0, -1, -1));

    // DeleteRecords moves the log start offset.
    let delete = |offset| DeleteRecordsRequest {
        topics: vec![DeleteRecordsTopic {
            name: "lo".into(),
            partitions: vec![DeleteRecordsPartition {
                partition_index: 0,
                offset,
                ..Default::default()
            }],
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    let response = client.send(delete(2), 2).await;
    let p = &response.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 2));
    let response = client.send(delete(99), 1).await;
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ErrorCode::OFFSET_OUT_OF_RANGE.code()
    );
    assert_eq!(list_offset(&mut client, "lo", -2).await.offset, 2);
    assert_eq!(
        fetch(&mut client, "lo", 0).await.error_code,
        ErrorCode::OFFSET_OUT_OF_RANGE.code()
    );
    let data = fetch(&mut client, "lo", 2).await;
    assert_eq!(data.log_start_offset, 2);
    assert_eq!(records(&data).first().map(|r| r.0), Some(2));
    broker.stop().await;

    // Data and the log start offset survive a restart.
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    let data = fetch(&mut client, "lo", 2).await;
    assert_eq!(data.log_start_offset, 2);
    assert_eq!(data.high_watermark, 4);
    assert_eq!(records(&data).len(), 2);
    let response = client.send(delete(-1), 0).await;
    assert_eq!(response.topics[0].partitions[0].low_watermark, 4);
    let unknown = list_offset(&mut client, "nope", -1).await;
    assert_eq!(
        unknown.error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    broker.stop().await;
}

#[tokio::test]
async fn every_served_version_round_trips() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let topic_id = support::auto_create_topic(&mut client, "versions").await;
    for version in 3..=13 {
        let mut request = produce_request(
            "versions",
            0,
            batch(
                &[(None, &format!("v{version}"), now_ms())],
                Compression::None,
            ),
            // acks=all: answered once the high watermark passed the batch, so the fetches
            // below see all of them (acks=1 answers before the fsync that commits it).
            -1,
        );
        if version >= 13 {
            request.topic_data[0].name = String::new();
            request.topic_data[0].topic_id = topic_id;
        }
        let response = client.send(request, version).await;
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, i64::from(version) - 3),
            "v{version}"
        );
        if version >= 13 {
            assert_eq!(response.responses[0].topic_id, topic_id);
        }
    }
    for version in 4..=18 {
        let mut request = fetch_request("versions", 0, 0);
        if version >= 13 {
            request.topics[0].topic = String::new();
            request.topics[0].topic_id = topic_id;
        }
        let response = client.send(request, version).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "v{version}");
        assert_eq!(records(data).len(), 11, "v{version}");
    }
    for version in 1..=11 {
        let mut request = ListOffsetsRequest {
            replica_id: -1,
            topics: vec![ListOffsetsTopic {
                name: "versions".into(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: 0,
                    current_leader_epoch: -1,
                    timestamp: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        if version >= 4 {
            // A client that knows the leader epoch.
            request.topics[0].partitions[0].current_leader_epoch = 0;
        }
        let response = client.send(request, version).await;
        let p = &response.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset), (0, 11), "v{version}");
    }
    // A client that saw a newer leader epoch than this node's.
    let mut request = fetch_request("versions", 0, 0);
    request.topics[0].partitions[0].current_leader_epoch = 5;
    let response = client.send(request, 12).await;
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ErrorCode::UNKNOWN_LEADER_EPOCH.code()
    );
    let mut ids = Vec::new();
    for version in 0..=5 {
        let response = client.send(InitProducerIdRequest::default(), version).await;
        assert_eq!(response.error_code, 0);
        ids.push(response.producer_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 6);
    broker.stop().await;
}

#[tokio::test]
async fn log_append_time_is_returned_and_kept_for_duplicates() {
    let broker = TestBroker::start(&[("log.message.timestamp.type", "LogAppendTime")]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "lat").await;
    let before = now_ms();
    let first = idempotent_batch(7, 0, 0, &["a"]);
    let response = produce(&mut client, "lat", first.clone()).await;
    assert_eq!(response.error_code, 0);
    assert!(response.log_append_time_ms >= before);
    let retry = produce(&mut client, "lat", first).await;
    assert_eq!(retry.base_offset, 0);
    assert_eq!(retry.log_append_time_ms, response.log_append_time_ms);
    let data = fetch(&mut client, "lat", 0).await;
    assert_eq!(records(&data)[0].3, response.log_append_time_ms);
    broker.stop().await;
}

/// How long a test waits for background work (the cleaner, retention) before failing.
const BACKGROUND_WORK: Duration = Duration::from_secs(30);

/// Every record from the log start offset to the end, fetched batch by batch.
async fn fetch_all(client: &mut RawClient, topic: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut offset = list_offset(client, topic, -2).await.offset;
    loop {
        let data = fetch(client, topic, offset).await;
        let rows = records(&data);
        let Some(last) = rows.last() else { break };
        offset = last.0 + 1;
        out.extend(rows);
        if offset >= data.high_watermark {
            break;
        }
    }
    out
}

/// The broker runs the log cleaner: a compacted topic keeps the latest record of every key,
/// at its original offset, once its segments are inactive.
#[tokio::test]
async fn the_log_cleaner_compacts_compacted_topics() {
    let broker = TestBroker::start(&[
        ("log.cleanup.policy", "compact"),
        ("log.segment.bytes", "1024"),
        ("log.cleaner.backoff.ms", "50"),
        ("log.cleaner.min.cleanable.ratio", "0.01"),
    ])
    .await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "compacted").await;
    let now = now_ms();
    let mut latest = std::collections::BTreeMap::new();
    for i in 0..60i64 {
        let key = format!("k{}", i % 3);
        let value = format!("v{i}");
        let r = produce(
            &mut client,
            "compacted",
            batch(&[(Some(&key), &value, now)], Compression::None),
        )
        .await;
        assert_eq!(r.error_code, 0);
        latest.insert(key, (r.base_offset, value));
    }
    let deadline = Instant::now() + BACKGROUND_WORK;
    while fetch_all(&mut client, "compacted").await.len() >= 20 {
        assert!(Instant::now() < deadline, "the cleaner never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = fetch_all(&mut client, "compacted").await;
    // Offsets are kept and only ever increase; the latest value of every key is there.
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0));
    for (key, (offset, value)) in &latest {
        assert!(
            rows.iter().any(|r| r.0 == *offset
                && r.1.as_deref() == Some(key.as_bytes())
                && r.2 == value.as_bytes()),
            "latest record of {key} (offset {offset}) is missing"
        );
    }
    broker.stop().await;
}

/// The broker applies time retention every `log.retention.check.interval.ms`: segments whose
/// records are older than `retention.ms` go, and the log start offset moves past them.
#[tokio::test]
async fn retention_deletes_expired_segments() {
    let broker = TestBroker::start(&[
        ("log.segment.bytes", "1024"),
        ("log.retention.ms", "60000"),
        ("log.retention.check.interval.ms", "50"),
    ])
    .await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "aging").await;
    let hour_ago = now_ms() - 3_600_000;
    for i in 0..30 {
        let value = format!("old-{i}-{}", "x".repeat(100));
        let r = produce(
            &mut client,
            "aging",
            batch(&[(None, &value, hour_ago)], Compression::None),
        )
        .await;
        assert_eq!(r.error_code, 0);
    }
    let r = produce(
        &mut client,
        "aging",
        batch(&[(None, "fresh", now_ms())], Compression::None),
    )
    .await;
    let fresh = r.base_offset;
    let deadline = Instant::now() + BACKGROUND_WORK;
    while list_offset(&mut client, "aging", -2).await.offset == 0 {
        assert!(Instant::now() < deadline, "retention never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Retention never deletes past the high watermark, which may trail the last appends for a
    // moment (an fsync away): a first pass can stop short and the next one finish. Compare the
    // log start and the fetched records only once it stays put for many passes.
    let mut start = list_offset(&mut client, "aging", -2).await.offset;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = list_offset(&mut client, "aging", -2).await.offset;
        if now == start {
            break;
        }
        assert!(Instant::now() < deadline, "retention never settled");
        start = now;
    }
    let rows = fetch_all(&mut client, "aging").await;
    assert!(start <= fresh, "the fresh record must survive");
    assert_eq!(rows.last().map(|r| r.0), Some(fresh));
    assert_eq!(rows.first().map(|r| r.0), Some(start));
    broker.stop().await;
}

/// Bad input on the replication APIs: a Fetch claiming a replica id that is not a replica of
/// the partition (a client, or the leader itself), an OffsetForLeaderEpoch with epochs from the
/// future, and the normal answers next to them.
#[tokio::test]
async fn replica_fetches_and_leader_epoch_queries_are_checked() {
    use weir_protocol::messages::OffsetForLeaderEpochRequest;
    use weir_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let topic_id = support::auto_create_topic(&mut client, "epochs").await;
    let response = client
        .send(
            produce_request(
                "epochs",
                0,
                batch(
                    &[(None, "a", now_ms()), (None, "b", now_ms())],
                    Compression::None,
                ),
                -1,
            ),
            9,
        )
        .await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);

    // Replica ids that are not followers of the partition: nothing is read, nothing moves.
    for (replica_id, version) in [(7, 12), (0, 12), (7, 15)] {
        let mut request = fetch_request("epochs", 0, 0);
        if version >= 15 {
            request.replica_state.replica_id = replica_id;
            request.topics[0].topic = String::new();
            request.topics[0].topic_id = topic_id;
        } else {
            request.replica_id = replica_id;
        }
        let response = client.send(request, version).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!(
            data.error_code,
            ErrorCode::NOT_LEADER_OR_FOLLOWER.code(),
            "replica {replica_id} v{version}"
        );
        assert!(records(data).is_empty());
    }
    // A consumer still reads everything.
    assert_eq!(records(&fetch(&mut client, "epochs", 0).await).len(), 2);

    let ask = |current_leader_epoch: i32, leader_epoch: i32| OffsetForLeaderEpochRequest {
        replica_id: -1,
        topics: vec![OffsetForLeaderTopic {
            topic: "epochs".into(),
            partitions: vec![OffsetForLeaderPartition {
                partition: 0,
                current_leader_epoch,
                leader_epoch,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    for version in 2..=4 {
        let response = client.send(ask(-1, 0), version).await;
        let p = &response.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.leader_epoch, p.end_offset),
            (0, 0, 2),
            "v{version}"
        );
    }
    // An epoch later than any the log has: undefined, as Kafka answers.
    let p = client.send(ask(0, 9), 4).await.topics[0].partitions[0].clone();
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, -1, -1));
    // A current leader epoch from the future: this broker does not know it yet.
    let p = client.send(ask(5, 0), 4).await.topics[0].partitions[0].clone();
    assert_eq!(p.error_code, ErrorCode::UNKNOWN_LEADER_EPOCH.code());
    // Unknown partition.
    let mut request = ask(-1, 0);
    request.topics[0].partitions[0].partition = 3;
    let p = client.send(request, 4).await.topics[0].partitions[0].clone();
    assert_eq!(p.error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code());
    broker.stop().await;
}
