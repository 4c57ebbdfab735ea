//! The metadata image: the cluster's metadata at one offset of the metadata log, immutable.
//!
//! [`MetadataImage::apply`] takes a batch of records and returns the next image; the old one is
//! untouched, so readers holding an `Arc<MetadataImage>` always see one consistent state. Topics
//! sit behind `Arc`s, so a new image shares every topic the batch did not change.

use crate::record::MetadataRecord;
use crate::types::{
    BrokerId, BrokerRegistration, ConfigResource, NO_LEADER, PartitionRegistration, TopicId,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A topic in the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// The name.
    pub name: String,
    /// The id.
    pub id: TopicId,
    /// Partitions by index (index `i` is partition `i`).
    pub partitions: Vec<PartitionRegistration>,
}

impl TopicImage {
    /// The partition with index `partition`.
    pub fn partition(&self, partition: i32) -> Option<&PartitionRegistration> {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// The number of partitions.
    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    /// Whether this is one of Kafka's internal topics.
    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

/// Whether `name` is one of Kafka's internal topics (`__consumer_offsets`,
/// `__transaction_state`).
pub fn is_internal_topic(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

/// Why a batch of records could not be applied. The quorum applies the same batch on every
/// node, so every node rejects it the same way; the controller validates before it writes, so
/// this means a bug or a hostile log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The record names a broker that is not registered, or an older registration of it.
    #[error(
        "record {index} names broker {broker_id} epoch {broker_epoch}, which is not registered"
    )]
    UnknownBroker {
        /// The record's position in its batch.
        index: usize,
        /// The broker.
        broker_id: BrokerId,
        /// The epoch the record named.
        broker_epoch: i64,
    },
    /// The record names a topic id that does not exist.
    #[error("record {index} names unknown topic id {topic_id}")]
    UnknownTopic {
        /// The record's position in its batch.
        index: usize,
        /// The topic id.
        topic_id: TopicId,
    },
    /// The record configures a topic that does not exist.
    #[error("record {index} configures unknown topic {name}")]
    UnknownTopicName {
        /// The record's position in its batch.
        index: usize,
        /// The name.
        name: String,
    },
    /// A topic with this name or id exists.
    #[error("record {index} creates topic {name}, whose name or id is taken")]
    DuplicateTopic {
        /// The record's position in its batch.
        index: usize,
        /// The name.
        name: String,
    },
    /// The partition index is not the topic's next one, or not one it has.
    #[error(
        "record {index} names partition {partition} of topic {topic_id}, which is out of order or unknown"
    )]
    BadPartition {
        /// The record's position in its batch.
        index: usize,
        /// The topic.
        topic_id: TopicId,
        /// The partition.
        partition: i32,
    },
    /// The partition registration would break its rules (ISR outside the replicas, a leader
    /// outside the ISR, duplicate replicas).
    #[error(
        "record {index} gives partition {partition} of topic {topic_id} an invalid registration: {why}"
    )]
    InvalidPartition {
        /// The record's position in its batch.
        index: usize,
        /// The topic.
        topic_id: TopicId,
        /// The partition.
        partition: i32,
        /// Which rule.
        why: &'static str,
    },
    /// Producer ids would go backwards.
    #[error("record {index} moves the next producer id back to {next_producer_id}")]
    ProducerIdsBackwards {
        /// The record's position in its batch.
        index: usize,
        /// The proposed next id.
        next_producer_id: i64,
    },
    /// The cluster id was already set to something else.
    #[error("record {index} changes the cluster id")]
    ClusterIdChanged {
        /// The record's position in its batch.
        index: usize,
    },
}

/// The cluster's metadata at one offset of the metadata log.
///
/// It serializes (for snapshots) as lists rather than maps, and deserializing checks that the
/// lists are consistent (unique names and ids), so a damaged snapshot is refused rather than
/// loaded half-way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ImageSnapshot", try_from = "ImageSnapshot")]
pub struct MetadataImage {
    /// The offset of the last batch applied (0 before any).
    offset: u64,
    cluster_id: Option<String>,
    features: BTreeMap<String, i16>,
    brokers: BTreeMap<BrokerId, BrokerRegistration>,
    topics: BTreeMap<String, Arc<TopicImage>>,
    topic_names: BTreeMap<TopicId, String>,
    configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    next_producer_id: i64,
    /// The highest broker epoch ever given, so a new registration's epoch is always higher.
    max_broker_epoch: i64,
}

impl MetadataImage {
    /// The empty image, before any record.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The offset of the last batch applied.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The cluster id, once the first controller has written it.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// Finalized feature levels.
    pub fn features(&self) -> &BTreeMap<String, i16> {
        &self.features
    }

    /// Every registered broker, fenced or not, by id.
    pub fn brokers(&self) -> &BTreeMap<BrokerId, BrokerRegistration> {
        &self.brokers
    }

    /// The registration of broker `id`.
    pub fn broker(&self, id: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    /// Registered, unfenced brokers by id (what clients see in Metadata).
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Every topic by name.
    pub fn topics(&self) -> &BTreeMap<String, Arc<TopicImage>> {
        &self.topics
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    /// The topic with id `id`.
    pub fn topic_by_id(&self, id: TopicId) -> Option<&Arc<TopicImage>> {
        self.topic_names.get(&id).and_then(|n| self.topics.get(n))
    }

    /// The config entries of `resource` (empty if it has none).
    pub fn configs(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        self.configs.get(resource)
    }

    /// The first producer id not yet handed to any broker.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// The highest broker epoch given so far.
    pub fn max_broker_epoch(&self) -> i64 {
        self.max_broker_epoch
    }

    /// Applies one batch of records written at `offset`, all or nothing: on error the image is
    /// the old one with only its offset moved (the batch is consumed, as on every other node).
    pub fn apply(&self, offset: u64, records: &[MetadataRecord]) -> (Self, Result<(), ApplyError>) {
        let mut next = self.clone();
        next.offset = offset;
        for (index, record) in records.iter().enumerate() {
            if let Err(e) = next.apply_one(offset, index, record) {
                let mut unchanged = self.clone();
                unchanged.offset = offset;
                return (unchanged, Err(e));
            }
        }
        (next, Ok(()))
    }

    fn apply_one(
        &mut self,
        offset: u64,
        index: usize,
        record: &MetadataRecord,
    ) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::ClusterId { cluster_id } => match &self.cluster_id {
                Some(existing) if existing != cluster_id => {
                    return Err(ApplyError::ClusterIdChanged { index });
                }
                _ => self.cluster_id = Some(cluster_id.clone()),
            },
            MetadataRecord::FeatureLevel { name, level } => {
                if *level == 0 {
                    self.features.remove(name);
                } else {
                    self.features.insert(name.clone(), *level);
                }
            }
            MetadataRecord::RegisterBroker(registration) => {
                let mut registration = registration.clone();
                registration.registered_at_offset = offset;
                self.max_broker_epoch = self.max_broker_epoch.max(registration.broker_epoch);
                self.brokers.insert(registration.broker_id, registration);
            }
            MetadataRecord::BrokerRegistrationChange {
                broker_id,
                broker_epoch,
                fenced,
                in_controlled_shutdown,
            } => {
                let broker = self.registered_mut(index, *broker_id, *broker_epoch)?;
                if let Some(fenced) = fenced {
                    broker.fenced = *fenced;
                }
                if let Some(shutdown) = in_controlled_shutdown {
                    broker.in_controlled_shutdown = *shutdown;
                }
            }
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                self.registered_mut(index, *broker_id, *broker_epoch)?;
                self.brokers.remove(broker_id);
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topics.contains_key(name)
                    || self.topic_names.contains_key(topic_id)
                    || topic_id.is_zero()
                {
                    return Err(ApplyError::DuplicateTopic {
                        index,
                        name: name.clone(),
                    });
                }
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: Vec::new(),
                    }),
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
            } => {
                let registration = PartitionRegistration {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                    original_replicas: Vec::new(),
                };
                check_registration(index, *topic_id, *partition, &registration)?;
                let topic = self.topic_mut(index, *topic_id)?;
                if usize::try_from(*partition).ok() != Some(topic.partitions.len()) {
                    return Err(ApplyError::BadPartition {
                        index,
                        topic_id: *topic_id,
                        partition: *partition,
                    });
                }
                topic.partitions.push(registration);
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
                adding_replicas,
                removing_replicas,
                original_replicas,
            } => {
                let topic = self.topic_mut(index, *topic_id)?;
                let current = usize::try_from(*partition)
                    .ok()
                    .and_then(|i| topic.partitions.get_mut(i))
                    .ok_or(ApplyError::BadPartition {
                        index,
                        topic_id: *topic_id,
                        partition: *partition,
                    })?;
                let mut changed = current.clone();
                if let Some(replicas) = replicas {
                    changed.replicas = replicas.clone();
                }
                if let Some(isr) = isr {
                    changed.isr = isr.clone();
                }
                if let Some(adding) = adding_replicas {
                    changed.adding_replicas = adding.clone();
                }
                if let Some(removing) = removing_replicas {
                    changed.removing_replicas = removing.clone();
                }
                if let Some(original) = original_replicas {
                    changed.original_replicas = original.clone();
                }
                if let Some(leader) = leader {
                    if *leader != changed.leader {
                        changed.leader = *leader;
                        changed.leader_epoch = changed.leader_epoch.saturating_add(1);
                    }
                }
                changed.partition_epoch = changed.partition_epoch.saturating_add(1);
                check_registration(index, *topic_id, *partition, &changed)?;
                *current = changed;
            }
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => {
                if let ConfigResource::Topic(topic) = resource {
                    if !self.topics.contains_key(topic) {
                        return Err(ApplyError::UnknownTopicName {
                            index,
                            name: topic.clone(),
                        });
                    }
                }
                match value {
                    Some(value) => {
                        self.configs
                            .entry(resource.clone())
                            .or_default()
                            .insert(name.clone(), value.clone());
                    }
                    None => {
                        if let Some(entries) = self.configs.get_mut(resource) {
                            entries.remove(name);
                            if entries.is_empty() {
                                self.configs.remove(resource);
                            }
                        }
                    }
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let name = self
                    .topic_names
                    .remove(topic_id)
                    .ok_or(ApplyError::UnknownTopic {
                        index,
                        topic_id: *topic_id,
                    })?;
                self.topics.remove(&name);
                self.configs.remove(&ConfigResource::Topic(name));
            }
            MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id,
            } => {
                // Broker -1 is the controller itself, importing the reservation of an earlier
                // single-node Weir at bootstrap.
                if *broker_id != NO_LEADER {
                    self.registered_mut(index, *broker_id, *broker_epoch)?;
                }
                if *next_producer_id <= self.next_producer_id {
                    return Err(ApplyError::ProducerIdsBackwards {
                        index,
                        next_producer_id: *next_producer_id,
                    });
                }
                self.next_producer_id = *next_producer_id;
            }
        }
        Ok(())
    }

    fn registered_mut(
        &mut self,
        index: usize,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> Result<&mut BrokerRegistration, ApplyError> {
        match self.brokers.get_mut(&broker_id) {
            Some(b) if b.broker_epoch == broker_epoch => Ok(b),
            _ => Err(ApplyError::UnknownBroker {
                index,
                broker_id,
                broker_epoch,
            }),
        }
    }

    fn topic_mut(
        &mut self,
        index: usize,
        topic_id: TopicId,
    ) -> Result<&mut TopicImage, ApplyError> {
        let unknown = ApplyError::UnknownTopic { index, topic_id };
        let name = self.topic_names.get(&topic_id).ok_or(unknown.clone())?;
        let topic = self.topics.get_mut(name).ok_or(unknown)?;
        Ok(Arc::make_mut(topic))
    }
}

/// The rules every partition registration keeps: replicas are distinct, the ISR is a subset of
/// them, the leader is in the ISR or there is none, and a reassignment's adding and removing
/// replicas are distinct replicas, none both, leaving a target that is not empty, with the
/// original replicas being the replicas it does not add.
fn check_registration(
    index: usize,
    topic_id: TopicId,
    partition: i32,
    registration: &PartitionRegistration,
) -> Result<(), ApplyError> {
    let invalid = |why| ApplyError::InvalidPartition {
        index,
        topic_id,
        partition,
        why,
    };
    let mut seen = std::collections::BTreeSet::new();
    if registration.replicas.is_empty() {
        return Err(invalid("no replicas"));
    }
    if !registration.replicas.iter().all(|r| seen.insert(*r)) {
        return Err(invalid("duplicate replicas"));
    }
    if !registration.isr.iter().all(|r| seen.contains(r)) {
        return Err(invalid("an ISR member is not a replica"));
    }
    let mut isr_seen = std::collections::BTreeSet::new();
    if !registration.isr.iter().all(|r| isr_seen.insert(*r)) {
        return Err(invalid("duplicate ISR members"));
    }
    if registration.leader != NO_LEADER && !registration.isr.contains(&registration.leader) {
        return Err(invalid("the leader is not in the ISR"));
    }
    let mut moving = std::collections::BTreeSet::new();
    let (adding, removing) = (
        &registration.adding_replicas,
        &registration.removing_replicas,
    );
    if !adding.iter().chain(removing).all(|r| moving.insert(*r)) {
        return Err(invalid(
            "a replica is added or removed twice, or both added and removed",
        ));
    }
    if !moving.iter().all(|r| seen.contains(r)) {
        return Err(invalid("an adding or removing replica is not a replica"));
    }
    if removing.len() >= registration.replicas.len() {
        return Err(invalid("a reassignment removes every replica"));
    }
    let original = &registration.original_replicas;
    let expected: Vec<BrokerId> = if registration.is_reassigning() {
        let mut kept: Vec<BrokerId> = registration
            .replicas
            .iter()
            .copied()
            .filter(|r| !adding.contains(r))
            .collect();
        kept.sort_unstable();
        kept
    } else {
        Vec::new()
    };
    let mut sorted = original.clone();
    sorted.sort_unstable();
    if sorted != expected {
        return Err(invalid(
            "the original replicas are not the replicas a reassignment does not add",
        ));
    }
    Ok(())
}

/// The serialized form of a [`MetadataImage`].
#[derive(Serialize, Deserialize)]
struct ImageSnapshot {
    offset: u64,
    cluster_id: Option<String>,
    features: Vec<(String, i16)>,
    brokers: Vec<BrokerRegistration>,
    topics: Vec<TopicImage>,
    configs: Vec<(ConfigResource, Vec<(String, String)>)>,
    next_producer_id: i64,
    max_broker_epoch: i64,
}

impl From<MetadataImage> for ImageSnapshot {
    fn from(image: MetadataImage) -> Self {
        Self {
            offset: image.offset,
            cluster_id: image.cluster_id,
            features: image.features.into_iter().collect(),
            brokers: image.brokers.into_values().collect(),
            topics: image
                .topics
                .into_values()
                .map(Arc::unwrap_or_clone)
                .collect(),
            configs: image
                .configs
                .into_iter()
                .map(|(r, entries)| (r, entries.into_iter().collect()))
                .collect(),
            next_producer_id: image.next_producer_id,
            max_broker_epoch: image.max_broker_epoch,
        }
    }
}

impl TryFrom<ImageSnapshot> for MetadataImage {
    type Error = String;

    fn try_from(snapshot: ImageSnapshot) -> Result<Self, String> {
        let mut image = MetadataImage {
            offset: snapshot.offset,
            cluster_id: snapshot.cluster_id,
            features: snapshot.features.into_iter().collect(),
            next_producer_id: snapshot.next_producer_id,
            max_broker_epoch: snapshot.max_broker_epoch,
            ..MetadataImage::default()
        };
        for broker in snapshot.brokers {
            if image.brokers.insert(broker.broker_id, broker).is_some() {
                return Err("a broker appears twice".into());
            }
        }
        for topic in snapshot.topics {
            for (i, p) in topic.partitions.iter().enumerate() {
                let i = i32::try_from(i).unwrap_or(i32::MAX);
                check_registration(0, topic.id, i, p).map_err(|e| e.to_string())?;
            }
            if image
                .topic_names
                .insert(topic.id, topic.name.clone())
                .is_some()
                || topic.id.is_zero()
            {
                return Err(format!("topic id {} appears twice or is zero", topic.id));
            }
            let name = topic.name.clone();
            if image.topics.insert(name.clone(), Arc::new(topic)).is_some() {
                return Err(format!("topic {name} appears twice"));
            }
        }
        for (resource, entries) in snapshot.configs {
            image
                .configs
                .insert(resource, entries.into_iter().collect());
        }
        Ok(image)
    }
}
