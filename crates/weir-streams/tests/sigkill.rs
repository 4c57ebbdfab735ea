//! An application killed with SIGKILL, a real process and not a dropped task, resumes with
//! correct totals: its successor restores the counts from the changelog and processes again
//! only what the killed one had not committed (at least once).
//!
//! The application runs in a child process: this test binary again, running only
//! `child_application`, which does nothing unless `WEIR_STREAMS_SIGKILL_CHILD` names the
//! broker. With `WEIR_STREAMS_SIGKILL_STATE_DIR` it keeps a state dir there, its count
//! a persistent store with a cache smaller than its keys: the kill then also leaves the local
//! state at an earlier commit, which the successor starts from. Beside the count, a session
//! count (a day's inactivity gap: one session per key) goes through a session store,
//! persistent too with a state dir, whose every record merges and replaces a session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

#[allow(unreachable_pub, reason = "written for weir-client's test crates")]
#[path = "../../weir-client/tests/support/mod.rs"]
mod support;

#[allow(dead_code, reason = "each test file uses some of the shared helpers")]
mod common;

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{committed_to, latest_counts, read_committed_counts};
use support::{TestBroker, create_topic};
use weir_client::ClientConfig;
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_streams::{
    I64Serde, KafkaStreams, Materialized, Nullable, ProcessingGuarantee, SessionWindows,
    StreamsBuilder, StreamsConfig, StringSerde, Topology,
};

const APP: &str = "sigkill-word-counts";
const INPUT: &str = "sigkill-words";
const OUTPUT: &str = "sigkill-word-counts";
/// The session counts, keyed by the session's key.
const SESSIONS: &str = "sigkill-session-counts";
const PARTITIONS: i32 = 2;
const KEYS: usize = 20;
const CHILD_ENV: &str = "WEIR_STREAMS_SIGKILL_CHILD";
const STATE_DIR_ENV: &str = "WEIR_STREAMS_SIGKILL_STATE_DIR";
/// Set: the child runs exactly once (`ProcessingGuarantee::ExactlyOnceV2`).
const EXACTLY_ONCE_ENV: &str = "WEIR_STREAMS_SIGKILL_EXACTLY_ONCE";

fn topology() -> Result<Topology, weir_streams::Error> {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream(INPUT, StringSerde, StringSerde)
        .group_by_key();
    grouped
        .count_with(Materialized::as_store("counts"))
        .to_stream()
        .to(OUTPUT, StringSerde, Nullable(I64Serde));
    grouped
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(
            Duration::from_secs(86_400),
        ))
        .materialized_as("session-counts")
        .count()
        .to_stream()
        // A merged session's tombstone comes before its successor's count.
        .filter(|_, count| count.is_some())
        .map(|session, count| (session.key, count))
        .to(SESSIONS, StringSerde, Nullable(I64Serde));
    builder.build()
}

/// The application, in the child process: counts until killed.
#[test]
#[ignore = "the child process of an_application_killed_with_sigkill_resumes_with_correct_totals"]
fn child_application() {
    let Ok(bootstrap) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = StreamsConfig::new(APP, &bootstrap);
        config.client = ClientConfig {
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::new(&bootstrap)
        };
        // Small batches commit often, so the kill lands between commits with a few
        // records processed and not committed.
        config.max_uncommitted_records = 25;
        config.commit_interval = Duration::from_millis(200);
        config.session_timeout = Duration::from_secs(2);
        if let Ok(dir) = std::env::var(STATE_DIR_ENV) {
            config.state_dir = Some(dir.into());
            // Ten keys per task, three cached: lookups go to the local state.
            config.store_cache_max_entries = Some(3);
        }
        if std::env::var(EXACTLY_ONCE_ENV).is_ok() {
            config.processing_guarantee = ProcessingGuarantee::ExactlyOnceV2;
            config.commit_interval = Duration::from_millis(100);
        }
        let mut streams = KafkaStreams::new(topology, config).await.unwrap();
        streams.run_until(std::future::pending()).await.unwrap();
    });
}

/// A child process running the application; killed with SIGKILL when dropped.
struct Application(Child);

impl Application {
    fn start(bootstrap: &str, state_dir: Option<&std::path::Path>) -> Self {
        Self::start_with(bootstrap, state_dir, false)
    }

    fn start_with(
        bootstrap: &str,
        state_dir: Option<&std::path::Path>,
        exactly_once: bool,
    ) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["child_application", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ENV, bootstrap);
        if let Some(dir) = state_dir {
            command.env(STATE_DIR_ENV, dir);
        }
        if exactly_once {
            command.env(EXACTLY_ONCE_ENV, "1");
        }
        Self(command.spawn().unwrap())
    }

    fn kill(mut self) {
        // `Child::kill` is SIGKILL on Unix: no flush, no commit, no leaving the group.
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Application {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Records keep coming while the application runs, so it is killed mid-stream: KEYS
/// records (one per key) every 20 ms, so every key ends with the same count. Returns how many
/// were written, the switch that stops the writer, and the writer.
async fn keep_writing(
    broker: &TestBroker,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicBool>,
    tokio::task::JoinHandle<()>,
) {
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    let produced = Arc::new(AtomicUsize::new(0));
    let producing = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let (produced, producing) = (Arc::clone(&produced), Arc::clone(&producing));
        async move {
            while producing.load(Ordering::SeqCst) {
                for key in 0..KEYS {
                    let record = ProducerRecord::new(INPUT).key(format!("w{key}")).value("x");
                    producer.send(record).await.unwrap();
                    produced.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    (produced, producing, writer)
}

/// The offsets the application committed on the input, summed over its partitions.
async fn committed(broker: &TestBroker) -> i64 {
    committed_to(broker, APP, INPUT, PARTITIONS).await
}

/// Waits until `condition` holds, for at most 60 s.
async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_killed_with_sigkill_resumes_with_correct_totals() {
    killed_and_resumed(None).await;
}

/// The same with a state dir: the count is a persistent store larger than its cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_with_persistent_stores_killed_with_sigkill_resumes_with_correct_totals() {
    let dir = tempfile::tempdir().unwrap();
    killed_and_resumed(Some(dir.path())).await;
}

async fn killed_and_resumed(state_dir: Option<&std::path::Path>) {
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    create_topic(&client, INPUT, PARTITIONS).await;
    create_topic(&client, OUTPUT, 1).await;
    create_topic(&client, SESSIONS, 1).await;
    let bootstrap = broker.addr.to_string();

    let (produced, producing, writer) = keep_writing(&broker).await;

    let first = Application::start(&bootstrap, state_dir);
    wait_until("the first application commits 300 records", || async {
        committed(&broker).await >= 300
    })
    .await;
    // Written before the kill: the most the application can have processed.
    let written_before_kill = produced.load(Ordering::SeqCst) as i64;
    first.kill();
    let committed_at_kill = committed(&broker).await;
    let uncommitted = written_before_kill - committed_at_kill;

    let second = Application::start(&bootstrap, state_dir);
    tokio::time::sleep(Duration::from_secs(1)).await;
    producing.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    let total = produced.load(Ordering::SeqCst) as i64;
    wait_until("the second application commits every record", || async {
        committed(&broker).await == total
            && latest_counts(&broker, OUTPUT).await.values().sum::<i64>() >= total
            && latest_counts(&broker, SESSIONS).await.values().sum::<i64>() >= total
    })
    .await;
    second.kill();

    // The count and the session count, each on its own: the same bounds.
    for output in [OUTPUT, SESSIONS] {
        let counts = latest_counts(&broker, output).await;
        let truth = total / KEYS as i64;
        assert_eq!(counts.len(), KEYS, "{output}");
        assert!(
            counts.values().all(|count| *count >= truth),
            "{output}: no loss: {truth} records per key, counted {counts:?}"
        );
        let duplicates = counts.values().sum::<i64>() - total;
        assert!(
            duplicates <= uncommitted,
            "{output}: {duplicates} records counted twice, at most {uncommitted} were \
             uncommitted at the kill ({committed_at_kill} committed): {counts:?}"
        );
        println!(
            "{output}: {total} records, {committed_at_kill} committed at the kill, \
             {duplicates} counted twice (bound {uncommitted})"
        );
    }
    broker.stop().await;
}

/// Exactly once: an application killed with SIGKILL mid-stream, twice, and resumed counts
/// each record once. A `read_committed` consumer of the counts sees, per key, 1, 2, 3...
/// with no value repeated or skipped (at least once repeats the counts of the records
/// processed again), ending at the number of records of the key; the session counts too.
/// The killed instance's open transaction is aborted by its timeout (10 s), which its
/// successor's restore and offset fetch wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_application_killed_with_sigkill_counts_each_record_once() {
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "1000")]).await;
    let client = broker.client().await;
    create_topic(&client, INPUT, PARTITIONS).await;
    create_topic(&client, OUTPUT, 1).await;
    create_topic(&client, SESSIONS, 1).await;
    let bootstrap = broker.addr.to_string();
    let (produced, producing, writer) = keep_writing(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    for (round, at_least) in [(0, 200), (1, 600)] {
        // One run in memory, one with a state dir: both restore from what was committed.
        let state_dir = (round == 1).then(|| dir.path());
        let application = Application::start_with(&bootstrap, state_dir, true);
        wait_until("the application commits records", || async {
            committed(&broker).await >= at_least
        })
        .await;
        application.kill();
    }
    let last = Application::start_with(&bootstrap, Some(dir.path()), true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    producing.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    let total = produced.load(Ordering::SeqCst) as i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while committed(&broker).await < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every record committed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last.kill();
    let truth = total / KEYS as i64;
    for output in [OUTPUT, SESSIONS] {
        let mut per_key: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
        for (key, count) in read_committed_counts(&broker, output).await {
            per_key.entry(key).or_default().push(count);
        }
        assert_eq!(per_key.len(), KEYS, "{output}");
        for (key, counts) in &per_key {
            let expected: Vec<i64> = (1..=truth).collect();
            assert!(
                counts == &expected,
                "{output} {key}: each of {truth} records counted once, read {counts:?}"
            );
        }
    }
    broker.stop().await;
}
