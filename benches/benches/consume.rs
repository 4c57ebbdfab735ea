//! Consume throughput of weir-client against librdkafka (the `rdkafka` crate), both reading
//! the same pre-filled partitions of one in-process Weir broker in the same run.
//!
//! Prints one line per case, `consume <case>: weir X MB/s, librdkafka Y MB/s, ratio R`, where
//! MB are record value bytes and R = weir / librdkafka (best of three runs each). The clock
//! starts at each consumer's first record, so connection set-up and the first offset lookup
//! (which librdkafka spreads over its own start-up) stay out of the throughput.
//! `cargo bench -p weir-benches --bench consume -- --test` runs every case once on a few
//! thousand records to keep it compiling and working.

#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_broker::{BrokerConfig, Server};
use weir_client::Client;
use weir_client::consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use weir_protocol::messages::ProduceRequest;
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_records::{Record, RecordBatchBuilder};

const PARTITIONS: i32 = 4;
/// Records per produced batch are chosen to fill about this much.
const BATCH_BYTES: usize = 64 * 1024;

struct Case {
    name: &'static str,
    value_bytes: usize,
    records: usize,
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    let cases = [
        Case {
            name: "1KiB",
            value_bytes: 1024,
            records: if test_mode { 2_000 } else { 300_000 },
        },
        Case {
            name: "100B",
            value_bytes: 100,
            records: if test_mode { 5_000 } else { 2_000_000 },
        },
    ];
    let runs = if test_mode { 1 } else { 3 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop) = runtime.block_on(start_broker(dir.path()));
    for case in cases {
        let topic = format!("consume-{}", case.name);
        runtime.block_on(fill(addr, &topic, &case));
        let bytes = (case.records * case.value_bytes) as f64;
        let mut weir = f64::MAX;
        let mut librdkafka = f64::MAX;
        for _ in 0..runs {
            weir = weir.min(runtime.block_on(consume_weir(addr, &topic, case.records)));
            librdkafka = librdkafka.min(consume_librdkafka(addr, &topic, case.records));
        }
        let weir_rate = bytes / 1e6 / weir;
        let rd_rate = bytes / 1e6 / librdkafka;
        println!(
            "consume {}: weir {weir_rate:.0} MB/s, librdkafka {rd_rate:.0} MB/s, ratio {:.2}",
            case.name,
            weir_rate / rd_rate
        );
    }
}

async fn start_broker(dir: &std::path::Path) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let props: BTreeMap<String, String> = [
        ("listeners", "PLAINTEXT://127.0.0.1:0".to_string()),
        ("log.dirs", dir.display().to_string()),
        ("weir.admin.listener", "none".to_string()),
        ("offsets.topic.num.partitions", "1".to_string()),
        ("num.partitions", PARTITIONS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let server = Server::bind(BrokerConfig::from_properties(props).unwrap())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop)
}

/// Appends `case.records` records, spread evenly over the partitions, in ~64 KiB batches.
async fn fill(addr: SocketAddr, topic: &str, case: &Case) {
    let client = Client::connect(weir_client::ClientConfig::new(&addr.to_string()))
        .await
        .unwrap();
    let per_batch = (BATCH_BYTES / (case.value_bytes + 20)).max(1);
    let value = vec![0x5a_u8; case.value_bytes];
    let per_partition = case.records / PARTITIONS as usize;
    for partition in 0..PARTITIONS {
        let leader = client.leader_for(topic, partition).await.unwrap();
        let mut written = 0;
        while written < per_partition {
            let n = per_batch.min(per_partition - written);
            let mut builder = RecordBatchBuilder::new();
            for i in 0..n {
                builder.push(Record::new(
                    1_700_000_000_000,
                    Some(format!("key-{}", written + i).as_bytes()),
                    Some(&value),
                ));
            }
            let request = ProduceRequest {
                acks: 1,
                timeout_ms: 30_000,
                topic_data: vec![TopicProduceData {
                    name: topic.to_string(),
                    partition_data: vec![PartitionProduceData {
                        index: partition,
                        records: Some(builder.build().unwrap()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let (response, _) = client.send_to(leader, request).await.unwrap();
            assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
            written += n;
        }
    }
}

/// Seconds for a weir-client consumer to read every record of the topic.
async fn consume_weir(addr: SocketAddr, topic: &str, records: usize) -> f64 {
    let mut config = ConsumerConfig {
        group_id: None,
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    config.client.bootstrap_servers = vec![addr.to_string()];
    let mut consumer = Consumer::new(config).await.unwrap();
    let partitions: Vec<_> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(&partitions).unwrap();
    let first = consumer.recv().await.unwrap();
    let start = Instant::now();
    let mut bytes = first.value.map_or(0, |v| v.len());
    for _ in 1..records {
        let record = consumer.recv().await.unwrap();
        bytes += record.value.map_or(0, |v| v.len());
    }
    let seconds = start.elapsed().as_secs_f64();
    assert!(bytes > 0);
    seconds
}

/// Seconds for a librdkafka consumer (BaseConsumer polled on its own thread, its fastest
/// path) to read every record of the topic.
fn consume_librdkafka(addr: SocketAddr, topic: &str, records: usize) -> f64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr.to_string())
        .set("broker.address.family", "v4")
        .set("group.id", "consume-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut received = 0;
    let mut bytes = 0usize;
    let mut start = Instant::now();
    while received < records {
        if let Some(message) = consumer.poll(Duration::from_secs(10)) {
            let message = message.unwrap();
            bytes += message.payload().map_or(0, <[u8]>::len);
            if received == 0 {
                start = Instant::now();
            }
            received += 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    assert!(bytes > 0);
    seconds
}
