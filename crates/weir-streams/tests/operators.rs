//! The windows, suppress, tables and joins through the TopologyTestDriver. Expected outputs
//! are derived by hand from Kafka Streams' documented semantics in each test's comments.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use weir_streams::{
    Error, Grouped, I64Serde, JoinWindows, Materialized, Nullable, Produced, SessionWindowedSerde,
    SessionWindows, SlidingWindows, StreamsBuilder, StringSerde, Suppressed, TableJoined,
    TestInputTopic, TestOutputTopic, TestRecord, TimeWindowedSerde, TimeWindows,
    TopologyTestDriver, Window, Windowed,
};

fn s(value: &str) -> String {
    value.to_string()
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn w(key: &str, start: i64, end: i64) -> Windowed<String> {
    Windowed {
        key: s(key),
        window: Window { start, end },
    }
}

fn rec<K, V>(key: K, value: V, timestamp: i64) -> TestRecord<K, V> {
    TestRecord::new(key, value, timestamp)
}

fn counts_in() -> TestInputTopic<String, i64> {
    TestInputTopic::new("in", StringSerde, I64Serde)
}

/// Pipes `(key, timestamp)` records with value 0 to "in".
fn pipe(driver: &mut TopologyTestDriver, records: &[(&str, i64)]) {
    for (key, timestamp) in records {
        driver
            .pipe_input(&counts_in(), &s(key), &0, *timestamp)
            .unwrap();
    }
}

/// Windowed counts written to "out" with windows of `size` (the serde needs it).
fn windowed_out(size: u64) -> TestOutputTopic<Windowed<String>, Option<i64>> {
    TestOutputTopic::new(
        "out",
        TimeWindowedSerde::new(StringSerde, ms(size)),
        Nullable(I64Serde),
    )
}

fn session_out() -> TestOutputTopic<Windowed<String>, Option<i64>> {
    TestOutputTopic::new(
        "out",
        SessionWindowedSerde::new(StringSerde),
        Nullable(I64Serde),
    )
}

#[test]
fn hopping_windows_count_a_record_in_every_window_holding_it() {
    let builder = StreamsBuilder::new();
    let windows = TimeWindows::of_size_with_no_grace(ms(10))
        .advance_by(ms(5))
        .unwrap();
    builder
        .stream("in", StringSerde, I64Serde)
        .group_by_key()
        .windowed_by(windows)
        .count()
        .to_stream()
        .to(
            "out",
            TimeWindowedSerde::new(StringSerde, ms(10)),
            Nullable(I64Serde),
        );
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    // Windows start every 5 ms and last 10 ms: 3 is in [0,10) only; 7 in [0,10) and
    // [5,15); 12 in [5,15) and [10,20). Then stream time is 12, so with no grace [0,10)
    // (end 10 <= 12) is closed: 8 is dropped there once and counted in [5,15).
    pipe(&mut driver, &[("a", 3), ("a", 7), ("a", 12), ("a", 8)]);
    assert_eq!(
        driver.read_output(&windowed_out(10)).unwrap(),
        vec![
            rec(w("a", 0, 10), Some(1), 3),
            rec(w("a", 0, 10), Some(2), 7),
            rec(w("a", 5, 15), Some(1), 7),
            rec(w("a", 5, 15), Some(2), 12),
            rec(w("a", 10, 20), Some(1), 12),
            rec(w("a", 5, 15), Some(3), 12),
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 1);
}

#[test]
fn time_window_end_is_exclusive_and_grace_keeps_it_open() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", StringSerde, I64Serde)
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)))
        .count()
        .to_stream()
        .to(
            "out",
            TimeWindowedSerde::new(StringSerde, ms(10)),
            Nullable(I64Serde),
        );
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    // 10 opens [10,20) (end exclusive). At stream time 14, [0,10) closes at 10 + 5 = 15 >
    // 14: 9 still counts. At stream time 15 it has closed: the second 9 is dropped.
    pipe(
        &mut driver,
        &[
            ("a", 0),
            ("a", 10),
            ("a", 14),
            ("a", 9),
            ("a", 15),
            ("a", 9),
        ],
    );
    let out = driver.read_output(&windowed_out(10)).unwrap();
    assert_eq!(
        out.iter()
            .map(|r| (r.key.window.start, r.value))
            .collect::<Vec<_>>(),
        vec![
            (0, Some(1)),
            (10, Some(1)),
            (10, Some(2)),
            (0, Some(2)),
            (10, Some(3))
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 1);
}

fn sliding_driver(difference: u64, grace: u64) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", StringSerde, I64Serde)
        .group_by_key()
        .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(
            ms(difference),
            ms(grace),
        ))
        .materialized_as("sliding")
        .count()
        .to_stream()
        .to(
            "out",
            SessionWindowedSerde::new(StringSerde),
            Nullable(I64Serde),
        );
    TopologyTestDriver::new(builder.build().unwrap())
}

#[test]
fn sliding_windows_create_left_and_right_windows_as_kafka_does() {
    // Time difference 10, so windows are [t - 10, t], both ends inclusive.
    let mut driver = sliding_driver(10, 100);
    // 20: its left window [10,20] holds it.
    // 25: the previous record 20 has no right window yet and 25 falls in [21,31]: created
    //     with 25 alone; 25's left window [15,25] starts from [10,20]'s aggregate (20 is in
    //     range) plus 25 = 2.
    // 22 (out of order): [21,31] and [15,25] hold it (2 and 3; Kafka's stores iterate
    //     backwards, latest start first); its left window [12,22] holds 20 and 22 = 2; its
    //     right window [23,33] holds what comes after it, 25: 1.
    pipe(&mut driver, &[("a", 20), ("a", 25), ("a", 22)]);
    assert_eq!(
        driver.read_output(&session_out()).unwrap(),
        vec![
            rec(w("a", 10, 20), Some(1), 20),
            rec(w("a", 21, 31), Some(1), 25),
            rec(w("a", 15, 25), Some(2), 25),
            rec(w("a", 21, 31), Some(2), 25),
            rec(w("a", 15, 25), Some(3), 25),
            rec(w("a", 12, 22), Some(2), 22),
            rec(w("a", 23, 33), Some(1), 25),
        ]
    );
    // Every window holds exactly the records within its inclusive bounds.
    let store = driver
        .key_value_store::<Windowed<String>, i64>("sliding")
        .unwrap();
    assert_eq!(
        store.all(),
        vec![
            (w("a", 10, 20), 1),
            (w("a", 12, 22), 2),
            (w("a", 15, 25), 3),
            (w("a", 21, 31), 2),
            (w("a", 23, 33), 1),
        ]
    );
}

#[test]
fn sliding_windows_put_early_records_in_one_window_from_zero() {
    let mut driver = sliding_driver(10, 100);
    // 3 and 5 are before the time difference: both in [0,10]; 3's right window [4,14]
    // holds 5.
    pipe(&mut driver, &[("a", 3), ("a", 5)]);
    assert_eq!(
        driver.read_output(&session_out()).unwrap(),
        vec![
            rec(w("a", 0, 10), Some(1), 3),
            rec(w("a", 4, 14), Some(1), 5),
            rec(w("a", 0, 10), Some(2), 5),
        ]
    );
}

#[test]
fn sliding_windows_drop_records_for_closed_windows() {
    let mut driver = sliding_driver(10, 0);
    // After 30 (stream time 30, no grace): 15's right window [16,26] ends before 30, so
    // the record is dropped outright. 25 still updates [20,30] (its end is not before 30,
    // ends are inclusive), its left window [15,25] is closed (dropped once more), and its
    // right window [26,36] holds 30.
    pipe(&mut driver, &[("a", 30), ("a", 15), ("a", 25)]);
    assert_eq!(
        driver.read_output(&session_out()).unwrap(),
        vec![
            rec(w("a", 20, 30), Some(1), 30),
            rec(w("a", 20, 30), Some(2), 30),
            rec(w("a", 26, 36), Some(1), 30),
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 2);
}

fn session_driver(gap: u64, grace: u64) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", StringSerde, I64Serde)
        .group_by_key()
        .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(
            ms(gap),
            ms(grace),
        ))
        .materialized_as("sessions")
        .count()
        .to_stream()
        .to(
            "out",
            SessionWindowedSerde::new(StringSerde),
            Nullable(I64Serde),
        );
    TopologyTestDriver::new(builder.build().unwrap())
}

#[test]
fn sessions_merge_with_tombstones_for_the_sessions_they_replace() {
    let mut driver = session_driver(10, 100);
    // 0 and 20 are 20 apart (gap 10): two sessions. 10 is within 10 of both: they merge
    // into [0,20] = 1 + 1 + 1, after tombstones for [0,0] and [20,20] (each at its end).
    // 20 again lies in [0,20]; the merged window differs from [20,20], so Kafka deletes
    // [0,20] and writes it back: a tombstone, then 4.
    pipe(
        &mut driver,
        &[("a", 0), ("a", 20), ("b", 5), ("a", 10), ("a", 20)],
    );
    assert_eq!(
        driver.read_output(&session_out()).unwrap(),
        vec![
            rec(w("a", 0, 0), Some(1), 0),
            rec(w("a", 20, 20), Some(1), 20),
            rec(w("b", 5, 5), Some(1), 5),
            rec(w("a", 0, 0), None, 0),
            rec(w("a", 20, 20), None, 20),
            rec(w("a", 0, 20), Some(3), 20),
            rec(w("a", 0, 20), None, 20),
            rec(w("a", 0, 20), Some(4), 20),
        ]
    );
    let store = driver
        .key_value_store::<Windowed<String>, i64>("sessions")
        .unwrap();
    assert_eq!(store.all(), vec![(w("a", 0, 20), 4), (w("b", 5, 5), 1)]);
}

#[test]
fn sessions_close_after_their_inclusive_end_plus_grace() {
    let mut driver = session_driver(10, 0);
    // Stream time 30, no grace. 5 would extend [0,0] to [0,5], which ended before 30:
    // dropped. 25 merges with [30,30] into [25,30], whose end is not before 30: kept.
    pipe(&mut driver, &[("a", 0), ("a", 30), ("a", 5), ("a", 25)]);
    assert_eq!(
        driver.read_output(&session_out()).unwrap(),
        vec![
            rec(w("a", 0, 0), Some(1), 0),
            rec(w("a", 30, 30), Some(1), 30),
            rec(w("a", 30, 30), None, 30),
            rec(w("a", 25, 30), Some(2), 30),
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 1);
}

#[test]
fn a_session_closes_gap_plus_grace_after_its_end() {
    // Gap 5, grace 2; stream time 20 closes sessions ending before 20 - 2 - 5 = 13 (Kafka
    // 3.3+, checked against Kafka Streams 4.4 by benches/scripts/streams.py compare). 14
    // starts [14,14], which ends after 13: kept, though 14 < 20 - 2. 12 for another key
    // would start [12,12], ending before 13: dropped.
    let mut driver = session_driver(5, 2);
    pipe(&mut driver, &[("a", 0), ("a", 20), ("a", 14), ("b", 12)]);
    assert_eq!(
        driver.read_output(&session_out()).unwrap(),
        vec![
            rec(w("a", 0, 0), Some(1), 0),
            rec(w("a", 20, 20), Some(1), 20),
            rec(w("a", 14, 14), Some(1), 14),
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 1);
}

#[test]
fn session_reduce_and_aggregate_merge_aggregates() {
    let builder = StreamsBuilder::new();
    let sessions = builder
        .stream("in", StringSerde, StringSerde)
        .group_by_key()
        .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(10), ms(100)));
    sessions.reduce(|a, b| format!("{a}{b}")).to_stream().to(
        "reduced",
        SessionWindowedSerde::new(StringSerde),
        Nullable(StringSerde),
    );
    sessions
        .aggregate_with(
            || s("<"),
            |_, v, agg| format!("{agg}{v}"),
            |_, a, b| format!("{a}|{b}"),
            Materialized::default().with_value_serde(StringSerde),
        )
        .to_stream()
        .to(
            "aggregated",
            SessionWindowedSerde::new(StringSerde),
            Nullable(StringSerde),
        );
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let input = TestInputTopic::new("in", StringSerde, StringSerde);
    for (value, t) in [("x", 0), ("y", 20), ("z", 10)] {
        driver.pipe_input(&input, &s("k"), &s(value), t).unwrap();
    }
    let last = |topic: &str, driver: &mut TopologyTestDriver| {
        let out = TestOutputTopic::new(
            topic,
            SessionWindowedSerde::new(StringSerde),
            Nullable(StringSerde),
        );
        driver.read_output(&out).unwrap().pop().unwrap()
    };
    // reduce: merge "x" and "y" in end order, then add "z".
    assert_eq!(
        last("reduced", &mut driver),
        rec(w("k", 0, 20), Some(s("xyz")), 20)
    );
    // aggregate: "<" merged with "<x" then "<y", then "z" aggregated.
    assert_eq!(
        last("aggregated", &mut driver),
        rec(w("k", 0, 20), Some(s("<|<x|<yz")), 20)
    );
}

#[test]
fn suppress_emits_each_window_once_when_it_closes() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", StringSerde, I64Serde)
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)))
        .count()
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .to(
            "out",
            TimeWindowedSerde::new(StringSerde, ms(10)),
            Nullable(I64Serde),
        );
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    // [0,10) closes when stream time reaches 10 + 5 = 15 (c at 15): a's final count there
    // is 3, with the late-but-in-grace 9 (timestamp 9, the largest in it). [10,20) closes
    // at 25 (d at 30): a = 2 (14, 16), b = 1, c = 1, emitted in key order. [30,40) stays
    // open.
    pipe(
        &mut driver,
        &[("a", 1), ("a", 8), ("b", 12), ("a", 14), ("a", 9)],
    );
    assert!(driver.is_output_empty(&windowed_out(10)));
    pipe(&mut driver, &[("c", 15), ("a", 16), ("d", 30)]);
    assert_eq!(
        driver.read_output(&windowed_out(10)).unwrap(),
        vec![
            rec(w("a", 0, 10), Some(3), 9),
            rec(w("a", 10, 20), Some(2), 16),
            rec(w("b", 10, 20), Some(1), 12),
            rec(w("c", 10, 20), Some(1), 15),
        ]
    );
}

#[test]
fn suppress_on_sessions_waits_gap_plus_grace_and_drops_tombstones() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", StringSerde, I64Serde)
        .group_by_key()
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(ms(10)))
        .count()
        .suppress(Suppressed::until_window_closes())
        .to_stream()
        .to(
            "out",
            SessionWindowedSerde::new(StringSerde),
            Nullable(I64Serde),
        );
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    // A session is final once stream time passes its end by gap + grace = 10. [0,0] was
    // replaced by [0,5] (a tombstone, never emitted); [0,5] is final at 15, [20,20] at 30.
    pipe(&mut driver, &[("a", 0), ("a", 5), ("b", 20)]);
    assert_eq!(
        driver.read_output(&session_out()).unwrap(),
        vec![rec(w("a", 0, 5), Some(2), 5)]
    );
    pipe(&mut driver, &[("c", 40)]);
    assert_eq!(
        driver.read_output(&session_out()).unwrap(),
        vec![rec(w("b", 20, 20), Some(1), 20)]
    );
}

#[test]
fn suppress_without_a_windowed_aggregation_is_refused_naming_the_node() {
    let builder = StreamsBuilder::new();
    builder
        .table(
            "t",
            TimeWindowedSerde::new(StringSerde, ms(10)),
            Nullable(I64Serde),
        )
        .suppress(Suppressed::until_window_closes());
    match builder.build() {
        Err(Error::InvalidTopology(message)) => {
            assert!(message.contains("KTABLE-SUPPRESS-"), "{message}")
        }
        other => panic!("expected an invalid topology, got {other:?}"),
    }
}

fn table_in(topic: &str) -> TestInputTopic<String, Option<String>> {
    TestInputTopic::new(topic, StringSerde, Nullable(StringSerde))
}

fn string_out(topic: &str) -> TestOutputTopic<String, Option<String>> {
    TestOutputTopic::new(topic, StringSerde, Nullable(StringSerde))
}

#[test]
fn tables_from_topics_delete_on_tombstones() {
    let builder = StreamsBuilder::new();
    let table = builder.table("users", StringSerde, Nullable(StringSerde));
    let store = table.store_name().unwrap().to_string();
    assert!(store.starts_with("users-STATE-STORE-"), "{store}");
    table
        .to_stream()
        .to("out", StringSerde, Nullable(StringSerde));
    table
        .filter(|_, v| v.len() > 2)
        .map_values(|v| v.len() as i64)
        .to_stream()
        .to("lengths", StringSerde, Nullable(I64Serde));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let input = table_in("users");
    driver
        .pipe_input(&input, &s("k1"), &Some(s("abc")), 1)
        .unwrap();
    driver
        .pipe_input(&input, &s("k2"), &Some(s("x")), 2)
        .unwrap();
    driver.pipe_input(&input, &s("k1"), &None, 3).unwrap();
    // A record without a key is skipped, as Kafka does.
    driver
        .pipe_raw("users", None, Some(bytes::Bytes::from_static(b"v")), 4)
        .unwrap();
    assert_eq!(
        driver.read_output(&string_out("out")).unwrap(),
        vec![
            rec(s("k1"), Some(s("abc")), 1),
            rec(s("k2"), Some(s("x")), 2),
            rec(s("k1"), None, 3),
        ]
    );
    // "x" fails the filter: a tombstone for k2 (Kafka's filter without old values).
    let lengths = TestOutputTopic::new("lengths", StringSerde, Nullable(I64Serde));
    assert_eq!(
        driver.read_output(&lengths).unwrap(),
        vec![
            rec(s("k1"), Some(3), 1),
            rec(s("k2"), None, 2),
            rec(s("k1"), None, 3)
        ]
    );
    let store = driver.key_value_store::<String, String>(&store).unwrap();
    assert_eq!(store.all(), vec![(s("k2"), s("x"))]);
}

#[test]
fn stream_table_joins_look_up_the_table_and_only_the_stream_triggers() {
    let builder = StreamsBuilder::new();
    let limits = builder.table("limits", StringSerde, Nullable(I64Serde));
    let payments = builder.stream("payments", StringSerde, I64Serde);
    payments
        .join_table(&limits, |amount, limit| format!("{amount}/{limit}"))
        .to("inner", StringSerde, StringSerde);
    payments
        .left_join_table(&limits, |amount, limit| {
            format!("{amount}/{}", limit.map_or(s("none"), i64::to_string))
        })
        .to("left", StringSerde, StringSerde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let limits = TestInputTopic::new("limits", StringSerde, Nullable(I64Serde));
    let payments = TestInputTopic::new("payments", StringSerde, I64Serde);
    driver.pipe_input(&limits, &s("c1"), &Some(100), 0).unwrap();
    driver.pipe_input(&payments, &s("c1"), &50, 5).unwrap();
    driver.pipe_input(&payments, &s("c2"), &10, 6).unwrap();
    // A table update alone emits nothing.
    driver.pipe_input(&limits, &s("c2"), &Some(20), 7).unwrap();
    driver.pipe_input(&payments, &s("c2"), &30, 8).unwrap();
    driver.pipe_input(&limits, &s("c1"), &None, 9).unwrap();
    driver.pipe_input(&payments, &s("c1"), &1, 10).unwrap();
    let read = |driver: &mut TopologyTestDriver, topic: &str| {
        driver
            .read_output(&TestOutputTopic::new(topic, StringSerde, StringSerde))
            .unwrap()
    };
    assert_eq!(
        read(&mut driver, "inner"),
        vec![rec(s("c1"), s("50/100"), 5), rec(s("c2"), s("30/20"), 8)]
    );
    assert_eq!(
        read(&mut driver, "left"),
        vec![
            rec(s("c1"), s("50/100"), 5),
            rec(s("c2"), s("10/none"), 6),
            rec(s("c2"), s("30/20"), 8),
            rec(s("c1"), s("1/none"), 10),
        ]
    );
}

#[test]
fn table_table_joins_emit_on_either_side_and_propagate_tombstones() {
    let builder = StreamsBuilder::new();
    let left = builder.table("left", StringSerde, Nullable(StringSerde));
    let right = builder.table("right", StringSerde, Nullable(StringSerde));
    let or_null = |v: Option<&String>| v.cloned().unwrap_or_else(|| s("null"));
    left.join(&right, |l, r| format!("{l}+{r}")).to_stream().to(
        "inner",
        StringSerde,
        Nullable(StringSerde),
    );
    left.left_join(&right, move |l, r| format!("{l}+{}", or_null(r)))
        .to_stream()
        .to("left-out", StringSerde, Nullable(StringSerde));
    left.outer_join(&right, move |l, r| format!("{}+{}", or_null(l), or_null(r)))
        .to_stream()
        .to("outer", StringSerde, Nullable(StringSerde));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let (l, r) = (table_in("left"), table_in("right"));
    driver.pipe_input(&l, &s("k"), &Some(s("L1")), 1).unwrap();
    driver.pipe_input(&r, &s("k"), &Some(s("R1")), 2).unwrap();
    driver.pipe_input(&l, &s("k"), &Some(s("L2")), 3).unwrap();
    driver.pipe_input(&r, &s("k"), &None, 4).unwrap();
    driver.pipe_input(&l, &s("k"), &None, 5).unwrap();
    driver.pipe_input(&r, &s("k2"), &Some(s("R2")), 6).unwrap();
    let v = |value: &str| Some(s(value));
    // Inner: output once both sides hold k (2, 3); the right delete at 4 deletes the result;
    // the left delete at 5 finds no right value: nothing; k2 has no left value: nothing.
    assert_eq!(
        driver.read_output(&string_out("inner")).unwrap(),
        vec![
            rec(s("k"), v("L1+R1"), 2),
            rec(s("k"), v("L2+R1"), 3),
            rec(s("k"), None, 4),
        ]
    );
    // Left: every left value, joined with null while the right is missing (1, 4); the left
    // delete at 5 deletes the result; the right-only k2 emits nothing.
    assert_eq!(
        driver.read_output(&string_out("left-out")).unwrap(),
        vec![
            rec(s("k"), v("L1+null"), 1),
            rec(s("k"), v("L1+R1"), 2),
            rec(s("k"), v("L2+R1"), 3),
            rec(s("k"), v("L2+null"), 4),
            rec(s("k"), None, 5),
        ]
    );
    // Outer: as left, plus the right-only k2.
    assert_eq!(
        driver.read_output(&string_out("outer")).unwrap(),
        vec![
            rec(s("k"), v("L1+null"), 1),
            rec(s("k"), v("L1+R1"), 2),
            rec(s("k"), v("L2+R1"), 3),
            rec(s("k"), v("L2+null"), 4),
            rec(s("k"), None, 5),
            rec(s("k2"), v("null+R2"), 6),
        ]
    );
}

/// Pipes `(side, value, timestamp)` to the "l" or "r" topic, all with key "k".
fn pipe_sides(driver: &mut TopologyTestDriver, records: &[(&str, &str, i64)]) {
    for (side, value, t) in records {
        let topic = TestInputTopic::new(side, StringSerde, StringSerde);
        driver.pipe_input(&topic, &s("k"), &s(value), *t).unwrap();
    }
}

fn joined(driver: &mut TopologyTestDriver) -> Vec<(String, i64)> {
    driver
        .read_output(&TestOutputTopic::new("out", StringSerde, StringSerde))
        .unwrap()
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect()
}

fn join_driver(windows: JoinWindows, kind: &str) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    let left = builder.stream("l", StringSerde, StringSerde);
    let right = builder.stream("r", StringSerde, StringSerde);
    let name = |v: Option<&String>| v.cloned().unwrap_or_else(|| s("none"));
    let out = match kind {
        "inner" => left.join(&right, |l, r| format!("{l}/{r}"), windows),
        "left" => left.left_join(&right, move |l, r| format!("{l}/{}", name(r)), windows),
        _ => left.outer_join(
            &right,
            move |l, r| format!("{}/{}", name(l), name(r)),
            windows,
        ),
    };
    out.to("out", StringSerde, StringSerde);
    TopologyTestDriver::new(builder.build().unwrap())
}

#[test]
fn stream_stream_inner_join_matches_within_the_window_on_both_sides() {
    let mut driver = join_driver(
        JoinWindows::of_time_difference_with_no_grace(ms(10)),
        "inner",
    );
    // a@100 joins right records in [90, 110] (bounds inclusive): x@105 and y@110, not
    // z@111. b@121 joins right records in [111, 131]: z only. Each result carries the
    // larger timestamp.
    pipe_sides(
        &mut driver,
        &[
            ("l", "a", 100),
            ("r", "x", 105),
            ("r", "y", 110),
            ("r", "z", 111),
            ("l", "b", 121),
        ],
    );
    assert_eq!(
        joined(&mut driver),
        vec![(s("a/x"), 105), (s("a/y"), 110), (s("b/z"), 121)]
    );
}

#[test]
fn stream_stream_join_windows_can_be_asymmetric() {
    // before 0, after 10: a left record at t joins right records in [t, t + 10]; a right
    // record at t joins left records in [t - 10, t].
    let windows = JoinWindows::of_time_difference_and_grace(ms(0), ms(100)).after(ms(10));
    let mut driver = join_driver(windows, "inner");
    pipe_sides(
        &mut driver,
        &[
            ("l", "a", 100),
            ("r", "x", 95),
            ("r", "y", 110),
            ("r", "z", 111),
            ("l", "b", 105),
        ],
    );
    assert_eq!(
        joined(&mut driver),
        vec![(s("a/y"), 110), (s("b/y"), 110), (s("b/z"), 111)]
    );
}

#[test]
fn stream_stream_left_join_emits_unmatched_records_when_their_window_closes() {
    let mut driver = join_driver(
        JoinWindows::of_time_difference_with_no_grace(ms(10)),
        "left",
    );
    // a@100 finds nothing and waits: at stream time 200 its window (100 + 10) has closed,
    // so a/none is emitted with a's timestamp before x@200 is processed. b@205 joins x.
    // c@300 is matched by w@305, so it is never emitted alone. e@50 arrives when its
    // window closed long ago: emitted alone at once. d@400 still waits.
    pipe_sides(
        &mut driver,
        &[
            ("l", "a", 100),
            ("r", "x", 200),
            ("l", "b", 205),
            ("l", "c", 300),
            ("r", "w", 305),
            ("l", "d", 400),
            ("l", "e", 50),
        ],
    );
    assert_eq!(
        joined(&mut driver),
        vec![
            (s("a/none"), 100),
            (s("b/x"), 205),
            (s("c/w"), 305),
            (s("e/none"), 50),
        ]
    );
}

#[test]
fn stream_stream_outer_join_emits_both_sides_after_window_and_grace() {
    let windows = JoinWindows::of_time_difference_and_grace(ms(10), ms(5));
    let mut driver = join_driver(windows, "outer");
    // x@100 (right) waits until stream time passes 100 + 10 + 5: a@200 emits none/x first.
    // y@214 comes while a's window is open (200 + 10 + 5 = 215 >= 214) and is outside it:
    // nothing. z@216 closes a's window (a/none) but not y's (214 + 15 >= 216).
    pipe_sides(
        &mut driver,
        &[
            ("r", "x", 100),
            ("l", "a", 200),
            ("r", "y", 214),
            ("r", "z", 216),
        ],
    );
    assert_eq!(
        joined(&mut driver),
        vec![(s("none/x"), 100), (s("a/none"), 200)]
    );
}

#[test]
fn deserialization_errors_fail_skip_or_go_to_a_dead_letter_topic() {
    let topology = || {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", StringSerde, I64Serde)
            .to("out", StringSerde, I64Serde);
        builder.build().unwrap()
    };
    let bad = |driver: &mut TopologyTestDriver| {
        driver.pipe_raw(
            "in",
            Some(bytes::Bytes::from_static(b"k")),
            Some(bytes::Bytes::from_static(b"not 8 bytes")),
            7,
        )
    };
    let good = |driver: &mut TopologyTestDriver| driver.pipe_input(&counts_in(), &s("k"), &1, 8);
    let out = || TestOutputTopic::new("out", StringSerde, I64Serde);

    let mut driver = TopologyTestDriver::new(topology());
    match bad(&mut driver) {
        Err(Error::Deserialize {
            topic,
            partition: 0,
            offset: 0,
            part: "value",
            ..
        }) => assert_eq!(topic, "in"),
        other => panic!("expected a deserialization error, got {other:?}"),
    }

    use weir_streams::DeserializationExceptionHandler as Handler;
    let mut driver = TopologyTestDriver::new(topology())
        .with_deserialization_exception_handler(Handler::LogAndContinue);
    bad(&mut driver).unwrap();
    good(&mut driver).unwrap();
    assert_eq!(driver.read_output(&out()).unwrap(), vec![rec(s("k"), 1, 8)]);
    assert_eq!(driver.metrics().dropped_deserialization_errors, 1);

    let mut driver = TopologyTestDriver::new(topology())
        .with_deserialization_exception_handler(Handler::DeadLetterQueue(s("in-dlq")));
    bad(&mut driver).unwrap();
    good(&mut driver).unwrap();
    assert_eq!(driver.read_output(&out()).unwrap(), vec![rec(s("k"), 1, 8)]);
    let dead = TestOutputTopic::new("in-dlq", StringSerde, StringSerde);
    assert_eq!(
        driver.read_output(&dead).unwrap(),
        vec![rec(s("k"), s("not 8 bytes"), 7)]
    );
}

#[test]
fn foreign_key_joins_follow_both_tables() {
    let builder = StreamsBuilder::new();
    let orders = builder.table("orders", StringSerde, Nullable(StringSerde));
    let products = builder.table("products", StringSerde, Nullable(StringSerde));
    // An order's value is "product:quantity".
    let product = |order: &String| order.split(':').next().unwrap_or_default().to_string();
    orders
        .join_foreign_key(&products, product, |order, name| format!("{order}={name}"))
        .to_stream()
        .to("inner", StringSerde, Nullable(StringSerde));
    orders
        .left_join_foreign_key(&products, product, |order, name| {
            format!("{order}={}", name.map_or("?", String::as_str))
        })
        .to_stream()
        .to("left-out", StringSerde, Nullable(StringSerde));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let (o, p) = (table_in("orders"), table_in("products"));
    let v = |value: &str| Some(s(value));
    driver.pipe_input(&p, &s("p1"), &v("apple"), 1).unwrap();
    driver.pipe_input(&o, &s("o1"), &v("p1:2"), 2).unwrap();
    driver.pipe_input(&o, &s("o2"), &v("p2:1"), 3).unwrap();
    driver.pipe_input(&p, &s("p2"), &v("pear"), 4).unwrap();
    driver.pipe_input(&o, &s("o1"), &v("p3:2"), 5).unwrap();
    driver
        .pipe_input(&p, &s("p1"), &v("green apple"), 6)
        .unwrap();
    driver.pipe_input(&p, &s("p2"), &None, 7).unwrap();
    driver.pipe_input(&o, &s("o2"), &None, 8).unwrap();
    // Inner: o1 joins apple (2); o2's product is missing and o2 is new: nothing (3); pear
    // arrives for o2 (4); o1 moves to the missing p3: its result is deleted (5); p1 has no
    // subscriber any more (6); p2 deleted: o2's result deleted (7); o2 deleted (8).
    assert_eq!(
        driver.read_output(&string_out("inner")).unwrap(),
        vec![
            rec(s("o1"), v("p1:2=apple"), 2),
            rec(s("o2"), v("p2:1=pear"), 4),
            rec(s("o1"), None, 5),
            rec(s("o2"), None, 7),
            rec(s("o2"), None, 8),
        ]
    );
    // Left: every order row, with "?" while its product is missing.
    assert_eq!(
        driver.read_output(&string_out("left-out")).unwrap(),
        vec![
            rec(s("o1"), v("p1:2=apple"), 2),
            rec(s("o2"), v("p2:1=?"), 3),
            rec(s("o2"), v("p2:1=pear"), 4),
            rec(s("o1"), v("p3:2=?"), 5),
            rec(s("o2"), v("p2:1=?"), 7),
            rec(s("o2"), None, 8),
        ]
    );
}

/// A null foreign key (the extractor returns `None`), as Kafka 4.4: the inner join treats the
/// row as deleted (a tombstone for the result it had, nothing for a new row); the left join
/// emits `joiner(value, None)` at once, each time the row changes, and a tombstone when the
/// row is deleted. Neither answers from the right table reach such a row, and its left
/// result is looked up like any other.
#[test]
fn a_null_foreign_key_joins_nothing() {
    let builder = StreamsBuilder::new();
    let orders = builder.table("orders", StringSerde, Nullable(StringSerde));
    let products = builder.table("products", StringSerde, Nullable(StringSerde));
    // An order's value is "product:quantity"; no product before the colon is a null key.
    let product = |order: &String| {
        let product = order.split(':').next().unwrap_or_default();
        (!product.is_empty()).then(|| product.to_string())
    };
    orders
        .join_foreign_key(&products, product, |order, name| format!("{order}={name}"))
        .to_stream()
        .to("inner", StringSerde, Nullable(StringSerde));
    let left = orders.left_join_foreign_key(&products, product, |order, name| {
        format!("{order}={}", name.map_or("?", String::as_str))
    });
    left.to_stream()
        .to("left-out", StringSerde, Nullable(StringSerde));
    builder
        .stream("lookups", StringSerde, StringSerde)
        .left_join_table(&left, |_, joined| {
            joined.cloned().unwrap_or_else(|| s("none"))
        })
        .to("looked-up", StringSerde, StringSerde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let (o, p) = (table_in("orders"), table_in("products"));
    let lookups = TestInputTopic::new("lookups", StringSerde, StringSerde);
    let v = |value: &str| Some(s(value));
    driver.pipe_input(&p, &s("p1"), &v("apple"), 1).unwrap();
    driver.pipe_input(&o, &s("o1"), &v("p1:2"), 2).unwrap();
    driver.pipe_input(&o, &s("o1"), &v(":3"), 3).unwrap();
    driver.pipe_input(&o, &s("o2"), &v(":1"), 4).unwrap();
    driver.pipe_input(&lookups, &s("o2"), &s("?"), 5).unwrap();
    driver
        .pipe_input(&p, &s("p1"), &v("green apple"), 6)
        .unwrap();
    driver.pipe_input(&o, &s("o2"), &v(":5"), 7).unwrap();
    driver.pipe_input(&o, &s("o1"), &v("p1:4"), 8).unwrap();
    driver.pipe_input(&o, &s("o2"), &None, 9).unwrap();
    driver.pipe_input(&lookups, &s("o2"), &s("?"), 10).unwrap();
    // Inner: o1 joins apple (2), its key turns null: its result is deleted (3); o2 is new
    // with a null key: nothing (4, 7, 9); p1 changes while no order subscribes (6); o1
    // subscribes again (8).
    assert_eq!(
        driver.read_output(&string_out("inner")).unwrap(),
        vec![
            rec(s("o1"), v("p1:2=apple"), 2),
            rec(s("o1"), None, 3),
            rec(s("o1"), v("p1:4=green apple"), 8),
        ]
    );
    assert_eq!(
        driver.read_output(&string_out("left-out")).unwrap(),
        vec![
            rec(s("o1"), v("p1:2=apple"), 2),
            rec(s("o1"), v(":3=?"), 3),
            rec(s("o2"), v(":1=?"), 4),
            rec(s("o2"), v(":5=?"), 7),
            rec(s("o1"), v("p1:4=green apple"), 8),
            rec(s("o2"), None, 9),
        ]
    );
    let looked_up = TestOutputTopic::new("looked-up", StringSerde, StringSerde);
    assert_eq!(
        driver.read_output(&looked_up).unwrap(),
        vec![rec(s("o2"), s(":1=?"), 5), rec(s("o2"), s("none"), 10)]
    );
}

/// Kafka 4's extractor of key and value (KIP-1104): orders keyed "region/order" join their
/// region by the key's prefix; a key without one has a null foreign key.
#[test]
fn a_foreign_key_can_come_from_the_rows_key() {
    let builder = StreamsBuilder::new();
    let orders = builder.table("orders", StringSerde, Nullable(StringSerde));
    let regions = builder.table("regions", StringSerde, Nullable(StringSerde));
    let region =
        |key: &String, _: &String| key.split_once('/').map(|(region, _)| region.to_string());
    orders
        .join_foreign_key_with_key(&regions, region, |order, region| {
            format!("{order}@{region}")
        })
        .to_stream()
        .to("inner", StringSerde, Nullable(StringSerde));
    orders
        .left_join_foreign_key_with_key(&regions, region, |order, region| {
            format!("{order}@{}", region.map_or("?", String::as_str))
        })
        .to_stream()
        .to("left-out", StringSerde, Nullable(StringSerde));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let (o, r) = (table_in("orders"), table_in("regions"));
    let v = |value: &str| Some(s(value));
    driver.pipe_input(&r, &s("r1"), &v("north"), 1).unwrap();
    driver.pipe_input(&o, &s("r1/o1"), &v("2"), 2).unwrap();
    driver.pipe_input(&o, &s("o2"), &v("1"), 3).unwrap();
    driver
        .pipe_input(&r, &s("r1"), &v("north-east"), 4)
        .unwrap();
    driver.pipe_input(&o, &s("r2/o3"), &v("5"), 5).unwrap();
    assert_eq!(
        driver.read_output(&string_out("inner")).unwrap(),
        vec![
            rec(s("r1/o1"), v("2@north"), 2),
            rec(s("r1/o1"), v("2@north-east"), 4),
        ]
    );
    assert_eq!(
        driver.read_output(&string_out("left-out")).unwrap(),
        vec![
            rec(s("r1/o1"), v("2@north"), 2),
            rec(s("o2"), v("1@?"), 3),
            rec(s("r1/o1"), v("2@north-east"), 4),
            rec(s("r2/o3"), v("5@?"), 5),
        ]
    );
}

/// Users ("region:score") regrouped by region: a user that moves is subtracted from its old
/// region and added to the new one (two records, the subtraction first), an update that
/// keeps its region is one change (subtracted, then added), and a deleted user is
/// subtracted. Count, a reduce with an adder and a subtractor, and an aggregate that shows
/// the order of its calls.
#[test]
fn a_table_regrouped_by_a_new_key_adds_and_subtracts_its_rows() {
    let builder = StreamsBuilder::new();
    let users = builder.table("users", StringSerde, Nullable(StringSerde));
    let by_region = |_: &String, value: &String| {
        let (region, score) = value.split_once(':').unwrap();
        (region.to_string(), score.to_string())
    };
    let grouped = Grouped::with(StringSerde, StringSerde);
    users
        .group_by_with(by_region, grouped)
        .count()
        .to_stream()
        .to("counts", StringSerde, Nullable(I64Serde));
    let scores = |_: &String, value: &String| {
        let (region, score) = value.split_once(':').unwrap();
        (region.to_string(), score.parse::<i64>().unwrap())
    };
    users
        .group_by_with(
            scores,
            Grouped::with(StringSerde, I64Serde).with_name("sums"),
        )
        .reduce(|sum, score| sum + score, |sum, score| sum - score)
        .to_stream()
        .to("sums", StringSerde, Nullable(I64Serde));
    users
        .group_by_with(
            by_region,
            Grouped::with(StringSerde, StringSerde).with_name("calls"),
        )
        .aggregate_with(
            String::new,
            |_, score, calls| format!("{calls}+{score}"),
            |_, score, calls| format!("{calls}-{score}"),
            Materialized::with(StringSerde, StringSerde),
        )
        .to_stream()
        .to("calls", StringSerde, Nullable(StringSerde));
    let topology = builder.build().unwrap();
    let count_store = topology
        .store_names()
        .into_iter()
        .find(|name| name.starts_with("KTABLE-AGGREGATE-STATE-STORE"))
        .unwrap();
    let mut driver = TopologyTestDriver::new(topology);
    let users_in = table_in("users");
    let v = |value: &str| Some(s(value));
    for (user, value, timestamp) in [
        ("u1", v("eu:5"), 1),
        ("u2", v("eu:3"), 2),
        ("u3", v("us:7"), 3),
        ("u1", v("us:5"), 4),
        ("u3", v("us:9"), 5),
        ("u2", None, 6),
    ] {
        driver
            .pipe_input(&users_in, &s(user), &value, timestamp)
            .unwrap();
    }
    let counts = TestOutputTopic::new("counts", StringSerde, Nullable(I64Serde));
    assert_eq!(
        driver.read_output(&counts).unwrap(),
        vec![
            rec(s("eu"), Some(1), 1),
            rec(s("eu"), Some(2), 2),
            rec(s("us"), Some(1), 3),
            rec(s("eu"), Some(1), 4),
            rec(s("us"), Some(2), 4),
            rec(s("us"), Some(2), 5),
            rec(s("eu"), Some(0), 6),
        ]
    );
    let sums = TestOutputTopic::new("sums", StringSerde, Nullable(I64Serde));
    assert_eq!(
        driver.read_output(&sums).unwrap(),
        vec![
            rec(s("eu"), Some(5), 1),
            rec(s("eu"), Some(8), 2),
            rec(s("us"), Some(7), 3),
            rec(s("eu"), Some(3), 4),
            rec(s("us"), Some(12), 4),
            rec(s("us"), Some(14), 5),
            rec(s("eu"), Some(0), 6),
        ]
    );
    let calls = driver.read_output(&string_out("calls")).unwrap();
    assert_eq!(
        calls.last().unwrap(),
        &rec(s("eu"), v("+5+3-5-3"), 6),
        "{calls:?}"
    );
    assert!(
        calls.contains(&rec(s("us"), v("+7+5-7+9"), 5)),
        "the same key's change subtracts, then adds: {calls:?}"
    );
    // The count's store is logged as Kafka's: the key and the 8-byte count.
    let changelog =
        TestOutputTopic::new(&format!("{count_store}-changelog"), StringSerde, I64Serde);
    let logged = driver.read_output(&changelog).unwrap();
    assert_eq!(logged.last().unwrap(), &rec(s("eu"), 0, 6), "{logged:?}");
}

/// Grouping a join's result is refused when built: the regrouped aggregation subtracts old
/// values, which a join's result does not send. Missing serdes are named too.
#[test]
fn a_regrouping_that_cannot_work_is_refused_when_built() {
    let builder = StreamsBuilder::new();
    let a = builder.table("a", StringSerde, Nullable(StringSerde));
    let b = builder.table("b", StringSerde, Nullable(StringSerde));
    a.join(&b, |x, y| format!("{x}{y}"))
        .group_by_with(
            |k, v| (k.clone(), v.clone()),
            Grouped::with(StringSerde, StringSerde),
        )
        .count();
    let error = builder.build().unwrap_err().to_string();
    assert!(error.contains("does not send its old values"), "{error}");

    let builder = StreamsBuilder::new();
    builder
        .table("a", StringSerde, Nullable(StringSerde))
        .group_by(|k, v| (k.clone(), v.clone()))
        .count();
    let error = builder.build().unwrap_err().to_string();
    assert!(error.contains("KTABLE-AGGREGATE-STATE-STORE"), "{error}");
    assert!(error.contains("-repartition"), "{error}");
}

/// A sink's partitioner in the driver, where every topic has one partition: `None` is the
/// default partitioner, an empty list drops the record, a partition named twice is written
/// once, and a partition the topic does not have fails the record, naming the topic.
#[test]
fn a_sinks_partitioner_drops_or_places_records() {
    let builder = StreamsBuilder::new();
    let partitioner = |topic: &str, key: &String, _: &i64, partitions: i32| {
        assert_eq!((topic, partitions), ("routed", 1));
        match key.as_str() {
            "default" => None,
            "drop" => Some(vec![]),
            "twice" => Some(vec![0, 0]),
            _ => Some(vec![1]),
        }
    };
    builder.stream("in", StringSerde, I64Serde).to_with(
        "routed",
        Produced::with(StringSerde, I64Serde).with_stream_partitioner(partitioner),
    );
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    for (key, timestamp) in [("default", 1), ("drop", 2), ("twice", 3)] {
        driver
            .pipe_input(&counts_in(), &s(key), &timestamp, timestamp)
            .unwrap();
    }
    let error = driver
        .pipe_input(&counts_in(), &s("beyond"), &4, 4)
        .unwrap_err();
    assert!(
        matches!(&error, Error::Partitioner(m) if m.contains("partition 1 of topic routed")),
        "{error}"
    );
    let out = TestOutputTopic::new("routed", StringSerde, I64Serde);
    assert_eq!(
        driver.read_output(&out).unwrap(),
        vec![rec(s("default"), 1, 1), rec(s("twice"), 3, 3)]
    );
}

/// A named foreign-key join's internal topics and stores take Kafka's names from it, and
/// its partitioners' choices must be single partitions: dropping a subscription (no
/// partition) is refused, as Kafka refuses it.
#[test]
fn a_named_foreign_key_join_names_its_topics_and_checks_its_partitioners() {
    let build = |none: bool| {
        let builder = StreamsBuilder::new();
        let orders = builder.table("orders", StringSerde, Nullable(StringSerde));
        let regions = builder.table("regions", StringSerde, Nullable(StringSerde));
        let regions_partitioner =
            move |_: &str, _: &String, _: &(), _| Some(if none { vec![] } else { vec![0] });
        orders
            .join_foreign_key_with(
                &regions,
                |_, region: &String| region.clone(),
                |order, region| format!("{order}@{region}"),
                TableJoined::named("by-region").with_other_partitioner(regions_partitioner),
            )
            .to_stream()
            .to("inner", StringSerde, Nullable(StringSerde));
        builder.build().unwrap()
    };
    let topology = build(false);
    let internal: Vec<String> = topology
        .internal_topics()
        .into_iter()
        .map(|topic| topic.name)
        .collect();
    assert_eq!(
        internal,
        [
            "by-region-subscriber-store-changelog",
            "by-region-subscription-registration-topic",
            "by-region-subscription-response-topic",
            "by-region-subscription-store-changelog",
            "orders-STATE-STORE-0000000001-changelog",
            "regions-STATE-STORE-0000000002-changelog",
        ]
    );
    let mut driver = TopologyTestDriver::new(topology);
    let (o, r) = (table_in("orders"), table_in("regions"));
    let v = |value: &str| Some(s(value));
    driver.pipe_input(&r, &s("r1"), &v("north"), 1).unwrap();
    driver.pipe_input(&o, &s("o1"), &v("r1"), 2).unwrap();
    assert_eq!(
        driver.read_output(&string_out("inner")).unwrap(),
        vec![rec(s("o1"), v("r1@north"), 2)]
    );

    let mut driver = TopologyTestDriver::new(build(true));
    let error = driver.pipe_input(&o, &s("o1"), &v("r1"), 2).unwrap_err();
    assert!(
        matches!(&error, Error::Partitioner(m) if m.contains("must choose one partition")),
        "{error}"
    );
}

/// A foreign-key join's result is a table like others: a second foreign-key join chains on
/// it (order → customer → region) and a stream looks it up by key. The chained join's rows
/// come from a join, which forwards no old values: the join itself remembers which foreign
/// key each row subscribed to, so a row that moves unsubscribes and unsets its result.
#[test]
fn a_foreign_key_joins_result_chains_and_is_looked_up() {
    let builder = StreamsBuilder::new();
    // An order names its customer; a customer names its region.
    let orders = builder.table("orders", StringSerde, Nullable(StringSerde));
    let customers = builder.table("customers", StringSerde, Nullable(StringSerde));
    let regions = builder.table("regions", StringSerde, Nullable(StringSerde));
    let with_customer = orders.join_foreign_key(
        &customers,
        |customer: &String| customer.clone(),
        |customer, region| format!("{customer}@{region}"),
    );
    with_customer
        .join_foreign_key(
            &regions,
            |joined: &String| joined.split('@').nth(1).unwrap_or_default().to_string(),
            |joined, region| format!("{joined}={region}"),
        )
        .to_stream()
        .to("out", StringSerde, Nullable(StringSerde));
    builder
        .stream("lookups", StringSerde, StringSerde)
        .left_join_table(&with_customer, |_, joined| {
            joined.cloned().unwrap_or_else(|| s("none"))
        })
        .to("looked-up", StringSerde, StringSerde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let v = |value: &str| Some(s(value));
    let lookups = TestInputTopic::new("lookups", StringSerde, StringSerde);
    driver
        .pipe_input(&table_in("regions"), &s("r1"), &v("north"), 1)
        .unwrap();
    driver
        .pipe_input(&table_in("customers"), &s("c1"), &v("r1"), 2)
        .unwrap();
    driver
        .pipe_input(&table_in("orders"), &s("o1"), &v("c1"), 3)
        .unwrap();
    driver.pipe_input(&lookups, &s("o1"), &s("?"), 4).unwrap();
    // c1 moves to r2, which has no row: o1's chained result is unset.
    driver
        .pipe_input(&table_in("customers"), &s("c1"), &v("r2"), 5)
        .unwrap();
    driver.pipe_input(&lookups, &s("o1"), &s("?"), 6).unwrap();
    // r1 changes: o1 no longer subscribes to it.
    driver
        .pipe_input(&table_in("regions"), &s("r1"), &v("north-east"), 7)
        .unwrap();
    driver
        .pipe_input(&table_in("regions"), &s("r2"), &v("south"), 8)
        .unwrap();
    driver
        .pipe_input(&table_in("orders"), &s("o1"), &None, 9)
        .unwrap();
    driver.pipe_input(&lookups, &s("o1"), &s("?"), 10).unwrap();
    assert_eq!(
        driver.read_output(&string_out("out")).unwrap(),
        vec![
            rec(s("o1"), v("c1@r1=north"), 3),
            rec(s("o1"), None, 5),
            rec(s("o1"), v("c1@r2=south"), 8),
            rec(s("o1"), None, 9),
        ]
    );
    let looked_up = TestOutputTopic::new("looked-up", StringSerde, StringSerde);
    assert_eq!(
        driver.read_output(&looked_up).unwrap(),
        vec![
            rec(s("o1"), s("c1@r1"), 4),
            rec(s("o1"), s("c1@r2"), 6),
            rec(s("o1"), s("none"), 10),
        ]
    );
}

/// A foreign-key join sends its subscriptions and answers through topics: without the
/// serdes they need the topology is refused, naming the join.
#[test]
fn a_foreign_key_join_without_the_other_tables_value_serde_is_refused() {
    let builder = StreamsBuilder::new();
    let orders = builder.table("orders", StringSerde, Nullable(StringSerde));
    // map_values drops the value serde.
    let customers = builder
        .table("customers", StringSerde, Nullable(StringSerde))
        .map_values(|name| name.len());
    orders
        .join_foreign_key(&customers, String::clone, |order, len| {
            format!("{order}{len}")
        })
        .to_stream()
        .to("out", StringSerde, Nullable(StringSerde));
    match builder.build() {
        Err(Error::InvalidTopology(message)) => assert!(
            message.contains("KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-")
                && message.contains("the other table's value serde"),
            "{message}"
        ),
        other => panic!("expected an invalid topology, got {other:?}"),
    }
}

#[test]
fn global_table_joins_look_up_a_key_computed_from_the_record() {
    let builder = StreamsBuilder::new();
    let products = builder.global_table("products", StringSerde, Nullable(StringSerde));
    assert!(products.store_name().starts_with("products-STATE-STORE-"));
    let orders = builder.stream("orders", StringSerde, StringSerde);
    // An order's value is "product:quantity"; the lookup key is its product.
    let product =
        |_: &String, order: &String| order.split(':').next().unwrap_or_default().to_string();
    orders
        .join_global(&products, product, |order, name| format!("{order}={name}"))
        .to("inner", StringSerde, StringSerde);
    orders
        .left_join_global(&products, product, |order, name| {
            format!("{order}={}", name.map_or("?", String::as_str))
        })
        .to("left-out", StringSerde, StringSerde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let orders = TestInputTopic::new("orders", StringSerde, StringSerde);
    driver
        .pipe_input(&table_in("products"), &s("p1"), &Some(s("apple")), 1)
        .unwrap();
    // Global table updates do not move stream time.
    assert_eq!(driver.stream_time(), -1);
    driver.pipe_input(&orders, &s("o1"), &s("p1:2"), 5).unwrap();
    driver.pipe_input(&orders, &s("o2"), &s("p2:1"), 6).unwrap();
    driver
        .pipe_input(&table_in("products"), &s("p1"), &None, 7)
        .unwrap();
    driver.pipe_input(&orders, &s("o3"), &s("p1:1"), 8).unwrap();
    let read = |driver: &mut TopologyTestDriver, topic: &str| {
        driver
            .read_output(&TestOutputTopic::new(topic, StringSerde, StringSerde))
            .unwrap()
    };
    assert_eq!(
        read(&mut driver, "inner"),
        vec![rec(s("o1"), s("p1:2=apple"), 5)]
    );
    assert_eq!(
        read(&mut driver, "left-out"),
        vec![
            rec(s("o1"), s("p1:2=apple"), 5),
            rec(s("o2"), s("p2:1=?"), 6),
            rec(s("o3"), s("p1:1=?"), 8),
        ]
    );
}

#[test]
fn joins_look_up_tables_computed_from_other_tables() {
    let builder = StreamsBuilder::new();
    let names = builder.table("names", StringSerde, Nullable(StringSerde));
    let cities = builder.table("cities", StringSerde, Nullable(StringSerde));
    // Long names, upper-cased, joined with the city: a table with no store of its own.
    let people = names
        .filter(|_, name| name.len() > 2)
        .map_values(|name| name.to_uppercase())
        .join(&cities, |name, city| format!("{name}@{city}"));
    assert_eq!(people.store_name(), None);
    builder
        .stream("visits", StringSerde, StringSerde)
        .left_join_table(&people, |page, person| {
            format!("{page} by {}", person.map_or("?", String::as_str))
        })
        .to("out", StringSerde, StringSerde);
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    let visits = TestInputTopic::new("visits", StringSerde, StringSerde);
    let v = |value: &str| Some(s(value));
    driver
        .pipe_input(&table_in("names"), &s("u1"), &v("ann"), 1)
        .unwrap();
    driver
        .pipe_input(&table_in("names"), &s("u2"), &v("bo"), 1)
        .unwrap();
    driver
        .pipe_input(&table_in("cities"), &s("u1"), &v("oslo"), 1)
        .unwrap();
    driver
        .pipe_input(&table_in("cities"), &s("u2"), &v("rome"), 1)
        .unwrap();
    driver.pipe_input(&visits, &s("u1"), &s("/a"), 2).unwrap();
    // "bo" is filtered out, so u2 is not in the joined table.
    driver.pipe_input(&visits, &s("u2"), &s("/b"), 3).unwrap();
    driver
        .pipe_input(&table_in("cities"), &s("u1"), &None, 4)
        .unwrap();
    driver.pipe_input(&visits, &s("u1"), &s("/c"), 5).unwrap();
    assert_eq!(
        driver
            .read_output(&TestOutputTopic::new("out", StringSerde, StringSerde))
            .unwrap(),
        vec![
            rec(s("u1"), s("/a by ANN@oslo"), 2),
            rec(s("u2"), s("/b by ?"), 3),
            rec(s("u1"), s("/c by ?"), 5),
        ]
    );
}

#[test]
fn sessions_and_sliding_windows_leave_their_stores_after_retention() {
    // Session store retention is gap + grace = 10 from the latest session end: once b's
    // session ends at 100, a's session (end 0) has expired and is dropped from the store.
    let mut driver = session_driver(10, 0);
    pipe(&mut driver, &[("a", 0), ("b", 100)]);
    let sessions = driver
        .key_value_store::<Windowed<String>, i64>("sessions")
        .unwrap();
    assert_eq!(sessions.all(), vec![(w("b", 100, 100), 1)]);
    // Sliding window retention is 2 * 10 + grace 0 = 20 from the latest window start: b's
    // left window starts at 90, so a's window [0,10] has expired.
    let mut driver = sliding_driver(10, 0);
    pipe(&mut driver, &[("a", 0), ("b", 100)]);
    let windows = driver
        .key_value_store::<Windowed<String>, i64>("sliding")
        .unwrap();
    assert_eq!(windows.all(), vec![(w("b", 90, 100), 1)]);
}
