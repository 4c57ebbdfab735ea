//! The admin client end to end against an in-process broker: every operation, with per-item
//! errors surfaced next to successes.
#![expect(clippy::panic, reason = "tests fail on any error")]

#[allow(unreachable_pub, reason = "support is shared by several test crates")]
mod support;

use support::{TestBroker, end_offset};
use weir_client::Error;
use weir_client::admin::{Admin, AlterConfigOp, ConfigResource, NewTopic, OffsetSpec};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_protocol::ErrorCode;
use weir_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use weir_protocol::messages::{MetadataRequest, OffsetCommitRequest};

fn code(result: &Result<impl std::fmt::Debug, Error>) -> Option<ErrorCode> {
    match result {
        Err(Error::Kafka { code, .. }) => Some(*code),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => None,
    }
}

#[tokio::test]
async fn topics_and_partitions() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    let admin = Admin::from_client(client.clone());
    let results = admin
        .create_topics(&[
            NewTopic::new("orders", 2).config("retention.ms", "3600000"),
            NewTopic::new("bad/name", 1),
            NewTopic::new("empty", 0),
        ])
        .await
        .unwrap();
    assert_eq!(results[0].0, "orders");
    assert!(results[0].1.is_ok());
    assert_eq!(
        code(&results[1].1),
        Some(ErrorCode::INVALID_TOPIC_EXCEPTION)
    );
    assert_eq!(code(&results[2].1), Some(ErrorCode::INVALID_PARTITIONS));
    // A second create of the same topic is refused with the broker's message.
    let again = admin
        .create_topics(&[NewTopic::new("orders", 2)])
        .await
        .unwrap();
    match &again[0].1 {
        Err(Error::Kafka { code, message }) => {
            assert_eq!(*code, ErrorCode::TOPIC_ALREADY_EXISTS);
            assert!(message.as_deref().unwrap_or_default().contains("orders"));
        }
        other => panic!("{other:?}"),
    }

    let grown = admin
        .create_partitions(&[("orders", 5), ("missing", 3)])
        .await
        .unwrap();
    assert!(grown[0].1.is_ok());
    assert_eq!(
        code(&grown[1].1),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    assert_eq!(client.topic("orders").await.unwrap().partitions.len(), 5);

    let deleted = admin.delete_topics(&["orders", "missing"]).await.unwrap();
    assert!(deleted[0].1.is_ok());
    assert_eq!(
        code(&deleted[1].1),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    // The client looked "orders" up before; refreshing must not auto-create it again.
    client.refresh_metadata().await.unwrap();
    let (all, _) = client
        .send_any(MetadataRequest {
            topics: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        all.topics
            .iter()
            .all(|t| t.name.as_deref() != Some("orders"))
    );
}

#[tokio::test]
async fn describe_and_alter_configs() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    let admin = Admin::from_client(client.clone());
    admin
        .create_topics(&[NewTopic::new("configured", 1)])
        .await
        .unwrap();
    let topic = ConfigResource::Topic("configured".into());
    let retention = |entries: &Vec<weir_client::admin::ConfigEntry>| {
        entries
            .iter()
            .find(|e| e.name == "retention.ms")
            .cloned()
            .unwrap()
    };
    let described = admin
        .describe_configs(std::slice::from_ref(&topic))
        .await
        .unwrap();
    let before = retention(described[0].1.as_ref().unwrap());
    assert!(before.is_default);

    let altered = admin
        .alter_configs(&[(
            topic.clone(),
            vec![AlterConfigOp::Set("retention.ms".into(), "12345".into())],
        )])
        .await
        .unwrap();
    assert!(altered[0].1.is_ok());
    let described = admin
        .describe_configs(std::slice::from_ref(&topic))
        .await
        .unwrap();
    let after = retention(described[0].1.as_ref().unwrap());
    assert_eq!(after.value.as_deref(), Some("12345"));
    assert!(!after.is_default);

    admin
        .alter_configs(&[(
            topic.clone(),
            vec![AlterConfigOp::Delete("retention.ms".into())],
        )])
        .await
        .unwrap();
    let described = admin
        .describe_configs(std::slice::from_ref(&topic))
        .await
        .unwrap();
    assert!(retention(described[0].1.as_ref().unwrap()).is_default);

    // Bad values and unknown resources are per-item errors.
    let refused = admin
        .alter_configs(&[(
            topic,
            vec![AlterConfigOp::Set("retention.ms".into(), "soon".into())],
        )])
        .await
        .unwrap();
    assert_eq!(code(&refused[0].1), Some(ErrorCode::INVALID_CONFIG));
    let missing = admin
        .describe_configs(&[ConfigResource::Topic("nope".into())])
        .await
        .unwrap();
    assert_eq!(
        code(&missing[0].1),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );

    let broker_id = client.brokers()[0].node_id;
    let described = admin
        .describe_configs(&[ConfigResource::Broker(broker_id)])
        .await
        .unwrap();
    assert!(
        described[0]
            .1
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "num.partitions")
    );
}

#[tokio::test]
async fn offsets_and_records() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    let admin = Admin::from_client(client.clone());
    admin
        .create_topics(&[NewTopic::new("history", 1)])
        .await
        .unwrap();
    let producer = Producer::from_client(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    for i in 0..10 {
        producer
            .send(
                ProducerRecord::new("history")
                    .value(format!("v{i}"))
                    .timestamp(1_000_000 + i * 1000),
            )
            .await
            .unwrap();
    }
    let tp = ("history".to_string(), 0);
    let offsets = admin
        .list_offsets(&[
            (tp.clone(), OffsetSpec::Latest),
            (("history".to_string(), 9), OffsetSpec::Latest),
        ])
        .await
        .unwrap();
    assert_eq!(offsets[0].1.as_ref().unwrap().offset, 10);
    assert_eq!(
        code(&offsets[1].1),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    let earliest = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Earliest)])
        .await
        .unwrap();
    assert_eq!(earliest[0].1.as_ref().unwrap().offset, 0);
    let by_time = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Timestamp(1_004_500))])
        .await
        .unwrap();
    assert_eq!(by_time[0].1.as_ref().unwrap().offset, 5);

    let deleted = admin.delete_records(&[(tp.clone(), 4)]).await.unwrap();
    assert_eq!(*deleted[0].1.as_ref().unwrap(), 4);
    let earliest = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Earliest)])
        .await
        .unwrap();
    assert_eq!(earliest[0].1.as_ref().unwrap().offset, 4);
    assert_eq!(end_offset(&client, "history", 0).await, 10);
    let beyond = admin.delete_records(&[(tp, 50)]).await.unwrap();
    assert_eq!(code(&beyond[0].1), Some(ErrorCode::OFFSET_OUT_OF_RANGE));
}

#[tokio::test]
async fn groups_and_cluster() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    let admin = Admin::from_client(client.clone());
    admin
        .create_topics(&[NewTopic::new("consumed", 1)])
        .await
        .unwrap();
    // A standalone offset commit creates an empty group.
    let coordinator = client.find_coordinator("audit").await.unwrap();
    let (response, _) = client
        .send_to(
            coordinator,
            OffsetCommitRequest {
                group_id: "audit".into(),
                generation_id_or_member_epoch: -1,
                retention_time_ms: -1,
                topics: vec![OffsetCommitRequestTopic {
                    name: "consumed".into(),
                    partitions: vec![OffsetCommitRequestPartition {
                        partition_index: 0,
                        committed_offset: 0,
                        committed_leader_epoch: -1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(response.topics[0].partitions[0].error_code, 0);

    let groups = admin.list_groups().await.unwrap();
    let audit = groups.iter().find(|g| g.group_id == "audit").unwrap();
    assert_eq!(audit.coordinator, coordinator);
    let described = admin.describe_groups(&["audit"]).await.unwrap();
    let description = described[0].1.as_ref().unwrap();
    assert_eq!(description.state, "Empty");
    assert!(description.members.is_empty());

    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].port, i32::from(broker.addr.port()));
    assert!(!cluster.cluster_id.is_empty());
}

#[tokio::test]
async fn listing_topics_and_group_offsets() {
    let broker = TestBroker::start(&[]).await;
    let admin = Admin::connect(weir_client::ClientConfig::new(&broker.addr.to_string()))
        .await
        .unwrap();
    admin
        .create_topics(&[NewTopic::new("listed", 2)])
        .await
        .unwrap();
    let names: Vec<String> = admin
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(names.contains(&"listed".to_string()), "{names:?}");
    // Describing never creates a topic, even with the broker's auto-creation on.
    let described = admin.describe_topics(&["listed", "nope"]).await.unwrap();
    assert_eq!(described[0].1.as_ref().unwrap().partitions.len(), 2);
    assert_eq!(
        code(&described[1].1),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    assert!(
        !admin
            .list_topics()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "nope")
    );

    // Offsets of a group with no members: altered as an admin, fetched, deleted with it.
    let altered = admin
        .alter_group_offsets(
            "reset-me",
            &[(("listed".into(), 0), 3), (("listed".into(), 1), 0)],
        )
        .await
        .unwrap();
    assert!(altered.iter().all(|(_, r)| r.is_ok()), "{altered:?}");
    assert_eq!(
        admin.list_group_offsets("reset-me").await.unwrap(),
        [
            (("listed".to_string(), 0), 3),
            (("listed".to_string(), 1), 0)
        ]
    );
    let deleted = admin
        .delete_groups(&["reset-me", "never-was"])
        .await
        .unwrap();
    assert!(deleted[0].1.is_ok(), "{deleted:?}");
    assert_eq!(code(&deleted[1].1), Some(ErrorCode::GROUP_ID_NOT_FOUND));
    assert!(
        admin
            .list_group_offsets("reset-me")
            .await
            .unwrap()
            .is_empty()
    );

    // A topic's configs carry their source.
    let configs = admin
        .describe_configs(&[ConfigResource::Topic("listed".into())])
        .await
        .unwrap();
    let entries = configs[0].1.as_ref().unwrap();
    let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
    assert_eq!(retention.source, weir_client::admin::ConfigSource::Default);
}
