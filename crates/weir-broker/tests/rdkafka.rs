//! librdkafka (the `rdkafka` crate, librdkafka built from source) against an in-process broker:
//! metadata and topic auto-creation; produce and consume with every compression codec, keys,
//! headers and timestamps; the idempotent producer; a consumer group that commits, survives a
//! broker restart and resumes with nothing lost and nothing twice; admin calls for topics,
//! partitions and configs.
//!
//! librdkafka runs its own threads, but some of its calls block (metadata, committed offsets,
//! closing a consumer); they run in `block_in_place` on a multi-threaded runtime so the broker,
//! on the same runtime, keeps serving meanwhile.
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test"
)]

#[allow(
    unreachable_pub,
    reason = "support/ is shared by the test crates; its items are `pub` for them"
)]
mod support;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::TestBroker;

/// Upper bound for any one wait on the broker.
const WAIT: Duration = Duration::from_secs(30);
/// Every codec librdkafka can produce with.
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
/// Compressible, so every codec really compresses (librdkafka sends a batch raw if it grows).
const PAYLOAD: &str = "weir rdkafka payload weir rdkafka payload weir rdkafka payload ";

/// One record as sent, to compare with what comes back.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: i64,
}

fn sent(label: &str, n: usize) -> Sent {
    Sent {
        key: format!("key-{n}").into_bytes(),
        value: format!("{PAYLOAD}{label}-{n}").into_bytes(),
        headers: vec![
            ("label".to_string(), label.as_bytes().to_vec()),
            ("n".to_string(), n.to_string().into_bytes()),
        ],
        timestamp: 1_700_000_000_000 + n as i64,
    }
}

fn client_config(broker: &TestBroker) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.addr.to_string())
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000");
    config
}

fn producer(broker: &TestBroker, settings: &[(&str, &str)]) -> FutureProducer {
    let mut config = client_config(broker);
    config
        .set("linger.ms", "20")
        .set("message.timeout.ms", "20000");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

fn consumer(broker: &TestBroker, group: &str) -> StreamConsumer {
    client_config(broker)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer")
}

/// A consumer reading partition 0 of `topic` from the beginning, outside any group.
fn reader(broker: &TestBroker, topic: &str) -> StreamConsumer {
    let consumer = consumer(broker, &format!("{topic}-reader"));
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition offset");
    consumer.assign(&assignment).expect("assign");
    consumer
}

fn admin(broker: &TestBroker) -> AdminClient<DefaultClientContext> {
    client_config(broker).create().expect("admin client")
}

/// Runs a librdkafka call that blocks the calling thread.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Closes a client (consumers leave their group, producers flush) on a thread of its own, and
/// fails the test if that takes too long: rdkafka's consumer drop polls until librdkafka says
/// the consumer is closed, with no timeout of its own.
fn close<T: Send + 'static>(client: T) {
    let (closed, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(client);
        let _ = closed.send(());
    });
    let result = blocking(|| done.recv_timeout(WAIT));
    assert!(
        result.is_ok(),
        "a client did not close within {WAIT:?} (a consumer leaves its group on close)"
    );
}

/// Produces `records` to `topic` (all enqueued before any is awaited, so they batch) and returns
/// each one's (partition, offset) in send order.
async fn produce(producer: &FutureProducer, topic: &str, records: &[Sent]) -> Vec<(i32, i64)> {
    let mut deliveries = Vec::new();
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &r.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let record = FutureRecord::to(topic)
            .key(&r.key)
            .payload(&r.value)
            .headers(headers)
            .timestamp(r.timestamp);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((e, _)) => panic!("enqueueing a record for {topic}: {e}"),
        }
    }
    let mut positions = Vec::new();
    for delivery in deliveries {
        let result = tokio::time::timeout(WAIT, delivery)
            .await
            .expect("delivery report within the timeout")
            .expect("delivery future not cancelled");
        match result {
            Ok(d) => positions.push((d.partition, d.offset)),
            Err((e, _)) => panic!("producing to {topic}: {e}"),
        }
    }
    positions
}

/// Receives `count` messages (or fails after a deadline).
async fn receive(consumer: &StreamConsumer, count: usize) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + WAIT;
    let mut messages = Vec::new();
    while messages.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(message)) => messages.push(message.detach()),
            Ok(Err(e)) => eprintln!("consumer error (retried): {e}"),
            Err(_) => panic!(
                "received {} of {count} messages in {WAIT:?}",
                messages.len()
            ),
        }
    }
    messages
}

/// Asserts that nothing more arrives for a while.
async fn assert_nothing_more(consumer: &StreamConsumer) {
    if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
        panic!(
            "unexpected extra message at {}/{}",
            m.partition(),
            m.offset()
        );
    }
}

fn assert_message(message: &OwnedMessage, expected: &Sent) {
    let at = format!("{}/{}", message.partition(), message.offset());
    assert_eq!(message.key(), Some(&expected.key[..]), "key at {at}");
    assert_eq!(
        message.payload(),
        Some(&expected.value[..]),
        "value at {at}"
    );
    let headers: Vec<(String, Vec<u8>)> = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(headers, expected.headers, "headers at {at}");
    assert_eq!(
        message.timestamp(),
        Timestamp::CreateTime(expected.timestamp),
        "timestamp at {at}"
    );
}

/// Stops the broker, failing the test rather than hanging if a connection keeps it busy.
async fn stop(broker: TestBroker) {
    tokio::time::timeout(WAIT, broker.stop())
        .await
        .expect("the broker stops within the timeout");
}

/// Leaves the group and closes the consumer, waiting a bounded time. rdkafka's consumer drop
/// polls until librdkafka reports the consumer closed, with no timeout, and can wait forever
/// with prefetched messages queued (fede1024/rust-rdkafka#509, #611): then the consumer is left
/// to its thread and the test goes on; the offsets that matter were committed explicitly.
async fn leave(consumer: StreamConsumer) {
    consumer.unsubscribe();
    let (closed, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = closed.send(());
    });
    let wait = Duration::from_secs(10);
    if blocking(|| done.recv_timeout(wait)).is_err() {
        eprintln!("note: a group consumer did not finish closing within {wait:?}; left behind");
    }
}

/// Metadata for `topic` once it exists with `partitions` partitions (or fails after a deadline).
fn wait_for_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partitions: usize,
) -> Metadata {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match client.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => {
                let found = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| (t.error(), t.partitions().len()));
                if found == Some((None, partitions)) {
                    return metadata;
                }
                format!("{found:?}")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "topic {topic} never had {partitions} partitions: last {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every topic name in the cluster metadata.
fn topic_names<C: ClientContext>(client: &Client<C>) -> BTreeSet<String> {
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata for all topics");
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect()
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(15)))
}

/// ApiVersions and Metadata as librdkafka (2.x) reads them; an unknown topic is auto-created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_auto_creation() {
    let broker = TestBroker::start(&[("num.partitions", "3")]).await;
    let client: StreamConsumer = client_config(&broker)
        .set("group.id", "rd-metadata")
        .set("allow.auto.create.topics", "true")
        .create()
        .expect("consumer");
    let metadata = blocking(|| wait_for_topic(client.client(), "rd-metadata", 3));
    assert_eq!(metadata.brokers().len(), 1);
    assert_eq!(metadata.brokers()[0].id(), 0);
    assert_eq!(metadata.brokers()[0].port(), i32::from(broker.addr.port()));
    let topic = &metadata.topics()[0];
    for (i, p) in topic.partitions().iter().enumerate() {
        assert_eq!(p.id(), i as i32);
        assert_eq!(p.leader(), 0);
        assert_eq!(p.replicas(), &[0]);
        assert_eq!(p.isr(), &[0]);
    }
    close(client);
    stop(broker).await;
}

/// Issue 15: librdkafka sees the broker under the host its listener names (`localhost`), not
/// the address the listener was bound to, and reaches it there for produce and consume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advertised_host_is_the_configured_one() {
    let broker = TestBroker::start(&[("listeners", "PLAINTEXT://localhost:0")]).await;
    let topic = "rd-advertised";
    let client: StreamConsumer = client_config(&broker)
        .set("group.id", "rd-advertised")
        .set("allow.auto.create.topics", "true")
        .create()
        .expect("consumer");
    let metadata = blocking(|| wait_for_topic(client.client(), topic, 1));
    let brokers: Vec<(&str, i32)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.host(), b.port()))
        .collect();
    assert_eq!(brokers, [("localhost", i32::from(broker.addr.port()))]);
    close(client);

    // Clients bootstrapped on the address then connect to the advertised host.
    let records = [sent("advertised", 0)];
    let producer = producer(&broker, &[]);
    produce(&producer, topic, &records).await;
    close(producer);
    let consumer = consumer(&broker, "rd-advertised-group");
    consumer.subscribe(&[topic]).expect("subscribe");
    let received = receive(&consumer, 1).await;
    assert_message(&received[0], &records[0]);
    leave(consumer).await;
    stop(broker).await;
}

/// Every codec, with keys, headers and CreateTime timestamps, comes back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_keys_headers_and_timestamps() {
    let broker = TestBroker::start(&[]).await;
    let topic = "rd-codecs";
    let mut expected = Vec::new();
    for (c, codec) in CODECS.iter().enumerate() {
        let producer = producer(&broker, &[("compression.codec", codec)]);
        let records: Vec<Sent> = (0..20).map(|i| sent(codec, c * 20 + i)).collect();
        let positions = produce(&producer, topic, &records).await;
        let want: Vec<(i32, i64)> = (0..20).map(|i| (0, (c * 20 + i) as i64)).collect();
        assert_eq!(positions, want, "offsets for codec {codec}");
        expected.extend(records);
        close(producer);
    }

    let consumer = reader(&broker, topic);
    let messages = receive(&consumer, expected.len()).await;
    for (i, (message, want)) in messages.iter().zip(&expected).enumerate() {
        assert_eq!((message.partition(), message.offset()), (0, i as i64));
        assert_message(message, want);
    }
    assert_nothing_more(&consumer).await;
    close(consumer);
    stop(broker).await;
}

/// An idempotent producer with several batches in flight: every record once, in send order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_keeps_order_without_duplicates() {
    let broker = TestBroker::start(&[]).await;
    let topic = "rd-idempotent";
    let settings = [
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("max.in.flight.requests.per.connection", "5"),
        ("batch.num.messages", "10"),
        ("linger.ms", "1"),
        ("compression.codec", "lz4"),
    ];
    let first = producer(&broker, &settings);
    let records: Vec<Sent> = (0..500).map(|i| sent("idempotent", i)).collect();
    let positions = produce(&first, topic, &records).await;
    let want: Vec<(i32, i64)> = (0..500).map(|i| (0, i)).collect();
    assert_eq!(positions, want);
    close(first);

    // A second producer (a new producer id) appends after the first one's records.
    let second = producer(&broker, &settings);
    let more: Vec<Sent> = (500..600).map(|i| sent("idempotent", i)).collect();
    let positions = produce(&second, topic, &more).await;
    let want: Vec<(i32, i64)> = (500..600).map(|i| (0, i)).collect();
    assert_eq!(positions, want);
    close(second);

    let consumer = reader(&broker, topic);
    let messages = receive(&consumer, 600).await;
    for (i, (message, want)) in messages.iter().zip(records.iter().chain(&more)).enumerate() {
        assert_eq!(message.offset(), i as i64);
        assert_message(message, want);
    }
    assert_nothing_more(&consumer).await;
    close(consumer);
    stop(broker).await;
}

/// A group consumer commits what it processed; after a broker restart the group's next
/// consumer resumes exactly there: every record is consumed once, none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_resumes_from_committed_offsets_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let props = [("num.partitions", "3")];
    let topic = "rd-orders";
    let group = "rd-orders-group";

    let broker = TestBroker::start_in(dir.path(), &props).await;
    let producer1 = producer(&broker, &[("enable.idempotence", "true")]);
    let records: Vec<Sent> = (0..300).map(|i| sent("before", i)).collect();
    let positions = produce(&producer1, topic, &records).await;
    close(producer1);
    let mut by_position: BTreeMap<(i32, i64), Sent> = positions
        .iter()
        .copied()
        .zip(records.iter().cloned())
        .collect();
    assert_eq!(
        by_position.len(),
        300,
        "two records acknowledged at one offset"
    );
    let used: BTreeSet<i32> = positions.iter().map(|(p, _)| *p).collect();
    assert!(used.len() > 1, "keyed records all went to one partition");

    // The first consumer processes half and commits exactly what it processed.
    let first = consumer(&broker, group);
    first.subscribe(&[topic]).expect("subscribe");
    let processed = receive(&first, 150).await;
    let mut commit: BTreeMap<i32, i64> = BTreeMap::new();
    for m in &processed {
        assert_message(m, &by_position[&(m.partition(), m.offset())]);
        let next = commit.entry(m.partition()).or_insert(0);
        assert_eq!(
            *next,
            m.offset(),
            "partition {} skipped or repeated",
            m.partition()
        );
        *next = m.offset() + 1;
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in &commit {
        offsets
            .add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .expect("offset");
    }
    blocking(|| first.commit(&offsets, CommitMode::Sync)).expect("commit");
    let committed = blocking(|| first.committed(WAIT)).expect("committed offsets");
    for (partition, offset) in &commit {
        let element = committed
            .find_partition(topic, *partition)
            .expect("committed partition");
        assert_eq!(element.offset(), Offset::Offset(*offset));
    }
    leave(first).await;
    stop(broker).await;

    // Restart on the same data directory (a new port: clients bootstrap afresh).
    let broker = TestBroker::start_in(dir.path(), &props).await;
    let producer2 = producer(&broker, &[("enable.idempotence", "true")]);
    let later: Vec<Sent> = (300..330).map(|i| sent("after", i)).collect();
    let positions = produce(&producer2, topic, &later).await;
    close(producer2);
    for (position, record) in positions.into_iter().zip(later) {
        assert!(
            by_position.insert(position, record).is_none(),
            "offset {position:?} reused after the restart"
        );
    }

    let second = consumer(&broker, group);
    let mut partitions = TopicPartitionList::new();
    for partition in 0..3 {
        partitions.add_partition(topic, partition);
    }
    let after_restart =
        blocking(|| second.committed_offsets(partitions, WAIT)).expect("committed offsets");
    for (partition, offset) in &commit {
        let element = after_restart
            .find_partition(topic, *partition)
            .expect("committed partition");
        assert_eq!(
            element.offset(),
            Offset::Offset(*offset),
            "committed offset of partition {partition} after the restart"
        );
    }
    second.subscribe(&[topic]).expect("subscribe");
    let rest = receive(&second, by_position.len() - processed.len()).await;
    assert_nothing_more(&second).await;
    let mut seen = BTreeSet::new();
    for m in processed.iter().chain(&rest) {
        let position = (m.partition(), m.offset());
        assert!(seen.insert(position), "{position:?} consumed twice");
        assert_message(m, &by_position[&position]);
    }
    let all: BTreeSet<(i32, i64)> = by_position.keys().copied().collect();
    assert_eq!(seen, all, "records lost");
    leave(second).await;
    stop(broker).await;
}

/// Admin: create a topic with partitions and configs (and refuse a duplicate), validate-only
/// creation, describe and alter configs, add partitions (and refuse fewer), delete topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_topics_partitions_and_configs() {
    let broker = TestBroker::start(&[]).await;
    let admin = admin(&broker);
    let options = admin_options();
    let topic = "rd-admin";
    let new_topic = NewTopic::new(topic, 2, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("cleanup.policy", "compact");

    let created = tokio::time::timeout(WAIT, admin.create_topics([&new_topic], &options))
        .await
        .expect("create_topics within the timeout")
        .expect("create_topics");
    assert_eq!(created, vec![Ok(topic.to_string())]);
    blocking(|| wait_for_topic(admin.inner(), topic, 2));

    let again = tokio::time::timeout(WAIT, admin.create_topics([&new_topic], &options))
        .await
        .expect("create_topics within the timeout")
        .expect("create_topics");
    assert_eq!(
        again,
        vec![Err((
            topic.to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );

    // validate_only: checked, answered, not created.
    let dry = NewTopic::new("rd-admin-dry-run", 4, TopicReplication::Fixed(1));
    let validated = tokio::time::timeout(
        WAIT,
        admin.create_topics([&dry], &admin_options().validate_only(true)),
    )
    .await
    .expect("validate-only create_topics within the timeout")
    .expect("create_topics");
    assert_eq!(validated, vec![Ok("rd-admin-dry-run".to_string())]);
    assert!(!blocking(|| topic_names(admin.inner())).contains("rd-admin-dry-run"));

    // Describe: the overrides as dynamic topic configs, the rest as defaults.
    let described = describe_topic(&admin, topic).await;
    let retention = described.get("retention.ms").expect("retention.ms");
    assert_eq!(retention.0.as_deref(), Some("3600000"));
    assert_eq!(retention.1, ConfigSource::DynamicTopic);
    assert_eq!(
        described.get("cleanup.policy").map(|e| e.0.as_deref()),
        Some(Some("compact"))
    );
    assert!(
        described.contains_key("segment.bytes"),
        "segment.bytes missing"
    );

    // AlterConfigs replaces the whole set of overrides: cleanup.policy returns to its default.
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("retention.ms", "7200000");
    let altered = tokio::time::timeout(WAIT, admin.alter_configs([&alter], &options))
        .await
        .expect("alter_configs within the timeout")
        .expect("alter_configs");
    assert!(
        altered.iter().all(Result::is_ok),
        "alter_configs: {altered:?}"
    );
    let described = describe_topic(&admin, topic).await;
    assert_eq!(
        described.get("retention.ms").map(|e| e.0.as_deref()),
        Some(Some("7200000"))
    );
    assert_eq!(
        described.get("cleanup.policy").map(|e| e.0.as_deref()),
        Some(Some("delete"))
    );

    // Broker configs are describable too.
    let broker_configs = tokio::time::timeout(
        WAIT,
        admin.describe_configs([&ResourceSpecifier::Broker(0)], &options),
    )
    .await
    .expect("describe_configs within the timeout")
    .expect("describe_configs");
    let broker_configs = broker_configs
        .into_iter()
        .next()
        .expect("one resource")
        .expect("broker configs");
    assert!(!broker_configs.entries.is_empty(), "no broker configs");

    // More partitions: fine; fewer: INVALID_PARTITIONS.
    let grow = NewPartitions::new(topic, 5);
    let grown = tokio::time::timeout(WAIT, admin.create_partitions([&grow], &options))
        .await
        .expect("create_partitions within the timeout")
        .expect("create_partitions");
    assert_eq!(grown, vec![Ok(topic.to_string())]);
    blocking(|| wait_for_topic(admin.inner(), topic, 5));
    let shrink = NewPartitions::new(topic, 3);
    let shrunk = tokio::time::timeout(WAIT, admin.create_partitions([&shrink], &options))
        .await
        .expect("create_partitions within the timeout")
        .expect("create_partitions");
    assert_eq!(
        shrunk,
        vec![Err((
            topic.to_string(),
            RDKafkaErrorCode::InvalidPartitions
        ))]
    );

    // Delete: gone from metadata; deleting an unknown topic is UNKNOWN_TOPIC_OR_PARTITION.
    let deleted = tokio::time::timeout(WAIT, admin.delete_topics(&[topic], &options))
        .await
        .expect("delete_topics within the timeout")
        .expect("delete_topics");
    assert_eq!(deleted, vec![Ok(topic.to_string())]);
    let deadline = Instant::now() + WAIT;
    while blocking(|| topic_names(admin.inner())).contains(topic) {
        assert!(
            Instant::now() < deadline,
            "{topic} still listed after deletion"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing = tokio::time::timeout(WAIT, admin.delete_topics(&["rd-missing"], &options))
        .await
        .expect("delete_topics within the timeout")
        .expect("delete_topics");
    assert_eq!(
        missing,
        vec![Err((
            "rd-missing".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
    close(admin);
    stop(broker).await;
}

/// A topic's configs as name → (value, source).
async fn describe_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> BTreeMap<String, (Option<String>, ConfigSource)> {
    let resources = tokio::time::timeout(
        WAIT,
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()),
    )
    .await
    .expect("describe_configs within the timeout")
    .expect("describe_configs");
    let resource = resources
        .into_iter()
        .next()
        .expect("one resource")
        .expect("topic configs");
    resource
        .entries
        .into_iter()
        .map(|e| (e.name, (e.value, e.source)))
        .collect()
}
