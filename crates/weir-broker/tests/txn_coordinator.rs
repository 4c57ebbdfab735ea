//! Kafka transactions end to end against an in-process broker: librdkafka transactional
//! producers (`init_transactions`, `begin_transaction`, `commit_transaction`,
//! `abort_transaction`, `send_offsets_to_transaction`) through Weir's transaction coordinator,
//! read back by `read_committed` consumers; fencing by a second producer with the same
//! transactional id; a transaction timed out and aborted by the coordinator; the coordinator's
//! state after a restart; the admin APIs (DescribeTransactions, ListTransactions) with the raw
//! client.
//!
//! librdkafka's transactional calls block; they run in `block_in_place` on a multi-threaded
//! runtime so the broker, on the same runtime, keeps serving meanwhile.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on any error"
)]

#[expect(
    unreachable_pub,
    reason = "support items are pub for every test binary that includes the module"
)]
mod support;

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use support::{RawClient, TestBroker};
use weir_protocol::ErrorCode;
use weir_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_protocol::messages::{
    AddPartitionsToTxnRequest, ApiVersionsRequest, DescribeTransactionsRequest, EndTxnRequest,
    FindCoordinatorRequest, InitProducerIdRequest, ListTransactionsRequest, ProduceRequest,
};
use weir_records::{Record, RecordBatchBuilder};

const WAIT: Duration = Duration::from_secs(30);

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn client_config(broker: &TestBroker) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.addr.to_string())
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000");
    config
}

/// A transactional producer, its transactions initialized.
fn txn_producer(broker: &TestBroker, id: &str, settings: &[(&str, &str)]) -> FutureProducer {
    let mut config = client_config(broker);
    config
        .set("transactional.id", id)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let producer: FutureProducer = config.create().expect("producer");
    blocking(|| producer.init_transactions(WAIT)).expect("init_transactions");
    producer
}

async fn send(producer: &FutureProducer, topic: &str, partition: i32, value: &str) {
    producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(value),
            WAIT,
        )
        .await
        .map_err(|(e, _)| e)
        .expect("send");
}

fn reader(broker: &TestBroker, isolation: &str, topic: &str, partitions: i32) -> StreamConsumer {
    let consumer: StreamConsumer = client_config(broker)
        .set("group.id", format!("reader-{isolation}-{topic}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "100")
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

/// The values delivered at `isolation`: exactly `count`, then nothing for a while; sorted.
async fn consume(
    broker: &TestBroker,
    isolation: &str,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<String> {
    let consumer = reader(broker, isolation, topic, partitions);
    let deadline = Instant::now() + WAIT;
    let mut values = Vec::new();
    while values.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => {
                values.push(String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap())
            }
            Ok(Err(e)) => eprintln!("consumer error (retried): {e}"),
            Err(_) => panic!("{isolation}: received only {values:?}"),
        }
    }
    if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
        panic!(
            "{isolation}: unexpected record {:?} at offset {}",
            m.payload().map(String::from_utf8_lossy),
            m.offset()
        );
    }
    // librdkafka's consumer close can block; leave it to a thread.
    std::thread::spawn(move || drop(consumer));
    values.sort();
    values
}

fn strings(values: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The state and partitions DescribeTransactions reports for `id` at this (single) broker.
async fn describe(client: &mut RawClient, id: &str) -> (i16, String, i64, i16, Vec<(String, i32)>) {
    let response = client
        .send(
            DescribeTransactionsRequest {
                transactional_ids: vec![id.into()],
                ..Default::default()
            },
            0,
        )
        .await;
    let s = &response.transaction_states[0];
    let partitions = s
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), *p)))
        .collect();
    (
        s.error_code,
        s.transaction_state.clone(),
        s.producer_id,
        s.producer_epoch,
        partitions,
    )
}

/// Waits until DescribeTransactions reports `state` for `id`.
async fn wait_for_state(client: &mut RawClient, id: &str, state: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let described = describe(client, id).await;
        if described.1 == state {
            return;
        }
        assert!(Instant::now() < deadline, "{id}: still {described:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transactions_are_read_and_aborted_ones_are_not() {
    let broker = TestBroker::start(&[("num.partitions", "3")]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "orders").await;

    // The transactional APIs are advertised.
    let versions = client.send(ApiVersionsRequest::default(), 3).await;
    for (key, max) in [(24, 5), (25, 4), (26, 5), (28, 5), (65, 0), (66, 1)] {
        let api = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key)
            .unwrap_or_else(|| panic!("API {key} not advertised"));
        assert_eq!(api.max_version, max, "API {key}");
    }

    let producer = txn_producer(&broker, "orders-tx", &[]);
    blocking(|| producer.begin_transaction()).expect("begin");
    for (p, v) in [(0, "c1"), (1, "c2"), (2, "c3"), (0, "c4")] {
        send(&producer, "orders", p, v).await;
    }
    blocking(|| producer.commit_transaction(WAIT)).expect("commit");

    blocking(|| producer.begin_transaction()).expect("begin");
    for (p, v) in [(0, "a1"), (1, "a2"), (2, "a3")] {
        send(&producer, "orders", p, v).await;
    }
    blocking(|| producer.abort_transaction(WAIT)).expect("abort");

    blocking(|| producer.begin_transaction()).expect("begin");
    for (p, v) in [(1, "c5"), (2, "c6")] {
        send(&producer, "orders", p, v).await;
    }
    blocking(|| producer.commit_transaction(WAIT)).expect("commit");

    assert_eq!(
        consume(&broker, "read_committed", "orders", 3, 6).await,
        strings(&["c1", "c2", "c3", "c4", "c5", "c6"])
    );
    assert_eq!(
        consume(&broker, "read_uncommitted", "orders", 3, 9).await,
        strings(&["a1", "a2", "a3", "c1", "c2", "c3", "c4", "c5", "c6"])
    );

    // The coordinator's view: the last transaction completed, with the producer's identity.
    wait_for_state(&mut client, "orders-tx", "CompleteCommit").await;
    let (code, _, producer_id, epoch, _) = describe(&mut client, "orders-tx").await;
    assert_eq!((code, epoch), (0, 0));
    let listed = client
        .send(
            ListTransactionsRequest {
                state_filters: vec!["CompleteCommit".into(), "Bogus".into()],
                duration_filter: -1,
                ..Default::default()
            },
            1,
        )
        .await;
    assert_eq!(listed.error_code, 0);
    assert_eq!(listed.unknown_state_filters, vec!["Bogus".to_string()]);
    assert!(
        listed
            .transaction_states
            .iter()
            .any(|t| t.transactional_id == "orders-tx" && t.producer_id == producer_id),
        "{listed:?}"
    );
    // An id nobody used.
    let (code, ..) = describe(&mut client, "nobody").await;
    assert_eq!(code, ErrorCode::TRANSACTIONAL_ID_NOT_FOUND.code());

    std::thread::spawn(move || drop(producer));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "fenced").await;

    let first = txn_producer(&broker, "fence-tx", &[]);
    blocking(|| first.begin_transaction()).expect("begin");
    send(&first, "fenced", 0, "zombie").await;

    // The second InitProducerId aborts the first producer's open transaction and bumps the
    // epoch.
    let second = txn_producer(&broker, "fence-tx", &[]);
    let committed = blocking(|| first.commit_transaction(WAIT));
    let error = committed.expect_err("the fenced producer's commit must fail");
    let KafkaError::Transaction(e) = &error else {
        panic!("unexpected error {error:?}");
    };
    assert!(e.is_fatal(), "fencing is fatal: {e:?}");

    blocking(|| second.begin_transaction()).expect("begin");
    send(&second, "fenced", 0, "current").await;
    blocking(|| second.commit_transaction(WAIT)).expect("commit");

    assert_eq!(
        consume(&broker, "read_committed", "fenced", 1, 1).await,
        strings(&["current"])
    );
    let (code, state, _, epoch, _) = describe(&mut client, "fence-tx").await;
    assert_eq!((code, state.as_str()), (0, "CompleteCommit"));
    // Epoch 0 for the first producer, 1 for the fencing abort, 2 for the second producer.
    assert_eq!(epoch, 2);

    std::thread::spawn(move || {
        drop(first);
        drop(second);
    });
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_times_out_and_is_aborted_by_the_coordinator() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "slow").await;

    let producer = txn_producer(
        &broker,
        "slow-tx",
        &[
            ("transaction.timeout.ms", "2000"),
            ("socket.timeout.ms", "2000"),
            ("message.timeout.ms", "2000"),
        ],
    );
    blocking(|| producer.begin_transaction()).expect("begin");
    send(&producer, "slow", 0, "too-late").await;
    let (_, state, ..) = describe(&mut client, "slow-tx").await;
    assert_eq!(state, "Ongoing");

    // The coordinator aborts it once the timeout passes, bumping the epoch.
    wait_for_state(&mut client, "slow-tx", "CompleteAbort").await;
    let (_, _, _, epoch, _) = describe(&mut client, "slow-tx").await;
    assert_eq!(epoch, 1);
    let committed = blocking(|| producer.commit_transaction(WAIT));
    assert!(committed.is_err(), "a timed-out transaction cannot commit");

    // The abort marker ended the transaction: the partition's last stable offset moved past it
    // and a new producer's records are readable.
    std::thread::spawn(move || drop(producer));
    let next = txn_producer(&broker, "slow-tx-2", &[]);
    blocking(|| next.begin_transaction()).expect("begin");
    send(&next, "slow", 0, "on-time").await;
    blocking(|| next.commit_transaction(WAIT)).expect("commit");
    assert_eq!(
        consume(&broker, "read_committed", "slow", 1, 1).await,
        strings(&["on-time"])
    );
    std::thread::spawn(move || drop(next));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_to_a_transaction_are_committed_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let props = [("group.initial.rebalance.delay.ms", "0")];
    let broker = TestBroker::start_in(tmp.path(), &props).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "in").await;
    support::auto_create_topic(&mut client, "out").await;

    // Input records, written plainly.
    let plain: FutureProducer = client_config(&broker).create().expect("producer");
    for n in 0..6 {
        send(&plain, "in", 0, &format!("in-{n}")).await;
    }

    let consumer: StreamConsumer = client_config(&broker)
        .set("group.id", "transformer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&["in"]).expect("subscribe");
    let producer = txn_producer(&broker, "transformer-tx", &[]);

    let committed = |consumer: &StreamConsumer| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("in", 0);
        let c = blocking(|| consumer.committed_offsets(tpl, WAIT)).expect("committed");
        c.find_partition("in", 0).expect("partition").offset()
    };

    // consume-transform-produce, committed: 3 records in, 3 out, offset 3.
    // And then 3 more, aborted: the offset stays.
    for (round, commit) in [(0, true), (1, false)] {
        blocking(|| producer.begin_transaction()).expect("begin");
        for _ in 0..3 {
            let m = tokio::time::timeout(WAIT, consumer.recv())
                .await
                .expect("a record in time")
                .expect("a record");
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            send(&producer, "out", 0, &format!("out-{value}")).await;
        }
        let position = consumer.position().expect("position");
        let metadata = consumer.group_metadata().expect("group metadata");
        blocking(|| producer.send_offsets_to_transaction(&position, &metadata, WAIT))
            .expect("send_offsets_to_transaction");
        // Not visible before the transaction ends. (librdkafka's read_committed consumer asks
        // for stable offsets, and would be told to retry until then: KIP-447.)
        let before = committed_offset(&mut client, "transformer", "in").await;
        if round == 0 {
            assert_eq!(before, -1, "offsets visible before the commit");
            blocking(|| producer.commit_transaction(WAIT)).expect("commit");
        } else {
            assert_eq!(before, 3);
            blocking(|| producer.abort_transaction(WAIT)).expect("abort");
        }
        let mut client = broker.client().await;
        let state = if commit {
            "CompleteCommit"
        } else {
            "CompleteAbort"
        };
        wait_for_state(&mut client, "transformer-tx", state).await;
        assert_eq!(committed(&consumer), Offset::Offset(3), "round {round}");
    }
    assert_eq!(
        consume(&broker, "read_committed", "out", 1, 3).await,
        strings(&["out-in-0", "out-in-1", "out-in-2"])
    );
    std::thread::spawn(move || {
        drop(consumer);
        drop(producer);
        drop(plain);
    });
    broker.stop().await;

    // Replayed after a restart: the committed transaction's offset, not the aborted one's.
    let broker = TestBroker::start_in(tmp.path(), &props).await;
    let mut client = broker.client().await;
    assert_eq!(committed_offset(&mut client, "transformer", "in").await, 3);
    broker.stop().await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A transactional batch of `values` from (producer id, epoch, first sequence).
fn txn_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    builder
        .producer(producer_id, epoch, sequence)
        .transactional(true);
    for value in values {
        builder.push(Record::new(now_ms(), None, Some(value.as_bytes())));
    }
    builder.build().unwrap()
}

async fn init(client: &mut RawClient, id: &str, producer: (i64, i16)) -> (i16, i64, i16) {
    let r = client
        .send(
            InitProducerIdRequest {
                transactional_id: Some(id.into()),
                transaction_timeout_ms: 60_000,
                producer_id: producer.0,
                producer_epoch: producer.1,
                ..Default::default()
            },
            4,
        )
        .await;
    (r.error_code, r.producer_id, r.producer_epoch)
}

/// A transactional batch (first sequence 0) to `durable` partition 0; its error code.
async fn produce_txn(
    client: &mut RawClient,
    id: &str,
    producer_id: i64,
    epoch: i16,
    values: &[&str],
) -> i16 {
    produce_txn_at(client, id, (producer_id, epoch, 0), values, 9).await
}

/// A transactional batch from (producer id, epoch, first sequence) to `durable` partition 0
/// with Produce `version`; its error code.
async fn produce_txn_at(
    client: &mut RawClient,
    id: &str,
    (producer_id, epoch, sequence): (i64, i16, i32),
    values: &[&str],
    version: i16,
) -> i16 {
    let produced = client
        .send(
            ProduceRequest {
                transactional_id: Some(id.into()),
                acks: -1,
                timeout_ms: 30_000,
                topic_data: vec![TopicProduceData {
                    name: "durable".into(),
                    partition_data: vec![PartitionProduceData {
                        index: 0,
                        records: Some(txn_batch(producer_id, epoch, sequence, values)),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
            version,
        )
        .await;
    produced.responses[0].partition_responses[0].error_code
}

/// InitProducerId, retried while the coordinator answers with a retriable error.
async fn init_until_ok(client: &mut RawClient, id: &str) -> (i64, i16) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, producer_id, epoch) = init(client, id, (-1, -1)).await;
        if code == 0 {
            return (producer_id, epoch);
        }
        assert!(
            ErrorCode(code).is_retriable() && Instant::now() < deadline,
            "InitProducerId: {}",
            ErrorCode(code).name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_state_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let broker = TestBroker::start_in(&dir, &[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "durable").await;

    // FindCoordinator names this broker (the leader of the id's partition).
    let found = client
        .send(
            FindCoordinatorRequest {
                key: "durable-tx".into(),
                key_type: 1,
                ..Default::default()
            },
            2,
        )
        .await;
    assert_eq!(
        (found.error_code, found.port),
        (0, i32::from(broker.addr.port()))
    );

    // A transaction left open: InitProducerId, AddPartitionsToTxn, a transactional batch.
    let (producer_id, epoch) = init_until_ok(&mut client, "durable-tx").await;
    assert_eq!(epoch, 0);
    // KIP-890 part 1: a transactional batch for a partition not added to the transaction is
    // refused, so it cannot open a transaction nothing will end.
    let refused = produce_txn(&mut client, "durable-tx", producer_id, epoch, &["stray"]).await;
    assert_eq!(refused, ErrorCode::INVALID_TXN_STATE.code());
    let added = client
        .send(
            AddPartitionsToTxnRequest {
                v3_and_below_transactional_id: "durable-tx".into(),
                v3_and_below_producer_id: producer_id,
                v3_and_below_producer_epoch: epoch,
                v3_and_below_topics: vec![AddPartitionsToTxnTopic {
                    name: "durable".into(),
                    partitions: vec![0],
                    ..Default::default()
                }],
                ..Default::default()
            },
            3,
        )
        .await;
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    let produced = produce_txn(
        &mut client,
        "durable-tx",
        producer_id,
        epoch,
        &["open-1", "open-2"],
    )
    .await;
    assert_eq!(produced, 0);
    drop(client);
    broker.stop().await;

    // After the restart the coordinator loads the id from `__transaction_state`.
    let broker = TestBroker::start_in(&dir, &[]).await;
    let mut client = broker.client().await;
    let deadline = Instant::now() + WAIT;
    let described = loop {
        let d = describe(&mut client, "durable-tx").await;
        if d.0 == 0 {
            break d;
        }
        assert!(Instant::now() < deadline, "{d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        described,
        (
            0,
            "Ongoing".to_string(),
            producer_id,
            0,
            vec![("durable".to_string(), 0)]
        )
    );

    // A new producer instance fences the open transaction (aborted) and continues.
    let producer = txn_producer(&broker, "durable-tx", &[]);
    let (_, state, same_id, epoch, _) = describe(&mut client, "durable-tx").await;
    assert_eq!((state.as_str(), same_id, epoch), ("Empty", producer_id, 2));
    blocking(|| producer.begin_transaction()).expect("begin");
    send(&producer, "durable", 0, "after-restart").await;
    blocking(|| producer.commit_transaction(WAIT)).expect("commit");
    assert_eq!(
        consume(&broker, "read_committed", "durable", 1, 1).await,
        strings(&["after-restart"])
    );
    std::thread::spawn(move || drop(producer));
    broker.stop().await;
}

/// The committed offset of `group` for partition 0 of `topic` (-1: none), retried while the
/// coordinator loads.
async fn committed_offset(client: &mut RawClient, group: &str, topic: &str) -> i64 {
    use weir_protocol::messages::OffsetFetchRequest;
    use weir_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let deadline = Instant::now() + WAIT;
    loop {
        let response = client
            .send(
                OffsetFetchRequest {
                    group_id: group.into(),
                    topics: Some(vec![OffsetFetchRequestTopic {
                        name: topic.into(),
                        partition_indexes: vec![0],
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                5,
            )
            .await;
        if response.error_code == 0 {
            return response.topics[0].partitions[0].committed_offset;
        }
        assert!(
            Instant::now() < deadline,
            "OffsetFetch: {}",
            ErrorCode(response.error_code).name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Evaluates `$send` (an error code) until it is not a retriable error; the last code.
macro_rules! until_settled {
    ($send:expr) => {{
        let deadline = Instant::now() + WAIT;
        loop {
            let code: i16 = $send;
            if code == 0 || !ErrorCode(code).is_retriable() || Instant::now() > deadline {
                break code;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

/// TxnOffsetCommit's offsets are written to `__consumer_offsets` as the producer's
/// transactional batch: after a restart in the middle of the transaction they are still
/// pending (not visible), and the commit makes them the group's offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_transactional_offsets_survive_a_restart() {
    use weir_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use weir_protocol::messages::{AddOffsetsToTxnRequest, EndTxnRequest, TxnOffsetCommitRequest};
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "durable").await;
    let (producer_id, epoch) = init_until_ok(&mut client, "offsets-tx").await;
    let added = until_settled!({
        let request = AddOffsetsToTxnRequest {
            transactional_id: "offsets-tx".into(),
            producer_id,
            producer_epoch: epoch,
            group_id: "offsets-group".into(),
            ..Default::default()
        };
        client.send(request, 3).await.error_code
    });
    assert_eq!(added, 0);
    let committed = until_settled!({
        let request = TxnOffsetCommitRequest {
            transactional_id: "offsets-tx".into(),
            group_id: "offsets-group".into(),
            producer_id,
            producer_epoch: epoch,
            generation_id: -1,
            topics: vec![TxnOffsetCommitRequestTopic {
                name: "durable".into(),
                partitions: vec![TxnOffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: 42,
                    committed_leader_epoch: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        client.send(request, 3).await.topics[0].partitions[0].error_code
    });
    assert_eq!(committed, 0);
    assert_eq!(
        committed_offset(&mut client, "offsets-group", "durable").await,
        -1
    );
    drop(client);
    broker.stop().await;

    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut client = broker.client().await;
    assert_eq!(
        committed_offset(&mut client, "offsets-group", "durable").await,
        -1
    );
    // KIP-447: a consumer that wants stable offsets is told to retry while one is pending.
    let stable = client
        .send(
            weir_protocol::messages::OffsetFetchRequest {
                group_id: "offsets-group".into(),
                topics: Some(vec![
                    weir_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic {
                        name: "durable".into(),
                        partition_indexes: vec![0],
                        ..Default::default()
                    },
                ]),
                require_stable: true,
                ..Default::default()
            },
            7,
        )
        .await;
    assert_eq!(
        stable.topics[0].partitions[0].error_code,
        ErrorCode::UNSTABLE_OFFSET_COMMIT.code()
    );
    let ended = until_settled!({
        let request = EndTxnRequest {
            transactional_id: "offsets-tx".into(),
            producer_id,
            producer_epoch: epoch,
            committed: true,
            ..Default::default()
        };
        client.send(request, 3).await.error_code
    });
    assert_eq!(ended, 0);
    wait_for_state(&mut client, "offsets-tx", "CompleteCommit").await;
    assert_eq!(
        committed_offset(&mut client, "offsets-group", "durable").await,
        42
    );

    // And once more after a restart: the committed transaction's offsets replay as committed.
    drop(client);
    broker.stop().await;
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut client = broker.client().await;
    assert_eq!(
        committed_offset(&mut client, "offsets-group", "durable").await,
        42
    );
    broker.stop().await;
}

/// A transactional id idle for `transactional.id.expiration.ms` is deleted (a tombstone in
/// `__transaction_state`): DescribeTransactions no longer finds it, also after a restart, and
/// the next InitProducerId starts it afresh with a new producer id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_transactional_id_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let props = [("transactional.id.expiration.ms", "1000")];
    let broker = TestBroker::start_in(tmp.path(), &props).await;
    let mut client = broker.client().await;
    let (producer_id, _) = init_until_ok(&mut client, "idle-tx").await;
    let (code, state, ..) = describe(&mut client, "idle-tx").await;
    assert_eq!((code, state.as_str()), (0, "Empty"));
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, ..) = describe(&mut client, "idle-tx").await;
        if code == ErrorCode::TRANSACTIONAL_ID_NOT_FOUND.code() {
            break;
        }
        assert!(Instant::now() < deadline, "idle-tx never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    broker.stop().await;

    let broker = TestBroker::start_in(tmp.path(), &props).await;
    let mut client = broker.client().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, ..) = describe(&mut client, "idle-tx").await;
        if code == ErrorCode::TRANSACTIONAL_ID_NOT_FOUND.code() {
            break;
        }
        // Loading after the restart.
        assert!(
            ErrorCode(code).is_retriable() && Instant::now() < deadline,
            "after the restart: {}",
            ErrorCode(code).name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (again, epoch) = init_until_ok(&mut client, "idle-tx").await;
    assert_eq!(epoch, 0);
    assert_ne!(again, producer_id);
    broker.stop().await;
}

/// EndTxn v5: (error, producer id, producer epoch) of the answer.
async fn end_txn_v5(
    client: &mut RawClient,
    id: &str,
    producer: (i64, i16),
    commit: bool,
) -> (i16, i64, i16) {
    let r = client
        .send(
            EndTxnRequest {
                transactional_id: id.into(),
                producer_id: producer.0,
                producer_epoch: producer.1,
                committed: commit,
                ..Default::default()
            },
            5,
        )
        .await;
    (r.error_code, r.producer_id, r.producer_epoch)
}

/// Transaction version 2 (KIP-890 part 2) as the Java client from 4.0 speaks it, on the raw
/// protocol: ApiVersions finalizes `transaction.version` 2; a Produce v12 needs no
/// AddPartitionsToTxn (the leader adds the partition to the transaction), while v11 still
/// does; EndTxn v5 bumps the epoch, the next transaction starts at sequence 0 with it, and a
/// late batch at the old epoch is fenced. With `weir.transaction.version=0` nothing is
/// finalized and EndTxn v5 keeps the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_version_2_adds_partitions_implicitly_and_bumps_the_epoch() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "durable").await;
    let versions = client.send(ApiVersionsRequest::default(), 3).await;
    let finalized: Vec<(String, i16)> = versions
        .finalized_features
        .iter()
        .map(|f| (f.name.clone(), f.max_version_level))
        .collect();
    assert_eq!(finalized, vec![("transaction.version".to_string(), 2)]);
    assert!(versions.finalized_features_epoch >= 0);

    let id = "tv2-tx";
    let (pid, epoch) = init_until_ok(&mut client, id).await;
    // Produce v11 is the classic protocol: the partition must have been added.
    let classic = produce_txn_at(&mut client, id, (pid, epoch, 0), &["classic"], 11).await;
    assert_eq!(classic, ErrorCode::INVALID_TXN_STATE.code());
    // Produce v12: the leader adds it, which opens the transaction.
    let added = produce_txn_at(&mut client, id, (pid, epoch, 0), &["tv2-a", "tv2-b"], 12).await;
    assert_eq!(added, 0, "{}", ErrorCode(added).name());
    let (_, state, _, _, partitions) = describe(&mut client, id).await;
    assert_eq!(
        (state.as_str(), partitions),
        ("Ongoing", vec![("durable".to_string(), 0)])
    );
    // EndTxn v5 commits and bumps the epoch.
    assert_eq!(
        end_txn_v5(&mut client, id, (pid, epoch), true).await,
        (0, pid, epoch + 1)
    );
    wait_for_state(&mut client, id, "CompleteCommit").await;
    // A late batch at the old epoch is fenced; the new epoch starts over at sequence 0.
    let late = produce_txn_at(&mut client, id, (pid, epoch, 2), &["late"], 12).await;
    assert_eq!(late, ErrorCode::INVALID_PRODUCER_EPOCH.code());
    let next = produce_txn_at(&mut client, id, (pid, epoch + 1, 0), &["tv2-c"], 12).await;
    assert_eq!(next, 0, "{}", ErrorCode(next).name());
    assert_eq!(
        end_txn_v5(&mut client, id, (pid, epoch + 1), false).await,
        (0, pid, epoch + 2)
    );
    wait_for_state(&mut client, id, "CompleteAbort").await;
    assert_eq!(
        consume(&broker, "read_committed", "durable", 1, 2).await,
        strings(&["tv2-a", "tv2-b"])
    );
    drop(client);
    broker.stop().await;

    // Level 0: nothing finalized, EndTxn v5 keeps the epoch (and v12 verifies, as v11).
    let broker = TestBroker::start(&[("weir.transaction.version", "0")]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "durable").await;
    let versions = client.send(ApiVersionsRequest::default(), 3).await;
    assert!(versions.finalized_features.is_empty());
    let (pid, epoch) = init_until_ok(&mut client, id).await;
    let refused = produce_txn_at(&mut client, id, (pid, epoch, 0), &["x"], 12).await;
    assert_eq!(refused, ErrorCode::INVALID_TXN_STATE.code());
    let added = client
        .send(
            AddPartitionsToTxnRequest {
                v3_and_below_transactional_id: id.into(),
                v3_and_below_producer_id: pid,
                v3_and_below_producer_epoch: epoch,
                v3_and_below_topics: vec![AddPartitionsToTxnTopic {
                    name: "durable".into(),
                    partitions: vec![0],
                    ..Default::default()
                }],
                ..Default::default()
            },
            3,
        )
        .await;
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    let produced = produce_txn_at(&mut client, id, (pid, epoch, 0), &["x"], 12).await;
    assert_eq!(produced, 0, "{}", ErrorCode(produced).name());
    assert_eq!(
        end_txn_v5(&mut client, id, (pid, epoch), true).await,
        (0, pid, epoch)
    );
}
