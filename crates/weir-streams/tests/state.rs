//! KafkaStreams with a state dir against an in-process Weir broker: tasks keep their stores in
//! redb with changelog checkpoints, and a restarted task restores only the changelog past
//! them.
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

use std::path::Path;
use std::time::Duration;

use common::{committed_to, start, wait_for_layout, word_counts};
use support::{TestBroker, create_topic};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_streams::{KafkaStreams, StreamsConfig};

/// Input partitions, so tasks.
const TASKS: i32 = 2;
/// Distinct words.
const KEYS: usize = 100;

/// Records `range` of the input: word `w{i % KEYS}`.
async fn produce_words(broker: &TestBroker, range: std::ops::Range<usize>) {
    produce_keyed(broker, range, |i| format!("w{}", i % KEYS)).await;
}

/// Records `range` of the input, record `i` with the key `key(i)`.
async fn produce_keyed(
    broker: &TestBroker,
    range: std::ops::Range<usize>,
    key: impl Fn(usize) -> String,
) {
    produce_keyed_at(broker, range, key, |_| None).await;
}

/// [`produce_keyed`], record `i` with the timestamp `timestamp(i)` (`None`: the producer's).
async fn produce_keyed_at(
    broker: &TestBroker,
    range: std::ops::Range<usize>,
    key: impl Fn(usize) -> String,
    timestamp: impl Fn(usize) -> Option<i64>,
) {
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for i in range {
        let mut record = ProducerRecord::new("words")
            .key(key(i))
            .value("x".to_string());
        if let Some(timestamp) = timestamp(i) {
            record = record.timestamp(timestamp);
        }
        producer.enqueue(record).await.unwrap();
    }
    producer.flush().await;
}

async fn setup(app: &str, state_dir: &Path) -> (TestBroker, StreamsConfig) {
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    create_topic(&client, "words", TASKS).await;
    create_topic(&client, "word-counts", 1).await;
    let mut config = StreamsConfig::new(app, &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    config.session_timeout = Duration::from_secs(2);
    config.state_dir = Some(state_dir.to_path_buf());
    (broker, config)
}

/// The input offsets the application committed, summed over the partitions.
async fn committed(broker: &TestBroker, app: &str) -> i64 {
    committed_to(broker, app, "words", TASKS).await
}

async fn wait_committed(broker: &TestBroker, app: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while committed(broker, app).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{app}: {} of {n} committed",
            committed(broker, app).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs an instance until `n` input records are committed, stops it and closes it; returns
/// its metrics and the counts it held.
async fn run_until_committed(
    broker: &TestBroker,
    config: &StreamsConfig,
    n: i64,
) -> (weir_streams::TaskMetrics, Vec<(String, i64)>) {
    run_app_until_committed(broker, config, n, word_counts, |streams| {
        streams
            .key_value_store::<String, i64>("word-counts")
            .unwrap()
            .all()
    })
    .await
}

/// Runs an instance of `topology` until `n` input records are committed, stops it, queries
/// it with `query` and closes it; returns its metrics and what the query found.
async fn run_app_until_committed<T>(
    broker: &TestBroker,
    config: &StreamsConfig,
    n: i64,
    topology: fn() -> Result<weir_streams::Topology, weir_streams::Error>,
    query: impl FnOnce(&KafkaStreams) -> T,
) -> (weir_streams::TaskMetrics, T) {
    let (stop, task) = start(KafkaStreams::new(topology, config.clone()).await.unwrap());
    wait_committed(broker, &config.application_id, n).await;
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    let metrics = streams.metrics();
    let found = query(&streams);
    streams.close().await.unwrap();
    (metrics, found)
}

fn exact(counts: &[(String, i64)], each: i64) {
    assert_eq!(counts.len(), KEYS, "{counts:?}");
    assert!(
        counts.iter().all(|(_, count)| *count == each),
        "every word {each} times: {counts:?}"
    );
}

/// The changelog records of the store, over every task.
async fn changelog_records(broker: &TestBroker, app: &str) -> i64 {
    let client = broker.client().await;
    let mut total = 0;
    for partition in 0..TASKS {
        total +=
            support::end_offset(&client, &format!("{app}-word-counts-changelog"), partition).await;
    }
    total
}

/// (a) A clean close leaves each task's state and checkpoint on disk: the next instance on
/// the same state dir loads them and reads nothing from the changelog.
#[tokio::test]
async fn a_restart_after_a_clean_close_restores_from_local_state_only() {
    const APP: &str = "state-clean";
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = setup(APP, dir.path()).await;
    produce_words(&broker, 0..1000).await;
    let (_, counts) = run_until_committed(&broker, &config, 1000).await;
    exact(&counts, 10);
    for task in 0..TASKS {
        assert!(
            dir.path()
                .join(APP)
                .join(task.to_string())
                .join("state.redb")
                .exists()
        );
    }

    produce_words(&broker, 1000..1500).await;
    let (metrics, counts) = run_until_committed(&broker, &config, 1500).await;
    exact(&counts, 15);
    assert_eq!(
        metrics.restored_from_changelog, 0,
        "nothing read from the changelog"
    );
    assert_eq!(
        metrics.restored_from_local_state, KEYS as u64,
        "one record per word"
    );
    assert_eq!(metrics.process_total, 500);
    broker.stop().await;
}

/// (b) After a crash (the instance dropped, nothing closed), the local state is at the last
/// commit: the next instance reads from the changelog only what the crashed one logged after
/// it, and the counts are within the at-least-once bound.
#[tokio::test]
async fn a_restart_after_a_crash_reads_only_the_changelog_after_the_last_commit() {
    const APP: &str = "state-crash";
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = setup(APP, dir.path()).await;
    produce_words(&broker, 0..1000).await;
    // Full batches of 64 commit at once; the last, partial one would wait a minute.
    let mut crashing = config.clone();
    crashing.commit_interval = Duration::from_secs(60);
    crashing.max_uncommitted_records = 64;
    let (_stop, task) = start(KafkaStreams::new(word_counts, crashing).await.unwrap());
    // Every record processed (its update logged), and the commits settled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while changelog_records(&broker, APP).await < 1000 {
        assert!(tokio::time::Instant::now() < deadline, "not processed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let uncommitted = 1000 - committed(&broker, APP).await;
    assert!(uncommitted > 0, "the last, partial batch was not committed");

    let (metrics, counts) = run_until_committed(&broker, &config, 1000).await;
    println!("{uncommitted} records uncommitted at the crash; after it: {metrics:?}");
    assert_eq!(counts.len(), KEYS);
    let total: i64 = counts.iter().map(|(_, count)| count).sum();
    assert!(counts.iter().all(|(_, c)| *c >= 10), "no loss: {counts:?}");
    assert!(
        total - 1000 <= uncommitted,
        "{} duplicates, {uncommitted} uncommitted",
        total - 1000
    );
    assert!(
        metrics.restored_from_changelog <= uncommitted as u64,
        "{} records restored from the changelog, {uncommitted} were logged after the last \
         commit",
        metrics.restored_from_changelog
    );
    assert!(metrics.restored_from_local_state > 0);
    assert_eq!(metrics.process_total, uncommitted as u64);
    broker.stop().await;
}

/// (c) A corrupt database is wiped and rebuilt from the whole changelog.
#[tokio::test]
async fn a_corrupt_local_state_is_wiped_and_restored_from_the_changelog() {
    const APP: &str = "state-corrupt";
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = setup(APP, dir.path()).await;
    produce_words(&broker, 0..1000).await;
    run_until_committed(&broker, &config, 1000).await;
    for task in 0..TASKS {
        let path = dir
            .path()
            .join(APP)
            .join(task.to_string())
            .join("state.redb");
        std::fs::write(&path, vec![0xA5_u8; 8192]).unwrap();
    }

    produce_words(&broker, 1000..1200).await;
    let (metrics, counts) = run_until_committed(&broker, &config, 1200).await;
    exact(&counts, 12);
    assert_eq!(metrics.restored_from_local_state, 0);
    assert_eq!(
        metrics.restored_from_changelog,
        changelog_records(&broker, APP).await as u64 - 200,
        "the whole changelog as it was at the restart"
    );
    broker.stop().await;
}

/// (d) A checkpoint beyond the changelog's end (the changelog was recreated) wipes the local
/// state, which is rebuilt from the whole changelog.
#[tokio::test]
async fn a_checkpoint_beyond_the_changelog_end_wipes_the_local_state() {
    const APP: &str = "state-ahead";
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = setup(APP, dir.path()).await;
    produce_words(&broker, 0..1000).await;
    run_until_committed(&broker, &config, 1000).await;
    {
        let path = dir.path().join(APP).join("0").join("state.redb");
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let checkpoints: redb::TableDefinition<'_, &str, i64> =
                redb::TableDefinition::new("checkpoints");
            let mut table = txn.open_table(checkpoints).unwrap();
            table
                .insert(format!("{APP}-word-counts-changelog").as_str(), 1_000_000)
                .unwrap();
        }
        txn.commit().unwrap();
    }

    produce_words(&broker, 1000..1200).await;
    let (metrics, counts) = run_until_committed(&broker, &config, 1200).await;
    exact(&counts, 12);
    let task_1_records = metrics.restored_from_local_state;
    assert!(
        task_1_records > 0 && task_1_records < KEYS as u64,
        "only task 1 kept its local state: {metrics:?}"
    );
    let client = broker.client().await;
    let task_0_changelog =
        support::end_offset(&client, &format!("{APP}-word-counts-changelog"), 0).await;
    assert!(
        metrics.restored_from_changelog > 0
            && metrics.restored_from_changelog <= task_0_changelog as u64,
        "task 0 restored its whole changelog: {metrics:?}"
    );
    broker.stop().await;
}

/// (e) A second instance on the same state dir is refused, naming the directory.
#[tokio::test]
async fn a_second_instance_on_the_same_state_dir_is_refused() {
    const APP: &str = "state-locked";
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = setup(APP, dir.path()).await;
    let first = KafkaStreams::new(word_counts, config.clone())
        .await
        .unwrap();
    let error = KafkaStreams::new(word_counts, config.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, weir_streams::Error::StateLocked { path } if path == &dir.path().join(APP)),
        "{error}"
    );
    assert!(error.to_string().contains("is locked by another instance"));
    // Released with the first instance.
    first.close().await.unwrap();
    KafkaStreams::new(word_counts, config)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    broker.stop().await;
}

/// A local state left behind by a task that then ran elsewhere is behind the changelog, not
/// wrong: when the task comes back, the instance loads it and reads the changelog from its
/// checkpoint, which holds what the other instance added.
#[tokio::test]
async fn a_task_back_on_an_instance_with_an_old_local_state_reads_what_it_missed() {
    const APP: &str = "state-return";
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (broker, config_a) = setup(APP, dir_a.path()).await;
    let mut config_b = config_a.clone();
    config_b.state_dir = Some(dir_b.path().to_path_buf());
    produce_words(&broker, 0..1000).await;
    run_until_committed(&broker, &config_a, 1000).await;
    produce_words(&broker, 1000..1500).await;
    let (metrics, counts) = run_until_committed(&broker, &config_b, 1500).await;
    exact(&counts, 15);
    assert_eq!(metrics.restored_from_local_state, 0, "a new state dir");
    assert_eq!(metrics.restored_from_changelog, 1000);

    produce_words(&broker, 1500..2000).await;
    let (metrics, counts) = run_until_committed(&broker, &config_a, 2000).await;
    exact(&counts, 20);
    assert_eq!(metrics.restored_from_local_state, KEYS as u64);
    assert_eq!(metrics.restored_from_changelog, 500, "what B logged");
    broker.stop().await;
}

/// Starts an instance, feeds it one input record and waits for its commit: the time this
/// takes, and the instance's metrics (its restore included).
async fn time_to_first_commit(
    broker: &TestBroker,
    config: &StreamsConfig,
    input: usize,
) -> (Duration, weir_streams::TaskMetrics) {
    let before = committed(broker, &config.application_id).await;
    let started = std::time::Instant::now();
    let (stop, task) = start(
        KafkaStreams::new(word_counts, config.clone())
            .await
            .unwrap(),
    );
    produce_words(broker, input..input + 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while committed(broker, &config.application_id).await < before + 1 {
        assert!(tokio::time::Instant::now() < deadline, "no commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    let metrics = streams.metrics();
    streams.close().await.unwrap();
    (elapsed, metrics)
}

/// Writes `records` changelog records of the count store of `app` to partition 0 (task 0),
/// in Kafka's changelog format as the store writes it (the serialized key; the 8-byte
/// timestamp, then the count), over `keys` keys: each key's count goes up by one per record.
async fn fill_changelog(broker: &TestBroker, app: &str, records: usize, keys: usize) {
    let changelog = format!("{app}-word-counts-changelog");
    create_topic(&broker.client().await, &changelog, TASKS).await;
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for i in 0..records {
        let mut value = 1_000_i64.to_be_bytes().to_vec();
        value.extend_from_slice(&((i / keys) as i64 + 1).to_be_bytes());
        let record = ProducerRecord::new(changelog.as_str())
            .partition(0)
            .key(format!("word-{:07}", i % keys))
            .value(value);
        producer.enqueue(record).await.unwrap();
    }
    producer.flush().await;
}

/// A measurement: the restore time of a task whose changelog holds 200,000 records, from the
/// changelog alone and from its local state (docs/benchmarks.md), with one record per key and
/// with ten per key (a changelog not compacted yet; the local state holds one per key).
/// `cargo test -p weir-streams --release --test state -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_restore_from_the_changelog_and_from_local_state() {
    const RECORDS: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = setup("state-measure", dir.path()).await;
    let mut input = 0;
    for keys in [RECORDS, RECORDS / 10] {
        let mut config = config.clone();
        config.application_id = format!("state-measure-{keys}");
        fill_changelog(&broker, &config.application_id, RECORDS, keys).await;
        let mut in_memory = config.clone();
        in_memory.state_dir = None;
        let mut run = async |config: &StreamsConfig| {
            input += 1;
            time_to_first_commit(&broker, config, input).await.1
        };
        let from_changelog = run(&in_memory).await;
        assert!(from_changelog.restored_from_changelog >= RECORDS as u64);
        let first = run(&config).await;
        assert_eq!(first.restored_from_local_state, 0);
        // Loaded into memory (the stores' entries all cached), then served where it is.
        let mut loading = config.clone();
        loading.store_cache_max_entries = None;
        let loaded = run(&loading).await;
        assert_eq!(loaded.restored_from_changelog, 0);
        assert!(loaded.restored_from_local_state >= keys as u64);
        let from_local = run(&config).await;
        assert_eq!(from_local.restored_from_changelog, 0);
        assert!(from_local.restored_from_local_state >= keys as u64);
        println!(
            "{RECORDS} changelog records over {keys} keys: restore from the changelog {} ms \
             ({} records), from the changelog into a new local state {} ms, from the local \
             state loaded into memory {} ms ({} records): {:.1}x, persistent stores opened on \
             the local state {} ms",
            from_changelog.restore_time_ms,
            from_changelog.restored_from_changelog,
            first.restore_time_ms,
            loaded.restore_time_ms,
            loaded.restored_from_local_state,
            from_changelog.restore_time_ms as f64 / loaded.restore_time_ms.max(1) as f64,
            from_local.restore_time_ms,
        );
    }
    broker.stop().await;
}

/// Clicks per key in tumbling windows of 10 ms kept 20 ms, in the store `clicks-per-window`.
fn windowed_clicks() -> Result<weir_streams::Topology, weir_streams::Error> {
    use weir_streams::{I64Serde, Materialized, StreamsBuilder, StringSerde, TimeWindows};
    let builder = StreamsBuilder::new();
    builder
        .stream("clicks", StringSerde, StringSerde)
        .group_by_key()
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
            10,
        )))
        .aggregate_with(
            || 0,
            |_, _, count: i64| count + 1,
            Materialized::as_store("clicks-per-window")
                .with_value_serde(I64Serde)
                .with_retention(Duration::from_millis(20)),
        );
    builder.build()
}

/// Produces `(partition, key, timestamp)` to `clicks`.
async fn produce_clicks(broker: &TestBroker, clicks: &[(i32, &str, i64)]) {
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for (partition, key, timestamp) in clicks {
        let record = ProducerRecord::new("clicks")
            .partition(*partition)
            .timestamp(*timestamp)
            .key(key.to_string())
            .value("x".to_string());
        producer.enqueue(record).await.unwrap();
    }
    producer.flush().await;
}

/// Runs an instance until `n` clicks are committed and stops it (not closed).
async fn run_clicks_until_committed(
    broker: &TestBroker,
    config: &StreamsConfig,
    n: i64,
) -> KafkaStreams {
    let (stop, task) = start(
        KafkaStreams::new(windowed_clicks, config.clone())
            .await
            .unwrap(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while committed_to(broker, &config.application_id, "clicks", TASKS).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} clicks committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap()
}

/// A window store queried by time range across the tasks of an instance against the broker;
/// windows its retention dropped are gone from the tasks' local state too, so a restart
/// does not load them.
#[tokio::test]
async fn window_queries_span_the_tasks_and_expired_windows_leave_the_local_state() {
    use weir_streams::{Window, Windowed};
    const APP: &str = "state-windows";
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = setup(APP, dir.path()).await;
    create_topic(&broker.client().await, "clicks", TASKS).await;
    let windowed = |key: &str, start| Windowed {
        key: key.to_string(),
        window: Window {
            start,
            end: start + 10,
        },
    };
    // Task 0's store reaches 20: [0, 10) expires (0 <= 20 - 20) and the sweep at 20 drops
    // it. Task 1's reaches 10.
    produce_clicks(
        &broker,
        &[
            (0, "a", 0),
            (0, "a", 10),
            (0, "a", 20),
            (1, "b", 5),
            (1, "b", 15),
        ],
    )
    .await;
    let streams = run_clicks_until_committed(&broker, &config, 5).await;
    let store = streams
        .window_store::<String, i64>("clicks-per-window")
        .unwrap();
    assert_eq!(
        store.fetch_key_range(&"a".to_string(), &"b".to_string(), 0, 100),
        vec![
            (windowed("b", 0), 1),
            (windowed("a", 10), 1),
            (windowed("b", 10), 1),
            (windowed("a", 20), 1),
        ]
    );
    assert_eq!(store.fetch_range(&"a".to_string(), 0, 15), vec![(10, 1)]);
    assert_eq!(store.fetch(&"b".to_string(), 0), Some(1));
    streams.close().await.unwrap();

    // 4 windows in the local state, not the 5 the changelog logged.
    produce_clicks(&broker, &[(0, "a", 40)]).await;
    let streams = run_clicks_until_committed(&broker, &config, 6).await;
    let metrics = streams.metrics();
    assert_eq!(metrics.restored_from_local_state, 4);
    assert_eq!(metrics.restored_from_changelog, 0);
    // At 40 the windows at 10 and 20 expire too.
    let store = streams
        .window_store::<String, i64>("clicks-per-window")
        .unwrap();
    assert_eq!(
        store.all(),
        vec![
            (windowed("b", 0), 1),
            (windowed("b", 10), 1),
            (windowed("a", 40), 1),
        ]
    );
    streams.close().await.unwrap();

    // A record to process, so that the tasks are created before the instance stops.
    produce_clicks(&broker, &[(0, "a", 41)]).await;
    let streams = run_clicks_until_committed(&broker, &config, 7).await;
    assert_eq!(streams.metrics().restored_from_local_state, 3);
    streams.close().await.unwrap();
    broker.stop().await;
}

/// Makes a task directory `task` under the application's directory holding a file, changed
/// `age` ago.
fn old_task_dir(app_dir: &Path, task: i32, age: Duration) -> std::path::PathBuf {
    let dir = app_dir.join(task.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.redb");
    std::fs::write(&file, b"old").unwrap();
    let then = std::time::SystemTime::now() - age;
    for path in [&file, &dir] {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(then)
            .unwrap();
    }
    dir
}

/// Kafka's state cleaner: a task directory this instance does not run, unchanged for
/// `state_cleanup_delay`, is deleted; one changed more recently stays, as do the tasks it
/// runs. `cleanup` wipes the application's local state before the instance runs, and is
/// refused once it runs tasks.
#[tokio::test]
async fn the_state_cleaner_deletes_unowned_task_dirs_and_cleanup_wipes_the_local_state() {
    const APP: &str = "state-cleaner";
    let dir = tempfile::tempdir().unwrap();
    let (broker, config) = setup(APP, dir.path()).await;
    let app_dir = dir.path().join(APP);
    let delay = config.state_cleanup_delay;
    assert_eq!(delay, Duration::from_secs(600), "Kafka's default");
    let stale = old_task_dir(&app_dir, 7, delay + Duration::from_secs(60));
    let recent = old_task_dir(&app_dir, 8, delay - Duration::from_secs(60));
    produce_words(&broker, 0..100).await;
    let (_, counts) = run_until_committed(&broker, &config, 100).await;
    exact(&counts, 1);
    assert!(!stale.exists(), "not run here and unchanged for the delay");
    assert!(recent.exists(), "changed within the delay");
    for task in 0..TASKS {
        assert!(app_dir.join(task.to_string()).join("state.redb").exists());
    }

    // Before it runs, an instance may wipe its local state: the tasks then restore from
    // their changelogs.
    let mut streams = KafkaStreams::new(word_counts, config.clone())
        .await
        .unwrap();
    streams.cleanup().await.unwrap();
    assert!(!recent.exists());
    assert!(!app_dir.join("0").exists() && !app_dir.join("1").exists());
    let (stop, task) = start(streams);
    produce_words(&broker, 100..200).await;
    wait_committed(&broker, APP, 200).await;
    stop.send(()).unwrap();
    let mut streams = task.await.unwrap();
    let metrics = streams.metrics();
    assert_eq!(metrics.restored_from_local_state, 0);
    assert_eq!(metrics.restored_from_changelog, KEYS as u64);
    assert!(matches!(
        streams.cleanup().await,
        Err(weir_streams::Error::IllegalState(_))
    ));
    assert!(app_dir.join("0").join("state.redb").exists());
    streams.close().await.unwrap();
    broker.stop().await;
}

/// A standby keeps its task's local state as the task would: after two instances with a
/// standby each are closed, either one restarted alone loads both tasks from its own state
/// dir and reads nothing from the changelogs (without the standby's copy, the task it did
/// not run would read its whole changelog).
#[tokio::test]
async fn a_standby_keeps_its_tasks_local_state() {
    const APP: &str = "state-standby";
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (broker, mut config_a) = setup(APP, dir_a.path()).await;
    config_a.num_standby_replicas = 1;
    let mut config_b = config_a.clone();
    config_b.state_dir = Some(dir_b.path().to_path_buf());
    let mut a = start(KafkaStreams::new(word_counts, config_a).await.unwrap());
    let mut b = start(
        KafkaStreams::new(word_counts, config_b.clone())
            .await
            .unwrap(),
    );
    produce_words(&broker, 0..1000).await;
    wait_committed(&broker, APP, 1000).await;
    let logged = changelog_records(&broker, APP).await;
    // Every changelog record is in one active task and one standby.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (a, b) = loop {
        let (stop, task) = a;
        stop.send(()).unwrap();
        let stopped_a = task.await.unwrap();
        let (stop, task) = b;
        stop.send(()).unwrap();
        let stopped_b = task.await.unwrap();
        let applied = stopped_a.metrics().standby_applied + stopped_b.metrics().standby_applied;
        let standbys = [stopped_a.standby_tasks(), stopped_b.standby_tasks()];
        if standbys.iter().all(|s| s.len() == 1) && i64::try_from(applied).unwrap() >= logged {
            break (stopped_a, stopped_b);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "standbys {standbys:?} applied {applied} of {logged}"
        );
        a = start(stopped_a);
        b = start(stopped_b);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Neither runs its loop now: closing one does not move its task to the other.
    a.close().await.unwrap();
    b.close().await.unwrap();

    produce_words(&broker, 1000..1200).await;
    let (metrics, counts) = run_until_committed(&broker, &config_b, 1200).await;
    exact(&counts, 12);
    assert_eq!(metrics.restored_from_changelog, 0, "{metrics:?}");
    assert_eq!(metrics.restored_from_local_state, KEYS as u64);
    broker.stop().await;
}

/// An instance restarted on a state dir whose checkpoints are within
/// `acceptable_recovery_lag` of the changelogs counts as caught up on those tasks (it
/// reports its checkpoints' lag in its first subscription): it takes its share back at
/// once, from local state, rather than getting warm-up replicas until a probing rebalance
/// (10 minutes away by default).
#[tokio::test]
async fn a_restarted_instance_with_close_checkpoints_takes_its_tasks_back_at_once() {
    const APP: &str = "state-caught-up";
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (broker, mut config_a) = setup(APP, dir_a.path()).await;
    config_a.client.client_id = "a".to_string();
    let mut config_b = config_a.clone();
    config_b.client.client_id = "b".to_string();
    config_b.state_dir = Some(dir_b.path().to_path_buf());
    // A ran both tasks, then B alone, which logged a little more than A holds.
    produce_words(&broker, 0..1000).await;
    run_until_committed(&broker, &config_a, 1000).await;
    produce_words(&broker, 1000..1200).await;
    let b = start(
        KafkaStreams::new(word_counts, config_b.clone())
            .await
            .unwrap(),
    );
    wait_committed(&broker, APP, 1200).await;

    let a = start(
        KafkaStreams::new(word_counts, config_a.clone())
            .await
            .unwrap(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let layout = wait_for_layout(&broker, APP, "words", 2, TASKS as usize).await;
        if layout["a"].len() == 1 && layout["b"].len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a did not take a task back: {layout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    produce_words(&broker, 1200..1400).await;
    wait_committed(&broker, APP, 1400).await;
    let mut counts = Vec::new();
    for (name, (stop, task)) in [("a", a), ("b", b)] {
        stop.send(()).unwrap();
        let streams = task.await.unwrap();
        assert_eq!(streams.tasks().len(), 1, "{name}");
        assert!(streams.warmup_tasks().is_empty(), "{name}");
        if name == "a" {
            let metrics = streams.metrics();
            assert!(metrics.restored_from_local_state > 0, "{metrics:?}");
            assert!(
                metrics.restored_from_changelog <= 200,
                "only what B logged: {metrics:?}"
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
    exact(&counts, 14);
    broker.stop().await;
}

/// Records `range` of the input over `keys` distinct keys: key `k{i % keys}`.
async fn produce_keys(broker: &TestBroker, range: std::ops::Range<usize>, keys: usize) {
    produce_keyed(broker, range, |i| format!("k{:05}", i % keys)).await;
}

/// A persistent store (the default with a state dir) holds more keys than its cache: after
/// a commit each task keeps at most `store_cache_max_entries` of them in memory, the others
/// are read from its local state when a record needs them, and the counts are exact. A
/// restart loads nothing: the stores are served from the local state where it is. With
/// `store_cache_max_entries = None` the same local state is loaded into memory whole.
#[tokio::test]
async fn a_persistent_store_outgrows_its_cache_and_restarts_without_loading() {
    const APP: &str = "state-persistent";
    const DISTINCT: usize = 2_000;
    const CACHE: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut config) = setup(APP, dir.path()).await;
    config.store_cache_max_entries = Some(CACHE);
    let bound = (CACHE * TASKS as usize) as u64;
    let all_counted = |counts: &[(String, i64)], each: i64| {
        assert_eq!(counts.len(), DISTINCT);
        assert!(
            counts.iter().all(|(_, count)| *count == each),
            "every key {each} times"
        );
    };

    produce_keys(&broker, 0..2 * DISTINCT, DISTINCT).await;
    let (metrics, counts) = run_until_committed(&broker, &config, 2 * DISTINCT as i64).await;
    all_counted(&counts, 2);
    // Each task has more keys than its cache: the cache is full, and no more.
    assert_eq!(
        metrics.persistent_entries_in_memory, bound,
        "entries in memory after the last commit: {metrics:?}"
    );

    produce_keys(&broker, 2 * DISTINCT..3 * DISTINCT, DISTINCT).await;
    let (metrics, counts) = run_until_committed(&broker, &config, 3 * DISTINCT as i64).await;
    all_counted(&counts, 3);
    assert_eq!(metrics.restored_from_changelog, 0, "{metrics:?}");
    assert_eq!(
        metrics.restored_from_local_state, DISTINCT as u64,
        "served from the local state, one entry per key"
    );
    assert_eq!(metrics.persistent_entries_in_memory, bound, "{metrics:?}");

    // The same local state, in memory.
    config.store_cache_max_entries = None;
    produce_keys(&broker, 3 * DISTINCT..4 * DISTINCT, DISTINCT).await;
    let (metrics, counts) = run_until_committed(&broker, &config, 4 * DISTINCT as i64).await;
    all_counted(&counts, 4);
    assert_eq!(metrics.restored_from_changelog, 0, "{metrics:?}");
    assert_eq!(metrics.restored_from_local_state, DISTINCT as u64);
    assert_eq!(
        metrics.persistent_entries_in_memory, 0,
        "nothing persistent"
    );
    broker.stop().await;
}

/// A day boundary (windows align to the epoch), so the tumbling window below holds every
/// record.
const DAY_START: i64 = 1_700_006_400_000;

/// Per key, a count in a day's tumbling window and one per session (an hour's gap).
fn windowed_counts() -> Result<weir_streams::Topology, weir_streams::Error> {
    use weir_streams::{SessionWindows, StreamsBuilder, StringSerde, TumblingWindows};

    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream("words", StringSerde, StringSerde)
        .group_by_key();
    grouped
        .windowed_by(TumblingWindows::of_size_with_no_grace(Duration::from_secs(
            86_400,
        )))
        .materialized_as("tumbling")
        .count();
    grouped
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(
            Duration::from_secs(3_600),
        ))
        .materialized_as("sessions")
        .count();
    builder.build()
}

/// Records `range` of the input: key `k{i % keys}`, timestamp `DAY_START + i`.
async fn produce_timed_keys(broker: &TestBroker, range: std::ops::Range<usize>, keys: usize) {
    let key = |i| format!("k{:05}", i % keys);
    produce_keyed_at(broker, range, key, |i| Some(DAY_START + i as i64)).await;
}

/// Every key's window and session, as (key, window start, window end, count).
type WindowedCounts = Vec<(String, i64, i64, i64)>;

/// Runs the windowed counts until `n` input records are committed; returns the metrics and
/// the tumbling windows' and the sessions' counts.
async fn run_windowed_until_committed(
    broker: &TestBroker,
    config: &StreamsConfig,
    n: i64,
) -> (weir_streams::TaskMetrics, WindowedCounts, WindowedCounts) {
    let flat = |found: Vec<(weir_streams::Windowed<String>, i64)>| {
        let mut found: WindowedCounts = found
            .into_iter()
            .map(|(w, count)| (w.key, w.window.start, w.window.end, count))
            .collect();
        found.sort();
        found
    };
    let query = |streams: &KafkaStreams| {
        let windows = streams.window_store::<String, i64>("tumbling").unwrap();
        let sessions = streams.session_store::<String, i64>("sessions").unwrap();
        (flat(windows.all()), flat(sessions.fetch_keys(..)))
    };
    let (metrics, (windows, sessions)) =
        run_app_until_committed(broker, config, n, windowed_counts, query).await;
    (metrics, windows, sessions)
}

/// Window and session stores are persistent too: with more windows and sessions than the
/// cache holds, a task reads a key's windows from its local state (a range of its keys),
/// the counts are exact, and a restart loads nothing.
#[tokio::test]
async fn persistent_window_and_session_stores_outgrow_their_cache_and_restart_without_loading() {
    const APP: &str = "state-persistent-windows";
    const DISTINCT: usize = 1_000;
    const CACHE: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut config) = setup(APP, dir.path()).await;
    config.store_cache_max_entries = Some(CACHE);
    // Two stores per task.
    let bound = (2 * CACHE * TASKS as usize) as u64;
    // Records i and i + DISTINCT (and i + 2 * DISTINCT) are key i's.
    let expect = |rounds: usize, windows: &WindowedCounts, sessions: &WindowedCounts| {
        assert_eq!(windows.len(), DISTINCT);
        assert_eq!(sessions.len(), DISTINCT);
        for (i, (window, session)) in windows.iter().zip(sessions).enumerate() {
            let key = format!("k{i:05}");
            let day_end = DAY_START + 86_400_000;
            assert_eq!(window, &(key.clone(), DAY_START, day_end, rounds as i64));
            let first = DAY_START + i as i64;
            let last = first + ((rounds - 1) * DISTINCT) as i64;
            assert_eq!(session, &(key, first, last, rounds as i64));
        }
    };

    produce_timed_keys(&broker, 0..2 * DISTINCT, DISTINCT).await;
    let (metrics, windows, sessions) =
        run_windowed_until_committed(&broker, &config, 2 * DISTINCT as i64).await;
    expect(2, &windows, &sessions);
    assert_eq!(
        metrics.persistent_entries_in_memory, bound,
        "entries in memory after the last commit: {metrics:?}"
    );

    produce_timed_keys(&broker, 2 * DISTINCT..3 * DISTINCT, DISTINCT).await;
    let (metrics, windows, sessions) =
        run_windowed_until_committed(&broker, &config, 3 * DISTINCT as i64).await;
    expect(3, &windows, &sessions);
    assert_eq!(metrics.restored_from_changelog, 0, "{metrics:?}");
    assert_eq!(
        metrics.restored_from_local_state,
        2 * DISTINCT as u64,
        "served from the local state: a window and a session per key"
    );
    assert_eq!(metrics.persistent_entries_in_memory, bound, "{metrics:?}");
    broker.stop().await;
}
