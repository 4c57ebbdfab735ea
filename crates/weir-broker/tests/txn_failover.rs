//! The transaction coordinator across three real `weir` processes (tests/support/cluster.rs),
//! replication factor 3 and `min.insync.replicas=2`: a librdkafka transactional producer commits
//! a transaction, opens another, and the coordinator of its transactional id (the leader of the
//! id's `__transaction_state` partition) is killed with `kill -9`. The transaction commits
//! through the new coordinator (which loaded the Ongoing transaction from the replicated
//! partition), the next one aborts, and a `read_committed` consumer reads exactly the two
//! committed transactions. And consume-transform-produce across a kill -9 of the group's
//! coordinator between `send_offsets_to_transaction` and the commit: the new coordinator has
//! the offsets pending from the replicated `__consumer_offsets` partition and the commit makes
//! them the group's.

#[allow(
    unreachable_pub,
    reason = "support/ is shared by the test crates; its items are `pub` for them"
)]
mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::RawClient;
use support::cluster::{
    Cluster, blocking, coordinator_of, create_replicated_topic, rd_config, wait_until,
};

/// Upper bound for any one wait on the cluster.
const WAIT: Duration = Duration::from_secs(60);

const PROPS: [(&str, &str); 3] = [
    ("default.replication.factor", "3"),
    ("min.insync.replicas", "2"),
    ("replica.lag.time.max.ms", "4000"),
];

async fn send(cluster: &Cluster, producer: &FutureProducer, topic: &str, value: &str) {
    let partition = i32::from(value.as_bytes().last().copied().unwrap_or(0) % 3);
    let sent = producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(value),
            WAIT,
        )
        .await;
    if let Err((e, _)) = sent {
        cluster.fail(&format!("send {value}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_commits_through_a_new_coordinator_after_kill_9() {
    let mut cluster = blocking(|| Cluster::start_with(3, &PROPS));
    let topic = "txn-failover";
    let id = "failover-tx";
    create_replicated_topic(&cluster, topic, 3, 3).await;
    let producer: FutureProducer = rd_config(&cluster.bootstrap())
        .set("transactional.id", id)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("transaction.timeout.ms", "60000")
        .create()
        .expect("producer");
    if let Err(e) = blocking(|| producer.init_transactions(WAIT)) {
        cluster.fail(&format!("init_transactions: {e}"));
    }

    blocking(|| producer.begin_transaction()).expect("begin");
    for n in 0..6 {
        send(&cluster, &producer, topic, &format!("first-{n}")).await;
    }
    if let Err(e) = blocking(|| producer.commit_transaction(WAIT)) {
        cluster.fail(&format!("first commit: {e}"));
    }

    blocking(|| producer.begin_transaction()).expect("begin");
    for n in 0..6 {
        send(&cluster, &producer, topic, &format!("second-{n}")).await;
    }
    let coordinator = coordinator_of(cluster.addr(1), id, 1).await;
    assert!(coordinator > 0, "no coordinator for {id}");
    blocking(|| cluster.kill9(coordinator));
    let survivors: Vec<i32> = cluster
        .ids()
        .into_iter()
        .filter(|n| *n != coordinator)
        .collect();
    let killed = Instant::now();
    let new = wait_until(&cluster, "a new transaction coordinator", WAIT, || async {
        match coordinator_of(cluster.addr(survivors[0]), id, 1).await {
            c if c > 0 && c != coordinator => Ok(c),
            c => Err(format!("coordinator {c}")),
        }
    })
    .await;
    println!(
        "[txn-failover] node {coordinator} killed; node {new} coordinates {id} after {} ms",
        killed.elapsed().as_millis()
    );
    if let Err(e) = blocking(|| producer.commit_transaction(WAIT)) {
        cluster.fail(&format!("commit through the new coordinator: {e}"));
    }

    blocking(|| producer.begin_transaction()).expect("begin");
    for n in 0..3 {
        send(&cluster, &producer, topic, &format!("aborted-{n}")).await;
    }
    if let Err(e) = blocking(|| producer.abort_transaction(WAIT)) {
        cluster.fail(&format!("abort: {e}"));
    }
    blocking(|| drop(producer));

    let bootstrap = survivors
        .iter()
        .map(|n| cluster.addr(*n).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let read = blocking(|| {
        let consumer: BaseConsumer = rd_config(&bootstrap)
            .set("group.id", "txn-failover-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for p in 0..3 {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition offset");
        }
        consumer.assign(&assignment).expect("assign");
        let mut values = Vec::new();
        let deadline = Instant::now() + WAIT;
        let mut quiet_since = Instant::now();
        // Until 12 arrived and nothing more for 3 s (an aborted record would show up by then).
        while Instant::now() < deadline
            && (values.len() < 12 || quiet_since.elapsed() < Duration::from_secs(3))
        {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                quiet_since = Instant::now();
            }
        }
        drop(consumer);
        values
    });
    let mut read = read;
    read.sort();
    let mut expected: Vec<String> = (0..6)
        .flat_map(|n| [format!("first-{n}"), format!("second-{n}")])
        .collect();
    expected.sort();
    if read != expected {
        cluster.fail(&format!("read_committed after the failover read {read:?}"));
    }
}

/// The committed offset of `group` for partition 0 of `topic` at node `addr`, if it answers.
async fn committed_at(addr: SocketAddr, group: &str, topic: &str) -> Result<i64, String> {
    use weir_protocol::messages::OffsetFetchRequest;
    use weir_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let mut client = tokio::time::timeout(Duration::from_secs(5), RawClient::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?;
    let request = OffsetFetchRequest {
        group_id: group.into(),
        topics: Some(vec![OffsetFetchRequestTopic {
            name: topic.into(),
            partition_indexes: vec![0],
            ..Default::default()
        }]),
        ..Default::default()
    };
    let response = tokio::time::timeout(Duration::from_secs(5), client.send(request, 5))
        .await
        .map_err(|_| "OffsetFetch timed out".to_string())?;
    if response.error_code != 0 {
        return Err(format!("error {}", response.error_code));
    }
    Ok(response.topics[0].partitions[0].committed_offset)
}

/// consume-transform-produce across a kill -9 of the group's coordinator after
/// `send_offsets_to_transaction`: the offsets pending in the transaction are in the replicated
/// `__consumer_offsets` partition, the new coordinator replays them as pending, and the
/// transaction's COMMIT marker makes them the group's committed offset there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_to_a_transaction_survive_a_group_coordinator_kill_9() {
    let mut cluster = blocking(|| Cluster::start_with(3, &PROPS));
    let input = "ctp-in";
    let output = "ctp-out";
    let group = "ctp-group";
    create_replicated_topic(&cluster, input, 1, 3).await;
    // Three partitions: `send` spreads records over them.
    create_replicated_topic(&cluster, output, 3, 3).await;
    let plain: FutureProducer = rd_config(&cluster.bootstrap())
        .set("acks", "all")
        .create()
        .expect("producer");
    for n in 0..5 {
        if let Err((e, _)) = plain
            .send(
                FutureRecord::<(), _>::to(input)
                    .partition(0)
                    .payload(&format!("in-{n}")),
                WAIT,
            )
            .await
        {
            cluster.fail(&format!("plain send: {e}"));
        }
    }
    blocking(|| drop(plain));
    let producer: FutureProducer = rd_config(&cluster.bootstrap())
        .set("transactional.id", "ctp-tx")
        .set("message.timeout.ms", "60000")
        .set("transaction.timeout.ms", "60000")
        .create()
        .expect("producer");
    if let Err(e) = blocking(|| producer.init_transactions(WAIT)) {
        cluster.fail(&format!("init_transactions: {e}"));
    }
    let consumer: BaseConsumer = rd_config(&cluster.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    blocking(|| producer.begin_transaction()).expect("begin");
    let mut read = 0;
    let deadline = Instant::now() + WAIT;
    while read < 5 && Instant::now() < deadline {
        let polled = blocking(|| {
            consumer
                .poll(Duration::from_millis(200))
                .map(|m| m.map(|m| m.payload().unwrap_or_default().to_vec()))
        });
        if let Some(Ok(value)) = polled {
            let value = format!("out-{}", String::from_utf8_lossy(&value));
            send(&cluster, &producer, output, &value).await;
            read += 1;
        }
    }
    assert_eq!(read, 5, "consumed only {read}");
    let position = consumer.position().expect("position");
    let metadata = consumer.group_metadata().expect("group metadata");
    if let Err(e) = blocking(|| producer.send_offsets_to_transaction(&position, &metadata, WAIT)) {
        cluster.fail(&format!("send_offsets_to_transaction: {e}"));
    }
    let coordinator = coordinator_of(cluster.addr(1), group, 0).await;
    assert!(coordinator > 0, "no coordinator for {group}");
    blocking(|| cluster.kill9(coordinator));
    // The consumer's group coordinator is gone; it has nothing more to do.
    std::thread::spawn(move || drop(consumer));
    let survivors: Vec<i32> = cluster
        .ids()
        .into_iter()
        .filter(|n| *n != coordinator)
        .collect();
    if let Err(e) = blocking(|| producer.commit_transaction(WAIT)) {
        cluster.fail(&format!("commit after the group coordinator died: {e}"));
    }
    let committed = wait_until(
        &cluster,
        "the committed offset on the new coordinator",
        WAIT,
        || async {
            let new = coordinator_of(cluster.addr(survivors[0]), group, 0).await;
            if new <= 0 || new == coordinator {
                return Err(format!("coordinator {new}"));
            }
            match committed_at(cluster.addr(new), group, input).await {
                Ok(5) => Ok(new),
                other => Err(format!("node {new}: {other:?}")),
            }
        },
    )
    .await;
    println!("[txn-offsets-failover] node {coordinator} killed; node {committed} has offset 5");
    blocking(|| drop(producer));
}
