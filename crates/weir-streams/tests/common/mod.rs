//! What the weir-streams tests against the in-process broker share: starting an application,
//! the offsets its group committed, the latest counts in an output topic, a word count, and
//! the partitions each member of a stable group holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::oneshot;
use weir_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, TopicPartition};
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

/// Each member's partitions of `topic` in the group `group`, by the member's `client.id`,
/// once the group is stable with `members` members that together hold `partitions`
/// partitions of it.
pub(crate) async fn wait_for_layout(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    members: usize,
    partitions: usize,
) -> BTreeMap<String, BTreeSet<i32>> {
    let admin = weir_client::admin::Admin::connect(broker.config())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let described = admin.describe_groups(&[group]).await.unwrap();
        let layout: BTreeMap<String, BTreeSet<i32>> = described
            .iter()
            .filter_map(|(_, group)| group.as_ref().ok())
            .filter(|group| group.state == "Stable")
            .flat_map(|group| &group.members)
            .map(|member| {
                let mine = member
                    .assigned_partitions()
                    .unwrap()
                    .into_iter()
                    .filter(|(t, _)| t == topic)
                    .map(|(_, p)| p)
                    .collect();
                (member.client_id.clone(), mine)
            })
            .collect();
        let held: usize = layout.values().map(BTreeSet::len).sum();
        if layout.len() == members && held == partitions {
            return layout;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group} never settled: {layout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every record of partition 0 of `topic` that a `read_committed` consumer reads, as (key,
/// count), once the partition has no open transaction.
pub(crate) async fn read_committed_counts(broker: &TestBroker, topic: &str) -> Vec<(String, i64)> {
    let client = broker.client().await;
    let end = crate::support::end_offset(&client, topic, 0).await;
    let config = ConsumerConfig {
        client: broker.config(),
        group_id: None,
        isolation_level: IsolationLevel::ReadCommitted,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(config).await.unwrap();
    let partition = TopicPartition::new(topic.to_string(), 0);
    consumer.assign(std::slice::from_ref(&partition)).unwrap();
    consumer.seek(&partition, 0).unwrap();
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while consumer.position(&partition).await.unwrap() < end {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic}: read_committed stopped before {end}"
        );
        if let Ok(record) = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
        {
            let record = record.unwrap();
            let key = StringSerde.deserialize(&record.key.unwrap()).unwrap();
            records.push((key, I64Serde.deserialize(&record.value.unwrap()).unwrap()));
        }
    }
    records
}
