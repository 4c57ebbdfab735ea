//! Interop with librdkafka (the `rdkafka` crate) against an in-process broker: what weir-client
//! produces librdkafka consumes, what librdkafka produces weir-client reads, and keyed records
//! land on the same partitions from both (librdkafka with `partitioner=murmur2_random`, the
//! Java client's partitioner).
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test"
)]

#[allow(unreachable_pub, reason = "support is shared by several test crates")]
mod support;

use bytes::Bytes;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header as RdHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{TestBroker, create_topic, fetch_all};
use weir_client::producer::partitioner::partition_for_key;
use weir_client::producer::{Compression, Producer, ProducerConfig, ProducerRecord};

const WAIT: Duration = Duration::from_secs(30);

fn rd_config(broker: &TestBroker) -> RdConfig {
    let mut config = RdConfig::new();
    config
        .set("bootstrap.servers", broker.addr.to_string())
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000");
    config
}

/// A librdkafka consumer reading every partition of `topic` from the start, outside a group.
fn rd_reader(broker: &TestBroker, topic: &str, partitions: i32) -> StreamConsumer {
    let consumer: StreamConsumer = rd_config(broker)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

fn rd_producer(broker: &TestBroker) -> FutureProducer {
    rd_config(broker)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer")
}

/// A received record: partition, key, value, headers, timestamp.
type Received = (i32, Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>, i64);

async fn rd_receive(consumer: &StreamConsumer, count: usize) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.partition(),
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                    m.timestamp().to_millis().unwrap_or(-1),
                ));
            }
            Ok(Err(e)) => eprintln!("consumer error (retried): {e}"),
            Err(_) => panic!("received {} of {count} records", out.len()),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_consumes_what_weir_client_produces() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    for (name, codec) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let topic = format!("to-rdkafka-{name}");
        create_topic(&client, &topic, 3).await;
        let producer = Producer::from_client(
            client.clone(),
            ProducerConfig {
                compression: codec,
                ..ProducerConfig::default()
            },
        )
        .await
        .expect("producer");
        let mut expected = Vec::new();
        let mut deliveries = Vec::new();
        for i in 0..60 {
            let key = format!("user_{}", i % 7);
            let value = format!("click {i} from {key} via {name}");
            let timestamp = 1_700_000_000_000 + i;
            let record = ProducerRecord::new(&topic)
                .key(key.clone())
                .value(value.clone())
                .timestamp(timestamp)
                .header("n", Some(Bytes::from(i.to_string())));
            deliveries.push(producer.enqueue(record).await.expect("enqueue"));
            expected.push((
                partition_for_key(key.as_bytes(), 3),
                key.into_bytes(),
                value.into_bytes(),
                vec![("n".to_string(), i.to_string().into_bytes())],
                timestamp,
            ));
        }
        producer.flush().await;
        for d in deliveries {
            d.await.expect("delivered");
        }
        let reader = rd_reader(&broker, &topic, 3);
        let mut got = rd_receive(&reader, expected.len()).await;
        got.sort_by_key(|r| r.4);
        assert_eq!(got, expected, "codec {name}");
        drop(reader);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_client_reads_what_librdkafka_produces_on_the_same_partitions() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "from-rdkafka", 6).await;
    create_topic(&client, "from-weir", 6).await;
    let keys: Vec<String> = (0..100).map(|i| format!("order-{i}")).collect();

    let rd = rd_producer(&broker);
    let mut rd_partitions = BTreeMap::new();
    let mut pending = Vec::new();
    for key in &keys {
        let value = format!("value of {key}");
        let record = FutureRecord::to("from-rdkafka")
            .key(key.as_bytes())
            .payload(value.as_bytes())
            .headers(OwnedHeaders::new().insert(RdHeader {
                key: "origin",
                value: Some("librdkafka"),
            }));
        match rd.send_result(record) {
            Ok(delivery) => pending.push((key.clone(), delivery)),
            Err((e, _)) => panic!("enqueue: {e}"),
        }
    }
    for (key, delivery) in pending {
        let delivered = tokio::time::timeout(WAIT, delivery)
            .await
            .expect("in time")
            .expect("not cancelled")
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        rd_partitions.insert(key, delivered.partition);
    }

    let producer = Producer::from_client(client.clone(), ProducerConfig::default())
        .await
        .expect("producer");
    let mut weir_partitions = BTreeMap::new();
    for key in &keys {
        let metadata = producer
            .send(ProducerRecord::new("from-weir").key(key.clone()).value("v"))
            .await
            .expect("send");
        weir_partitions.insert(key.clone(), metadata.partition);
    }
    assert_eq!(weir_partitions, rd_partitions, "same keys, same partitions");

    // Every librdkafka record reads back through weir-client's connection layer.
    let mut read = BTreeMap::new();
    for partition in 0..6 {
        for record in fetch_all(&client, "from-rdkafka", partition).await {
            let key = String::from_utf8(record.key.expect("key").to_vec()).expect("utf-8");
            assert_eq!(
                record.value.as_deref(),
                Some(format!("value of {key}").as_bytes())
            );
            assert_eq!(&record.headers[0].key[..], b"origin");
            read.insert(key, partition);
        }
    }
    assert_eq!(read, rd_partitions);
}
