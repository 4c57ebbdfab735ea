//! Administrative operations: topics, partitions, configs, groups, offsets and records.
//!
//! Each operation is a thin typed wrapper over one Kafka API. Operations on several items
//! return one result per item, so one refused topic does not hide what happened to the others;
//! the outer `Result` is for the request as a whole (unreachable cluster, timeout). Operations
//! routed to partition leaders (list offsets, delete records) retry items whose leader moved
//! within `request.timeout.ms`.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::metadata::BrokerMetadata;
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
use weir_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest,
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
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// An admin client using `client`'s connections.
    pub fn new(client: Client) -> Self {
        Self { client }
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
