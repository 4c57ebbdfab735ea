//! The consumer against an in-process Weir broker: assigned partitions, groups splitting and
//! rebalancing partitions, commits, static membership, cooperative rebalancing, a custom
//! assignor's user data, seek and `auto.offset.reset`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_core::Stream;
use support::{TestBroker, create_topic};
use weir_client::Client;
use weir_client::consumer::{
    AssignmentStrategy, Consumer, ConsumerConfig, ConsumerRecord, GroupMember, MemberAssignment,
    OffsetAndMetadata, OffsetReset, PartitionAssignor, RebalanceListener, TopicPartition,
};
use weir_protocol::ErrorCode;
use weir_protocol::messages::ProduceRequest;
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_records::{Compression, Record, RecordBatchBuilder};

/// Broker settings that let group tests run quickly.
const BROKER: &[(&str, &str)] = &[
    ("group.min.session.timeout.ms", "500"),
    ("group.initial.rebalance.delay.ms", "0"),
];

fn config(broker: &TestBroker, group: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(&broker.addr.to_string(), group);
    config.client = broker.config();
    config.auto_offset_reset = OffsetReset::Earliest;
    config.session_timeout = Duration::from_millis(1500);
    config.heartbeat_interval = Duration::from_millis(100);
    config.max_poll_interval = Duration::from_secs(10);
    config.fetch_max_wait = Duration::from_millis(100);
    config
}

/// Appends `count` records keyed `k<i>` with values `<prefix>-<i>` to one partition, as one
/// batch with `compression`.
async fn produce(
    client: &Client,
    topic: &str,
    partition: i32,
    prefix: &str,
    count: usize,
    compression: Compression,
) {
    let mut builder = RecordBatchBuilder::new();
    builder.compression(compression);
    for i in 0..count {
        builder.push(Record::new(
            1_700_000_000_000 + i as i64,
            Some(format!("k{i}").as_bytes()),
            Some(format!("{prefix}-{i}").as_bytes()),
        ));
    }
    let request = ProduceRequest {
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: topic.to_string(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(builder.build().unwrap()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let leader = client.leader_for(topic, partition).await.unwrap();
    let (response, _) = client.send_to(leader, request).await.unwrap();
    let code = ErrorCode(response.responses[0].partition_responses[0].error_code);
    assert!(!code.is_error(), "produce: {code}");
}

/// Receives until `count` records arrived, failing after 20 s.
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

/// Whether `recv` yields nothing within `wait`.
async fn quiet(consumer: &mut Consumer, wait: Duration) -> bool {
    tokio::time::timeout(wait, consumer.recv()).await.is_err()
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

#[tokio::test]
async fn assigned_partitions_read_plain_and_compressed_batches_with_seek_and_position() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "t", 2).await;
    produce(&client, "t", 0, "plain", 5, Compression::None).await;
    produce(&client, "t", 0, "gzip", 5, Compression::Gzip).await;
    produce(&client, "t", 1, "zstd", 3, Compression::Zstd).await;

    let mut config = config(&broker, "unused");
    config.group_id = None;
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
    let records = recv_n(&mut consumer, 13).await;
    let p0: Vec<_> = records.iter().filter(|r| r.partition == 0).collect();
    assert_eq!(
        p0.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(p0[7].value.as_deref(), Some(&b"gzip-2"[..]));
    assert_eq!(p0[7].key.as_deref(), Some(&b"k2"[..]));
    assert_eq!(p0[7].timestamp, 1_700_000_000_002);
    assert_eq!(&*p0[7].topic, "t");
    assert_eq!(records.iter().filter(|r| r.partition == 1).count(), 3);
    assert_eq!(consumer.position(&tp("t", 0)).await.unwrap(), 10);
    assert!(quiet(&mut consumer, Duration::from_millis(300)).await);

    // Seeking into the middle of a compressed batch skips its earlier records.
    consumer.seek(&tp("t", 0), 7).unwrap();
    assert_eq!(consumer.position(&tp("t", 0)).await.unwrap(), 7);
    // This time through the Stream.
    let mut stream = consumer.stream();
    let mut again = Vec::new();
    for _ in 0..3 {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx));
        again.push(next.await.unwrap().unwrap().offset);
    }
    drop(stream);
    assert_eq!(again, [7, 8, 9]);
    assert!(matches!(
        consumer.seek(&tp("t", 5), 0),
        Err(weir_client::Error::IllegalState(_))
    ));
    assert!(consumer.seek(&tp("t", 0), -1).is_err());
    assert!(consumer.position(&tp("u", 0)).await.is_err());
    assert!(consumer.assign(&[tp("t", 1)]).is_ok());
    // Committing needs a group.
    assert!(consumer.commit().await.is_err());
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn try_recv_takes_what_is_buffered_without_waiting() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "t", 1).await;
    produce(&client, "t", 0, "v", 5, Compression::None).await;

    let mut config = config(&broker, "unused");
    config.group_id = None;
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.assign(&[tp("t", 0)]).unwrap();
    // Nothing fetched yet: nothing buffered.
    assert!(consumer.try_recv().is_none());
    let first = recv_n(&mut consumer, 1).await;
    assert_eq!(first[0].offset, 0);
    // The rest of the batch came with the first fetch.
    let mut rest = Vec::new();
    while let Some(record) = consumer.try_recv() {
        rest.push(record.unwrap().offset);
    }
    assert_eq!(rest, [1, 2, 3, 4]);
    assert!(consumer.try_recv().is_none());
    produce(&client, "t", 0, "w", 2, Compression::None).await;
    assert_eq!(
        recv_n(&mut consumer, 2)
            .await
            .iter()
            .map(|r| r.offset)
            .collect::<Vec<_>>(),
        [5, 6]
    );
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn auto_offset_reset_latest_none_and_out_of_range() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "r", 1).await;
    produce(&client, "r", 0, "old", 4, Compression::None).await;

    let mut latest = config(&broker, "g-latest");
    latest.auto_offset_reset = OffsetReset::Latest;
    let mut consumer = Consumer::connect(latest).await.unwrap();
    consumer.assign(&[tp("r", 0)]).unwrap();
    assert_eq!(consumer.position(&tp("r", 0)).await.unwrap(), 4);
    produce(&client, "r", 0, "new", 2, Compression::None).await;
    let records = recv_n(&mut consumer, 2).await;
    assert_eq!(records[0].value.as_deref(), Some(&b"new-0"[..]));

    // Out of range: back to the reset policy (earliest here).
    let mut earliest = config(&broker, "g-earliest");
    earliest.group_id = None;
    let mut consumer = Consumer::connect(earliest).await.unwrap();
    consumer.assign(&[tp("r", 0)]).unwrap();
    consumer.seek(&tp("r", 0), 1_000).unwrap();
    let records = recv_n(&mut consumer, 1).await;
    assert_eq!(records[0].offset, 0);

    let mut none = config(&broker, "g-none");
    none.auto_offset_reset = OffsetReset::None;
    let mut consumer = Consumer::connect(none).await.unwrap();
    consumer.assign(&[tp("r", 0)]).unwrap();
    let err = consumer.recv().await.unwrap_err();
    assert!(err.to_string().contains("OFFSET_OUT_OF_RANGE"), "{err}");
    // A committed offset is a valid start even under `none`.
    consumer.commit_offsets(&[(tp("r", 0), 3)]).await.unwrap();
    let mut none = config(&broker, "g-none");
    none.auto_offset_reset = OffsetReset::None;
    let mut consumer = Consumer::connect(none).await.unwrap();
    consumer.assign(&[tp("r", 0)]).unwrap();
    assert_eq!(recv_n(&mut consumer, 1).await[0].offset, 3);
}

/// Records which partitions each rebalance callback saw.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

/// A callback's name and the partitions it was given.
type Event = (&'static str, Vec<TopicPartition>);

impl RebalanceListener for Events {
    fn revoked(&mut self, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .unwrap()
            .push(("revoked", partitions.to_vec()));
    }
    fn assigned(&mut self, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .unwrap()
            .push(("assigned", partitions.to_vec()));
    }
    fn lost(&mut self, partitions: &[TopicPartition]) {
        self.0.lock().unwrap().push(("lost", partitions.to_vec()));
    }
}

/// Polls every consumer in turn until `done` holds for their assignments, failing after 20 s.
async fn settle(
    consumers: &mut [Consumer],
    done: impl Fn(&[Vec<TopicPartition>]) -> bool,
) -> Vec<ConsumerRecord> {
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let assignments: Vec<_> = consumers.iter().map(Consumer::assignment).collect();
        if done(&assignments) {
            return records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {assignments:?}"
        );
        for consumer in consumers.iter_mut() {
            if let Ok(record) =
                tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await
            {
                records.push(record.unwrap());
            }
        }
    }
}

fn disjoint_cover(assignments: &[Vec<TopicPartition>], total: usize, sizes: &[usize]) -> bool {
    let all: BTreeSet<_> = assignments.iter().flatten().collect();
    let count: usize = assignments.iter().map(Vec::len).sum();
    let mut got: Vec<usize> = assignments.iter().map(Vec::len).collect();
    got.sort_unstable();
    all.len() == total && count == total && got == sizes
}

#[tokio::test]
async fn group_splits_partitions_and_rebalances_when_members_leave_or_die() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "g", 6).await;
    for p in 0..6 {
        produce(&client, "g", p, "v", 10, Compression::None).await;
    }
    let mut consumers = Vec::new();
    let events = Events::default();
    for i in 0..3 {
        let mut c = Consumer::connect(config(&broker, "split")).await.unwrap();
        if i == 0 {
            c.set_rebalance_listener(events.clone());
        }
        c.subscribe(&["g"]).unwrap();
        consumers.push(c);
    }
    let mut records = settle(&mut consumers, |a| disjoint_cover(a, 6, &[2, 2, 2])).await;
    // Range: contiguous pairs.
    for a in consumers.iter().map(Consumer::assignment) {
        assert_eq!(a[1].partition, a[0].partition + 1, "{a:?}");
    }
    // Every record exactly once while the group is stable.
    while records.len() < 60 {
        for c in consumers.iter_mut() {
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), c.recv()).await {
                records.push(r.unwrap());
            }
        }
    }
    let unique: BTreeSet<_> = records.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(unique.len(), 60);
    assert_eq!(records.len(), 60);
    for c in consumers.iter_mut() {
        c.commit().await.unwrap();
    }

    // A clean leave: the other two take over at once.
    let leaving = consumers.pop().unwrap();
    leaving.close().await.unwrap();
    settle(&mut consumers, |a| disjoint_cover(a, 6, &[3, 3])).await;

    // A dead member (dropped without leaving, heartbeats stop): its session expires.
    let dead = consumers.pop().unwrap();
    drop(dead);
    settle(&mut consumers, |a| disjoint_cover(a, 6, &[6])).await;
    // Committed positions carry over: nothing is delivered twice.
    assert!(quiet(&mut consumers[0], Duration::from_millis(500)).await);
    let seen = events.0.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(kind, p)| *kind == "revoked" && p.len() == 2),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(|(k, p)| (*k, p.len())),
        Some(("assigned", 6)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn commit_metadata_is_stored_and_read_back_and_a_too_long_one_is_refused() {
    let mut settings = BROKER.to_vec();
    settings.push(("offset.metadata.max.bytes", "16"));
    let broker = TestBroker::start(&settings).await;
    let client = broker.client().await;
    create_topic(&client, "m", 2).await;

    let mut consumer = Consumer::connect(config(&broker, "meta")).await.unwrap();
    consumer.assign(&[tp("m", 0), tp("m", 1)]).unwrap();
    consumer
        .commit_offsets_with_metadata(&[
            (
                tp("m", 0),
                OffsetAndMetadata::with_metadata(3, "AgAAAAAAAAPo"),
            ),
            (tp("m", 1), OffsetAndMetadata::new(5)),
        ])
        .await
        .unwrap();
    consumer.close().await.unwrap();

    // Read back by another consumer of the group, as a restarted instance would.
    let mut consumer = Consumer::connect(config(&broker, "meta")).await.unwrap();
    consumer.assign(&[tp("m", 0), tp("m", 1)]).unwrap();
    let unknown = tp("m-unknown", 0);
    assert_eq!(
        consumer
            .committed_with_metadata(&[tp("m", 0), tp("m", 1), unknown.clone()])
            .await
            .unwrap(),
        [
            Some(OffsetAndMetadata::with_metadata(3, "AgAAAAAAAAPo")),
            Some(OffsetAndMetadata::new(5)),
            None,
        ]
    );
    assert_eq!(consumer.committed(&[tp("m", 0)]).await.unwrap(), [Some(3)]);

    // One byte over the broker's limit: the commit fails, naming the limit, and stores nothing.
    let err = consumer
        .commit_offsets_with_metadata(&[(
            tp("m", 0),
            OffsetAndMetadata::with_metadata(9, "x".repeat(17)),
        )])
        .await
        .unwrap_err();
    match &err {
        weir_client::Error::Kafka { code, .. } => {
            assert_eq!(*code, ErrorCode::OFFSET_METADATA_TOO_LARGE);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        err.to_string().contains("offset.metadata.max.bytes"),
        "{err}"
    );
    assert_eq!(
        consumer
            .committed_with_metadata(&[tp("m", 0)])
            .await
            .unwrap(),
        [Some(OffsetAndMetadata::with_metadata(3, "AgAAAAAAAAPo"))]
    );
    // Exactly at the limit is accepted.
    consumer
        .commit_offsets_with_metadata(&[(
            tp("m", 0),
            OffsetAndMetadata::with_metadata(9, "x".repeat(16)),
        )])
        .await
        .unwrap();
    assert_eq!(
        consumer
            .committed_with_metadata(&[tp("m", 0)])
            .await
            .unwrap(),
        [Some(OffsetAndMetadata::with_metadata(9, "x".repeat(16)))]
    );
}

#[tokio::test]
async fn commits_survive_a_consumer_restart() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "c", 1).await;
    produce(&client, "c", 0, "v", 10, Compression::None).await;

    let mut cfg = config(&broker, "restart");
    cfg.enable_auto_commit = false;
    let mut consumer = Consumer::connect(cfg.clone()).await.unwrap();
    consumer.subscribe(&["c"]).unwrap();
    let first = recv_n(&mut consumer, 4).await;
    assert_eq!(first[3].offset, 3);
    consumer.commit().await.unwrap();
    assert_eq!(consumer.committed(&[tp("c", 0)]).await.unwrap(), [Some(4)]);
    recv_n(&mut consumer, 2).await; // read but not committed
    consumer.close().await.unwrap();

    let mut consumer = Consumer::connect(cfg).await.unwrap();
    consumer.subscribe(&["c"]).unwrap();
    let rest = recv_n(&mut consumer, 6).await;
    assert_eq!(
        rest.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [4, 5, 6, 7, 8, 9]
    );
    let handle = consumer.commit_async().unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(consumer.committed(&[tp("c", 0)]).await.unwrap(), [Some(10)]);
    consumer.close().await.unwrap();

    // Auto commit when unsubscribing.
    produce(&client, "c", 0, "w", 2, Compression::None).await;
    let mut auto = config(&broker, "restart");
    auto.enable_auto_commit = true;
    let mut consumer = Consumer::connect(auto).await.unwrap();
    consumer.subscribe(&["c"]).unwrap();
    recv_n(&mut consumer, 2).await;
    consumer.unsubscribe().await.unwrap();
    assert!(consumer.assignment().is_empty());
    assert!(quiet(&mut consumer, Duration::from_millis(200)).await);
    consumer.close().await.unwrap();
    let mut consumer = Consumer::connect(config(&broker, "restart")).await.unwrap();
    consumer.assign(&[tp("c", 0)]).unwrap();
    assert_eq!(consumer.committed(&[tp("c", 0)]).await.unwrap(), [Some(12)]);
}

#[tokio::test]
async fn static_member_rejoins_without_a_rebalance() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "s", 4).await;
    let mut a_config = config(&broker, "static");
    a_config.group_instance_id = Some("a".into());
    let mut b_config = config(&broker, "static");
    b_config.group_instance_id = Some("b".into());
    b_config.session_timeout = Duration::from_secs(5);
    let mut consumers = vec![
        Consumer::connect(a_config).await.unwrap(),
        Consumer::connect(b_config.clone()).await.unwrap(),
    ];
    for c in &mut consumers {
        c.subscribe(&["s"]).unwrap();
    }
    settle(&mut consumers, |a| disjoint_cover(a, 4, &[2, 2])).await;
    let generation = consumers[0].group_generation().unwrap().1;
    let b_assignment = consumers[1].assignment();

    // b restarts within its session timeout: same partitions, no new generation for a.
    let b = consumers.pop().unwrap();
    b.close().await.unwrap();
    let mut b = Consumer::connect(b_config).await.unwrap();
    b.subscribe(&["s"]).unwrap();
    consumers.push(b);
    settle(&mut consumers, |a| disjoint_cover(a, 4, &[2, 2])).await;
    assert_eq!(consumers[1].assignment(), b_assignment);
    assert!(quiet(&mut consumers[0], Duration::from_millis(500)).await);
    assert_eq!(consumers[0].group_generation().unwrap().1, generation);
}

#[tokio::test]
async fn cooperative_sticky_moves_partitions_in_two_rounds() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "co", 6).await;
    for p in 0..6 {
        produce(&client, "co", p, "v", 5, Compression::None).await;
    }
    let mut cfg = config(&broker, "coop");
    cfg.assignment_strategy = AssignmentStrategy::CooperativeSticky;
    let first_events = Events::default();
    let mut first = Consumer::connect(cfg.clone()).await.unwrap();
    first.set_rebalance_listener(first_events.clone());
    first.subscribe(&["co"]).unwrap();
    let mut consumers = vec![first];
    let mut records = settle(&mut consumers, |a| disjoint_cover(a, 6, &[6])).await;
    records.extend(recv_n(&mut consumers[0], 30 - records.len()).await);
    let before = consumers[0].assignment();

    for _ in 0..2 {
        let mut c = Consumer::connect(cfg.clone()).await.unwrap();
        c.subscribe(&["co"]).unwrap();
        consumers.push(c);
    }
    settle(&mut consumers, |a| disjoint_cover(a, 6, &[2, 2, 2])).await;
    // The first member kept two of its partitions and was never asked to give up all six.
    let kept = consumers[0].assignment();
    assert!(kept.iter().all(|tp| before.contains(tp)));
    let events = first_events.0.lock().unwrap().clone();
    let revoked: Vec<_> = events.iter().filter(|(k, _)| *k == "revoked").collect();
    assert!(
        !revoked.is_empty() && revoked.iter().all(|(_, p)| p.len() < 6),
        "{events:?}"
    );
    assert!(!events.iter().any(|(k, _)| *k == "lost"));
    // No record was delivered twice across the moves (positions were committed on revoke).
    for c in consumers.iter_mut() {
        assert!(quiet(c, Duration::from_millis(200)).await);
    }
    let mut by_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for r in &records {
        *by_partition.entry(r.partition).or_default() += 1;
    }
    assert!(by_partition.values().all(|&n| n == 5));
}

/// The broker restarts under a group member: fetches and heartbeats fail for a while, then the
/// member carries on from where it stood, without records twice or lost.
#[tokio::test]
async fn a_group_member_carries_on_after_the_broker_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_at(tmp.path(), "127.0.0.1:0", BROKER).await;
    let addr = broker.addr;
    let client = broker.client().await;
    create_topic(&client, "restart", 2).await;
    for p in 0..2 {
        produce(&client, "restart", p, "before", 5, Compression::None).await;
    }
    let mut cfg = config(&broker, "restarting");
    cfg.enable_auto_commit = false;
    let mut consumer = Consumer::connect(cfg).await.unwrap();
    consumer.subscribe(&["restart"]).unwrap();
    let before = recv_n(&mut consumer, 10).await;
    consumer.commit().await.unwrap();

    broker.stop().await;
    let broker = TestBroker::start_at(tmp.path(), &addr.to_string(), BROKER).await;
    let client = broker.client().await;
    for p in 0..2 {
        produce(&client, "restart", p, "after", 5, Compression::None).await;
    }
    let after = recv_n(&mut consumer, 10).await;
    let mut seen: BTreeSet<(i32, i64)> = BTreeSet::new();
    for r in before.iter().chain(&after) {
        assert!(seen.insert((r.partition, r.offset)), "twice: {r:?}");
    }
    assert!(
        after
            .iter()
            .all(|r| r.value.as_deref().unwrap().starts_with(b"after"))
    );
    assert_eq!(
        consumer.committed(&[tp("restart", 0)]).await.unwrap(),
        [Some(5)]
    );
    consumer.close().await.unwrap();
}

/// The leader notices a subscribed topic gaining partitions and the group rebalances onto them.
#[tokio::test]
async fn the_group_rebalances_when_a_topic_gains_partitions() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "grows", 2).await;
    let mut cfg = config(&broker, "growing");
    cfg.client.metadata_max_age = Duration::from_millis(200);
    let mut consumer = Consumer::connect(cfg).await.unwrap();
    consumer.subscribe(&["grows"]).unwrap();
    let mut consumers = vec![consumer];
    settle(&mut consumers, |a| a[0].len() == 2).await;
    let created = weir_client::admin::Admin::from_client(client.clone())
        .create_partitions(&[("grows", 4)])
        .await
        .unwrap();
    created[0].1.as_ref().unwrap();
    settle(&mut consumers, |a| a[0].len() == 4).await;
    produce(&client, "grows", 3, "new", 1, Compression::None).await;
    let record = recv_n(&mut consumers[0], 1).await;
    assert_eq!(record[0].partition, 3);
}

/// A custom assignor: each member's subscription carries `marker`; the leader gives every
/// partition to the member whose marker starts with `take` and sends each member
/// `for <its marker>`. It records what the leader saw and what `on_assignment` heard.
#[derive(Debug)]
struct MarkerAssignor {
    marker: &'static str,
    /// Every member's user data, per `assign` call this instance made as leader.
    led: Mutex<Vec<BTreeSet<String>>>,
    /// What `on_assignment` received, in order.
    heard: Mutex<Vec<(Vec<TopicPartition>, Option<String>)>>,
}

impl MarkerAssignor {
    fn new(marker: &'static str) -> Arc<Self> {
        Arc::new(Self {
            marker,
            led: Mutex::new(Vec::new()),
            heard: Mutex::new(Vec::new()),
        })
    }

    fn last_heard(&self) -> Option<(Vec<TopicPartition>, Option<String>)> {
        self.heard.lock().unwrap().last().cloned()
    }
}

fn text(bytes: Option<&bytes::Bytes>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

impl PartitionAssignor for MarkerAssignor {
    fn name(&self) -> &str {
        "marker"
    }

    fn subscription_user_data(&self, _topics: &[String]) -> Option<bytes::Bytes> {
        Some(bytes::Bytes::from(self.marker))
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[GroupMember],
    ) -> weir_client::Result<BTreeMap<String, MemberAssignment>> {
        let markers: Vec<String> = members
            .iter()
            .map(|m| text(m.user_data.as_ref()).unwrap_or_default())
            .collect();
        self.led
            .lock()
            .unwrap()
            .push(markers.iter().cloned().collect());
        let all: Vec<TopicPartition> = partitions_per_topic
            .iter()
            .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
            .collect();
        Ok(members
            .iter()
            .zip(markers)
            .map(|(m, marker)| {
                let partitions = if marker.starts_with("take") {
                    all.clone()
                } else {
                    Vec::new()
                };
                let message = bytes::Bytes::from(format!("for {marker}"));
                (
                    m.member_id.clone(),
                    MemberAssignment::new(partitions).with_user_data(message),
                )
            })
            .collect())
    }

    fn on_assignment(&self, partitions: &[TopicPartition], user_data: Option<&bytes::Bytes>) {
        self.heard
            .lock()
            .unwrap()
            .push((partitions.to_vec(), text(user_data)));
    }
}

/// Two consumers with a custom assignor: the subscription's user data reaches the leader,
/// the leader's choice (not range's even split) is what the members read, and each member's
/// `on_assignment` gets the leader's message for it before the assignment shows.
#[tokio::test]
async fn a_custom_assignor_carries_user_data_both_ways() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "custom", 4).await;
    let assignors = [
        MarkerAssignor::new("give-c1"),
        MarkerAssignor::new("take-c2"),
    ];
    let mut consumers = Vec::new();
    for assignor in &assignors {
        let mut cfg = config(&broker, "custom-group");
        cfg.custom_assignor = Some(Arc::clone(assignor) as Arc<dyn PartitionAssignor>);
        let mut consumer = Consumer::connect(cfg).await.unwrap();
        consumer.subscribe(&["custom"]).unwrap();
        consumers.push(consumer);
    }
    let all: Vec<TopicPartition> = (0..4).map(|p| tp("custom", p)).collect();
    settle(&mut consumers, |a| {
        a[0].is_empty()
            && a[1] == all
            && assignors[0].last_heard() == Some((Vec::new(), Some("for give-c1".into())))
    })
    .await;
    // The assignment showed only after `on_assignment` heard of it.
    assert_eq!(
        assignors[1].last_heard(),
        Some((all.clone(), Some("for take-c2".into())))
    );
    // Whichever member led saw both markers in one round.
    let both: BTreeSet<String> = ["give-c1".to_string(), "take-c2".to_string()].into();
    let led: Vec<BTreeSet<String>> = assignors
        .iter()
        .flat_map(|a| a.led.lock().unwrap().clone())
        .collect();
    assert!(led.contains(&both), "{led:?}");
    produce(&client, "custom", 3, "v", 2, Compression::None).await;
    let records = recv_n(&mut consumers[1], 2).await;
    assert!(records.iter().all(|r| r.partition == 3));
}

/// Assigns to a member id the group does not have.
#[derive(Debug)]
struct GhostAssignor;

impl PartitionAssignor for GhostAssignor {
    fn name(&self) -> &str {
        "ghost"
    }

    fn assign(
        &self,
        _: &BTreeMap<String, i32>,
        _: &[GroupMember],
    ) -> weir_client::Result<BTreeMap<String, MemberAssignment>> {
        Ok(BTreeMap::from([(
            "ghost".to_string(),
            MemberAssignment::new(vec![tp("ghosts", 0)]),
        )]))
    }
}

/// An assignment naming a member not in the group fails the leader's `recv` with a clear
/// error instead of reaching the coordinator (or panicking).
#[tokio::test]
async fn a_custom_assignment_for_a_stranger_is_an_error() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "ghosts", 1).await;
    let mut cfg = config(&broker, "ghost-group");
    cfg.custom_assignor = Some(Arc::new(GhostAssignor));
    let mut consumer = Consumer::connect(cfg).await.unwrap();
    consumer.subscribe(&["ghosts"]).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .expect("recv returned nothing")
        .expect_err("an invalid assignment was accepted");
    assert!(matches!(err, weir_client::Error::Assignor { .. }), "{err}");
    assert!(err.to_string().contains("not a member"), "{err}");
    assert!(consumer.assignment().is_empty());
    // The next `recv` rejoins: a new generation, refused the same way, not a hang.
    assert_eq!(consumer.group_generation(), None);
    let again = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .expect("the second recv returned nothing")
        .expect_err("an invalid assignment was accepted");
    assert!(
        matches!(again, weir_client::Error::Assignor { .. }),
        "{again}"
    );
}

/// Puts how many times it was asked for its user data in the subscription, so every join
/// brings news; deals the partitions round the members.
#[derive(Debug, Default)]
struct CountingAssignor {
    asked: AtomicUsize,
}

impl PartitionAssignor for CountingAssignor {
    fn name(&self) -> &str {
        "counting"
    }

    fn subscription_user_data(&self, _topics: &[String]) -> Option<bytes::Bytes> {
        let asked = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        Some(bytes::Bytes::from(asked.to_string()))
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[GroupMember],
    ) -> weir_client::Result<BTreeMap<String, MemberAssignment>> {
        let mut out: BTreeMap<String, MemberAssignment> = members
            .iter()
            .map(|m| (m.member_id.clone(), MemberAssignment::default()))
            .collect();
        let all = partitions_per_topic
            .iter()
            .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)));
        for (i, tp) in all.enumerate() {
            let member = &members[i % members.len()].member_id;
            out.get_mut(member).unwrap().partitions.push(tp);
        }
        Ok(out)
    }
}

/// Receives on every consumer in turn until `done` holds for them and the count of records
/// received so far, failing after `within`.
async fn poll_until(
    consumers: &mut [Consumer],
    within: Duration,
    done: impl Fn(&[Consumer], usize) -> bool,
) {
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + within;
    while !done(consumers, received) {
        let state: Vec<_> = consumers
            .iter()
            .map(|c| (c.group_generation(), c.assignment()))
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got there: {state:?}, {received} records"
        );
        for consumer in consumers.iter_mut() {
            if let Ok(record) =
                tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await
            {
                record.unwrap();
                received += 1;
            }
        }
    }
}

/// The one generation every consumer is in, with the partitions split one each.
fn one_generation(consumers: &[Consumer]) -> Option<i32> {
    let generations: BTreeSet<Option<i32>> = consumers
        .iter()
        .map(|c| c.group_generation().map(|(_, g)| g))
        .collect();
    let assignments: Vec<_> = consumers.iter().map(Consumer::assignment).collect();
    match generations.into_iter().collect::<Vec<_>>()[..] {
        [Some(generation)] if disjoint_cover(&assignments, 2, &[1, 1]) => Some(generation),
        _ => None,
    }
}

/// `enforce_rebalance` (Java's `enforceRebalance`): refused without a subscription; on a
/// subscribed member, the next `recv` rejoins with fresh user data, the group moves to a
/// new generation that every member joins, and records flow again after it.
#[tokio::test]
async fn enforce_rebalance_rejoins_the_group_with_fresh_user_data() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "enforced", 2).await;
    let idle = Consumer::connect(config(&broker, "enforced-group"))
        .await
        .unwrap();
    assert!(matches!(
        idle.enforce_rebalance(),
        Err(weir_client::Error::IllegalState(_))
    ));
    let assignors = [
        Arc::new(CountingAssignor::default()),
        Arc::new(CountingAssignor::default()),
    ];
    let mut consumers = Vec::new();
    for assignor in &assignors {
        let mut cfg = config(&broker, "enforced-group");
        cfg.custom_assignor = Some(Arc::clone(assignor) as Arc<dyn PartitionAssignor>);
        let mut consumer = Consumer::connect(cfg).await.unwrap();
        consumer.subscribe(&["enforced"]).unwrap();
        consumers.push(consumer);
    }
    poll_until(&mut consumers, Duration::from_secs(20), |c, _| {
        one_generation(c).is_some()
    })
    .await;
    // Quiet for a while: no rebalance is under way by itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = one_generation(&consumers).unwrap();
    let asked = assignors[1].asked.load(Ordering::SeqCst);
    consumers[1].enforce_rebalance().unwrap();
    // Asking again before the rejoin changes nothing.
    consumers[1].enforce_rebalance().unwrap();
    // At once, not at some later rebalance.
    poll_until(&mut consumers, Duration::from_secs(5), |c, _| {
        one_generation(c).is_some_and(|g| g > before)
    })
    .await;
    assert!(assignors[1].asked.load(Ordering::SeqCst) > asked);
    produce(&client, "enforced", 0, "a", 1, Compression::None).await;
    produce(&client, "enforced", 1, "b", 1, Compression::None).await;
    poll_until(&mut consumers, Duration::from_secs(20), |_, received| {
        received == 2
    })
    .await;
}
