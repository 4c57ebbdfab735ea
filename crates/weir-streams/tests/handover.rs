//! State that moves with its task, against an in-process Weir broker: an instance processes
//! part of the input and crashes (its run aborted: no close, no final commit); a second
//! instance of the application takes its task over and must go on from the state the first
//! one logged: a processor's store, the stream-stream join buffers, a suppression buffer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

// The broker harness weir-client's own tests use.
#[allow(unreachable_pub, reason = "written for weir-client's test crates")]
#[path = "../../weir-client/tests/support/mod.rs"]
mod support;

#[allow(dead_code, reason = "each test file uses some of the shared helpers")]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{committed_to, start};
use support::{TestBroker, create_topic, fetch_all};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_streams::processor::Record;
use weir_streams::{
    Error, I64Serde, JoinWindows, KafkaStreams, KeyValueStore, Nullable, Processor,
    ProcessorContext, Serde, Stores, StreamsBuilder, StreamsConfig, StringSerde, Suppressed,
    TimeWindows, Topology,
};

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

async fn setup(app: &str, inputs: &[&str], output: &str) -> (TestBroker, StreamsConfig) {
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    for topic in inputs {
        create_topic(&client, topic, 1).await;
    }
    create_topic(&client, output, 1).await;
    let mut config = StreamsConfig::new(app, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = ms(100);
    config.session_timeout = Duration::from_secs(2);
    (broker, config)
}

/// Writes `(key, value, timestamp)` records to `topic`.
async fn produce(broker: &TestBroker, topic: &str, records: &[(&str, &str, i64)]) {
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for (key, value, timestamp) in records {
        let record = ProducerRecord::new(topic)
            .key(key.to_string())
            .value(value.to_string())
            .timestamp(*timestamp);
        producer.enqueue(record).await.unwrap();
    }
    producer.flush().await;
}

/// Waits until the application committed `n` input records of `topic`.
async fn wait_committed(broker: &TestBroker, app: &str, topic: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while committed_to(broker, app, topic, 1).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{app}: {topic} not committed up to {n}"
        );
        tokio::time::sleep(ms(100)).await;
    }
}

/// Runs an instance until `committed` (topic, records) are committed, then crashes it.
async fn run_then_crash(
    config: &StreamsConfig,
    broker: &TestBroker,
    factory: fn() -> Result<Topology, Error>,
    committed: &[(&str, i64)],
) {
    let (_stop, task) = start(KafkaStreams::new(factory, config.clone()).await.unwrap());
    for (topic, n) in committed {
        wait_committed(broker, &config.application_id, topic, *n).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
}

/// The records of `topic`, as (key, value) strings, once there are at least `n`.
async fn wait_for<V: 'static>(
    broker: &TestBroker,
    topic: &str,
    serde: impl Serde<V>,
    n: usize,
) -> Vec<(String, V)> {
    let client = broker.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let records: Vec<(String, V)> = fetch_all(&client, topic, 0)
            .await
            .into_iter()
            .map(|record| {
                let key = StringSerde.deserialize(&record.key.unwrap()).unwrap();
                (key, serde.deserialize(&record.value.unwrap()).unwrap())
            })
            .collect();
        if records.len() >= n {
            return records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic}: {} of {n} records",
            records.len()
        );
        tokio::time::sleep(ms(100)).await;
    }
}

/// Counts the records per key in its store `event-counts`, forwarding each new count.
struct CountPerKey(Option<KeyValueStore<String, i64>>);

impl Processor<String, String, String, i64> for CountPerKey {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), Error> {
        self.0 = Some(ctx.key_value_store("event-counts")?);
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), Error> {
        let Some(counts) = &self.0 else {
            return Ok(());
        };
        let count = counts.get(&record.key).unwrap_or(0) + 1;
        counts.put(record.key.clone(), count);
        ctx.forward(record.with_value(count))
    }
}

fn processor_counts() -> Result<Topology, Error> {
    processor_counts_in(Stores::in_memory_key_value_store)
}

fn processor_counts_in(
    supplier: fn(&str) -> weir_streams::processor::KeyValueBytesStoreSupplier,
) -> Result<Topology, Error> {
    let builder = StreamsBuilder::new();
    builder.add_state_store(Stores::key_value_store_builder(
        supplier("event-counts"),
        StringSerde,
        I64Serde,
    ));
    builder
        .stream("events", StringSerde, StringSerde)
        .process(|| CountPerKey(None), &["event-counts"])
        .to("event-counts-out", StringSerde, I64Serde);
    builder.build()
}

/// A processor's store, logged by default, is restored on the instance that takes its task
/// over: its counts go on from the first instance's.
#[tokio::test]
async fn a_processor_store_continues_its_counts_on_the_next_instance() {
    const APP: &str = "handover-processor";
    let (broker, config) = setup(APP, &["events"], "event-counts-out").await;
    let first: Vec<(String, i64)> = (0..20).map(|i| (format!("k{}", i % 5), i)).collect();
    let first: Vec<(&str, &str, i64)> = first.iter().map(|(k, t)| (k.as_str(), "x", *t)).collect();
    produce(&broker, "events", &first).await;
    run_then_crash(&config, &broker, processor_counts, &[("events", 20)]).await;
    assert_eq!(
        support::end_offset(
            &broker.client().await,
            &format!("{APP}-event-counts-changelog"),
            0
        )
        .await,
        20,
        "every put logged"
    );

    let (stop, task) = start(
        KafkaStreams::new(processor_counts, config.clone())
            .await
            .unwrap(),
    );
    produce(&broker, "events", &first).await;
    let outputs = wait_for(&broker, "event-counts-out", I64Serde, 40).await;
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    assert_eq!(streams.metrics().restored_from_changelog, 20);
    streams.close().await.unwrap();
    let latest: BTreeMap<String, i64> = outputs.into_iter().collect();
    // Everything was committed before the crash: nothing runs twice.
    assert_eq!(
        latest,
        (0..5).map(|k| (format!("k{k}"), 8)).collect(),
        "4 records per key on each instance"
    );
    broker.stop().await;
}

/// With a state dir, a clean close keeps the processor's store in the task's local state:
/// the next instance loads it (one record per key) and reads nothing from the changelog. An
/// in-memory store holds every key in memory; a persistent one, with a cache of 2, holds 2
/// and reads the others from the local state.
#[tokio::test]
async fn a_processor_store_is_kept_in_the_local_state() {
    let in_memory = || processor_counts_in(Stores::in_memory_key_value_store);
    let persistent = || processor_counts_in(Stores::persistent_key_value_store);
    processor_store_round_trip("handover-processor-memory", in_memory, 5).await;
    processor_store_round_trip("handover-processor-disk", persistent, 2).await;
}

async fn processor_store_round_trip(
    app: &str,
    topology: impl Fn() -> Result<Topology, Error> + Clone + Send + Sync + 'static,
    in_memory: u64,
) {
    let (broker, mut config) = setup(app, &["events"], "event-counts-out").await;
    let dir = tempfile::tempdir().unwrap();
    config.state_dir = Some(dir.path().to_path_buf());
    config.store_cache_max_entries = Some(2);
    let records: Vec<(String, i64)> = (0..20).map(|i| (format!("k{}", i % 5), i)).collect();
    let records: Vec<(&str, &str, i64)> =
        records.iter().map(|(k, t)| (k.as_str(), "x", *t)).collect();
    produce(&broker, "events", &records).await;
    for round in 1..=2 {
        let (stop, task) = start(
            KafkaStreams::new(topology.clone(), config.clone())
                .await
                .unwrap(),
        );
        wait_committed(&broker, app, "events", 20 * round).await;
        stop.send(()).unwrap();
        let streams = task.await.unwrap();
        let metrics = streams.metrics();
        let counts = streams
            .key_value_store::<String, i64>("event-counts")
            .unwrap()
            .all();
        streams.close().await.unwrap();
        assert_eq!(
            counts,
            (0..5)
                .map(|k| (format!("k{k}"), 4 * round))
                .collect::<Vec<_>>()
        );
        if in_memory < 5 {
            assert_eq!(metrics.persistent_entries_in_memory, in_memory, "{app}");
        } else {
            assert_eq!(
                metrics.persistent_entries_in_memory, 0,
                "{app}: not persistent"
            );
        }
        if round == 2 {
            assert_eq!(metrics.restored_from_local_state, 5, "one record per key");
            assert_eq!(metrics.restored_from_changelog, 0);
        } else {
            produce(&broker, "events", &records).await;
        }
    }
    broker.stop().await;
}

fn joined() -> Result<Topology, Error> {
    let builder = StreamsBuilder::new();
    let left = builder.stream("left", StringSerde, StringSerde);
    let right = builder.stream("right", StringSerde, StringSerde);
    left.join(
        &right,
        |l: &String, r: &String| format!("{l}+{r}"),
        JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(10)),
    )
    .to("joined", StringSerde, StringSerde);
    builder.build()
}

/// Records buffered by the join on the first instance, on either side, are joined by the
/// partner records the next instance reads within the window.
#[tokio::test]
async fn a_join_matches_records_buffered_before_the_handover() {
    const APP: &str = "handover-join";
    let (broker, config) = setup(APP, &["left", "right"], "joined").await;
    produce(&broker, "left", &[("a", "L1", 1_000)]).await;
    produce(&broker, "right", &[("b", "R1", 1_500)]).await;
    run_then_crash(&config, &broker, joined, &[("left", 1), ("right", 1)]).await;

    let (stop, task) = start(KafkaStreams::new(joined, config.clone()).await.unwrap());
    produce(&broker, "right", &[("a", "R2", 2_000)]).await;
    produce(&broker, "left", &[("b", "L2", 3_000)]).await;
    let outputs = wait_for(&broker, "joined", StringSerde, 2).await;
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    assert_eq!(streams.metrics().restored_from_changelog, 2, "one per side");
    streams.close().await.unwrap();
    let mut outputs = outputs;
    outputs.sort();
    assert_eq!(
        outputs,
        vec![
            ("a".to_string(), "L1+R2".to_string()),
            ("b".to_string(), "L2+R1".to_string()),
        ]
    );
    broker.stop().await;
}

fn left_joined() -> Result<Topology, Error> {
    let builder = StreamsBuilder::new();
    let left = builder.stream("left", StringSerde, StringSerde);
    let right = builder.stream("right", StringSerde, StringSerde);
    left.left_join(
        &right,
        |l: &String, r: Option<&String>| format!("{l}+{}", r.map_or("-", String::as_str)),
        JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(1)),
    )
    .to("joined", StringSerde, StringSerde);
    builder.build()
}

/// A left record still waiting for a partner at the handover gets its left-join result on
/// the next instance once its window closes: it was buffered before the crash.
#[tokio::test]
async fn a_left_join_emits_a_record_left_unjoined_before_the_handover() {
    const APP: &str = "handover-left-join";
    let (broker, config) = setup(APP, &["left", "right"], "joined").await;
    produce(&broker, "left", &[("a", "L1", 1_000)]).await;
    produce(&broker, "right", &[("b", "R1", 1_200)]).await;
    run_then_crash(&config, &broker, left_joined, &[("left", 1), ("right", 1)]).await;
    let nothing = wait_for(&broker, "joined", StringSerde, 0).await;
    assert!(nothing.is_empty(), "a's window was open: {nothing:?}");

    let (stop, task) = start(
        KafkaStreams::new(left_joined, config.clone())
            .await
            .unwrap(),
    );
    // c at 5 s closes a's window [0 s, 2 s]; c's own stays open.
    produce(&broker, "left", &[("c", "L2", 5_000)]).await;
    let outputs = wait_for(&broker, "joined", StringSerde, 1).await;
    wait_committed(&broker, APP, "left", 2).await;
    stop.send(()).unwrap();
    task.await.unwrap().close().await.unwrap();
    let outputs = wait_for(&broker, "joined", StringSerde, outputs.len()).await;
    assert_eq!(outputs, vec![("a".to_string(), "L1+-".to_string())]);
    broker.stop().await;
}

fn suppressed() -> Result<Topology, Error> {
    let builder = StreamsBuilder::new();
    builder
        .stream("clicks", StringSerde, StringSerde)
        .group_by_key()
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(10)))
        .count()
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .map(|window, count| (format!("{}@{}", window.key, window.window.start), count))
        .to("final-counts", StringSerde, Nullable(I64Serde));
    builder.build()
}

/// Windows still open at the handover keep their buffered result: the next instance emits
/// each one's final count once its window closes, also for keys it saw no record of.
#[tokio::test]
async fn suppressed_windows_open_at_the_handover_emit_their_final_results_once() {
    const APP: &str = "handover-suppress";
    let (broker, config) = setup(APP, &["clicks"], "final-counts").await;
    // [0, 10 s) holds x twice, y and z once: still open when the first instance crashes.
    produce(
        &broker,
        "clicks",
        &[
            ("z", "-", 500),
            ("x", "-", 1_000),
            ("y", "-", 2_000),
            ("x", "-", 3_000),
        ],
    )
    .await;
    run_then_crash(&config, &broker, suppressed, &[("clicks", 4)]).await;

    let (stop, task) = start(KafkaStreams::new(suppressed, config.clone()).await.unwrap());
    // y again in [0, 10 s); then z at 25 s closes [0, 10 s) (and opens [20 s, 30 s)).
    produce(&broker, "clicks", &[("y", "-", 4_000), ("z", "-", 25_000)]).await;
    let outputs = wait_for(&broker, "final-counts", Nullable(I64Serde), 3).await;
    // Whatever else might come (a duplicate) comes with the commit of the last batch.
    wait_committed(&broker, APP, "clicks", 6).await;
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    streams.close().await.unwrap();
    let outputs = wait_for(&broker, "final-counts", Nullable(I64Serde), outputs.len()).await;
    assert_eq!(
        outputs,
        vec![
            ("x@0".to_string(), Some(2)),
            ("y@0".to_string(), Some(2)),
            ("z@0".to_string(), Some(1)),
        ],
        "each window of [0, 10 s) once, with its final count"
    );
    // The buffer's changelog: a value per buffered update (six) with Kafka's format version in
    // the header `v`, a tombstone (without it) per emitted window.
    let changelog = fetch_all(
        &broker.client().await,
        &format!("{APP}-KTABLE-SUPPRESS-STATE-STORE-0000000002-changelog"),
        0,
    )
    .await;
    assert_eq!(changelog.len(), 6 + 3, "{changelog:?}");
    for record in &changelog {
        let version: Vec<_> = record
            .headers
            .iter()
            .filter(|header| &header.key[..] == b"v")
            .map(|header| header.value.clone())
            .collect();
        match &record.value {
            Some(_) => assert_eq!(version, [Some(bytes::Bytes::from_static(&[3]))]),
            None => assert!(version.is_empty()),
        }
    }
    broker.stop().await;
}

/// Counts clicks per key in 10 s windows that take late records for 5 s more.
fn counted_with_grace() -> Result<Topology, Error> {
    let builder = StreamsBuilder::new();
    builder
        .stream("clicks", StringSerde, StringSerde)
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_secs(10),
            Duration::from_secs(5),
        ))
        .count()
        .to_stream()
        .map(|window, count| (format!("{}@{}", window.key, window.window.start), count))
        .to("window-counts", StringSerde, Nullable(I64Serde));
    builder.build()
}

/// The partition times move with the task through the commit metadata, in Kafka Streams'
/// format. A windowed aggregation closes windows by the records it has seen itself, as
/// Kafka's (its `observedStreamTime` starts at -1 in every new task), so a record late for a
/// window the first instance closed is not dropped as late on the next one; the window's
/// count has expired from the store (its retention is size plus grace), so it starts again
/// at 1, as Kafka Streams 4.4 counts it (its window store's `get` returns nothing for an
/// expired window).
#[tokio::test]
async fn after_a_handover_windows_close_by_the_records_the_new_task_sees() {
    const APP: &str = "handover-stream-time";
    let (broker, config) = setup(APP, &["clicks"], "window-counts").await;
    // 25 s closes [0, 10 s) (its end plus grace is 15 s).
    produce(&broker, "clicks", &[("a", "-", 1_000), ("b", "-", 25_000)]).await;
    run_then_crash(&config, &broker, counted_with_grace, &[("clicks", 2)]).await;

    // The commit carries the partition time in Kafka Streams' format: version 2, 25 000 ms.
    let mut consumer_config =
        weir_client::consumer::ConsumerConfig::new(&broker.addr.to_string(), APP);
    consumer_config.client = broker.config();
    let mut consumer = weir_client::consumer::Consumer::connect(consumer_config)
        .await
        .unwrap();
    let committed = consumer
        .committed_with_metadata(&[weir_client::consumer::TopicPartition::new("clicks", 0)])
        .await
        .unwrap();
    assert_eq!(
        committed[0].as_ref().map(|c| c.metadata.as_str()),
        Some("AgAAAAAAAGGo")
    );
    drop(consumer);

    // a at 2 s is late for [0, 10 s) by the first instance's stream time; c at 26 s comes
    // after it.
    produce(&broker, "clicks", &[("a", "-", 2_000), ("c", "-", 26_000)]).await;
    let (stop, task) = start(
        KafkaStreams::new(counted_with_grace, config.clone())
            .await
            .unwrap(),
    );
    let counts = wait_for(&broker, "window-counts", I64Serde, 4).await;
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    assert_eq!(
        counts,
        [
            ("a@0".to_string(), 1),
            ("b@20000".to_string(), 1),
            ("a@0".to_string(), 1),
            ("c@20000".to_string(), 1),
        ]
    );
    assert_eq!(streams.metrics().dropped_late, 0);
}

/// Commit metadata that is not Kafka Streams' (another tool's, a corrupted one) does not stop
/// the task: it is logged and the stream time starts unknown, so a record at any time is
/// counted.
#[tokio::test]
async fn unreadable_commit_metadata_is_ignored() {
    const APP: &str = "handover-bad-metadata";
    let (broker, config) = setup(APP, &["clicks"], "window-counts").await;
    let mut consumer_config =
        weir_client::consumer::ConsumerConfig::new(&broker.addr.to_string(), APP);
    consumer_config.client = broker.config();
    let mut consumer = weir_client::consumer::Consumer::connect(consumer_config)
        .await
        .unwrap();
    let clicks = weir_client::consumer::TopicPartition::new("clicks", 0);
    consumer.assign(std::slice::from_ref(&clicks)).unwrap();
    consumer
        .commit_offsets_with_metadata(&[(
            clicks,
            weir_client::consumer::OffsetAndMetadata::with_metadata(0, "not base64!"),
        )])
        .await
        .unwrap();
    consumer.close().await.unwrap();

    produce(&broker, "clicks", &[("a", "-", 1_000)]).await;
    let (stop, task) = start(
        KafkaStreams::new(counted_with_grace, config.clone())
            .await
            .unwrap(),
    );
    let counts = wait_for(&broker, "window-counts", I64Serde, 1).await;
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    assert_eq!(counts, [("a@0".to_string(), 1)]);
    assert_eq!(streams.metrics().dropped_late, 0);
}
