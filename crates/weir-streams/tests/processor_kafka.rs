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
