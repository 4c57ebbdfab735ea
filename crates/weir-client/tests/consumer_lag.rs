//! The consumer's fetch lag (`Consumer::current_lag`) against an in-process Weir broker: what
//! Kafka Streams reads to decide whether a task waits for a partition the broker holds more
//! records of.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub)]
mod support;

use std::time::Duration;

use support::{TestBroker, create_topic};
use weir_client::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition,
};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};

/// Sends `count` records to partition 0 of `topic`, each on its own (one batch per record,
/// so that a small `max.partition.fetch.bytes` returns one at a time).
async fn produce(broker: &TestBroker, topic: &str, count: usize) {
    let producer = Producer::connect(ProducerConfig::new(broker.config()))
        .await
        .unwrap();
    for i in 0..count {
        let record = ProducerRecord::new(topic)
            .partition(0)
            .value(format!("v{i}"));
        producer.send(record).await.unwrap();
    }
}

async fn recv(consumer: &mut Consumer) -> ConsumerRecord {
    tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .expect("a record within 20 s")
        .unwrap()
}

/// A consumer of partition 0 of `topic` outside any group, from the start.
async fn consumer(broker: &TestBroker, topic: &str, partition_max_bytes: i32) -> Consumer {
    let mut config = ConsumerConfig::default();
    config.client = broker.config();
    config.auto_offset_reset = OffsetReset::Earliest;
    config.fetch_max_wait = Duration::from_millis(100);
    config.max_partition_fetch_bytes = partition_max_bytes;
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.assign(&[TopicPartition::new(topic, 0)]).unwrap();
    consumer
}

/// The lag is unknown before the first fetch response, then what the broker holds past the
/// records handed out; a seek makes it unknown until the next response.
#[tokio::test]
async fn the_lag_is_what_the_broker_holds_past_the_records_handed_out() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "lag", 1).await;
    produce(&broker, "lag", 10).await;
    let tp = TopicPartition::new("lag", 0);

    let mut consumer = consumer(&broker, "lag", 1 << 20).await;
    assert_eq!(consumer.current_lag(&tp), None, "no fetch yet");
    assert_eq!(
        consumer.current_lag(&TopicPartition::new("other", 0)),
        None,
        "not assigned"
    );
    for offset in 0..4 {
        assert_eq!(recv(&mut consumer).await.offset, offset);
        assert_eq!(consumer.current_lag(&tp), Some(9 - offset));
    }
    for _ in 4..10 {
        recv(&mut consumer).await;
    }
    assert_eq!(consumer.current_lag(&tp), Some(0));

    consumer.seek(&tp, 3).unwrap();
    assert_eq!(consumer.current_lag(&tp), None, "after a seek");
    assert_eq!(recv(&mut consumer).await.offset, 3);
    assert_eq!(consumer.current_lag(&tp), Some(6));

    // Records produced later count once a response has seen them.
    for _ in 4..10 {
        recv(&mut consumer).await;
    }
    produce(&broker, "lag", 2).await;
    assert_eq!(recv(&mut consumer).await.offset, 10);
    assert_eq!(consumer.current_lag(&tp), Some(1));
    broker.stop().await;
}

/// With responses cut to one record each, the lag counts what was not fetched yet: the
/// remainder of the partition, not of the response.
#[tokio::test]
async fn the_lag_counts_records_not_fetched_yet() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "lag-cut", 1).await;
    produce(&broker, "lag-cut", 6).await;
    let tp = TopicPartition::new("lag-cut", 0);

    let mut consumer = consumer(&broker, "lag-cut", 1).await;
    assert_eq!(consumer.current_lag(&tp), None, "no fetch yet");
    for offset in 0..6 {
        assert_eq!(recv(&mut consumer).await.offset, offset);
        assert_eq!(consumer.current_lag(&tp), Some(5 - offset));
        assert!(consumer.try_recv().is_none(), "one record per response");
    }
    broker.stop().await;
}
