//! Property: aggregations through the driver agree with a model computed by hand.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir_streams::{
    I64Serde, Materialized, Nullable, SessionWindowedSerde, SessionWindows, SlidingWindows,
    StreamsBuilder, StringSerde, Suppressed, TestInputTopic, TestOutputTopic, TimeWindowedSerde,
    TimeWindows, TopologyTestDriver, TumblingWindows, Windowed,
};

fn inputs() -> impl Strategy<Value = Vec<(u8, i64)>> {
    proptest::collection::vec((0u8..6, 0i64..50_000), 0..200)
}

proptest! {
    /// The count store and the last update per key equal a HashMap count of the input.
    #[test]
    fn count_per_key_matches_a_model(records in inputs()) {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", StringSerde, I64Serde)
            .group_by_key()
            .materialized_as("counts")
            .count()
            .to_stream()
            .to("out", StringSerde, Nullable(I64Serde));
        let mut driver = TopologyTestDriver::new(builder.build().unwrap());
        let input = TestInputTopic::new("in", StringSerde, I64Serde);
        let mut model: BTreeMap<String, i64> = BTreeMap::new();
        for (key, timestamp) in &records {
            let key = format!("k{key}");
            driver.pipe_input(&input, &key, &0, *timestamp).unwrap();
            *model.entry(key).or_default() += 1;
        }
        let store = driver.key_value_store::<String, i64>("counts").unwrap();
        prop_assert_eq!(store.all(), model.clone().into_iter().collect::<Vec<_>>());
        let updates = driver.read_output(&TestOutputTopic::new("out", StringSerde, I64Serde)).unwrap();
        prop_assert_eq!(updates.len(), records.len());
        let mut last = BTreeMap::new();
        for update in updates {
            last.insert(update.key, update.value);
        }
        prop_assert_eq!(last, model);
    }

    /// Windowed counts equal a model that applies Kafka's rule: a record counts unless its
    /// window's end plus grace is at or before the stream time seen so far.
    #[test]
    fn windowed_count_matches_a_model(records in inputs(), grace in 0i64..5_000) {
        let size = 10_000;
        let builder = StreamsBuilder::new();
        builder
            .stream("in", StringSerde, I64Serde)
            .group_by_key()
            .windowed_by(
                TumblingWindows::of(Duration::from_millis(size as u64))
                    .grace(Duration::from_millis(grace as u64)),
            )
            // Closed windows stay in the store (by default only size plus grace).
            .count_with(Materialized::as_store("counts").with_retention(Duration::from_secs(3600)));
        let mut driver = TopologyTestDriver::new(builder.build().unwrap());
        let input = TestInputTopic::new("in", StringSerde, I64Serde);
        let mut model: BTreeMap<(String, i64), i64> = BTreeMap::new();
        let (mut stream_time, mut late) = (-1, 0);
        for (key, timestamp) in &records {
            let key = format!("k{key}");
            driver.pipe_input(&input, &key, &0, *timestamp).unwrap();
            stream_time = stream_time.max(*timestamp);
            let start = timestamp - timestamp % size;
            if start + size + grace <= stream_time {
                late += 1;
            } else {
                *model.entry((key, start)).or_default() += 1;
            }
        }
        let store = driver.key_value_store::<Windowed<String>, i64>("counts").unwrap();
        let actual: BTreeMap<(String, i64), i64> =
            store.all().into_iter().map(|(w, count)| ((w.key, w.window.start), count)).collect();
        prop_assert_eq!(actual, model);
        prop_assert_eq!(driver.metrics().dropped_late, late);
    }

    /// Hopping windows: a record counts in every window `[s, s + size)` with `s` a
    /// non-negative multiple of the advance holding it, unless that window had closed.
    #[test]
    fn hopping_count_matches_a_model(
        records in inputs(),
        advance in 1i64..10_000,
        grace in 0i64..5_000,
    ) {
        let size = 10_000;
        let windows = TimeWindows::of_size_and_grace(
            Duration::from_millis(size as u64),
            Duration::from_millis(grace as u64),
        )
        .advance_by(Duration::from_millis(advance as u64))
        .unwrap();
        let builder = StreamsBuilder::new();
        builder
            .stream("in", StringSerde, I64Serde)
            .group_by_key()
            .windowed_by(windows)
            // Closed windows stay in the store (by default only size plus grace).
            .count_with(Materialized::as_store("counts").with_retention(Duration::from_secs(3600)));
        let mut driver = TopologyTestDriver::new(builder.build().unwrap());
        let input = TestInputTopic::new("in", StringSerde, I64Serde);
        let mut model: BTreeMap<(String, i64), i64> = BTreeMap::new();
        let (mut stream_time, mut late) = (-1, 0);
        for (key, timestamp) in &records {
            let key = format!("k{key}");
            driver.pipe_input(&input, &key, &0, *timestamp).unwrap();
            stream_time = stream_time.max(*timestamp);
            let mut start = 0;
            while start <= *timestamp {
                if *timestamp < start + size {
                    if start + size + grace <= stream_time {
                        late += 1;
                    } else {
                        *model.entry((key.clone(), start)).or_default() += 1;
                    }
                }
                start += advance;
            }
        }
        let store = driver.key_value_store::<Windowed<String>, i64>("counts").unwrap();
        let actual: BTreeMap<(String, i64), i64> =
            store.all().into_iter().map(|(w, count)| ((w.key, w.window.start), count)).collect();
        prop_assert_eq!(actual, model);
        prop_assert_eq!(driver.metrics().dropped_late, late);
    }

    /// Sliding windows, with a grace long enough that nothing is late: every stored window
    /// `[s, s + d]` counts exactly the key's records within it, each record's left window
    /// (or `[0, d]` for early records) exists, and the last update per window is what the
    /// store holds.
    #[test]
    fn sliding_windows_hold_exactly_their_records(
        records in proptest::collection::vec((0u8..3, 0i64..2_000), 0..80),
        difference in 1i64..300,
    ) {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", StringSerde, I64Serde)
            .group_by_key()
            .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(
                Duration::from_millis(difference as u64),
                Duration::from_secs(100),
            ))
            .materialized_as("sliding")
            .count()
            .to_stream()
            .to("out", SessionWindowedSerde::new(StringSerde), Nullable(I64Serde));
        let mut driver = TopologyTestDriver::new(builder.build().unwrap());
        let input = TestInputTopic::new("in", StringSerde, I64Serde);
        for (key, timestamp) in &records {
            driver.pipe_input(&input, &format!("k{key}"), &0, *timestamp).unwrap();
        }
        let store = driver.key_value_store::<Windowed<String>, i64>("sliding").unwrap();
        let windows = store.all();
        for (windowed, count) in &windows {
            prop_assert_eq!(windowed.window.end - windowed.window.start, difference);
            let expected = records
                .iter()
                .filter(|(key, t)| {
                    format!("k{key}") == windowed.key
                        && windowed.window.start <= *t
                        && *t <= windowed.window.end
                })
                .count() as i64;
            prop_assert_eq!(*count, expected, "window {:?}", windowed);
        }
        for (key, t) in &records {
            let start = (t - difference).max(0);
            prop_assert!(
                windows.iter().any(|(w, _)| w.key == format!("k{key}") && w.window.start == start),
                "no left window for {} at {}", key, t
            );
        }
        let updates = driver
            .read_output(&TestOutputTopic::new("out", SessionWindowedSerde::new(StringSerde), Nullable(I64Serde)))
            .unwrap();
        let mut last = BTreeMap::new();
        for update in updates {
            last.insert(update.key, update.value);
        }
        let stored: BTreeMap<_, _> = windows.into_iter().map(|(w, c)| (w, Some(c))).collect();
        prop_assert_eq!(last, stored);
    }

    /// Session windows, with a grace long enough that nothing is late: the live sessions
    /// (the last update per session is not a tombstone) are the model's, records split
    /// wherever two consecutive timestamps of a key are more than the gap apart.
    #[test]
    fn sessions_match_a_model(
        records in proptest::collection::vec((0u8..3, 0i64..5_000), 0..100),
        gap in 1i64..500,
    ) {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", StringSerde, I64Serde)
            .group_by_key()
            .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(
                Duration::from_millis(gap as u64),
                Duration::from_secs(100),
            ))
            .materialized_as("sessions")
            .count()
            .to_stream()
            .to("out", SessionWindowedSerde::new(StringSerde), Nullable(I64Serde));
        let mut driver = TopologyTestDriver::new(builder.build().unwrap());
        let input = TestInputTopic::new("in", StringSerde, I64Serde);
        let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (key, timestamp) in &records {
            let key = format!("k{key}");
            driver.pipe_input(&input, &key, &0, *timestamp).unwrap();
            per_key.entry(key).or_default().push(*timestamp);
        }
        let mut model = BTreeMap::new();
        for (key, mut times) in per_key {
            times.sort_unstable();
            let mut session = (times[0], times[0], 0i64);
            for t in times {
                if t - session.1 > gap {
                    model.insert((key.clone(), session.0, session.1), session.2);
                    session = (t, t, 0);
                }
                session.1 = t;
                session.2 += 1;
            }
            model.insert((key.clone(), session.0, session.1), session.2);
        }
        let store = driver.key_value_store::<Windowed<String>, i64>("sessions").unwrap();
        let stored: BTreeMap<_, _> = store
            .all()
            .into_iter()
            .map(|(w, c)| ((w.key, w.window.start, w.window.end), c))
            .collect();
        prop_assert_eq!(&stored, &model);
        let updates = driver
            .read_output(&TestOutputTopic::new("out", SessionWindowedSerde::new(StringSerde), Nullable(I64Serde)))
            .unwrap();
        let mut last = BTreeMap::new();
        for update in updates {
            last.insert((update.key.key, update.key.window.start, update.key.window.end), update.value);
        }
        let live: BTreeMap<_, _> = last.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        prop_assert_eq!(live, model);
    }

    /// Suppress emits every window exactly once, with its final count, once stream time
    /// passes its end plus grace; a window still open emits nothing.
    #[test]
    fn suppress_emits_each_window_once_with_its_final_value(
        records in inputs(),
        grace in 0i64..5_000,
    ) {
        let size = 10_000;
        let builder = StreamsBuilder::new();
        builder
            .stream("in", StringSerde, I64Serde)
            .group_by_key()
            .windowed_by(TimeWindows::of_size_and_grace(
                Duration::from_millis(size as u64),
                Duration::from_millis(grace as u64),
            ))
            // Closed windows stay in the store (by default only size plus grace).
            .count_with(Materialized::as_store("counts").with_retention(Duration::from_secs(3600)))
            .suppress(Suppressed::until_window_closes())
            .to_stream()
            .to(
                "out",
                TimeWindowedSerde::new(StringSerde, Duration::from_millis(size as u64)),
                Nullable(I64Serde),
            );
        let mut driver = TopologyTestDriver::new(builder.build().unwrap());
        let input = TestInputTopic::new("in", StringSerde, I64Serde);
        for (key, timestamp) in &records {
            driver.pipe_input(&input, &format!("k{key}"), &0, *timestamp).unwrap();
        }
        // A record far ahead closes every window so far.
        driver.pipe_input(&input, &"flush".to_string(), &0, 1_000_000).unwrap();
        let store = driver.key_value_store::<Windowed<String>, i64>("counts").unwrap();
        let finals: BTreeMap<Windowed<String>, i64> =
            store.all().into_iter().filter(|(w, _)| w.key != "flush").collect();
        let emitted = driver
            .read_output(&TestOutputTopic::new(
                "out",
                TimeWindowedSerde::new(StringSerde, Duration::from_millis(size as u64)),
                Nullable(I64Serde),
            ))
            .unwrap();
        let mut seen = BTreeMap::new();
        for record in emitted {
            prop_assert!(seen.insert(record.key.clone(), record.value).is_none(), "{:?} twice", record.key);
        }
        let finals: BTreeMap<_, _> = finals.into_iter().map(|(w, c)| (w, Some(c))).collect();
        prop_assert_eq!(seen, finals);
    }
}
