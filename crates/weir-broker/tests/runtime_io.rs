//! No file I/O on the async runtime's worker threads (issue 14): a worker blocked in an fsync
//! or a directory scan stalls every connection it serves, so the broker does its file work on
//! the blocking pool (`weir_broker`'s `blocking::spawn`, inside
//! `weir_log::fs::allow_blocking`).
//!
//! The test installs a `weir_log::fs::BlockingIoObserver` that records every file operation
//! made on a runtime thread outside such a region, then runs a produce/fetch loop on one
//! connection while other connections create topics (CreateTopics and Metadata
//! auto-creation), delete them, commit offsets, roll segments (64 KiB segments) and delete
//! records, and the broker stops. It fails on any recorded operation, naming it and its path,
//! whatever the timing: the check is structural, not a latency threshold. The produce/fetch
//! round trips before and during the topic churn are printed for the record (`--nocapture`).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions fail the test on any error"
)]

#[expect(
    unreachable_pub,
    reason = "support items are pub for every test binary that includes the module"
)]
mod support;

use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{RawClient, TestBroker};
use weir_protocol::messages::create_topics_request::CreatableTopic;
use weir_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use weir_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir_protocol::messages::metadata_request::MetadataRequestTopic;
use weir_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_protocol::messages::{
    CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest, FetchRequest, MetadataRequest,
    OffsetCommitRequest, ProduceRequest,
};
use weir_records::{Record, RecordBatchBuilder};

/// File operations seen on a runtime thread outside `allow_blocking`: (operation, path,
/// thread name).
type Stalls = Arc<Mutex<Vec<(&'static str, String, String)>>>;

fn watch_runtime_threads() -> Stalls {
    let stalls: Stalls = Arc::default();
    let seen = stalls.clone();
    let installed = weir_log::fs::observe_blocking_io(Box::new(move |op, path| {
        if weir_log::fs::blocking_allowed() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let thread = std::thread::current();
        seen.lock().push((
            op,
            path.display().to_string(),
            thread.name().unwrap_or("unnamed").to_string(),
        ));
    }));
    assert!(installed, "one observer per test binary");
    stalls
}

fn records(n: usize, size: usize) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    let value = vec![b'v'; size];
    // Retention goes by these timestamps: now, so that no segment is old enough to delete.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for _ in 0..n {
        builder.push(Record::new(now, None, Some(&value)));
    }
    builder.build().unwrap()
}

async fn produce(client: &mut RawClient, topic: &str, batch: Bytes) -> i64 {
    let request = ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(batch),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = client.send(request, 9).await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "produce to {topic}");
    partition.base_offset
}

async fn fetch(client: &mut RawClient, topic: &str, offset: i64) {
    let request = FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
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
    };
    let response = client.send(request, 12).await;
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
}

/// Round trips (produce then fetch of what it wrote), in ms, until `stop` is set.
async fn produce_fetch_loop(mut client: RawClient, stop: Arc<AtomicBool>) -> Vec<f64> {
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let offset = produce(&mut client, "loop", records(8, 1024)).await;
        fetch(&mut client, "loop", offset).await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((p / 100.0 * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    format!(
        "{} round trips, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms.len(),
        at(50.0),
        at(99.0),
        ms[ms.len() - 1]
    )
}

/// Creates, fills, commits to and deletes topics from its own connection.
async fn churn_topics(mut client: RawClient, round: usize) {
    let created: Vec<String> = (0..10).map(|i| format!("created-{round}-{i}")).collect();
    let response = client
        .send(
            CreateTopicsRequest {
                topics: created
                    .iter()
                    .map(|name| CreatableTopic {
                        name: name.as_str().into(),
                        num_partitions: 4,
                        replication_factor: -1,
                        ..Default::default()
                    })
                    .collect(),
                timeout_ms: 30_000,
                ..Default::default()
            },
            5,
        )
        .await;
    for topic in &response.topics {
        assert_eq!(topic.error_code, 0, "create {:?}", topic.name);
    }
    // Metadata auto-creation (the path a producer's first send takes).
    let auto: Vec<String> = (0..5).map(|i| format!("auto-{round}-{i}")).collect();
    let response = client
        .send(
            MetadataRequest {
                topics: Some(
                    auto.iter()
                        .map(|name| MetadataRequestTopic {
                            name: Some(name.as_str().into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                allow_auto_topic_creation: true,
                ..Default::default()
            },
            9,
        )
        .await;
    for topic in &response.topics {
        assert_eq!(topic.error_code, 0, "auto-create {:?}", topic.name);
    }
    for name in created.iter().take(3) {
        produce(&mut client, name, records(64, 1024)).await;
    }
    let committed = client
        .send(
            OffsetCommitRequest {
                group_id: format!("group-{round}"),
                generation_id_or_member_epoch: -1,
                topics: vec![OffsetCommitRequestTopic {
                    name: created[0].as_str().into(),
                    partitions: vec![OffsetCommitRequestPartition {
                        partition_index: 0,
                        committed_offset: 10,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
            8,
        )
        .await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let deleted = client
        .send(
            DeleteRecordsRequest {
                topics: vec![DeleteRecordsTopic {
                    name: created[0].as_str().into(),
                    partitions: vec![DeleteRecordsPartition {
                        partition_index: 0,
                        offset: 32,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                timeout_ms: 30_000,
                ..Default::default()
            },
            2,
        )
        .await;
    assert_eq!(deleted.topics[0].partitions[0].error_code, 0);
    let response = client
        .send(
            DeleteTopicsRequest {
                topic_names: created
                    .iter()
                    .chain(&auto)
                    .skip(5)
                    .map(|n| n.as_str().into())
                    .collect(),
                timeout_ms: 30_000,
                ..Default::default()
            },
            5,
        )
        .await;
    for topic in &response.responses {
        assert_eq!(topic.error_code, 0, "delete {:?}", topic.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_io_on_runtime_threads_while_topics_churn_under_produce_and_fetch() {
    let stalls = watch_runtime_threads();
    let broker = TestBroker::start(&[
        ("log.segment.bytes", "65536"),
        ("log.retention.check.interval.ms", "200"),
        ("log.flush.interval.ms", "100"),
    ])
    .await;
    let mut setup = broker.client().await;
    support::auto_create_topic(&mut setup, "loop").await;

    let stop = Arc::new(AtomicBool::new(false));
    let quiet = tokio::spawn(produce_fetch_loop(broker.client().await, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let before = quiet.await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let busy = tokio::spawn(produce_fetch_loop(broker.client().await, stop.clone()));
    let started = Instant::now();
    for round in 0..6 {
        let churners: Vec<_> = (0..2)
            .map(|c| {
                let addr = broker.addr;
                tokio::spawn(async move {
                    churn_topics(RawClient::connect(addr).await, round * 2 + c).await
                })
            })
            .collect();
        for churner in churners {
            churner.await.unwrap();
        }
    }
    let churn = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = busy.await.unwrap();
    broker.stop().await;

    println!("before the churn: {}", summary(before));
    println!(
        "during the churn ({:.1} s, 120 topics created, 60 deleted): {}",
        churn.as_secs_f64(),
        summary(during)
    );
    let stalls = stalls.lock();
    assert!(
        stalls.is_empty(),
        "{} file operations on runtime threads outside the blocking pool, first ones:\n{}",
        stalls.len(),
        stalls
            .iter()
            .take(20)
            .map(|(op, path, thread)| format!("  {op} {path} on {thread}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
