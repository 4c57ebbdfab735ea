//! The transactional producer and `read_committed` consumer against an in-process broker:
//! commit and abort, interleaved transactions of two producers, fencing, offsets sent to a
//! transaction, misuse, and interop with librdkafka (the `rdkafka` crate) both ways.
//!
//! Reads never rely on a quiet period: each test ends its data with a committed sentinel
//! record, and a reader that reaches the sentinel has seen everything before it.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test"
)]

#[allow(unreachable_pub, reason = "support is shared by several test crates")]
mod support;

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{TestBroker, create_topic, end_offset};
use weir_client::Error;
use weir_client::consumer::{
    Consumer, ConsumerConfig, ConsumerGroupMetadata, IsolationLevel, OffsetAndMetadata,
    OffsetReset, TopicPartition,
};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_protocol::ErrorCode;

const WAIT: Duration = Duration::from_secs(30);
const SENTINEL: &str = "end";

/// Fast groups, and few `__transaction_state` partitions so the topic is quick to create.
const BROKER: &[(&str, &str)] = &[
    ("group.min.session.timeout.ms", "500"),
    ("group.initial.rebalance.delay.ms", "0"),
    ("transaction.state.log.num.partitions", "4"),
];

fn producer_config(broker: &TestBroker, transactional_id: Option<&str>) -> ProducerConfig {
    let mut config = ProducerConfig::new(broker.config());
    config.max_block = Duration::from_secs(20);
    if let Some(id) = transactional_id {
        config.set("transactional.id", id).unwrap();
    }
    config
}

/// A transactional producer, its transactions initialized.
async fn txn_producer(broker: &TestBroker, id: &str) -> Producer {
    let producer = Producer::connect(producer_config(broker, Some(id)))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    producer
}

/// Sends and waits for the acknowledgement, so the record is in the log whatever happens to
/// its transaction.
async fn send(producer: &Producer, topic: &str, partition: i32, value: &str) {
    producer
        .send(
            ProducerRecord::new(topic)
                .partition(partition)
                .value(value.to_string()),
        )
        .await
        .unwrap();
}

/// Commits a transaction holding only the sentinel on each of `partitions`.
async fn commit_sentinel(producer: &Producer, topic: &str, partitions: i32) {
    producer.begin_transaction().unwrap();
    for p in 0..partitions {
        send(producer, topic, p, SENTINEL).await;
    }
    producer.commit_transaction().await.unwrap();
}

fn reader_config(broker: &TestBroker, isolation: IsolationLevel) -> ConsumerConfig {
    ConsumerConfig {
        client: broker.config(),
        auto_offset_reset: OffsetReset::Earliest,
        enable_auto_commit: false,
        fetch_max_wait: Duration::from_millis(100),
        isolation_level: isolation,
        ..ConsumerConfig::default()
    }
}

/// Every value of `topic`'s `partitions` before their sentinels, read at `isolation`, per
/// partition in offset order; then checks that the position moved past the sentinel's
/// commit marker to the log end (control batches do not stall the consumer).
async fn read(
    broker: &TestBroker,
    isolation: IsolationLevel,
    topic: &str,
    partitions: i32,
) -> Vec<Vec<String>> {
    let mut consumer = Consumer::connect(reader_config(broker, isolation))
        .await
        .unwrap();
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(&tps).unwrap();
    let mut values = vec![Vec::new(); partitions as usize];
    let mut done = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while done.len() < partitions as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        let record = tokio::time::timeout(left, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{isolation:?}: only {values:?} before the deadline"))
            .unwrap();
        let value = String::from_utf8(record.value.unwrap_or_default().to_vec()).unwrap();
        assert!(
            !done.contains(&record.partition),
            "{isolation:?}: {value} after the sentinel"
        );
        if value == SENTINEL {
            done.insert(record.partition);
        } else {
            values[record.partition as usize].push(value);
        }
    }
    let client = broker.client().await;
    for tp in &tps {
        let end = end_offset(&client, topic, tp.partition).await;
        let deadline = Instant::now() + WAIT;
        loop {
            // Reading on processes the trailing marker; there is no record to return.
            let _ = tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await;
            let position = consumer.position(tp).await.unwrap();
            if position >= end {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{isolation:?}: position {position} never reached the log end {end}"
            );
        }
    }
    values
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[tokio::test]
async fn committed_transactions_are_read_and_aborted_ones_are_not() {
    let broker = TestBroker::start(BROKER).await;
    create_topic(&broker.client().await, "orders", 2).await;
    let producer = txn_producer(&broker, "orders-tx").await;

    producer.begin_transaction().unwrap();
    send(&producer, "orders", 0, "c1").await;
    send(&producer, "orders", 1, "c2").await;
    producer.commit_transaction().await.unwrap();

    producer.begin_transaction().unwrap();
    send(&producer, "orders", 0, "a1").await;
    send(&producer, "orders", 1, "a2").await;
    producer.abort_transaction().await.unwrap();

    producer.begin_transaction().unwrap();
    send(&producer, "orders", 1, "c3").await;
    producer.commit_transaction().await.unwrap();
    commit_sentinel(&producer, "orders", 2).await;

    let committed = read(&broker, IsolationLevel::ReadCommitted, "orders", 2).await;
    assert_eq!(committed, [strings(&["c1"]), strings(&["c2", "c3"])]);
    let all = read(&broker, IsolationLevel::ReadUncommitted, "orders", 2).await;
    assert_eq!(all, [strings(&["c1", "a1"]), strings(&["c2", "a2", "c3"])]);
}

/// Records still in the producer's buffer when the transaction aborts are never sent; the
/// next transaction goes on normally.
#[tokio::test]
async fn an_abort_discards_records_not_yet_sent() {
    let broker = TestBroker::start(BROKER).await;
    create_topic(&broker.client().await, "lingering", 1).await;
    let mut config = producer_config(&broker, Some("lingering-tx"));
    config.set("linger.ms", "60000").unwrap();
    let producer = Producer::connect(config).await.unwrap();
    producer.init_transactions().await.unwrap();

    producer.begin_transaction().unwrap();
    let unsent = producer
        .enqueue(ProducerRecord::new("lingering").partition(0).value("x"))
        .await
        .unwrap();
    producer.abort_transaction().await.unwrap();
    let err = unsent.await.unwrap_err();
    assert!(matches!(err, Error::TransactionAborted), "{err}");

    producer.begin_transaction().unwrap();
    let kept = producer
        .enqueue(ProducerRecord::new("lingering").partition(0).value("y"))
        .await
        .unwrap();
    let sentinel = producer
        .enqueue(
            ProducerRecord::new("lingering")
                .partition(0)
                .value(SENTINEL),
        )
        .await
        .unwrap();
    // The commit sends what lingers.
    producer.commit_transaction().await.unwrap();
    assert_eq!(kept.await.unwrap().offset, 0);
    assert_eq!(sentinel.await.unwrap().offset, 1);
    let all = read(&broker, IsolationLevel::ReadUncommitted, "lingering", 1).await;
    assert_eq!(all, [strings(&["y"])]);
}

#[tokio::test]
async fn interleaved_transactions_of_two_producers_read_back_committed() {
    let broker = TestBroker::start(BROKER).await;
    create_topic(&broker.client().await, "mixed", 1).await;
    let p = txn_producer(&broker, "mixed-p").await;
    let q = txn_producer(&broker, "mixed-q").await;

    p.begin_transaction().unwrap();
    q.begin_transaction().unwrap();
    send(&p, "mixed", 0, "p1").await;
    send(&q, "mixed", 0, "q1").await;
    send(&p, "mixed", 0, "p2").await;
    send(&q, "mixed", 0, "q2").await;
    p.abort_transaction().await.unwrap();
    send(&q, "mixed", 0, "q3").await;
    p.begin_transaction().unwrap();
    send(&p, "mixed", 0, "p3").await;
    q.commit_transaction().await.unwrap();
    q.begin_transaction().unwrap();
    send(&q, "mixed", 0, "q4").await;
    send(&p, "mixed", 0, "p4").await;
    p.commit_transaction().await.unwrap();
    q.abort_transaction().await.unwrap();
    commit_sentinel(&p, "mixed", 1).await;

    let committed = read(&broker, IsolationLevel::ReadCommitted, "mixed", 1).await;
    assert_eq!(committed, [strings(&["q1", "q2", "q3", "p3", "p4"])]);
    let all = read(&broker, IsolationLevel::ReadUncommitted, "mixed", 1).await;
    assert_eq!(
        all,
        [strings(&["p1", "q1", "p2", "q2", "q3", "p3", "q4", "p4"])]
    );
}

#[tokio::test]
async fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let broker = TestBroker::start(BROKER).await;
    create_topic(&broker.client().await, "fenced", 1).await;
    let first = txn_producer(&broker, "fenced-tx").await;
    first.begin_transaction().unwrap();
    send(&first, "fenced", 0, "f1").await;
    let (first_id, first_epoch) = first.producer_id().unwrap();

    // Aborts the first one's open transaction and bumps the epoch.
    let second = txn_producer(&broker, "fenced-tx").await;
    let (second_id, second_epoch) = second.producer_id().unwrap();
    assert_eq!(second_id, first_id);
    assert!(second_epoch > first_epoch);

    let err = first
        .send(ProducerRecord::new("fenced").partition(0).value("f2"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Some(ErrorCode::INVALID_PRODUCER_EPOCH | ErrorCode::PRODUCER_FENCED)
        ),
        "{err}"
    );
    let err = first.commit_transaction().await.unwrap_err();
    assert!(matches!(err, Error::FatalTransaction { .. }), "{err}");
    assert_eq!(err.code(), Some(ErrorCode::PRODUCER_FENCED), "{err}");
    // Fatal: every later call says so.
    let err = first.abort_transaction().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PRODUCER_FENCED), "{err}");
    let err = first.begin_transaction().unwrap_err();
    assert!(matches!(err, Error::FatalTransaction { .. }), "{err}");

    second.begin_transaction().unwrap();
    send(&second, "fenced", 0, "g1").await;
    second.commit_transaction().await.unwrap();
    commit_sentinel(&second, "fenced", 1).await;
    let committed = read(&broker, IsolationLevel::ReadCommitted, "fenced", 1).await;
    assert_eq!(committed, [strings(&["g1"])]);
}

/// The group's committed offset of `tp` once it equals `want` (offsets of a committed
/// transaction become visible when the coordinator writes its marker, just after the commit
/// returns).
async fn await_committed(consumer: &mut Consumer, tp: &TopicPartition, want: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let committed = consumer.committed(std::slice::from_ref(tp)).await.unwrap()[0];
        if committed == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "committed offset {committed:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn offsets_sent_to_a_transaction_commit_with_it_and_not_when_it_aborts() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "in", 1).await;
    create_topic(&client, "out", 1).await;
    let plain = Producer::connect(producer_config(&broker, None))
        .await
        .unwrap();
    for i in 0..6 {
        send(&plain, "in", 0, &format!("v{i}")).await;
    }

    let mut config = ConsumerConfig::new(&broker.addr.to_string(), "ctp");
    config.client = broker.config();
    config.auto_offset_reset = OffsetReset::Earliest;
    config.enable_auto_commit = false;
    config.isolation_level = IsolationLevel::ReadCommitted;
    config.session_timeout = Duration::from_millis(1500);
    config.heartbeat_interval = Duration::from_millis(100);
    config.fetch_max_wait = Duration::from_millis(100);
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.subscribe(&["in"]).unwrap();
    let producer = txn_producer(&broker, "ctp-tx").await;
    let input = TopicPartition::new("in", 0);

    // Three records per transaction: the first commits, the second aborts.
    for commit in [true, false] {
        producer.begin_transaction().unwrap();
        let mut next = 0;
        for _ in 0..3 {
            let record = tokio::time::timeout(WAIT, consumer.recv())
                .await
                .unwrap()
                .unwrap();
            let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            send(&producer, "out", 0, &value.to_uppercase()).await;
            next = record.offset + 1;
        }
        let group = consumer.group_metadata().unwrap();
        assert_eq!(group.group_id, "ctp");
        assert!(group.generation_id >= 1, "{group:?}");
        assert!(!group.member_id.is_empty());
        producer
            .send_offsets_to_transaction(&[(input.clone(), OffsetAndMetadata::new(next))], &group)
            .await
            .unwrap();
        if commit {
            producer.commit_transaction().await.unwrap();
            await_committed(&mut consumer, &input, 3).await;
        } else {
            producer.abort_transaction().await.unwrap();
        }
    }
    // The next transaction starts only once the abort's markers are written, so afterwards the
    // group's offsets are final.
    commit_sentinel(&producer, "out", 1).await;
    assert_eq!(
        consumer
            .committed(std::slice::from_ref(&input))
            .await
            .unwrap(),
        [Some(3)]
    );
    let output = read(&broker, IsolationLevel::ReadCommitted, "out", 1).await;
    assert_eq!(output, [strings(&["V0", "V1", "V2"])]);

    // A member whose generation is not the group's (a zombie after a rebalance) is refused,
    // and the transaction must abort.
    let mut stale = consumer.group_metadata().unwrap();
    stale.generation_id += 1;
    producer.begin_transaction().unwrap();
    let err = producer
        .send_offsets_to_transaction(&[(input.clone(), OffsetAndMetadata::new(6))], &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AbortableTransaction { .. }), "{err}");
    assert_eq!(err.code(), Some(ErrorCode::ILLEGAL_GENERATION), "{err}");
    producer.abort_transaction().await.unwrap();

    // Offsets of a group with no members (generation -1) are accepted too.
    producer.begin_transaction().unwrap();
    producer
        .send_offsets_to_transaction(
            &[(TopicPartition::new("in", 0), OffsetAndMetadata::new(5))],
            &ConsumerGroupMetadata::new("standalone"),
        )
        .await
        .unwrap();
    producer.commit_transaction().await.unwrap();
}

#[tokio::test]
async fn calls_in_the_wrong_state_are_clear_errors() {
    let broker = TestBroker::start(BROKER).await;
    create_topic(&broker.client().await, "misuse", 1).await;
    let producer = Producer::connect(producer_config(&broker, Some("misuse-tx")))
        .await
        .unwrap();
    let record = || ProducerRecord::new("misuse").partition(0).value("x");

    let err = producer.send(record()).await.unwrap_err();
    assert!(
        matches!(&err, Error::IllegalState(m) if m.contains("init_transactions")),
        "{err}"
    );
    assert!(matches!(
        producer.begin_transaction(),
        Err(Error::IllegalState(_))
    ));

    producer.init_transactions().await.unwrap();
    assert!(matches!(
        producer.init_transactions().await,
        Err(Error::IllegalState(_))
    ));
    let err = producer.send(record()).await.unwrap_err();
    assert!(
        matches!(&err, Error::IllegalState(m) if m.contains("begin_transaction")),
        "{err}"
    );
    let err = producer.commit_transaction().await.unwrap_err();
    assert!(
        matches!(&err, Error::IllegalState(m) if m.contains("commit_transaction")),
        "{err}"
    );
    assert!(matches!(
        producer.abort_transaction().await,
        Err(Error::IllegalState(_))
    ));
    let offsets = [(TopicPartition::new("misuse", 0), OffsetAndMetadata::new(1))];
    assert!(matches!(
        producer
            .send_offsets_to_transaction(&offsets, &ConsumerGroupMetadata::new("g"))
            .await,
        Err(Error::IllegalState(_))
    ));

    producer.begin_transaction().unwrap();
    assert!(matches!(
        producer.begin_transaction(),
        Err(Error::IllegalState(_))
    ));
    // Misuse did not break the producer: a transaction still commits.
    send(&producer, "misuse", 0, "ok").await;
    producer.commit_transaction().await.unwrap();
    // An empty transaction commits without asking the coordinator.
    producer.begin_transaction().unwrap();
    producer.commit_transaction().await.unwrap();

    // Transactions need a transactional.id.
    let plain = Producer::connect(producer_config(&broker, None))
        .await
        .unwrap();
    assert!(matches!(
        plain.init_transactions().await,
        Err(Error::IllegalState(_))
    ));
    assert!(matches!(
        plain.begin_transaction(),
        Err(Error::IllegalState(_))
    ));
    // And idempotence.
    let mut config = producer_config(&broker, Some("x"));
    config.set("enable.idempotence", "false").unwrap();
    assert!(matches!(
        Producer::connect(config).await,
        Err(Error::Config { .. })
    ));
}

fn rd_config(broker: &TestBroker) -> RdConfig {
    let mut config = RdConfig::new();
    config
        .set("bootstrap.servers", broker.addr.to_string())
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000");
    config
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn rd_send(producer: &FutureProducer, topic: &str, value: &str) {
    producer
        .send(
            FutureRecord::<(), _>::to(topic).partition(0).payload(value),
            WAIT,
        )
        .await
        .map_err(|(e, _)| e)
        .expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_our_committed_transactions_and_we_read_its() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "ours", 1).await;
    create_topic(&client, "theirs", 1).await;

    // weir-client writes, librdkafka reads read_committed.
    let producer = txn_producer(&broker, "ours-tx").await;
    producer.begin_transaction().unwrap();
    send(&producer, "ours", 0, "w1").await;
    send(&producer, "ours", 0, "w2").await;
    producer.commit_transaction().await.unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "ours", 0, "wx").await;
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "ours", 0, "w3").await;
    producer.commit_transaction().await.unwrap();
    commit_sentinel(&producer, "ours", 1).await;

    let consumer: StreamConsumer = rd_config(&broker)
        .set("group.id", "ours-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("ours", 0, Offset::Beginning)
        .expect("offset");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("librdkafka read only {seen:?}"))
            .expect("recv");
        let value = String::from_utf8(message.payload().unwrap_or_default().to_vec()).unwrap();
        if value == SENTINEL {
            break;
        }
        seen.push(value);
    }
    assert_eq!(seen, strings(&["w1", "w2", "w3"]));

    // librdkafka writes, weir-client reads read_committed.
    let theirs: FutureProducer = rd_config(&broker)
        .set("transactional.id", "theirs-tx")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    blocking(|| theirs.init_transactions(WAIT)).expect("init_transactions");
    theirs.begin_transaction().expect("begin");
    rd_send(&theirs, "theirs", "r1").await;
    rd_send(&theirs, "theirs", "r2").await;
    blocking(|| theirs.commit_transaction(WAIT)).expect("commit");
    theirs.begin_transaction().expect("begin");
    rd_send(&theirs, "theirs", "rx").await;
    rd_send(&theirs, "theirs", "ry").await;
    blocking(|| theirs.abort_transaction(WAIT)).expect("abort");
    theirs.begin_transaction().expect("begin");
    rd_send(&theirs, "theirs", "r3").await;
    rd_send(&theirs, "theirs", SENTINEL).await;
    blocking(|| theirs.commit_transaction(WAIT)).expect("commit");

    let committed = read(&broker, IsolationLevel::ReadCommitted, "theirs", 1).await;
    assert_eq!(committed, [strings(&["r1", "r2", "r3"])]);
    let all = read(&broker, IsolationLevel::ReadUncommitted, "theirs", 1).await;
    assert_eq!(all, [strings(&["r1", "r2", "rx", "ry", "r3"])]);
}

/// A record the broker refuses makes the transaction abortable: the commit fails and
/// commits nothing, the abort succeeds, and since the refused batch left a gap in the
/// partition's sequence, the abort bumps the epoch so the next transaction starts again at
/// sequence 0 and commits.
#[tokio::test]
async fn a_failed_record_makes_the_commit_fail_and_the_abort_recover() {
    let mut props = BROKER.to_vec();
    props.push(("message.max.bytes", "4096"));
    let broker = TestBroker::start(&props).await;
    create_topic(&broker.client().await, "refused", 1).await;
    let producer = txn_producer(&broker, "refused-tx").await;
    let (_, epoch) = producer.producer_id().unwrap();

    producer.begin_transaction().unwrap();
    send(&producer, "refused", 0, "lost").await;
    let err = producer
        .send(
            ProducerRecord::new("refused")
                .partition(0)
                .value(vec![b'x'; 10_000]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MESSAGE_TOO_LARGE), "{err}");
    let err = producer.commit_transaction().await.unwrap_err();
    assert!(matches!(err, Error::AbortableTransaction { .. }), "{err}");
    assert_eq!(err.code(), Some(ErrorCode::MESSAGE_TOO_LARGE), "{err}");
    // Sends are refused until the abort.
    let err = producer
        .send(ProducerRecord::new("refused").partition(0).value("no"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AbortableTransaction { .. }), "{err}");
    producer.abort_transaction().await.unwrap();
    let (_, bumped) = producer.producer_id().unwrap();
    assert!(bumped > epoch, "epoch {epoch} not bumped: {bumped}");

    producer.begin_transaction().unwrap();
    send(&producer, "refused", 0, "kept").await;
    producer.commit_transaction().await.unwrap();

    // A record refused before it reached a batch (no partition 7) makes the transaction
    // abortable too, so the commit cannot leave it out unnoticed.
    producer.begin_transaction().unwrap();
    send(&producer, "refused", 0, "also lost").await;
    let err = producer
        .send(ProducerRecord::new("refused").partition(7).value("nowhere"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
        "{err}"
    );
    let err = producer.commit_transaction().await.unwrap_err();
    assert!(matches!(err, Error::AbortableTransaction { .. }), "{err}");
    producer.abort_transaction().await.unwrap();
    commit_sentinel(&producer, "refused", 1).await;
    let committed = read(&broker, IsolationLevel::ReadCommitted, "refused", 1).await;
    assert_eq!(committed, [strings(&["kept"])]);
}

/// `auto.offset.reset=latest` lists offsets at the consumer's isolation level: a
/// read_committed consumer starts at the last stable offset, before an open transaction, and
/// reads that transaction once it commits; a read_uncommitted one starts at the high
/// watermark, after it.
#[tokio::test]
async fn latest_is_the_last_stable_offset_for_read_committed() {
    let broker = TestBroker::start(BROKER).await;
    create_topic(&broker.client().await, "open", 1).await;
    let producer = txn_producer(&broker, "open-tx").await;
    producer.begin_transaction().unwrap();
    send(&producer, "open", 0, "c0").await;
    producer.commit_transaction().await.unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "open", 0, "o1").await;
    send(&producer, "open", 0, "o2").await;
    // c0 at 0, its marker at 1 (written before o1 was accepted: the coordinator adds no
    // partition to the next transaction until the markers are written), the open transaction
    // from 2.
    let tp = TopicPartition::new("open", 0);
    let mut positions = Vec::new();
    let mut readers = Vec::new();
    for isolation in [
        IsolationLevel::ReadCommitted,
        IsolationLevel::ReadUncommitted,
    ] {
        let mut config = reader_config(&broker, isolation);
        config.auto_offset_reset = OffsetReset::Latest;
        let mut consumer = Consumer::connect(config).await.unwrap();
        consumer.assign(std::slice::from_ref(&tp)).unwrap();
        positions.push(consumer.position(&tp).await.unwrap());
        readers.push(consumer);
    }
    assert_eq!(positions, [2, 4]);
    // Lag is measured to the last stable offset: nothing to read yet, though the high
    // watermark is 2 records further.
    let committed = &mut readers[0];
    let deadline = Instant::now() + WAIT;
    let lag = loop {
        let _ = tokio::time::timeout(Duration::from_millis(50), committed.recv()).await;
        if let Some(lag) = committed.current_lag(&tp) {
            break lag;
        }
        assert!(Instant::now() < deadline, "no fetch answered");
    };
    assert_eq!(lag, 0);
    producer.commit_transaction().await.unwrap();
    commit_sentinel(&producer, "open", 1).await;
    let deadline = Instant::now() + WAIT;
    let mut values = Vec::new();
    let committed = &mut readers[0];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let record = tokio::time::timeout(left, committed.recv())
            .await
            .unwrap_or_else(|_| panic!("read only {values:?}"))
            .unwrap();
        let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
        if value == SENTINEL {
            break;
        }
        values.push(value);
    }
    assert_eq!(values, strings(&["o1", "o2"]));
}

/// The last stable offset of a partition (ListOffsets latest at isolation level 1).
async fn last_stable_offset(client: &weir_client::Client, topic: &str, partition: i32) -> i64 {
    use weir_protocol::messages::ListOffsetsRequest;
    use weir_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let leader = client.leader_for(topic, partition).await.unwrap();
    let (response, _) = client
        .send_to(
            leader,
            ListOffsetsRequest {
                replica_id: -1,
                isolation_level: 1,
                topics: vec![ListOffsetsTopic {
                    name: topic.into(),
                    partitions: vec![ListOffsetsPartition {
                        partition_index: partition,
                        current_leader_epoch: -1,
                        timestamp: -1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// `transaction.timeout.ms` reaches the coordinator: a transaction left open longer is
/// aborted by it (the last stable offset moves past it), and the producer, whose epoch the
/// abort bumped, is fenced.
#[tokio::test]
async fn the_coordinator_aborts_a_transaction_open_past_its_timeout() {
    let broker = TestBroker::start(BROKER).await;
    let client = broker.client().await;
    create_topic(&client, "slow", 1).await;
    let mut config = producer_config(&broker, Some("slow-tx"));
    config.set("transaction.timeout.ms", "1000").unwrap();
    let producer = Producer::connect(config).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "slow", 0, "late").await;
    assert_eq!(last_stable_offset(&client, "slow", 0).await, 0);

    let deadline = Instant::now() + WAIT;
    while last_stable_offset(&client, "slow", 0).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the transaction was never aborted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = producer.commit_transaction().await.unwrap_err();
    assert!(matches!(err, Error::FatalTransaction { .. }), "{err}");
    assert_eq!(err.code(), Some(ErrorCode::PRODUCER_FENCED), "{err}");

    let next = txn_producer(&broker, "slow-tx").await;
    commit_sentinel(&next, "slow", 1).await;
    let committed = read(&broker, IsolationLevel::ReadCommitted, "slow", 1).await;
    assert!(committed[0].is_empty(), "{committed:?}");
}

/// A broker that names itself the coordinator and answers every InitProducerId with
/// COORDINATOR_LOAD_IN_PROGRESS, counting them.
async fn loading_coordinator(attempts: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use weir_protocol::ApiKey;
    use weir_protocol::header::{decode_request, encode_response};
    use weir_protocol::messages::api_versions_response::ApiVersion;
    use weir_protocol::messages::metadata_response::MetadataResponseBroker;
    use weir_protocol::messages::{
        ApiVersionsResponse, FindCoordinatorResponse, InitProducerIdResponse, MetadataResponse,
        RequestBody,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = i32::from(listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let attempts = attempts.clone();
            tokio::spawn(async move {
                loop {
                    let mut size = [0u8; 4];
                    if socket.read_exact(&mut size).await.is_err() {
                        return;
                    }
                    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
                    socket.read_exact(&mut frame).await.unwrap();
                    let request = decode_request(frame.into()).unwrap();
                    let version = request.header.request_api_version;
                    let id = request.header.correlation_id;
                    let mut out = bytes::BytesMut::new();
                    match request.body {
                        RequestBody::ApiVersions(_) => {
                            let keys = [
                                ApiKey::ApiVersions,
                                ApiKey::Metadata,
                                ApiKey::FindCoordinator,
                                ApiKey::InitProducerId,
                            ];
                            let response = ApiVersionsResponse {
                                api_keys: keys
                                    .iter()
                                    .map(|k| ApiVersion {
                                        api_key: *k as i16,
                                        min_version: 0,
                                        max_version: k.valid_versions().max,
                                        ..Default::default()
                                    })
                                    .collect(),
                                ..Default::default()
                            };
                            encode_response(&mut out, ApiKey::ApiVersions, version, id, &response)
                        }
                        RequestBody::Metadata(_) => {
                            let response = MetadataResponse {
                                brokers: vec![MetadataResponseBroker {
                                    node_id: 7,
                                    host: "127.0.0.1".into(),
                                    port,
                                    ..Default::default()
                                }],
                                ..Default::default()
                            };
                            encode_response(&mut out, ApiKey::Metadata, version, id, &response)
                        }
                        RequestBody::FindCoordinator(_) => {
                            let response = FindCoordinatorResponse {
                                node_id: 7,
                                host: "127.0.0.1".into(),
                                port,
                                ..Default::default()
                            };
                            encode_response(
                                &mut out,
                                ApiKey::FindCoordinator,
                                version,
                                id,
                                &response,
                            )
                        }
                        RequestBody::InitProducerId(_) => {
                            attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let response = InitProducerIdResponse {
                                error_code: ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.code(),
                                producer_id: -1,
                                producer_epoch: -1,
                                ..Default::default()
                            };
                            encode_response(
                                &mut out,
                                ApiKey::InitProducerId,
                                version,
                                id,
                                &response,
                            )
                        }
                        _ => return,
                    }
                    .unwrap();
                    socket.write_all(&out).await.unwrap();
                }
            });
        }
    });
    format!("127.0.0.1:{port}")
}

/// init_transactions retries a coordinator that keeps loading for `max.block.ms`, then gives
/// up with the coordinator's error, and may be called again.
#[tokio::test]
async fn init_transactions_gives_up_after_max_block() {
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = loading_coordinator(attempts.clone()).await;
    let mut config = ProducerConfig::new(weir_client::ClientConfig::new(&addr));
    config
        .set("transactional.id", "loading")
        .unwrap()
        .set("max.block.ms", "400")
        .unwrap();
    let producer = Producer::connect(config).await.unwrap();
    let started = Instant::now();
    let err = producer.init_transactions().await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        err.code(),
        Some(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS),
        "{err}"
    );
    assert!(err.to_string().contains("max.block.ms"), "{err}");
    assert!(took >= Duration::from_millis(400), "gave up after {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(attempts.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    // Not initialized, not broken: the call may be repeated.
    let err = producer.init_transactions().await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS),
        "{err}"
    );
    assert!(matches!(
        producer.begin_transaction(),
        Err(Error::IllegalState(_))
    ));
}
