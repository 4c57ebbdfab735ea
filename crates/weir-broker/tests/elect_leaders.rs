//! Preferred-leader election across three real `weir` processes (tests/support/cluster.rs),
//! replication factor 3:
//!
//! - **ElectLeaders**: with `auto.leader.rebalance.enable=false`, the preferred leader of a
//!   partition is killed with `kill -9` and restarted; leadership stays where it moved even once
//!   the node is back in the ISR, until an ElectLeaders request moves it back (new leader
//!   epoch); asking again is ELECTION_NOT_NEEDED, and an unknown partition or topic is
//!   UNKNOWN_TOPIC_OR_PARTITION.
//! - **auto rebalance**: with the check every 2 s, the same restart ends with the preferred
//!   replica leading again by itself.

#[allow(
    unreachable_pub,
    reason = "support/ is shared by the test crates; its items are `pub` for them"
)]
mod support;

use std::time::{Duration, Instant};
use support::RawClient;
use support::cluster::{
    Cluster, PartitionView, agreed_view, blocking, create_topic_raw, partition_view,
};
use weir_protocol::messages::create_topics_request::CreatableTopic;
use weir_protocol::messages::elect_leaders_request::TopicPartitions;
use weir_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

/// Upper bound for any one wait on the cluster.
const WAIT: Duration = Duration::from_secs(60);

const ELECTION_NOT_NEEDED: i16 = 84;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// Creates `topic` with `partitions` partitions and the default replication factor (3).
async fn create_topic(cluster: &Cluster, topic: &str, partitions: i32) {
    let topic = CreatableTopic {
        name: topic.to_string(),
        num_partitions: partitions,
        replication_factor: -1,
        ..CreatableTopic::default()
    };
    create_topic_raw(cluster, topic).await;
}

/// Kills the preferred leader of partition 0 of a new 3-partition topic and restarts it;
/// returns the preferred replica and the partition once every node agrees the restarted node
/// is back in the ISR (led by another).
async fn bounce_preferred_leader(cluster: &mut Cluster, topic: &str) -> (i32, PartitionView) {
    create_topic(cluster, topic, 3).await;
    let all = cluster.ids();
    let start = agreed_view(cluster, &all, topic, 0, "a new partition", WAIT, |p| {
        p.leader >= 0 && p.isr.len() == 3
    })
    .await;
    let preferred = start.replicas[0];
    assert_eq!(
        start.leader, preferred,
        "a new partition is led by its preferred replica"
    );
    blocking(|| cluster.kill9(preferred));
    let survivors: Vec<i32> = all.iter().copied().filter(|id| *id != preferred).collect();
    let moved = agreed_view(
        cluster,
        &survivors,
        topic,
        0,
        "leadership moves",
        WAIT,
        |p| p.leader >= 0 && p.leader != preferred,
    )
    .await;
    assert!(moved.leader_epoch > start.leader_epoch);
    blocking(|| cluster.restart(preferred));
    let back = Instant::now();
    let view = agreed_view(cluster, &all, topic, 0, "back in the ISR", WAIT, |p| {
        p.isr.contains(&preferred)
    })
    .await;
    println!(
        "[elect] node {preferred} back in the ISR of {topic}-0 {} ms after its restart",
        back.elapsed().as_millis()
    );
    (preferred, view)
}

fn elect_request(election_type: i8, partitions: Option<&[(&str, i32)]>) -> ElectLeadersRequest {
    ElectLeadersRequest {
        election_type,
        topic_partitions: partitions.map(|list| {
            list.iter()
                .map(|(topic, partition)| TopicPartitions {
                    topic: (*topic).to_string(),
                    partitions: vec![*partition],
                    ..TopicPartitions::default()
                })
                .collect()
        }),
        timeout_ms: 30_000,
        ..ElectLeadersRequest::default()
    }
}

/// The (topic, partition, error code) triples of a response, sorted.
fn results(response: &ElectLeadersResponse) -> Vec<(String, i32, i16)> {
    let mut out: Vec<(String, i32, i16)> = response
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(|p| (t.topic.clone(), p.partition_id, p.error_code))
        })
        .collect();
    out.sort();
    out
}

/// Leadership does not return to a restarted preferred replica by itself with
/// `auto.leader.rebalance.enable=false`; ElectLeaders moves it back, and the answer comes only
/// once the node asked shows the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_leaders_moves_leadership_back_to_the_preferred_replica() {
    let mut cluster = blocking(|| {
        Cluster::start_with(
            3,
            &[
                ("default.replication.factor", "3"),
                ("auto.leader.rebalance.enable", "false"),
            ],
        )
    });
    let topic = "elect";
    let (preferred, before) = bounce_preferred_leader(&mut cluster, topic).await;
    // Leadership stays put while the preferred replica is in sync.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = partition_view(cluster.addr(preferred), topic, 0)
        .await
        .expect("metadata");
    assert_ne!(still.leader, preferred, "{still:?}");
    assert_eq!(still.leader_epoch, before.leader_epoch);

    // Ask a node that is neither the preferred replica nor (necessarily) the controller.
    let asked = *cluster
        .ids()
        .iter()
        .find(|id| **id != preferred)
        .expect("another node");
    let mut client = RawClient::connect(cluster.addr(asked)).await;
    let response = client.send(elect_request(0, Some(&[(topic, 0)])), 2).await;
    assert_eq!(response.error_code, 0, "{response:?}");
    assert_eq!(results(&response), vec![(topic.to_string(), 0, 0)]);
    let after = partition_view(cluster.addr(asked), topic, 0)
        .await
        .expect("metadata");
    assert_eq!(
        after.leader, preferred,
        "the answer waited for the new image"
    );
    assert!(
        after.leader_epoch > still.leader_epoch,
        "{after:?} after {still:?}"
    );
    let all = cluster.ids();
    agreed_view(
        &cluster,
        &all,
        topic,
        0,
        "every node sees the preferred leader",
        WAIT,
        |p| p.leader == preferred,
    )
    .await;

    let again = client.send(elect_request(0, Some(&[(topic, 0)])), 2).await;
    assert_eq!(
        results(&again),
        vec![(topic.to_string(), 0, ELECTION_NOT_NEEDED)]
    );
    // v0 has no election type: preferred.
    let v0 = client.send(elect_request(0, Some(&[(topic, 0)])), 0).await;
    assert_eq!(
        results(&v0),
        vec![(topic.to_string(), 0, ELECTION_NOT_NEEDED)]
    );
    let unknown = client
        .send(
            elect_request(0, Some(&[(topic, 3), ("no-such-topic", 0)])),
            2,
        )
        .await;
    assert_eq!(
        results(&unknown),
        vec![
            ("elect".to_string(), 3, UNKNOWN_TOPIC_OR_PARTITION),
            ("no-such-topic".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    // Every partition: all have their preferred leader, so nothing is reported.
    let everything = client.send(elect_request(0, None), 1).await;
    assert_eq!(everything.error_code, 0);
    assert!(results(&everything).is_empty(), "{everything:?}");
    // UNCLEAN: every partition has a leader.
    let unclean = client.send(elect_request(1, Some(&[(topic, 1)])), 2).await;
    assert_eq!(
        results(&unclean),
        vec![(topic.to_string(), 1, ELECTION_NOT_NEEDED)]
    );
}

/// With `auto.leader.rebalance.enable` (checked every 2 s), leadership returns to the
/// restarted preferred replica by itself once it is back in the ISR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_rebalance_returns_leadership_to_the_preferred_replica() {
    let mut cluster = blocking(|| {
        Cluster::start_with(
            3,
            &[
                ("default.replication.factor", "3"),
                ("auto.leader.rebalance.enable", "true"),
                ("leader.imbalance.check.interval.seconds", "2"),
            ],
        )
    });
    let topic = "rebalance";
    let (preferred, before) = bounce_preferred_leader(&mut cluster, topic).await;
    let back = Instant::now();
    let all = cluster.ids();
    let after = agreed_view(
        &cluster,
        &all,
        topic,
        0,
        "leadership back on the preferred replica",
        Duration::from_secs(15),
        |p| p.leader == preferred,
    )
    .await;
    assert!(after.leader_epoch > before.leader_epoch);
    println!(
        "[rebalance] node {preferred} leads {topic}-0 again {} ms after rejoining the ISR",
        back.elapsed().as_millis()
    );
}
