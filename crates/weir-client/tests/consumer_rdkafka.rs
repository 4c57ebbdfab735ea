//! The consumer with librdkafka (the `rdkafka` crate) against an in-process broker: what
//! librdkafka produces with every codec, weir-client consumes intact; a group mixing a Weir
//! consumer and a librdkafka consumer splits the partitions between them, for the eager
//! `range` and `roundrobin` assignors (with the same split whichever client leads) and for
//! `cooperative-sticky`.
//!
//! librdkafka runs its own threads; its blocking calls run in `block_in_place` on a
//! multi-threaded runtime so the in-process broker keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{TestBroker, create_topic};
use weir_client::consumer::{
    AssignmentStrategy, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset,
};

const BROKER: &[(&str, &str)] = &[
    ("group.min.session.timeout.ms", "500"),
    ("group.initial.rebalance.delay.ms", "0"),
];

fn rd_config(broker: &TestBroker) -> RdConfig {
    let mut config = RdConfig::new();
    config
        .set("bootstrap.servers", broker.addr.to_string())
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000");
    config
}

fn weir_config(broker: &TestBroker, group: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(&broker.addr.to_string(), group);
    config.client = broker.config();
    config.auto_offset_reset = OffsetReset::Earliest;
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_millis(100);
    config.max_poll_interval = Duration::from_secs(10);
    config.fetch_max_wait = Duration::from_millis(100);
    config
}

async fn recv_n(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    while out.len() < count {
        let record = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} records arrived", out.len()))
            .unwrap();
        out.push(record);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_librdkafka_produces_with_every_codec_arrive_intact() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "from-rdkafka", 3).await;
    let mut sent = BTreeMap::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let producer: FutureProducer = rd_config(&broker)
            .set("compression.codec", codec)
            .set("linger.ms", "20")
            .create()
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..20 {
            let key = format!("{codec}-key-{i}");
            let value = format!("{codec} value {i} repeated repeated repeated repeated");
            let headers = OwnedHeaders::new().insert(Header {
                key: "codec",
                value: Some(codec),
            });
            let record = FutureRecord::to("from-rdkafka")
                .key(&key)
                .payload(&value)
                .headers(headers)
                .timestamp(1_700_000_000_000 + i);
            deliveries.push(producer.send_result(record).unwrap());
            sent.insert(key, value);
        }
        for delivery in deliveries {
            delivery.await.unwrap().unwrap();
        }
    }

    let mut consumer = Consumer::connect(weir_config(&broker, "reads-rdkafka"))
        .await
        .unwrap();
    consumer.subscribe(&["from-rdkafka"]).unwrap();
    let records = recv_n(&mut consumer, sent.len()).await;
    let mut got = BTreeMap::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        let codec = key.split('-').next().unwrap().to_string();
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers[0].key.as_ref(), b"codec");
        assert_eq!(r.headers[0].value.as_deref(), Some(codec.as_bytes()));
        assert!(r.timestamp >= 1_700_000_000_000 && r.timestamp < 1_700_000_000_020);
        // Offsets increase within each partition.
        if let Some(prev) = last_offset.insert(r.partition, r.offset) {
            assert!(r.offset > prev);
        }
        got.insert(
            key,
            String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap(),
        );
    }
    assert_eq!(got, sent);
    consumer.close().await.unwrap();
}

/// Drives a librdkafka group consumer on a task (it must be polled to take part in
/// rebalances) and forwards (partition, offset) of what it receives.
fn drive(
    consumer: Arc<StreamConsumer>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<(i32, i64)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match consumer.recv().await {
                Ok(m) => {
                    let _ = tx.send((m.partition(), m.offset()));
                }
                Err(err) => eprintln!("librdkafka consumer: {err}"),
            }
        }
    });
    (task, rx)
}

fn rd_assignment(consumer: &StreamConsumer) -> BTreeSet<i32> {
    tokio::task::block_in_place(|| consumer.assignment())
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

async fn mixed_group(strategy: AssignmentStrategy, group: &str) {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "mixed", 4).await;

    let mut config = weir_config(&broker, group);
    config.assignment_strategy = strategy;
    config.enable_auto_commit = false;
    let mut weir = Consumer::connect(config).await.unwrap();
    weir.subscribe(&["mixed"]).unwrap();
    let rd: StreamConsumer = rd_config(&broker)
        .set("group.id", group)
        .set("partition.assignment.strategy", strategy.name())
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "100")
        .create()
        .unwrap();
    let rd = Arc::new(rd);
    tokio::task::block_in_place(|| rd.subscribe(&["mixed"])).unwrap();
    let (task, mut rd_records) = drive(rd.clone());

    // Settle: two partitions each, disjoint.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut weir_records = Vec::new();
    loop {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), weir.recv()).await {
            weir_records.push(r.unwrap());
        }
        let w: BTreeSet<i32> = weir.assignment().iter().map(|tp| tp.partition).collect();
        let r = rd_assignment(&rd);
        if w.len() == 2 && r.len() == 2 && w.is_disjoint(&r) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never split: weir {w:?}, librdkafka {r:?}"
        );
    }
    let weir_partitions: BTreeSet<i32> = weir.assignment().iter().map(|tp| tp.partition).collect();
    // Both clients' assignors agree on the shape whichever of them leads.
    let expected: &[&[i32]] = match strategy {
        AssignmentStrategy::Range => &[&[0, 1], &[2, 3]],
        AssignmentStrategy::RoundRobin => &[&[0, 2], &[1, 3]],
        _ => &[],
    };
    if !expected.is_empty() {
        let mine: Vec<i32> = weir_partitions.iter().copied().collect();
        assert!(
            expected.contains(&mine.as_slice()),
            "{strategy:?} gave weir {mine:?}"
        );
    }

    // Records go to the member owning their partition, each exactly once.
    let producer: FutureProducer = rd_config(&broker).create().unwrap();
    for i in 0..40 {
        let payload = format!("v{i}");
        producer
            .send(
                FutureRecord::<(), _>::to("mixed")
                    .payload(&payload)
                    .partition(i % 4),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let mut seen: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while total < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "received {total} of 40"
        );
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), weir.recv()).await {
            let r = r.unwrap();
            assert!(weir_partitions.contains(&r.partition));
            assert!(seen.insert((r.partition, r.offset)));
            total += 1;
        }
        while let Ok((partition, offset)) = rd_records.try_recv() {
            assert!(
                !weir_partitions.contains(&partition),
                "librdkafka got weir's {partition}"
            );
            assert!(seen.insert((partition, offset)));
            total += 1;
        }
    }
    assert!(weir_records.is_empty());
    assert_eq!(seen.len(), 40);
    task.abort();
    weir.close().await.unwrap();
    // librdkafka's close can block without a bound (rust-rdkafka#509): leave it to a thread.
    std::thread::spawn(move || drop(rd));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_weir_and_librdkafka_splits_partitions_with_range() {
    mixed_group(AssignmentStrategy::Range, "mixed-range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_weir_and_librdkafka_splits_partitions_with_roundrobin() {
    mixed_group(AssignmentStrategy::RoundRobin, "mixed-roundrobin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_weir_and_librdkafka_splits_partitions_with_cooperative_sticky() {
    mixed_group(AssignmentStrategy::CooperativeSticky, "mixed-coop").await;
}
