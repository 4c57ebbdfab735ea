//! Window and session stores of the processor API through the test driver: a processor that
//! counts per key in its own tumbling windows, a processor that merges sessions, their
//! retention, their changelogs in Kafka's byte formats, and the lookup errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::time::Duration;

use weir_streams::processor::{FixedKeyRecord, Record};
use weir_streams::{
    BytesSerde, Error, FixedKeyProcessor, FixedKeyProcessorContext, I64Serde, Nullable, Processor,
    ProcessorContext, SessionStore, StoreBuilder, Stores, StreamsBuilder, StringSerde,
    TestInputTopic, TestOutputTopic, TestRecord, Topology, TopologyTestDriver, Window, WindowStore,
    Windowed,
};

const SIZE: i64 = 10_000;
const RETENTION: i64 = 30_000;
const GAP: i64 = 5_000;

fn input() -> TestInputTopic<String, String> {
    TestInputTopic::new("input", StringSerde, StringSerde)
}

fn pipe(driver: &mut TopologyTestDriver, key: &str, value: &str, timestamp: i64) {
    driver
        .pipe_input(&input(), &key.to_string(), &value.to_string(), timestamp)
        .unwrap();
}

fn ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap())
}

fn windowed(key: &str, start: i64, end: i64) -> Windowed<String> {
    Windowed {
        key: key.to_string(),
        window: Window { start, end },
    }
}

/// Counts records per key in tumbling windows of [`SIZE`] kept in the window store
/// `windows`; forwards each window's count as `key@start`. A record whose value is `delete`
/// deletes its window instead (Kafka's `put(key, null, start)`).
#[derive(Default)]
struct WindowedCount {
    windows: Option<WindowStore<String, i64>>,
}

impl Processor<String, String, String, i64> for WindowedCount {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, i64>) -> Result<(), Error> {
        self.windows = Some(context.window_store("windows")?);
        Ok(())
    }

    fn process(
        &mut self,
        context: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), Error> {
        let windows = self.windows.as_ref().unwrap();
        let start = record.timestamp - record.timestamp.rem_euclid(SIZE);
        if record.value == "delete" {
            windows.put(record.key, None, start);
            return Ok(());
        }
        let count = windows.fetch(&record.key, start).unwrap_or(0) + 1;
        windows.put(record.key.clone(), count, start);
        context.forward(Record::new(
            format!("{}@{start}", record.key),
            count,
            record.timestamp,
        ))
    }
}

fn window_topology(logged: bool) -> Topology {
    let builder = StreamsBuilder::new();
    let store = Stores::window_store_builder(
        Stores::in_memory_window_store("windows", ms(RETENTION), ms(SIZE), false),
        StringSerde,
        I64Serde,
    );
    let store = if logged {
        store
    } else {
        store.with_logging_disabled()
    };
    assert_eq!(store.logging_enabled(), logged);
    builder.add_state_store(store);
    builder
        .stream("input", StringSerde, StringSerde)
        .process(WindowedCount::default, &["windows"])
        .to("counts", StringSerde, I64Serde);
    builder.build().unwrap()
}

#[test]
fn a_processor_counts_per_key_in_its_own_tumbling_windows() {
    let mut driver = TopologyTestDriver::new(window_topology(true));
    for (key, time) in [("a", 1_000), ("a", 5_000), ("b", 7_000), ("a", 12_000)] {
        pipe(&mut driver, key, "x", time);
    }
    // Out of order, within the retention: window 0 is still there.
    pipe(&mut driver, "a", "x", 3_000);
    let counts = TestOutputTopic::new("counts", StringSerde, I64Serde);
    let out: Vec<(String, i64)> = driver
        .read_output(&counts)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    let expected = [
        ("a@0", 1),
        ("a@0", 2),
        ("b@0", 1),
        ("a@10000", 1),
        ("a@0", 3),
    ];
    let expected: Vec<(String, i64)> = expected.iter().map(|&(k, v)| (k.to_string(), v)).collect();
    assert_eq!(out, expected);

    let a = "a".to_string();
    let b = "b".to_string();
    let view = driver.window_store::<String, i64>("windows").unwrap();
    assert_eq!(view.fetch_range(&a, 0, 20_000), vec![(0, 3), (10_000, 1)]);
    assert_eq!(
        view.backward_fetch(&a, 0, 20_000),
        vec![(10_000, 1), (0, 3)]
    );
    assert_eq!(view.fetch_range(&a, 1, 20_000), vec![(10_000, 1)]);
    assert_eq!(
        view.fetch_key_range(&a, &b, 0, 10_000),
        vec![
            (windowed("a", 0, SIZE), 3),
            (windowed("b", 0, SIZE), 1),
            (windowed("a", 10_000, 10_000 + SIZE), 1)
        ]
    );
    assert_eq!(view.fetch_all(10_000, 10_000).len(), 1);
    assert_eq!(view.all().len(), 3);

    // Latest start 40 s: windows starting at or before 10 s have expired.
    pipe(&mut driver, "a", "x", 45_000);
    assert_eq!(view.fetch_range(&a, 0, 50_000), vec![(40_000, 1)]);
    assert_eq!(view.fetch(&b, 0), None);
    // An out-of-order record of an expired window is dropped on put; one of a window still
    // retained (20 s > 40 s - 30 s) is kept.
    assert_eq!(driver.metrics().dropped_late, 0);
    pipe(&mut driver, "a", "x", 15_000);
    assert_eq!(view.fetch(&a, 10_000), None);
    assert_eq!(driver.metrics().dropped_late, 1);
    pipe(&mut driver, "a", "x", 25_000);
    assert_eq!(view.fetch(&a, 20_000), Some(1));
    // The expired windows were swept from the store, and the late one never stored: it holds
    // the two live windows alone (read as the key-value store of windowed keys it also is).
    let raw = driver
        .key_value_store::<Windowed<String>, i64>("windows")
        .unwrap();
    assert_eq!(raw.approximate_num_entries(), 2);
    assert_eq!(
        view.all(),
        vec![
            (windowed("a", 20_000, 20_000 + SIZE), 1),
            (windowed("a", 40_000, 40_000 + SIZE), 1)
        ]
    );
    // A `None` put deletes the window.
    pipe(&mut driver, "a", "delete", 41_000);
    assert_eq!(view.fetch_range(&a, 0, 50_000), vec![(20_000, 1)]);
    // The store's windowed keys are not a key-value store's to read.
    assert!(matches!(
        driver.session_store::<String, i64>("windows"),
        Err(Error::StoreKind { .. })
    ));
}

/// Logged, each put writes `windows-changelog` in Kafka's window store format: the key's
/// bytes, the window start (8 bytes, big-endian), a sequence number (4 bytes, 0), and the
/// value alone; a deletion a tombstone. The record's timestamp is the one processed.
#[test]
fn a_window_store_logs_puts_in_kafkas_window_store_format() {
    let topology = window_topology(true);
    assert_eq!(
        topology.changelog_topic("windows").as_deref(),
        Some("windows-changelog")
    );
    let mut driver = TopologyTestDriver::new(topology);
    pipe(&mut driver, "a", "x", 12_000);
    pipe(&mut driver, "a", "delete", 13_000);
    let changelog = TestOutputTopic::new("windows-changelog", BytesSerde, Nullable(BytesSerde));
    let mut key = b"a".to_vec();
    key.extend_from_slice(&10_000_i64.to_be_bytes());
    key.extend_from_slice(&0_u32.to_be_bytes());
    assert_eq!(
        driver.read_output(&changelog).unwrap(),
        vec![
            TestRecord::new(key.clone(), Some(1_i64.to_be_bytes().to_vec()), 12_000),
            TestRecord::new(key, None, 13_000),
        ]
    );
}

#[test]
fn a_window_store_with_logging_disabled_has_no_changelog() {
    let topology = window_topology(false);
    assert_eq!(topology.changelog_topic("windows"), None);
    assert!(topology.internal_topics().is_empty());
    let mut driver = TopologyTestDriver::new(topology);
    pipe(&mut driver, "a", "x", 12_000);
    let changelog: TestOutputTopic<Vec<u8>, Vec<u8>> =
        TestOutputTopic::new("windows-changelog", BytesSerde, BytesSerde);
    assert!(driver.is_output_empty(&changelog));
    let view = driver.window_store::<String, i64>("windows").unwrap();
    assert_eq!(view.fetch(&"a".to_string(), 10_000), Some(1));
}

/// Merges each record into the sessions of its key within [`GAP`] in the session store
/// `sessions`, counting records per session: the sessions found are removed and the merged
/// one put; forwards the merged session's count as `key@start-end`.
#[derive(Default)]
struct SessionCount {
    sessions: Option<SessionStore<String, i64>>,
}

impl Processor<String, String, String, i64> for SessionCount {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, i64>) -> Result<(), Error> {
        self.sessions = Some(context.session_store("sessions")?);
        Ok(())
    }

    fn process(
        &mut self,
        context: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), Error> {
        let sessions = self.sessions.as_ref().unwrap();
        let t = record.timestamp;
        let mut merged = Window { start: t, end: t };
        let mut count = 1;
        for (session, value) in sessions.find_sessions(&record.key, t - GAP, t + GAP) {
            merged.start = merged.start.min(session.window.start);
            merged.end = merged.end.max(session.window.end);
            count += value;
            sessions.remove(&session);
        }
        let key = format!("{}@{}-{}", record.key, merged.start, merged.end);
        sessions.put(
            Windowed {
                key: record.key,
                window: merged,
            },
            count,
        );
        context.forward(Record::new(key, count, t))
    }
}

fn session_topology() -> Topology {
    let builder = StreamsBuilder::new();
    builder.add_state_store(Stores::session_store_builder(
        Stores::persistent_session_store("sessions", ms(RETENTION)),
        StringSerde,
        I64Serde,
    ));
    builder
        .stream("input", StringSerde, StringSerde)
        .process(SessionCount::default, &["sessions"])
        .to("counts", StringSerde, I64Serde);
    builder.build().unwrap()
}

#[test]
fn a_processor_merges_sessions_in_a_session_store() {
    let mut driver = TopologyTestDriver::new(session_topology());
    for time in [0, 3_000, 20_000, 10_000, 14_000] {
        pipe(&mut driver, "a", "x", time);
    }
    pipe(&mut driver, "b", "x", 11_000);
    let a = "a".to_string();
    let view = driver.session_store::<String, i64>("sessions").unwrap();
    assert_eq!(
        view.fetch(&a),
        vec![
            (windowed("a", 0, 3_000), 2),
            (windowed("a", 10_000, 14_000), 2),
            (windowed("a", 20_000, 20_000), 1)
        ]
    );
    // 16 s joins [10 s, 14 s] and [20 s, 20 s].
    pipe(&mut driver, "a", "x", 16_000);
    assert_eq!(
        view.fetch(&a),
        vec![
            (windowed("a", 0, 3_000), 2),
            (windowed("a", 10_000, 20_000), 4)
        ]
    );
    assert_eq!(view.fetch_session(&a, 10_000, 20_000), Some(4));
    assert_eq!(view.fetch_session(&a, 10_000, 14_000), None);
    assert_eq!(
        view.find_sessions(&a, 4_000, 30_000),
        vec![(windowed("a", 10_000, 20_000), 4)]
    );
    let counts = TestOutputTopic::new("counts", StringSerde, I64Serde);
    let last = driver.read_output(&counts).unwrap().pop().unwrap();
    assert_eq!(
        last,
        TestRecord::new("a@10000-20000".to_string(), 4, 16_000)
    );

    // Latest end 40 s: sessions ending at or before 10 s have expired; one that ends there
    // is dropped on put.
    pipe(&mut driver, "b", "x", 40_000);
    assert_eq!(view.fetch(&a), vec![(windowed("a", 10_000, 20_000), 4)]);
    assert_eq!(view.fetch(&"b".to_string()).len(), 2);
    pipe(&mut driver, "c", "x", 10_000);
    assert!(view.fetch(&"c".to_string()).is_empty());
}

/// A session store logs Kafka's session key format (the key's bytes, the session's end,
/// then its start, 8 bytes big-endian each): a merge logs a tombstone per session removed,
/// then the merged session.
#[test]
fn a_session_store_logs_merges_in_kafkas_session_store_format() {
    let mut driver = TopologyTestDriver::new(session_topology());
    pipe(&mut driver, "a", "x", 1_000);
    pipe(&mut driver, "a", "x", 2_000);
    let key = |start: i64, end: i64| {
        let mut key = b"a".to_vec();
        key.extend_from_slice(&end.to_be_bytes());
        key.extend_from_slice(&start.to_be_bytes());
        key
    };
    let changelog = TestOutputTopic::new("sessions-changelog", BytesSerde, Nullable(I64Serde));
    assert_eq!(
        driver.read_output(&changelog).unwrap(),
        vec![
            TestRecord::new(key(1_000, 1_000), Some(1), 1_000),
            TestRecord::new(key(1_000, 1_000), None, 2_000),
            TestRecord::new(key(1_000, 2_000), Some(2), 2_000),
        ]
    );
}

type Look = Arc<dyn Fn(&ProcessorContext<'_, String, i64>) -> Result<(), Error> + Send + Sync>;

/// Asks for stores by the wrong name, kind or types in `init`.
struct Lookup(Look);

impl Processor<String, String, String, i64> for Lookup {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, i64>) -> Result<(), Error> {
        (self.0)(context)
    }

    fn process(
        &mut self,
        _context: &mut ProcessorContext<'_, String, i64>,
        _record: Record<String, String>,
    ) -> Result<(), Error> {
        Ok(())
    }
}

fn lookup(
    look: impl Fn(&ProcessorContext<'_, String, i64>) -> Result<(), Error> + Send + Sync + 'static,
) -> Error {
    let look: Look = Arc::new(look);
    let builder = StreamsBuilder::new();
    builder.add_state_store(Stores::window_store_builder(
        Stores::persistent_window_store("windows", ms(RETENTION), ms(SIZE), false),
        StringSerde,
        I64Serde,
    ));
    builder.add_state_store(Stores::session_store_builder(
        Stores::in_memory_session_store("sessions", ms(RETENTION)),
        StringSerde,
        I64Serde,
    ));
    builder.add_state_store(Stores::key_value_store_builder(
        Stores::in_memory_key_value_store("counts"),
        StringSerde,
        I64Serde,
    ));
    builder.add_state_store(Stores::window_store_builder(
        Stores::in_memory_window_store("unconnected", ms(RETENTION), ms(SIZE), false),
        StringSerde,
        I64Serde,
    ));
    builder.stream("input", StringSerde, StringSerde).process(
        move || Lookup(Arc::clone(&look)),
        &["windows", "sessions", "counts"],
    );
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    driver
        .pipe_input(&input(), &"a".to_string(), &String::new(), 0)
        .unwrap_err()
}

#[test]
fn window_and_session_store_lookups_refuse_wrong_names_kinds_and_types() {
    let error = lookup(|c| c.window_store::<String, i64>("unconnected").map(drop));
    assert!(
        matches!(&error, Error::StoreNotConnected { store, .. } if store == "unconnected"),
        "{error}"
    );
    let error = lookup(|c| c.session_store::<String, i64>("missing").map(drop));
    assert!(
        matches!(&error, Error::StoreNotConnected { store, .. } if store == "missing"),
        "{error}"
    );
    let error = lookup(|c| c.window_store::<String, String>("windows").map(drop));
    assert!(
        matches!(&error, Error::StoreType(store) if store == "windows"),
        "{error}"
    );
    let error = lookup(|c| c.session_store::<i64, i64>("sessions").map(drop));
    assert!(
        matches!(&error, Error::StoreType(store) if store == "sessions"),
        "{error}"
    );
    for error in [
        lookup(|c| c.session_store::<String, i64>("windows").map(drop)),
        lookup(|c| c.window_store::<String, i64>("sessions").map(drop)),
        lookup(|c| c.window_store::<String, i64>("counts").map(drop)),
        lookup(|c| {
            c.key_value_store::<Windowed<String>, i64>("windows")
                .map(drop)
        }),
    ] {
        assert!(matches!(error, Error::StoreKind { .. }), "{error}");
    }
    // The right lookups succeed.
    let ok = |look: fn(&ProcessorContext<'_, String, i64>) -> Result<(), Error>| {
        let error = lookup(move |c| {
            look(c)?;
            Err(Error::IllegalState("reached".to_string()))
        });
        assert!(matches!(error, Error::IllegalState(_)), "{error}");
    };
    ok(|c| c.window_store::<String, i64>("windows").map(drop));
    ok(|c| c.session_store::<String, i64>("sessions").map(drop));
}

/// Kafka's `Stores` refuses a retention below the window size; a store that retains
/// duplicates is not supported. Both are build errors naming the store.
#[test]
fn invalid_window_stores_are_refused_at_build_naming_the_store() {
    let build = |supplier| {
        let builder = StreamsBuilder::new();
        builder.add_state_store(Stores::window_store_builder(
            supplier,
            StringSerde,
            I64Serde,
        ));
        builder
            .stream("input", StringSerde, StringSerde)
            .process(WindowedCount::default, &["windows"]);
        builder.build().unwrap_err().to_string()
    };
    let message = build(Stores::in_memory_window_store(
        "windows",
        ms(SIZE - 1),
        ms(SIZE),
        false,
    ));
    assert!(
        message.contains("state store windows")
            && message.contains("no smaller than its window size"),
        "{message}"
    );
    let message = build(Stores::persistent_window_store(
        "windows",
        ms(RETENTION),
        ms(SIZE),
        true,
    ));
    assert!(
        message.contains("state store windows") && message.contains("retain"),
        "{message}"
    );
    let message = build(Stores::persistent_window_store(
        "windows",
        Duration::MAX,
        ms(SIZE),
        false,
    ));
    assert!(message.contains("state store windows"), "{message}");
}

/// Keeps each record's key and puts a one-record session per record through a
/// `FixedKeyProcessorContext`; forwards how many sessions the key has.
#[derive(Default)]
struct SessionsPerKey(Option<SessionStore<String, i64>>);

impl FixedKeyProcessor<String, String, i64> for SessionsPerKey {
    fn init(
        &mut self,
        context: &mut FixedKeyProcessorContext<'_, String, i64>,
    ) -> Result<(), Error> {
        assert!(matches!(
            context.window_store::<String, i64>("sessions"),
            Err(Error::StoreKind { .. })
        ));
        self.0 = Some(context.session_store("sessions")?);
        Ok(())
    }

    fn process(
        &mut self,
        context: &mut FixedKeyProcessorContext<'_, String, i64>,
        record: FixedKeyRecord<String, String>,
    ) -> Result<(), Error> {
        let sessions = self.0.as_ref().unwrap();
        let t = record.timestamp;
        let key = record.key().clone();
        sessions.put(windowed(&key, t, t), 1);
        let count = i64::try_from(sessions.fetch(&key).len()).unwrap();
        context.forward(record.with_value(count))
    }
}

#[test]
fn fixed_key_processors_open_session_stores_too() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(
        Stores::session_store_builder(
            Stores::in_memory_session_store("sessions", ms(RETENTION)),
            StringSerde,
            I64Serde,
        )
        .with_logging_disabled(),
    );
    builder
        .stream("input", StringSerde, StringSerde)
        .process_values(SessionsPerKey::default, &["sessions"])
        .to("counts", StringSerde, I64Serde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    for time in [1_000, 2_000, 2_000] {
        pipe(&mut driver, "a", "x", time);
    }
    let counts = TestOutputTopic::new("counts", StringSerde, I64Serde);
    let counts: Vec<i64> = driver
        .read_output(&counts)
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    // The same session put twice is one session.
    assert_eq!(counts, vec![1, 2, 2]);
}
