//! What the weir-streams tests against the in-process broker share: starting an application,
//! the offsets its group committed, the latest counts in an output topic, and a word count.

use std::collections::BTreeMap;

use tokio::sync::oneshot;
use weir_client::consumer::{Consumer, ConsumerConfig, TopicPartition};
use weir_streams::{
    I64Serde, KafkaStreams, Materialized, Nullable, Serde, StreamsBuilder, StringSerde, Topology,
};

use crate::support::{TestBroker, fetch_all};

/// Starts the application on a task; returns the way to stop it and the stopped instance.
pub(crate) fn start(
    streams: KafkaStreams,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<KafkaStreams>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut streams = streams;
    let task = tokio::spawn(async move {
        streams
            .run_until(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        streams
    });
    (stop, task)
}

/// The offsets the group `group` committed on partitions `0..partitions` of `topic`, summed.
pub(crate) async fn committed_to(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    partitions: i32,
) -> i64 {
    let mut config = ConsumerConfig::new(&broker.addr.to_string(), group);
    config.client = broker.config();
    let mut consumer = Consumer::connect(config).await.unwrap();
    let partitions: Vec<_> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer
        .committed(&partitions)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.unwrap_or(0))
        .sum()
}

/// Each key's latest count in partition 0 of `topic`.
pub(crate) async fn latest_counts(broker: &TestBroker, topic: &str) -> BTreeMap<String, i64> {
    let client = broker.client().await;
    fetch_all(&client, topic, 0)
        .await
        .into_iter()
        .map(|record| {
            let key = StringSerde.deserialize(&record.key.unwrap()).unwrap();
            (key, I64Serde.deserialize(&record.value.unwrap()).unwrap())
        })
        .collect()
}

/// Counts the words of `words` in the store `word-counts`, written to `word-counts`.
pub(crate) fn word_counts() -> Result<Topology, weir_streams::Error> {
    let builder = StreamsBuilder::new();
    builder
        .stream("words", StringSerde, StringSerde)
        .group_by_key()
        .count_with(Materialized::as_store("word-counts"))
        .to_stream()
        .to("word-counts", StringSerde, Nullable(I64Serde));
    builder.build()
}
