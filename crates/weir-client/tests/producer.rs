//! The producer end to end against an in-process broker: every codec, every acks setting,
//! idempotent retries that never duplicate, the partitioner, flush, backpressure and errors.
#![expect(clippy::unwrap_used, reason = "tests fail on any error")]

#[allow(unreachable_pub, reason = "support is shared by several test crates")]
mod support;

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{TestBroker, create_topic, end_offset, fetch_all};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_client::producer::partitioner::partition_for_key;
use weir_client::producer::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};
use weir_client::{Client, ClientConfig, Error};
use weir_protocol::ErrorCode;

async fn producer(client: &Client, config: ProducerConfig) -> Producer {
    Producer::from_client(client.clone(), config).await.unwrap()
}

#[tokio::test]
async fn every_codec_round_trips() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    for (name, codec) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let topic = format!("codec-{name}");
        create_topic(&client, &topic, 1).await;
        let producer = producer(
            &client,
            ProducerConfig {
                compression: codec,
                ..ProducerConfig::default()
            },
        )
        .await;
        let mut deliveries = Vec::new();
        for i in 0..300 {
            let record = ProducerRecord::new(&topic)
                .key(format!("key-{i}"))
                .value(format!("value {i} {}", "x".repeat(i % 50)))
                .header("n", Some(Bytes::from(i.to_string())));
            deliveries.push(producer.enqueue(record).await.unwrap());
        }
        producer.flush().await;
        for (i, delivery) in deliveries.into_iter().enumerate() {
            let metadata = delivery.await.unwrap();
            assert_eq!(
                (metadata.partition, metadata.offset),
                (0, i as i64),
                "{name}"
            );
        }
        let records = fetch_all(&client, &topic, 0).await;
        assert_eq!(records.len(), 300, "{name}");
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.key.as_deref(), Some(format!("key-{i}").as_bytes()));
            assert_eq!(
                record.headers[0].value.as_deref(),
                Some(i.to_string().as_bytes())
            );
        }
    }
}

#[tokio::test]
async fn every_acks_setting_delivers() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    for (name, acks) in [("0", Acks::None), ("1", Acks::Leader), ("all", Acks::All)] {
        let topic = format!("acks-{name}");
        create_topic(&client, &topic, 1).await;
        let producer = producer(
            &client,
            ProducerConfig {
                acks,
                enable_idempotence: acks == Acks::All,
                ..ProducerConfig::default()
            },
        )
        .await;
        let mut offsets = Vec::new();
        for i in 0..20 {
            let delivery = producer
                .enqueue(ProducerRecord::new(&topic).value(format!("v{i}")))
                .await
                .unwrap();
            offsets.push(delivery);
        }
        producer.flush().await;
        let mut got = Vec::new();
        for delivery in offsets {
            got.push(delivery.await.unwrap().offset);
        }
        if acks == Acks::None {
            assert!(got.iter().all(|o| *o == -1));
        } else {
            assert_eq!(got, (0..20).collect::<Vec<i64>>());
        }
        if acks != Acks::All {
            // acks=0 and acks=1 are answered before the fsync that commits the records (the
            // broker's durable acknowledgement): wait until the high watermark passes them.
            for _ in 0..100 {
                if end_offset(&client, &topic, 0).await == 20 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_eq!(fetch_all(&client, &topic, 0).await.len(), 20, "acks={name}");
    }
}

#[tokio::test]
async fn keys_land_where_the_java_partitioner_puts_them() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "keyed", 6).await;
    let producer = producer(&client, ProducerConfig::default()).await;
    let mut deliveries = Vec::new();
    for i in 0..200 {
        let key = format!("user_{i}");
        let delivery = producer
            .enqueue(ProducerRecord::new("keyed").key(key.clone()).value("v"))
            .await
            .unwrap();
        deliveries.push((key, delivery));
    }
    producer.flush().await;
    let mut per_partition: HashMap<i32, Vec<String>> = HashMap::new();
    for (key, delivery) in deliveries {
        let metadata = delivery.await.unwrap();
        assert_eq!(
            metadata.partition,
            partition_for_key(key.as_bytes(), 6),
            "{key}"
        );
        per_partition
            .entry(metadata.partition)
            .or_default()
            .push(key);
    }
    // What the log holds agrees with what the deliveries said.
    for (partition, keys) in per_partition {
        let stored: Vec<String> = fetch_all(&client, "keyed", partition)
            .await
            .iter()
            .map(|r| String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(stored, keys);
    }
}

#[tokio::test]
async fn records_without_keys_stick_to_a_partition_per_batch() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "sticky", 4).await;
    let producer = producer(
        &client,
        ProducerConfig {
            batch_size: 2048,
            ..ProducerConfig::default()
        },
    )
    .await;
    let mut partitions = Vec::new();
    let mut deliveries = Vec::new();
    for _ in 0..400 {
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new("sticky").value(vec![0u8; 100]))
                .await
                .unwrap(),
        );
    }
    producer.flush().await;
    for delivery in deliveries {
        partitions.push(delivery.await.unwrap().partition);
    }
    // About 2 KiB (16 records of 122 bytes) go to one partition before it switches.
    let switches = partitions.windows(2).filter(|w| w[0] != w[1]).count();
    assert!((15..=40).contains(&switches), "{switches} switches");
    let runs: Vec<usize> = partitions
        .chunk_by(|a, b| a == b)
        .map(<[i32]>::len)
        .collect();
    assert!(runs[..runs.len() - 1].iter().all(|r| *r >= 10), "{runs:?}");
}

#[tokio::test]
async fn flush_sends_without_waiting_for_linger() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "lingering", 1).await;
    let producer = producer(
        &client,
        ProducerConfig {
            linger: Duration::from_secs(3600),
            delivery_timeout: Duration::from_secs(7200),
            ..ProducerConfig::default()
        },
    )
    .await;
    let delivery = producer
        .enqueue(ProducerRecord::new("lingering").value("v"))
        .await
        .unwrap();
    producer.flush().await;
    assert_eq!(delivery.await.unwrap().offset, 0);
    // `send` on its own waits for linger.ms; after a flush the producer still works.
    let sent = tokio::time::timeout(
        Duration::from_millis(200),
        producer.send(ProducerRecord::new("lingering").value("w")),
    )
    .await;
    assert!(sent.is_err(), "a lingering batch was sent early");
}

#[tokio::test]
async fn full_buffer_memory_blocks_then_fails_after_max_block() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "bounded", 1).await;
    let producer = producer(
        &client,
        ProducerConfig {
            linger: Duration::from_secs(3600),
            delivery_timeout: Duration::from_secs(7200),
            batch_size: 64 * 1024,
            buffer_memory: 64 * 1024,
            max_block: Duration::from_millis(200),
            ..ProducerConfig::default()
        },
    )
    .await;
    let mut deliveries = Vec::new();
    // 64 records of about 1 KiB fill the buffer without filling the batch.
    for _ in 0..64 {
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new("bounded").value(vec![1u8; 1000]))
                .await
                .unwrap(),
        );
    }
    let err = producer
        .enqueue(ProducerRecord::new("bounded").value(vec![1u8; 1000]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    // Acknowledged batches gave their memory back.
    let delivery = producer
        .enqueue(ProducerRecord::new("bounded").value(vec![1u8; 1000]))
        .await
        .unwrap();
    producer.flush().await;
    assert_eq!(delivery.await.unwrap().offset, 64);
}

#[tokio::test]
async fn errors_are_typed_and_carry_the_cause() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "strict", 2).await;
    let producer = producer(&client, ProducerConfig::default()).await;
    let err = producer
        .send(ProducerRecord::new("strict").partition(2).value("v"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Kafka {
                code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                ..
            }
        ),
        "{err}"
    );
    let err = producer
        .send(ProducerRecord::new("strict").value(vec![0u8; 2 << 20]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Kafka {
                code: ErrorCode::MESSAGE_TOO_LARGE,
                ..
            }
        ),
        "{err}"
    );

    // The broker's own refusal comes back with its code, and is not retried.
    use weir_protocol::messages::CreateTopicsRequest;
    use weir_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    client
        .send_any(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: "small".into(),
                num_partitions: 1,
                replication_factor: -1,
                configs: vec![CreatableTopicConfig {
                    name: "max.message.bytes".into(),
                    value: Some("1000".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            timeout_ms: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = producer
        .send(ProducerRecord::new("small").value(vec![0u8; 5000]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Kafka {
                code: ErrorCode::MESSAGE_TOO_LARGE,
                ..
            }
        ),
        "{err}"
    );
    // The producer is still usable for the other topic afterwards.
    producer
        .send(ProducerRecord::new("strict").value("ok"))
        .await
        .unwrap();
}

/// A proxy between client and broker that drops the first `drops` Produce responses by closing
/// the connection right after the broker has answered (and so appended the batch).
struct LossyProxy {
    addr: std::net::SocketAddr,
    dropped: Arc<AtomicUsize>,
}

impl LossyProxy {
    async fn start(drops: usize) -> (Self, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (
            Self {
                addr,
                dropped: Arc::new(AtomicUsize::new(drops)),
            },
            listener,
        )
    }

    fn run(&self, listener: TcpListener, broker: std::net::SocketAddr) {
        let budget = self.dropped.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let upstream = TcpStream::connect(broker).await.unwrap();
                tokio::spawn(relay(client, upstream, budget.clone()));
            }
        });
    }
}

async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.ok()?;
    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

async fn relay(client: TcpStream, upstream: TcpStream, budget: Arc<AtomicUsize>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let produce_ids = Arc::new(parking_lot::Mutex::new(std::collections::HashSet::new()));
    let ids = produce_ids.clone();
    let requests = tokio::spawn(async move {
        while let Some(frame) = read_frame(&mut client_read).await {
            let api_key = i16::from_be_bytes([frame[0], frame[1]]);
            let id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            if api_key == 0 {
                ids.lock().insert(id);
            }
            let mut out = (frame.len() as i32).to_be_bytes().to_vec();
            out.extend_from_slice(&frame);
            if up_write.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    while let Some(frame) = read_frame(&mut up_read).await {
        let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let is_produce = produce_ids.lock().remove(&id);
        if is_produce
            && budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            break;
        }
        let mut out = (frame.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&frame);
        if client_write.write_all(&out).await.is_err() {
            break;
        }
    }
    requests.abort();
}

/// Produces 50 records through a proxy that loses the first two Produce responses and returns
/// the log end offset and the offsets the deliveries reported.
async fn produce_through_lossy_proxy(
    idempotent: bool,
    batch_size: usize,
    flush_every: usize,
) -> (i64, Vec<i64>, Client, TestBroker) {
    let (proxy, listener) = LossyProxy::start(2).await;
    let port = proxy.addr.port().to_string();
    let broker = TestBroker::start(&[(
        "advertised.listeners",
        &format!("PLAINTEXT://127.0.0.1:{port}"),
    )])
    .await;
    proxy.run(listener, broker.addr);
    let client = Client::connect(ClientConfig {
        bootstrap_servers: vec![broker.addr.to_string()],
        request_timeout: Duration::from_secs(10),
        retry_backoff: Duration::from_millis(20),
        ..ClientConfig::default()
    })
    .await
    .unwrap();
    create_topic(&client, "lossy", 1).await;
    let producer = producer(
        &client,
        ProducerConfig {
            enable_idempotence: idempotent,
            batch_size,
            ..ProducerConfig::default()
        },
    )
    .await;
    let mut deliveries = Vec::new();
    for i in 0..50 {
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new("lossy").value(format!("v{i}")))
                .await
                .unwrap(),
        );
        if i % flush_every == flush_every - 1 {
            producer.flush().await;
        }
    }
    producer.flush().await;
    let mut offsets = Vec::new();
    for delivery in deliveries {
        offsets.push(delivery.await.unwrap().offset);
    }
    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        0,
        "responses were lost"
    );
    (
        end_offset(&client, "lossy", 0).await,
        offsets,
        client,
        broker,
    )
}

#[tokio::test]
async fn idempotent_retries_never_duplicate() {
    let (end, offsets, _, _broker) = produce_through_lossy_proxy(true, 16 * 1024, 10).await;
    assert_eq!(end, 50);
    assert_eq!(offsets, (0..50).collect::<Vec<i64>>());
}

/// With one record per batch, five batches are in flight when the connection drops: all are
/// retried in sequence order, the appended ones are recognised as duplicates and the log
/// keeps the order they were sent in.
#[tokio::test]
async fn pipelined_idempotent_retries_keep_order() {
    let (end, offsets, client, _broker) = produce_through_lossy_proxy(true, 64, 50).await;
    assert_eq!(end, 50);
    assert_eq!(offsets, (0..50).collect::<Vec<i64>>());
    let values: Vec<String> = fetch_all(&client, "lossy", 0)
        .await
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected);
}

/// The control for the test above: without idempotence the same lost responses duplicate
/// records, so the proxy really does lose acknowledged batches.
#[tokio::test]
async fn retries_without_idempotence_duplicate() {
    let (end, _, _, _broker) = produce_through_lossy_proxy(false, 16 * 1024, 10).await;
    assert!(end > 50, "end offset {end}");
}

/// After a topic gains partitions (through the admin client, which marks the metadata stale),
/// keys hash over the new partition count.
#[tokio::test]
async fn keys_follow_a_topic_that_gains_partitions() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "widening", 1).await;
    let producer = producer(&client, ProducerConfig::default()).await;
    let key = "order-7";
    let first = producer
        .send(ProducerRecord::new("widening").key(key).value("a"))
        .await
        .unwrap();
    assert_eq!(first.partition, 0);
    let admin = weir_client::admin::Admin::from_client(client.clone());
    let grown = admin.create_partitions(&[("widening", 8)]).await.unwrap();
    assert!(grown[0].1.is_ok());
    let expected = partition_for_key(key.as_bytes(), 8);
    assert_ne!(expected, 0, "pick a key that moves");
    let second = producer
        .send(ProducerRecord::new("widening").key(key).value("b"))
        .await
        .unwrap();
    assert_eq!(second.partition, expected);
}

/// With `retries=0` a lost response is not retried: the delivery fails with the connection
/// error instead.
#[tokio::test]
async fn without_retries_a_lost_response_is_an_error() {
    let (proxy, listener) = LossyProxy::start(1).await;
    let broker = TestBroker::start(&[(
        "advertised.listeners",
        &format!("PLAINTEXT://127.0.0.1:{}", proxy.addr.port()),
    )])
    .await;
    proxy.run(listener, broker.addr);
    let client = Client::connect(ClientConfig::new(&broker.addr.to_string()))
        .await
        .unwrap();
    create_topic(&client, "unretried", 1).await;
    let producer = producer(
        &client,
        ProducerConfig {
            enable_idempotence: false,
            retries: 0,
            ..ProducerConfig::default()
        },
    )
    .await;
    let err = producer
        .send(ProducerRecord::new("unretried").value("v"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert_eq!(
        producer
            .send(ProducerRecord::new("unretried").value("w"))
            .await
            .unwrap()
            .offset,
        1
    );
}

/// Five lost responses while batches of three partitions are pipelined: every record is in the
/// log exactly once and each partition keeps the order records were sent in.
#[tokio::test]
async fn lost_responses_across_partitions_neither_duplicate_nor_reorder() {
    let (proxy, listener) = LossyProxy::start(5).await;
    let broker = TestBroker::start(&[(
        "advertised.listeners",
        &format!("PLAINTEXT://127.0.0.1:{}", proxy.addr.port()),
    )])
    .await;
    proxy.run(listener, broker.addr);
    let client = Client::connect(ClientConfig {
        retry_backoff: Duration::from_millis(10),
        ..ClientConfig::new(&broker.addr.to_string())
    })
    .await
    .unwrap();
    create_topic(&client, "lossy-many", 3).await;
    let producer = producer(
        &client,
        ProducerConfig {
            batch_size: 200,
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        },
    )
    .await;
    let mut deliveries = Vec::new();
    for i in 0..300 {
        let record = ProducerRecord::new("lossy-many")
            .key(format!("k{}", i % 10))
            .value(i.to_string());
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        0,
        "responses were lost"
    );
    let mut seen = Vec::new();
    for partition in 0..3 {
        let values: Vec<u32> = fetch_all(&client, "lossy-many", partition)
            .await
            .iter()
            .map(|r| {
                std::str::from_utf8(r.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "partition {partition}: {values:?}"
        );
        seen.extend(values);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..300).collect::<Vec<u32>>());
}
