//! Administrative operations: topics, partitions, configs, groups, offsets and records.
//!
//! Each operation is a thin typed wrapper over one Kafka API. Operations on several items
//! return one result per item, so one refused topic does not hide what happened to the others;
//! the outer `Result` is for the request as a whole (unreachable cluster, timeout). Operations
//! routed to partition leaders (list offsets, delete records) retry items whose leader moved
//! within `request.timeout.ms`.

use crate::client::Client;
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::metadata::{BrokerMetadata, TopicEntry, TopicMetadata, topic_entry};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;
use weir_protocol::ErrorCode;
use weir_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use weir_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use weir_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use weir_protocol::messages::delete_topics_request::DeleteTopicState;
use weir_protocol::messages::describe_configs_request::DescribeConfigsResource;
use weir_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use weir_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use weir_protocol::messages::metadata_request::MetadataRequestTopic;
use weir_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use weir_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest,
};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partitions, or -1 for the broker's `num.partitions`.
    pub num_partitions: i32,
    /// Replication factor, or -1 for the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs (`cleanup.policy`, `retention.ms`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `num_partitions` partitions and the broker's default replication.
    pub fn new(name: impl Into<String>, num_partitions: i32) -> Self {
        Self {
            name: name.into(),
            num_partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    /// Adds a topic config.
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((name.into(), value.into()));
        self
    }
}

/// Something that has configs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigResource {
    /// A topic's configs.
    Topic(String),
    /// A broker's configs.
    Broker(i32),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            ConfigResource::Topic(name) => (2, name.clone()),
            ConfigResource::Broker(id) => (4, id.to_string()),
        }
    }
}

/// One config value as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Property name.
    pub name: String,
    /// Value; `None` for sensitive values and unset ones.
    pub value: Option<String>,
    /// Whether it cannot be altered.
    pub read_only: bool,
    /// Whether the value is a default (not set on the topic or broker).
    pub is_default: bool,
    /// Whether the value is hidden because it is sensitive.
    pub is_sensitive: bool,
    /// Where the value comes from.
    pub source: ConfigSource,
}

/// Where a config value comes from (Kafka's `ConfigSource`), most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigSource {
    /// Set on the topic (`DYNAMIC_TOPIC_CONFIG`).
    DynamicTopic,
    /// Set at run time for this broker (`DYNAMIC_BROKER_CONFIG`).
    DynamicBroker,
    /// Set at run time for every broker (`DYNAMIC_DEFAULT_BROKER_CONFIG`).
    DynamicDefaultBroker,
    /// Set in the broker's configuration (`STATIC_BROKER_CONFIG`).
    StaticBroker,
    /// The built-in default (`DEFAULT_CONFIG`).
    Default,
    /// Any other source, or one the broker did not say (`UNKNOWN`, a broker logger, client
    /// metrics, a group config).
    Other(i8),
}

impl ConfigSource {
    fn from_wire(source: i8) -> Self {
        match source {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }

    /// Kafka's name for it, as `kafka-configs.sh --describe` prints it.
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::Other(6) => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::Other(7) => "CLIENT_METRICS_CONFIG",
            ConfigSource::Other(8) => "GROUP_CONFIG",
            ConfigSource::Other(_) => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How an incremental config change applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Sets `name` to `value`.
    Set(String, String),
    /// Reverts `name` to its default.
    Delete(String),
}

/// A consumer group as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...) when the broker reports it.
    pub state: String,
    /// The broker coordinating it.
    pub coordinator: i32,
}

/// A consumer group as described by its coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead`.
    pub state: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignor chosen (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host.
    pub client_host: String,
    /// The subscription it sent (consumer protocol bytes).
    pub metadata: Bytes,
    /// The assignment it got (consumer protocol bytes).
    pub assignment: Bytes,
}

impl MemberDescription {
    /// The partitions its assignment gives it, decoded as the consumer protocol (the
    /// `consumer` protocol type); empty while the group has not assigned anything.
    pub fn assigned_partitions(&self) -> Result<Vec<TopicPartition>> {
        if self.assignment.is_empty() {
            return Ok(Vec::new());
        }
        let assignment = crate::consumer::protocol::Assignment::decode(self.assignment.clone())?;
        Ok(assignment
            .partitions
            .into_iter()
            .map(|tp| (tp.topic, tp.partition))
            .collect())
    }
}

/// Which offset [`Admin::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this one (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// An offset found by [`Admin::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset, or -1 when no record matches a timestamp.
    pub offset: i64,
    /// The timestamp of that record, or -1.
    pub timestamp: i64,
    /// The leader epoch of that record, or -1.
    pub leader_epoch: i32,
}

/// The cluster as DescribeCluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// Cluster id.
    pub cluster_id: String,
    /// The active controller's id, or -1.
    pub controller_id: i32,
    /// Brokers.
    pub brokers: Vec<BrokerMetadata>,
}

/// A topic-partition.
pub type TopicPartition = (String, i32);

/// An admin client over a shared [`Client`].
///
/// Built like the producer and the consumer: [`Admin::connect`] from a config, or
/// [`Admin::from_client`] on a [`Client`] shared with them.
///
/// ```no_run
/// # async fn run() -> weir_client::Result<()> {
/// use weir_client::ClientConfig;
/// use weir_client::admin::{Admin, NewTopic};
///
/// let admin = Admin::connect(ClientConfig::new("localhost:9092")).await?;
/// for (topic, result) in admin.create_topics(&[NewTopic::new("user-activity", 3)]).await? {
///     println!("{topic}: {result:?}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// Validates `config` and connects to the cluster.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        Ok(Self::from_client(Client::connect(config).await?))
    }

    /// An admin client using `client`'s connections and metadata.
    pub fn from_client(client: Client) -> Self {
        Self { client }
    }

    /// The client it sends through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every topic of the cluster, internal ones included, sorted by name. A topic the broker
    /// reports with an error (one still being created) is left out.
    pub async fn list_topics(&self) -> Result<Vec<TopicMetadata>> {
        let request = MetadataRequest {
            // Null asks for every topic (Metadata v1+).
            topics: None,
            allow_auto_topic_creation: false,
            ..MetadataRequest::default()
        };
        let (response, _) = self.client.send_any(request).await?;
        let mut topics: Vec<TopicMetadata> = response
            .topics
            .into_iter()
            .filter_map(topic_entry)
            .filter_map(|(_, entry)| match entry {
                TopicEntry::Known(topic) => Some(topic),
                TopicEntry::Error(_) => None,
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Partitions, leaders, replicas and ISR of each topic, never creating one; one result per
    /// topic, in request order (UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist).
    pub async fn describe_topics(
        &self,
        names: &[&str],
    ) -> Result<Vec<(String, Result<TopicMetadata>)>> {
        let request = MetadataRequest {
            topics: Some(
                names
                    .iter()
                    .map(|name| MetadataRequestTopic {
                        name: Some(name.to_string()),
                        ..MetadataRequestTopic::default()
                    })
                    .collect(),
            ),
            allow_auto_topic_creation: false,
            ..MetadataRequest::default()
        };
        let (response, _) = self.client.send_any(request).await?;
        let results: HashMap<String, Result<TopicMetadata>> = response
            .topics
            .into_iter()
            .filter_map(topic_entry)
            .map(|(name, entry)| match entry {
                TopicEntry::Known(topic) => (name, Ok(topic)),
                TopicEntry::Error(code) => (
                    name.clone(),
                    Err(Error::Kafka {
                        code,
                        message: Some(format!("topic {name}")),
                    }),
                ),
            })
            .collect();
        Ok(in_order(names.iter().map(|n| n.to_string()), results))
    }

    /// Creates topics; one result per topic, in request order.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<Vec<(String, Result<()>)>> {
        let request = CreateTopicsRequest {
            topics: topics
                .iter()
                .map(|t| CreatableTopic {
                    name: t.name.clone(),
                    num_partitions: t.num_partitions,
                    replication_factor: t.replication_factor,
                    configs: t
                        .configs
                        .iter()
                        .map(|(name, value)| CreatableTopicConfig {
                            name: name.clone(),
                            value: Some(value.clone()),
                            ..CreatableTopicConfig::default()
                        })
                        .collect(),
                    ..CreatableTopic::default()
                })
                .collect(),
            timeout_ms: self.timeout_ms(),
            validate_only: false,
            ..CreateTopicsRequest::default()
        };
        let (response, _) = self.client.send_any(request).await?;
        let results: HashMap<String, Result<()>> = response
            .topics
            .into_iter()
            .map(|t| (t.name, item(t.error_code, t.error_message)))
            .collect();
        self.client.invalidate_metadata();
        Ok(in_order(topics.iter().map(|t| t.name.clone()), results))
    }

    /// Deletes topics by name; one result per topic.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<Vec<(String, Result<()>)>> {
        let request = DeleteTopicsRequest {
            // v1-5 carry names in `topic_names`; v6 would use `topics`.
            topic_names: names.iter().map(|n| n.to_string()).collect(),
            topics: names
                .iter()
                .map(|n| DeleteTopicState {
                    name: Some(n.to_string()),
                    ..DeleteTopicState::default()
                })
                .collect(),
            timeout_ms: self.timeout_ms(),
            ..DeleteTopicsRequest::default()
        };
        let (response, _) = self.client.send_any(request).await?;
        let results: HashMap<String, Result<()>> = response
            .responses
            .into_iter()
            .filter_map(|r| Some((r.name?, item(r.error_code, r.error_message))))
            .collect();
        // Kept in the metadata, a deleted topic would be auto-created by the next refresh.
        let deleted: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| matches!(results.get(*n), Some(Ok(()))))
            .collect();
        self.client.forget_topics(&deleted);
        self.client.invalidate_metadata();
        Ok(in_order(names.iter().map(|n| n.to_string()), results))
    }

    /// Raises topics' partition counts to the given totals; one result per topic.
    pub async fn create_partitions(
        &self,
        totals: &[(&str, i32)],
    ) -> Result<Vec<(String, Result<()>)>> {
        let request = CreatePartitionsRequest {
            topics: totals
                .iter()
                .map(|(name, count)| CreatePartitionsTopic {
                    name: name.to_string(),
                    count: *count,
                    assignments: None,
                    ..CreatePartitionsTopic::default()
                })
                .collect(),
            timeout_ms: self.timeout_ms(),
            validate_only: false,
            ..CreatePartitionsRequest::default()
        };
        let (response, _) = self.client.send_any(request).await?;
        let results: HashMap<String, Result<()>> = response
            .results
            .into_iter()
            .map(|r| (r.name, item(r.error_code, r.error_message)))
            .collect();
        self.client.invalidate_metadata();
        Ok(in_order(totals.iter().map(|(n, _)| n.to_string()), results))
    }

    /// Describes every config of each resource; one result per resource. Broker configs are
    /// asked of that broker.
    pub async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<Vec<(ConfigResource, Result<Vec<ConfigEntry>>)>> {
        let mut out = Vec::new();
        for resource in resources {
            let (resource_type, resource_name) = resource.wire();
            let request = DescribeConfigsRequest {
                resources: vec![DescribeConfigsResource {
                    resource_type,
                    resource_name,
                    configuration_keys: None,
                    ..DescribeConfigsResource::default()
                }],
                ..DescribeConfigsRequest::default()
            };
            let (response, _) = match resource {
                ConfigResource::Broker(id) => self.client.send_to(*id, request).await?,
                ConfigResource::Topic(_) => self.client.send_any(request).await?,
            };
            let result = match response.results.into_iter().next() {
                Some(r) => item(r.error_code, r.error_message).map(|()| {
                    r.configs
                        .into_iter()
                        .map(|c| ConfigEntry {
                            name: c.name,
                            value: c.value,
                            read_only: c.read_only,
                            // DEFAULT_CONFIG in Kafka's ConfigSource.
                            is_default: c.config_source == 5,
                            is_sensitive: c.is_sensitive,
                            source: ConfigSource::from_wire(c.config_source),
                        })
                        .collect()
                }),
                None => Err(missing()),
            };
            out.push((resource.clone(), result));
        }
        Ok(out)
    }

    /// Changes configs incrementally (IncrementalAlterConfigs): only the named properties
    /// change. One result per resource.
    pub async fn alter_configs(
        &self,
        changes: &[(ConfigResource, Vec<AlterConfigOp>)],
    ) -> Result<Vec<(ConfigResource, Result<()>)>> {
        let mut out = Vec::new();
        for (resource, ops) in changes {
            let (resource_type, resource_name) = resource.wire();
            let request = IncrementalAlterConfigsRequest {
                resources: vec![AlterConfigsResource {
                    resource_type,
                    resource_name,
                    configs: ops
                        .iter()
                        .map(|op| match op {
                            AlterConfigOp::Set(name, value) => AlterableConfig {
                                name: name.clone(),
                                config_operation: 0,
                                value: Some(value.clone()),
                                ..AlterableConfig::default()
                            },
                            AlterConfigOp::Delete(name) => AlterableConfig {
                                name: name.clone(),
                                config_operation: 1,
                                value: None,
                                ..AlterableConfig::default()
                            },
                        })
                        .collect(),
                    ..AlterConfigsResource::default()
                }],
                validate_only: false,
                ..IncrementalAlterConfigsRequest::default()
            };
            let (response, _) = match resource {
                ConfigResource::Broker(id) => self.client.send_to(*id, request).await?,
                ConfigResource::Topic(_) => self.client.send_any(request).await?,
            };
            let result = match response.responses.into_iter().next() {
                Some(r) => item(r.error_code, r.error_message),
                None => Err(missing()),
            };
            out.push((resource.clone(), result));
        }
        Ok(out)
    }

    /// Lists the groups of every broker.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let mut groups = Vec::new();
        for broker in self.client.brokers() {
            let (response, _) = self
                .client
                .send_to(broker.node_id, ListGroupsRequest::default())
                .await?;
            item(response.error_code, None)?;
            groups.extend(response.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id,
                protocol_type: g.protocol_type,
                state: g.group_state,
                coordinator: broker.node_id,
            }));
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(groups)
    }

    /// Describes groups, each by its coordinator; one result per group.
    pub async fn describe_groups(
        &self,
        groups: &[&str],
    ) -> Result<Vec<(String, Result<GroupDescription>)>> {
        let mut out = Vec::new();
        for group in groups {
            let result = self.describe_group(group).await;
            out.push((group.to_string(), result));
        }
        Ok(out)
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let coordinator = self.client.find_coordinator(group).await?;
        let request = DescribeGroupsRequest {
            groups: vec![group.to_string()],
            ..DescribeGroupsRequest::default()
        };
        let (response, _) = self.client.send_to(coordinator, request).await?;
        let described = response.groups.into_iter().next().ok_or_else(missing)?;
        item(described.error_code, described.error_message)?;
        Ok(GroupDescription {
            group_id: described.group_id,
            state: described.group_state,
            protocol_type: described.protocol_type,
            protocol: described.protocol_data,
            members: described
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    metadata: m.member_metadata,
                    assignment: m.member_assignment,
                })
                .collect(),
        })
    }

    /// The offsets group `group` has committed (the next offset each partition's consumer
    /// reads), for every partition it has one, sorted. Asks its coordinator with OffsetFetch
    /// v2+ (every topic).
    pub async fn list_group_offsets(&self, group: &str) -> Result<Vec<(TopicPartition, i64)>> {
        let request = OffsetFetchRequest {
            group_id: group.to_string(),
            topics: None,
            ..OffsetFetchRequest::default()
        };
        self.with_coordinator(group, request, |response| {
            let mut code = ErrorCode(response.error_code);
            let mut offsets = Vec::new();
            for topic in response.topics {
                for p in topic.partitions {
                    let partition_code = ErrorCode(p.error_code);
                    if partition_code.is_error() {
                        if !code.is_error() {
                            code = partition_code;
                        }
                    } else if p.committed_offset >= 0 {
                        offsets.push(((topic.name.clone(), p.partition_index), p.committed_offset));
                    }
                }
            }
            if code.is_error() {
                return Err(Error::kafka(code));
            }
            offsets.sort();
            Ok(offsets)
        })
        .await
    }

    /// Commits offsets for group `group` as an admin (OffsetCommit with generation -1 and no
    /// member id, as `kafka-consumer-groups.sh --reset-offsets` does): the coordinator accepts
    /// it only while the group has no members. One result per partition, in request order.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let mut by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            by_topic
                .entry(topic.clone())
                .or_default()
                .push(OffsetCommitRequestPartition {
                    partition_index: *partition,
                    committed_offset: *offset,
                    committed_leader_epoch: -1,
                    committed_metadata: Some(String::new()),
                    ..OffsetCommitRequestPartition::default()
                });
        }
        let request = OffsetCommitRequest {
            group_id: group.to_string(),
            generation_id_or_member_epoch: -1,
            member_id: String::new(),
            group_instance_id: None,
            retention_time_ms: -1,
            topics: by_topic
                .into_iter()
                .map(|(name, partitions)| OffsetCommitRequestTopic {
                    name,
                    partitions,
                    ..OffsetCommitRequestTopic::default()
                })
                .collect(),
            ..OffsetCommitRequest::default()
        };
        let results = self
            .with_coordinator(group, request, |response| {
                let mut results = HashMap::new();
                for topic in response.topics {
                    for p in topic.partitions {
                        let code = ErrorCode(p.error_code);
                        // The whole request goes to the coordinator again.
                        if is_coordinator_error(code) {
                            return Err(Error::kafka(code));
                        }
                        results.insert(
                            (topic.name.clone(), p.partition_index),
                            item(p.error_code, None),
                        );
                    }
                }
                Ok(results)
            })
            .await?;
        Ok(in_order(offsets.iter().map(|(tp, _)| tp.clone()), results))
    }

    /// Deletes consumer groups with no members, and their committed offsets; one result per
    /// group (NON_EMPTY_GROUP for a group with members, GROUP_ID_NOT_FOUND for none).
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<Vec<(String, Result<()>)>> {
        let mut out = Vec::new();
        for group in groups {
            let request = DeleteGroupsRequest {
                groups_names: vec![group.to_string()],
                ..DeleteGroupsRequest::default()
            };
            let result = self
                .with_coordinator(group, request, |response| {
                    let result = response.results.into_iter().next().ok_or_else(missing)?;
                    let code = ErrorCode(result.error_code);
                    if is_coordinator_error(code) {
                        return Err(Error::kafka(code));
                    }
                    Ok(item(result.error_code, None))
                })
                .await;
            out.push((group.to_string(), result.and_then(|r| r)));
        }
        Ok(out)
    }

    /// Sends `request` to `group`'s coordinator and parses the answer, finding the coordinator
    /// again and retrying while the outcome is retriable (the coordinator moved or is loading,
    /// its connection dropped) within `request.timeout.ms`.
    async fn with_coordinator<R, T>(
        &self,
        group: &str,
        request: R,
        parse: impl Fn(R::Response) -> Result<T>,
    ) -> Result<T>
    where
        R: weir_protocol::Request + Clone,
    {
        let deadline = Instant::now() + self.client.config().request_timeout;
        let mut backoff = self.client.retry_backoff();
        loop {
            let result = match self.client.find_coordinator(group).await {
                Ok(coordinator) => match self.client.send_to(coordinator, request.clone()).await {
                    Ok((response, _)) => parse(response),
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
            match result {
                Err(err) if err.is_retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(backoff.next()).await;
                }
                other => return other,
            }
        }
    }

    /// Looks up offsets by time (or the log start or end) on each partition's leader; one
    /// result per partition, in request order. Name each partition once.
    pub async fn list_offsets(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
    ) -> Result<Vec<(TopicPartition, Result<ListedOffset>)>> {
        let specs: HashMap<TopicPartition, OffsetSpec> = partitions.iter().cloned().collect();
        let results = self
            .per_leader(
                partitions.iter().map(|(tp, _)| tp.clone()).collect(),
                |batch| {
                    let mut topics: BTreeMap<String, Vec<ListOffsetsPartition>> = BTreeMap::new();
                    for tp in batch {
                        let spec = specs.get(tp).copied().unwrap_or(OffsetSpec::Latest);
                        topics
                            .entry(tp.0.clone())
                            .or_default()
                            .push(ListOffsetsPartition {
                                partition_index: tp.1,
                                current_leader_epoch: -1,
                                timestamp: spec.wire(),
                                ..ListOffsetsPartition::default()
                            });
                    }
                    ListOffsetsRequest {
                        replica_id: -1,
                        isolation_level: 0,
                        topics: topics
                            .into_iter()
                            .map(|(name, partitions)| ListOffsetsTopic {
                                name,
                                partitions,
                                ..ListOffsetsTopic::default()
                            })
                            .collect(),
                        timeout_ms: self.timeout_ms(),
                        ..ListOffsetsRequest::default()
                    }
                },
                |response| {
                    response
                        .topics
                        .into_iter()
                        .flat_map(|t| {
                            let name = t.name;
                            t.partitions.into_iter().map(move |p| {
                                let tp = (name.clone(), p.partition_index);
                                let code = ErrorCode(p.error_code);
                                let value = ListedOffset {
                                    offset: p.offset,
                                    timestamp: p.timestamp,
                                    leader_epoch: p.leader_epoch,
                                };
                                (tp, code, value)
                            })
                        })
                        .collect()
                },
            )
            .await?;
        Ok(in_order(
            partitions.iter().map(|(tp, _)| tp.clone()),
            results,
        ))
    }

    /// Deletes every record before the given offsets (moves the log start offset); one result
    /// per partition with the new low watermark. Name each partition once.
    pub async fn delete_records(
        &self,
        before: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Result<i64>)>> {
        let offsets: HashMap<TopicPartition, i64> = before.iter().cloned().collect();
        let results = self
            .per_leader(
                before.iter().map(|(tp, _)| tp.clone()).collect(),
                |batch| {
                    let mut topics: BTreeMap<String, Vec<DeleteRecordsPartition>> = BTreeMap::new();
                    for tp in batch {
                        topics
                            .entry(tp.0.clone())
                            .or_default()
                            .push(DeleteRecordsPartition {
                                partition_index: tp.1,
                                offset: offsets.get(tp).copied().unwrap_or(-1),
                                ..DeleteRecordsPartition::default()
                            });
                    }
                    DeleteRecordsRequest {
                        topics: topics
                            .into_iter()
                            .map(|(name, partitions)| DeleteRecordsTopic {
                                name,
                                partitions,
                                ..DeleteRecordsTopic::default()
                            })
                            .collect(),
                        timeout_ms: self.timeout_ms(),
                        ..DeleteRecordsRequest::default()
                    }
                },
                |response| {
                    response
                        .topics
                        .into_iter()
                        .flat_map(|t| {
                            let name = t.name;
                            t.partitions.into_iter().map(move |p| {
                                (
                                    (name.clone(), p.partition_index),
                                    ErrorCode(p.error_code),
                                    p.low_watermark,
                                )
                            })
                        })
                        .collect()
                },
            )
            .await?;
        Ok(in_order(before.iter().map(|(tp, _)| tp.clone()), results))
    }

    /// The cluster id, controller and brokers.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let (response, _) = self
            .client
            .send_any(DescribeClusterRequest::default())
            .await?;
        item(response.error_code, response.error_message)?;
        let mut brokers: Vec<BrokerMetadata> = response
            .brokers
            .into_iter()
            .map(|b| BrokerMetadata {
                node_id: b.broker_id,
                host: b.host,
                port: b.port,
                rack: b.rack,
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        Ok(ClusterDescription {
            cluster_id: response.cluster_id,
            controller_id: response.controller_id,
            brokers,
        })
    }

    /// Sends one request per leader for `partitions`, retrying the partitions whose leader
    /// moved (or is unknown) until `request.timeout.ms` has passed.
    async fn per_leader<R, T>(
        &self,
        partitions: Vec<TopicPartition>,
        build: impl Fn(&[TopicPartition]) -> R,
        parse: impl Fn(R::Response) -> Vec<(TopicPartition, ErrorCode, T)>,
    ) -> Result<HashMap<TopicPartition, Result<T>>>
    where
        R: weir_protocol::Request,
    {
        let deadline = Instant::now() + self.client.config().request_timeout;
        let mut backoff = self.client.retry_backoff();
        let mut results = HashMap::new();
        let mut pending = partitions;
        while !pending.is_empty() {
            let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
            let mut retry = Vec::new();
            for tp in pending {
                match self.client.leader_for(&tp.0, tp.1).await {
                    Ok(leader) => by_leader.entry(leader).or_default().push(tp),
                    Err(err) => {
                        results.insert(tp, Err(err));
                    }
                }
            }
            for (leader, batch) in by_leader {
                let parsed = match self.client.send_to(leader, build(&batch)).await {
                    Ok((response, _)) => parse(response),
                    Err(err) if err.is_retriable() && Instant::now() < deadline => {
                        retry.extend(batch);
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                for (tp, code, value) in parsed {
                    if code.is_retriable() && Instant::now() < deadline {
                        self.client.invalidate_metadata_on(code);
                        retry.push(tp);
                    } else if code.is_error() {
                        results.insert(tp, Err(Error::kafka(code)));
                    } else {
                        results.insert(tp, Ok(value));
                    }
                }
            }
            if !retry.is_empty() {
                tokio::time::sleep(backoff.next()).await;
            }
            pending = retry;
        }
        Ok(results)
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.client.config().request_timeout.as_millis()).unwrap_or(i32::MAX)
    }
}

/// A per-item result from an error code and message.
fn item(code: i16, message: Option<String>) -> Result<()> {
    let code = ErrorCode(code);
    if code.is_error() {
        Err(Error::Kafka { code, message })
    } else {
        Ok(())
    }
}

/// Whether `code` says to ask the group's coordinator again (it moved, or is still loading).
fn is_coordinator_error(code: ErrorCode) -> bool {
    code == ErrorCode::NOT_COORDINATOR
        || code == ErrorCode::COORDINATOR_NOT_AVAILABLE
        || code == ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
}

fn missing() -> Error {
    Error::Kafka {
        code: ErrorCode::UNKNOWN_SERVER_ERROR,
        message: Some("no result for this item (left out by the broker, or named twice)".into()),
    }
}

/// Results in the order of `keys`; keys the response left out get an error.
fn in_order<K: std::hash::Hash + Eq + Clone, T>(
    keys: impl Iterator<Item = K>,
    mut results: HashMap<K, Result<T>>,
) -> Vec<(K, Result<T>)> {
    keys.map(|k| {
        let result = results.remove(&k).unwrap_or_else(|| Err(missing()));
        (k, result)
    })
    .collect()
}
