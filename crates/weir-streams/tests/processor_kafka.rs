//! The processor API under KafkaStreams against an in-process Weir broker: a processor counts
//! per key in its store, and only its wall-clock punctuation writes the totals to a topic.
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

use std::collections::BTreeMap;
use std::time::Duration;

use support::{TestBroker, create_topic, fetch_all};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_streams::processor::Record;
use weir_streams::{
    Error, I64Serde, KafkaStreams, KeyValueStore, Processor, ProcessorContext, PunctuationType,
    Serde, Stores, StreamsBuilder, StreamsConfig, StringSerde,
};

/// Counts records per key; every 200 ms of wall-clock time, writes each key's total.
#[derive(Default)]
struct CountPerKey {
    counts: Option<KeyValueStore<String, i64>>,
}

impl Processor<String, String, String, i64> for CountPerKey {
    fn init(&mut self, context: &mut ProcessorContext<'_, String, i64>) -> Result<(), Error> {
        let counts = context.key_value_store::<String, i64>("counts")?;
        self.counts = Some(counts.clone());
        context.schedule(
            Duration::from_millis(200),
            PunctuationType::WallClockTime,
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
        counts.put(record.key.clone(), counts.get(&record.key).unwrap_or(0) + 1);
        Ok(())
    }
}

#[tokio::test]
async fn wall_clock_punctuation_writes_to_a_topic_without_new_input() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "events", 1).await;
    create_topic(&client, "totals", 1).await;
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for key in ["a", "b", "a"] {
        producer
            .enqueue(ProducerRecord::new("events").key(key).value("x"))
            .await
            .unwrap();
    }
    producer.flush().await;

    let topology = || {
        let builder = StreamsBuilder::new();
        builder.add_state_store(Stores::key_value_store_builder(
            Stores::in_memory_key_value_store("counts"),
            StringSerde,
            I64Serde,
        ));
        builder
            .stream("events", StringSerde, StringSerde)
            .process(CountPerKey::default, &["counts"])
            .to("totals", StringSerde, I64Serde);
        builder.build()
    };
    let mut config = StreamsConfig::new("punctuating-counts", &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    let mut streams = KafkaStreams::new(topology, config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        streams
            .run_until(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        streams
    });

    // Processing forwards nothing: every record in `totals` comes from a punctuation, and
    // punctuations go on after the three inputs, so the latest totals arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let latest = loop {
        let totals: BTreeMap<String, i64> = fetch_all(&client, "totals", 0)
            .await
            .into_iter()
            .map(|record| {
                let key = StringSerde.deserialize(&record.key.unwrap()).unwrap();
                (key, I64Serde.deserialize(&record.value.unwrap()).unwrap())
            })
            .collect();
        if totals == BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 1)]) {
            break totals;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "totals so far: {totals:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    let store = streams.key_value_store::<String, i64>("counts").unwrap();
    assert_eq!(store.all().into_iter().collect::<BTreeMap<_, _>>(), latest);
    streams.close().await.unwrap();
    broker.stop().await;
}

/// Counts records per key in tumbling windows of 10 s in the window store `windows`, and
/// forwards each window's count.
#[derive(Default)]
struct WindowedCount {
    windows: Option<weir_streams::WindowStore<String, i64>>,
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
        let start = record.timestamp - record.timestamp % 10_000;
        let count = windows.fetch(&record.key, start).unwrap_or(0) + 1;
        windows.put(record.key.clone(), count, start);
        context.forward(Record::new(record.key, count, record.timestamp))
    }
}

/// A processor's window store under KafkaStreams: its changelog topic is created and holds
/// Kafka's window store keys (key, start, sequence number 0) and plain values, and
/// `KafkaStreams::window_store` queries it.
#[tokio::test]
async fn a_processor_window_store_is_logged_and_queried() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "events", 1).await;
    create_topic(&client, "counts", 1).await;
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for (key, timestamp) in [("a", 1_000), ("a", 2_000), ("b", 12_000)] {
        producer
            .enqueue(
                ProducerRecord::new("events")
                    .key(key)
                    .value("x")
                    .timestamp(timestamp),
            )
            .await
            .unwrap();
    }
    producer.flush().await;

    let topology = || {
        let builder = StreamsBuilder::new();
        builder.add_state_store(Stores::window_store_builder(
            Stores::persistent_window_store(
                "windows",
                Duration::from_secs(60),
                Duration::from_secs(10),
                false,
            ),
            StringSerde,
            I64Serde,
        ));
        builder
            .stream("events", StringSerde, StringSerde)
            .process(WindowedCount::default, &["windows"])
            .to("counts", StringSerde, I64Serde);
        builder.build()
    };
    let mut config = StreamsConfig::new("processor-windows", &broker.addr.to_string());
    config.client = broker.config();
    config.commit_interval = Duration::from_millis(100);
    let mut streams = KafkaStreams::new(topology, config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        streams
            .run_until(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        streams
    });
    let changelog = "processor-windows-windows-changelog";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while support::end_offset(&client, changelog, 0).await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "changelog not written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    let streams = task.await.unwrap();
    let logged: Vec<(Vec<u8>, Vec<u8>, i64)> = fetch_all(&client, changelog, 0)
        .await
        .into_iter()
        .map(|r| {
            (
                r.key.unwrap().to_vec(),
                r.value.unwrap().to_vec(),
                r.timestamp,
            )
        })
        .collect();
    let key = |key: &str, start: i64| {
        let mut bytes = key.as_bytes().to_vec();
        bytes.extend_from_slice(&start.to_be_bytes());
        bytes.extend_from_slice(&0_u32.to_be_bytes());
        bytes
    };
    assert_eq!(
        logged,
        vec![
            (key("a", 0), 1_i64.to_be_bytes().to_vec(), 1_000),
            (key("a", 0), 2_i64.to_be_bytes().to_vec(), 2_000),
            (key("b", 10_000), 1_i64.to_be_bytes().to_vec(), 12_000),
        ]
    );
    let windows = streams.window_store::<String, i64>("windows").unwrap();
    assert_eq!(
        windows.fetch_range(&"a".to_string(), 0, 20_000),
        vec![(0, 2)]
    );
    assert_eq!(windows.fetch(&"b".to_string(), 10_000), Some(1));
    streams.close().await.unwrap();
    broker.stop().await;
}
