//! The partition side of transactions against an in-process broker: transactional batches from
//! producer ids that InitProducerId handed out, WriteTxnMarkers COMMIT and ABORT, the last
//! stable offset in Fetch and ListOffsets, librdkafka consumers at both isolation levels, and
//! all of it again after restarts (from the producer state snapshot, and rebuilt from the log
//! with a lost transaction index). The test plays the transaction coordinator (its own tests are
//! in txn_coordinator.rs).
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
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use std::time::{Duration, Instant};
use support::{RawClient, TestBroker};
use weir_protocol::ErrorCode;
use weir_protocol::messages::describe_producers_request;
use weir_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir_protocol::messages::fetch_response::PartitionData;
use weir_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_protocol::messages::produce_response::PartitionProduceResponse;
use weir_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use weir_protocol::messages::{
    ApiVersionsRequest, DescribeProducersRequest, FetchRequest, InitProducerIdRequest,
    ListOffsetsRequest, ProduceRequest, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use weir_records::{Record, RecordBatchBuilder, RecordBatches};

const TOPIC: &str = "txn";
const WAIT: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A batch of `values`; `producer` is (id, epoch, first sequence, transactional).
fn batch(producer: Option<(i64, i16, i32, bool)>, values: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    if let Some((id, epoch, sequence, transactional)) = producer {
        builder
            .producer(id, epoch, sequence)
            .transactional(transactional);
    }
    for value in values {
        builder.push(Record::new(now_ms(), None, Some(value.as_bytes())));
    }
    builder.build().unwrap()
}

async fn produce(client: &mut RawClient, records: Bytes) -> PartitionProduceResponse {
    let request = ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: TOPIC.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = client.send(request, 9).await;
    response.responses[0].partition_responses[0].clone()
}

/// Produces and checks the batch landed at `offset`.
async fn produce_at(client: &mut RawClient, records: Bytes, offset: i64) {
    let p = produce(client, records).await;
    assert_eq!((p.error_code, p.base_offset), (0, offset), "{p:?}");
}

async fn init_producer_id(client: &mut RawClient) -> i64 {
    let init = client.send(InitProducerIdRequest::default(), 4).await;
    assert_eq!((init.error_code, init.producer_epoch), (0, 0));
    init.producer_id
}

/// One marker: (producer id, producer epoch, commit, coordinator epoch, [(topic, partitions)]).
type Marker<'a> = (i64, i16, bool, i32, &'a [(&'a str, &'a [i32])]);

async fn write_markers(
    client: &mut RawClient,
    markers: &[Marker<'_>],
    version: i16,
) -> WriteTxnMarkersResponse {
    let request = WriteTxnMarkersRequest {
        markers: markers
            .iter()
            .map(
                |&(producer_id, producer_epoch, commit, coordinator_epoch, topics)| {
                    WritableTxnMarker {
                        producer_id,
                        producer_epoch,
                        transaction_result: commit,
                        coordinator_epoch,
                        topics: topics
                            .iter()
                            .map(|(name, partitions)| WritableTxnMarkerTopic {
                                name: (*name).into(),
                                partition_indexes: partitions.to_vec(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }
                },
            )
            .collect(),
        ..Default::default()
    };
    client.send(request, version).await
}

/// The error code of every partition of a WriteTxnMarkers response, in order.
fn codes(response: &WriteTxnMarkersResponse) -> Vec<(i64, String, i32, i16)> {
    response
        .markers
        .iter()
        .flat_map(|m| {
            m.topics.iter().flat_map(move |t| {
                t.partitions.iter().map(move |p| {
                    (
                        m.producer_id,
                        t.name.clone(),
                        p.partition_index,
                        p.error_code,
                    )
                })
            })
        })
        .collect()
}

async fn fetch(client: &mut RawClient, offset: i64, isolation_level: i8) -> PartitionData {
    let data = try_fetch(client, offset, isolation_level).await;
    assert_eq!(data.error_code, 0);
    data
}

/// A fetch of partition 0 from `offset`, whatever its error code.
async fn try_fetch(client: &mut RawClient, offset: i64, isolation_level: i8) -> PartitionData {
    let request = FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 50 << 20,
        isolation_level,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: TOPIC.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = client.send(request, 12).await;
    assert_eq!(response.error_code, 0);
    response.responses[0].partitions[0].clone()
}

/// (offset, value, from a transaction) of every data record in a fetch response.
fn data_records(data: &PartitionData) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for batch in RecordBatches::new(data.records.clone().unwrap_or_default()) {
        let batch = batch.unwrap();
        if batch.attributes().is_control() {
            continue;
        }
        for r in batch.records().unwrap() {
            let r = r.unwrap();
            out.push((
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    out
}

/// ListOffsets "latest" at an isolation level.
async fn latest(client: &mut RawClient, isolation_level: i8) -> i64 {
    let response = client
        .send(
            ListOffsetsRequest {
                replica_id: -1,
                isolation_level,
                topics: vec![ListOffsetsTopic {
                    name: TOPIC.into(),
                    partitions: vec![ListOffsetsPartition {
                        partition_index: 0,
                        current_leader_epoch: -1,
                        timestamp: -1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
            7,
        )
        .await;
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// A librdkafka consumer of partition 0 from the beginning at `isolation`.
fn reader(broker: &TestBroker, isolation: &str) -> StreamConsumer {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.addr.to_string())
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("group.id", format!("txn-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("partition offset");
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// The values librdkafka delivers at `isolation`: exactly `count`, then nothing for a while.
async fn consume(broker: &TestBroker, isolation: &str, count: usize) -> Vec<String> {
    let consumer = reader(broker, isolation);
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
        panic!("{isolation}: unexpected record at offset {}", m.offset());
    }
    // librdkafka's consumer close can block; leave it to a thread.
    std::thread::spawn(move || drop(consumer));
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_decide_what_read_committed_consumers_see_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, TOPIC).await;
    let versions = client.send(ApiVersionsRequest::default(), 3).await;
    let advertised = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == 27)
        .expect("WriteTxnMarkers advertised");
    assert_eq!((advertised.min_version, advertised.max_version), (1, 2));
    let (p1, p2, p3) = (
        init_producer_id(&mut client).await,
        init_producer_id(&mut client).await,
        init_producer_id(&mut client).await,
    );

    // 0: plain; 1-2: producer 1's transaction; 3-4: producer 2's; 5: producer 1's again.
    produce_at(&mut client, batch(None, &["plain-0"]), 0).await;
    produce_at(&mut client, batch(Some((p1, 0, 0, true)), &["c1", "c2"]), 1).await;
    produce_at(&mut client, batch(Some((p2, 0, 0, true)), &["a1", "a2"]), 3).await;
    produce_at(&mut client, batch(Some((p1, 0, 2, true)), &["c3"]), 5).await;
    // Transactional batches are deduplicated like idempotent ones.
    let retry = produce(&mut client, batch(Some((p1, 0, 2, true)), &["c3"])).await;
    assert_eq!((retry.error_code, retry.base_offset), (0, 5));
    // Both transactions open: the last stable offset is where producer 1's starts.
    assert_eq!(latest(&mut client, 1).await, 1);
    assert_eq!(latest(&mut client, 0).await, 6);
    let open = fetch(&mut client, 0, 1).await;
    assert_eq!((open.high_watermark, open.last_stable_offset), (6, 1));
    assert_eq!(data_records(&open), vec![(0, "plain-0".to_string())]);
    assert_eq!(fetch(&mut client, 0, 0).await.last_stable_offset, 1);
    assert_eq!(data_records(&fetch(&mut client, 0, 0).await).len(), 6);
    // A read_committed fetch at the last stable offset gets nothing yet.
    assert!(data_records(&fetch(&mut client, 1, 1).await).is_empty());

    // The coordinator aborts producer 2 (marker at 6) and commits producer 1 (at 7), v1.
    let response = write_markers(
        &mut client,
        &[
            (p2, 0, false, 0, &[(TOPIC, &[0])]),
            (p1, 0, true, 0, &[(TOPIC, &[0])]),
        ],
        1,
    )
    .await;
    assert_eq!(
        codes(&response),
        vec![(p2, TOPIC.into(), 0, 0), (p1, TOPIC.into(), 0, 0)]
    );
    assert_eq!(latest(&mut client, 1).await, 8);
    // 8: producer 3 opens a transaction (left open); 9: plain.
    produce_at(&mut client, batch(Some((p3, 0, 0, true)), &["open-1"]), 8).await;
    produce_at(&mut client, batch(None, &["plain-1"]), 9).await;
    // DescribeProducers: every producer's epoch, last sequence, marker coordinator epoch, and
    // where producer 3's open transaction starts; a missing partition is reported as such.
    let described = client
        .send(
            DescribeProducersRequest {
                topics: vec![describe_producers_request::TopicRequest {
                    name: TOPIC.into(),
                    partition_indexes: vec![0, 7],
                    ..Default::default()
                }],
                ..Default::default()
            },
            0,
        )
        .await;
    let partitions = &described.topics[0].partitions;
    assert_eq!(partitions[0].error_code, 0);
    let mut producers: Vec<_> = partitions[0]
        .active_producers
        .iter()
        .map(|p| {
            (
                p.producer_id,
                p.producer_epoch,
                p.last_sequence,
                p.coordinator_epoch,
                p.current_txn_start_offset,
            )
        })
        .collect();
    producers.sort();
    let mut expected = vec![(p1, 0, 2, 0, -1), (p2, 0, 1, 0, -1), (p3, 0, 0, -1, 8)];
    expected.sort();
    assert_eq!(producers, expected);
    assert!(partitions[0].active_producers[0].last_timestamp > 0);
    assert_eq!(
        (partitions[1].partition_index, partitions[1].error_code),
        (7, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code())
    );

    // Bad input: unknown topics and partitions, stale producer and coordinator epochs, a plain
    // batch in the middle of a transaction. None of it changes producer 3's transaction.
    let response = write_markers(
        &mut client,
        &[
            (p1, 0, true, 0, &[("no-such-topic", &[0]), (TOPIC, &[7])]),
            // Producer 1's epoch moves to 1 (ending nothing); then epoch 0 is stale.
            (p1, 1, true, 3, &[(TOPIC, &[0])]),
            (p1, 0, true, 3, &[(TOPIC, &[0])]),
            // A coordinator older than producer 1's last marker's.
            (p1, 1, true, 2, &[(TOPIC, &[0])]),
        ],
        2,
    )
    .await;
    assert_eq!(
        codes(&response),
        vec![
            (
                p1,
                "no-such-topic".into(),
                0,
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
            ),
            (
                p1,
                TOPIC.into(),
                7,
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
            ),
            (p1, TOPIC.into(), 0, 0),
            (
                p1,
                TOPIC.into(),
                0,
                ErrorCode::INVALID_PRODUCER_EPOCH.code()
            ),
            (
                p1,
                TOPIC.into(),
                0,
                ErrorCode::TRANSACTION_COORDINATOR_FENCED.code()
            ),
        ]
    );
    // That marker took offset 10.
    let mixed = produce(&mut client, batch(Some((p3, 0, 1, false)), &["x"])).await;
    assert_eq!(mixed.error_code, ErrorCode::INVALID_TXN_STATE.code());
    // A client cannot write a marker itself.
    let forged = weir_records::EndTransactionMarker::abort(0)
        .batch_builder(p3, 0, now_ms())
        .build()
        .unwrap();
    let forged = produce(&mut client, forged).await;
    assert_eq!(forged.error_code, ErrorCode::INVALID_RECORD.code());
    let stale = produce(&mut client, batch(Some((p1, 0, 3, true)), &["x"])).await;
    assert_eq!(stale.error_code, ErrorCode::INVALID_PRODUCER_EPOCH.code());
    // The high watermark counts the marker at 10 too.
    let hw = fetch(&mut client, 0, 0).await.high_watermark;
    assert_eq!(hw, 11);
    check_state(&broker, p2).await;

    // A clean restart: the producer state comes from its snapshot, the index from its file.
    broker.stop().await;
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    check_state(&broker, p2).await;

    // As after a crash that lost both the snapshot and the transaction index entry: the state
    // is rebuilt by scanning the log, and the entry restored from the ABORT marker.
    broker.stop().await;
    let partition_dir = dir.path().join(format!("{TOPIC}-0"));
    let txn_index = partition_dir.join(format!("{:020}.txnindex", 0));
    assert_eq!(std::fs::metadata(&txn_index).unwrap().len(), 34);
    std::fs::remove_file(&txn_index).unwrap();
    std::fs::remove_file(partition_dir.join("producer-state.json")).unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    check_state(&broker, p2).await;
    assert_eq!(std::fs::metadata(&txn_index).unwrap().len(), 34);

    // Producer 3 commits: everything is stable.
    let mut client = broker.client().await;
    let response = write_markers(&mut client, &[(p3, 0, true, 0, &[(TOPIC, &[0])])], 2).await;
    assert_eq!(codes(&response), vec![(p3, TOPIC.into(), 0, 0)]);
    assert_eq!(latest(&mut client, 1).await, 12);
    assert_eq!(
        consume(&broker, "read_committed", 6).await,
        ["plain-0", "c1", "c2", "c3", "open-1", "plain-1"]
    );
    broker.stop().await;
}

/// What every check expects while producer 3's transaction is open: the last stable offset
/// stops at its first batch (8) below the high watermark (11), producer 2's aborted records
/// (3, 4) are listed for read_committed, and librdkafka delivers accordingly.
async fn check_state(broker: &TestBroker, p2: i64) {
    let hw = 11;
    let mut client = broker.client().await;
    assert_eq!(latest(&mut client, 1).await, 8);
    assert_eq!(latest(&mut client, 0).await, hw);
    let committed = fetch(&mut client, 0, 1).await;
    assert_eq!(
        (committed.high_watermark, committed.last_stable_offset),
        (hw, 8)
    );
    let aborted: Vec<(i64, i64)> = committed
        .aborted_transactions
        .clone()
        .unwrap()
        .iter()
        .map(|a| (a.producer_id, a.first_offset))
        .collect();
    assert_eq!(aborted, vec![(p2, 3)]);
    assert!(data_records(&committed).iter().all(|(o, _)| *o < 8));
    let uncommitted = fetch(&mut client, 0, 0).await;
    assert_eq!(uncommitted.last_stable_offset, 8);
    assert_eq!(uncommitted.aborted_transactions, None);
    assert_eq!(data_records(&uncommitted).len(), 8);
    // Past the aborted transaction's marker: none listed.
    let later = fetch(&mut client, 7, 1).await;
    assert_eq!(later.aborted_transactions.map(|a| a.len()), Some(0));
    assert_eq!(
        consume(broker, "read_committed", 4).await,
        ["plain-0", "c1", "c2", "c3"]
    );
    assert_eq!(
        consume(broker, "read_uncommitted", 8).await,
        ["plain-0", "c1", "c2", "a1", "a2", "c3", "open-1", "plain-1"]
    );
}

/// Every `*.txnindex` file under `dir`, with its size.
fn txn_index_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "txnindex") {
                found.push((path.clone(), entry.metadata().map_or(0, |m| m.len())));
            }
        }
    }
    found
}

/// Three real `weir` processes, replication factor 3: the followers write the same transaction
/// index entry as the leader, and after the leader is killed the new leader knows the ongoing
/// transaction (the last stable offset stops at it) and the aborted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_index_aborts_and_a_new_leader_knows_ongoing_transactions() {
    use support::cluster::{Cluster, agreed_view, blocking, create_replicated_topic, wait_until};
    let props = [
        ("default.replication.factor", "3"),
        ("min.insync.replicas", "2"),
        ("replica.lag.time.max.ms", "4000"),
    ];
    let mut cluster = blocking(|| Cluster::start_with(3, &props));
    create_replicated_topic(&cluster, TOPIC, 1, 3).await;
    let all = cluster.ids();
    let view = agreed_view(
        &cluster,
        &all,
        TOPIC,
        0,
        "a leader with a full ISR",
        WAIT,
        |v| v.leader >= 0 && v.isr.len() == 3,
    )
    .await;
    let leader = view.leader;
    let mut client = RawClient::connect(cluster.addr(leader)).await;
    let (p2, p3) = (
        init_producer_id(&mut client).await,
        init_producer_id(&mut client).await,
    );
    // 0-1: producer 2's transaction, aborted by the marker at 2; 3: producer 3's, left open;
    // 4: plain.
    produce_at(&mut client, batch(Some((p2, 0, 0, true)), &["a1", "a2"]), 0).await;
    let response = write_markers(&mut client, &[(p2, 0, false, 0, &[(TOPIC, &[0])])], 1).await;
    assert_eq!(codes(&response), vec![(p2, TOPIC.into(), 0, 0)]);
    produce_at(&mut client, batch(Some((p3, 0, 0, true)), &["open"]), 3).await;
    produce_at(&mut client, batch(None, &["plain"]), 4).await;
    assert_eq!(latest(&mut client, 1).await, 3);

    // Every replica's partition directory gets the same one-entry index.
    for &id in &all {
        let dir = cluster.dir(id).to_path_buf();
        wait_until(
            &cluster,
            &format!("node {id}'s transaction index"),
            WAIT,
            || {
                let dir = dir.clone();
                async move {
                    match txn_index_files(&dir).as_slice() {
                        [(_, 34)] => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await;
    }

    blocking(|| cluster.kill9(leader));
    let others: Vec<i32> = all.iter().copied().filter(|&id| id != leader).collect();
    let view = agreed_view(&cluster, &others, TOPIC, 0, "a new leader", WAIT, |v| {
        v.leader >= 0 && v.leader != leader
    })
    .await;
    let mut client = RawClient::connect(cluster.addr(view.leader)).await;
    wait_until(&cluster, "the new leader's stable offset", WAIT, || {
        let addr = cluster.addr(view.leader);
        async move {
            let mut client = RawClient::connect(addr).await;
            let committed = try_fetch(&mut client, 0, 1).await;
            let aborted: Vec<(i64, i64)> = committed
                .aborted_transactions
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|a| (a.producer_id, a.first_offset))
                .collect();
            match (
                committed.error_code,
                committed.high_watermark,
                committed.last_stable_offset,
                aborted.as_slice(),
            ) {
                (0, 5, 3, [(p, 0)]) if *p == p2 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(latest(&mut client, 1).await, 3);
    // The new leader ends producer 3's transaction.
    let response = write_markers(&mut client, &[(p3, 0, true, 0, &[(TOPIC, &[0])])], 2).await;
    assert_eq!(codes(&response), vec![(p3, TOPIC.into(), 0, 0)]);
    assert_eq!(latest(&mut client, 1).await, 6);
    let committed = fetch(&mut client, 0, 1).await;
    let values: Vec<String> = data_records(&committed).into_iter().map(|r| r.1).collect();
    // The aborted records are in the response; the aborted list tells a consumer to drop them.
    assert_eq!(values, ["a1", "a2", "open", "plain"]);
}
