//! weir-client against librdkafka (the `rdkafka` crate), both talking to the same in-process
//! Weir broker in the same run.
//!
//! Prints one line per case, `<kind> <case>: weir X MB/s, librdkafka Y MB/s, ratio R` (ratio =
//! weir / librdkafka, the median of a few rounds). Kinds: `produce`, and `consume`, where each
//! client reads a topic of 4 partitions filled beforehand, assigned by hand from the beginning,
//! with the same fetch settings, and checks every record it gets the same way ([`Tally`]).
//! `cargo bench -p weir-benches --bench client -- --test` runs every case once on a few hundred
//! records. Positional arguments filter cases by substring (`-- produce`).
//!
//! To add a case, write an `async fn(&Bench, &Case) -> Measurement` pair (weir and librdkafka)
//! and list it in `CASES`.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use weir_broker::{BrokerConfig, Server};
use weir_client::admin::{Admin, NewTopic};
use weir_client::consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_client::{Client, ClientConfig};
use weir_protocol::messages::ProduceRequest;
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_records::{Record, RecordBatchBuilder};

/// Settings both producers share, so the comparison is of the clients, not their defaults.
const LINGER_MS: u64 = 5;
const BATCH_SIZE: usize = 256 * 1024;

/// One workload.
#[derive(Debug, Clone, Copy)]
struct Case {
    /// `produce` or `consume`.
    kind: &'static str,
    /// The case label, e.g. `1KiB`.
    name: &'static str,
    record_size: usize,
    /// Bytes of record values per round (full run).
    bytes: usize,
}

impl Case {
    fn records(&self) -> usize {
        if weir_benches::test_mode() {
            200
        } else {
            self.bytes / self.record_size
        }
    }
}

/// Bytes moved and the time it took.
#[derive(Debug, Clone, Copy)]
struct Measurement {
    bytes: usize,
    elapsed: Duration,
}

impl Measurement {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// What every case gets: the broker's address and a fresh topic name per round.
struct Bench {
    bootstrap: String,
    topics: AtomicUsize,
    client: Client,
}

impl Bench {
    async fn topic(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", self.topics.fetch_add(1, Ordering::Relaxed));
        let created = Admin::from_client(self.client.clone())
            .create_topics(&[NewTopic::new(&name, 1)])
            .await
            .unwrap();
        created[0].1.as_ref().unwrap();
        self.client.leader_for(&name, 0).await.unwrap();
        name
    }
}

type Run = for<'a> fn(&'a Bench, &'a Case) -> Pin<Box<dyn Future<Output = Measurement> + 'a>>;

/// Each case with its weir-client and librdkafka runs.
const CASES: &[(Case, Run, Run)] = &[
    (
        Case {
            kind: "produce",
            name: "1KiB",
            record_size: 1024,
            bytes: 64 << 20,
        },
        |b, c| Box::pin(produce_weir(b, c)),
        |b, c| Box::pin(produce_rdkafka(b, c)),
    ),
    (
        Case {
            kind: "produce",
            name: "100B",
            record_size: 100,
            bytes: 24 << 20,
        },
        |b, c| Box::pin(produce_weir(b, c)),
        |b, c| Box::pin(produce_rdkafka(b, c)),
    ),
    (
        Case {
            kind: "consume",
            name: "1KiB",
            record_size: 1024,
            bytes: 256 << 20,
        },
        |b, c| Box::pin(consume_weir(b, c)),
        |b, c| Box::pin(consume_rdkafka(b, c)),
    ),
    (
        Case {
            kind: "consume",
            name: "100B",
            record_size: 100,
            bytes: 128 << 20,
        },
        |b, c| Box::pin(consume_weir(b, c)),
        |b, c| Box::pin(consume_rdkafka(b, c)),
    ),
];

fn value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b"weir-bench-"[i % 11]).collect()
}

async fn produce_weir(bench: &Bench, case: &Case) -> Measurement {
    let topic = bench.topic("weir").await;
    let producer = Producer::from_client(
        bench.client.clone(),
        ProducerConfig {
            linger: Duration::from_millis(LINGER_MS),
            batch_size: BATCH_SIZE,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let value = bytes::Bytes::from(value(case.record_size));
    let count = case.records();
    // Connections, metadata and the producer id are set up before the clock starts.
    producer
        .send(ProducerRecord::new(&topic).value(value.clone()))
        .await
        .unwrap();
    let start = Instant::now();
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let record = ProducerRecord::new(&topic)
            .key(format!("key-{i}"))
            .value(value.clone());
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    Measurement {
        bytes: count * case.record_size,
        elapsed: start.elapsed(),
    }
}

/// Counts librdkafka's delivery reports (they arrive on its polling thread).
#[derive(Default)]
struct Deliveries {
    acknowledged: AtomicUsize,
    failed: AtomicUsize,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acknowledged.fetch_add(1, Ordering::Release),
            Err(_) => self.failed.fetch_add(1, Ordering::Release),
        };
    }
}

/// librdkafka as its fastest: a `ThreadedProducer` (no future per record), delivery reports
/// counted by the context.
async fn produce_rdkafka(bench: &Bench, case: &Case) -> Measurement {
    let topic = bench.topic("rdkafka").await;
    let producer: ThreadedProducer<Deliveries> = RdConfig::new()
        .set("bootstrap.servers", &bench.bootstrap)
        .set("broker.address.family", "v4")
        .set("linger.ms", LINGER_MS.to_string())
        .set("batch.size", BATCH_SIZE.to_string())
        .set("batch.num.messages", "1000000")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create_with_context(Deliveries::default())
        .unwrap();
    let value = value(case.record_size);
    let count = case.records();
    let context = producer.context();
    let wait_for = |n: usize| async move {
        while context.acknowledged.load(Ordering::Acquire) < n {
            assert_eq!(
                context.failed.load(Ordering::Acquire),
                0,
                "librdkafka delivery failed"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    };
    // Connections, metadata and the producer id are set up before the clock starts.
    producer
        .send(BaseRecord::<(), _>::to(&topic).payload(&value))
        .map_err(|(e, _)| e)
        .unwrap();
    wait_for(1).await;
    let start = Instant::now();
    for i in 0..count {
        let key = format!("key-{i}");
        let mut record = BaseRecord::to(&topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => panic!("librdkafka produce: {e}"),
            }
        }
    }
    wait_for(count + 1).await;
    Measurement {
        bytes: count * case.record_size,
        elapsed: start.elapsed(),
    }
}

/// Partitions of the topics the consume cases read.
const CONSUME_PARTITIONS: i32 = 4;

/// Fetch settings both consumers share (the Java client's and librdkafka's defaults, spelled
/// out so a change of either default cannot skew the comparison).
const FETCH_MIN_BYTES: i32 = 1;
const FETCH_MAX_WAIT_MS: u64 = 500;
const FETCH_MAX_BYTES: i32 = 50 * 1024 * 1024;
const MAX_PARTITION_FETCH_BYTES: i32 = 1024 * 1024;
/// Both verify each batch's CRC-32C (weir-client's default, as the Java client's).
const CHECK_CRCS: bool = true;
const RDKAFKA_FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// A fresh topic of [`CONSUME_PARTITIONS`] partitions holding `case.records()` records (keys
/// `key-<n>`), written as 64 KiB batches spread evenly over the partitions.
async fn filled_topic(bench: &Bench, case: &Case) -> String {
    let name = format!("consume-{}", bench.topics.fetch_add(1, Ordering::Relaxed));
    let created = Admin::from_client(bench.client.clone())
        .create_topics(&[NewTopic::new(&name, CONSUME_PARTITIONS)])
        .await
        .unwrap();
    created[0].1.as_ref().unwrap();
    let value = value(case.record_size);
    let per_batch = (64 * 1024 / (case.record_size + 20)).max(1);
    let per_partition = case.records() / CONSUME_PARTITIONS as usize;
    for partition in 0..CONSUME_PARTITIONS {
        let leader = bench.client.leader_for(&name, partition).await.unwrap();
        let mut written = 0;
        while written < per_partition {
            let n = per_batch.min(per_partition - written);
            let mut batch = RecordBatchBuilder::new();
            for i in written..written + n {
                batch.push(Record::new(
                    1_700_000_000_000,
                    Some(format!("key-{i}").as_bytes()),
                    Some(&value),
                ));
            }
            let request = ProduceRequest {
                acks: 1,
                timeout_ms: 30_000,
                topic_data: vec![TopicProduceData {
                    name: name.clone(),
                    partition_data: vec![PartitionProduceData {
                        index: partition,
                        records: Some(batch.build().unwrap()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let (response, _) = bench.client.send_to(leader, request).await.unwrap();
            assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
            written += n;
        }
    }
    name
}

/// What each consumer checks of every record it receives, the same for both clients: the
/// offsets of each partition arrive in order without gaps, every record has its key and a
/// value of the expected size, and the value's bytes are read (summed), so a client that
/// handed out records without their data would not get away with it.
struct Tally {
    record_size: usize,
    next_offsets: [i64; CONSUME_PARTITIONS as usize],
    records: usize,
    bytes: usize,
    sum: u64,
}

impl Tally {
    fn new(case: &Case) -> Self {
        Self {
            record_size: case.record_size,
            next_offsets: [0; CONSUME_PARTITIONS as usize],
            records: 0,
            bytes: 0,
            sum: 0,
        }
    }

    fn record(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        let next = &mut self.next_offsets[usize::try_from(partition).unwrap()];
        assert_eq!(offset, *next, "partition {partition}: offset out of order");
        *next += 1;
        assert!(key.is_some_and(|k| k.starts_with(b"key-")), "missing key");
        let value = value.unwrap();
        assert_eq!(value.len(), self.record_size, "value of the wrong size");
        self.sum = value
            .iter()
            .fold(self.sum, |sum, &b| sum.wrapping_add(u64::from(b)));
        self.records += 1;
        self.bytes += value.len();
    }

    /// Every record arrived with the bytes the topic was filled with.
    fn check(&self, count: usize) {
        assert_eq!(self.records, count);
        let per_value: u64 = value(self.record_size).iter().map(|&b| u64::from(b)).sum();
        assert_eq!(self.sum, per_value * count as u64, "value bytes differ");
    }
}

/// weir-client's `Consumer` reads the whole topic; the clock starts at its first record, so
/// connecting and the first offset lookup stay out.
async fn consume_weir(bench: &Bench, case: &Case) -> Measurement {
    let topic = filled_topic(bench, case).await;
    let count = case.records() / CONSUME_PARTITIONS as usize * CONSUME_PARTITIONS as usize;
    let mut config = ConsumerConfig {
        group_id: None,
        auto_offset_reset: OffsetReset::Earliest,
        fetch_min_bytes: FETCH_MIN_BYTES,
        fetch_max_wait: Duration::from_millis(FETCH_MAX_WAIT_MS),
        fetch_max_bytes: FETCH_MAX_BYTES,
        max_partition_fetch_bytes: MAX_PARTITION_FETCH_BYTES,
        check_crcs: CHECK_CRCS,
        ..ConsumerConfig::default()
    };
    config.client = ClientConfig::new(&bench.bootstrap);
    let mut consumer = Consumer::connect(config).await.unwrap();
    let partitions: Vec<_> = (0..CONSUME_PARTITIONS)
        .map(|p| TopicPartition::new(&topic, p))
        .collect();
    consumer.assign(&partitions).unwrap();
    let mut tally = Tally::new(case);
    let mut record = consumer.recv().await.unwrap();
    let start = Instant::now();
    loop {
        tally.record(
            record.partition,
            record.offset,
            record.key.as_deref(),
            record.value.as_deref(),
        );
        if tally.records == count {
            break;
        }
        record = consumer.recv().await.unwrap();
    }
    let elapsed = start.elapsed();
    tally.check(count);
    Measurement {
        bytes: tally.bytes - case.record_size,
        elapsed,
    }
}

/// librdkafka's `BaseConsumer`, polled on a blocking thread (its fastest path in the `rdkafka`
/// crate), reads the whole topic; the clock starts at its first record.
async fn consume_rdkafka(bench: &Bench, case: &Case) -> Measurement {
    let topic = filled_topic(bench, case).await;
    let count = case.records() / CONSUME_PARTITIONS as usize * CONSUME_PARTITIONS as usize;
    let bootstrap = bench.bootstrap.clone();
    let case = *case;
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = RdConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("broker.address.family", "v4")
            .set("group.id", "consume-bench")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.min.bytes", FETCH_MIN_BYTES.to_string())
            .set("fetch.wait.max.ms", FETCH_MAX_WAIT_MS.to_string())
            .set("fetch.max.bytes", FETCH_MAX_BYTES.to_string())
            .set(
                "max.partition.fetch.bytes",
                MAX_PARTITION_FETCH_BYTES.to_string(),
            )
            .set("check.crcs", CHECK_CRCS.to_string())
            // Its default (1 s) idles a partition's fetcher for a whole second each time
            // `queued.min.messages` (100,000 per partition) are buffered, which capped the 100 B
            // case at ~30 MB/s: librdkafka's own docs advise lowering it for such cases.
            .set("fetch.queue.backoff.ms", RDKAFKA_FETCH_QUEUE_BACKOFF_MS)
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        for p in 0..CONSUME_PARTITIONS {
            assignment
                .add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut tally = Tally::new(&case);
        let mut start = Instant::now();
        while tally.records < count {
            let Some(message) = consumer.poll(Duration::from_secs(10)) else {
                panic!("librdkafka received {} of {count} records", tally.records);
            };
            let message = message.unwrap();
            if tally.records == 0 {
                start = Instant::now();
            }
            tally.record(
                message.partition(),
                message.offset(),
                message.key(),
                message.payload(),
            );
        }
        let elapsed = start.elapsed();
        tally.check(count);
        Measurement {
            bytes: tally.bytes - case.record_size,
            elapsed,
        }
    })
    .await
    .unwrap()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();

    // The broker gets a runtime (and so threads) of its own, as a separate process would.
    let data = tempfile::tempdir().unwrap();
    let broker_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = BrokerConfig::from_properties(
        [
            ("listeners", "PLAINTEXT://127.0.0.1:0".to_string()),
            ("log.dirs", data.path().display().to_string()),
            ("weir.admin.listener", "none".to_string()),
            ("offsets.topic.num.partitions", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )
    .unwrap();
    let server = broker_runtime.block_on(Server::bind(config)).unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = broker_runtime.spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::connect(ClientConfig::new(&addr.to_string()))
            .await
            .unwrap();
        let bench = Arc::new(Bench {
            bootstrap: addr.to_string(),
            topics: AtomicUsize::new(0),
            client,
        });
        for (case, weir, rdkafka) in CASES {
            let label = format!("{} {}", case.kind, case.name);
            if !filters.is_empty() && !filters.iter().any(|f| label.contains(f.as_str())) {
                continue;
            }
            // Consume rounds are short (a few hundred milliseconds) and so noisier.
            let rounds = match (weir_benches::test_mode(), case.kind) {
                (true, _) => 1,
                (false, "consume") => 5,
                (false, _) => 3,
            };
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            let mut ratios = Vec::new();
            for round in 0..rounds {
                // Alternate who goes first so neither always meets a warmer broker.
                let (w, r) = if round % 2 == 0 {
                    let w = weir(&bench, case).await.mb_per_s();
                    (w, rdkafka(&bench, case).await.mb_per_s())
                } else {
                    let r = rdkafka(&bench, case).await.mb_per_s();
                    (weir(&bench, case).await.mb_per_s(), r)
                };
                ours.push(w);
                theirs.push(r);
                ratios.push(w / r);
            }
            println!(
                "{label}: weir {:.1} MB/s, librdkafka {:.1} MB/s, ratio {:.2}",
                median(ours),
                median(theirs),
                median(ratios)
            );
        }
    });
    drop(runtime);
    let _ = stop.send(());
    broker_runtime.block_on(served).unwrap().unwrap();
}
