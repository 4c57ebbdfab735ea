//! Property: aggregations through the driver agree with a model computed by hand.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir_streams::{
    I64Serde, Nullable, StreamsBuilder, StringSerde, TestInputTopic, TestOutputTopic,
    TopologyTestDriver, TumblingWindows, Windowed,
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
            .materialized_as("counts")
            .count();
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
}
