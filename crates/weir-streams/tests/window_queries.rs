//! Window and session store queries by time range through the TopologyTestDriver, and the
//! retention of time-window stores.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::ops::Bound;
use std::time::Duration;

use weir_streams::{
    Error, I64Serde, Materialized, SessionWindows, SlidingWindows, StreamsBuilder, StringSerde,
    TestInputTopic, TimeWindows, TopologyTestDriver, Window, Windowed,
};

fn s(value: &str) -> String {
    value.to_string()
}

fn windowed(key: &str, start: i64, end: i64) -> Windowed<String> {
    Windowed {
        key: s(key),
        window: Window { start, end },
    }
}

fn pipe(driver: &mut TopologyTestDriver, records: &[(&str, i64)]) {
    let input = TestInputTopic::new("in", StringSerde, StringSerde);
    for (key, timestamp) in records {
        driver
            .pipe_input(&input, &s(key), &s("v"), *timestamp)
            .unwrap();
    }
}

/// A topology counting `in`'s records per key in `windows`, in the store `counts`, kept for
/// `retention` (Kafka's default without: size plus grace).
fn counting(
    windows: TimeWindows,
    retention: Option<Duration>,
) -> Result<TopologyTestDriver, Error> {
    let builder = StreamsBuilder::new();
    let mut materialized = Materialized::as_store("counts");
    if let Some(retention) = retention {
        materialized = materialized.with_retention(retention);
    }
    builder
        .stream("in", StringSerde, StringSerde)
        .group_by_key()
        .windowed_by(windows)
        .count_with(materialized);
    Ok(TopologyTestDriver::new(builder.build()?))
}

/// A retention that keeps closed windows queryable in these tests.
const AN_HOUR: Option<Duration> = Some(Duration::from_secs(3600));

fn tumbling(size_ms: u64) -> TimeWindows {
    TimeWindows::of_size_with_no_grace(Duration::from_millis(size_ms))
}

#[test]
fn a_window_store_answers_by_key_and_window_start_range() {
    let mut driver = counting(tumbling(10), AN_HOUR).unwrap();
    pipe(
        &mut driver,
        &[
            ("b", 5),
            ("a", 1),
            ("a", 12),
            ("a", 15),
            ("c", 21),
            ("a", 33),
            ("b", 34),
        ],
    );
    let store = driver.window_store::<String, i64>("counts").unwrap();
    assert_eq!(store.name(), "counts");
    assert_eq!(store.fetch(&s("a"), 10), Some(2));
    assert_eq!(
        store.fetch(&s("a"), 20),
        None,
        "no window of a starts at 20"
    );
    assert_eq!(
        store.fetch(&s("a"), 11),
        None,
        "a window start, not a time in it"
    );
    // Both bounds inclusive, on window starts, oldest first.
    assert_eq!(
        store.fetch_range(&s("a"), 0, 30),
        vec![(0, 1), (10, 2), (30, 1)]
    );
    assert_eq!(store.fetch_range(&s("a"), 1, 29), vec![(10, 2)]);
    assert_eq!(store.fetch_range(&s("a"), 30, 0), vec![], "from after to");
    assert_eq!(
        store.backward_fetch(&s("a"), 0, 30),
        vec![(30, 1), (10, 2), (0, 1)]
    );
    // Several keys: by window start, then key.
    assert_eq!(
        store.fetch_key_range(&s("a"), &s("b"), 0, 30),
        vec![
            (windowed("a", 0, 10), 1),
            (windowed("b", 0, 10), 1),
            (windowed("a", 10, 20), 2),
            (windowed("a", 30, 40), 1),
            (windowed("b", 30, 40), 1),
        ]
    );
    assert_eq!(store.fetch_key_range(&s("b"), &s("a"), 0, 30), vec![]);
    assert_eq!(
        store.backward_fetch_key_range(&s("b"), &s("c"), 20, 30),
        vec![(windowed("b", 30, 40), 1), (windowed("c", 20, 30), 1)]
    );
    assert_eq!(
        store.fetch_all(10, 20),
        vec![(windowed("a", 10, 20), 2), (windowed("c", 20, 30), 1)]
    );
    assert_eq!(store.all().len(), 6);
    assert_eq!(store.all()[0], (windowed("a", 0, 10), 1));
    assert_eq!(store.all()[5], (windowed("b", 30, 40), 1));
}

/// Key ranges open at either end, as Kafka's `fetch(null, keyTo, …)`, and excluded bounds.
#[test]
fn a_window_store_answers_key_ranges_open_at_either_end() {
    let mut driver = counting(tumbling(10), AN_HOUR).unwrap();
    pipe(&mut driver, &[("a", 1), ("b", 5), ("c", 12), ("d", 15)]);
    let store = driver.window_store::<String, i64>("counts").unwrap();
    let (a0, b0) = (windowed("a", 0, 10), windowed("b", 0, 10));
    let (c10, d10) = (windowed("c", 10, 20), windowed("d", 10, 20));
    assert_eq!(
        store.fetch_keys(..=&s("b"), 0, 100),
        vec![(a0.clone(), 1), (b0.clone(), 1)]
    );
    assert_eq!(
        store.fetch_keys(&s("b").., 0, 100),
        vec![(b0.clone(), 1), (c10.clone(), 1), (d10.clone(), 1)]
    );
    assert_eq!(
        store.fetch_keys(.., 10, 100),
        vec![(c10.clone(), 1), (d10.clone(), 1)]
    );
    // Excluded bounds leave out every window of their key.
    assert_eq!(
        store.fetch_keys((Bound::Excluded(&s("a")), Bound::Excluded(&s("d"))), 0, 100),
        vec![(b0.clone(), 1), (c10.clone(), 1)]
    );
    assert_eq!(store.fetch_keys(&s("b")..&s("b"), 0, 100), vec![]);
    assert_eq!(store.fetch_keys(&s("d")..=&s("a"), 0, 100), vec![]);
    assert_eq!(
        store.backward_fetch_keys(..&s("c"), 0, 100),
        vec![(b0, 1), (a0, 1)]
    );
}

#[test]
fn hopping_and_sliding_windows_are_window_stores() {
    let hopping = TimeWindows::of_size_with_no_grace(Duration::from_millis(10))
        .advance_by(Duration::from_millis(5))
        .unwrap();
    let mut driver = counting(hopping, AN_HOUR).unwrap();
    pipe(&mut driver, &[("a", 7), ("a", 12)]);
    let store = driver.window_store::<String, i64>("counts").unwrap();
    assert_eq!(
        store.fetch_range(&s("a"), 0, 100),
        vec![(0, 1), (5, 2), (10, 1)]
    );

    let builder = StreamsBuilder::new();
    builder
        .stream("in", StringSerde, StringSerde)
        .group_by_key()
        .windowed_by_sliding(SlidingWindows::of_time_difference_with_no_grace(
            Duration::from_millis(10),
        ))
        .materialized_as("sliding")
        .count();
    let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    pipe(&mut driver, &[("a", 20), ("a", 25)]);
    let store = driver.window_store::<String, i64>("sliding").unwrap();
    // a@20's left window [10, 20], a@25's [15, 25], a@20's right window [21, 31].
    assert_eq!(
        store.fetch_range(&s("a"), 0, 100),
        vec![(10, 1), (15, 2), (21, 1)]
    );
    assert!(matches!(
        driver.session_store::<String, i64>("sliding"),
        Err(Error::StoreKind { .. })
    ));
}

/// Sessions with a gap of 10, counted in the store `sessions` kept for `retention` (by
/// default gap plus grace, 10), and a key-value store `totals`.
fn sessions(retention: Option<Duration>) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream("in", StringSerde, StringSerde)
        .group_by_key();
    let mut materialized = Materialized::as_store("sessions");
    if let Some(retention) = retention {
        materialized = materialized.with_retention(retention);
    }
    grouped
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(
            Duration::from_millis(10),
        ))
        .count_with(materialized);
    grouped.materialized_as("totals").count();
    TopologyTestDriver::new(builder.build().unwrap())
}

#[test]
fn a_session_store_finds_the_sessions_that_overlap_a_span() {
    let mut driver = sessions(Some(Duration::from_secs(1)));
    // a: [0, 5], [30, 30], [50, 58]; b: [3, 3].
    pipe(
        &mut driver,
        &[
            ("a", 0),
            ("a", 5),
            ("b", 3),
            ("a", 30),
            ("a", 50),
            ("a", 58),
        ],
    );
    let store = driver.session_store::<String, i64>("sessions").unwrap();
    assert_eq!(store.name(), "sessions");
    let a = [
        (windowed("a", 0, 5), 2),
        (windowed("a", 30, 30), 1),
        (windowed("a", 50, 58), 2),
    ];
    assert_eq!(store.fetch(&s("a")), a.to_vec());
    assert_eq!(store.fetch(&s("b")), vec![(windowed("b", 3, 3), 1)]);
    assert_eq!(store.fetch(&s("c")), vec![]);
    // Ending at or after 5, starting at or before 30: both bounds inclusive.
    assert_eq!(store.find_sessions(&s("a"), 5, 30), a[..2].to_vec());
    assert_eq!(store.find_sessions(&s("a"), 6, 49), a[1..2].to_vec());
    assert_eq!(store.find_sessions(&s("a"), 31, 49), vec![]);
    assert_eq!(store.find_sessions(&s("a"), 58, 58), a[2..].to_vec());
    assert_eq!(
        store.backward_find_sessions(&s("a"), 0, 100),
        a.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(store.backward_fetch(&s("a"))[0], a[2]);
    // Several keys, either end open: by end, then key, then start.
    assert_eq!(
        store.fetch_keys(..),
        vec![
            (windowed("b", 3, 3), 1),
            a[0].clone(),
            a[1].clone(),
            a[2].clone()
        ]
    );
    assert_eq!(store.fetch_keys(&s("b")..), vec![(windowed("b", 3, 3), 1)]);
    assert_eq!(
        store.find_sessions_of_keys(..=&s("b"), 0, 10),
        vec![(windowed("b", 3, 3), 1), a[0].clone()]
    );
    assert_eq!(store.find_sessions_of_keys(..&s("a"), 0, 100), vec![]);
    assert_eq!(store.fetch_session(&s("a"), 50, 58), Some(2));
    assert_eq!(store.fetch_session(&s("a"), 50, 57), None);
    // A session store is no window store, a key-value store neither.
    assert!(matches!(
        driver.window_store::<String, i64>("sessions"),
        Err(Error::StoreKind { .. })
    ));
    assert!(matches!(
        driver.session_store::<String, i64>("totals"),
        Err(Error::StoreKind { .. })
    ));
    assert!(matches!(
        driver.session_store::<String, i64>("nope"),
        Err(Error::UnknownStore(_))
    ));
    assert!(matches!(
        driver.session_store::<String, String>("sessions"),
        Err(Error::StoreType(_))
    ));
}

/// Sessions expire `gap + grace` after the latest session end, as Kafka's session stores.
#[test]
fn expired_sessions_are_not_found() {
    let mut driver = sessions(None);
    pipe(&mut driver, &[("a", 0), ("a", 100)]);
    let store = driver.session_store::<String, i64>("sessions").unwrap();
    // [0, 0] ends 100 before the latest end: at or past the retention of 10.
    assert_eq!(store.fetch(&s("a")), vec![(windowed("a", 100, 100), 1)]);
}

/// The retention may equal window size plus grace, not be less (Kafka's
/// IllegalArgumentException at the DSL call: here the topology is refused).
#[test]
fn a_retention_under_window_size_plus_grace_is_refused() {
    let windows = tumbling(10).grace(Duration::from_millis(5));
    assert!(counting(windows, Some(Duration::from_millis(15))).is_ok());
    match counting(windows, Some(Duration::from_millis(14))) {
        Err(Error::InvalidTopology(message)) => {
            assert!(message.contains("counts"), "{message}");
            assert!(message.contains("retention"), "{message}");
        }
        other => panic!("expected the topology refused, got {:?}", other.err()),
    }
    let builder = StreamsBuilder::new();
    builder
        .stream("in", StringSerde, StringSerde)
        .group_by_key()
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(
            Duration::from_millis(10),
        ))
        .aggregate_with(
            || 0,
            |_, _, count: i64| count + 1,
            |_, a, b| a + b,
            Materialized::as_store("s")
                .with_value_serde(I64Serde)
                .with_retention(Duration::from_millis(9)),
        );
    assert!(matches!(builder.build(), Err(Error::InvalidTopology(_))));
}

/// A window whose start is at or before the latest window start minus the retention is
/// gone: from queries at once, from the store at the next sweep.
#[test]
fn time_windows_expire_by_retention_at_the_boundary() {
    // Size 10, retention 20: once a window starts at 30, [10, 20) (start 10 = 30 - 20) has
    // expired and [20, 30) has not.
    let mut driver = counting(tumbling(10), Some(Duration::from_millis(20))).unwrap();
    pipe(&mut driver, &[("a", 0), ("a", 10), ("a", 20), ("b", 29)]);
    let store = driver.window_store::<String, i64>("counts").unwrap();
    assert_eq!(
        store.fetch_range(&s("a"), 0, 100),
        vec![(10, 1), (20, 1)],
        "[0, 10) starts at 20 - 20"
    );
    pipe(&mut driver, &[("a", 30)]);
    assert_eq!(store.fetch_range(&s("a"), 0, 100), vec![(20, 1), (30, 1)]);
    assert_eq!(store.fetch(&s("a"), 10), None);
    assert_eq!(store.fetch(&s("b"), 20), Some(1));
    assert_eq!(
        store.all(),
        vec![
            (windowed("a", 20, 30), 1),
            (windowed("b", 20, 30), 1),
            (windowed("a", 30, 40), 1),
        ]
    );
    // The store drops expired windows a retention period apart (Kafka drops whole
    // segments): the sweep at 20 dropped [0, 10); [10, 20) waits for the one at 40.
    let kv = driver
        .key_value_store::<Windowed<String>, i64>("counts")
        .unwrap();
    assert_eq!(kv.approximate_num_entries(), 4);
    pipe(&mut driver, &[("a", 40)]);
    assert_eq!(kv.approximate_num_entries(), 2);
    assert_eq!(
        store.all(),
        vec![(windowed("a", 30, 40), 1), (windowed("a", 40, 50), 1)]
    );
}

/// Kafka 4's default retention is window size plus grace (Kafka 3.x kept a day): a window
/// is gone from the store once closed, as Kafka's store's fetches skip it.
#[test]
fn time_windows_are_kept_size_plus_grace_by_default() {
    let mut driver = counting(tumbling(1_000), None).unwrap();
    pipe(&mut driver, &[("a", 0), ("a", 1_000), ("a", 2_000)]);
    let store = driver.window_store::<String, i64>("counts").unwrap();
    assert_eq!(
        store.fetch_range(&s("a"), 0, 2_000),
        vec![(2_000, 1)],
        "windows starting a retention (1 s) or more before the latest start expired"
    );
    let windows =
        TimeWindows::of_size_and_grace(Duration::from_millis(1_000), Duration::from_millis(500));
    let mut driver = counting(windows, None).unwrap();
    pipe(&mut driver, &[("a", 0), ("a", 1_000), ("a", 2_000)]);
    let store = driver.window_store::<String, i64>("counts").unwrap();
    assert_eq!(
        store.fetch_range(&s("a"), 0, 2_000),
        vec![(1_000, 1), (2_000, 1)],
        "kept 1.5 s"
    );
}
