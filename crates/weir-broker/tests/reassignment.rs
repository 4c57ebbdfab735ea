//! Partition reassignment (KIP-455) across real `weir` processes (tests/support/cluster.rs):
//!
//! - **move**: five nodes; a partition on brokers 1, 2 and 3 holding 500 acknowledged records
//!   (acks=all) is reassigned to 2, 3 and 4 with AlterPartitionReassignments;
//!   ListPartitionReassignments is polled until it is empty (the time is printed). Every node's
//!   Metadata then shows replicas [2, 3, 4] led by 2 (the preferred replica: broker 1 led it
//!   and left), node 1 has deleted its partition directory, and node 4 really holds the data:
//!   with 2 and 3 killed (`kill -9`) it leads alone and serves all 500 records. Five nodes so
//!   that three metadata voters survive the two kills.
//! - **cancel**: four nodes; a reassignment to a killed broker cannot complete; cancelling it
//!   returns the replicas to the original ones (in order); cancelling again is
//!   NO_REASSIGNMENT_IN_PROGRESS, and invalid targets and unknown partitions get their errors.
#![expect(clippy::expect_used, reason = "test helpers fail the test")]

#[allow(
    unreachable_pub,
    reason = "support/ is shared by the test crates; its items are `pub` for them"
)]
mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::RawClient;
use support::cluster::{
    Cluster, agreed_view, blocking, create_topic_raw, partition_view, rd_config, wait_until,
};
use weir_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use weir_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use weir_protocol::messages::list_partition_reassignments_response::OngoingPartitionReassignment;
use weir_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsRequest,
};

/// Upper bound for any one wait on the cluster.
const WAIT: Duration = Duration::from_secs(60);

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;

/// Creates `topic` with one partition on `replicas` (a manual assignment).
async fn create_topic_on(cluster: &Cluster, topic: &str, replicas: &[i32]) {
    let topic = CreatableTopic {
        name: topic.to_string(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![CreatableReplicaAssignment {
            partition_index: 0,
            broker_ids: replicas.to_vec(),
            ..CreatableReplicaAssignment::default()
        }],
        ..CreatableTopic::default()
    };
    create_topic_raw(cluster, topic).await;
}

/// An AlterPartitionReassignments v0 of partition 0 of each topic (`None`: cancel).
async fn reassign(
    addr: SocketAddr,
    partitions: &[(&str, Option<&[i32]>)],
) -> AlterPartitionReassignmentsResponse {
    let request = AlterPartitionReassignmentsRequest {
        timeout_ms: 30_000,
        topics: partitions
            .iter()
            .map(|(topic, target)| ReassignableTopic {
                name: (*topic).to_string(),
                partitions: vec![ReassignablePartition {
                    partition_index: 0,
                    replicas: target.map(<[i32]>::to_vec),
                    ..ReassignablePartition::default()
                }],
                ..ReassignableTopic::default()
            })
            .collect(),
        ..AlterPartitionReassignmentsRequest::default()
    };
    RawClient::connect(addr).await.send(request, 0).await
}

/// The per-partition error codes of a reassignment response, in request order.
fn codes(response: &AlterPartitionReassignmentsResponse) -> Vec<i16> {
    response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// Every reassignment in progress, as ListPartitionReassignments v0 (all partitions) shows it.
async fn ongoing(addr: SocketAddr) -> Vec<(String, OngoingPartitionReassignment)> {
    let request = ListPartitionReassignmentsRequest {
        timeout_ms: 30_000,
        topics: None,
        ..ListPartitionReassignmentsRequest::default()
    };
    let response = RawClient::connect(addr).await.send(request, 0).await;
    assert_eq!(response.error_code, 0, "{response:?}");
    response
        .topics
        .into_iter()
        .flat_map(|t| {
            let name = t.name;
            t.partitions.into_iter().map(move |p| (name.clone(), p))
        })
        .collect()
}

/// Produces `n` records with acks=all through librdkafka; fails unless every one is
/// acknowledged.
async fn produce(cluster: &Cluster, topic: &str, n: usize) {
    let producer: FutureProducer = rd_config(&cluster.bootstrap())
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    // Queued at once (send_result does not wait), then every delivery awaited.
    let mut pending = Vec::new();
    for i in 0..n {
        let value = format!("record-{i}");
        let record = FutureRecord::<(), String>::to(topic)
            .partition(0)
            .payload(&value);
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((e, _)) => cluster.fail(&format!("record {i} not queued: {e}")),
        }
    }
    for (i, delivery) in pending.into_iter().enumerate() {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => cluster.fail(&format!("record {i} not acknowledged: {e}")),
            Err(_) => cluster.fail(&format!("record {i}: delivery cancelled")),
        }
    }
    blocking(|| drop(producer));
}

/// Reads partition 0 of `topic` from its start to its high watermark through `bootstrap`, once
/// the high watermark has reached `at_least`: a new leader starts from the high watermark it
/// knew as a follower, which lags by one fetch (right after the move it is 0 for about a
/// second, until the followers have fetched in its epoch).
fn read_all(cluster: &Cluster, bootstrap: &str, topic: &str, at_least: i64) -> Vec<String> {
    let consumer: BaseConsumer = rd_config(bootstrap)
        .set("group.id", format!("{topic}-checker"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let started = Instant::now();
    let end = loop {
        match consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)) {
            Ok((_, high)) if high >= at_least => break high,
            Ok((_, high)) if started.elapsed() > WAIT => {
                cluster.fail(&format!("high watermark of {topic}-0 stays at {high}"))
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) if started.elapsed() < WAIT => {
                eprintln!("watermarks of {topic}-0 (retried): {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => cluster.fail(&format!("watermarks of {topic}-0: {e}")),
        }
    };
    eprintln!(
        "high watermark {end} of {topic}-0 seen after {} ms",
        started.elapsed().as_millis()
    );
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let mut read = Vec::new();
    let deadline = Instant::now() + WAIT;
    while i64::try_from(read.len()).expect("count") < end {
        if Instant::now() > deadline {
            cluster.fail(&format!(
                "reading {topic} back: end {end}, read {}",
                read.len()
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                read.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(e)) => eprintln!("checker consumer: {e}"),
            None => {}
        }
    }
    read
}

/// A partition moved from brokers {1, 2, 3} to {2, 3, 4}: the new replica copies the data and
/// joins the ISR, the old one leaves (its leadership going to the preferred target replica)
/// and deletes its log, and the new replica alone can serve every acknowledged record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassigned_partition_moves_its_data_and_leaves_the_old_replica() {
    let mut cluster = blocking(|| {
        Cluster::start_with(
            5,
            &[
                ("default.replication.factor", "3"),
                ("auto.leader.rebalance.enable", "false"),
            ],
        )
    });
    let topic = "moved";
    let all = cluster.ids();
    create_topic_on(&cluster, topic, &[1, 2, 3]).await;
    agreed_view(&cluster, &all, topic, 0, "the new partition", WAIT, |p| {
        p.leader == 1 && p.isr == [1, 2, 3]
    })
    .await;
    produce(&cluster, topic, 500).await;
    let partition_dir = |id: i32| cluster.dir(id).join(format!("{topic}-0"));
    assert!(partition_dir(1).exists());
    assert!(!partition_dir(4).exists());

    let started = Instant::now();
    let response = reassign(cluster.addr(3), &[(topic, Some(&[2, 3, 4]))]).await;
    assert_eq!(response.error_code, 0, "{response:?}");
    assert_eq!(codes(&response), vec![0]);
    let asked = started.elapsed();
    wait_until(&cluster, "the reassignment completes", WAIT, || async {
        let now = ongoing(cluster.addr(5)).await;
        if now.is_empty() {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    let completed = started.elapsed();
    println!(
        "[reassign] {topic}-0 (500 records) moved from [1, 2, 3] to [2, 3, 4]: answered in {} ms, \
         ListPartitionReassignments empty after {} ms",
        asked.as_millis(),
        completed.as_millis()
    );
    let moved = agreed_view(
        &cluster,
        &all,
        topic,
        0,
        "every node sees [2, 3, 4]",
        WAIT,
        |p| p.replicas == [2, 3, 4] && p.isr == [2, 3, 4],
    )
    .await;
    assert_eq!(
        moved.leader, 2,
        "the preferred target replica leads: {moved:?}"
    );
    wait_until(&cluster, "node 1 deletes its log", WAIT, || async {
        if partition_dir(1).exists() {
            Err(format!("{} exists", partition_dir(1).display()))
        } else {
            Ok(())
        }
    })
    .await;
    assert!(partition_dir(4).exists());
    let read = blocking(|| read_all(&cluster, &cluster.bootstrap(), topic, 500));
    assert_eq!(read.len(), 500);

    // Node 4 alone: kill the other two replicas one after the other.
    for (killed, survivors) in [(2, vec![1, 3, 4, 5]), (3, vec![1, 4, 5])] {
        blocking(|| cluster.kill9(killed));
        agreed_view(
            &cluster,
            &survivors,
            topic,
            0,
            &format!("leadership leaves node {killed}"),
            WAIT,
            |p| p.leader > 0 && p.leader != killed && !p.isr.contains(&killed),
        )
        .await;
    }
    let alone = partition_view(cluster.addr(4), topic, 0)
        .await
        .expect("metadata");
    assert_eq!((alone.leader, alone.isr.clone()), (4, vec![4]), "{alone:?}");
    let bootstrap = [1, 4, 5]
        .iter()
        .map(|id| cluster.addr(*id).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let read = blocking(|| read_all(&cluster, &bootstrap, topic, 500));
    let expected: Vec<String> = (0..500).map(|i| format!("record-{i}")).collect();
    assert_eq!(read, expected, "node 4 serves every acknowledged record");
}

/// A reassignment to a broker that is down cannot complete; cancelling it restores the
/// original replicas in their order, and the errors are Kafka's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_stuck_reassignment_restores_the_original_replicas() {
    let mut cluster = blocking(|| Cluster::start_with(4, &[("default.replication.factor", "3")]));
    let topic = "stuck";
    create_topic_on(&cluster, topic, &[1, 2, 3]).await;
    let live = [1, 2, 3];
    let before = agreed_view(&cluster, &live, topic, 0, "the new partition", WAIT, |p| {
        p.leader == 1 && p.isr == [1, 2, 3]
    })
    .await;
    blocking(|| cluster.kill9(4));

    let response = reassign(cluster.addr(2), &[(topic, Some(&[4, 2, 1]))]).await;
    assert_eq!(codes(&response), vec![0], "{response:?}");
    let listed = ongoing(cluster.addr(1)).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (name, p) = &listed[0];
    assert_eq!(name, topic);
    assert_eq!(
        (
            p.replicas.clone(),
            p.adding_replicas.clone(),
            p.removing_replicas.clone()
        ),
        (vec![4, 2, 1, 3], vec![4], vec![3])
    );
    // Broker 4 is down: nothing completes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ongoing(cluster.addr(3)).await.len(), 1);

    let cancelled = reassign(cluster.addr(3), &[(topic, None)]).await;
    assert_eq!(codes(&cancelled), vec![0], "{cancelled:?}");
    assert!(ongoing(cluster.addr(3)).await.is_empty());
    let after = agreed_view(
        &cluster,
        &live,
        topic,
        0,
        "the original replicas",
        WAIT,
        |p| p.replicas == [1, 2, 3],
    )
    .await;
    assert_eq!((after.leader, after.isr.clone()), (1, vec![1, 2, 3]));
    assert_eq!(
        after.leader_epoch, before.leader_epoch,
        "the leader never moved"
    );

    let again = reassign(cluster.addr(1), &[(topic, None)]).await;
    assert_eq!(codes(&again), vec![NO_REASSIGNMENT_IN_PROGRESS]);
    let invalid = reassign(
        cluster.addr(1),
        &[
            (topic, Some(&[1, 1])),
            (topic, Some(&[])),
            (topic, Some(&[1, 2, 9])),
            ("no-such-topic", Some(&[1])),
        ],
    )
    .await;
    assert_eq!(
        codes(&invalid),
        vec![
            INVALID_REPLICA_ASSIGNMENT,
            INVALID_REPLICA_ASSIGNMENT,
            INVALID_REPLICA_ASSIGNMENT,
            UNKNOWN_TOPIC_OR_PARTITION
        ],
        "{invalid:?}"
    );
    assert!(ongoing(cluster.addr(2)).await.is_empty());
}
