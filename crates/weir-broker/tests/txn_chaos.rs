//! A checker in the style of Jepsen's Kafka tests, for transactions: three real `weir`
//! processes (replication factor 3, `min.insync.replicas=2`), an idempotent producer feeding an
//! input topic, and several librdkafka workers in one consumer group doing
//! consume-transform-produce in transactions (outputs and the consumed offsets committed
//! together, `send_offsets_to_transaction`), some transactions aborted on purpose, while a
//! seeded choice of node is killed with `kill -9` and restarted every few seconds. Once the
//! group has committed the whole input, the output is read `read_committed` and checked:
//!
//! - **no-aborted-read**: no output of a transaction its worker aborted is visible;
//! - **no-lost-write**: every input record has its output (the group committed past it);
//! - **no-duplicate**: no input record has two outputs;
//! - **in-order**: outputs of one input partition appear in input order;
//! - **offsets-atomic**: the committed offsets reached the input's end, and with the three
//!   above, offsets and outputs were committed together (outputs without their offsets would be
//!   duplicates, offsets without their outputs lost writes);
//! - **committed-visible**: every output of a transaction whose commit returned success is read.
//!
//! `cargo test` runs it for `WEIR_TXN_CHAOS_SECS` (24) seconds; `tests/cluster/txn_chaos.sh`
//! runs the long version on release binaries. The kill sequence replays with
//! `WEIR_TXN_CHAOS_SEED`.

#![allow(
    clippy::expect_used,
    reason = "a test binary: a failed client setup ends the test"
)]

#[allow(
    unreachable_pub,
    reason = "support/ is shared by the test crates; its items are `pub` for them"
)]
mod support;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::cluster::{Cluster, blocking, create_replicated_topic, rd_config};

const PROPS: [(&str, &str); 4] = [
    ("default.replication.factor", "3"),
    ("min.insync.replicas", "2"),
    ("replica.lag.time.max.ms", "4000"),
    ("transaction.state.log.replication.factor", "3"),
];

const INPUT: &str = "ctp-input";
const OUTPUT: &str = "ctp-output";
const GROUP: &str = "ctp-workers";
const PARTITIONS: i32 = 3;
const WORKERS: usize = 3;
/// Records per transaction at most.
const BATCH: usize = 25;
/// Every this many transactions a worker aborts one on purpose.
const ABORT_EVERY: u64 = 5;
/// How long the input must take to be fully processed after the chaos ends.
const DRAIN: Duration = Duration::from_secs(120);
/// librdkafka's timeout for one transactional call.
const CALL: Duration = Duration::from_secs(30);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Counts the consumer's rebalances: a transaction that spans one is aborted, since its
/// records may belong to another member now.
struct CountRebalances(Arc<AtomicU64>);

impl ClientContext for CountRebalances {}

impl ConsumerContext for CountRebalances {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// One output record: the input record it came from and the transaction that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Output {
    input: String,
    txn: String,
}

impl Output {
    fn payload(&self) -> String {
        format!("{}|{}", self.input, self.txn)
    }

    fn parse(payload: &[u8]) -> Option<Output> {
        let text = std::str::from_utf8(payload).ok()?;
        let (input, txn) = text.split_once('|')?;
        Some(Output {
            input: input.into(),
            txn: txn.into(),
        })
    }
}

/// What a worker knows about the transactions it ran.
#[derive(Debug, Default)]
struct WorkerReport {
    committed: HashSet<String>,
    /// Aborted on purpose.
    aborted_on_purpose: HashSet<String>,
    /// Aborted after an error (a rebalance, a failed call).
    aborted_after_error: HashSet<String>,
    /// A commit whose outcome the worker could not learn (the producer failed fatally).
    unknown: HashSet<String>,
    /// Producers replaced after a fatal error (fencing included).
    producer_restarts: u64,
    /// Whatever failed, for the report.
    errors: BTreeMap<String, u64>,
}

impl WorkerReport {
    fn error(&mut self, what: &str, e: &KafkaError) {
        let key = format!("{what}: {}", short_error(e));
        *self.errors.entry(key).or_default() += 1;
    }
}

fn short_error(e: &KafkaError) -> String {
    match e {
        KafkaError::Transaction(e) => format!("{:?}", e.code()),
        other => other
            .rdkafka_error_code()
            .map_or_else(|| other.to_string(), |code| format!("{code:?}")),
    }
}

/// How a failed transactional call leaves the producer.
enum After {
    /// Abort the transaction and carry on with this producer.
    Abort,
    /// The producer is unusable (fenced or fatal): replace it.
    Replace,
    /// Try the same call again.
    Retry,
}

fn classify(e: &KafkaError) -> After {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => After::Replace,
        KafkaError::Transaction(t) if t.txn_requires_abort() => After::Abort,
        KafkaError::Transaction(t) if t.is_retriable() => After::Retry,
        _ => After::Abort,
    }
}

fn new_producer(
    bootstrap: &str,
    transactional_id: &str,
) -> Option<ThreadedProducer<rdkafka::producer::DefaultProducerContext>> {
    let producer: ThreadedProducer<_> = rd_config(bootstrap)
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "20000")
        .set("message.timeout.ms", "20000")
        .set("linger.ms", "2")
        .create()
        .ok()?;
    producer.init_transactions(CALL).ok()?;
    Some(producer)
}

fn new_consumer(bootstrap: &str, rebalances: Arc<AtomicU64>) -> BaseConsumer<CountRebalances> {
    let consumer: BaseConsumer<CountRebalances> = rd_config(bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "60000")
        .create_with_context(CountRebalances(rebalances))
        .expect("consumer");
    consumer.subscribe(&[INPUT]).expect("subscribe");
    consumer
}

/// Seeks every assigned partition back to the group's committed offset (the beginning when
/// none), after an abort: the aborted transaction's records are processed again.
fn rewind(consumer: &BaseConsumer<CountRebalances>) {
    for _ in 0..10 {
        let Ok(committed) = consumer.committed(CALL) else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let mut seek = TopicPartitionList::new();
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            let _ = seek.add_partition_offset(element.topic(), element.partition(), offset);
        }
        if consumer.seek_partitions(seek, CALL).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One consume-transform-produce worker, until `stop`.
fn run_worker(bootstrap: String, worker: usize, stop: Arc<AtomicBool>) -> WorkerReport {
    let mut report = WorkerReport::default();
    let transactional_id = format!("ctp-worker-{worker}");
    let rebalances = Arc::new(AtomicU64::new(0));
    let consumer = new_consumer(&bootstrap, rebalances.clone());
    let mut producer = None;
    let mut txn_seq: u64 = 0;
    while !stop.load(Ordering::Acquire) {
        let Some(active) = producer.as_ref() else {
            producer = new_producer(&bootstrap, &transactional_id);
            if producer.is_none() {
                *report.errors.entry("init_transactions".into()).or_default() += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            continue;
        };
        // Collect a batch: up to BATCH records or 200 ms.
        let epoch_before = rebalances.load(Ordering::Acquire);
        let mut batch = Vec::new();
        let started = Instant::now();
        while batch.len() < BATCH && started.elapsed() < Duration::from_millis(200) {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => batch.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )),
                Some(Err(e)) => report.error("poll", &e),
                None => {}
            }
        }
        if batch.is_empty() {
            continue;
        }
        if rebalances.load(Ordering::Acquire) != epoch_before {
            // Records from before the rebalance may belong to another member now.
            rewind(&consumer);
            continue;
        }
        txn_seq += 1;
        let txn = format!("w{worker}-t{txn_seq}");
        let on_purpose = txn_seq % ABORT_EVERY == 0;
        let outcome = run_transaction(active, &consumer, &batch, &txn, on_purpose, &mut report);
        match outcome {
            Outcome::Committed => {
                report.committed.insert(txn);
            }
            Outcome::AbortedOnPurpose => {
                report.aborted_on_purpose.insert(txn);
                rewind(&consumer);
            }
            Outcome::Aborted => {
                report.aborted_after_error.insert(txn);
                rewind(&consumer);
            }
            Outcome::ProducerLost { maybe_committed } => {
                if maybe_committed {
                    report.unknown.insert(txn);
                } else {
                    report.aborted_after_error.insert(txn);
                }
                report.producer_restarts += 1;
                producer = None;
                rewind(&consumer);
            }
        }
        if rebalances.load(Ordering::Acquire) != epoch_before {
            rewind(&consumer);
        }
    }
    drop(producer);
    drop(consumer);
    report
}

enum Outcome {
    Committed,
    AbortedOnPurpose,
    Aborted,
    /// The producer must be replaced; the commit may have reached the coordinator.
    ProducerLost {
        maybe_committed: bool,
    },
}

fn run_transaction(
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    consumer: &BaseConsumer<CountRebalances>,
    batch: &[(i32, i64, Option<Vec<u8>>, String)],
    txn: &str,
    on_purpose: bool,
    report: &mut WorkerReport,
) -> Outcome {
    if let Err(e) = producer.begin_transaction() {
        report.error("begin_transaction", &e);
        return Outcome::ProducerLost {
            maybe_committed: false,
        };
    }
    let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset, key, value) in batch {
        let payload = Output {
            input: value.clone(),
            txn: txn.into(),
        }
        .payload();
        let mut record = BaseRecord::<[u8], String>::to(OUTPUT)
            .partition(*partition)
            .payload(&payload);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    report.error("send", &e);
                    return abort(producer, report);
                }
            }
        }
        next_offsets.insert(*partition, offset + 1);
    }
    if on_purpose {
        // Flushed first: librdkafka drops records still queued when it aborts, and the point
        // is aborted data in the log that read_committed must skip.
        if let Err(e) = producer.flush(CALL) {
            report.error("flush", &e);
        }
        return match producer.abort_transaction(CALL) {
            Ok(()) => Outcome::AbortedOnPurpose,
            Err(e) => {
                report.error("abort_transaction", &e);
                Outcome::ProducerLost {
                    maybe_committed: false,
                }
            }
        };
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in &next_offsets {
        let _ = offsets.add_partition_offset(INPUT, *partition, Offset::Offset(*offset));
    }
    let Some(metadata) = consumer.group_metadata() else {
        return abort(producer, report);
    };
    if let Err(e) = producer.send_offsets_to_transaction(&offsets, &metadata, CALL) {
        report.error("send_offsets_to_transaction", &e);
        return match classify(&e) {
            After::Replace => Outcome::ProducerLost {
                maybe_committed: false,
            },
            After::Abort | After::Retry => abort(producer, report),
        };
    }
    for _ in 0..5 {
        match producer.commit_transaction(CALL) {
            Ok(()) => return Outcome::Committed,
            Err(e) => {
                report.error("commit_transaction", &e);
                match classify(&e) {
                    After::Retry => continue,
                    After::Abort => return abort(producer, report),
                    After::Replace => {
                        return Outcome::ProducerLost {
                            maybe_committed: true,
                        };
                    }
                }
            }
        }
    }
    Outcome::ProducerLost {
        maybe_committed: true,
    }
}

fn abort(
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    report: &mut WorkerReport,
) -> Outcome {
    for _ in 0..5 {
        match producer.abort_transaction(CALL) {
            Ok(()) => return Outcome::Aborted,
            Err(e) => {
                report.error("abort_transaction", &e);
                if !matches!(classify(&e), After::Retry) {
                    break;
                }
            }
        }
    }
    Outcome::ProducerLost {
        maybe_committed: false,
    }
}

/// Feeds the input topic (idempotent, acks=all) at about `rate` records per second until
/// `stop`; returns how many were acknowledged.
fn run_feeder(bootstrap: String, rate: u64, stop: Arc<AtomicBool>) -> u64 {
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        rd_config(&bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "120000")
            .set("linger.ms", "5")
            .create()
            .expect("feeder");
    let mut sent: u64 = 0;
    let started = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let due = started.elapsed().as_millis() as u64 * rate / 1000;
        while sent < due {
            let partition = (sent % PARTITIONS as u64) as i32;
            let value = format!("in-{sent}");
            let key = format!("k-{}", sent % 97);
            let record = BaseRecord::to(INPUT)
                .partition(partition)
                .key(&key)
                .payload(&value);
            if producer.send(record).is_err() {
                break;
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = producer.flush(Duration::from_secs(120));
    sent
}

/// Every record of `topic` from the beginning to its end, per partition in offset order.
fn read_topic(bootstrap: &str, topic: &str, isolation: &str) -> Vec<(i32, i64, Vec<u8>)> {
    let consumer: BaseConsumer = rd_config(bootstrap)
        .set("group.id", format!("ctp-checker-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .expect("checker consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&assignment).expect("assign");
    let mut at_end = HashSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while at_end.len() < PARTITIONS as usize && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                records.push((
                    m.partition(),
                    m.offset(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            _ => {}
        }
    }
    assert!(
        at_end.len() == PARTITIONS as usize,
        "reading {topic} ({isolation}) did not reach the end in 120 s"
    );
    records
}

/// A consumer of the group that never joins it: asks the group's committed offsets and the
/// input's end offsets while the workers drain the input.
fn progress_checker(bootstrap: &str) -> BaseConsumer {
    rd_config(bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("progress checker")
}

/// The group's committed offset per input partition (-1 for none).
fn committed_offsets(checker: &BaseConsumer) -> Option<Vec<i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(INPUT, p);
    }
    let committed = checker
        .committed_offsets(tpl, Duration::from_secs(10))
        .ok()?;
    Some(
        (0..PARTITIONS)
            .map(
                |p| match committed.find_partition(INPUT, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
            .collect(),
    )
}

/// The input's end offset (high watermark) per partition.
fn end_offsets(checker: &BaseConsumer) -> Option<Vec<i64>> {
    (0..PARTITIONS)
        .map(|p| {
            checker
                .fetch_watermarks(INPUT, p, Duration::from_secs(10))
                .ok()
                .map(|(_, high)| high)
        })
        .collect()
}

/// A tiny deterministic generator for the kill sequence (replayable by seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[derive(Debug, Default)]
struct Verdict {
    inputs: usize,
    outputs_committed: usize,
    outputs_all: usize,
    aborted_reads: Vec<Output>,
    lost: Vec<String>,
    duplicated: Vec<String>,
    out_of_order: Vec<String>,
    committed_invisible: Vec<String>,
    offsets_at_end: bool,
}

impl Verdict {
    fn failed(&self) -> bool {
        !self.aborted_reads.is_empty()
            || !self.lost.is_empty()
            || !self.duplicated.is_empty()
            || !self.out_of_order.is_empty()
            || !self.committed_invisible.is_empty()
            || !self.offsets_at_end
    }
}

fn check(
    inputs: &[(i32, i64, Vec<u8>)],
    committed_outputs: &[(i32, i64, Vec<u8>)],
    all_outputs: usize,
    reports: &[WorkerReport],
    offsets_at_end: bool,
) -> Verdict {
    let mut verdict = Verdict {
        inputs: inputs.len(),
        outputs_committed: committed_outputs.len(),
        outputs_all: all_outputs,
        offsets_at_end,
        ..Verdict::default()
    };
    let aborted: HashSet<&String> = reports
        .iter()
        .flat_map(|r| r.aborted_on_purpose.iter().chain(&r.aborted_after_error))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut txns_seen: HashSet<String> = HashSet::new();
    // Input position of each value, to check order per partition.
    let position: HashMap<String, (i32, i64)> = inputs
        .iter()
        .map(|(p, o, v)| (String::from_utf8_lossy(v).into_owned(), (*p, *o)))
        .collect();
    let mut last_per_partition: HashMap<i32, i64> = HashMap::new();
    for (_, _, payload) in committed_outputs {
        let Some(output) = Output::parse(payload) else {
            verdict.aborted_reads.push(Output {
                input: String::from_utf8_lossy(payload).into_owned(),
                txn: "?".into(),
            });
            continue;
        };
        if aborted.contains(&output.txn) {
            verdict.aborted_reads.push(output.clone());
        }
        *seen.entry(output.input.clone()).or_default() += 1;
        txns_seen.insert(output.txn.clone());
        if let Some((p, o)) = position.get(&output.input) {
            let last = last_per_partition.entry(*p).or_insert(-1);
            if *o < *last {
                verdict.out_of_order.push(output.input.clone());
            }
            *last = (*last).max(*o);
        }
    }
    for value in position.keys() {
        match seen.get(value) {
            None => verdict.lost.push(value.clone()),
            Some(1) => {}
            Some(_) => verdict.duplicated.push(value.clone()),
        }
    }
    for report in reports {
        for txn in &report.committed {
            if !txns_seen.contains(txn) {
                verdict.committed_invisible.push(txn.clone());
            }
        }
    }
    verdict.lost.sort();
    verdict.duplicated.sort();
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_transform_produce_is_exactly_once_under_kill_9() {
    let run_for = Duration::from_secs(env_u64("WEIR_TXN_CHAOS_SECS", 24));
    let kill_every = Duration::from_secs(env_u64("WEIR_TXN_CHAOS_KILL_EVERY_SECS", 6));
    let rate = env_u64("WEIR_TXN_CHAOS_RATE", 200);
    let seed = env_u64(
        "WEIR_TXN_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
    );
    println!("[txn-chaos] seed {seed} (replay with WEIR_TXN_CHAOS_SEED={seed})");
    let mut rng = Lcg(seed);
    let mut cluster = blocking(|| Cluster::start_with(3, &PROPS));
    create_replicated_topic(&cluster, INPUT, PARTITIONS, 3).await;
    create_replicated_topic(&cluster, OUTPUT, PARTITIONS, 3).await;
    let bootstrap = cluster.bootstrap();

    let stop_feeder = Arc::new(AtomicBool::new(false));
    let stop_workers = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (bootstrap, stop) = (bootstrap.clone(), stop_feeder.clone());
        std::thread::spawn(move || run_feeder(bootstrap, rate, stop))
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (bootstrap, stop) = (bootstrap.clone(), stop_workers.clone());
            std::thread::spawn(move || run_worker(bootstrap, w, stop))
        })
        .collect();

    let started = Instant::now();
    let mut kills = Vec::new();
    while started.elapsed() + kill_every <= run_for {
        tokio::time::sleep(kill_every / 2).await;
        let ids = cluster.ids();
        let victim = ids[(rng.next() % ids.len() as u64) as usize];
        println!(
            "[txn-chaos] {:.1} s: kill -9 node {victim}",
            started.elapsed().as_secs_f64()
        );
        blocking(|| cluster.kill9(victim));
        kills.push(victim);
        tokio::time::sleep(kill_every / 2).await;
        let ready = blocking(|| cluster.restart(victim));
        println!(
            "[txn-chaos] node {victim} restarted, ready in {} ms",
            ready.as_millis()
        );
    }
    tokio::time::sleep(run_for.saturating_sub(started.elapsed())).await;
    stop_feeder.store(true, Ordering::Release);
    let fed = blocking(|| feeder.join().expect("feeder thread"));
    let chaos_ended = Instant::now();

    // The workers drain the input: wait until the group committed everything.
    let mut offsets_at_end = false;
    let mut last = String::new();
    let checker = blocking(|| progress_checker(&bootstrap));
    while chaos_ended.elapsed() < DRAIN {
        let (ends, committed) = blocking(|| (end_offsets(&checker), committed_offsets(&checker)));
        if let (Some(ends), Some(committed)) = (ends, committed) {
            if ends == committed {
                offsets_at_end = true;
                break;
            }
            last = format!("end offsets {ends:?}, committed {committed:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained_in = chaos_ended.elapsed();
    blocking(|| drop(checker));
    stop_workers.store(true, Ordering::Release);
    let reports: Vec<WorkerReport> = blocking(|| {
        workers
            .into_iter()
            .map(|w| w.join().expect("worker thread"))
            .collect()
    });

    let (inputs, committed_outputs, all_outputs) = blocking(|| {
        (
            read_topic(&bootstrap, INPUT, "read_uncommitted"),
            read_topic(&bootstrap, OUTPUT, "read_committed"),
            read_topic(&bootstrap, OUTPUT, "read_uncommitted").len(),
        )
    });
    let verdict = check(
        &inputs,
        &committed_outputs,
        all_outputs,
        &reports,
        offsets_at_end,
    );

    let sum = |f: &dyn Fn(&WorkerReport) -> usize| reports.iter().map(f).sum::<usize>();
    let mut errors: BTreeMap<&String, u64> = BTreeMap::new();
    for report in &reports {
        for (what, n) in &report.errors {
            *errors.entry(what).or_default() += n;
        }
    }
    println!(
        "[txn-chaos] {:.0} s, kills {kills:?}, then drained in {:.1} s\n\
         | check | value |\n|---|---|\n\
         | input records (fed, acknowledged or not: {fed}) | {} |\n\
         | transactions committed | {} |\n\
         | transactions aborted on purpose | {} |\n\
         | transactions aborted after an error or rebalance | {} |\n\
         | transactions of unknown outcome | {} |\n\
         | producers replaced (fatal or fenced) | {} |\n\
         | output records read_committed / in the log | {} / {} |\n\
         | no-aborted-read: aborted outputs read | {} |\n\
         | no-lost-write: inputs without output | {} |\n\
         | no-duplicate: inputs with several outputs | {} |\n\
         | in-order: outputs out of input order | {} |\n\
         | committed-visible: committed transactions not read | {} |\n\
         | offsets-atomic: committed offsets reached the input's end | {} |\n\
         errors seen by the workers: {errors:?}",
        run_for.as_secs_f64(),
        drained_in.as_secs_f64(),
        verdict.inputs,
        sum(&|r| r.committed.len()),
        sum(&|r| r.aborted_on_purpose.len()),
        sum(&|r| r.aborted_after_error.len()),
        sum(&|r| r.unknown.len()),
        reports.iter().map(|r| r.producer_restarts).sum::<u64>(),
        verdict.outputs_committed,
        verdict.outputs_all,
        verdict.aborted_reads.len(),
        verdict.lost.len(),
        verdict.duplicated.len(),
        verdict.out_of_order.len(),
        verdict.committed_invisible.len(),
        verdict.offsets_at_end,
    );
    if verdict.failed() {
        cluster.fail(&format!(
            "exactly-once violated ({last}):\naborted reads {:?}\nlost {:?}\nduplicated {:?}\n\
             out of order {:?}\ncommitted but invisible {:?}",
            verdict.aborted_reads.iter().take(20).collect::<Vec<_>>(),
            verdict.lost.iter().take(20).collect::<Vec<_>>(),
            verdict.duplicated.iter().take(20).collect::<Vec<_>>(),
            verdict.out_of_order.iter().take(20).collect::<Vec<_>>(),
            verdict
                .committed_invisible
                .iter()
                .take(20)
                .collect::<Vec<_>>(),
        ));
    }
    // Not vacuous: work was done, aborted data reached the log, and brokers died under it.
    assert!(verdict.inputs > 500, "too little input: {verdict:?}");
    assert!(
        sum(&|r| r.committed.len()) > 20,
        "too few transactions committed"
    );
    assert!(
        verdict.outputs_all > verdict.outputs_committed,
        "no aborted output reached the log, so read_committed filtered nothing"
    );
    assert!(!kills.is_empty(), "no broker was killed");
}
