//! The processor API through the test driver: processors with state stores, stream-time and
//! wall-clock punctuation, cancellation, and processors inside DSL topologies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use weir_streams::processor::{FixedKeyRecord, Record, RecordMetadata};
use weir_streams::{
    Cancellable, Error, FixedKeyProcessor, FixedKeyProcessorContext, I64Serde, KeyValueStore,
    Processor, ProcessorContext, PunctuationType, Stores, StreamsBuilder, StringSerde,
    TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver,
};

fn input() -> TestInputTopic<String, String> {
    TestInputTopic::new("input", StringSerde, StringSerde)
}

fn totals() -> TestOutputTopic<String, i64> {
    TestOutputTopic::new("totals", StringSerde, I64Serde)
}

fn pipe(driver: &mut TopologyTestDriver, key: &str, timestamp: i64) {
    driver
        .pipe_input(&input(), &key.to_string(), &String::new(), timestamp)
        .unwrap();
}

fn records(records: &[(&str, i64, i64)]) -> Vec<TestRecord<String, i64>> {
    records
        .iter()
        .map(|&(k, v, t)| TestRecord::new(k.to_string(), v, t))
        .collect()
}

/// Counts records per key in the store `counts`; every 10 s of stream time, emits every
/// key's total with the punctuation's time.
#[derive(Default)]
struct CountPerKey {
    counts: Option<KeyValueStore<String, i64>>,
}

impl Processor<String, String, String, i64> for CountPerKey {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, i64>) -> Result<(), Error> {
        let counts = context.key_value_store::<String, i64>("counts")?;
        self.counts = Some(counts.clone());
        context.schedule(
            Duration::from_secs(10),
            PunctuationType::StreamTime,
            move |time, context| {
                for (key, count) in counts.all() {
                    context.forward(Record::new(key, count, time))?;
                }
                Ok(())
            },
        )?;
        Ok(())
    }

    fn process(
        &mut self,
        _context: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), Error> {
        let counts = self.counts.as_ref().unwrap();
        let count = counts.get(&record.key).unwrap_or(0) + 1;
        counts.put(record.key, count);
        Ok(())
    }
}

fn counting_topology() -> weir_streams::Topology {
    let builder = StreamsBuilder::new();
    builder.add_state_store(Stores::key_value_store_builder(
        Stores::in_memory_key_value_store("counts"),
        StringSerde,
        I64Serde,
    ));
    builder
        .stream("input", StringSerde, StringSerde)
        .process(CountPerKey::default, &["counts"])
        .to("totals", StringSerde, I64Serde);
    builder.build().unwrap()
}

#[test]
fn counts_per_key_in_a_store_and_emits_totals_every_ten_seconds_of_stream_time() {
    let mut driver = TopologyTestDriver::new(counting_topology());
    // Stream-time schedules are aligned to 0: the first record punctuates at once.
    pipe(&mut driver, "a", 1_000);
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("a", 1, 1_000)])
    );
    pipe(&mut driver, "b", 5_000);
    pipe(&mut driver, "a", 9_999);
    assert!(driver.is_output_empty(&totals()));
    pipe(&mut driver, "a", 10_000);
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("a", 3, 10_000), ("b", 1, 10_000)])
    );
    // An advance over several intervals (20 s and 30 s missed) punctuates once, and the
    // schedule stays on multiples of 10 s: the next is at 40 s.
    pipe(&mut driver, "b", 35_000);
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("a", 3, 35_000), ("b", 2, 35_000)])
    );
    pipe(&mut driver, "c", 39_999);
    assert!(driver.is_output_empty(&totals()));
    pipe(&mut driver, "c", 40_000);
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("a", 3, 40_000), ("b", 2, 40_000), ("c", 2, 40_000)])
    );
    // The processor's store reads through the driver like a DSL store.
    let store = driver.key_value_store::<String, i64>("counts").unwrap();
    assert_eq!(store.get(&"c".to_string()), Some(2));
    assert_eq!(store.approximate_num_entries(), 3);
}

#[test]
fn stream_time_punctuation_fires_once_per_advance_and_not_on_equal_or_older_timestamps() {
    let mut driver = TopologyTestDriver::new(counting_topology());
    pipe(&mut driver, "a", 10_000);
    assert_eq!(driver.read_output(&totals()).unwrap().len(), 1);
    // The same time again, and an older one: stream time does not advance.
    pipe(&mut driver, "a", 10_000);
    pipe(&mut driver, "a", 3_000);
    assert!(driver.is_output_empty(&totals()));
    // 100 intervals at once: one punctuation.
    pipe(&mut driver, "a", 1_010_000);
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("a", 4, 1_010_000)])
    );
    pipe(&mut driver, "a", 1_019_999);
    assert!(driver.is_output_empty(&totals()));
    pipe(&mut driver, "a", 1_020_000);
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("a", 6, 1_020_000)])
    );
}

#[test]
fn no_stream_time_punctuation_before_the_first_record() {
    let mut driver = TopologyTestDriver::new(counting_topology());
    driver
        .advance_wall_clock_time(Duration::from_secs(60))
        .unwrap();
    assert!(driver.is_output_empty(&totals()));
    // A record with an invalid timestamp is skipped and does not start stream time.
    pipe(&mut driver, "a", -5);
    assert!(driver.is_output_empty(&totals()));
    assert_eq!(driver.stream_time(), -1);
}

/// Emits ("tick", wall-clock time) every 5 s of wall-clock time, and ("seen", wall-clock time)
/// for each record.
struct Ticker;

impl Processor<String, String, String, i64> for Ticker {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, i64>) -> Result<(), Error> {
        context.schedule(
            Duration::from_secs(5),
            PunctuationType::WallClockTime,
            |time, context| {
                assert_eq!(time, context.current_system_time_ms());
                assert!(context.record_metadata().is_none());
                context.forward(Record::new("tick".to_string(), time, time))
            },
        )?;
        Ok(())
    }

    fn process(
        &mut self,
        context: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), Error> {
        let now = context.current_system_time_ms();
        context.forward(record.with_key("seen".to_string()).with_value(now))
    }
}

fn ticker_topology() -> weir_streams::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", StringSerde, StringSerde)
        .process(|| Ticker, &[])
        .to("totals", StringSerde, I64Serde);
    builder.build().unwrap()
}

#[test]
fn wall_clock_punctuation_follows_the_mocked_clock() {
    let mut driver = TopologyTestDriver::new(ticker_topology()).with_initial_wall_clock_time(1_000);
    // Aligned to the time of scheduling: the first tick is one interval after it.
    driver
        .advance_wall_clock_time(Duration::from_secs(4))
        .unwrap();
    assert!(driver.is_output_empty(&totals()));
    driver
        .advance_wall_clock_time(Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("tick", 6_000, 6_000)])
    );
    // Records neither advance the wall clock nor fire wall-clock punctuations.
    pipe(&mut driver, "k", 100_000);
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("seen", 6_000, 100_000)])
    );
    // Twelve seconds at once: one tick, and the schedule keeps its 5-s steps from 6 s.
    driver
        .advance_wall_clock_time(Duration::from_secs(12))
        .unwrap();
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("tick", 18_000, 18_000)])
    );
    driver
        .advance_wall_clock_time(Duration::from_millis(2_999))
        .unwrap();
    assert!(driver.is_output_empty(&totals()));
    driver
        .advance_wall_clock_time(Duration::from_millis(1))
        .unwrap();
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("tick", 21_000, 21_000)])
    );
    assert_eq!(driver.wall_clock_time(), 21_000);
}

/// Ticks every second of wall-clock time until a record with key "stop" cancels it from
/// `process`, or its third tick cancels it from the punctuator.
struct Cancelling {
    from_punctuator: bool,
    cancellable: Arc<Mutex<Option<Cancellable>>>,
}

impl Processor<String, String, String, i64> for Cancelling {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, i64>) -> Result<(), Error> {
        let slot = Arc::clone(&self.cancellable);
        let from_punctuator = self.from_punctuator;
        let mut ticks = 0;
        let cancellable = context.schedule(
            Duration::from_secs(1),
            PunctuationType::WallClockTime,
            move |time, context| {
                ticks += 1;
                if from_punctuator && ticks == 3 {
                    slot.lock().as_ref().unwrap().cancel();
                }
                context.forward(Record::new("tick".to_string(), ticks, time))
            },
        )?;
        *self.cancellable.lock() = Some(cancellable);
        Ok(())
    }

    fn process(
        &mut self,
        _context: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), Error> {
        if record.key == "stop" {
            self.cancellable.lock().as_ref().unwrap().cancel();
        }
        Ok(())
    }
}

fn cancelling_driver(from_punctuator: bool) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", StringSerde, StringSerde)
        .process(
            move || Cancelling {
                from_punctuator,
                cancellable: Arc::new(Mutex::new(None)),
            },
            &[],
        )
        .to("totals", StringSerde, I64Serde);
    TopologyTestDriver::new(builder.build().unwrap()).with_initial_wall_clock_time(0)
}

#[test]
fn a_cancelled_punctuation_does_not_fire_again() {
    let mut driver = cancelling_driver(false);
    driver
        .advance_wall_clock_time(Duration::from_secs(1))
        .unwrap();
    driver
        .advance_wall_clock_time(Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("tick", 1, 1_000), ("tick", 2, 2_000)])
    );
    pipe(&mut driver, "stop", 0);
    driver
        .advance_wall_clock_time(Duration::from_secs(10))
        .unwrap();
    assert!(driver.is_output_empty(&totals()));
}

#[test]
fn a_punctuator_can_cancel_itself() {
    let mut driver = cancelling_driver(true);
    for _ in 0..5 {
        driver
            .advance_wall_clock_time(Duration::from_secs(1))
            .unwrap();
    }
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("tick", 1, 1_000), ("tick", 2, 2_000), ("tick", 3, 3_000)])
    );
}

/// Keeps the key, replaces the value by its length, and records the input's coordinates.
struct Length {
    seen: Arc<Mutex<Vec<Option<RecordMetadata>>>>,
}

impl FixedKeyProcessor<String, String, i64> for Length {
    fn process(
        &mut self,
        context: &mut FixedKeyProcessorContext<'_, String, i64>,
        record: FixedKeyRecord<String, String>,
    ) -> Result<(), Error> {
        self.seen.lock().push(context.record_metadata().cloned());
        let length = record.value.len() as i64;
        context.forward(record.with_value(length))
    }
}

#[test]
fn processors_feed_dsl_operators_and_topics() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let shared = Arc::clone(&seen);
    let lengths = builder
        .stream("input", StringSerde, StringSerde)
        .process_values(
            move || Length {
                seen: Arc::clone(&shared),
            },
            &[],
        );
    lengths
        .filter(|_, length| *length > 0)
        .group_by_key()
        .count()
        .to_stream()
        .to(
            "non-empty-counts",
            StringSerde,
            weir_streams::Nullable(I64Serde),
        );
    lengths.to("totals", StringSerde, I64Serde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    for (key, value, timestamp) in [("a", "xyz", 5), ("a", "", 6), ("b", "q", 7), ("a", "pq", 8)] {
        driver
            .pipe_input(&input(), &key.to_string(), &value.to_string(), timestamp)
            .unwrap();
    }
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("a", 3, 5), ("a", 0, 6), ("b", 1, 7), ("a", 2, 8)])
    );
    let counts = TestOutputTopic::new("non-empty-counts", StringSerde, I64Serde);
    assert_eq!(
        driver.read_output(&counts).unwrap(),
        records(&[("a", 1, 5), ("b", 1, 7), ("a", 2, 8)])
    );
    let seen = seen.lock();
    assert_eq!(seen.len(), 4);
    let last = seen[3].as_ref().unwrap();
    assert_eq!(
        (last.topic.as_str(), last.partition, last.offset),
        ("input", 0, 3)
    );
}

/// Forwards each record downstream and, every 10 s of stream time, a ("punctuation", time)
/// record, so the downstream processor sees both kinds.
struct Upstream;

impl Processor<String, String, String, String> for Upstream {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, String>) -> Result<(), Error> {
        context.schedule(
            Duration::from_secs(10),
            PunctuationType::StreamTime,
            |time, context| {
                context.forward(Record::new("punctuation".to_string(), String::new(), time))
            },
        )?;
        Ok(())
    }

    fn process(
        &mut self,
        context: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), Error> {
        context.forward(record)
    }
}

/// Emits whether each record came from an input record (1) or a punctuation (0).
struct HasMetadata;

impl Processor<String, String, String, i64> for HasMetadata {
    fn process(
        &mut self,
        context: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), Error> {
        let from_input = i64::from(context.record_metadata().is_some());
        context.forward(record.with_value(from_input))
    }
}

#[test]
fn punctuation_outputs_go_downstream_without_record_metadata() {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", StringSerde, StringSerde)
        .process(|| Upstream, &[])
        .process(|| HasMetadata, &[])
        .to("totals", StringSerde, I64Serde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    pipe(&mut driver, "k", 12_000);
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("k", 1, 12_000), ("punctuation", 0, 12_000)])
    );
}

#[test]
fn a_processor_naming_a_missing_store_is_refused_at_build() {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", StringSerde, StringSerde)
        .process(CountPerKey::default, &["counts"])
        .to("totals", StringSerde, I64Serde);
    let error = builder.build().unwrap_err();
    assert!(matches!(error, Error::InvalidTopology(_)));
    let message = error.to_string();
    assert!(
        message.contains("KSTREAM-PROCESSOR-0000000001") && message.contains("counts"),
        "{message}"
    );
}

#[test]
fn a_store_not_named_by_the_processor_is_not_reachable() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(Stores::key_value_store_builder(
        Stores::in_memory_key_value_store("counts"),
        StringSerde,
        I64Serde,
    ));
    builder
        .stream("input", StringSerde, StringSerde)
        .process(CountPerKey::default, &[])
        .to("totals", StringSerde, I64Serde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let error = driver
        .pipe_input(&input(), &"a".to_string(), &String::new(), 0)
        .unwrap_err();
    assert!(
        matches!(&error, Error::StoreNotConnected { processor, store }
            if processor == "KSTREAM-PROCESSOR-0000000001" && store == "counts"),
        "{error}"
    );
}

#[test]
fn a_store_name_used_twice_is_refused() {
    let builder = StreamsBuilder::new();
    for _ in 0..2 {
        builder.add_state_store(Stores::key_value_store_builder(
            Stores::in_memory_key_value_store("counts"),
            StringSerde,
            I64Serde,
        ));
    }
    builder
        .stream("input", StringSerde, StringSerde)
        .process(CountPerKey::default, &["counts"]);
    let message = builder.build().unwrap_err().to_string();
    assert!(
        message.contains("state store counts is defined twice"),
        "{message}"
    );
}

struct ZeroInterval;

impl Processor<String, String, String, String> for ZeroInterval {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, String>) -> Result<(), Error> {
        context.schedule(Duration::ZERO, PunctuationType::StreamTime, |_, _| Ok(()))?;
        Ok(())
    }

    fn process(
        &mut self,
        _context: &mut ProcessorContext<'_, String, String>,
        _record: Record<String, String>,
    ) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn a_zero_interval_is_refused() {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", StringSerde, StringSerde)
        .process(|| ZeroInterval, &[]);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let error = driver
        .pipe_input(&input(), &"a".to_string(), &String::new(), 0)
        .unwrap_err();
    assert!(matches!(error, Error::PunctuationInterval(_)), "{error}");
}

/// Counts its `init` and `close` calls.
struct Lifecycle(Arc<Mutex<(u32, u32)>>);

impl Processor<String, String, String, String> for Lifecycle {
    fn init(&mut self, _context: &mut ProcessorContext<'_, String, String>) -> Result<(), Error> {
        self.0.lock().0 += 1;
        Ok(())
    }

    fn process(
        &mut self,
        _context: &mut ProcessorContext<'_, String, String>,
        _record: Record<String, String>,
    ) -> Result<(), Error> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), Error> {
        self.0.lock().1 += 1;
        Ok(())
    }
}

#[test]
fn processors_are_made_initialized_and_closed_once_per_task() {
    let calls = Arc::new(Mutex::new((0, 0)));
    let made = Arc::new(Mutex::new(0));
    let builder = StreamsBuilder::new();
    let (shared_calls, shared_made) = (Arc::clone(&calls), Arc::clone(&made));
    builder.stream("input", StringSerde, StringSerde).process(
        move || {
            *shared_made.lock() += 1;
            Lifecycle(Arc::clone(&shared_calls))
        },
        &[],
    );
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    pipe(&mut driver, "a", 0);
    pipe(&mut driver, "b", 1);
    driver
        .advance_wall_clock_time(Duration::from_secs(1))
        .unwrap();
    assert_eq!((*made.lock(), *calls.lock()), (1, (1, 0)));
    driver.close().unwrap();
    assert_eq!(*calls.lock(), (1, 1));
}

/// Holds back each key's latest record and releases them every 10 s of stream time (a
/// fixed-key processor: its punctuator can only forward records it was given).
#[derive(Default)]
struct Debounce {
    held: Arc<Mutex<Vec<FixedKeyRecord<String, String>>>>,
}

impl FixedKeyProcessor<String, String, i64> for Debounce {
    fn init(
        &mut self,
        context: &mut FixedKeyProcessorContext<'_, String, i64>,
    ) -> Result<(), Error> {
        let held = Arc::clone(&self.held);
        context.schedule(
            Duration::from_secs(10),
            PunctuationType::StreamTime,
            move |time, context| {
                assert_eq!(time, context.current_stream_time_ms());
                for record in held.lock().drain(..) {
                    let length = record.value.len() as i64;
                    context.forward(record.with_value(length).with_timestamp(time))?;
                }
                Ok(())
            },
        )?;
        Ok(())
    }

    fn process(
        &mut self,
        _context: &mut FixedKeyProcessorContext<'_, String, i64>,
        record: FixedKeyRecord<String, String>,
    ) -> Result<(), Error> {
        let mut held = self.held.lock();
        held.retain(|r| r.key() != record.key());
        held.push(record);
        Ok(())
    }
}

#[test]
fn fixed_key_punctuators_forward_records_they_kept() {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", StringSerde, StringSerde)
        .process_values(Debounce::default, &[])
        .to("totals", StringSerde, I64Serde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    for (key, value, timestamp) in [("a", "x", 5_000), ("a", "xyz", 6_000), ("b", "xy", 9_000)] {
        driver
            .pipe_input(&input(), &key.to_string(), &value.to_string(), timestamp)
            .unwrap();
    }
    // A record is processed before the punctuation it triggers: the first is released at
    // once (the schedule is aligned to 0), the next ones at 10 s.
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("a", 1, 5_000)])
    );
    pipe(&mut driver, "c", 10_000);
    assert_eq!(
        driver.read_output(&totals()).unwrap(),
        records(&[("a", 3, 10_000), ("b", 2, 10_000), ("c", 0, 10_000)])
    );
}

/// On its first punctuation, schedules a second punctuator; both record what fires.
struct Nested(Arc<Mutex<Vec<(&'static str, i64)>>>);

impl Processor<String, String, String, String> for Nested {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, String>) -> Result<(), Error> {
        let fired = Arc::clone(&self.0);
        let mut scheduled = false;
        context.schedule(
            Duration::from_secs(10),
            PunctuationType::StreamTime,
            move |time, context| {
                fired.lock().push(("outer", time));
                if !scheduled {
                    scheduled = true;
                    let fired = Arc::clone(&fired);
                    context.schedule(
                        Duration::from_secs(3),
                        PunctuationType::StreamTime,
                        move |time, _| {
                            fired.lock().push(("inner", time));
                            Ok(())
                        },
                    )?;
                }
                Ok(())
            },
        )?;
        Ok(())
    }

    fn process(
        &mut self,
        _context: &mut ProcessorContext<'_, String, String>,
        _record: Record<String, String>,
    ) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn a_punctuator_scheduled_by_a_punctuator_fires_in_the_same_pass_when_due() {
    let fired = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let shared = Arc::clone(&fired);
    builder
        .stream("input", StringSerde, StringSerde)
        .process(move || Nested(Arc::clone(&shared)), &[]);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    pipe(&mut driver, "k", 1_000);
    // The inner schedule is aligned to 0 too, so it is due at once; its next time is 3 s.
    assert_eq!(*fired.lock(), vec![("outer", 1_000), ("inner", 1_000)]);
    fired.lock().clear();
    pipe(&mut driver, "k", 10_000);
    // Both are due at 10 s (inner: 3 s, missed 6 s and 9 s); the inner one was queued at 3 s,
    // before the outer one's 10 s.
    assert_eq!(*fired.lock(), vec![("inner", 10_000), ("outer", 10_000)]);
}

/// A processor's store is logged by default: each put writes `counts-changelog` in Kafka's
/// plain key-value format (the serialized value alone, no timestamp prefix), with the
/// timestamp of the record processed.
#[test]
fn a_processor_store_logs_its_writes_in_kafkas_plain_format() {
    let topology = counting_topology();
    assert_eq!(
        topology.changelog_topic("counts").as_deref(),
        Some("counts-changelog")
    );
    let mut driver = TopologyTestDriver::new(topology);
    pipe(&mut driver, "a", 1_000);
    pipe(&mut driver, "a", 2_000);
    // I64Serde writes 8 bytes: a timestamped value would be 16.
    let changelog = TestOutputTopic::new("counts-changelog", StringSerde, I64Serde);
    assert_eq!(
        driver.read_output(&changelog).unwrap(),
        records(&[("a", 1, 1_000), ("a", 2, 2_000)])
    );
}

/// `with_logging_disabled` keeps the store out of any changelog.
#[test]
fn a_store_with_logging_disabled_has_no_changelog() {
    let builder = StreamsBuilder::new();
    let store = Stores::key_value_store_builder(
        Stores::in_memory_key_value_store("counts"),
        StringSerde,
        I64Serde,
    )
    .with_logging_disabled();
    assert!(!store.logging_enabled());
    builder.add_state_store(store);
    builder
        .stream("input", StringSerde, StringSerde)
        .process(CountPerKey::default, &["counts"])
        .to("totals", StringSerde, I64Serde);
    let topology = builder.build().unwrap();
    assert_eq!(topology.changelog_topic("counts"), None);
    assert!(topology.internal_topics().is_empty());
    let mut driver = TopologyTestDriver::new(topology);
    pipe(&mut driver, "a", 1_000);
    let changelog = TestOutputTopic::new("counts-changelog", StringSerde, I64Serde);
    assert!(driver.is_output_empty(&changelog));
    assert_eq!(
        driver
            .key_value_store::<String, i64>("counts")
            .unwrap()
            .get(&"a".to_string()),
        Some(1)
    );
}
