//! Power loss of a whole cluster of three real `weir` processes (tests/support/cluster.rs),
//! replication factor 3, `min.insync.replicas=2`.
//!
//! Every node runs with `weir.debug.fsync.journal=true`: its partition logs go through
//! `weir_log::SyncJournalFs`, which journals what was fsynced. The test produces with acks=all,
//! freezes all three nodes at once (SIGSTOP) and kills them (kill -9, which keeps the page
//! cache), then cuts each data directory back to what a power loss at that moment would have
//! left (`weir_log::power_loss`: unsynced bytes, directory entries and renames undone), restarts
//! the cluster and reads everything back.
//!
//! - With `durable.acks=true` (the default) every acknowledged record must come back exactly once.
//! - With `durable.acks=false` (Kafka's page-cache durability) acknowledged records are lost:
//!   the control, showing the harness can see a loss. The cluster must still start and serve.
#![expect(clippy::expect_used, reason = "test helpers fail the test")]

#[allow(
    unreachable_pub,
    reason = "support/ is shared by the test crates; its items are `pub` for them"
)]
mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use support::cluster::{Cluster, blocking, create_replicated_topic, rd_config};
use weir_log::PowerLossReport;

/// Upper bound for any one wait on the cluster.
const WAIT: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 2;
/// Records produced with acks=all.
const RECORDS: usize = 2000;
/// Records queued with acks=1 after them; the nodes are frozen while they are being written, so
/// the power loss finds appends not yet fsynced.
const TAIL_RECORDS: usize = 20_000;
/// acks=1 records acknowledged before the nodes are frozen.
const TAIL_BEFORE_FREEZE: usize = 200;
/// Times the nodes may be frozen and thawed in search of an unfsynced append.
const FREEZE_ATTEMPTS: u32 = 200;

/// Produces `count` records named `{prefix}-{i}`, alternating partitions, with `acks`; returns
/// the acknowledged ones: value → (partition, offset).
async fn produce(
    cluster: &Cluster,
    topic: &str,
    prefix: &str,
    count: usize,
    acks: &str,
) -> HashMap<String, (i32, i64)> {
    let producer: FutureProducer = rd_config(&cluster.bootstrap())
        .set("acks", acks)
        .set(
            "enable.idempotence",
            if acks == "all" { "true" } else { "false" },
        )
        .set("linger.ms", "5")
        .set("request.timeout.ms", "10000")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    // Everything is queued first, so librdkafka batches as a busy producer would.
    let pending = queue_records(&producer, topic, prefix, count);
    let mut acknowledged = HashMap::new();
    let mut failed = 0;
    for (value, delivery) in pending {
        match delivery.await {
            Ok(Ok(d)) => {
                acknowledged.insert(value, (d.partition, d.offset));
            }
            Ok(Err((e, _))) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("{value} not delivered: {e}");
                }
            }
            Err(e) => cluster.fail(&format!("delivery of {value} dropped: {e}")),
        }
    }
    blocking(|| drop(producer));
    eprintln!(
        "{prefix}: {} of {count} acknowledged with acks={acks}",
        acknowledged.len()
    );
    acknowledged
}

/// Queues `count` records named `{prefix}-{i}`, alternating partitions; returns each value
/// with its delivery.
fn queue_records(
    producer: &FutureProducer,
    topic: &str,
    prefix: &str,
    count: usize,
) -> Vec<(String, rdkafka::producer::DeliveryFuture)> {
    (0..count)
        .map(|i| {
            let value = format!("{prefix}-{i}");
            let partition = i32::try_from(i).expect("index") % PARTITIONS;
            let record = FutureRecord::<(), _>::to(topic)
                .payload(&value)
                .partition(partition);
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("queue a record");
            (value, delivery)
        })
        .collect()
}

/// Streams acks=1 records and, once [`TAIL_BEFORE_FREEZE`] of them are acknowledged, freezes
/// every node (SIGSTOP) at a moment when some append is not fsynced yet. Returns the
/// acknowledged ones.
async fn produce_tail_then_freeze(
    cluster: &mut Cluster,
    topic: &str,
) -> HashMap<String, (i32, i64)> {
    let producer: FutureProducer = rd_config(&cluster.bootstrap())
        .set("acks", "1")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    let pending = queue_records(&producer, topic, "one", TAIL_RECORDS);
    let mut acknowledged = HashMap::new();
    let mut pending = pending.into_iter();
    for (value, delivery) in pending.by_ref() {
        if let Ok(Ok(d)) = delivery.await {
            acknowledged.insert(value, (d.partition, d.offset));
        }
        if acknowledged.len() >= TAIL_BEFORE_FREEZE {
            break;
        }
    }
    // Freeze, look whether a power loss now would cut an unfsynced append, else thaw and try
    // again a moment later: the freeze has to fall between an append and its fsync. On a fast
    // or idle machine the queue may drain first; then more records are queued, so there is
    // always an append in flight to catch.
    let mut more = Vec::new();
    for attempt in 1.. {
        let ids = cluster.ids();
        let cut = blocking(|| {
            for &id in &ids {
                cluster.sigstop(id);
            }
            ids.iter()
                .map(|&id| {
                    let dir = cluster.dir(id);
                    weir_log::power_loss_preview(dir, &dir.join("fsync-journal"))
                        .expect("power loss preview")
                        .bytes_truncated
                })
                .sum::<u64>()
        });
        if cut > 0 || attempt == FREEZE_ATTEMPTS {
            eprintln!("frozen at attempt {attempt}, with {cut} unfsynced bytes");
            break;
        }
        blocking(|| {
            for &id in &ids {
                cluster.sigcont(id);
            }
        });
        if producer.in_flight_count() == 0 {
            more.extend(queue_records(
                &producer,
                topic,
                &format!("more{attempt}"),
                TAIL_RECORDS / 10,
            ));
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // Whatever is still queued or in flight fails at once instead of timing out.
    producer.purge(PurgeConfig::default().queue().inflight());
    for (value, delivery) in pending.chain(more) {
        if let Ok(Ok(d)) = delivery.await {
            acknowledged.insert(value, (d.partition, d.offset));
        }
    }
    blocking(|| drop(producer));
    eprintln!(
        "one: {} of {TAIL_RECORDS} acknowledged with acks=1 before the nodes were frozen",
        acknowledged.len()
    );
    acknowledged
}

/// Kills every (frozen) node with kill -9, then cuts each data directory back to what its fsync
/// journal says was durable. Returns the reports of the three nodes.
fn power_loss_of_every_node(cluster: &mut Cluster) -> Vec<PowerLossReport> {
    let ids = cluster.ids();
    for &id in &ids {
        cluster.kill9(id);
    }
    ids.iter()
        .map(|&id| {
            let dir = cluster.dir(id).to_path_buf();
            let journal = dir.join("fsync-journal");
            // The metadata quorum (`__cluster_metadata-0`) fsyncs on its own and is not in the
            // journal, so the cut leaves it alone.
            let report = weir_log::power_loss(&dir, &journal).expect("power loss");
            std::fs::remove_file(&journal).expect("remove the fsync journal");
            eprintln!("node {id} power loss: {report}");
            report
        })
        .collect()
}

/// The high watermark of every partition once it is at least `at_least` (or stops moving).
fn settled_watermarks(cluster: &Cluster, topic: &str, at_least: &BTreeMap<i32, i64>) -> Vec<i64> {
    let consumer: BaseConsumer = rd_config(&cluster.bootstrap()).create().expect("consumer");
    let deadline = Instant::now() + WAIT;
    let mut last = Vec::new();
    let mut stable_since = Instant::now();
    loop {
        let now: Vec<i64> = (0..PARTITIONS)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .map_or(-1, |(_, high)| high)
            })
            .collect();
        let reached = (0..PARTITIONS).all(|p| {
            now.get(p as usize).copied().unwrap_or(-1) >= at_least.get(&p).copied().unwrap_or(0)
        });
        if now != last {
            last = now.clone();
            stable_since = Instant::now();
        }
        let stable = stable_since.elapsed() > Duration::from_secs(3) && now.iter().all(|h| *h >= 0);
        if reached || stable || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every value of `topic` up to the high watermarks `ends`, read through librdkafka.
fn read_all(cluster: &Cluster, topic: &str, ends: &[i64]) -> Vec<String> {
    let consumer: BaseConsumer = rd_config(&cluster.bootstrap())
        .set("group.id", format!("{topic}-checker"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut next: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let mut values = Vec::new();
    let deadline = Instant::now() + WAIT;
    let done = |next: &BTreeMap<i32, i64>| {
        next.iter()
            .all(|(p, n)| *n >= ends.get(*p as usize).copied().unwrap_or(0))
    };
    while !done(&next) {
        if Instant::now() > deadline {
            cluster.fail(&format!("reading {topic} back: ends {ends:?}, at {next:?}"));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next.insert(m.partition(), m.offset() + 1);
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            }
            Some(Err(e)) => eprintln!("checker consumer: {e}"),
            None => {}
        }
    }
    values
}

/// What came back of the acknowledged records.
#[derive(Debug)]
struct Outcome {
    acknowledged: usize,
    lost: usize,
    duplicated: usize,
    reports: Vec<PowerLossReport>,
}

/// Produces, power-loses every node, restarts and reads back; `durable_acks` is the setting.
async fn run(durable_acks: &str, topic: &str) -> (Cluster, Outcome) {
    let props = [
        ("default.replication.factor", "3"),
        ("min.insync.replicas", "2"),
        ("weir.debug.fsync.journal", "true"),
        ("durable.acks", durable_acks),
    ];
    let mut cluster = blocking(|| Cluster::start_with(3, &props));
    create_replicated_topic(&cluster, topic, PARTITIONS, 3).await;
    let acknowledged = produce(&cluster, topic, "all", RECORDS, "all").await;
    if acknowledged.len() < RECORDS / 2 {
        cluster.fail(&format!(
            "only {} of {RECORDS} acknowledged",
            acknowledged.len()
        ));
    }
    let tail = produce_tail_then_freeze(&mut cluster, topic).await;
    let reports = blocking(|| power_loss_of_every_node(&mut cluster));
    let restart = blocking(|| cluster.start_all());
    eprintln!("cluster restarted in {restart:?}");

    // The log end each partition reached with the acknowledged acks=all records.
    let mut expected_ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in acknowledged.values() {
        let end = expected_ends.entry(*p).or_default();
        *end = (*end).max(o + 1);
    }
    let ends = blocking(|| settled_watermarks(&cluster, topic, &expected_ends));
    eprintln!(
        "high watermarks after the restart: {ends:?} (acks=all records ended at {expected_ends:?})"
    );
    let values = blocking(|| read_all(&cluster, topic, &ends));
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for v in &values {
        *seen.entry(v.as_str()).or_default() += 1;
    }
    let lost = acknowledged
        .keys()
        .filter(|v| !seen.contains_key(v.as_str()))
        .count();
    let duplicated = seen.values().filter(|n| **n > 1).count();
    let tail_lost = tail
        .keys()
        .filter(|v| !seen.contains_key(v.as_str()))
        .count();
    let outcome = Outcome {
        acknowledged: acknowledged.len(),
        lost,
        duplicated,
        reports,
    };
    eprintln!(
        "durable.acks={durable_acks}: {} acks=all records acknowledged, {} read back in all, {lost} \
         acknowledged lost, {duplicated} duplicated; {tail_lost} of {} acks=1 records lost",
        outcome.acknowledged,
        values.len(),
        tail.len()
    );
    (cluster, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_a_power_loss_of_every_replica() {
    let (cluster, outcome) = run("true", "power").await;
    if outcome.lost > 0 || outcome.duplicated > 0 {
        cluster.fail(&format!("durable acks broke: {outcome:?}"));
    }
    let cut: u64 = outcome
        .reports
        .iter()
        .map(|r| r.bytes_truncated + r.bytes_removed)
        .sum();
    eprintln!("the power loss cut {cut} bytes over the three nodes");
    assert!(
        outcome.reports.iter().any(PowerLossReport::cut_anything),
        "the power loss cut nothing: {:?}",
        outcome.reports
    );
}

/// The control: Kafka's page-cache durability loses acknowledged records when every replica
/// loses power at once, so the harness can see a loss; the cluster still starts and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_acks_a_power_loss_loses_acknowledged_records() {
    let (cluster, outcome) = run("false", "page-cache").await;
    if outcome.lost == 0 {
        cluster.fail(&format!(
            "expected acknowledged records to be lost: {outcome:?}"
        ));
    }
    // Still serving: a new record can be produced and is acknowledged.
    let again = produce(&cluster, "page-cache", "after", 10, "all").await;
    assert_eq!(again.len(), 10, "the cluster serves after the power loss");
}
