//! KafkaStreams against an in-process Weir broker: JSON click events counted per user, at
//! least once.
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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{
    committed_to, latest_counts, read_committed_counts, start, wait_for_layout, word_counts,
};
use support::{TestBroker, create_topic, fetch_all};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_streams::{
    DeserializationExceptionHandler, Grouped, I64Serde, JsonSerde, KafkaStreams, Materialized,
    Nullable, ProcessingGuarantee, Produced, Serde, StreamsBuilder, StreamsConfig, StringSerde,
    TableJoined, Topology,
};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Click {
    user_id: String,
    action: String,
    timestamp: f64,
}

const APP: &str = "click-counts";

fn topology() -> Result<Topology, weir_streams::Error> {
    let builder = StreamsBuilder::new();
    builder
        // The seed producer sends JSON values without keys.
        .stream(
            "user-activity",
            Nullable(StringSerde),
            JsonSerde::<Click>::new(),
        )
        .group_by_with(
            |_, click| click.user_id.clone(),
            Grouped::key_serde(StringSerde),
        )
        .materialized_as("clicks-per-user")
        .count()
        .to_stream()
        .to("clicks-per-user", StringSerde, Nullable(I64Serde));
    builder.build()
}

async fn produce_clicks(broker: &TestBroker, range: std::ops::Range<usize>) {
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for i in range {
        let click = Click {
            user_id: format!("user_{}", i % 3),
            action: "click".into(),
            timestamp: i as f64,
        };
        let value = JsonSerde::<Click>::new().serialize(&click).unwrap();
        producer
            .enqueue(ProducerRecord::new("user-activity").value(value))
            .await
            .unwrap();
    }
    producer.flush().await;
}

/// The updates in the output topic (one per input record), once there are `n`.
async fn wait_for_updates(broker: &TestBroker, n: usize) -> Vec<(String, i64)> {
    let client = broker.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let updates: Vec<(String, i64)> = fetch_all(&client, "clicks-per-user", 0)
            .await
            .into_iter()
            .map(|record| {
                let key = StringSerde.deserialize(&record.key.unwrap()).unwrap();
                (key, I64Serde.deserialize(&record.value.unwrap()).unwrap())
            })
            .collect();
        if updates.len() >= n {
            return updates;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "updates so far: {updates:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn last_per_user(updates: &[(String, i64)]) -> BTreeMap<String, i64> {
    updates.iter().cloned().collect()
}

/// What the application committed on the three partitions of `user-activity`.
async fn committed(broker: &TestBroker) -> i64 {
    committed_to(broker, APP, "user-activity", 3).await
}

#[tokio::test]
async fn counts_json_clicks_per_user_and_commits_after_outputs_are_acknowledged() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "user-activity", 3).await;
    create_topic(&client, "clicks-per-user", 1).await;
    produce_clicks(&broker, 0..30).await;

    let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(200);
    let (stop, task) = start(KafkaStreams::new(topology, config.clone()).await.unwrap());
    let counts = last_per_user(&wait_for_updates(&broker, 30).await);
    assert_eq!(
        counts,
        [("user_0", 10), ("user_1", 10), ("user_2", 10)]
            .map(|(u, c)| (u.to_string(), c))
            .into()
    );
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    let store = streams
        .key_value_store::<String, i64>("clicks-per-user")
        .unwrap();
    assert_eq!(store.all().iter().map(|(_, c)| c).sum::<i64>(), 30);
    assert_eq!(streams.metrics().process_total, 30);
    streams.close().await.unwrap();
    // Every input record's offset is committed: the last batch was flushed at shutdown.
    assert_eq!(committed(&broker).await, 30);

    // A restarted instance resumes after the committed offsets: it sees only the new records,
    // and its counts go on from the totals restored from the changelog.
    produce_clicks(&broker, 30..36).await;
    let (stop, task) = start(KafkaStreams::new(topology, config).await.unwrap());
    let updates = wait_for_updates(&broker, 30 + 6).await;
    assert_eq!(updates.len(), 36, "one update per input record, none twice");
    assert_eq!(
        last_per_user(&updates[30..]),
        last_per_user(&updates[30..])
            .into_keys()
            .map(|u| (u, 12))
            .collect()
    );
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    assert_eq!(
        streams.metrics().process_total,
        6,
        "no committed record is processed again"
    );
    let store = streams
        .key_value_store::<String, i64>("clicks-per-user")
        .unwrap();
    assert_eq!(
        store.all(),
        vec![
            ("user_0".into(), 12),
            ("user_1".into(), 12),
            ("user_2".into(), 12)
        ]
    );
    streams.close().await.unwrap();
    assert_eq!(committed(&broker).await, 36);
    broker.stop().await;
}

/// A crash (the task dropped mid-batch, nothing flushed or committed at exit) loses nothing:
/// the next instance restores the counts from the changelog and processes again exactly the
/// records after the last commit, so a count exceeds the truth only by records processed
/// twice (input records, or repartitioned ones, uncommitted at the crash).
#[tokio::test]
async fn a_crash_mid_batch_reprocesses_only_the_uncommitted_records() {
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    create_topic(&client, "user-activity", 3).await;
    create_topic(&client, "clicks-per-user", 1).await;
    produce_clicks(&broker, 0..30).await;

    let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
    config.client = broker.config();
    // Batches of 7 records commit at once; the last, partial one would wait a minute.
    config.max_uncommitted_records = 7;
    config.commit_interval = Duration::from_secs(60);
    config.session_timeout = Duration::from_millis(2000);
    let (_stop, task) = start(KafkaStreams::new(topology, config.clone()).await.unwrap());
    wait_for_updates(&broker, 30).await;
    let repartition = format!("{APP}-clicks-per-user-repartition");
    // The batches under way finish (their offsets are committed); then the task is killed.
    let mut last = (-1, -1);
    loop {
        let now = (
            committed_to(&broker, APP, "user-activity", 3).await,
            committed_to(&broker, APP, &repartition, 3).await,
        );
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let (input_committed, repartition_committed) = last;
    let repartition_end = end_offsets(&broker, &repartition, 3).await;
    let uncommitted = (30 - input_committed) + (repartition_end - repartition_committed);
    assert!(
        uncommitted > 0,
        "the last, partial batch was processed and not committed"
    );

    let (stop, task) = start(KafkaStreams::new(topology, config).await.unwrap());
    // Wait for the uncommitted records to run again; a graceful stop then commits them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while committed_to(&broker, APP, "user-activity", 3).await < 30
        || last_per_user(&wait_for_updates(&broker, 30).await)
            .values()
            .sum::<i64>()
            < 30
    {
        assert!(tokio::time::Instant::now() < deadline, "not reprocessed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    assert_eq!(
        streams.metrics().process_total,
        (30 - input_committed) as u64,
        "only the uncommitted input records run again"
    );
    let counts = streams
        .key_value_store::<String, i64>("clicks-per-user")
        .unwrap()
        .all();
    streams.close().await.unwrap();
    assert_eq!(committed(&broker).await, 30);
    let total: i64 = counts.iter().map(|(_, count)| count).sum();
    assert!(
        counts.iter().all(|(_, count)| *count >= 10),
        "no loss: {counts:?}"
    );
    assert!(
        total - 30 <= uncommitted,
        "{} duplicates, at most {uncommitted} records were uncommitted: {counts:?}",
        total - 30
    );
    broker.stop().await;
}

/// The end offsets of partitions `0..partitions` of `topic`, summed.
async fn end_offsets(broker: &TestBroker, topic: &str, partitions: i32) -> i64 {
    let client = broker.client().await;
    let mut total = 0;
    for partition in 0..partitions {
        total += support::end_offset(&client, topic, partition).await;
    }
    total
}

/// The records of `topic` partition 0, as UTF-8 key and value (`None` for a null value).
async fn read_strings(broker: &TestBroker, topic: &str) -> Vec<(String, Option<String>)> {
    let client = broker.client().await;
    fetch_all(&client, topic, 0)
        .await
        .into_iter()
        .map(|record| {
            let key = StringSerde.deserialize(&record.key.unwrap()).unwrap();
            let value = record
                .value
                .map(|value| StringSerde.deserialize(&value).unwrap());
            (key, value)
        })
        .collect()
}

async fn wait_for_strings(
    broker: &TestBroker,
    topic: &str,
    n: usize,
) -> Vec<(String, Option<String>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let records = read_strings(broker, topic).await;
        if records.len() >= n {
            return records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic} so far: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn produce_strings(broker: &TestBroker, topic: &str, records: &[(&str, Option<&str>)]) {
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for (key, value) in records {
        let mut record = ProducerRecord::new(topic).key(key.to_string());
        record.value = value.map(|value| value.to_string().into());
        producer.enqueue(record).await.unwrap();
    }
    producer.flush().await;
}

/// A table read from a topic (tombstones included) joined with a stream, through the runtime:
/// the table's updates are seen before the stream records produced after them.
#[tokio::test]
async fn a_stream_table_join_reads_the_table_topic_with_its_tombstones() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    for topic in ["limits", "payments", "limits-seen", "checked"] {
        create_topic(&client, topic, 1).await;
    }
    let topology = || {
        let builder = StreamsBuilder::new();
        let limits = builder.table("limits", StringSerde, Nullable(StringSerde));
        limits
            .to_stream()
            .to("limits-seen", StringSerde, Nullable(StringSerde));
        builder
            .stream("payments", StringSerde, StringSerde)
            .left_join_table(&limits, |amount, limit| {
                format!("{amount}/{}", limit.map_or("none", String::as_str))
            })
            .to("checked", StringSerde, StringSerde);
        builder.build()
    };
    let store = topology().unwrap().store_names()[0].clone();
    let mut config = StreamsConfig::new("limits-join", &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    let (stop, task) = start(KafkaStreams::new(topology, config).await.unwrap());

    produce_strings(
        &broker,
        "limits",
        &[("c1", Some("100")), ("c2", Some("50")), ("c2", None)],
    )
    .await;
    let seen = wait_for_strings(&broker, "limits-seen", 3).await;
    assert_eq!(
        seen[2],
        ("c2".to_string(), None),
        "the tombstone is forwarded"
    );
    produce_strings(
        &broker,
        "payments",
        &[("c1", Some("10")), ("c2", Some("20"))],
    )
    .await;
    let checked = wait_for_strings(&broker, "checked", 2).await;
    assert_eq!(
        checked,
        vec![
            ("c1".to_string(), Some("10/100".to_string())),
            ("c2".to_string(), Some("20/none".to_string())),
        ]
    );
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    let store_view = streams.key_value_store::<String, String>(&store).unwrap();
    assert_eq!(
        store_view.all(),
        vec![("c1".to_string(), "100".to_string())]
    );
    streams.close().await.unwrap();

    // Restarted, the application reads no table record again (their offsets are committed):
    // the table comes back from its changelog, the tombstone of c2 included.
    let mut config = StreamsConfig::new("limits-join", &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    let (stop, task) = start(KafkaStreams::new(topology, config).await.unwrap());
    produce_strings(
        &broker,
        "payments",
        &[("c1", Some("30")), ("c2", Some("40"))],
    )
    .await;
    let checked = wait_for_strings(&broker, "checked", 4).await;
    assert_eq!(
        checked[2..],
        [
            ("c1".to_string(), Some("30/100".to_string())),
            ("c2".to_string(), Some("40/none".to_string())),
        ]
    );
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    assert_eq!(streams.metrics().process_total, 2, "only the new payments");
    let store_view = streams.key_value_store::<String, String>(&store).unwrap();
    assert_eq!(
        store_view.all(),
        vec![("c1".to_string(), "100".to_string())]
    );
    streams.close().await.unwrap();
    broker.stop().await;
}

/// Waits until the group `group` has `members` members, each with partitions assigned.
async fn wait_for_members(broker: &TestBroker, group: &str, members: usize) {
    let admin = weir_client::admin::Admin::connect(broker.config())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let described = admin.describe_groups(&[group]).await.unwrap();
        let assigned = described
            .iter()
            .filter_map(|(_, group)| group.as_ref().ok())
            .filter(|group| group.state == "Stable")
            .flat_map(|group| &group.members)
            .filter(|member| !member.assigned_partitions().unwrap().is_empty())
            .count();
        if assigned == members {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group}: {assigned} members with partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn produce_words(broker: &TestBroker, range: std::ops::Range<usize>) {
    let records: Vec<(String, Option<String>)> = range
        .map(|i| (format!("w{}", i % 10), Some("x".to_string())))
        .collect();
    let records: Vec<(&str, Option<&str>)> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    produce_strings(broker, "words", &records).await;
}

/// Two instances share a 4-partition input; one crashes (dropped without close, its
/// batch uncommitted) mid-stream. After its session times out the other takes over its
/// partitions, restores their counts from the changelog, and the final counts are the truth
/// plus at most the records the crashed instance had processed but not committed.
#[tokio::test]
async fn a_surviving_instance_takes_over_the_tasks_of_a_crashed_one() {
    const APP: &str = "word-count-ha";
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    create_topic(&client, "words", 4).await;
    create_topic(&client, "word-counts", 1).await;

    let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    config.session_timeout = Duration::from_secs(6);
    let (stop_b, task_b) = start(
        KafkaStreams::new(word_counts, config.clone())
            .await
            .unwrap(),
    );
    // The instance that will crash commits full batches of 30 records at once and a partial
    // one only after a minute: when it is killed, its last records are processed, their updates
    // logged, and their offsets not committed.
    let mut crashing = config.clone();
    crashing.commit_interval = Duration::from_secs(60);
    crashing.max_uncommitted_records = 30;
    let (_stop_a, task_a) = start(KafkaStreams::new(word_counts, crashing).await.unwrap());
    wait_for_members(&broker, APP, 2).await;

    produce_words(&broker, 0..200).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while latest_counts(&broker, "word-counts")
        .await
        .values()
        .sum::<i64>()
        < 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first half not counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task_a.abort();
    assert!(task_a.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let uncommitted = 200 - committed_to(&broker, APP, "words", 4).await;
    assert!(
        uncommitted > 0,
        "the crashed instance's partial batch was not committed"
    );

    produce_words(&broker, 200..400).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    while committed_to(&broker, APP, "words", 4).await < 400 {
        assert!(tokio::time::Instant::now() < deadline, "not taken over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_b.send(()).unwrap();
    let survivor = task_b.await.unwrap();
    assert_eq!(survivor.tasks(), vec![0, 1, 2, 3], "every task moved to it");
    // The crashed instance's committed records were not processed again: their counts came
    // from the changelog.
    let processed = survivor.metrics().process_total;
    assert!(
        processed < 400,
        "the survivor processed {processed} records"
    );
    let counts = survivor
        .key_value_store::<String, i64>("word-counts")
        .unwrap()
        .all();
    survivor.close().await.unwrap();
    assert_eq!(counts.len(), 10);
    let total: i64 = counts.iter().map(|(_, count)| count).sum();
    assert!(
        counts.iter().all(|(_, count)| *count >= 40),
        "no loss: {counts:?}"
    );
    let duplicates = total - 400;
    assert!(
        duplicates <= uncommitted,
        "{duplicates} duplicates, but only {uncommitted} records were uncommitted: {counts:?}"
    );
    println!("{uncommitted} records uncommitted at the crash, {duplicates} counted twice");
    // The survivor's outputs end with the same totals.
    assert_eq!(
        latest_counts(&broker, "word-counts").await,
        counts.into_iter().collect()
    );
    broker.stop().await;
}

/// A clean handover (an instance closes) is exact: its last batch was committed, the other
/// instance restores the counts and goes on, nothing is counted twice.
#[tokio::test]
async fn a_clean_handover_keeps_exact_counts() {
    const APP: &str = "word-count-handover";
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    create_topic(&client, "words", 4).await;
    create_topic(&client, "word-counts", 1).await;
    let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    config.session_timeout = Duration::from_secs(6);
    let (stop_a, task_a) = start(
        KafkaStreams::new(word_counts, config.clone())
            .await
            .unwrap(),
    );
    let (stop_b, task_b) = start(
        KafkaStreams::new(word_counts, config.clone())
            .await
            .unwrap(),
    );
    wait_for_members(&broker, APP, 2).await;
    produce_words(&broker, 0..200).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while committed_to(&broker, APP, "words", 4).await < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first half not committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_a.send(()).unwrap();
    let leaving = task_a.await.unwrap();
    assert!(!leaving.tasks().is_empty(), "both instances had tasks");
    leaving.close().await.unwrap();

    produce_words(&broker, 200..400).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while committed_to(&broker, APP, "words", 4).await < 400 {
        assert!(tokio::time::Instant::now() < deadline, "not taken over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_b.send(()).unwrap();
    let staying = task_b.await.unwrap();
    assert_eq!(staying.tasks(), vec![0, 1, 2, 3]);
    let counts = staying
        .key_value_store::<String, i64>("word-counts")
        .unwrap()
        .all();
    staying.close().await.unwrap();
    assert_eq!(
        counts,
        (0..10).map(|i| (format!("w{i}"), 40)).collect::<Vec<_>>()
    );
    broker.stop().await;
}

fn events_per_user() -> Result<Topology, weir_streams::Error> {
    let builder = StreamsBuilder::new();
    builder
        .stream("events", StringSerde, StringSerde)
        // The user is in the value: records of one user are spread over the partitions.
        .group_by_with(
            |_, user| user.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .count_with(Materialized::as_store("events-per-user"))
        .to_stream()
        .to("events-per-user", StringSerde, Nullable(I64Serde));
    builder.build()
}

/// Runs `instances` instances of `app` over the 280 events; returns the latest count per
/// user in the output, and each instance's store.
async fn count_events(
    broker: &TestBroker,
    app: &str,
    instances: usize,
) -> (BTreeMap<String, i64>, Vec<Vec<(String, i64)>>) {
    let mut config = StreamsConfig::new(app, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    config.session_timeout = Duration::from_secs(6);
    let mut running = Vec::new();
    for _ in 0..instances {
        running.push(start(
            KafkaStreams::new(events_per_user, config.clone())
                .await
                .unwrap(),
        ));
    }
    wait_for_members(broker, app, instances).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let repartition = format!("{app}-events-per-user-repartition");
    while committed_to(broker, app, "events", 4).await < 280
        || committed_to(broker, app, &repartition, 4).await < 280
    {
        assert!(tokio::time::Instant::now() < deadline, "{app}: not counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stores = Vec::new();
    for (stop, task) in running {
        stop.send(()).unwrap();
        let streams = task.await.unwrap();
        stores.push(
            streams
                .key_value_store::<String, i64>("events-per-user")
                .unwrap()
                .all(),
        );
        streams.close().await.unwrap();
    }
    (latest_counts(broker, "events-per-user").await, stores)
}

/// A group_by with a new key across a 4-partition input: two instances give the totals one
/// instance gives, because the repartition topic routes each user to one task.
#[tokio::test]
async fn group_by_a_new_key_gives_the_same_totals_on_two_instances_as_on_one() {
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    create_topic(&client, "events", 4).await;
    create_topic(&client, "events-per-user", 1).await;
    let events: Vec<(String, Option<String>)> = (0..280)
        .map(|i| (format!("e{i}"), Some(format!("user{}", i % 7))))
        .collect();
    let events: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    produce_strings(&broker, "events", &events).await;
    let expected: BTreeMap<String, i64> = (0..7).map(|u| (format!("user{u}"), 40)).collect();

    let (two, stores) = count_events(&broker, "per-user-2", 2).await;
    assert_eq!(two, expected);
    assert!(
        stores.iter().all(|store| !store.is_empty()),
        "both instances counted users: {stores:?}"
    );
    let mut union: Vec<(String, i64)> = stores.concat();
    union.sort();
    assert_eq!(
        union,
        expected.clone().into_iter().collect::<Vec<_>>(),
        "each user is counted in one task only"
    );

    // One instance, its own application (and repartition topic), on the same input.
    let client = broker.client().await;
    weir_client::admin::Admin::from_client(client.clone())
        .delete_topics(&["events-per-user"])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    create_topic(&client, "events-per-user", 1).await;
    let (one, _) = count_events(&broker, "per-user-1", 1).await;
    assert_eq!(one, two);
    broker.stop().await;
}

/// A join of topics with different partition counts is refused when the runtime learns the
/// counts, naming the join and the topics.
#[tokio::test]
async fn a_join_of_topics_with_different_partition_counts_is_refused() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "orders", 4).await;
    create_topic(&client, "customers", 2).await;
    let topology = || {
        let builder = StreamsBuilder::new();
        let customers = builder.table("customers", StringSerde, Nullable(StringSerde));
        builder
            .stream("orders", StringSerde, StringSerde)
            .join_table(&customers, |order, customer| format!("{order}/{customer}"))
            .to("enriched", StringSerde, StringSerde);
        builder.build()
    };
    let mut config = StreamsConfig::new("copartition", &broker.addr.to_string());
    config.client = broker.config();
    let error = KafkaStreams::new(topology, config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("KSTREAM-JOIN-")
            && error.contains("customers (2 partitions)")
            && error.contains("orders (4 partitions)"),
        "{error}"
    );
    broker.stop().await;
}

/// Produces `(partition, key, value, timestamp)` to `topic`.
async fn produce_at(broker: &TestBroker, topic: &str, records: &[(i32, &str, &str, i64)]) {
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for (partition, key, value, timestamp) in records {
        let record = ProducerRecord::new(topic)
            .partition(*partition)
            .key(key.to_string())
            .value(value.to_string())
            .timestamp(*timestamp);
        producer.enqueue(record).await.unwrap();
    }
    producer.flush().await;
}

/// `max_task_idle_ms`: an order fetched while its task's table partition has nothing
/// buffered waits for the table side, so a customer produced after it but older is joined
/// first; without waiting (-1) the order runs ahead and misses it, and so it does at 0 (the
/// table partition is known to be caught up: nothing to wait for). A wait that times out
/// processes the order anyway; then, as Kafka's, the partition is not waited for again until
/// it had records, so the test's first order goes to another task.
#[tokio::test]
async fn a_task_waits_max_task_idle_for_the_late_table_side() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    for (suffix, idle, expected) in [
        ("eager", -1, "o1/none"),
        ("caught-up", 0, "o1/none"),
        ("idle", 1_000, "o1/alice"),
    ] {
        let [orders, customers, enriched] =
            ["orders", "customers", "enriched"].map(|topic| format!("{topic}-{suffix}"));
        create_topic(&client, &orders, 2).await;
        create_topic(&client, &customers, 2).await;
        create_topic(&client, &enriched, 1).await;
        let topology = {
            let (orders, customers, enriched) =
                (orders.clone(), customers.clone(), enriched.clone());
            move || {
                let builder = StreamsBuilder::new();
                let customers = builder.table(&customers, StringSerde, Nullable(StringSerde));
                builder
                    .stream(&orders, StringSerde, StringSerde)
                    .left_join_table(&customers, |order, customer| {
                        format!("{order}/{}", customer.map_or("none", String::as_str))
                    })
                    .to(&enriched, StringSerde, StringSerde);
                builder.build()
            }
        };
        let mut config = StreamsConfig::new(&format!("idle-{suffix}"), &broker.addr.to_string());
        config.client = broker.config();
        config.commit_interval = Duration::from_millis(100);
        config.max_task_idle_ms = idle;
        let (stop, task) = start(KafkaStreams::new(topology, config).await.unwrap());
        // A first order to task 1, to know the instance runs; with nothing ever on its table
        // partition, a waiting task processes it once the idle time is over.
        produce_at(&broker, &orders, &[(1, "c0", "o0", 0)]).await;
        wait_for_strings(&broker, &enriched, 1).await;
        produce_at(&broker, &orders, &[(0, "c1", "o1", 2_000)]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        produce_at(&broker, &customers, &[(0, "c1", "alice", 1_000)]).await;
        let enriched = wait_for_strings(&broker, &enriched, 2).await;
        assert_eq!(
            enriched,
            vec![
                ("c0".to_string(), Some("o0/none".to_string())),
                ("c1".to_string(), Some(expected.to_string())),
            ],
            "max_task_idle_ms {idle}"
        );
        stop.send(()).unwrap();
        task.await.unwrap().close().await.unwrap();
    }
    broker.stop().await;
}

/// `max_task_idle_ms` 0 (the default, KIP-695): with both sides of a stream-table join
/// written before the start, every order joins the customer version of its time, however
/// the fetches cut the topics: the customers' large values come a few hundred kilobytes per
/// fetch while all the orders come in the first, and the task waits for the customers the
/// broker still holds. With -1 the orders run ahead of the customers fetched so far.
#[tokio::test]
async fn with_no_idle_time_a_join_of_inputs_written_before_the_start_is_in_time_order() {
    const VERSIONS: usize = 300;
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    // Each version about 8 KB: a fetch (1 MiB a partition) holds some 120 of them.
    let padding = "x".repeat(8_000);
    let customers: Vec<String> = (0..VERSIONS)
        .map(|i| format!("v{i:03}|{padding}"))
        .collect();
    let orders: Vec<String> = (0..VERSIONS).map(|i| format!("o{i:03}")).collect();
    let expected: Vec<(String, Option<String>)> = (0..VERSIONS)
        .map(|i| ("c".to_string(), Some(format!("o{i:03}/v{i:03}"))))
        .collect();
    for (suffix, idle) in [("default", None), ("eager", Some(-1))] {
        let [orders_topic, customers_topic, enriched] =
            ["orders", "customers", "enriched"].map(|topic| format!("{topic}-written-{suffix}"));
        for topic in [&orders_topic, &customers_topic, &enriched] {
            create_topic(&client, topic, 1).await;
        }
        // Version i of the customer at 10 i, order i at 10 i + 5: order i joins version i.
        let written: Vec<(i32, &str, &str, i64)> = customers
            .iter()
            .enumerate()
            .map(|(i, value)| (0, "c", value.as_str(), 10 * i as i64))
            .collect();
        produce_at(&broker, &customers_topic, &written).await;
        let written: Vec<(i32, &str, &str, i64)> = orders
            .iter()
            .enumerate()
            .map(|(i, value)| (0, "c", value.as_str(), 10 * i as i64 + 5))
            .collect();
        produce_at(&broker, &orders_topic, &written).await;
        let topology = {
            let (orders, customers, enriched) = (
                orders_topic.clone(),
                customers_topic.clone(),
                enriched.clone(),
            );
            move || {
                let builder = StreamsBuilder::new();
                let customers = builder.table(&customers, StringSerde, Nullable(StringSerde));
                builder
                    .stream(&orders, StringSerde, StringSerde)
                    .join_table(&customers, |order, customer: &String| {
                        let version = customer.split('|').next().unwrap_or_default();
                        format!("{order}/{version}")
                    })
                    .to(&enriched, StringSerde, StringSerde);
                builder.build()
            }
        };
        let mut config = StreamsConfig::new(&format!("written-{suffix}"), &broker.addr.to_string());
        config.client = broker.config();
        config.commit_interval = Duration::from_millis(100);
        if let Some(idle) = idle {
            config.max_task_idle_ms = idle;
        }
        let (stop, task) = start(KafkaStreams::new(topology, config).await.unwrap());
        let joined = wait_for_strings(&broker, &enriched, VERSIONS).await;
        match idle {
            None => assert_eq!(joined, expected, "max_task_idle_ms 0"),
            Some(_) => assert_ne!(
                joined, expected,
                "-1: the orders fetched at once run ahead of the customers"
            ),
        }
        stop.send(()).unwrap();
        task.await.unwrap().close().await.unwrap();
    }
    broker.stop().await;
}

/// The topology of the global-table tests: orders (value: a product id) left-joined with
/// the global table `products`, written as `<product>/<product name or none>`.
fn orders_with_products() -> Result<Topology, weir_streams::Error> {
    let builder = StreamsBuilder::new();
    let products = builder.global_table("products-global", StringSerde, Nullable(StringSerde));
    builder
        .stream("orders-global", StringSerde, StringSerde)
        .left_join_global(
            &products,
            |_, product: &String| product.clone(),
            |product, name| format!("{product}/{}", name.map_or("none", String::as_str)),
        )
        .to("enriched-global", StringSerde, StringSerde);
    builder.build()
}

/// Two instances of one application: each reads every partition of the 2-partition global
/// table, written before the start, to its end before processing, so every order on the
/// 4-partition input joins on both instances; a product renamed while they run reaches the
/// orders after it, on every task.
#[tokio::test]
async fn every_instance_bootstraps_the_whole_global_table_and_follows_its_updates() {
    const APP: &str = "global-join";
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    create_topic(&client, "orders-global", 4).await;
    create_topic(&client, "products-global", 2).await;
    create_topic(&client, "enriched-global", 1).await;
    let products: Vec<(i32, String, String)> = (0..10)
        .map(|p| (p % 2, format!("p{p}"), format!("name{p}")))
        .collect();
    let products: Vec<(i32, &str, &str, i64)> = products
        .iter()
        .map(|(partition, key, name)| (*partition, key.as_str(), name.as_str(), 0))
        .collect();
    produce_at(&broker, "products-global", &products).await;

    let mut instances = Vec::new();
    for _ in 0..2 {
        let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
        config.client = broker.config();
        config.commit_interval = Duration::from_millis(100);
        config.session_timeout = Duration::from_secs(6);
        instances.push(start(
            KafkaStreams::new(orders_with_products, config)
                .await
                .unwrap(),
        ));
    }
    wait_for_members(&broker, APP, 2).await;
    // The global table's topic is not the group's: its offsets are never committed.
    let orders: Vec<(i32, String, String, i64)> = (0..40)
        .map(|i| (i % 4, format!("o{i}"), format!("p{}", i % 10), 1_000))
        .collect();
    let orders: Vec<(i32, &str, &str, i64)> = orders
        .iter()
        .map(|(partition, key, product, ts)| (*partition, key.as_str(), product.as_str(), *ts))
        .collect();
    produce_at(&broker, "orders-global", &orders).await;
    let enriched = wait_for_strings(&broker, "enriched-global", 40).await;
    let mut expected: Vec<(String, Option<String>)> = (0..40)
        .map(|i| (format!("o{i}"), Some(format!("p{0}/name{0}", i % 10))))
        .collect();
    expected.sort();
    let mut joined = enriched.clone();
    joined.sort();
    assert_eq!(joined, expected, "every order joined, on both instances");

    // A rename while running reaches the orders after it, on every partition's task.
    produce_at(&broker, "products-global", &[(1, "p1", "renamed", 2_000)]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut round = 0;
    loop {
        round += 1;
        let batch: Vec<(i32, String)> = (0..4).map(|p| (p, format!("r{round}-{p}"))).collect();
        let batch: Vec<(i32, &str, &str, i64)> = batch
            .iter()
            .map(|(partition, key)| (*partition, key.as_str(), "p1", 3_000))
            .collect();
        produce_at(&broker, "orders-global", &batch).await;
        let seen = 40 + 4 * round;
        let latest = wait_for_strings(&broker, "enriched-global", seen).await;
        let renamed = latest
            .iter()
            .filter(|(key, value)| {
                key.starts_with(&format!("r{round}-"))
                    && value.as_deref().is_some_and(|v| v.ends_with("/renamed"))
            })
            .count();
        if renamed == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rename did not reach every task: {latest:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = orders_with_products()
        .unwrap()
        .store_names()
        .into_iter()
        .find(|name| name.starts_with("products-global-STATE-STORE"))
        .unwrap();
    let mut processed = Vec::new();
    for (stop, task) in instances {
        stop.send(()).unwrap();
        let streams = task.await.unwrap();
        processed.push(streams.metrics().process_total);
        let table = streams.key_value_store::<String, String>(&store).unwrap();
        assert_eq!(table.approximate_num_entries(), 10, "the whole table");
        assert_eq!(table.get(&"p1".to_string()).as_deref(), Some("renamed"));
        streams.close().await.unwrap();
    }
    assert!(
        processed.iter().all(|processed| *processed > 0),
        "both instances processed orders: {processed:?}"
    );
    assert_eq!(
        committed_to(&broker, APP, "products-global", 2).await,
        0,
        "no offsets committed for the global topic"
    );
    broker.stop().await;
}

/// Creates the topics of [`orders_with_products`] and writes the products `p<n>` for `ns`,
/// named `name<n>`, on partition `n % 2` at `timestamp`.
async fn global_topics_with_products(
    broker: &TestBroker,
    ns: std::ops::Range<usize>,
    timestamp: i64,
) {
    let client = broker.client().await;
    create_topic(&client, "orders-global", 2).await;
    create_topic(&client, "products-global", 2).await;
    create_topic(&client, "enriched-global", 1).await;
    let products: Vec<(i32, String, String)> = ns
        .map(|n| ((n % 2) as i32, format!("p{n}"), format!("name{n}")))
        .collect();
    let products: Vec<(i32, &str, &str, i64)> = products
        .iter()
        .map(|(partition, key, name)| (*partition, key.as_str(), name.as_str(), timestamp))
        .collect();
    produce_at(broker, "products-global", &products).await;
}

/// A [`orders_with_products`] instance of `app` keeping its local state in `dir`.
async fn global_instance(broker: &TestBroker, app: &str, dir: &std::path::Path) -> KafkaStreams {
    let mut config = StreamsConfig::new(app, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    config.state_dir = Some(dir.to_path_buf());
    // The global table is persistent and larger than its cache: lookups read the local state.
    config.store_cache_max_entries = Some(2);
    KafkaStreams::new(orders_with_products, config)
        .await
        .unwrap()
}

/// The name of the global table's store in [`orders_with_products`].
fn products_store() -> String {
    orders_with_products()
        .unwrap()
        .store_names()
        .into_iter()
        .find(|name| name.starts_with("products-global-STATE-STORE"))
        .unwrap()
}

/// With a state dir, the global table is kept on disk (Kafka's global state directory):
/// what the bootstrap read and what the running instance followed. A restart serves it from
/// there, two entries cached, and reads from the topic only the records written while no
/// instance ran, a tombstone included; `cleanup` deletes the global directory.
#[tokio::test]
async fn a_restart_loads_the_global_table_from_local_state_and_reads_only_what_it_missed() {
    const APP: &str = "global-local";
    let broker = TestBroker::start(&[]).await;
    global_topics_with_products(&broker, 0..10, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let store = products_store();

    let streams = global_instance(&broker, APP, dir.path()).await;
    let metrics = streams.metrics();
    assert_eq!(metrics.restored_from_local_state, 0);
    assert_eq!(
        metrics.restored_from_changelog, 10,
        "a first start reads it all"
    );
    let (stop, task) = start(streams);
    // Followed while running: a rename and a new product, seen by orders after them.
    produce_at(
        &broker,
        "products-global",
        &[(1, "p1", "renamed", 2_000), (0, "p10", "name10", 2_000)],
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut round = 0;
    loop {
        round += 1;
        let (k1, k10) = (format!("r{round}-1"), format!("r{round}-10"));
        produce_at(
            &broker,
            "orders-global",
            &[
                (0, k1.as_str(), "p1", 3_000),
                (1, k10.as_str(), "p10", 3_000),
            ],
        )
        .await;
        let latest = wait_for_strings(&broker, "enriched-global", 2 * round).await;
        let joined = |key: &str, expected: &str| {
            latest
                .iter()
                .any(|(k, v)| k == key && v.as_deref() == Some(expected))
        };
        if joined(&k1, "p1/renamed") && joined(&k10, "p10/name10") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the updates did not reach the tasks: {latest:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap().close().await.unwrap();
    assert!(
        dir.path()
            .join(APP)
            .join("global")
            .join("state.redb")
            .exists()
    );

    // While no instance runs: a new product, a rename and a deletion.
    produce_at(
        &broker,
        "products-global",
        &[(1, "p11", "name11", 4_000), (0, "p2", "renamed2", 4_000)],
    )
    .await;
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    let tombstone = ProducerRecord::new("products-global")
        .partition(1)
        .key("p3".to_string());
    producer.enqueue(tombstone).await.unwrap();
    producer.flush().await;

    let mut streams = global_instance(&broker, APP, dir.path()).await;
    let metrics = streams.metrics();
    assert_eq!(
        metrics.restored_from_local_state, 11,
        "p0 to p10 from the local copy"
    );
    assert_eq!(
        metrics.restored_from_changelog, 3,
        "only the records written while closed"
    );
    assert_eq!(metrics.persistent_entries_in_memory, 2, "the cache bound");
    let table = streams.key_value_store::<String, String>(&store).unwrap();
    assert_eq!(table.approximate_num_entries(), 11, "{:?}", table.all());
    let get = |key: &str| table.get_with_timestamp(&key.to_string());
    assert_eq!(get("p0"), Some(("name0".to_string(), 0)));
    assert_eq!(get("p1"), Some(("renamed".to_string(), 2_000)));
    assert_eq!(get("p10"), Some(("name10".to_string(), 2_000)));
    assert_eq!(get("p11"), Some(("name11".to_string(), 4_000)));
    assert_eq!(get("p2"), Some(("renamed2".to_string(), 4_000)));
    assert_eq!(get("p3"), None, "the tombstone removed it");

    streams.cleanup().await.unwrap();
    assert!(!dir.path().join(APP).join("global").exists());
    // The instance keeps its global table, in memory now.
    assert_eq!(table.approximate_num_entries(), 11, "{:?}", table.all());
    assert_eq!(get("p0"), Some(("name0".to_string(), 0)));
    assert_eq!(get("p3"), None);
    assert_eq!(streams.metrics().persistent_entries_in_memory, 0);
    streams.close().await.unwrap();
    broker.stop().await;
}

/// A global checkpoint past the topic's end (the topic was recreated, here on another
/// cluster, with fewer records) wipes the local copy: the global table is bootstrapped
/// from the topic's beginning and holds none of the old records; the next start loads the
/// rebuilt copy.
#[tokio::test]
async fn a_global_checkpoint_past_the_topics_end_wipes_the_local_copy() {
    const APP: &str = "global-recreated";
    let dir = tempfile::tempdir().unwrap();
    let store = products_store();
    let old = TestBroker::start(&[]).await;
    global_topics_with_products(&old, 0..10, 0).await;
    global_instance(&old, APP, dir.path())
        .await
        .close()
        .await
        .unwrap();
    old.stop().await;

    let broker = TestBroker::start(&[]).await;
    global_topics_with_products(&broker, 20..24, 0).await;
    let streams = global_instance(&broker, APP, dir.path()).await;
    let metrics = streams.metrics();
    assert_eq!(metrics.restored_from_local_state, 0, "the copy was wiped");
    assert_eq!(metrics.restored_from_changelog, 4, "the whole topic");
    let mut keys: Vec<String> = streams
        .key_value_store::<String, String>(&store)
        .unwrap()
        .all()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["p20", "p21", "p22", "p23"]);
    streams.close().await.unwrap();

    let streams = global_instance(&broker, APP, dir.path()).await;
    let metrics = streams.metrics();
    assert_eq!(metrics.restored_from_local_state, 4);
    assert_eq!(metrics.restored_from_changelog, 0);
    streams.close().await.unwrap();
    broker.stop().await;
}

/// A running instance that reads only global records (no task input) still writes them to
/// the global local copy at the commit interval, not only at its close: after it is killed
/// (its task dropped, no last commit), the next start reads none of them from the topic.
#[tokio::test]
async fn global_records_alone_reach_the_local_copy_at_the_commit_interval() {
    const APP: &str = "global-idle";
    let broker = TestBroker::start(&[]).await;
    global_topics_with_products(&broker, 0..4, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let (_stop, task) = start(global_instance(&broker, APP, dir.path()).await);
    produce_at(&broker, "products-global", &[(0, "p4", "name4", 1_000)]).await;
    // Many commit intervals (100 ms) for the record to be read and written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let streams = global_instance(&broker, APP, dir.path()).await;
    let metrics = streams.metrics();
    assert_eq!(metrics.restored_from_local_state, 5, "p4 included");
    assert_eq!(metrics.restored_from_changelog, 0);
    streams.close().await.unwrap();
    broker.stop().await;
}

/// A broker for word counts shared by a group of instances: `words` with `partitions`
/// partitions, `word-counts`, and group timeouts short enough for a test.
async fn word_count_broker(partitions: i32) -> TestBroker {
    let broker = TestBroker::start(&[
        ("group.min.session.timeout.ms", "1000"),
        ("group.initial.rebalance.delay.ms", "0"),
    ])
    .await;
    let client = broker.client().await;
    create_topic(&client, "words", partitions).await;
    create_topic(&client, "word-counts", 1).await;
    broker
}

/// The configuration of an instance of `app` on `broker` that commits every 100 ms and
/// whose crash the group notices within 3 s.
fn word_count_group_config(broker: &TestBroker, app: &str) -> StreamsConfig {
    let mut config = StreamsConfig::new(app, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    config.session_timeout = Duration::from_secs(3);
    config
}

/// Exactly once across rebalances: a second instance joins while records keep coming, then
/// the first leaves. A rebalance in the middle of a batch aborts the batch's transaction
/// and rebuilds the tasks from what was committed, so a `read_committed` consumer of the
/// counts reads, per word, 1, 2, 3... with no count repeated or skipped.
#[tokio::test]
async fn exactly_once_counts_stay_exact_across_rebalances() {
    const APP: &str = "word-count-exactly-once";
    let broker = word_count_broker(4).await;
    let mut config = word_count_group_config(&broker, APP);
    config.processing_guarantee = ProcessingGuarantee::ExactlyOnceV2;
    let writing = tokio::spawn({
        let broker_config = broker.config();
        async move {
            let producer = Producer::connect(ProducerConfig::new(broker_config))
                .await
                .unwrap();
            for i in 0..600 {
                let record = ProducerRecord::new("words")
                    .key(format!("w{}", i % 10))
                    .value("x");
                producer.send(record).await.unwrap();
                if i % 20 == 19 {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
    });
    let first = start(
        KafkaStreams::new(word_counts, config.clone())
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = start(KafkaStreams::new(word_counts, config).await.unwrap());
    wait_for_members(&broker, APP, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (stop, task) = first;
    stop.send(()).unwrap();
    task.await.unwrap().close().await.unwrap();
    writing.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while committed_to(&broker, APP, "words", 4).await < 600 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every record committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (stop, task) = second;
    stop.send(()).unwrap();
    task.await.unwrap().close().await.unwrap();
    let mut per_word: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (word, count) in read_committed_counts(&broker, "word-counts").await {
        per_word.entry(word).or_default().push(count);
    }
    assert_eq!(per_word.len(), 10);
    for (word, counts) in &per_word {
        let expected: Vec<i64> = (1..=60).collect();
        assert!(
            counts == &expected,
            "{word}: each of 60 records counted once, read {counts:?}"
        );
    }
    broker.stop().await;
}

/// The streams assignor is sticky: when one of three instances leaves, the two that stay
/// keep every task they ran and only take over the leaver's. (The range assignor would move
/// a task between the two that stay: with tasks 0-1, 2-3 and 4-5, the last leaving, range
/// gives 0-2 and 3-5.) And an instance that joins after the others' first assignment, with
/// no local state, takes its share at once when the changelogs are within
/// `acceptable.recovery.lag` (its lag is their length, as Kafka's leader counts it), not after
/// warming up until a probing rebalance (10 minutes by default).
#[tokio::test]
async fn the_instances_that_stay_keep_their_tasks_when_one_leaves() {
    const APP: &str = "word-count-sticky";
    let broker = word_count_broker(6).await;
    produce_words(&broker, 0..60).await;

    let mut running = BTreeMap::new();
    let mut launch = async |i: usize| {
        let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
        config.client = broker.config();
        config.client.client_id = format!("instance-{i}");
        config.commit_interval = Duration::from_millis(100);
        let instance = start(KafkaStreams::new(word_counts, config).await.unwrap());
        running.insert(format!("instance-{i}"), instance);
    };
    launch(0).await;
    launch(1).await;
    let first = wait_for_layout(&broker, APP, "words", 2, 6).await;
    assert!(first.values().all(|tasks| tasks.len() == 3), "{first:?}");
    // The changelogs now hold the counts: the third instance is behind by their length.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while committed_to(&broker, APP, "words", 6).await < 60 {
        assert!(tokio::time::Instant::now() < deadline, "not committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    launch(2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let before = loop {
        let layout = wait_for_layout(&broker, APP, "words", 3, 6).await;
        if layout.values().all(|tasks| tasks.len() == 2) {
            break layout;
        }
        assert!(tokio::time::Instant::now() < deadline, "{layout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (leaver, _) = before.iter().find(|(_, tasks)| tasks.contains(&5)).unwrap();
    let (stop, task) = running.remove(leaver).unwrap();
    stop.send(()).unwrap();
    task.await.unwrap().close().await.unwrap();

    let after = wait_for_layout(&broker, APP, "words", 2, 6).await;
    for (instance, tasks) in &after {
        assert_eq!(tasks.len(), 3, "{after:?}");
        assert!(
            tasks.is_superset(&before[instance]),
            "{instance} had {:?}, now {tasks:?}",
            before[instance]
        );
    }
    for (_, (stop, task)) in running {
        stop.send(()).unwrap();
        task.await.unwrap().close().await.unwrap();
    }
    broker.stop().await;
}

/// Stops a running instance, reads what `inspect` wants of it, and starts it again; its
/// group membership stays (it does not close).
async fn pause_and_inspect<T>(
    running: (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<KafkaStreams>,
    ),
    inspect: impl AsyncFnOnce(&KafkaStreams) -> T,
) -> (
    (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<KafkaStreams>,
    ),
    T,
) {
    let (stop, task) = running;
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    let seen = inspect(&streams).await;
    (start(streams), seen)
}

/// With `num_standby_replicas = 1`, each of two instances keeps a standby of the other's
/// tasks, fed from their changelogs. When one crashes, the survivor promotes its standbys:
/// it reads few or none of the changelog records (a takeover without standbys reads them
/// all), and the counts go on exactly.
#[tokio::test]
async fn a_crashed_instances_tasks_are_promoted_from_the_survivors_standbys() {
    const APP: &str = "word-count-standby";
    const RECORDS: usize = 600;
    let broker = word_count_broker(4).await;
    let client = broker.client().await;
    let mut config = word_count_group_config(&broker, APP);
    config.num_standby_replicas = 1;
    let mut survivor = start(
        KafkaStreams::new(word_counts, config.clone())
            .await
            .unwrap(),
    );
    let mut crashing = start(
        KafkaStreams::new(word_counts, config.clone())
            .await
            .unwrap(),
    );
    wait_for_members(&broker, APP, 2).await;
    produce_words(&broker, 0..RECORDS).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while committed_to(&broker, APP, "words", 4).await < RECORDS as i64 {
        assert!(tokio::time::Instant::now() < deadline, "not committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each instance's standbys are the other's tasks, with every changelog record applied.
    let changelog = format!("{APP}-word-counts-changelog");
    let logged = async |tasks: &[i32]| -> i64 {
        let mut sum = 0;
        for task in tasks {
            sum += support::end_offset(&client, &changelog, *task).await;
        }
        sum
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (others, read_before) = loop {
        let (running, (tasks, standbys, metrics)) = pause_and_inspect(survivor, async |s| {
            (s.tasks(), s.standby_tasks(), s.metrics())
        })
        .await;
        survivor = running;
        let (running, (crashing_tasks, crashing_standbys, crashing_metrics)) =
            pause_and_inspect(crashing, async |s| {
                (s.tasks(), s.standby_tasks(), s.metrics())
            })
            .await;
        crashing = running;
        let warm = |tasks: &[i32], standbys: &[i32], applied: u64, logged: i64| {
            tasks.len() == 2
                && standbys.len() == 2
                && tasks.iter().all(|t| !standbys.contains(t))
                && logged > 0
                && i64::try_from(applied).unwrap() >= logged
        };
        let survivor_logged = logged(&standbys).await;
        let crashing_logged = logged(&crashing_standbys).await;
        if warm(&tasks, &standbys, metrics.standby_applied, survivor_logged)
            && warm(
                &crashing_tasks,
                &crashing_standbys,
                crashing_metrics.standby_applied,
                crashing_logged,
            )
            && standbys == crashing_tasks
        {
            break (survivor_logged, metrics.restored_from_changelog);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "standbys not warm: survivor {tasks:?} standbys {standbys:?} applied {} of \
             {survivor_logged}; other {crashing_tasks:?} standbys {crashing_standbys:?} \
             applied {} of {crashing_logged}",
            metrics.standby_applied,
            crashing_metrics.standby_applied
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        others >= 200,
        "the other's changelogs hold {others} records"
    );

    let (_, crashing_task) = crashing;
    crashing_task.abort();
    assert!(crashing_task.await.unwrap_err().is_cancelled());
    produce_words(&broker, RECORDS..RECORDS + 200).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while committed_to(&broker, APP, "words", 4).await < RECORDS as i64 + 200 {
        assert!(tokio::time::Instant::now() < deadline, "not taken over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (stop, task) = survivor;
    stop.send(()).unwrap();
    let survivor = task.await.unwrap();
    assert_eq!(survivor.tasks(), vec![0, 1, 2, 3], "every task moved to it");
    assert!(survivor.standby_tasks().is_empty(), "no other instance");
    let read = survivor.metrics().restored_from_changelog - read_before;
    assert!(
        read * 10 < u64::try_from(others).unwrap(),
        "the promotion read {read} changelog records of {others}"
    );
    let counts = survivor
        .key_value_store::<String, i64>("word-counts")
        .unwrap()
        .all();
    survivor.close().await.unwrap();
    let expected: BTreeMap<String, i64> = (0..10)
        .map(|w| (format!("w{w}"), (RECORDS as i64 + 200) / 10))
        .collect();
    assert_eq!(counts.into_iter().collect::<BTreeMap<_, _>>(), expected);
    assert_eq!(latest_counts(&broker, "word-counts").await, expected);
    broker.stop().await;
}

/// KIP-441 warm-up replicas: a second instance joins one that runs every task of a
/// stateful application with a few hundred changelog records per task, more than
/// `acceptable_recovery_lag` (50 here). Balance would give it two tasks, but it has no state
/// for them, so it is behind by their changelogs' length: the first instance keeps all four
/// and the newcomer gets warm-up replicas of its two instead. A probing rebalance after
/// `probing_rebalance_interval` finds them caught up and moves the tasks, which then read
/// little or nothing of their changelogs; the counts stay exact throughout.
#[tokio::test]
async fn a_joining_instance_warms_up_before_it_takes_tasks_over() {
    const APP: &str = "word-count-warmup";
    const RECORDS: usize = 1200;
    let broker = word_count_broker(4).await;
    let client = broker.client().await;
    let mut config = word_count_group_config(&broker, APP);
    config.probing_rebalance_interval = Duration::from_secs(3);
    config.acceptable_recovery_lag = 50;
    let mut first_config = config.clone();
    first_config.client.client_id = "first".to_string();
    let first = start(KafkaStreams::new(word_counts, first_config).await.unwrap());
    wait_for_members(&broker, APP, 1).await;
    produce_words(&broker, 0..RECORDS).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while committed_to(&broker, APP, "words", 4).await < RECORDS as i64 {
        assert!(tokio::time::Instant::now() < deadline, "not committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let changelog = format!("{APP}-word-counts-changelog");
    for task in 0..4 {
        let logged = support::end_offset(&client, &changelog, task).await;
        assert!(logged >= 100, "task {task} logged only {logged}");
    }

    let mut second_config = config.clone();
    second_config.client.client_id = "second".to_string();
    let second = start(KafkaStreams::new(word_counts, second_config).await.unwrap());
    // The first assignment with both: the first instance keeps every task.
    let layout = wait_for_layout(&broker, APP, "words", 2, 4).await;
    assert_eq!(layout["first"], BTreeSet::from([0, 1, 2, 3]), "{layout:?}");
    assert!(layout["second"].is_empty(), "{layout:?}");
    // Its warm-ups start as it syncs with that assignment (an idle instance syncs every
    // 200 ms of its run loop: each look here must leave it that long), well before the
    // probe.
    let mut second = second;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let warmups = loop {
        let (running, (tasks, warmups, standbys)) = pause_and_inspect(second, async |s| {
            (s.tasks(), s.warmup_tasks(), s.standby_tasks())
        })
        .await;
        second = running;
        assert!(tasks.is_empty(), "{tasks:?}");
        if warmups.len() == 2 {
            assert_eq!(standbys, warmups, "num_standby_replicas is 0");
            break warmups;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "warm-ups {warmups:?}, standbys {standbys:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // The probing rebalance moves the warmed-up tasks over, 3 s after the assignment that
    // held them back (not at some later rebalance).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let moved = loop {
        let layout = wait_for_layout(&broker, APP, "words", 2, 4).await;
        if layout["second"].len() == 2 {
            break layout;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tasks never moved: {layout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        moved["second"],
        warmups.iter().copied().collect::<BTreeSet<_>>(),
        "the warmed-up tasks are the ones that move"
    );
    let warmed: i64 = {
        let mut sum = 0;
        for task in &warmups {
            sum += support::end_offset(&client, &changelog, *task).await;
        }
        sum
    };

    produce_words(&broker, RECORDS..RECORDS + 400).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while committed_to(&broker, APP, "words", 4).await < RECORDS as i64 + 400 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not committed after the move"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut counts = BTreeMap::new();
    for (name, (stop, task)) in [("first", first), ("second", second)] {
        stop.send(()).unwrap();
        let streams = task.await.unwrap();
        assert_eq!(streams.tasks().len(), 2, "{name}: {:?}", streams.tasks());
        assert!(
            streams.warmup_tasks().is_empty(),
            "{name}: no warm-ups left"
        );
        if name == "second" {
            let metrics = streams.metrics();
            assert!(
                metrics.standby_applied > 0
                    && metrics.restored_from_changelog * 10 < u64::try_from(warmed).unwrap(),
                "the warmed-up tasks read {} of {warmed} changelog records ({} applied warm)",
                metrics.restored_from_changelog,
                metrics.standby_applied
            );
        }
        counts.extend(
            streams
                .key_value_store::<String, i64>("word-counts")
                .unwrap()
                .all(),
        );
        streams.close().await.unwrap();
    }
    let expected: BTreeMap<String, i64> = (0..10)
        .map(|w| (format!("w{w}"), (RECORDS as i64 + 400) / 10))
        .collect();
    assert_eq!(counts, expected);
    assert_eq!(latest_counts(&broker, "word-counts").await, expected);
    broker.stop().await;
}

/// With the dead-letter queue handler, a record that does not deserialize goes to the
/// dead-letter topic, raw, whether a task read it or the global table did (KIP-1295): a
/// product whose name is not UTF-8, found by the bootstrap and then while running, and an
/// order that is not; the good records around them are processed.
#[tokio::test]
async fn records_that_do_not_deserialize_go_to_the_dead_letter_topic_from_tasks_and_global_tables()
{
    let broker = TestBroker::start(&[]).await;
    global_topics_with_products(&broker, 0..2, 0).await;
    let client = broker.client().await;
    create_topic(&client, "dead-letters", 1).await;
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    let not_utf8 = |topic: &str, key: &str| {
        ProducerRecord::new(topic)
            .partition(0)
            .key(key.to_string())
            .value(vec![0xFF_u8, 0xFE])
            .timestamp(1_000)
    };
    producer
        .enqueue(not_utf8("products-global", "bad-at-start"))
        .await
        .unwrap();
    producer.flush().await;

    let mut config = StreamsConfig::new("dead-letters", &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    config.deserialization_exception_handler =
        DeserializationExceptionHandler::DeadLetterQueue("dead-letters".to_string());
    let streams = KafkaStreams::new(orders_with_products, config)
        .await
        .unwrap();
    let (stop, task) = start(streams);
    producer
        .enqueue(not_utf8("products-global", "bad-while-running"))
        .await
        .unwrap();
    producer
        .enqueue(not_utf8("orders-global", "bad-order"))
        .await
        .unwrap();
    producer.flush().await;
    produce_at(&broker, "orders-global", &[(0, "o1", "p1", 2_000)]).await;
    let joined = wait_for_strings(&broker, "enriched-global", 1).await;
    assert_eq!(
        joined,
        vec![("o1".to_string(), Some("p1/name1".to_string()))]
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead: BTreeSet<(String, Vec<u8>)> = fetch_all(&client, "dead-letters", 0)
            .await
            .into_iter()
            .map(|r| {
                let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                (key, r.value.unwrap().to_vec())
            })
            .collect();
        if dead.len() >= 3 || tokio::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expected: BTreeSet<(String, Vec<u8>)> = ["bad-at-start", "bad-while-running", "bad-order"]
        .iter()
        .map(|key| (key.to_string(), vec![0xFF, 0xFE]))
        .collect();
    assert_eq!(dead, expected);
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    assert_eq!(streams.metrics().dropped_deserialization_errors, 3);
    streams.close().await.unwrap();
    broker.stop().await;
}

/// Orders (4 partitions) joined with their customers (2 partitions) by the customer named in
/// the order: a foreign-key join needs no co-partitioning.
fn orders_with_customers() -> Result<Topology, weir_streams::Error> {
    let builder = StreamsBuilder::new();
    let orders = builder.table("fk-orders", StringSerde, Nullable(StringSerde));
    let customers = builder.table("fk-customers", StringSerde, Nullable(StringSerde));
    orders
        .join_foreign_key(&customers, String::clone, |customer, name| {
            format!("{customer}/{name}")
        })
        .to_stream()
        .to("fk-out", StringSerde, Nullable(StringSerde));
    builder.build()
}

/// The latest value per key of `fk-out` once it holds what `expected` says, in 30 s.
async fn wait_for_latest(broker: &TestBroker, expected: &BTreeMap<String, Option<String>>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let latest: BTreeMap<String, Option<String>> =
            read_strings(broker, "fk-out").await.into_iter().collect();
        if &latest == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fk-out: {latest:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A foreign-key join across two instances, with tables of 4 and 2 partitions: each
/// subscription reaches the task of its customer (the registration topic has the
/// customers' 2 partitions), each answer the task of its order (the response topic has 4).
/// A customer's update re-joins its orders wherever they are; an order that moves to a
/// missing customer loses its result.
#[tokio::test]
async fn a_foreign_key_join_spans_partitions_and_instances() {
    const APP: &str = "fk-join";
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    create_topic(&client, "fk-orders", 4).await;
    create_topic(&client, "fk-customers", 2).await;
    create_topic(&client, "fk-out", 1).await;
    let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    config.session_timeout = Duration::from_secs(6);
    let mut running = Vec::new();
    for _ in 0..2 {
        let streams = KafkaStreams::new(orders_with_customers, config.clone());
        running.push(start(streams.await.unwrap()));
    }
    wait_for_members(&broker, APP, 2).await;

    let customers: Vec<(String, String)> = (0..10)
        .map(|i| (format!("c{i}"), format!("name{i}")))
        .collect();
    let orders: Vec<(String, String)> = (0..40)
        .map(|i| (format!("o{i}"), format!("c{}", i % 10)))
        .collect();
    for (topic, pairs) in [("fk-customers", &customers), ("fk-orders", &orders)] {
        let records: Vec<(&str, Option<&str>)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect();
        produce_strings(&broker, topic, &records).await;
    }
    let mut expected: BTreeMap<String, Option<String>> = (0..40)
        .map(|i| (format!("o{i}"), Some(format!("c{0}/name{0}", i % 10))))
        .collect();
    wait_for_latest(&broker, &expected).await;

    // c3 is renamed; o0 moves to c3; o1 moves to c99, which does not exist.
    produce_strings(&broker, "fk-customers", &[("c3", Some("renamed"))]).await;
    produce_strings(
        &broker,
        "fk-orders",
        &[("o0", Some("c3")), ("o1", Some("c99"))],
    )
    .await;
    for order in [0, 3, 13, 23, 33] {
        expected.insert(format!("o{order}"), Some("c3/renamed".to_string()));
    }
    expected.insert("o1".to_string(), None);
    wait_for_latest(&broker, &expected).await;
    // c99 arrives: o1 joins it.
    produce_strings(&broker, "fk-customers", &[("c99", Some("late"))]).await;
    expected.insert("o1".to_string(), Some("c99/late".to_string()));
    wait_for_latest(&broker, &expected).await;

    for (stop, task) in running {
        stop.send(()).unwrap();
        task.await.unwrap().close().await.unwrap();
    }
    let admin = weir_client::admin::Admin::from_client(client.clone());
    let internal: Vec<String> = orders_with_customers()
        .unwrap()
        .internal_topics()
        .into_iter()
        .map(|topic| format!("{APP}-{}", topic.name))
        .collect();
    let names: Vec<&str> = internal.iter().map(String::as_str).collect();
    for (name, described) in admin.describe_topics(&names).await.unwrap() {
        let partitions = described.unwrap().partitions.len();
        let expected = if name.contains("REGISTRATION") { 2 } else { 4 };
        assert_eq!(partitions, expected, "{name}");
    }
    broker.stop().await;
}

/// The number at the end of a key such as `c7` or `o12`.
fn key_number(key: &str) -> i32 {
    key.trim_start_matches(char::is_alphabetic).parse().unwrap()
}

/// Orders (2 partitions) and customers (3 partitions) written by their key's number modulo
/// the partition count, not by the default partitioner: the foreign-key join places its
/// subscriptions and answers with the same rule (`TableJoined`), and the joined orders are
/// written with a partitioner of their own that multicasts `o0` and drops `o1`.
fn orders_with_partitioned_customers() -> Result<Topology, weir_streams::Error> {
    // The response topic has as many partitions as there are tasks (3, as in Kafka), more
    // than the orders: their partitioner names the partition of the orders' topic, where
    // the answers must go, not one computed from the count it is given.
    let orders_partitioner = |_: &str, key: &String, _: &(), _| Some(vec![key_number(key) % 2]);
    let customers_partitioner =
        |_: &str, key: &String, _: &(), partitions: i32| Some(vec![key_number(key) % partitions]);
    let builder = StreamsBuilder::new();
    let orders = builder.table("cp-orders", StringSerde, Nullable(StringSerde));
    let customers = builder.table("cp-customers", StringSerde, Nullable(StringSerde));
    let routed = |_: &str, key: &String, _: &Option<String>, partitions: i32| match key_number(key)
    {
        0 => Some((0..partitions).collect()),
        1 => Some(Vec::new()),
        n if n % 5 == 0 => None,
        n => Some(vec![n % partitions]),
    };
    orders
        .join_foreign_key_with(
            &customers,
            |_, customer: &String| customer.clone(),
            |customer, name| format!("{customer}/{name}"),
            TableJoined::with(orders_partitioner, customers_partitioner)
                .with_name("orders-customers"),
        )
        .to_stream()
        .to_with(
            "cp-routed",
            Produced::with(StringSerde, Nullable(StringSerde)).with_stream_partitioner(routed),
        );
    builder.build()
}

/// A foreign-key join of tables partitioned by a rule of their own finds every customer
/// (with the default partitioner, most subscriptions would reach a task without their
/// customer, and the inner join would emit nothing for them), and a sink's partitioner puts
/// each result where it says: on every partition, on none, by its rule, or by the default
/// partitioner.
#[tokio::test]
async fn stream_partitioners_place_a_foreign_key_joins_topics_and_a_sinks_records() {
    const APP: &str = "custom-partitioners";
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "cp-orders", 2).await;
    create_topic(&client, "cp-customers", 3).await;
    create_topic(&client, "cp-routed", 3).await;
    let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    let streams = KafkaStreams::new(orders_with_partitioned_customers, config.clone());
    let (stop, task) = start(streams.await.unwrap());

    let customers: Vec<(i32, String, String)> = (0..9)
        .map(|i| (i % 3, format!("c{i}"), format!("name{i}")))
        .collect();
    let orders: Vec<(i32, String, String)> = (0..30)
        .map(|i| (i % 2, format!("o{i}"), format!("c{}", i % 9)))
        .collect();
    for (topic, records) in [("cp-customers", &customers), ("cp-orders", &orders)] {
        let records: Vec<(i32, &str, &str, i64)> = records
            .iter()
            .map(|(partition, key, value)| (*partition, key.as_str(), value.as_str(), 1_000))
            .collect();
        produce_at(&broker, topic, &records).await;
    }

    // Where each order's result must land: o0 everywhere, o1 nowhere, a multiple of 5 by
    // the default partitioner (murmur2 of the key, as the Java client's), the rest by number.
    let mut expected: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for i in 0..30 {
        let key = format!("o{i}");
        let partitions = match i {
            0 => vec![0, 1, 2],
            1 => vec![],
            n if n % 5 == 0 => vec![weir_client::producer::partitioner::partition_for_key(
                key.as_bytes(),
                3,
            )],
            n => vec![n % 3],
        };
        for partition in partitions {
            let value = format!("c{0}/name{0}", i % 9);
            expected
                .entry(partition)
                .or_default()
                .insert(format!("{key}={value}"));
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut found: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
        for partition in 0..3 {
            for record in fetch_all(&client, "cp-routed", partition).await {
                let key = StringSerde.deserialize(&record.key.unwrap()).unwrap();
                let value = StringSerde.deserialize(&record.value.unwrap()).unwrap();
                found
                    .entry(partition)
                    .or_default()
                    .insert(format!("{key}={value}"));
            }
        }
        if found == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cp-routed: {found:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap().close().await.unwrap();

    // The named join's internal topics, with the partition counts of the tables they serve.
    let admin = weir_client::admin::Admin::from_client(client.clone());
    let names = [
        format!("{APP}-orders-customers-subscription-registration-topic"),
        format!("{APP}-orders-customers-subscription-response-topic"),
    ];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let described = admin.describe_topics(&names).await.unwrap();
    let counts: Vec<usize> = described
        .into_iter()
        .map(|(_, topic)| topic.unwrap().partitions.len())
        .collect();
    // Both have the customers' 3: the registration topic is co-partitioned with them, and
    // the response topic has one partition per task.
    assert_eq!(counts, [3, 3]);
    broker.stop().await;
}

/// A sink written with a partitioner needs its topic's partition count: a missing topic
/// refuses the start, naming it.
#[tokio::test]
async fn a_missing_topic_written_with_a_partitioner_refuses_the_start() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "cp-in", 1).await;
    let topology = || {
        let builder = StreamsBuilder::new();
        builder.stream("cp-in", StringSerde, StringSerde).to_with(
            "cp-nowhere",
            Produced::with(StringSerde, StringSerde)
                .with_stream_partitioner(|_: &str, _: &String, _: &String, _| None),
        );
        builder.build()
    };
    let mut config = StreamsConfig::new("cp-missing", &broker.addr.to_string());
    config.client = broker.config();
    let error = KafkaStreams::new(topology, config).await.err().unwrap();
    let message = error.to_string();
    assert!(message.contains("cp-nowhere"), "{message}");
    broker.stop().await;
}

/// Windows closed by the records a windowed aggregation has seen, not by the task's other
/// topics: a backlog rekeyed through a repartition topic is read from its source topic well
/// ahead of its repartitioned copies (a batch of up to 10,000 records), yet none of the
/// copies is late, with no grace at all (Kafka's processors keep their own observed stream
/// time).
#[tokio::test]
async fn a_rekeyed_backlog_is_not_late_for_its_windows() {
    const APP: &str = "rekeyed-windows";
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "clicks-backlog", 1).await;
    create_topic(&client, "clicks-per-user", 1).await;
    let window = Duration::from_secs(10);
    let topology = move || {
        let builder = StreamsBuilder::new();
        builder
            .stream("clicks-backlog", StringSerde, StringSerde)
            .group_by_with(
                |_, user| user.clone(),
                Grouped::with(StringSerde, StringSerde),
            )
            .windowed_by(weir_streams::TimeWindows::of_size_and_grace(
                window,
                Duration::ZERO,
            ))
            .count()
            .to_stream()
            .to(
                "clicks-per-user",
                weir_streams::TimeWindowedSerde::new(StringSerde, window),
                Nullable(I64Serde),
            );
        builder.build()
    };
    // 2,000 clicks one second apart, in order: 2,000 s of event time.
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for i in 0..2_000_i64 {
        let record = ProducerRecord::new("clicks-backlog")
            .key(format!("click{i}"))
            .value(format!("user{}", i % 5))
            .timestamp(1_000_000_000_000 + i * 1_000);
        producer.enqueue(record).await.unwrap();
    }
    producer.flush().await;

    let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    let (stop, task) = start(KafkaStreams::new(topology, config).await.unwrap());
    let repartition = format!("{APP}-KSTREAM-AGGREGATE-STATE-STORE-0000000001-repartition");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while committed_to(&broker, APP, "clicks-backlog", 1).await < 2_000
        || committed_to(&broker, APP, &repartition, 1).await < 2_000
    {
        assert!(tokio::time::Instant::now() < deadline, "not counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    let metrics = streams.metrics();
    streams.close().await.unwrap();
    assert_eq!(metrics.dropped_late, 0, "{metrics:?}");
    // Every click updated its window's count; each 10 s window holds two clicks of each
    // user, so its last count is 2.
    let client = broker.client().await;
    let outputs = fetch_all(&client, "clicks-per-user", 0).await;
    assert_eq!(outputs.len(), 2_000, "one update per click");
    let mut last = BTreeMap::new();
    for record in outputs {
        let count = I64Serde.deserialize(&record.value.unwrap()).unwrap();
        last.insert(record.key.unwrap(), count);
    }
    assert_eq!(last.len(), 1_000, "200 windows of 5 users");
    assert!(last.values().all(|count| *count == 2), "{last:?}");
    broker.stop().await;
}

/// The records of a repartition topic are deleted once committed (Kafka's purge, every
/// `repartition_purge_interval`), and the topic is created keeping records for ever, so
/// retention takes none from a stopped application.
#[tokio::test]
async fn committed_repartition_records_are_purged() {
    const APP: &str = "purged";
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "events", 1).await;
    create_topic(&client, "events-per-user", 1).await;
    let mut config = StreamsConfig::new(APP, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(50);
    config.repartition_purge_interval = Duration::from_millis(200);
    let (stop, task) = start(KafkaStreams::new(events_per_user, config).await.unwrap());
    let repartition = format!("{APP}-events-per-user-repartition");
    let admin = weir_client::admin::Admin::from_client(client.clone());
    let low_watermark = || async {
        let listed = admin
            .list_offsets(&[(
                (repartition.clone(), 0),
                weir_client::admin::OffsetSpec::Earliest,
            )])
            .await
            .unwrap();
        listed[0].1.as_ref().map_or(0, |listed| listed.offset)
    };
    // A trickle of events keeps the commits, at which purges happen, coming.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut produced = 0;
    while low_watermark().await < 100 {
        assert!(tokio::time::Instant::now() < deadline, "not purged");
        let events: Vec<(String, Option<String>)> = (produced..produced + 20)
            .map(|i| (format!("e{i}"), Some(format!("user{}", i % 3))))
            .collect();
        let events: Vec<(&str, Option<&str>)> = events
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        produce_strings(&broker, "events", &events).await;
        produced += 20;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let low = low_watermark().await;
    let committed = committed_to(&broker, APP, &repartition, 1).await;
    assert!(low <= committed, "purged {low}, committed {committed}");
    stop.send(()).unwrap();
    task.await.unwrap().close().await.unwrap();
    let configs = admin
        .describe_configs(&[weir_client::admin::ConfigResource::Topic(
            repartition.clone(),
        )])
        .await
        .unwrap();
    let retention = configs[0]
        .1
        .as_ref()
        .unwrap()
        .iter()
        .find(|entry| entry.name == "retention.ms")
        .and_then(|entry| entry.value.clone());
    assert_eq!(retention.as_deref(), Some("-1"));
    broker.stop().await;
}
