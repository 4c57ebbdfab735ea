//! Every operator through the TopologyTestDriver: what comes out for what goes in.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_streams::{
    BytesSerde, Error, Grouped, I32Serde, I64Serde, JsonSerde, KStream, Materialized, Nullable,
    StreamsBuilder, StringSerde, TestInputTopic, TestOutputTopic, TestRecord, TimeWindowedSerde,
    TopologyTestDriver, TumblingWindows, Window, Windowed,
};

fn input() -> TestInputTopic<String, String> {
    TestInputTopic::new("in", StringSerde, StringSerde)
}

fn output() -> TestOutputTopic<String, String> {
    TestOutputTopic::new("out", StringSerde, StringSerde)
}

fn source(builder: &StreamsBuilder) -> KStream<String, String> {
    builder.stream("in", StringSerde, StringSerde)
}

fn s(value: &str) -> String {
    value.to_string()
}

fn rec<K, V>(key: K, value: V, timestamp: i64) -> TestRecord<K, V> {
    TestRecord::new(key, value, timestamp)
}

/// Builds a driver for the topology `build` makes and pipes `(key, value, timestamp)`.
fn run(build: impl FnOnce(&StreamsBuilder), records: &[(&str, &str, i64)]) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    build(&builder);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    for (key, value, timestamp) in records {
        driver
            .pipe_input(&input(), &s(key), &s(value), *timestamp)
            .unwrap();
    }
    driver
}

fn out(driver: &mut TopologyTestDriver) -> Vec<TestRecord<String, String>> {
    driver.read_output(&output()).unwrap()
}

#[test]
fn filter_and_filter_not_keep_what_matches_with_timestamps() {
    let mut driver = run(
        |b| {
            let stream = source(b);
            stream
                .filter(|_, v| v.starts_with('a'))
                .to("out", StringSerde, StringSerde);
            stream
                .filter_not(|_, v| v.starts_with('a'))
                .to("rest", StringSerde, StringSerde);
        },
        &[
            ("k1", "apple", 1),
            ("k2", "banana", 2),
            ("k3", "avocado", 3),
        ],
    );
    assert_eq!(
        out(&mut driver),
        vec![rec(s("k1"), s("apple"), 1), rec(s("k3"), s("avocado"), 3)]
    );
    let rest = driver
        .read_output(&TestOutputTopic::new("rest", StringSerde, StringSerde))
        .unwrap();
    assert_eq!(rest, vec![rec(s("k2"), s("banana"), 2)]);
    assert!(driver.is_output_empty(&output()));
}

#[test]
fn map_changes_key_and_value_map_values_only_the_value() {
    let mut driver = run(
        |b| {
            let stream = source(b);
            stream
                .map(|k, v| (v, k.len() as i32))
                .to("mapped", StringSerde, I32Serde);
            stream
                .map_values(|v| v.to_uppercase())
                .to("out", StringSerde, StringSerde);
        },
        &[("key", "abc", 7)],
    );
    let mapped = driver
        .read_output(&TestOutputTopic::new("mapped", StringSerde, I32Serde))
        .unwrap();
    assert_eq!(mapped, vec![rec(s("abc"), 3, 7)]);
    assert_eq!(out(&mut driver), vec![rec(s("key"), s("ABC"), 7)]);
}

#[test]
fn flat_map_emits_zero_or_more_records_in_order() {
    let mut driver = run(
        |b| {
            source(b)
                .flat_map(|k, v| {
                    v.split(',')
                        .map(|part| (format!("{k}-{part}"), s(part)))
                        .collect::<Vec<_>>()
                })
                .to("out", StringSerde, StringSerde);
        },
        &[("a", "x,y", 1), ("b", "", 2), ("c", "z", 3)],
    );
    assert_eq!(
        out(&mut driver),
        vec![
            rec(s("a-x"), s("x"), 1),
            rec(s("a-y"), s("y"), 1),
            rec(s("b-"), s(""), 2),
            rec(s("c-z"), s("z"), 3)
        ]
    );
}

#[test]
fn flat_map_values_keeps_the_key() {
    let mut driver = run(
        |b| {
            source(b)
                .flat_map_values(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .to("out", StringSerde, StringSerde);
        },
        &[("a", "one two", 5), ("b", "   ", 6)],
    );
    assert_eq!(
        out(&mut driver),
        vec![rec(s("a"), s("one"), 5), rec(s("a"), s("two"), 5)]
    );
}

#[test]
fn select_key_rekeys_and_keeps_value_and_timestamp() {
    let mut driver = run(
        |b| {
            source(b)
                .select_key(|_, v| v[..1].to_string())
                .to("out", StringSerde, StringSerde)
        },
        &[("old", "value", 9)],
    );
    assert_eq!(out(&mut driver), vec![rec(s("v"), s("value"), 9)]);
}

#[test]
fn peek_and_foreach_see_every_record() {
    let peeked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (p, f) = (Arc::clone(&peeked), Arc::clone(&seen));
    let mut driver = run(
        move |b| {
            let stream = source(b).peek(move |k, _| p.lock().unwrap().push(k.clone()));
            stream.foreach(move |_, v| f.lock().unwrap().push(v.clone()));
            stream.to("out", StringSerde, StringSerde);
        },
        &[("k1", "v1", 1), ("k2", "v2", 2)],
    );
    assert_eq!(*peeked.lock().unwrap(), vec![s("k1"), s("k2")]);
    assert_eq!(*seen.lock().unwrap(), vec![s("v1"), s("v2")]);
    assert_eq!(out(&mut driver).len(), 2);
}

#[test]
fn split_sends_each_record_to_the_first_matching_branch_or_the_default() {
    let mut driver = run(
        |b| {
            let mut split = source(b).split();
            split
                .branch(|_, v| v.contains('a'))
                .to("a", StringSerde, StringSerde);
            split
                .branch(|_, v| v.contains('b'))
                .to("b", StringSerde, StringSerde);
            split.default_branch().to("other", StringSerde, StringSerde);
        },
        &[("1", "ab", 1), ("2", "b", 2), ("3", "c", 3), ("4", "a", 4)],
    );
    let read = |driver: &mut TopologyTestDriver, topic| {
        let records = driver.read_output(&TestOutputTopic::new(topic, StringSerde, StringSerde));
        records
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read(&mut driver, "a"),
        vec![s("1"), s("4")],
        "ab goes to the first branch only"
    );
    assert_eq!(read(&mut driver, "b"), vec![s("2")]);
    assert_eq!(read(&mut driver, "other"), vec![s("3")]);
}

#[test]
fn branch_without_default_drops_unmatched_records() {
    let mut driver = run(
        |b| {
            let branches = source(b).branch(vec![
                Box::new(|_: &String, v: &String| v.len() > 3),
                Box::new(|_: &String, v: &String| v.len() > 1),
            ]);
            assert_eq!(branches.len(), 2);
            branches[0].to("long", StringSerde, StringSerde);
            branches[1].to("out", StringSerde, StringSerde);
        },
        &[("1", "long!", 1), ("2", "mid", 2), ("3", "x", 3)],
    );
    assert_eq!(out(&mut driver), vec![rec(s("2"), s("mid"), 2)]);
    let long = driver
        .read_output(&TestOutputTopic::new("long", StringSerde, StringSerde))
        .unwrap();
    assert_eq!(long, vec![rec(s("1"), s("long!"), 1)]);
    assert_eq!(driver.metrics().process_total, 3);
}

#[test]
fn merge_interleaves_two_streams_in_arrival_order() {
    let builder = StreamsBuilder::new();
    let left = builder.stream("left", StringSerde, StringSerde);
    let right = builder
        .stream("right", StringSerde, StringSerde)
        .map_values(|v| format!("r:{v}"));
    left.merge(&right).to("out", StringSerde, StringSerde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let l = TestInputTopic::new("left", StringSerde, StringSerde);
    let r = TestInputTopic::new("right", StringSerde, StringSerde);
    driver.pipe_input(&l, &s("1"), &s("a"), 1).unwrap();
    driver.pipe_input(&r, &s("2"), &s("b"), 2).unwrap();
    driver.pipe_input(&l, &s("3"), &s("c"), 3).unwrap();
    assert_eq!(
        out(&mut driver),
        vec![
            rec(s("1"), s("a"), 1),
            rec(s("2"), s("r:b"), 2),
            rec(s("3"), s("c"), 3)
        ]
    );
}

#[test]
fn count_emits_every_update_and_fills_the_store() {
    let mut driver = run(
        |b| {
            let counts = source(b).group_by_key().materialized_as("counts").count();
            assert_eq!(counts.store_name(), Some("counts"));
            counts
                .to_stream()
                .to("out", StringSerde, Nullable(I64Serde));
        },
        &[("a", "x", 1), ("b", "x", 5), ("a", "y", 3)],
    );
    let updates = driver
        .read_output(&TestOutputTopic::new("out", StringSerde, I64Serde))
        .unwrap();
    // The aggregate carries the largest timestamp that went into it (a's second update: 3).
    assert_eq!(
        updates,
        vec![rec(s("a"), 1, 1), rec(s("b"), 1, 5), rec(s("a"), 2, 3)]
    );
    let store = driver.key_value_store::<String, i64>("counts").unwrap();
    assert_eq!(store.all(), vec![(s("a"), 2), (s("b"), 1)]);
    assert_eq!(store.get_with_timestamp(&s("a")), Some((2, 3)));
    assert_eq!(store.get(&s("zzz")), None);
    assert_eq!(store.range(&s("b"), &s("c")), vec![(s("b"), 1)]);
    // Open and excluded ends (Kafka's `range(null, to)`), and the reverse orders.
    assert_eq!(store.range_by(..=&s("a")), vec![(s("a"), 2)]);
    assert_eq!(store.range_by(&s("a")..), vec![(s("a"), 2), (s("b"), 1)]);
    assert_eq!(store.range_by(&s("a")..&s("b")), vec![(s("a"), 2)]);
    assert_eq!(store.range_by(&s("b")..&s("b")), vec![]);
    assert_eq!(store.range_by(&s("b")..=&s("a")), vec![]);
    assert_eq!(store.reverse_range_by(..), vec![(s("b"), 1), (s("a"), 2)]);
    assert_eq!(store.reverse_all(), store.reverse_range_by(..));
    assert!(matches!(
        driver.key_value_store::<String, String>("counts"),
        Err(Error::StoreType(_))
    ));
    assert!(matches!(
        driver.key_value_store::<String, i64>("nope"),
        Err(Error::UnknownStore(_))
    ));
}

#[test]
fn reduce_combines_values_per_key() {
    let mut driver = run(
        |b| {
            source(b)
                .group_by_key()
                .reduce(|agg, v| format!("{agg}+{v}"))
                .to_stream()
                .to("out", StringSerde, Nullable(StringSerde));
        },
        &[("a", "1", 1), ("a", "2", 2), ("b", "3", 3), ("a", "4", 4)],
    );
    assert_eq!(
        out(&mut driver),
        vec![
            rec(s("a"), s("1"), 1),
            rec(s("a"), s("1+2"), 2),
            rec(s("b"), s("3"), 3),
            rec(s("a"), s("1+2+4"), 4)
        ]
    );
}

#[test]
fn aggregate_by_a_new_key_starts_from_the_initializer() {
    let builder = StreamsBuilder::new();
    let table = source(&builder)
        .group_by_with(|_, v| v.len() as i32, Grouped::key_serde(I32Serde))
        .aggregate_with(
            || 100,
            |_len, v: String, sum| sum + v.len() as i64,
            Materialized::default().with_value_serde(I64Serde),
        );
    let store = table.store_name().unwrap().to_string();
    assert!(
        store.starts_with("KSTREAM-AGGREGATE-STATE-STORE-"),
        "{store}"
    );
    table.to_stream().to("out", I32Serde, Nullable(I64Serde));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    for (k, v) in [("x", "ab"), ("y", "abc"), ("z", "cd")] {
        driver.pipe_input(&input(), &s(k), &s(v), 0).unwrap();
    }
    let updates = driver
        .read_output(&TestOutputTopic::new("out", I32Serde, I64Serde))
        .unwrap();
    assert_eq!(
        updates,
        vec![rec(2, 102, 0), rec(3, 103, 0), rec(2, 104, 0)]
    );
    assert_eq!(
        driver.key_value_store::<i32, i64>(&store).unwrap().get(&2),
        Some(104)
    );
}

fn windowed_driver(grace: Duration) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    source(&builder)
        .group_by_key()
        .windowed_by(TumblingWindows::of(Duration::from_secs(10)).grace(grace))
        // Closed windows stay queryable for a minute (by default only size plus grace).
        .count_with(
            Materialized::as_store("windowed-counts").with_retention(Duration::from_secs(60)),
        )
        .to_stream()
        .to(
            "out",
            TimeWindowedSerde::new(StringSerde, Duration::from_secs(10)),
            Nullable(I64Serde),
        );
    TopologyTestDriver::new(builder.build().unwrap())
}

fn windowed_out(driver: &mut TopologyTestDriver) -> Vec<(String, i64, i64)> {
    let topic = TestOutputTopic::new(
        "out",
        TimeWindowedSerde::new(StringSerde, Duration::from_secs(10)),
        I64Serde,
    );
    let records = driver.read_output(&topic).unwrap();
    records
        .into_iter()
        .map(|r| (r.key.key, r.key.window.start, r.value))
        .collect()
}

#[test]
fn tumbling_windows_split_at_their_boundaries() {
    let mut driver = windowed_driver(Duration::ZERO);
    for ts in [0, 9_999, 10_000, 19_999, 20_000] {
        driver
            .pipe_input(&input(), &s("u"), &s("click"), ts)
            .unwrap();
    }
    assert_eq!(
        windowed_out(&mut driver),
        vec![
            (s("u"), 0, 1),
            (s("u"), 0, 2),
            (s("u"), 10_000, 1),
            (s("u"), 10_000, 2),
            (s("u"), 20_000, 1)
        ]
    );
    let store = driver
        .key_value_store::<Windowed<String>, i64>("windowed-counts")
        .unwrap();
    let key = Windowed {
        key: s("u"),
        window: Window {
            start: 10_000,
            end: 20_000,
        },
    };
    assert_eq!(store.get(&key), Some(2));
    assert_eq!(driver.metrics().dropped_late, 0);
}

#[test]
fn without_grace_a_window_closes_when_stream_time_reaches_its_end() {
    let mut driver = windowed_driver(Duration::ZERO);
    driver
        .pipe_input(&input(), &s("u"), &s("c"), 5_000)
        .unwrap();
    driver
        .pipe_input(&input(), &s("u"), &s("c"), 9_999)
        .unwrap(); // out of order but in time
    driver
        .pipe_input(&input(), &s("u"), &s("c"), 10_000)
        .unwrap(); // stream time 10 000
    driver
        .pipe_input(&input(), &s("u"), &s("c"), 9_000)
        .unwrap(); // [0, 10 000) has closed
    assert_eq!(driver.stream_time(), 10_000);
    assert_eq!(
        windowed_out(&mut driver),
        vec![(s("u"), 0, 1), (s("u"), 0, 2), (s("u"), 10_000, 1)]
    );
    assert_eq!(driver.metrics().dropped_late, 1);
}

#[test]
fn grace_keeps_a_window_open_until_end_plus_grace() {
    let mut driver = windowed_driver(Duration::from_secs(2));
    driver
        .pipe_input(&input(), &s("u"), &s("c"), 1_000)
        .unwrap();
    driver
        .pipe_input(&input(), &s("u"), &s("c"), 11_999)
        .unwrap(); // stream time 11 999
    driver
        .pipe_input(&input(), &s("u"), &s("c"), 2_000)
        .unwrap(); // 10 000 + 2 000 > 11 999
    driver
        .pipe_input(&input(), &s("v"), &s("c"), 12_000)
        .unwrap(); // stream time 12 000
    driver
        .pipe_input(&input(), &s("u"), &s("c"), 3_000)
        .unwrap(); // closed: dropped
    driver
        .pipe_input(&input(), &s("u"), &s("c"), 10_500)
        .unwrap(); // [10 000, 20 000) open
    assert_eq!(
        windowed_out(&mut driver),
        vec![
            (s("u"), 0, 1),
            (s("u"), 10_000, 1),
            (s("u"), 0, 2),
            (s("v"), 10_000, 1),
            (s("u"), 10_000, 2)
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 1);
    assert_eq!(driver.metrics().process_total, 6);
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Click {
    user_id: String,
    action: String,
    timestamp: f64,
}

#[test]
fn json_clicks_without_keys_counted_per_user_with_an_extractor() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with_timestamp_extractor(
            "user-activity",
            Nullable(StringSerde),
            JsonSerde::<Click>::new(),
            // The seed producer writes seconds as a float in the value.
            |_: &Option<String>, click: &Click, _| (click.timestamp * 1000.0) as i64,
        )
        .group_by_with(
            |_, click| click.user_id.clone(),
            Grouped::key_serde(StringSerde),
        )
        .windowed_by(TumblingWindows::of(Duration::from_secs(10)))
        .count()
        .to_stream()
        .map(|windowed, count| (windowed.key, count))
        .to("out", StringSerde, Nullable(I64Serde));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let input = TestInputTopic::new(
        "user-activity",
        Nullable(StringSerde),
        JsonSerde::<Click>::new(),
    );
    for (user, seconds) in [
        ("user_1", 1.5),
        ("user_2", 2.0),
        ("user_1", 9.9),
        ("user_1", 10.0),
    ] {
        let click = Click {
            user_id: s(user),
            action: s("click"),
            timestamp: seconds,
        };
        driver.pipe_input(&input, &None, &click, 0).unwrap();
    }
    let counts = driver
        .read_output(&TestOutputTopic::new("out", StringSerde, I64Serde))
        .unwrap();
    assert_eq!(
        counts,
        vec![
            rec(s("user_1"), 1, 1_500),
            rec(s("user_2"), 1, 2_000),
            rec(s("user_1"), 2, 9_900),
            rec(s("user_1"), 1, 10_000)
        ]
    );
}

/// Kafka's extractor gets the partition time of the record's own partition, not the task's
/// stream time: with two input topics they differ.
#[test]
fn an_extractor_is_given_its_partitions_time() {
    struct Seen(Arc<Mutex<Vec<i64>>>);
    impl weir_streams::TimestampExtractor<String, String> for Seen {
        fn extract(&mut self, _: &String, _: &String, timestamp: i64, partition_time: i64) -> i64 {
            self.0.lock().unwrap().push(partition_time);
            timestamp
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let a = builder.stream("a", StringSerde, StringSerde);
    builder
        .stream_with_timestamp_extractor("b", StringSerde, StringSerde, Seen(seen.clone()))
        .merge(&a)
        .to("out", StringSerde, StringSerde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let (a, b) = (
        TestInputTopic::new("a", StringSerde, StringSerde),
        TestInputTopic::new("b", StringSerde, StringSerde),
    );
    driver.pipe_input(&a, &s("k"), &s("v"), 100).unwrap();
    driver.pipe_input(&b, &s("k"), &s("v"), 50).unwrap();
    driver.pipe_input(&b, &s("k"), &s("v"), 60).unwrap();
    driver.pipe_input(&b, &s("k"), &s("v"), 55).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![-1, 50, 60]);
    assert_eq!(driver.stream_time(), 100);
}

#[test]
fn negative_timestamps_are_skipped_and_counted() {
    let mut driver = run(
        |b| source(b).to("out", StringSerde, StringSerde),
        &[("a", "x", -1), ("b", "y", 4)],
    );
    assert_eq!(out(&mut driver), vec![rec(s("b"), s("y"), 4)]);
    assert_eq!(driver.metrics().dropped_invalid_timestamp, 1);
    assert_eq!(driver.stream_time(), 4);
}

#[test]
fn a_bad_record_stops_processing_naming_topic_partition_and_offset() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", StringSerde, I64Serde)
        .to("out", StringSerde, I64Serde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    driver
        .pipe_raw("in", Some("k".into()), Some(vec![0; 8].into()), 0)
        .unwrap();
    let error = driver
        .pipe_raw("in", Some("k".into()), Some(vec![1, 2].into()), 0)
        .unwrap_err();
    assert!(
        matches!(&error, Error::Deserialize { topic, partition: 0, offset: 1, part: "value", .. } if topic == "in"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "cannot deserialize the value of the record at in-0 offset 1"
    );
    let null_key = driver
        .pipe_raw("in", None, Some(vec![0; 8].into()), 0)
        .unwrap_err();
    assert!(
        matches!(null_key, Error::Deserialize { part: "key", .. }),
        "{null_key:?}"
    );
    assert!(matches!(
        driver.pipe_raw("nope", None, None, 0),
        Err(Error::UnknownTopic(_))
    ));
}

#[test]
fn invalid_topologies_are_refused_when_built() {
    let builder = StreamsBuilder::new();
    source(&builder).to("out", StringSerde, StringSerde);
    source(&builder).to("out", StringSerde, StringSerde);
    let error = builder.build().unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid topology: topic in is already read by another source"
    );

    let builder = StreamsBuilder::new();
    let grouped = source(&builder).group_by_key().materialized_as("store");
    grouped.count();
    grouped.count();
    assert!(matches!(builder.build(), Err(Error::InvalidTopology(m)) if m.contains("store store")));

    assert!(matches!(
        StreamsBuilder::new().build(),
        Err(Error::InvalidTopology(_))
    ));
}

#[test]
fn the_topology_describes_its_topics_and_stores() {
    let builder = StreamsBuilder::new();
    let stream = source(&builder);
    stream.to("b-out", StringSerde, StringSerde);
    stream
        .group_by_key()
        .materialized_as("s")
        .count()
        .to_stream()
        .to("a-out", StringSerde, Nullable(I64Serde));
    let topology = builder.build().unwrap();
    assert_eq!(topology.source_topics(), vec![s("in")]);
    assert_eq!(topology.sink_topics(), vec![s("a-out"), s("b-out")]);
    assert_eq!(topology.store_names(), vec![s("s")]);
}

#[test]
fn windowed_reduce_and_aggregate_keep_one_aggregate_per_key_and_window() {
    let builder = StreamsBuilder::new();
    let windowed = source(&builder)
        .group_by_key()
        .windowed_by(TumblingWindows::of(Duration::from_millis(100)));
    windowed
        .reduce(|agg, v| format!("{agg}{v}"))
        .to_stream()
        .map(|w, v| (format!("{}@{}", w.key, w.window.start), v))
        .to("out", StringSerde, Nullable(StringSerde));
    let lengths = windowed.aggregate_with(
        || 0i64,
        |_key, v: String, total| total + v.len() as i64,
        // Closed windows stay queryable (by default only for size plus grace).
        Materialized::default()
            .with_value_serde(I64Serde)
            .with_retention(Duration::from_secs(1)),
    );
    let store = lengths.store_name().unwrap().to_string();
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    for (k, v, ts) in [
        ("a", "x", 10),
        ("a", "yy", 99),
        ("b", "z", 50),
        ("a", "w", 100),
    ] {
        driver.pipe_input(&input(), &s(k), &s(v), ts).unwrap();
    }
    assert_eq!(
        out(&mut driver),
        vec![
            rec(s("a@0"), s("x"), 10),
            rec(s("a@0"), s("xyy"), 99),
            rec(s("b@0"), s("z"), 50),
            rec(s("a@100"), s("w"), 100)
        ]
    );
    let store = driver
        .key_value_store::<Windowed<String>, i64>(&store)
        .unwrap();
    let totals: Vec<_> = store
        .all()
        .into_iter()
        .map(|(w, t)| (w.key, w.window, t))
        .collect();
    assert_eq!(
        totals,
        vec![
            (s("a"), Window { start: 0, end: 100 }, 3),
            (
                s("a"),
                Window {
                    start: 100,
                    end: 200
                },
                1
            ),
            (s("b"), Window { start: 0, end: 100 }, 1)
        ]
    );
}

#[test]
fn a_stream_feeding_several_operators_gives_each_every_record() {
    let mut driver = run(
        |b| {
            let stream = source(b);
            stream
                .map_values(|v| format!("1:{v}"))
                .to("out", StringSerde, StringSerde);
            stream
                .map_values(|v| format!("2:{v}"))
                .to("out", StringSerde, StringSerde);
            stream.merge(&stream).map_values(|v| format!("m:{v}")).to(
                "out",
                StringSerde,
                StringSerde,
            );
        },
        &[("k", "v", 1)],
    );
    let values: Vec<_> = out(&mut driver).into_iter().map(|r| r.value).collect();
    assert_eq!(values, vec![s("1:v"), s("2:v"), s("m:v"), s("m:v")]);
}

#[test]
fn a_new_key_without_serdes_is_refused_naming_the_node_and_the_serde() {
    let builder = StreamsBuilder::new();
    source(&builder).group_by(|_, v| v.len() as i32).count();
    let error = builder.build().unwrap_err().to_string();
    assert!(
        error.contains("KSTREAM-AGGREGATE-STATE-STORE-0000000001")
            && error.contains("KSTREAM-AGGREGATE-STATE-STORE-0000000001-repartition")
            && error.contains("key serde"),
        "{error}"
    );

    // An aggregate without a value serde cannot be logged.
    let builder = StreamsBuilder::new();
    source(&builder)
        .group_by_key()
        .aggregate(|| 0i64, |_, _, n| n + 1);
    let error = builder.build().unwrap_err().to_string();
    assert!(
        error.contains("needs a value serde for its changelog topic"),
        "{error}"
    );
}

#[test]
fn serdes_are_inherited_until_an_operator_changes_the_type() {
    // filter and peek keep both serdes, so reduce after group_by_key needs none.
    let builder = StreamsBuilder::new();
    source(&builder)
        .filter(|_, v| !v.is_empty())
        .peek(|_, _| {})
        .group_by_key()
        .reduce(|a, b| format!("{a}+{b}"));
    builder.build().unwrap();

    // map_values drops the value serde: reduce's changelog has none.
    let builder = StreamsBuilder::new();
    source(&builder)
        .map_values(|v| v.len() as i64)
        .group_by_key()
        .reduce(|a, b| a + b);
    assert!(builder.build().is_err());
    let builder = StreamsBuilder::new();
    source(&builder)
        .map_values(|v| v.len() as i64)
        .group_by_key_with(Grouped::value_serde(I64Serde))
        .reduce(|a, b| a + b);
    builder.build().unwrap();
}

#[test]
fn a_rekeyed_aggregation_goes_through_a_named_repartition_topic_and_logs_its_store() {
    let builder = StreamsBuilder::new();
    source(&builder)
        .group_by_with(
            |_, v| v.clone(),
            Grouped::with(StringSerde, StringSerde).with_name("by-value"),
        )
        .count_with(Materialized::as_store("counts"))
        .to_stream()
        .to("out", StringSerde, Nullable(I64Serde));
    let topology = builder.build().unwrap();
    let internal: Vec<String> = topology
        .internal_topics()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(internal, vec!["by-value-repartition", "counts-changelog"]);
    assert_eq!(
        topology.changelog_topic("counts").unwrap(),
        "counts-changelog"
    );
    let mut driver = TopologyTestDriver::new(topology);
    for (k, v) in [("x", "a"), ("y", "a"), ("z", "b")] {
        driver.pipe_input(&input(), &s(k), &s(v), 7).unwrap();
    }
    let out = driver
        .read_output(&TestOutputTopic::new("out", StringSerde, I64Serde))
        .unwrap();
    assert_eq!(
        out,
        vec![rec(s("a"), 1, 7), rec(s("a"), 2, 7), rec(s("b"), 1, 7)]
    );
    assert_eq!(
        driver.metrics().process_total,
        3,
        "repartitioned records count once"
    );
    // The changelog holds the value alone, its timestamp being the record's (Kafka's
    // timestamped stores log so).
    let changelog = driver
        .read_output(&TestOutputTopic::new(
            "counts-changelog",
            StringSerde,
            BytesSerde,
        ))
        .unwrap();
    let last: &TestRecord<String, Vec<u8>> = changelog.last().unwrap();
    assert_eq!(last.key, "b");
    assert_eq!(last.value, 1i64.to_be_bytes());
    assert_eq!(last.timestamp, 7);
}

#[test]
fn copartition_groups_name_the_join_and_its_topics() {
    let builder = StreamsBuilder::new();
    let table = builder.table("t", StringSerde, Nullable(StringSerde));
    source(&builder)
        .join_table(&table, |a, b| format!("{a}{b}"))
        .to("out", StringSerde, StringSerde);
    let groups = builder.build().unwrap().copartition_groups();
    assert_eq!(groups.len(), 1);
    assert!(
        groups[0].node.starts_with("KSTREAM-JOIN-"),
        "{:?}",
        groups[0]
    );
    assert_eq!(
        groups[0].topics.iter().cloned().collect::<Vec<_>>(),
        vec![s("in"), s("t")]
    );
}

#[test]
fn a_table_from_an_aggregation_is_copartitioned_with_the_stream_joining_it() {
    let builder = StreamsBuilder::new();
    let totals = source(&builder).group_by_key().count();
    builder
        .stream("payments", StringSerde, StringSerde)
        .join_table(&totals, |payment, count| format!("{payment}#{count}"))
        .to("out", StringSerde, StringSerde);
    let groups = builder.build().unwrap().copartition_groups();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(
        groups[0].topics.iter().cloned().collect::<Vec<_>>(),
        vec![s("in"), s("payments")]
    );
}

#[test]
fn a_time_window_store_logs_kafkas_window_store_keys() {
    let builder = StreamsBuilder::new();
    source(&builder)
        .group_by_key()
        .windowed_by(TumblingWindows::of(Duration::from_millis(100)))
        .materialized_as("per-window")
        .count();
    let topology = builder.build().unwrap();
    assert_eq!(
        topology.changelog_topic("per-window").unwrap(),
        "per-window-changelog"
    );
    let mut driver = TopologyTestDriver::new(topology);
    driver.pipe_input(&input(), &s("a"), &s("x"), 150).unwrap();
    // Kafka's window store changelog key: the key, the window start (8 bytes), then a 4-byte
    // sequence number (0: one value per key and window), unlike TimeWindowedSerde's.
    let changelog: Vec<TestRecord<Vec<u8>, Vec<u8>>> = driver
        .read_output(&TestOutputTopic::new(
            "per-window-changelog",
            BytesSerde,
            BytesSerde,
        ))
        .unwrap();
    assert_eq!(changelog.len(), 1);
    let expected = [
        b"a".as_slice(),
        &100_i64.to_be_bytes(),
        &0_u32.to_be_bytes(),
    ]
    .concat();
    assert_eq!(changelog[0].key, expected);
    assert_eq!(changelog[0].value, 1i64.to_be_bytes());
    assert_eq!(changelog[0].timestamp, 150);
}
