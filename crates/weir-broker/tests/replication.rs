//! Replication across three real `weir` processes (tests/support/cluster.rs), with replication
//! factor 3 and `min.insync.replicas=2`:
//!
//! - **chaos**: idempotent acks=all producers (librdkafka through the `rdkafka` crate, and
//!   weir-client) write at a steady rate while the leader of partition 0 is killed with
//!   `kill -9` every few seconds and restarted; a checker then reads every partition back and
//!   reports acknowledged, lost, duplicated and out-of-order records and the share of time
//!   produce was available. Delivery failures, lost, duplicated and out of order must be 0.
//!   CI runs it for `WEIR_CHAOS_SECS` (default 24 s, a kill every
//!   `WEIR_CHAOS_KILL_EVERY_SECS`, default 8 s);
//!   `tests/cluster/chaos.sh` runs the 5-minute version and prints the table.
//! - **zombie leader**: a leader stopped with SIGSTOP until another replica replaces it, then
//!   resumed, acknowledges nothing any more, and what it appended as a deposed leader is gone
//!   from the partition.
//! - **catch-up**: a replica killed while records are written catches up when it returns and
//!   rejoins the ISR.
//! - **coordinator failover**: a consumer group resumes from its committed offset after its
//!   coordinator is killed.
//! - **rolling restart**: SIGTERM to each node in turn while an idempotent producer writes: no
//!   delivery fails.
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
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::RawClient;
use support::cluster::{
    Cluster, agreed_view, agreed_view_once, blocking, coordinator_of, create_replicated_topic,
    partition_view, rd_config, wait_until,
};
use weir_protocol::messages::ProduceRequest;
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

/// Upper bound for any one wait on the cluster.
const WAIT: Duration = Duration::from_secs(60);

/// Settings of every node in these tests.
const PROPS: [(&str, &str); 3] = [
    ("default.replication.factor", "3"),
    ("min.insync.replicas", "2"),
    ("replica.lag.time.max.ms", "4000"),
];

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// The leader of a partition as the running nodes agree on it, with its ISR.
async fn agreed_leader(
    cluster: &Cluster,
    running: &[i32],
    topic: &str,
    partition: i32,
) -> (i32, i32, Vec<i32>) {
    let what = format!("{topic}-{partition} has an agreed leader");
    let view = agreed_view(cluster, running, topic, partition, &what, WAIT, |p| {
        p.leader >= 0
    })
    .await;
    (view.leader, view.leader_epoch, view.isr)
}

/// One acknowledged record: which producer wrote it, its sequence number in that producer,
/// and where it landed.
#[derive(Debug, Clone)]
struct Acked {
    partition: i32,
    offset: i64,
    at: Instant,
}

/// What a producer task saw.
#[derive(Debug, Default)]
struct ProducerReport {
    /// Value → where it was acknowledged.
    acked: HashMap<String, Acked>,
    /// Records whose delivery failed (the producer gave up on them).
    failed: usize,
}

/// A finished delivery: the value and where it landed, or why it failed.
type Delivered = (String, Result<(i32, i64), String>);

impl ProducerReport {
    fn note(&mut self, delivered: Delivered) {
        match delivered {
            (value, Ok((partition, offset))) => {
                self.acked.insert(
                    value,
                    Acked {
                        partition,
                        offset,
                        at: Instant::now(),
                    },
                );
            }
            (value, Err(e)) => {
                eprintln!("delivery of {value} failed: {e}");
                self.failed += 1;
            }
        }
    }

    /// Notes the deliveries that have finished, without waiting.
    fn note_finished(&mut self, pending: &mut tokio::task::JoinSet<Delivered>) {
        while let Some(done) = pending.try_join_next() {
            if let Ok(delivered) = done {
                self.note(delivered);
            }
        }
    }

    /// Waits for every delivery and notes it.
    async fn note_all(&mut self, pending: &mut tokio::task::JoinSet<Delivered>) {
        while let Some(done) = pending.join_next().await {
            if let Ok(delivered) = done {
                self.note(delivered);
            }
        }
    }
}

/// Writes `rd-<seq>` values through librdkafka (idempotent, acks=all) every `interval` until
/// `stop`, then waits for every delivery.
async fn run_rdkafka_producer(
    bootstrap: String,
    topic: String,
    stop: Arc<AtomicBool>,
    interval: Duration,
) -> ProducerReport {
    let producer: FutureProducer = rd_config(&bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .set("request.timeout.ms", "10000")
        .create()
        .expect("producer");
    let mut report = ProducerReport::default();
    let mut pending = tokio::task::JoinSet::new();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(interval);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let value = format!("rd-{seq:08}");
        seq += 1;
        match producer.send_result(FutureRecord::to(&topic).key(&value).payload(&value)) {
            Ok(delivery) => {
                pending.spawn(async move {
                    let result = match delivery.await {
                        Ok(Ok(d)) => Ok((d.partition, d.offset)),
                        Ok(Err((e, _))) => Err(e.to_string()),
                        Err(_) => Err("delivery cancelled".to_string()),
                    };
                    (value, result)
                });
            }
            Err((e, _)) => {
                eprintln!("rdkafka enqueue failed: {e}");
                report.failed += 1;
            }
        }
        report.note_finished(&mut pending);
    }
    report.note_all(&mut pending).await;
    blocking(|| drop(producer));
    report
}

/// Writes `wc-<seq>` values through weir-client (idempotent, acks=all) every `interval` until
/// `stop`, then waits for every delivery.
async fn run_weir_client_producer(
    bootstrap: String,
    topic: String,
    stop: Arc<AtomicBool>,
    interval: Duration,
) -> ProducerReport {
    let client = weir_client::Client::connect(weir_client::ClientConfig::new(&bootstrap))
        .await
        .expect("weir-client connects");
    let producer = weir_client::producer::Producer::from_client(
        client,
        weir_client::producer::ProducerConfig::default(),
    )
    .await
    .expect("weir-client producer");
    let mut report = ProducerReport::default();
    let mut pending = tokio::task::JoinSet::new();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(interval);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let value = format!("wc-{seq:08}");
        seq += 1;
        let record = weir_client::producer::ProducerRecord::new(topic.clone())
            .key(value.clone())
            .value(value.clone());
        match producer.enqueue(record).await {
            Ok(delivery) => {
                pending.spawn(async move {
                    let result = delivery
                        .await
                        .map(|m| (m.partition, m.offset))
                        .map_err(|e| e.to_string());
                    (value, result)
                });
            }
            Err(e) => {
                eprintln!("weir-client enqueue failed: {e}");
                report.failed += 1;
            }
        }
        report.note_finished(&mut pending);
    }
    producer.flush().await;
    report.note_all(&mut pending).await;
    report
}

/// Every record of `topic`'s `partitions`, read from the beginning to the high watermark
/// through librdkafka: partition → (offset, value) in log order.
fn read_all(
    cluster: &mut Cluster,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    // Only running nodes: librdkafka may give up on a metadata request to a dead one.
    let bootstrap = cluster
        .running()
        .iter()
        .map(|id| cluster.addr(*id).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cluster = &*cluster;
    let consumer: BaseConsumer = rd_config(&bootstrap)
        .set("group.id", format!("{topic}-checker"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let mut attempt = 0;
        let high = loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok((_, high)) => break high,
                Err(e) if attempt < 5 => {
                    eprintln!("watermarks of {topic}-{p} (retried): {e}");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => cluster.fail(&format!("watermarks of {topic}-{p}: {e}")),
            }
        };
        ends.insert(p, high);
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut read: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    let done = |read: &BTreeMap<i32, Vec<(i64, String)>>| {
        ends.iter().all(|(p, end)| {
            *end == 0
                || read
                    .get(p)
                    .and_then(|r| r.last())
                    .is_some_and(|(o, _)| o + 1 >= *end)
        })
    };
    while !done(&read) {
        if Instant::now() > deadline {
            cluster.fail(&format!(
                "reading {topic} back: ends {ends:?}, read {:?}",
                read.iter().map(|(p, r)| (p, r.len())).collect::<Vec<_>>()
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => read.entry(m.partition()).or_default().push((
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(e)) => eprintln!("checker consumer: {e}"),
            None => {}
        }
    }
    read
}

/// The checker's verdict.
#[derive(Debug, Default)]
struct Verdict {
    acknowledged: usize,
    failed: usize,
    lost: Vec<String>,
    duplicated: Vec<String>,
    out_of_order: Vec<String>,
    moved: Vec<String>,
    availability: f64,
}

impl Verdict {
    fn table(&self, label: &str, kills: usize, elapsed: Duration) -> String {
        format!(
            "[{label}] {:.0} s, {kills} leader kills\n\
             | acknowledged | delivery failed | lost | duplicated | out of order | acked elsewhere | produce available |\n\
             |---:|---:|---:|---:|---:|---:|---:|\n\
             | {} | {} | {} | {} | {} | {} | {:.1}% |",
            elapsed.as_secs_f64(),
            self.acknowledged,
            self.failed,
            self.lost.len(),
            self.duplicated.len(),
            self.out_of_order.len(),
            self.moved.len(),
            self.availability * 100.0,
        )
    }
}

/// Checks what the producers were told against what the partitions hold.
fn check(
    reports: &[ProducerReport],
    read: &BTreeMap<i32, Vec<(i64, String)>>,
    started: Instant,
    ended: Instant,
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut found: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for (p, records) in read {
        for (offset, value) in records {
            found.entry(value.as_str()).or_default().push((*p, *offset));
        }
        // Per producer, values must appear in the order they were sent (idempotence keeps
        // order across retries).
        let mut last: HashMap<&str, &str> = HashMap::new();
        for (offset, value) in records {
            let producer = value.split('-').next().unwrap_or_default();
            if let Some(previous) = last.insert(producer, value.as_str()) {
                if previous >= value.as_str() {
                    verdict.out_of_order.push(format!(
                        "partition {p} offset {offset}: {value} after {previous}"
                    ));
                }
            }
        }
    }
    for (value, places) in &found {
        if places.len() > 1 {
            verdict.duplicated.push(format!("{value} at {places:?}"));
        }
    }
    let mut ack_times = Vec::new();
    for report in reports {
        verdict.failed += report.failed;
        for (value, acked) in &report.acked {
            verdict.acknowledged += 1;
            ack_times.push(acked.at);
            match found.get(value.as_str()) {
                None => verdict.lost.push(format!(
                    "{value} (acked at {}-{})",
                    acked.partition, acked.offset
                )),
                Some(places) if !places.contains(&(acked.partition, acked.offset)) => {
                    verdict.moved.push(format!(
                        "{value}: acked at {}-{}, found at {places:?}",
                        acked.partition, acked.offset
                    ))
                }
                Some(_) => {}
            }
        }
    }
    // Availability: the share of 250 ms slots of the run in which some record was
    // acknowledged.
    let slot = Duration::from_millis(250);
    let slots = ((ended - started).as_millis() / slot.as_millis()).max(1) as usize;
    let mut busy = vec![false; slots];
    for at in ack_times {
        let i = (at.saturating_duration_since(started).as_millis() / slot.as_millis()) as usize;
        if let Some(b) = busy.get_mut(i) {
            *b = true;
        }
    }
    verdict.availability = busy.iter().filter(|b| **b).count() as f64 / slots as f64;
    verdict
}

/// kill -9 of the leader of partition 0 every few seconds while two idempotent acks=all
/// producers write: nothing acknowledged is lost, duplicated or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_of_leaders() {
    let run_for = env_secs("WEIR_CHAOS_SECS", 24);
    let kill_every = env_secs("WEIR_CHAOS_KILL_EVERY_SECS", 8);
    let mut cluster = blocking(|| Cluster::start_with(3, &PROPS));
    let topic = "chaos";
    let partitions = 3;
    create_replicated_topic(&cluster, topic, partitions, 3).await;
    let all = cluster.ids();
    agreed_leader(&cluster, &all, topic, 0).await;

    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_millis(5);
    let started = Instant::now();
    let rd = tokio::spawn(run_rdkafka_producer(
        cluster.bootstrap(),
        topic.into(),
        stop.clone(),
        interval,
    ));
    let wc = tokio::spawn(run_weir_client_producer(
        cluster.bootstrap(),
        topic.into(),
        stop.clone(),
        interval,
    ));
    let mut kills = 0;
    while started.elapsed() + kill_every <= run_for {
        tokio::time::sleep(kill_every / 2).await;
        let running = blocking(|| cluster.running());
        let (leader, epoch, isr) = agreed_leader(&cluster, &running, topic, 0).await;
        println!(
            "[chaos] {:.1} s: killing node {leader}, leader of {topic}-0 in epoch {epoch}, ISR {isr:?}",
            started.elapsed().as_secs_f64()
        );
        blocking(|| cluster.kill9(leader));
        kills += 1;
        tokio::time::sleep(kill_every / 2).await;
        let ready = blocking(|| cluster.restart(leader));
        println!(
            "[chaos] node {leader} restarted, ready in {} ms",
            ready.as_millis()
        );
    }
    let remaining = run_for.saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;
    stop.store(true, Ordering::Release);
    let ended = Instant::now();
    let reports = vec![
        rd.await.expect("rdkafka producer task"),
        wc.await.expect("weir-client producer task"),
    ];
    let read = blocking(|| read_all(&mut cluster, topic, partitions));
    let verdict = check(&reports, &read, started, ended);
    println!("{}", verdict.table("chaos", kills, ended - started));
    // Clients carry on: no delivery may fail (both producers retry within 120 s).
    if verdict.failed > 0
        || !verdict.lost.is_empty()
        || !verdict.duplicated.is_empty()
        || !verdict.out_of_order.is_empty()
        || !verdict.moved.is_empty()
    {
        cluster.fail(&format!(
            "delivery failed {}\nlost {:?}\nduplicated {:?}\nout of order {:?}\nacked elsewhere {:?}",
            verdict.failed,
            verdict.lost.iter().take(20).collect::<Vec<_>>(),
            verdict.duplicated.iter().take(20).collect::<Vec<_>>(),
            verdict.out_of_order.iter().take(20).collect::<Vec<_>>(),
            verdict.moved.iter().take(20).collect::<Vec<_>>(),
        ));
    }
    assert!(
        verdict.acknowledged > 100,
        "too few records acknowledged: {verdict:?}"
    );
}

/// Leader, leader epoch and ISR (sorted) of one partition as node `addr` sees it.
async fn partition_state(
    addr: SocketAddr,
    topic: &str,
    partition: i32,
) -> Option<(i32, i32, Vec<i32>)> {
    partition_view(addr, topic, partition)
        .await
        .map(|p| (p.leader, p.leader_epoch, p.isr))
}

/// An acks=all Produce of one record to partition 0 that waits at most `timeout_ms`.
fn produce_request(topic: &str, value: &str, timeout_ms: i32) -> ProduceRequest {
    let mut builder = weir_records::RecordBatchBuilder::new();
    builder.push(weir_records::Record::new(0, None, Some(value.as_bytes())));
    ProduceRequest {
        acks: -1,
        timeout_ms,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(builder.build().expect("batch")),
                ..PartitionProduceData::default()
            }],
            ..TopicProduceData::default()
        }],
        ..ProduceRequest::default()
    }
}

/// A leader paused (SIGSTOP) until another replica has replaced it, then resumed, refuses or
/// times out every acks=all produce, and what it appended is gone from the partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_acknowledges_nothing() {
    let mut cluster = blocking(|| Cluster::start_with(3, &PROPS));
    let topic = "zombie";
    create_replicated_topic(&cluster, topic, 1, 3).await;
    let all = cluster.ids();
    let (old, epoch, _) = agreed_leader(&cluster, &all, topic, 0).await;
    // Something committed first.
    let mut client = RawClient::connect(cluster.addr(old)).await;
    let response = client
        .send(produce_request(topic, "before", 10_000), 9)
        .await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code, 0,
        "{response:?}"
    );

    blocking(|| cluster.sigstop(old));
    let others: Vec<i32> = all.iter().copied().filter(|id| *id != old).collect();
    let paused = Instant::now();
    let (new, new_epoch, _) = wait_until(&cluster, "a new leader", WAIT, || async {
        match agreed_leader_once_for(&cluster, &others, topic, 0).await {
            Some(state) if state.0 != old && state.0 >= 0 => Ok(state),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    println!(
        "[zombie] node {old} paused; node {new} leads in epoch {new_epoch} (was {epoch}) after {} ms",
        paused.elapsed().as_millis()
    );
    assert!(new_epoch > epoch);
    // The zombie's client connection was made before the pause; its requests are served by
    // the resumed process before it has necessarily heard of the new leader.
    let mut zombie = RawClient::connect(cluster.addr(old)).await;
    blocking(|| cluster.sigcont(old));
    let mut refused = Vec::new();
    for i in 0..5 {
        let response = zombie
            .send(produce_request(topic, &format!("zombie-{i}"), 2_000), 9)
            .await;
        let code = response.responses[0].partition_responses[0].error_code;
        assert_ne!(code, 0, "the deposed leader acknowledged zombie-{i}");
        refused.push(code);
    }
    println!("[zombie] the resumed node answered {refused:?}");
    let mut client = RawClient::connect(cluster.addr(new)).await;
    let response = client
        .send(produce_request(topic, "after", 10_000), 9)
        .await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code, 0,
        "{response:?}"
    );
    // Wait until the old leader has rejoined the ISR, then read everything back.
    wait_until(&cluster, "the old leader back in the ISR", WAIT, || async {
        match partition_state(cluster.addr(new), topic, 0).await {
            Some((_, _, isr)) if isr.contains(&old) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let read = blocking(|| read_all(&mut cluster, topic, 1));
    let values: Vec<&str> = read
        .get(&0)
        .map(|r| r.iter().map(|(_, v)| v.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        values,
        ["before", "after"],
        "the partition holds {values:?}"
    );
}

/// A follower killed while records are written catches up when it returns and rejoins the ISR;
/// then the other two can fail one after another without losing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_replica_catches_up_and_rejoins_the_isr() {
    let mut cluster = blocking(|| Cluster::start_with(3, &PROPS));
    let topic = "catch-up";
    create_replicated_topic(&cluster, topic, 1, 3).await;
    let all = cluster.ids();
    let (leader, _, isr) = agreed_leader(&cluster, &all, topic, 0).await;
    assert_eq!(
        isr, all,
        "a new partition starts with every replica in sync"
    );
    let follower = *all.iter().find(|id| **id != leader).expect("a follower");
    blocking(|| cluster.kill9(follower));
    let mut client = RawClient::connect(cluster.addr(leader)).await;
    // The first produce waits until the dead follower leaves the ISR (fenced after the
    // session timeout, or dropped by the leader after replica.lag.time.max.ms).
    for i in 0..200 {
        let response = client
            .send(produce_request(topic, &format!("v-{i:04}"), 30_000), 9)
            .await;
        assert_eq!(
            response.responses[0].partition_responses[0].error_code, 0,
            "{response:?}"
        );
    }
    blocking(|| cluster.restart(follower));
    let back = Instant::now();
    wait_until(&cluster, "the follower back in the ISR", WAIT, || async {
        match partition_state(cluster.addr(leader), topic, 0).await {
            Some((_, _, isr)) if isr.contains(&follower) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    println!(
        "[catch-up] node {follower} rejoined the ISR {} ms after its restart",
        back.elapsed().as_millis()
    );
    // Only the returned follower and one other remain: the data must be on the follower.
    blocking(|| cluster.kill9(leader));
    let survivors: Vec<i32> = all.iter().copied().filter(|id| *id != leader).collect();
    agreed_leader(&cluster, &survivors, topic, 0).await;
    let read = blocking(|| read_all(&mut cluster, topic, 1));
    let values: Vec<String> = read
        .get(&0)
        .map(|r| r.iter().map(|(_, v)| v.clone()).collect())
        .unwrap_or_default();
    let expected: Vec<String> = (0..200).map(|i| format!("v-{i:04}")).collect();
    assert_eq!(values, expected);
}

/// A consumer group commits, its coordinator is killed with kill -9, and the group resumes
/// from its committed offset on the new coordinator (the `__consumer_offsets` partition is
/// replicated and its groups load on the new leader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_coordinator_kill_9() {
    let mut cluster = blocking(|| Cluster::start_with(3, &PROPS));
    let topic = "group-failover";
    let group = "failover-group";
    create_replicated_topic(&cluster, topic, 1, 3).await;
    let mut client = RawClient::connect(cluster.addr(1)).await;
    for i in 0..100 {
        let response = client
            .send(produce_request(topic, &format!("g-{i:03}"), 30_000), 9)
            .await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let consume = |bootstrap: String, count: usize| {
        let consumer: BaseConsumer = rd_config(&bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut values = Vec::new();
        let deadline = Instant::now() + WAIT;
        while values.len() < count && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                if values.len() == count {
                    consumer
                        .commit_message(&m, rdkafka::consumer::CommitMode::Sync)
                        .expect("commit");
                }
            }
        }
        drop(consumer);
        values
    };
    let bootstrap = cluster.bootstrap();
    let first = blocking(|| consume(bootstrap.clone(), 40));
    assert_eq!(first.len(), 40, "first consumer read {first:?}");
    let coordinator = coordinator_of(cluster.addr(1), group, 0).await;
    assert!(coordinator > 0, "no coordinator for {group}");
    blocking(|| cluster.kill9(coordinator));
    let survivors: Vec<i32> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != coordinator)
        .collect();
    let killed = Instant::now();
    let new = wait_until(&cluster, "a new coordinator", WAIT, || async {
        match coordinator_of(cluster.addr(survivors[0]), group, 0).await {
            c if c > 0 && c != coordinator => Ok(c),
            c => Err(format!("coordinator {c}")),
        }
    })
    .await;
    println!(
        "[group-failover] node {coordinator} killed; node {new} coordinates {group} after {} ms",
        killed.elapsed().as_millis()
    );
    let bootstrap = survivors
        .iter()
        .map(|id| cluster.addr(*id).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let second = blocking(|| consume(bootstrap, 60));
    let expected: Vec<String> = (40..100).map(|i| format!("g-{i:03}")).collect();
    if second != expected {
        cluster.fail(&format!("after the failover the group read {second:?}"));
    }
}

/// SIGTERM to each node in turn, restarting it before the next (a rolling restart), while an
/// idempotent acks=all producer writes: each controlled shutdown moves leadership away first,
/// so no delivery fails and nothing is lost, duplicated or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_shows_no_errors_to_an_idempotent_producer() {
    let mut cluster = blocking(|| Cluster::start_with(3, &PROPS));
    let topic = "rolling";
    let partitions = 3;
    create_replicated_topic(&cluster, topic, partitions, 3).await;
    let all = cluster.ids();
    full_isr(&cluster, &all, topic, partitions).await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let producer = tokio::spawn(run_rdkafka_producer(
        cluster.bootstrap(),
        topic.into(),
        stop.clone(),
        Duration::from_millis(5),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in all.clone() {
        let (stopped_in, clean) = blocking(|| cluster.sigterm(id));
        assert!(clean, "node {id} did not stop on SIGTERM");
        println!(
            "[rolling] node {id} stopped in {} ms",
            stopped_in.as_millis()
        );
        blocking(|| cluster.restart(id));
        full_isr(&cluster, &all, topic, partitions).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Release);
    let ended = Instant::now();
    let report = producer.await.expect("producer task");
    let read = blocking(|| read_all(&mut cluster, topic, partitions));
    let verdict = check(std::slice::from_ref(&report), &read, started, ended);
    println!("{}", verdict.table("rolling", 0, ended - started));
    if verdict.failed > 0
        || !verdict.lost.is_empty()
        || !verdict.duplicated.is_empty()
        || !verdict.out_of_order.is_empty()
        || !verdict.moved.is_empty()
    {
        cluster.fail(&format!("rolling restart: {verdict:?}"));
    }
}

/// Waits until every partition of `topic` has all of `nodes` in its ISR, as every node sees it.
async fn full_isr(cluster: &Cluster, nodes: &[i32], topic: &str, partitions: i32) {
    wait_until(cluster, "every partition's ISR full", WAIT, || async {
        for p in 0..partitions {
            match agreed_leader_once_for(cluster, nodes, topic, p).await {
                Some((leader, _, isr)) if leader >= 0 && isr == nodes => {}
                other => return Err(format!("partition {p}: {other:?}")),
            }
        }
        Ok(())
    })
    .await
}

async fn agreed_leader_once_for(
    cluster: &Cluster,
    nodes: &[i32],
    topic: &str,
    partition: i32,
) -> Option<(i32, i32, Vec<i32>)> {
    let view = agreed_view_once(cluster, nodes, topic, partition)
        .await
        .ok()?;
    Some((view.leader, view.leader_epoch, view.isr))
}
