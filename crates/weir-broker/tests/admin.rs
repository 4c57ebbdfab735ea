//! Admin APIs (CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs,
//! IncrementalAlterConfigs, DescribeCluster, DescribeLogDirs, AlterReplicaLogDirs,
//! DescribeTopicPartitions) and the
//! admin HTTP port, against an in-process broker.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on any error"
)]

#[allow(
    unreachable_pub,
    reason = "support is shared by several test crates; `expect` would fail if it is fixed there"
)]
mod support;

use support::{RawClient, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_protocol::messages::alter_replica_log_dirs_request::{
    AlterReplicaLogDir, AlterReplicaLogDirTopic,
};
use weir_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use weir_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use weir_protocol::messages::delete_topics_request::DeleteTopicState;
use weir_protocol::messages::describe_configs_request::DescribeConfigsResource;
use weir_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use weir_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use weir_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use weir_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic;
use weir_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir_protocol::messages::metadata_request::MetadataRequestTopic;
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_protocol::messages::{
    AlterConfigsRequest, AlterReplicaLogDirsRequest, ApiVersionsRequest, CreatePartitionsRequest,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeLogDirsRequest, DescribeLogDirsResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, FetchRequest,
    IncrementalAlterConfigsRequest, MetadataRequest, ProduceRequest, alter_configs_request,
    incremental_alter_configs_request,
};
use weir_protocol::{ApiKey, ErrorCode, Uuid};
use weir_records::{Record, RecordBatchBuilder};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

fn topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: -1,
        configs: configs
            .iter()
            .map(|(k, v)| CreatableTopicConfig {
                name: (*k).into(),
                value: Some((*v).into()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

async fn create(
    client: &mut RawClient,
    topics: Vec<CreatableTopic>,
    validate_only: bool,
    version: i16,
) -> CreateTopicsResponse {
    let request = CreateTopicsRequest {
        topics,
        validate_only,
        ..Default::default()
    };
    client.send(request, version).await
}

async fn describe_topic(
    client: &mut RawClient,
    name: &str,
    keys: Option<Vec<&str>>,
) -> Vec<DescribeConfigsResourceResult> {
    let request = DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: TOPIC,
            resource_name: name.into(),
            configuration_keys: keys.map(|k| k.into_iter().map(String::from).collect()),
            ..Default::default()
        }],
        include_synonyms: true,
        ..Default::default()
    };
    let response = client.send(request, 4).await;
    assert_eq!(response.results.len(), 1);
    assert_eq!(
        response.results[0].error_code, 0,
        "{:?}",
        response.results[0].error_message
    );
    response.results[0].configs.clone()
}

fn config<'a>(
    configs: &'a [DescribeConfigsResourceResult],
    name: &str,
) -> &'a DescribeConfigsResourceResult {
    configs
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no config {name} in {configs:?}"))
}

async fn partition_count(client: &mut RawClient, name: &str) -> Option<usize> {
    let request = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(name.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: false,
        ..Default::default()
    };
    let response = client.send(request, 12).await;
    (response.topics[0].error_code == 0).then(|| response.topics[0].partitions.len())
}

#[tokio::test]
async fn api_versions_advertises_the_admin_apis() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let response = client.send(ApiVersionsRequest::default(), 3).await;
    for (key, min, max) in [
        (ApiKey::CreateTopics, 2, 7),
        (ApiKey::DeleteTopics, 1, 6),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::AlterConfigs, 0, 2),
        (ApiKey::CreatePartitions, 0, 3),
        (ApiKey::IncrementalAlterConfigs, 0, 1),
        (ApiKey::DescribeCluster, 0, 2),
        (ApiKey::DescribeLogDirs, 1, 4),
        (ApiKey::AlterReplicaLogDirs, 1, 2),
        (ApiKey::DescribeTopicPartitions, 0, 0),
    ] {
        let api = response
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap_or_else(|| panic!("{key:?} not advertised"));
        assert_eq!((api.min_version, api.max_version), (min, max), "{key:?}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn create_topics_checks_everything_and_creates_logs() {
    let broker = TestBroker::start(&[("num.partitions", "2")]).await;
    let mut client = broker.client().await;

    // A valid topic with an override: v7 returns its id, partitions and configs.
    let response = create(
        &mut client,
        vec![topic("orders", 3, &[("retention.ms", "60000")])],
        false,
        7,
    )
    .await;
    let result = &response.topics[0];
    assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    assert_eq!(result.error_message, None);
    assert_eq!(result.num_partitions, 3);
    assert_eq!(result.replication_factor, 1);
    assert_ne!(result.topic_id, Uuid::ZERO);
    let configs = result.configs.as_ref().unwrap();
    let retention = configs.iter().find(|c| c.name == "retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("60000"));
    assert_eq!(retention.config_source, DYNAMIC_TOPIC_CONFIG);
    let segment = configs.iter().find(|c| c.name == "segment.bytes").unwrap();
    assert_eq!(segment.config_source, DEFAULT_CONFIG);
    for p in 0..3 {
        assert!(broker.dir.join(format!("orders-{p}")).is_dir());
    }
    assert_eq!(partition_count(&mut client, "orders").await, Some(3));

    // Defaults: -1 partitions takes num.partitions; old versions work.
    let response = create(&mut client, vec![topic("defaults", -1, &[])], false, 2).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(partition_count(&mut client, "defaults").await, Some(2));

    // validate_only checks and creates nothing.
    let response = create(&mut client, vec![topic("dry", 4, &[])], true, 7).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].num_partitions, 4);
    assert_eq!(response.topics[0].topic_id, Uuid::ZERO);
    assert_eq!(partition_count(&mut client, "dry").await, None);
    assert!(!broker.dir.join("dry-0").exists());

    // Each failure has its code and a message, and the others in the request still succeed.
    let mut replicated = topic("replicated", 1, &[]);
    replicated.replication_factor = 3;
    let mut elsewhere = topic("elsewhere", -1, &[]);
    elsewhere.replication_factor = -1;
    elsewhere.assignments = vec![CreatableReplicaAssignment {
        partition_index: 0,
        broker_ids: vec![5],
        ..Default::default()
    }];
    let mut assigned = topic("assigned", -1, &[]);
    assigned.assignments = (0..2)
        .map(|p| CreatableReplicaAssignment {
            partition_index: p,
            broker_ids: vec![0],
            ..Default::default()
        })
        .collect();
    let response = create(
        &mut client,
        vec![
            topic("orders", 1, &[]),
            topic("bad name", 1, &[]),
            topic("bad-config", 1, &[("retention.ms", "soon")]),
            topic("unknown-config", 1, &[("no.such.config", "1")]),
            topic("zero", 0, &[]),
            replicated,
            elsewhere,
            assigned,
            topic("twice", 1, &[]),
            topic("twice", 1, &[]),
            topic("__consumer_offsets", 1, &[]),
            topic(
                "stored",
                1,
                &[("min.insync.replicas", "1"), ("compression.type", "zstd")],
            ),
            topic("bad-stored", 1, &[("min.insync.replicas", "0")]),
        ],
        false,
        5,
    )
    .await;
    let codes: Vec<(String, i16)> = response
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.error_code))
        .collect();
    let expect = [
        ("orders", ErrorCode::TOPIC_ALREADY_EXISTS),
        ("bad name", ErrorCode::INVALID_TOPIC_EXCEPTION),
        ("bad-config", ErrorCode::INVALID_CONFIG),
        ("unknown-config", ErrorCode::INVALID_CONFIG),
        ("zero", ErrorCode::INVALID_PARTITIONS),
        ("replicated", ErrorCode::INVALID_REPLICATION_FACTOR),
        ("elsewhere", ErrorCode::INVALID_REPLICA_ASSIGNMENT),
        ("assigned", ErrorCode::NONE),
        ("twice", ErrorCode::INVALID_REQUEST),
        ("twice", ErrorCode::INVALID_REQUEST),
        ("__consumer_offsets", ErrorCode::INVALID_REQUEST),
        ("stored", ErrorCode::NONE),
        ("bad-stored", ErrorCode::INVALID_CONFIG),
    ];
    let expect: Vec<(String, i16)> = expect
        .iter()
        .map(|(n, c)| (n.to_string(), c.code()))
        .collect();
    assert_eq!(codes, expect);
    let bad_config = &response.topics[2];
    assert!(
        bad_config
            .error_message
            .as_deref()
            .unwrap()
            .contains("retention.ms"),
        "{:?}",
        bad_config.error_message
    );
    assert_eq!(bad_config.num_partitions, -1);
    assert!(
        response.topics[3]
            .error_message
            .as_deref()
            .unwrap()
            .contains("no.such.config")
    );
    assert_eq!(partition_count(&mut client, "assigned").await, Some(2));
    assert_eq!(partition_count(&mut client, "bad-config").await, None);
    broker.stop().await;
}

#[tokio::test]
async fn describe_configs_shows_overrides_broker_properties_and_defaults() {
    let broker = TestBroker::start(&[("log.retention.bytes", "1000000")]).await;
    let mut client = broker.client().await;
    let response = create(
        &mut client,
        vec![topic(
            "events",
            1,
            &[("retention.ms", "3600000"), ("cleanup.policy", "compact")],
        )],
        false,
        7,
    )
    .await;
    assert_eq!(response.topics[0].error_code, 0);

    let configs = describe_topic(&mut client, "events", None).await;
    let retention = config(&configs, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.config_source, DYNAMIC_TOPIC_CONFIG);
    assert!(!retention.read_only);
    assert!(!retention.is_sensitive);
    assert_eq!(retention.documentation, None);
    // Synonyms: the override, then the built-in default of the broker property.
    let synonyms: Vec<(&str, i8)> = retention
        .synonyms
        .iter()
        .map(|s| (s.name.as_str(), s.source))
        .collect();
    assert_eq!(
        synonyms,
        [
            ("retention.ms", DYNAMIC_TOPIC_CONFIG),
            ("log.retention.ms", DEFAULT_CONFIG)
        ]
    );
    let policy = config(&configs, "cleanup.policy");
    assert_eq!(policy.value.as_deref(), Some("compact"));
    assert_eq!(policy.config_type, 7, "cleanup.policy is a LIST");
    let bytes = config(&configs, "retention.bytes");
    assert_eq!(bytes.value.as_deref(), Some("1000000"));
    assert_eq!(bytes.config_source, STATIC_BROKER_CONFIG);
    let segment = config(&configs, "segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert_eq!(segment.config_source, DEFAULT_CONFIG);
    let insync = config(&configs, "min.insync.replicas");
    assert_eq!(insync.value.as_deref(), Some("1"));

    // A key filter returns only those keys; old versions work.
    let filtered = describe_topic(&mut client, "events", Some(vec!["segment.ms", "nope"])).await;
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].name, "segment.ms");
    let request = DescribeConfigsRequest {
        resources: vec![
            DescribeConfigsResource {
                resource_type: TOPIC,
                resource_name: "events".into(),
                configuration_keys: None,
                ..Default::default()
            },
            DescribeConfigsResource {
                resource_type: TOPIC,
                resource_name: "missing".into(),
                configuration_keys: None,
                ..Default::default()
            },
            DescribeConfigsResource {
                resource_type: BROKER,
                resource_name: "0".into(),
                configuration_keys: None,
                ..Default::default()
            },
            DescribeConfigsResource {
                resource_type: BROKER,
                resource_name: "7".into(),
                configuration_keys: None,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let response = client.send(request, 1).await;
    assert_eq!(response.results[0].error_code, 0);
    assert!(response.results[0].configs.len() > 10);
    assert_eq!(
        response.results[1].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    assert_eq!(response.results[2].error_code, 0);
    let broker_configs = &response.results[2].configs;
    let given = config(broker_configs, "log.retention.bytes");
    assert_eq!(given.value.as_deref(), Some("1000000"));
    assert_eq!(given.config_source, STATIC_BROKER_CONFIG);
    assert!(
        !given.read_only,
        "a topic default is a dynamic broker config"
    );
    let default = config(broker_configs, "num.partitions");
    assert_eq!(default.config_source, DEFAULT_CONFIG);
    assert!(default.read_only, "num.partitions is static");
    assert_eq!(
        response.results[3].error_code,
        ErrorCode::INVALID_REQUEST.code()
    );
    broker.stop().await;
}

#[tokio::test]
async fn alter_configs_replace_and_incremental_changes_persist() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    let response = create(
        &mut client,
        vec![topic("logs", 1, &[("retention.ms", "3600000")])],
        false,
        7,
    )
    .await;
    assert_eq!(response.topics[0].error_code, 0);

    // AlterConfigs replaces the whole set: retention.ms goes back to its default.
    let alter = |configs: &[(&str, &str)], validate_only| AlterConfigsRequest {
        resources: vec![alter_configs_request::AlterConfigsResource {
            resource_type: TOPIC,
            resource_name: "logs".into(),
            configs: configs
                .iter()
                .map(|(k, v)| alter_configs_request::AlterableConfig {
                    name: (*k).into(),
                    value: Some((*v).into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        validate_only,
        ..Default::default()
    };
    let response = client
        .send(alter(&[("segment.bytes", "1048576")], false), 2)
        .await;
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(response.responses[0].resource_name, "logs");
    let configs = describe_topic(&mut client, "logs", None).await;
    assert_eq!(
        config(&configs, "segment.bytes").value.as_deref(),
        Some("1048576")
    );
    assert_eq!(
        config(&configs, "segment.bytes").config_source,
        DYNAMIC_TOPIC_CONFIG
    );
    assert_eq!(
        config(&configs, "retention.ms").config_source,
        DEFAULT_CONFIG
    );

    // validate_only and invalid values change nothing.
    let response = client
        .send(alter(&[("segment.bytes", "2097152")], true), 0)
        .await;
    assert_eq!(response.responses[0].error_code, 0);
    let response = client
        .send(alter(&[("segment.bytes", "tiny")], false), 1)
        .await;
    assert_eq!(
        response.responses[0].error_code,
        ErrorCode::INVALID_CONFIG.code()
    );
    let configs = describe_topic(&mut client, "logs", Some(vec!["segment.bytes"])).await;
    assert_eq!(configs[0].value.as_deref(), Some("1048576"));

    // IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on the list cleanup.policy.
    let incremental = |ops: &[(&str, i8, Option<&str>)]| IncrementalAlterConfigsRequest {
        resources: vec![incremental_alter_configs_request::AlterConfigsResource {
            resource_type: TOPIC,
            resource_name: "logs".into(),
            configs: ops
                .iter()
                .map(
                    |(name, op, value)| incremental_alter_configs_request::AlterableConfig {
                        name: (*name).into(),
                        config_operation: *op,
                        value: value.map(String::from),
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = client
        .send(
            incremental(&[
                ("retention.ms", 0, Some("120000")),
                ("segment.bytes", 1, None),
                ("cleanup.policy", 2, Some("compact")),
            ]),
            1,
        )
        .await;
    assert_eq!(
        response.responses[0].error_code, 0,
        "{:?}",
        response.responses[0].error_message
    );
    let configs = describe_topic(&mut client, "logs", None).await;
    assert_eq!(
        config(&configs, "retention.ms").value.as_deref(),
        Some("120000")
    );
    assert_eq!(
        config(&configs, "segment.bytes").config_source,
        DEFAULT_CONFIG
    );
    assert_eq!(
        config(&configs, "cleanup.policy").value.as_deref(),
        Some("delete,compact")
    );
    let response = client
        .send(incremental(&[("cleanup.policy", 3, Some("delete"))]), 0)
        .await;
    assert_eq!(response.responses[0].error_code, 0);
    for (ops, code) in [
        (
            vec![("retention.ms", 2, Some("1"))],
            ErrorCode::INVALID_CONFIG,
        ),
        (vec![("nope", 0, Some("1"))], ErrorCode::INVALID_CONFIG),
        (
            vec![("retention.ms", 9, Some("1"))],
            ErrorCode::INVALID_REQUEST,
        ),
        (
            vec![("retention.ms", 0, Some("1")), ("retention.ms", 1, None)],
            ErrorCode::INVALID_REQUEST,
        ),
    ] {
        let response = client.send(incremental(&ops), 1).await;
        assert_eq!(response.responses[0].error_code, code.code(), "{ops:?}");
    }

    // A topic config name is not a broker config.
    let request = IncrementalAlterConfigsRequest {
        resources: vec![incremental_alter_configs_request::AlterConfigsResource {
            resource_type: BROKER,
            resource_name: "0".into(),
            configs: vec![incremental_alter_configs_request::AlterableConfig {
                name: "retention.ms".into(),
                config_operation: 0,
                value: Some("1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = client.send(request, 1).await;
    assert_eq!(
        response.responses[0].error_code,
        ErrorCode::INVALID_REQUEST.code()
    );
    broker.stop().await;

    // The overrides survive a restart.
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    let configs = describe_topic(&mut client, "logs", None).await;
    assert_eq!(
        config(&configs, "retention.ms").value.as_deref(),
        Some("120000")
    );
    assert_eq!(
        config(&configs, "cleanup.policy").value.as_deref(),
        Some("compact")
    );
    broker.stop().await;
}

#[tokio::test]
async fn create_partitions_only_grows() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    create(&mut client, vec![topic("grow", 1, &[])], false, 7).await;
    let request = |count, validate_only| CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic {
            name: "grow".into(),
            count,
            assignments: None,
            ..Default::default()
        }],
        validate_only,
        ..Default::default()
    };
    let response = client.send(request(5, true), 3).await;
    assert_eq!(response.results[0].error_code, 0);
    assert_eq!(partition_count(&mut client, "grow").await, Some(1));

    let response = client.send(request(3, false), 0).await;
    assert_eq!(response.results[0].error_code, 0);
    assert_eq!(response.results[0].error_message, None);
    assert_eq!(partition_count(&mut client, "grow").await, Some(3));
    assert!(broker.dir.join("grow-2").is_dir());

    for count in [3, 2] {
        let response = client.send(request(count, false), 2).await;
        assert_eq!(
            response.results[0].error_code,
            ErrorCode::INVALID_PARTITIONS.code()
        );
        assert!(response.results[0].error_message.is_some());
    }
    let response = client
        .send(
            CreatePartitionsRequest {
                topics: vec![CreatePartitionsTopic {
                    name: "missing".into(),
                    count: 2,
                    assignments: None,
                    ..Default::default()
                }],
                ..Default::default()
            },
            3,
        )
        .await;
    assert_eq!(
        response.results[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    broker.stop().await;
}

#[tokio::test]
async fn create_partitions_refuses_internal_topics() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    // As in Kafka, the first group lookup creates the offsets topic.
    assert_eq!(
        partition_count(&mut client, "__consumer_offsets").await,
        None
    );
    let found = client
        .send(
            weir_protocol::messages::FindCoordinatorRequest {
                key: "g".into(),
                ..Default::default()
            },
            3,
        )
        .await;
    assert_eq!(found.error_code, 0);
    let before = partition_count(&mut client, "__consumer_offsets").await;
    assert_eq!(before, Some(4));
    for validate_only in [true, false] {
        let response = client
            .send(
                CreatePartitionsRequest {
                    topics: vec![CreatePartitionsTopic {
                        name: "__consumer_offsets".into(),
                        count: 8,
                        assignments: None,
                        ..Default::default()
                    }],
                    validate_only,
                    ..Default::default()
                },
                3,
            )
            .await;
        assert_eq!(
            response.results[0].error_code,
            ErrorCode::INVALID_TOPIC_EXCEPTION.code()
        );
        let message = response.results[0].error_message.clone().unwrap();
        assert!(
            message.contains("internal topic __consumer_offsets"),
            "{message}"
        );
    }
    assert_eq!(
        partition_count(&mut client, "__consumer_offsets").await,
        before
    );
    assert!(!broker.dir.join("__consumer_offsets-4").exists());
    broker.stop().await;
}

#[tokio::test]
async fn delete_topics_removes_logs_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    let response = create(
        &mut client,
        vec![topic("a", 2, &[]), topic("b", 1, &[]), topic("c", 1, &[])],
        false,
        7,
    )
    .await;
    let b_id = response.topics[1].topic_id;
    // An internal topic, as the group coordinator would create it.
    let request = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some("__consumer_offsets".into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    };
    client.send(request, 12).await;

    // v1: by name.
    let response = client
        .send(
            DeleteTopicsRequest {
                topic_names: vec!["a".into(), "missing".into(), "__consumer_offsets".into()],
                ..Default::default()
            },
            1,
        )
        .await;
    let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        [
            0,
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
            ErrorCode::INVALID_TOPIC_EXCEPTION.code()
        ]
    );
    assert!(!dir.path().join("a-0").exists());
    assert!(!dir.path().join("a-1").exists());
    assert_eq!(partition_count(&mut client, "a").await, None);

    // v6: by id and by name.
    let response = client
        .send(
            DeleteTopicsRequest {
                topics: vec![
                    DeleteTopicState {
                        name: None,
                        topic_id: b_id,
                        ..Default::default()
                    },
                    DeleteTopicState {
                        name: None,
                        topic_id: Uuid([7; 16]),
                        ..Default::default()
                    },
                    DeleteTopicState {
                        name: Some("c".into()),
                        topic_id: Uuid::ZERO,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            6,
        )
        .await;
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(response.responses[0].name.as_deref(), Some("b"));
    assert_eq!(
        response.responses[1].error_code,
        ErrorCode::UNKNOWN_TOPIC_ID.code()
    );
    assert_eq!(response.responses[2].error_code, 0);
    assert_eq!(response.responses[2].error_message, None);
    assert!(!dir.path().join("b-0").exists());
    broker.stop().await;

    // Gone after a restart too, and the name can be reused with no old data.
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    for name in ["a", "b", "c"] {
        assert_eq!(partition_count(&mut client, name).await, None, "{name}");
    }
    let response = create(&mut client, vec![topic("a", 1, &[])], false, 7).await;
    assert_eq!(response.topics[0].error_code, 0);
    broker.stop().await;
}

/// Issue 15: with `include_synonyms = false` (kafkajs's and the Java client's default) every
/// entry carries an empty synonym list, at every version, for topics and for the broker.
#[tokio::test]
async fn describe_configs_without_synonyms_lists_none() {
    let broker = TestBroker::start(&[("log.retention.bytes", "1000000")]).await;
    let mut client = broker.client().await;
    let response = create(
        &mut client,
        vec![topic("events", 1, &[("retention.ms", "3600000")])],
        false,
        7,
    )
    .await;
    assert_eq!(response.topics[0].error_code, 0);
    for version in 1..=4 {
        for include_synonyms in [false, true] {
            let request = DescribeConfigsRequest {
                resources: vec![
                    DescribeConfigsResource {
                        resource_type: TOPIC,
                        resource_name: "events".into(),
                        configuration_keys: None,
                        ..Default::default()
                    },
                    DescribeConfigsResource {
                        resource_type: BROKER,
                        resource_name: String::new(),
                        configuration_keys: None,
                        ..Default::default()
                    },
                ],
                include_synonyms,
                ..Default::default()
            };
            let response = client.send(request, version).await;
            for result in &response.results {
                assert_eq!(result.error_code, 0, "{:?}", result.error_message);
                for entry in &result.configs {
                    assert_eq!(
                        entry.synonyms.is_empty(),
                        !include_synonyms,
                        "v{version} {} {entry:?}",
                        result.resource_name
                    );
                }
            }
            let retention = config(&response.results[0].configs, "retention.ms");
            assert_eq!(retention.value.as_deref(), Some("3600000"));
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn describe_cluster_names_this_node() {
    let broker = TestBroker::start(&[("node.id", "3")]).await;
    let mut client = broker.client().await;
    for version in 0..=2 {
        let response = client
            .send(DescribeClusterRequest::default(), version)
            .await;
        assert_eq!(response.error_code, 0);
        assert_eq!(response.error_message, None);
        assert_eq!(response.controller_id, 3);
        assert!(!response.cluster_id.is_empty());
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.brokers[0].broker_id, 3);
        assert_eq!(response.brokers[0].host, "127.0.0.1");
        assert_eq!(response.cluster_authorized_operations, i32::MIN);
    }
    let response = client
        .send(
            DescribeClusterRequest {
                endpoint_type: 2,
                ..Default::default()
            },
            1,
        )
        .await;
    assert_eq!(
        response.error_code,
        ErrorCode::UNSUPPORTED_ENDPOINT_TYPE.code()
    );
    broker.stop().await;
}

/// Sends raw bytes to the admin port and returns the whole response.
async fn http(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    String::from_utf8(response).unwrap()
}

#[tokio::test]
async fn admin_http_serves_health_and_metrics() {
    let broker = TestBroker::start(&[("weir.admin.listener", "127.0.0.1:0")]).await;
    let admin = broker.admin_addr.expect("admin listener enabled");

    let health = http(admin, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");

    let mut client = broker.client().await;
    create(&mut client, vec![topic("metered", 2, &[])], false, 7).await;
    partition_count(&mut client, "metered").await;

    let metrics = http(admin, b"GET /metrics HTTP/1.0\r\n\r\n").await;
    // hyper answers an HTTP/1.0 request in HTTP/1.0.
    assert!(metrics.starts_with("HTTP/1.0 200 OK\r\n"), "{metrics}");
    assert!(metrics.contains("Content-Type: application/openmetrics-text; version=1.0.0"));
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    for expected in [
        "weir_requests_total{api=\"Metadata\"} 1\n",
        "weir_requests_total{api=\"CreateTopics\"} 1\n",
        "weir_request_duration_seconds_count{api=\"Metadata\"} 1\n",
        "weir_request_duration_seconds_bucket{le=\"+Inf\",api=\"Metadata\"} 1\n",
        "weir_connections 1\n",
        "weir_connections_total 1\n",
        "weir_log_end_offset{topic=\"metered\",partition=\"1\"} 0\n",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
    assert!(metrics.contains("weir_request_bytes_total{api=\"Metadata\"} "));
    assert!(metrics.contains("# TYPE weir_request_duration_seconds histogram"));
    // OpenMetrics wants each family described once (strict parsers reject the page otherwise):
    // the open-connections gauge and the accepted-connections counter must not share a name.
    let mut families: Vec<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let described = families.len();
    families.sort_unstable();
    families.dedup();
    assert_eq!(
        families.len(),
        described,
        "a family described twice in\n{metrics}"
    );

    let missing = http(admin, b"GET /nope HTTP/1.1\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let post = http(
        admin,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let garbage = http(admin, b"\x00\x01 nonsense\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    let mut huge = b"GET /health HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 20_000));
    let huge = http(admin, &huge).await;
    assert!(huge.starts_with("HTTP/1.1 431 "), "{huge}");

    // The broker still serves, and the admin port stops with it.
    assert_eq!(partition_count(&mut client, "metered").await, Some(2));
    drop(client);
    broker.stop().await;
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
}

/// The admin port holds at most 64 connections, and one whose client never finishes its
/// request head is closed after 5 s, so idle or trickling clients cannot keep it busy.
#[tokio::test]
async fn admin_http_bounds_connections_and_head_time() {
    let broker = TestBroker::start(&[("weir.admin.listener", "127.0.0.1:0")]).await;
    let admin = broker.admin_addr.expect("admin listener enabled");

    let mut idle = Vec::new();
    for _ in 0..64 {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        idle.push(stream);
    }
    // Refused: closed (or reset) without an answer.
    let mut refused = tokio::net::TcpStream::connect(admin).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        refused.read_to_end(&mut answer),
    )
    .await
    .expect("refused at once");
    assert!(read.is_err() || answer.is_empty(), "{answer:?}");

    // The unfinished heads time out and their connections close.
    for mut stream in idle {
        let mut rest = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(8),
            stream.read_to_end(&mut rest),
        )
        .await
        .expect("closed after the head timeout")
        .unwrap();
    }
    let health = http(admin, b"GET /health HTTP/1.1\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    broker.stop().await;
}

async fn describe_log_dirs(
    client: &mut RawClient,
    topics: Option<Vec<(&str, Vec<i32>)>>,
    version: i16,
) -> DescribeLogDirsResponse {
    let request = DescribeLogDirsRequest {
        topics: topics.map(|topics| {
            topics
                .into_iter()
                .map(|(topic, partitions)| DescribableLogDirTopic {
                    topic: topic.into(),
                    partitions,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };
    client.send(request, version).await
}

/// (partition, size, offset lag) of every partition of `topic` in a log directory result.
fn partitions_of(
    result: &weir_protocol::messages::describe_log_dirs_response::DescribeLogDirsResult,
    topic: &str,
) -> Vec<(i32, i64, i64)> {
    result
        .topics
        .iter()
        .filter(|t| t.name == topic)
        .flat_map(|t| &t.partitions)
        .map(|p| {
            assert!(!p.is_future_key);
            (p.partition_index, p.partition_size, p.offset_lag)
        })
        .collect()
}

#[tokio::test]
async fn describe_log_dirs_reports_partition_sizes() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let response = create(&mut client, vec![topic("sized", 2, &[])], false, 7).await;
    assert_eq!(response.topics[0].error_code, 0);

    // v4: every log (null topics), with the directory's file system sizes.
    let response = describe_log_dirs(&mut client, None, 4).await;
    assert_eq!((response.error_code, response.results.len()), (0, 1));
    let dir = &response.results[0];
    assert_eq!(dir.error_code, 0);
    assert_eq!(
        dir.log_dir,
        std::path::absolute(&broker.dir)
            .unwrap()
            .display()
            .to_string()
    );
    assert!(dir.total_bytes > 0, "{}", dir.total_bytes);
    assert!((0..=dir.total_bytes).contains(&dir.usable_bytes));
    assert_eq!(partitions_of(dir, "sized"), vec![(0, 0, 0), (1, 0, 0)]);

    let mut builder = RecordBatchBuilder::new();
    for i in 0..10 {
        builder.push(Record::new(0, None, Some(format!("value {i}").as_bytes())));
    }
    let produce = ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "sized".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(builder.build().unwrap()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let produced = client.send(produce, 9).await;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);

    // v1: only the requested partitions that have a log here; an unknown topic or partition
    // is simply absent. The volume sizes are not in v1 and decode as unknown.
    let requested = vec![("sized", vec![0, 1, 7]), ("nope", vec![0])];
    let response = describe_log_dirs(&mut client, Some(requested), 1).await;
    let dir = &response.results[0];
    assert_eq!((dir.total_bytes, dir.usable_bytes), (-1, -1));
    assert_eq!(dir.topics.len(), 1, "{:?}", dir.topics);
    let sized = partitions_of(dir, "sized");
    assert_eq!(sized.len(), 2);
    assert_eq!((sized[0].0, sized[0].2), (0, 0));
    assert!(sized[0].1 > 0, "partition 0 grew: {sized:?}");
    assert_eq!(sized[1], (1, 0, 0));

    // An empty list asks for nothing.
    let response = describe_log_dirs(&mut client, Some(Vec::new()), 4).await;
    assert_eq!(response.results.len(), 1);
    assert!(response.results[0].topics.is_empty());
    broker.stop().await;
}

/// A data directory taken offline at start answers KAFKA_STORAGE_ERROR and no partitions; the
/// healthy one lists its logs.
#[tokio::test]
async fn describe_log_dirs_reports_an_offline_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let dirs = format!("{},{}", a.display(), b.display());
    let props = [("log.dirs", dirs.as_str())];
    let broker = TestBroker::start_in(&a, &props).await;
    let mut client = broker.client().await;
    let response = create(&mut client, vec![topic("spread", 4, &[])], false, 7).await;
    assert_eq!(response.topics[0].error_code, 0);
    drop(client);
    broker.stop().await;
    let in_b = std::fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("spread-")
        })
        .expect("partitions are spread over both directories");
    std::fs::remove_dir_all(&in_b).unwrap();
    std::fs::write(&in_b, b"a failed disk").unwrap();

    let broker = TestBroker::start_in(&a, &props).await;
    let mut client = broker.client().await;
    let response = describe_log_dirs(&mut client, None, 4).await;
    let by_dir = |dir: &std::path::Path| {
        let dir = std::path::absolute(dir).unwrap().display().to_string();
        response
            .results
            .iter()
            .find(|r| r.log_dir == dir)
            .unwrap_or_else(|| panic!("{dir} in {response:?}"))
    };
    let (healthy, failed) = (by_dir(&a), by_dir(&b));
    assert_eq!(failed.error_code, ErrorCode::KAFKA_STORAGE_ERROR.code());
    assert!(failed.topics.is_empty());
    assert_eq!((failed.total_bytes, failed.usable_bytes), (-1, -1));
    assert_eq!(healthy.error_code, 0);
    let local = partitions_of(healthy, "spread");
    assert!(!local.is_empty() && local.len() < 4, "{local:?}");
    broker.stop().await;
}

async fn describe_topic_partitions(
    client: &mut RawClient,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsResponse {
    let request = DescribeTopicPartitionsRequest {
        topics: topics
            .iter()
            .map(|name| TopicRequest {
                name: (*name).into(),
                ..Default::default()
            })
            .collect(),
        response_partition_limit: limit,
        cursor: cursor.map(|(topic_name, partition_index)| Cursor {
            topic_name: topic_name.into(),
            partition_index,
            ..Default::default()
        }),
        ..Default::default()
    };
    client.send(request, 0).await
}

fn partition_indexes(topic: &DescribeTopicPartitionsResponseTopic) -> Vec<i32> {
    topic.partitions.iter().map(|p| p.partition_index).collect()
}

fn next_cursor(response: &DescribeTopicPartitionsResponse) -> Option<(String, i32)> {
    response
        .next_cursor
        .as_ref()
        .map(|c| (c.topic_name.clone(), c.partition_index))
}

#[tokio::test]
async fn describe_topic_partitions_pages_by_partition_limit() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let topics = vec![topic("paged", 5, &[]), topic("three", 3, &[])];
    let created = create(&mut client, topics, false, 7).await;
    assert!(created.topics.iter().all(|t| t.error_code == 0));
    let paged_id = created.topics[0].topic_id;

    // Pages of 2, 2 and 1 partitions, each naming where the next starts.
    let mut cursor = None;
    let mut pages = Vec::new();
    loop {
        let response = describe_topic_partitions(
            &mut client,
            &["paged"],
            2,
            cursor
                .as_ref()
                .map(|(t, p): &(String, i32)| (t.as_str(), *p)),
        )
        .await;
        assert_eq!(response.topics.len(), 1);
        let topic = &response.topics[0];
        assert_eq!(
            (topic.error_code, topic.name.as_deref()),
            (0, Some("paged"))
        );
        assert_eq!(topic.topic_id, paged_id);
        assert!(!topic.is_internal);
        assert_ne!(topic.topic_authorized_operations, i32::MIN);
        for p in &topic.partitions {
            assert_eq!((p.error_code, p.leader_id), (0, 0));
            assert!(p.leader_epoch >= 0);
            assert_eq!(
                (p.replica_nodes.as_slice(), p.isr_nodes.as_slice()),
                (&[0][..], &[0][..])
            );
            assert_eq!(p.eligible_leader_replicas.as_deref(), Some(&[][..]));
            assert_eq!(p.last_known_elr.as_deref(), Some(&[][..]));
            assert!(p.offline_replicas.is_empty());
        }
        pages.push((partition_indexes(topic), next_cursor(&response)));
        cursor = next_cursor(&response);
        if cursor.is_none() || pages.len() > 5 {
            break;
        }
    }
    assert_eq!(
        pages,
        vec![
            (vec![0, 1], Some(("paged".to_string(), 2))),
            (vec![2, 3], Some(("paged".to_string(), 4))),
            (vec![4], None),
        ]
    );

    // Topics come in name order; a page filled exactly by one topic points at the next.
    let response = describe_topic_partitions(&mut client, &["three", "paged"], 5, None).await;
    let names: Vec<_> = response.topics.iter().map(|t| t.name.as_deref()).collect();
    assert_eq!(names, vec![Some("paged")]);
    assert_eq!(next_cursor(&response), Some(("three".to_string(), 0)));
    let response =
        describe_topic_partitions(&mut client, &["three", "paged"], 6, Some(("paged", 3))).await;
    let pages: Vec<_> = response
        .topics
        .iter()
        .map(|t| (t.name.clone().unwrap(), partition_indexes(t)))
        .collect();
    assert_eq!(
        pages,
        vec![
            ("paged".to_string(), vec![3, 4]),
            ("three".to_string(), vec![0, 1, 2]),
        ]
    );
    assert_eq!(next_cursor(&response), None);

    // No topics: every topic, internal ones included.
    let response = describe_topic_partitions(&mut client, &[], 2000, None).await;
    let names: Vec<_> = response
        .topics
        .iter()
        .filter_map(|t| t.name.clone())
        .collect();
    assert!(names.contains(&"paged".to_string()) && names.contains(&"three".to_string()));
    assert!(response.topics.iter().all(|t| t.error_code == 0));
    broker.stop().await;
}

#[tokio::test]
async fn describe_topic_partitions_reports_unknown_topics() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let created = create(&mut client, vec![topic("known", 1, &[])], false, 7).await;
    assert_eq!(created.topics[0].error_code, 0);

    let response =
        describe_topic_partitions(&mut client, &["known", "ghost", "bad name!"], 2000, None).await;
    let answers: Vec<_> = response
        .topics
        .iter()
        .map(|t| (t.name.clone().unwrap(), t.error_code, t.partitions.len()))
        .collect();
    assert_eq!(
        answers,
        vec![
            (
                "bad name!".to_string(),
                ErrorCode::INVALID_TOPIC_EXCEPTION.code(),
                0
            ),
            (
                "ghost".to_string(),
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
                0
            ),
            ("known".to_string(), 0, 1),
        ]
    );
    assert_eq!(response.topics[1].topic_id, Uuid::ZERO);

    // The cursor must name a requested topic.
    let response =
        describe_topic_partitions(&mut client, &["known"], 2000, Some(("other", 0))).await;
    assert_eq!(response.topics.len(), 1);
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::INVALID_REQUEST.code()
    );
    broker.stop().await;
}

/// Produces `batches` batches of 5 records to partition `partition` of `topic` (acks=all).
async fn produce_batches(client: &mut RawClient, topic: &str, partition: i32, batches: usize) {
    for b in 0..batches {
        assert_eq!(produce_one(client, topic, partition, b).await, 0);
    }
}

/// Produces one batch of five records with acks=all; returns the partition's error code.
async fn produce_one(client: &mut RawClient, topic: &str, partition: i32, b: usize) -> i16 {
    {
        let mut builder = RecordBatchBuilder::new();
        for i in 0..5 {
            builder.push(Record::new(
                0,
                None,
                Some(format!("batch {b} record {i} with some padding").as_bytes()),
            ));
        }
        let produce = ProduceRequest {
            acks: -1,
            timeout_ms: 30_000,
            topic_data: vec![TopicProduceData {
                name: topic.into(),
                partition_data: vec![PartitionProduceData {
                    index: partition,
                    records: Some(builder.build().unwrap()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let produced = client.send(produce, 9).await;
        produced.responses[0].partition_responses[0].error_code
    }
}

/// The offsets of every record of partition 0 of `topic`, fetched from its start.
async fn fetch_offsets(client: &mut RawClient, topic: &str) -> Vec<i64> {
    let mut offsets = Vec::new();
    loop {
        let request = FetchRequest {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 50 << 20,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: topic.into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: offsets.last().map_or(0, |o| o + 1),
                    partition_max_bytes: 1 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let response = client.send(request, 12).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "{data:?}");
        let before = offsets.len();
        for batch in weir_records::RecordBatches::new(data.records.clone().unwrap_or_default()) {
            let batch = batch.unwrap();
            offsets.extend(batch.base_offset()..=batch.last_offset());
        }
        if offsets.len() == before {
            return offsets;
        }
    }
}

async fn alter_replica_log_dirs(
    client: &mut RawClient,
    moves: Vec<(String, &str, Vec<i32>)>,
) -> Vec<(String, i32, i16)> {
    let request = AlterReplicaLogDirsRequest {
        dirs: moves
            .into_iter()
            .map(|(path, topic, partitions)| AlterReplicaLogDir {
                path,
                topics: vec![AlterReplicaLogDirTopic {
                    name: topic.into(),
                    partitions,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let response = client.send(request, 2).await;
    response
        .results
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.topic_name.clone(), p.partition_index, p.error_code))
        })
        .collect()
}

/// The data directory (absolute, as DescribeLogDirs names it) holding `topic`-`partition`.
async fn dir_of(client: &mut RawClient, topic: &str, partition: i32) -> Option<String> {
    let response = describe_log_dirs(client, Some(vec![(topic, vec![partition])]), 4).await;
    let mut holding = response
        .results
        .iter()
        .filter(|r| !partitions_of(r, topic).is_empty())
        .map(|r| r.log_dir.clone());
    let found = holding.next();
    assert_eq!(holding.next(), None, "in one directory only");
    found
}

/// AlterReplicaLogDirs moves a partition with several segments to the other data directory:
/// DescribeLogDirs shows it there, every record reads back, appends go on, and all of it
/// survives a restart; the error cases answer what Kafka does.
#[tokio::test]
async fn alter_replica_log_dirs_moves_a_partition_between_data_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let dirs = format!("{},{}", a.display(), b.display());
    let props = [("log.dirs", dirs.as_str())];
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap().display().to_string();
    let broker = TestBroker::start_in(&a, &props).await;
    let mut client = broker.client().await;
    let created = create(
        &mut client,
        vec![topic("moving", 1, &[("segment.bytes", "1024")])],
        false,
        7,
    )
    .await;
    assert_eq!(created.topics[0].error_code, 0);
    produce_batches(&mut client, "moving", 0, 20).await;
    let source = dir_of(&mut client, "moving", 0).await.unwrap();
    let target = if source == absolute(&a) {
        absolute(&b)
    } else {
        absolute(&a)
    };

    let results = alter_replica_log_dirs(
        &mut client,
        vec![
            (target.clone(), "moving", vec![0, 5]),
            ("/no/such/dir".into(), "moving", vec![0]),
            (target.clone(), "unknown", vec![0]),
        ],
    )
    .await;
    assert_eq!(
        results,
        vec![
            ("moving".into(), 0, 0),
            ("moving".into(), 5, ErrorCode::REPLICA_NOT_AVAILABLE.code()),
            ("moving".into(), 0, ErrorCode::LOG_DIR_NOT_FOUND.code()),
            ("unknown".into(), 0, ErrorCode::REPLICA_NOT_AVAILABLE.code()),
        ]
    );
    assert_eq!(dir_of(&mut client, "moving", 0).await, Some(target.clone()));
    let source_path = std::path::PathBuf::from(&source);
    assert!(!source_path.join("moving-0").exists());
    let names: Vec<String> = std::fs::read_dir(&source_path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("moving-0")),
        "no leftovers: {names:?}"
    );
    let segments = std::fs::read_dir(std::path::Path::new(&target).join("moving-0"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("log".as_ref()))
        .count();
    assert!(segments > 2, "{segments} segments moved");
    assert_eq!(
        fetch_offsets(&mut client, "moving").await,
        (0..100).collect::<Vec<_>>()
    );
    // Already there: nothing to do.
    let again = alter_replica_log_dirs(&mut client, vec![(target.clone(), "moving", vec![0])]);
    assert_eq!(again.await, vec![("moving".into(), 0, 0)]);

    produce_batches(&mut client, "moving", 0, 10).await;
    assert_eq!(
        fetch_offsets(&mut client, "moving").await,
        (0..150).collect::<Vec<_>>()
    );
    drop(client);
    broker.stop().await;

    let broker = TestBroker::start_in(&a, &props).await;
    let mut client = broker.client().await;
    assert_eq!(dir_of(&mut client, "moving", 0).await, Some(target.clone()));
    // Reads wait for the restarted leader's high watermark.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut read = fetch_offsets(&mut client, "moving").await;
    while read.len() < 150 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        read = fetch_offsets(&mut client, "moving").await;
    }
    assert_eq!(read, (0..150).collect::<Vec<_>>());
    let created = create(&mut client, vec![topic("spread", 4, &[])], false, 7).await;
    assert_eq!(created.topics[0].error_code, 0);
    drop(client);
    broker.stop().await;

    // The source directory fails: moving to it, or moving a partition off it, is a storage
    // error.
    let source_path = std::path::PathBuf::from(&source);
    let failed = std::fs::read_dir(&source_path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("spread-")
        })
        .expect("partitions are spread over both directories");
    let failed_partition: i32 = failed
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("spread-")
        .parse()
        .unwrap();
    std::fs::remove_dir_all(&failed).unwrap();
    std::fs::write(&failed, b"a failed disk").unwrap();
    let broker = TestBroker::start_in(&a, &props).await;
    let mut client = broker.client().await;
    let results = alter_replica_log_dirs(
        &mut client,
        vec![
            (source.clone(), "moving", vec![0]),
            (target.clone(), "spread", vec![failed_partition]),
        ],
    )
    .await;
    assert_eq!(
        results,
        vec![
            ("moving".into(), 0, ErrorCode::KAFKA_STORAGE_ERROR.code()),
            (
                "spread".into(),
                failed_partition,
                ErrorCode::KAFKA_STORAGE_ERROR.code()
            ),
        ]
    );
    assert_eq!(dir_of(&mut client, "moving", 0).await, Some(target));
    broker.stop().await;
}

/// IncrementalAlterConfigs for one BROKER resource (`""` is the cluster-wide default):
/// (name, operation, value) triples; returns the error code and message.
async fn alter_broker(
    client: &mut RawClient,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, Option<String>) {
    let request = IncrementalAlterConfigsRequest {
        resources: vec![incremental_alter_configs_request::AlterConfigsResource {
            resource_type: BROKER,
            resource_name: name.into(),
            configs: ops
                .iter()
                .map(
                    |(name, op, value)| incremental_alter_configs_request::AlterableConfig {
                        name: (*name).into(),
                        config_operation: *op,
                        value: value.map(String::from),
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = client.send(request, 1).await;
    (
        response.responses[0].error_code,
        response.responses[0].error_message.clone(),
    )
}

async fn describe_broker(client: &mut RawClient, name: &str) -> Vec<DescribeConfigsResourceResult> {
    let request = DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: BROKER,
            resource_name: name.into(),
            ..Default::default()
        }],
        include_synonyms: true,
        ..Default::default()
    };
    let response = client.send(request, 4).await;
    assert_eq!(response.results[0].error_code, 0);
    response.results[0].configs.clone()
}

/// Dynamic broker configs (Kafka's per-broker and cluster-default log configs): the
/// cluster-wide default (the BROKER resource with an empty name, what `kafka-configs.sh
/// --entity-default` sends) and this broker's own (its id) set the defaults of topic configs,
/// are described with their sources (DYNAMIC_DEFAULT_BROKER_CONFIG 3, DYNAMIC_BROKER_CONFIG
/// 2), take effect at once (`min.insync.replicas` refuses an acks=all produce to a
/// one-replica topic), go through the metadata log and survive a restart. Static properties
/// and bad values are refused.
#[tokio::test]
async fn dynamic_broker_configs_set_topic_defaults_and_persist() {
    const DYNAMIC_BROKER_CONFIG: i8 = 2;
    const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    // The embedded single node is node 0.
    let node = 0;
    let mut client = broker.client().await;
    let response = create(&mut client, vec![topic("dyn", 1, &[])], false, 7).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(produce_one(&mut client, "dyn", 0, 0).await, 0);

    let (code, message) = alter_broker(
        &mut client,
        "",
        &[
            ("log.retention.ms", 0, Some("1234567")),
            ("min.insync.replicas", 0, Some("2")),
        ],
    )
    .await;
    assert_eq!(code, 0, "{message:?}");
    let configs = describe_topic(&mut client, "dyn", None).await;
    let retention = config(&configs, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("1234567"));
    assert_eq!(retention.config_source, DYNAMIC_DEFAULT_BROKER_CONFIG);
    assert_eq!(
        retention
            .synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_deref(), s.source))
            .collect::<Vec<_>>(),
        vec![
            (
                "log.retention.ms",
                Some("1234567"),
                DYNAMIC_DEFAULT_BROKER_CONFIG
            ),
            ("log.retention.ms", Some("604800000"), DEFAULT_CONFIG),
        ]
    );
    assert_eq!(
        config(&configs, "min.insync.replicas").config_source,
        DYNAMIC_DEFAULT_BROKER_CONFIG
    );
    assert_eq!(
        produce_one(&mut client, "dyn", 0, 1).await,
        ErrorCode::NOT_ENOUGH_REPLICAS.code(),
        "min.insync.replicas=2 applies to a one-replica topic at once"
    );

    // This broker's own value wins over the cluster default.
    let (code, message) = alter_broker(
        &mut client,
        &node.to_string(),
        &[("min.insync.replicas", 0, Some("1"))],
    )
    .await;
    assert_eq!(code, 0, "{message:?}");
    assert_eq!(produce_one(&mut client, "dyn", 0, 2).await, 0);
    let configs = describe_broker(&mut client, &node.to_string()).await;
    let min_isr = config(&configs, "min.insync.replicas");
    assert_eq!(
        (
            min_isr.value.as_deref(),
            min_isr.config_source,
            min_isr.read_only
        ),
        (Some("1"), DYNAMIC_BROKER_CONFIG, false)
    );
    assert!(config(&configs, "num.partitions").read_only);
    // Every property the broker reads is listed, set or not, with its source.
    for (name, value, source) in [
        ("num.partitions", Some("1"), DEFAULT_CONFIG),
        ("log.cleanup.policy", Some("delete"), DEFAULT_CONFIG),
        ("fetch.max.bytes", Some("57671680"), DEFAULT_CONFIG),
        (
            "transaction.state.log.num.partitions",
            Some("4"),
            STATIC_BROKER_CONFIG,
        ),
        ("weir.admin.listener", Some("none"), STATIC_BROKER_CONFIG),
        ("broker.rack", None, DEFAULT_CONFIG),
    ] {
        let c = config(&configs, name);
        assert_eq!(
            (c.value.as_deref(), c.config_source),
            (value, source),
            "{name}"
        );
    }
    let defaults = describe_broker(&mut client, "").await;
    assert_eq!(
        config(&defaults, "min.insync.replicas").value.as_deref(),
        Some("2"),
        "the default resource shows the cluster default"
    );

    // Refused: a static property, a bad value (named by its broker property), another broker.
    let (code, message) = alter_broker(&mut client, "", &[("num.partitions", 0, Some("5"))]).await;
    assert_eq!(code, ErrorCode::INVALID_REQUEST.code());
    assert!(message.unwrap_or_default().contains("num.partitions"));
    let (code, message) =
        alter_broker(&mut client, "", &[("log.retention.ms", 0, Some("soon"))]).await;
    assert_eq!(code, ErrorCode::INVALID_CONFIG.code());
    assert!(
        message
            .clone()
            .unwrap_or_default()
            .contains("log.retention.ms"),
        "{message:?}"
    );
    let (code, _) = alter_broker(&mut client, "77", &[("log.retention.ms", 0, Some("1"))]).await;
    assert_eq!(code, ErrorCode::INVALID_REQUEST.code());
    broker.stop().await;

    // Kept in the metadata log: the same after a restart; DELETE returns to the default.
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    let configs = describe_topic(&mut client, "dyn", Some(vec!["retention.ms"])).await;
    assert_eq!(configs[0].value.as_deref(), Some("1234567"));
    assert_eq!(configs[0].config_source, DYNAMIC_DEFAULT_BROKER_CONFIG);
    let (code, _) = alter_broker(&mut client, "", &[("log.retention.ms", 1, None)]).await;
    assert_eq!(code, 0);
    let configs = describe_topic(&mut client, "dyn", Some(vec!["retention.ms"])).await;
    assert_eq!(configs[0].config_source, DEFAULT_CONFIG);
    broker.stop().await;
}

/// ListConfigResources (KIP-1142): v1 lists topics, brokers and groups (all of them when no
/// type is asked for, else the types asked for); v0 (ListClientMetricsResources) lists client
/// metrics resources, of which Weir has none; an unsupported type is INVALID_REQUEST.
#[tokio::test]
async fn list_config_resources_lists_topics_brokers_and_groups() {
    use weir_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use weir_protocol::messages::{ListConfigResourcesRequest, OffsetCommitRequest};
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "listed").await;
    let commit = OffsetCommitRequest {
        group_id: "listed-group".into(),
        generation_id_or_member_epoch: -1,
        topics: vec![OffsetCommitRequestTopic {
            name: "listed".into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: 0,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let committed = client.send(commit, 8).await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);

    let list = |types: Vec<i8>| ListConfigResourcesRequest {
        resource_types: types,
        ..Default::default()
    };
    let all = client.send(list(vec![]), 1).await;
    assert_eq!(all.error_code, 0);
    let mut listed: Vec<(i8, String)> = all
        .config_resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.clone()))
        .collect();
    listed.sort();
    assert!(listed.contains(&(2, "listed".to_string())), "{listed:?}");
    assert!(listed.contains(&(4, "0".to_string())), "{listed:?}");
    assert!(
        listed.contains(&(32, "listed-group".to_string())),
        "{listed:?}"
    );

    let brokers = client.send(list(vec![4]), 1).await;
    assert_eq!(
        brokers
            .config_resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str()))
            .collect::<Vec<_>>(),
        vec![(4, "0")]
    );
    let client_metrics = client.send(list(vec![]), 0).await;
    assert_eq!(client_metrics.error_code, 0);
    assert!(client_metrics.config_resources.is_empty());
    let unsupported = client.send(list(vec![8]), 1).await;
    assert_eq!(unsupported.error_code, ErrorCode::INVALID_REQUEST.code());
    broker.stop().await;
}
