//! Three real `weir` processes as one cluster (tests/support/cluster.rs), used through real
//! clients: librdkafka (the `rdkafka` crate), weir-client, and raw requests to one chosen node
//! when a test must see what that node answers.
//!
//! - placement: a 6-partition topic created through one node is led 2/2/2 and every node
//!   answers Metadata for it identically;
//! - librdkafka produces through one node and a consumer group reads everything back through
//!   another;
//! - kill -9 of the active controller: a new one takes over and CreateTopics works again
//!   through a survivor (the time is printed);
//! - kill -9 of a broker: after `broker.session.timeout.ms` its partitions have no leader and
//!   name it offline; restarted, it leads them again with all their records;
//! - SIGSTOP of a broker: fenced the same way; after SIGCONT it returns without a restart;
//! - SIGTERM to the whole cluster and a restart: same topics, ids, partitions and leaders, and
//!   the same records.
//!
//! The measured figures (cluster start, failover, fencing) are printed; run with
//! `--nocapture` to see them. Every wait is bounded, and a failure prints every node's log.
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

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::RawClient;
use support::cluster::{Cluster, blocking, rd_config, wait_until};
use weir_protocol::ErrorCode;
use weir_protocol::messages::create_topics_request::CreatableTopic;
use weir_protocol::messages::metadata_request::MetadataRequestTopic;
use weir_protocol::messages::{
    CreateTopicsRequest, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest,
    MetadataResponse,
};

/// Upper bound for any one wait on the cluster.
const WAIT: Duration = Duration::from_secs(30);
/// `broker.session.timeout.ms` as the harness sets it.
const SESSION_TIMEOUT: Duration = Duration::from_millis(3000);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Starts a 3-node cluster and prints how long it took to be ready.
fn start_cluster(test: &str) -> Cluster {
    let started = Instant::now();
    let cluster = blocking(|| Cluster::start(3));
    println!(
        "[{test}] 3-node cluster ready in {} ms",
        started.elapsed().as_millis()
    );
    cluster
}

/// One partition as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionView {
    error: i16,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    offline: Vec<i32>,
}

/// One topic as Metadata describes it: id and partitions by index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TopicView {
    error: i16,
    id: [u8; 16],
    partitions: BTreeMap<i32, PartitionView>,
}

/// Metadata (v12: topic ids, leader epochs, offline replicas) from node `addr` itself, for
/// `topics` (all when `None`), without auto-creation.
async fn metadata(addr: SocketAddr, topics: Option<&[&str]>) -> MetadataResponse {
    let request = MetadataRequest {
        topics: topics.map(|names| {
            names
                .iter()
                .map(|n| MetadataRequestTopic {
                    name: Some((*n).to_string()),
                    ..MetadataRequestTopic::default()
                })
                .collect()
        }),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    };
    let mut client = tokio::time::timeout(WAIT, RawClient::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connecting to {addr} took over {WAIT:?}"));
    tokio::time::timeout(WAIT, client.send(request, 12))
        .await
        .unwrap_or_else(|_| panic!("Metadata from {addr} took over {WAIT:?}"))
}

/// The topics of a Metadata response, by name.
fn topic_views(response: &MetadataResponse) -> BTreeMap<String, TopicView> {
    response
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut replicas = p.replica_nodes.clone();
                    let mut isr = p.isr_nodes.clone();
                    let mut offline = p.offline_replicas.clone();
                    replicas.sort_unstable();
                    isr.sort_unstable();
                    offline.sort_unstable();
                    (
                        p.partition_index,
                        PartitionView {
                            error: p.error_code,
                            leader: p.leader_id,
                            leader_epoch: p.leader_epoch,
                            replicas,
                            isr,
                            offline,
                        },
                    )
                })
                .collect();
            (
                t.name.clone().unwrap_or_default(),
                TopicView {
                    error: t.error_code,
                    id: t.topic_id.0,
                    partitions,
                },
            )
        })
        .collect()
}

/// The view of `topic` from node `addr` (`None` while the node does not know it).
async fn topic_view(addr: SocketAddr, topic: &str) -> Option<TopicView> {
    let response = metadata(addr, Some(&[topic])).await;
    topic_views(&response)
        .remove(topic)
        .filter(|t| t.error == ErrorCode::NONE.0)
}

/// DescribeCluster (v1) from node `addr` itself.
async fn describe_cluster(addr: SocketAddr) -> DescribeClusterResponse {
    let mut client = RawClient::connect(addr).await;
    tokio::time::timeout(WAIT, client.send(DescribeClusterRequest::default(), 1))
        .await
        .unwrap_or_else(|_| panic!("DescribeCluster from {addr} took over {WAIT:?}"))
}

/// DescribeQuorum (v2) for `__cluster_metadata` from node `addr`: (leader, voters with the log
/// end offset the leader knows for each).
async fn describe_quorum(addr: SocketAddr) -> (i32, BTreeMap<i32, i64>) {
    let (leader, voters, _) = describe_quorum_with_observers(addr).await;
    (leader, voters)
}

/// [`describe_quorum`] with the observers (broker-only nodes) and their log end offsets.
async fn describe_quorum_with_observers(
    addr: SocketAddr,
) -> (i32, BTreeMap<i32, i64>, BTreeMap<i32, i64>) {
    use weir_protocol::messages::DescribeQuorumRequest;
    use weir_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let request = DescribeQuorumRequest {
        topics: vec![TopicData {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![PartitionData::default()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut client = RawClient::connect(addr).await;
    let response = tokio::time::timeout(WAIT, client.send(request, 2))
        .await
        .unwrap_or_else(|_| panic!("DescribeQuorum from {addr} took over {WAIT:?}"));
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0, "DescribeQuorum from {addr}");
    let voters = partition
        .current_voters
        .iter()
        .map(|v| (v.replica_id, v.log_end_offset))
        .collect();
    let observers = partition
        .observers
        .iter()
        .map(|v| (v.replica_id, v.log_end_offset))
        .collect();
    (partition.leader_id, voters, observers)
}

/// Waits until every node in `nodes` knows `topic` with `partitions` partitions, each with a
/// leader, and returns each node's view.
async fn wait_for_topic_everywhere(
    cluster: &Cluster,
    nodes: &[i32],
    topic: &str,
    partitions: usize,
) -> BTreeMap<i32, TopicView> {
    wait_until(
        cluster,
        &format!("{topic} led everywhere"),
        WAIT,
        || async {
            let mut views = BTreeMap::new();
            for &id in nodes {
                let view = topic_view(cluster.addr(id), topic).await;
                match view {
                    Some(v)
                        if v.partitions.len() == partitions
                            && v.partitions.values().all(|p| p.leader >= 0) =>
                    {
                        views.insert(id, v);
                    }
                    other => return Err(format!("node {id}: {other:?}")),
                }
            }
            Ok(views)
        },
    )
    .await
}

/// The partitions each broker leads.
fn leaders(view: &TopicView) -> BTreeMap<i32, Vec<i32>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (&index, p) in &view.partitions {
        by_leader.entry(p.leader).or_default().push(index);
    }
    by_leader
}

/// Creates `topic` through librdkafka's admin client on `bootstrap` (failing with the nodes'
/// logs).
async fn rd_create_topic(cluster: &Cluster, bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        rd_config(bootstrap).create().expect("admin client");
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(20)))
        .request_timeout(Some(Duration::from_secs(25)));
    let started = Instant::now();
    let created = tokio::time::timeout(
        WAIT,
        admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        ),
    )
    .await;
    let failure = match created {
        Err(_) => Some(format!("no answer within {WAIT:?}")),
        Ok(Err(e)) => Some(e.to_string()),
        Ok(Ok(results)) => results
            .into_iter()
            .find_map(|r| r.err())
            .map(|(name, code)| format!("{name}: {code:?}")),
    };
    if let Some(why) = failure {
        cluster.fail(&format!(
            "librdkafka CreateTopics {topic} through {bootstrap}, after {:?}: {why}",
            started.elapsed()
        ));
    }
    blocking(|| drop(admin));
}

/// `count` keyed records (`key-i` → `value-i`).
fn records(prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            (
                format!("{prefix}-key-{}", i % 97),
                format!("{prefix}-value-{i}"),
            )
        })
        .collect()
}

/// Produces `records` to `topic` through librdkafka on `bootstrap` (acks=all, idempotent),
/// returning each record's (partition, offset).
async fn rd_produce(
    cluster: &Cluster,
    bootstrap: &str,
    topic: &str,
    records: &[(String, String)],
) -> Vec<(i32, i64)> {
    let producer: FutureProducer = rd_config(bootstrap)
        .set("linger.ms", "5")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "25000")
        .create()
        .expect("producer");
    let mut deliveries = Vec::new();
    for (key, value) in records {
        match producer.send_result(FutureRecord::to(topic).key(key).payload(value)) {
            Ok(delivery) => deliveries.push(delivery),
            Err((e, _)) => panic!("enqueueing a record for {topic}: {e}"),
        }
    }
    let mut positions = Vec::new();
    for delivery in deliveries {
        match tokio::time::timeout(WAIT, delivery).await {
            Ok(Ok(Ok(d))) => positions.push((d.partition, d.offset)),
            Ok(Ok(Err((e, _)))) => {
                cluster.fail(&format!("producing to {topic} through {bootstrap}: {e}"))
            }
            Ok(Err(_)) => panic!("a delivery future was cancelled"),
            Err(_) => cluster.fail(&format!(
                "producing to {topic} through {bootstrap}: no delivery report in {WAIT:?}"
            )),
        }
    }
    blocking(|| drop(producer));
    positions
}

/// A record as read back: partition, offset, key, value.
type Received = (i32, i64, String, String);

/// What must survive a restart of a topic: its id and, per partition, leader and replicas.
type TopicShape = ([u8; 16], Vec<(i32, i32, Vec<i32>)>);

/// Receives `count` records from `consumer` (failing after `WAIT` with the nodes' logs).
async fn receive(
    cluster: &Cluster,
    consumer: &StreamConsumer,
    count: usize,
    what: &str,
) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    let mut received = Vec::new();
    while received.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => received.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Ok(Err(e)) => eprintln!("{what}: consumer error (retried): {e}"),
            Err(_) => cluster.fail(&format!(
                "{what}: received {} of {count} records within {WAIT:?}",
                received.len()
            )),
        }
    }
    received
}

/// Reads `partitions` of `topic` from offset 0 through librdkafka on `bootstrap`, outside any
/// group, until `count` records arrived.
async fn rd_read_from_start(
    cluster: &Cluster,
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    count: usize,
) -> Vec<Received> {
    let consumer: StreamConsumer = rd_config(bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for &p in partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&assignment).expect("assign");
    let received = receive(
        cluster,
        &consumer,
        count,
        &format!("reading {topic} from 0"),
    )
    .await;
    blocking(|| drop(consumer));
    received
}

/// The active controller as node `addr` names it in DescribeCluster (-1 for none). Metadata
/// names the answering broker instead, as KRaft brokers do: clients send admin requests to any
/// broker, which forwards them.
async fn controller_of(addr: SocketAddr) -> i32 {
    describe_cluster(addr).await.controller_id
}

/// What the test found wrong without stopping at the first: reported together at the end, so
/// one run shows every misbehaviour of a scenario.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: String) {
        eprintln!("PROBLEM: {problem}");
        self.0.push(problem);
    }

    /// Fails the test with every problem (and the nodes' logs) if there was any.
    fn check(self, cluster: &Cluster) {
        if !self.0.is_empty() {
            cluster.fail(&format!(
                "{} problem(s):\n- {}",
                self.0.len(),
                self.0.join("\n- ")
            ));
        }
    }
}

/// CreateTopics (v7) for one topic with one replica per partition, sent to node `addr`.
async fn create_topic_on(addr: SocketAddr, topic: &str, partitions: i32) -> Result<(), String> {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.to_string(),
            num_partitions: partitions,
            replication_factor: 1,
            ..CreatableTopic::default()
        }],
        timeout_ms: 10_000,
        ..CreateTopicsRequest::default()
    };
    let mut client = RawClient::connect(addr).await;
    match tokio::time::timeout(Duration::from_secs(15), client.send(request, 7)).await {
        Err(_) => Err("no answer within 15 s".into()),
        Ok(response) => match response.topics.first() {
            Some(t) if t.error_code == ErrorCode::NONE.0 => Ok(()),
            Some(t) => Err(format!(
                "{:?}: {}",
                ErrorCode(t.error_code),
                t.error_message.clone().unwrap_or_default()
            )),
            None => Err("an answer without the topic".into()),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// A 6-partition topic created through node 2 is led by each broker twice, and all three nodes
/// answer Metadata for it with the same id, replicas, leaders and epochs; each node lists all
/// three brokers and the same controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_is_spread_evenly_and_every_node_sees_the_same_metadata() {
    let cluster = start_cluster("placement");
    rd_create_topic(&cluster, &cluster.addr(2).to_string(), "spread", 6).await;
    let views = wait_for_topic_everywhere(&cluster, &cluster.ids(), "spread", 6).await;
    let first = &views[&1];
    for (id, view) in &views {
        assert_eq!(view, first, "node {id}'s metadata differs from node 1's");
    }
    let by_leader = leaders(first);
    let counts: BTreeMap<i32, usize> = by_leader.iter().map(|(b, ps)| (*b, ps.len())).collect();
    assert_eq!(
        counts,
        BTreeMap::from([(1, 2), (2, 2), (3, 2)]),
        "leaders per broker: {by_leader:?}"
    );
    for (index, p) in &first.partitions {
        assert_eq!(p.replicas, vec![p.leader], "partition {index}: replicas");
        assert_eq!(p.isr, vec![p.leader], "partition {index}: ISR");
        assert!(p.offline.is_empty(), "partition {index}: offline replicas");
    }
    // A produce and a fetch sent to a broker that does not lead the partition are refused with
    // NOT_LEADER_OR_FOLLOWER naming the leader, its epoch and its endpoint (KIP-951).
    let (&index, partition) = first
        .partitions
        .iter()
        .find(|(_, p)| p.leader != 1)
        .unwrap();
    let leader_port = i32::from(cluster.addr(partition.leader).port());
    let mut client = RawClient::connect(cluster.addr(1)).await;
    let mut batch = weir_records::RecordBatchBuilder::new();
    batch.push(weir_records::Record {
        value: Some(bytes::Bytes::from_static(b"v")),
        ..Default::default()
    });
    let produce = weir_protocol::messages::ProduceRequest {
        acks: 1,
        timeout_ms: 5_000,
        topic_data: vec![weir_protocol::messages::produce_request::TopicProduceData {
            name: "spread".into(),
            partition_data: vec![
                weir_protocol::messages::produce_request::PartitionProduceData {
                    index,
                    records: Some(batch.build().unwrap()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let refused = client.send(produce, 11).await;
    let answer = &refused.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.code());
    assert_eq!(
        (
            answer.current_leader.leader_id,
            answer.current_leader.leader_epoch
        ),
        (partition.leader, partition.leader_epoch)
    );
    let endpoints: Vec<(i32, i32)> = refused
        .node_endpoints
        .iter()
        .map(|e| (e.node_id, e.port))
        .collect();
    assert_eq!(endpoints, vec![(partition.leader, leader_port)]);
    let fetch = weir_protocol::messages::FetchRequest {
        max_wait_ms: 0,
        max_bytes: 1 << 20,
        session_epoch: -1,
        // v16: the first with node endpoints; from v13 topics go by id.
        topics: vec![weir_protocol::messages::fetch_request::FetchTopic {
            topic_id: weir_protocol::Uuid(first.id),
            partitions: vec![weir_protocol::messages::fetch_request::FetchPartition {
                partition: index,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let refused = client.send(fetch, 16).await;
    let answer = &refused.responses[0].partitions[0];
    assert_eq!(answer.error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.code());
    assert_eq!(answer.current_leader.leader_id, partition.leader);
    assert_eq!(refused.node_endpoints.len(), 1);
    // Every node lists every broker at its own port, and agrees on the controller.
    let mut controllers = BTreeSet::new();
    for id in cluster.ids() {
        let response = metadata(cluster.addr(id), Some(&[])).await;
        let brokers: BTreeMap<i32, i32> = response
            .brokers
            .iter()
            .map(|b| (b.node_id, b.port))
            .collect();
        let expected: BTreeMap<i32, i32> = cluster
            .ids()
            .into_iter()
            .map(|b| (b, i32::from(cluster.addr(b).port())))
            .collect();
        assert_eq!(brokers, expected, "brokers listed by node {id}");
        assert_eq!(
            response.controller_id, id,
            "Metadata from node {id} names the answering broker as controller"
        );
    }
    // DescribeCluster from every node: all three brokers and one active controller.
    for id in cluster.ids() {
        let response = describe_cluster(cluster.addr(id)).await;
        let brokers: BTreeSet<i32> = response.brokers.iter().map(|b| b.broker_id).collect();
        assert_eq!(
            brokers,
            cluster.ids().into_iter().collect(),
            "DescribeCluster from node {id}"
        );
        controllers.insert(response.controller_id);
    }
    assert_eq!(controllers.len(), 1, "controllers named: {controllers:?}");
    let controller = *controllers.first().unwrap();
    assert!(
        cluster.ids().contains(&controller),
        "controller {controller}"
    );
    // DescribeQuorum from every node: the leader's view, with all three voters' progress.
    for id in cluster.ids() {
        let (leader, voters) = describe_quorum(cluster.addr(id)).await;
        assert_eq!(leader, controller, "DescribeQuorum from node {id}");
        assert_eq!(
            voters.keys().copied().collect::<Vec<_>>(),
            cluster.ids(),
            "voters from node {id}"
        );
        assert!(
            voters.values().all(|end| *end > 0),
            "every voter's log end offset is known to the leader: {voters:?}"
        );
    }
}

/// librdkafka produces 600 keyed records through node 1 alone; a consumer group bootstrapped
/// from node 3 alone reads every one of them back, each key from one partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_produces_through_one_node_and_a_group_consumes_through_another() {
    let cluster = start_cluster("produce-consume");
    let topic = "keyed";
    // weir-client's admin creates the topic, through node 2.
    let client =
        weir_client::Client::connect(weir_client::ClientConfig::new(&cluster.addr(2).to_string()))
            .await
            .expect("weir-client connects");
    let admin = weir_client::admin::Admin::from_client(client);
    let created = admin
        .create_topics(&[weir_client::admin::NewTopic::new(topic, 6)])
        .await
        .expect("CreateTopics");
    assert!(
        created[0].1.is_ok(),
        "weir-client CreateTopics: {created:?}"
    );
    wait_for_topic_everywhere(&cluster, &cluster.ids(), topic, 6).await;

    let sent = records("rd", 600);
    let positions = rd_produce(&cluster, &cluster.addr(1).to_string(), topic, &sent).await;
    let used: BTreeSet<i32> = positions.iter().map(|(p, _)| *p).collect();
    assert!(used.len() > 1, "all keys went to one partition: {used:?}");

    let consumer: StreamConsumer = rd_config(&cluster.addr(3).to_string())
        .set("group.id", "cluster-keyed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let received = receive(&cluster, &consumer, sent.len(), "group consumer").await;
    blocking(|| drop(consumer));

    let expected: BTreeSet<(i32, i64, String, String)> = positions
        .iter()
        .zip(&sent)
        .map(|((p, o), (k, v))| (*p, *o, k.clone(), v.clone()))
        .collect();
    let got: BTreeSet<(i32, i64, String, String)> = received.into_iter().collect();
    assert_eq!(got.len(), sent.len(), "duplicates among the records read");
    assert_eq!(
        got, expected,
        "records read differ from the records produced"
    );
    let mut partition_of_key: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for (p, _, k, _) in &got {
        partition_of_key.entry(k).or_default().insert(*p);
    }
    assert!(
        partition_of_key.values().all(|ps| ps.len() == 1),
        "a key landed in several partitions"
    );
}

/// kill -9 of the active controller: the survivors elect a new one, which DescribeCluster
/// names, and CreateTopics through a survivor succeeds again. Prints the time from the kill to
/// the first successful CreateTopics. The killed node then rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_controller_takes_over_after_kill_9() {
    let mut cluster = start_cluster("controller-failover");
    let mut problems = Problems::default();
    let controller = controller_of(cluster.addr(1)).await;
    if !cluster.ids().contains(&controller) {
        cluster.fail(&format!(
            "DescribeCluster names no live controller: {controller}"
        ));
    }
    // The cluster works before the kill.
    let survivor = cluster
        .ids()
        .into_iter()
        .find(|&id| id != controller)
        .unwrap();
    if let Err(e) = create_topic_on(cluster.addr(survivor), "before-failover", 3).await {
        cluster.fail(&format!("CreateTopics before the kill: {e}"));
    }

    blocking(|| cluster.kill9(controller));
    let killed = Instant::now();
    let survivors: Vec<i32> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != controller)
        .collect();
    // Meanwhile: when the survivor's Metadata first names another controller (the election
    // alone, without the controller's take-over and the request).
    let watched = cluster.addr(survivor);
    let election = tokio::spawn(async move {
        loop {
            let named = controller_of(watched).await;
            if named >= 0 && named != controller {
                return (killed.elapsed(), named);
            }
            if killed.elapsed() > WAIT {
                return (killed.elapsed(), named);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut attempt = 0;
    wait_until(
        &cluster,
        "CreateTopics after the controller's kill",
        WAIT,
        || {
            attempt += 1;
            let name = format!("after-failover-{attempt}");
            let addr = cluster.addr(survivor);
            async move { create_topic_on(addr, &name, 3).await }
        },
    )
    .await;
    let failover = killed.elapsed();
    let (elected_after, elected) = election.await.expect("election watcher");
    println!(
        "[controller-failover] kill -9 of controller {controller} -> node {survivor}'s Metadata \
         names controller {elected}: {} ms",
        elected_after.as_millis()
    );
    println!(
        "[controller-failover] kill -9 of controller {controller} -> first successful \
         CreateTopics through node {survivor}: {} ms ({attempt} attempts)",
        failover.as_millis()
    );
    for &id in &survivors {
        let named = controller_of(cluster.addr(id)).await;
        if !survivors.contains(&named) {
            problems.add(format!(
                "DescribeCluster from node {id} names controller {named} after the failover \
                 (killed: {controller})"
            ));
        }
        let in_metadata = metadata(cluster.addr(id), Some(&[])).await.controller_id;
        if in_metadata != id {
            problems.add(format!(
                "Metadata from node {id} names controller {in_metadata}, not itself"
            ));
        }
    }

    // Restarted at once, within its old session: Kafka's broker retries its registration
    // until the controller accepts it; it must not give up.
    let rejoined = match blocking(|| cluster.try_restart(controller)) {
        Ok(took) => took,
        Err(why) => {
            problems.add(format!(
                "node {controller} restarted right after its kill -9: {why}"
            ));
            std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(1));
            blocking(|| cluster.restart(controller))
        }
    };
    println!(
        "[controller-failover] node {controller} restarted and ready in {} ms",
        rejoined.as_millis()
    );
    if let Err(e) = create_topic_on(cluster.addr(controller), "after-rejoin", 3).await {
        problems.add(format!("CreateTopics through the rejoined node: {e}"));
    }
    problems.check(&cluster);
}

/// kill -9 of a broker (not the controller): once `broker.session.timeout.ms` has passed, the
/// survivors report its partitions without a leader (LEADER_NOT_AVAILABLE, leader -1, the
/// broker in offline_replicas) and no longer list it; the other partitions keep their
/// leaders. Restarted, it leads its partitions again and every record is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_is_fenced_and_its_partitions_return_with_their_data() {
    let mut cluster = start_cluster("fencing");
    let topic = "fenced";
    rd_create_topic(&cluster, &cluster.bootstrap(), topic, 6).await;
    let before = wait_for_topic_everywhere(&cluster, &cluster.ids(), topic, 6).await;
    let sent = records("fenced", 300);
    let positions = rd_produce(&cluster, &cluster.bootstrap(), topic, &sent).await;

    let controller = controller_of(cluster.addr(1)).await;
    let victim = cluster
        .ids()
        .into_iter()
        .find(|&id| id != controller)
        .unwrap();
    let survivors: Vec<i32> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != victim)
        .collect();
    let by_leader = leaders(&before[&survivors[0]]);
    let victims_partitions = by_leader.get(&victim).cloned().unwrap_or_default();
    assert!(
        !victims_partitions.is_empty(),
        "node {victim} leads nothing: {by_leader:?}"
    );

    blocking(|| cluster.kill9(victim));
    let killed = Instant::now();
    let fenced = wait_until(
        &cluster,
        &format!("node {victim}'s partitions offline"),
        SESSION_TIMEOUT + WAIT,
        || async {
            for &id in &survivors {
                let Some(view) = topic_view(cluster.addr(id), topic).await else {
                    return Err(format!("node {id} does not know {topic}"));
                };
                for &p in &victims_partitions {
                    let part = &view.partitions[&p];
                    if part.leader != -1
                        || part.error != ErrorCode::LEADER_NOT_AVAILABLE.0
                        || part.offline != vec![victim]
                    {
                        return Err(format!("node {id}, partition {p}: {part:?}"));
                    }
                }
            }
            Ok(killed.elapsed())
        },
    )
    .await;
    println!(
        "[fencing] kill -9 of broker {victim} -> its partitions offline on every survivor: {} ms \
         (broker.session.timeout.ms = {})",
        fenced.as_millis(),
        SESSION_TIMEOUT.as_millis()
    );
    assert!(
        fenced >= SESSION_TIMEOUT - Duration::from_millis(500),
        "partitions went offline after {fenced:?}, before the session timeout"
    );
    for &id in &survivors {
        let response = metadata(cluster.addr(id), Some(&[topic])).await;
        let listed: BTreeSet<i32> = response.brokers.iter().map(|b| b.node_id).collect();
        assert!(
            !listed.contains(&victim),
            "node {id} still lists fenced broker {victim}: {listed:?}"
        );
        let view = topic_views(&response).remove(topic).unwrap();
        for (p, part) in &view.partitions {
            if !victims_partitions.contains(p) {
                assert_eq!(
                    part.leader, before[&id].partitions[p].leader,
                    "partition {p} moved although replication factor is 1"
                );
            }
        }
    }

    let restarted = blocking(|| cluster.restart(victim));
    let returned = wait_for_topic_everywhere(&cluster, &cluster.ids(), topic, 6).await;
    println!(
        "[fencing] broker {victim} restarted (ready in {} ms); its partitions have their leader \
         back",
        restarted.as_millis()
    );
    for (id, view) in &returned {
        for &p in &victims_partitions {
            let part = &view.partitions[&p];
            assert_eq!(part.leader, victim, "node {id}, partition {p}: leader");
            assert!(
                part.leader_epoch > before[id].partitions[&p].leader_epoch,
                "node {id}, partition {p}: leader epoch did not grow: {part:?}"
            );
            assert!(
                part.offline.is_empty(),
                "node {id}, partition {p}: {part:?}"
            );
        }
    }
    let expected: BTreeSet<Received> = positions
        .iter()
        .zip(&sent)
        .filter(|((p, _), _)| victims_partitions.contains(p))
        .map(|((p, o), (k, v))| (*p, *o, k.clone(), v.clone()))
        .collect();
    let read = rd_read_from_start(
        &cluster,
        &cluster.addr(survivors[0]).to_string(),
        topic,
        &victims_partitions,
        expected.len(),
    )
    .await;
    let read: BTreeSet<Received> = read.into_iter().collect();
    assert_eq!(
        read, expected,
        "records of node {victim}'s partitions after its restart"
    );
}

/// SIGSTOP of a broker (its sockets stay open, nothing answers): fenced like a dead one after
/// `broker.session.timeout.ms`; after SIGCONT it heartbeats again, is unfenced without a
/// restart, and leads its partitions again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_is_fenced_and_returns_after_sigcont() {
    let mut cluster = start_cluster("pause");
    let topic = "paused";
    rd_create_topic(&cluster, &cluster.bootstrap(), topic, 3).await;
    let before = wait_for_topic_everywhere(&cluster, &cluster.ids(), topic, 3).await;
    let controller = controller_of(cluster.addr(1)).await;
    let victim = cluster
        .ids()
        .into_iter()
        .find(|&id| id != controller)
        .unwrap();
    let survivors: Vec<i32> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != victim)
        .collect();
    let partitions = leaders(&before[&survivors[0]])
        .remove(&victim)
        .unwrap_or_default();
    assert!(!partitions.is_empty(), "node {victim} leads nothing");

    cluster.sigstop(victim);
    let paused = Instant::now();
    wait_until(
        &cluster,
        &format!("paused node {victim} fenced"),
        SESSION_TIMEOUT + WAIT,
        || async {
            for &id in &survivors {
                let response = metadata(cluster.addr(id), Some(&[topic])).await;
                if response.brokers.iter().any(|b| b.node_id == victim) {
                    return Err(format!("node {id} still lists node {victim}"));
                }
                let view = topic_views(&response).remove(topic).unwrap();
                for p in &partitions {
                    if view.partitions[p].leader != -1 {
                        return Err(format!(
                            "node {id}, partition {p}: {:?}",
                            view.partitions[p]
                        ));
                    }
                }
            }
            Ok(())
        },
    )
    .await;
    println!(
        "[pause] SIGSTOP of broker {victim} -> fenced on every survivor: {} ms",
        paused.elapsed().as_millis()
    );

    cluster.sigcont(victim);
    let resumed = Instant::now();
    let back = wait_for_topic_everywhere(&cluster, &cluster.ids(), topic, 3).await;
    println!(
        "[pause] SIGCONT -> broker {victim} leads its partitions again after {} ms",
        resumed.elapsed().as_millis()
    );
    for (id, view) in &back {
        for p in &partitions {
            assert_eq!(
                view.partitions[p].leader, victim,
                "node {id}, partition {p}"
            );
        }
    }
    assert_eq!(cluster.running().len(), 3, "a node exited");
}

/// SIGTERM to every node, then all three started again: the same topics with the same ids,
/// partition counts, replicas and leaders, and the same records (produced by weir-client and
/// read back by librdkafka).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_restarts_with_identical_metadata_and_data() {
    let mut cluster = start_cluster("full-restart");
    rd_create_topic(&cluster, &cluster.bootstrap(), "restart-a", 6).await;
    rd_create_topic(&cluster, &cluster.bootstrap(), "restart-b", 3).await;
    wait_for_topic_everywhere(&cluster, &cluster.ids(), "restart-a", 6).await;
    wait_for_topic_everywhere(&cluster, &cluster.ids(), "restart-b", 3).await;

    let client = weir_client::Client::connect(weir_client::ClientConfig::new(&cluster.bootstrap()))
        .await
        .expect("weir-client connects");
    let producer = weir_client::producer::Producer::from_client(
        client,
        weir_client::producer::ProducerConfig::default(),
    )
    .await
    .expect("weir-client producer");
    let mut expected: BTreeMap<String, BTreeSet<Received>> = BTreeMap::new();
    for (topic, count) in [("restart-a", 240), ("restart-b", 60)] {
        let mut deliveries = Vec::new();
        for (key, value) in records(topic, count) {
            let record = weir_client::producer::ProducerRecord::new(topic)
                .key(key.clone())
                .value(value.clone());
            let delivery = producer.enqueue(record).await.expect("enqueue");
            deliveries.push((delivery, key, value));
        }
        producer.flush().await;
        for (delivery, key, value) in deliveries {
            let at = tokio::time::timeout(WAIT, delivery)
                .await
                .expect("delivery within the timeout")
                .unwrap_or_else(|e| panic!("weir-client producing to {topic}: {e}"));
            expected.entry(topic.to_string()).or_default().insert((
                at.partition,
                at.offset,
                key,
                value,
            ));
        }
    }
    drop(producer);

    let before = topic_views(&metadata(cluster.addr(1), None).await);
    let mut problems = Problems::default();
    let stopping = Instant::now();
    let killed = blocking(|| cluster.stop_all());
    println!(
        "[full-restart] SIGTERM to all three nodes -> all exited in {} ms",
        stopping.elapsed().as_millis()
    );
    if !killed.is_empty() {
        problems.add(format!(
            "node(s) {killed:?} still ran {:?} after SIGTERM (killed with SIGKILL)",
            support::cluster::STOP_TIMEOUT
        ));
    }
    let restart = blocking(|| cluster.start_all());
    println!(
        "[full-restart] all three nodes ready again in {} ms",
        restart.as_millis()
    );
    for (topic, view) in &before {
        wait_for_topic_everywhere(&cluster, &cluster.ids(), topic, view.partitions.len()).await;
    }
    let after = topic_views(&metadata(cluster.addr(1), None).await);
    let shape = |views: &BTreeMap<String, TopicView>| -> BTreeMap<String, TopicShape> {
        views
            .iter()
            .map(|(name, v)| {
                (
                    name.clone(),
                    (
                        v.id,
                        v.partitions
                            .iter()
                            .map(|(i, p)| (*i, p.leader, p.replicas.clone()))
                            .collect(),
                    ),
                )
            })
            .collect()
    };
    assert_eq!(
        shape(&after),
        shape(&before),
        "topics, ids, partitions, leaders or replicas changed across the restart"
    );
    for (topic, records) in &expected {
        let partitions: Vec<i32> =
            (0..i32::try_from(before[topic].partitions.len()).unwrap()).collect();
        let read = rd_read_from_start(
            &cluster,
            &cluster.addr(2).to_string(),
            topic,
            &partitions,
            records.len(),
        )
        .await;
        let read: BTreeSet<Received> = read.into_iter().collect();
        assert_eq!(&read, records, "records of {topic} after the restart");
    }
    problems.check(&cluster);
}

/// Dedicated roles, as a KRaft cluster is usually deployed: three controller-only nodes (no
/// client listener) and two broker-only nodes, one finding the controllers through
/// `controller.quorum.voters`, the other through `controller.quorum.bootstrap.servers`.
/// Clients see only the two brokers; a replicated topic is placed on them alone; librdkafka
/// produces and a group consumes; kill -9 of the active controller leaves the brokers
/// following the new one (CreateTopics works again, the time is printed); a broker-only node
/// killed and restarted catches up from the controllers and serves its data again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_controllers_and_brokers_form_one_cluster() {
    use support::cluster::Roles;
    let started = Instant::now();
    let mut cluster = blocking(|| {
        Cluster::start_roles(
            &[
                Roles::Controller,
                Roles::Controller,
                Roles::Controller,
                Roles::Broker { bootstrap: false },
                Roles::Broker { bootstrap: true },
            ],
            &[],
        )
    });
    println!(
        "[roles] 3 controllers + 2 brokers ready in {} ms",
        started.elapsed().as_millis()
    );
    let brokers = [4, 5];
    let bootstrap = cluster.bootstrap();
    for id in brokers {
        let response = metadata(cluster.addr(id), Some(&[])).await;
        let listed: BTreeSet<i32> = response.brokers.iter().map(|b| b.node_id).collect();
        assert_eq!(
            listed,
            BTreeSet::from(brokers),
            "node {id} lists only the brokers"
        );
    }

    // DescribeQuorum (any broker asks the leader): three voters, the two brokers observing.
    wait_until(
        &cluster,
        "both brokers listed as observers",
        WAIT,
        || async {
            let (leader, voters, observers) = describe_quorum_with_observers(cluster.addr(4)).await;
            let voters: Vec<i32> = voters.into_keys().collect();
            let observers: Vec<i32> = observers
                .into_iter()
                .filter(|(_, end)| *end > 0)
                .map(|(id, _)| id)
                .collect();
            if (1..=3).contains(&leader) && voters == [1, 2, 3] && observers == [4, 5] {
                Ok(())
            } else {
                Err(format!(
                    "leader {leader}, voters {voters:?}, observers {observers:?}"
                ))
            }
        },
    )
    .await;
    support::cluster::create_replicated_topic(&cluster, "split", 4, 2).await;
    let views = wait_for_topic_everywhere(&cluster, &brokers, "split", 4).await;
    assert_eq!(views[&4], views[&5], "both brokers see the same metadata");
    for (index, p) in &views[&4].partitions {
        assert_eq!(p.replicas.len(), 2, "partition {index}: {p:?}");
        assert!(
            p.replicas.iter().all(|r| brokers.contains(r)),
            "partition {index} placed on a controller-only node: {p:?}"
        );
    }
    let first = records("split", 200);
    rd_produce(&cluster, &cluster.addr(5).to_string(), "split", &first).await;
    let read = rd_read_from_start(&cluster, &bootstrap, "split", &[0, 1, 2, 3], first.len()).await;
    assert_eq!(read.len(), first.len());

    // kill -9 of the active controller: the brokers follow whoever is elected next.
    let active = wait_until(&cluster, "an active controller", WAIT, || async {
        match controller_of(cluster.addr(4)).await {
            id @ 1..=3 => Ok(id),
            other => Err(format!("controller {other}")),
        }
    })
    .await;
    let killed = Instant::now();
    blocking(|| cluster.kill9(active));
    wait_until(
        &cluster,
        "CreateTopics after the failover",
        WAIT,
        || async { create_topic_on(cluster.addr(4), "after-failover", 1).await },
    )
    .await;
    println!(
        "[roles] controller {active} killed: CreateTopics works again after {} ms",
        killed.elapsed().as_millis()
    );
    wait_for_topic_everywhere(&cluster, &brokers, "after-failover", 1).await;
    let now = wait_until(&cluster, "the new controller named", WAIT, || async {
        match controller_of(cluster.addr(5)).await {
            id if id != active && (1..=3).contains(&id) => Ok(id),
            other => Err(format!("controller {other}")),
        }
    })
    .await;
    println!("[roles] controller {now} is active now");

    // A broker-only node restarted gets the metadata from the controllers again.
    blocking(|| cluster.kill9(5));
    let second = records("split-2", 100);
    rd_produce(&cluster, &cluster.addr(4).to_string(), "split", &second).await;
    blocking(|| cluster.restart(5));
    wait_for_topic_everywhere(&cluster, &[5], "after-failover", 1).await;
    let all = first.len() + second.len();
    let read = rd_read_from_start(
        &cluster,
        &cluster.addr(5).to_string(),
        "split",
        &[0, 1, 2, 3],
        all,
    )
    .await;
    let values: BTreeSet<&str> = read.iter().map(|r| r.3.as_str()).collect();
    for (_, value) in first.iter().chain(&second) {
        assert!(values.contains(value.as_str()), "{value} lost");
    }
    blocking(|| cluster.stop_all());
}
