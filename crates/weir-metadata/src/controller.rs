//! The controller's decisions, with no I/O: requests and ticks in, records to append out.
//!
//! The [`Controller`] reads the latest [`MetadataImage`] and returns the records that carry
//! out a request; its driver appends them to the metadata log and answers once they are
//! committed. Validation happens here, so every record that reaches the log applies cleanly.
//! The only state kept outside the image is soft: when each broker last heartbeat, which a new
//! active controller rebuilds by giving every broker a fresh session.

use crate::image::MetadataImage;
use crate::record::MetadataRecord;
use crate::types::{
    BrokerId, BrokerRegistration, ConfigResource, Endpoint, Millis, NO_LEADER,
    PartitionRegistration, ProducerIdBlock, TopicId,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// The controller's settings (Kafka's names in the docs of each).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The controller's own `node.id` when it is also a broker (combined mode): a new process
    /// registering this id means the old one is gone, since this process is it.
    pub local_node_id: Option<BrokerId>,
    /// `broker.session.timeout.ms`: a broker without a heartbeat for this long is fenced.
    pub broker_session_timeout_ms: Millis,
    /// `num.partitions`: partitions of a topic created without a count.
    pub default_num_partitions: i32,
    /// `default.replication.factor`: replicas of a topic created without a factor.
    pub default_replication_factor: i16,
    /// Producer ids handed to a broker at a time (Kafka: 1000).
    pub producer_id_block_size: i64,
    /// `auto.leader.rebalance.enable`: every `leader_imbalance_check_interval_ms` the
    /// controller moves leadership back to preferred replicas (see [`Controller::tick`]).
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds.
    pub leader_imbalance_check_interval_ms: Millis,
    /// `leader.imbalance.per.broker.percentage`: a broker's share of partitions it prefers but
    /// does not lead above which its leaderships are moved back.
    pub leader_imbalance_per_broker_percentage: u8,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            local_node_id: None,
            broker_session_timeout_ms: 9_000,
            default_num_partitions: 1,
            default_replication_factor: 1,
            producer_id_block_size: 1_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
        }
    }
}

/// Why the controller refused a request. Each maps to one Kafka error code in the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControllerError {
    /// The topic name breaks Kafka's rules.
    #[error("topic name {name:?} is invalid: {why}")]
    InvalidTopicName {
        /// The name.
        name: String,
        /// Which rule.
        why: String,
    },
    /// A topic with the name exists.
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// No topic with that name or id.
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// A partition count that is not positive, or does not grow the topic.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A replication factor that is not positive or exceeds the unfenced brokers.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A manual assignment that is malformed or names unknown brokers.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// The request came from a broker registration that is not the current one.
    #[error("broker {broker_id} epoch {broker_epoch} is not the current registration")]
    StaleBrokerEpoch {
        /// The broker.
        broker_id: BrokerId,
        /// The epoch it sent.
        broker_epoch: i64,
    },
    /// Another live process holds this broker id.
    #[error("broker {0} is already registered by another live process")]
    DuplicateBrokerRegistration(BrokerId),
    /// The broker's cluster id is not this cluster's.
    #[error("cluster id {got} is not this cluster's ({expected})")]
    InconsistentClusterId {
        /// This cluster's id.
        expected: String,
        /// The one the broker sent.
        got: String,
    },
    /// Changing this is not allowed (internal topics, for example).
    #[error("{0}")]
    NotAllowed(String),
    /// Producer ids are exhausted.
    #[error("producer ids are exhausted")]
    ProducerIdsExhausted,
    /// No such partition.
    #[error("partition {partition} of topic {topic} does not exist")]
    UnknownPartition {
        /// The topic (name or id).
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// An AlterPartition from a broker that does not lead the partition in the epoch it sent
    /// (a deposed leader): Kafka's FENCED_LEADER_EPOCH / NOT_LEADER_OR_FOLLOWER.
    #[error("broker {broker_id} does not lead the partition in leader epoch {leader_epoch}")]
    FencedLeaderEpoch {
        /// The asking broker.
        broker_id: BrokerId,
        /// The leader epoch it sent.
        leader_epoch: i32,
    },
    /// An AlterPartition based on a partition epoch that is not the current one: Kafka's
    /// INVALID_UPDATE_VERSION.
    #[error("partition epoch {sent} is not the current one ({current})")]
    InvalidUpdateVersion {
        /// The partition epoch the request was based on.
        sent: i32,
        /// The current partition epoch.
        current: i32,
    },
    /// A proposed ISR member that is fenced, shutting down or not a replica: Kafka's
    /// INELIGIBLE_REPLICA.
    #[error("broker {0} cannot join the ISR")]
    IneligibleReplica(BrokerId),
    /// A malformed request (an ISR without its leader, duplicates).
    #[error("{0}")]
    InvalidRequest(String),
}

/// A leader's request to change a partition's ISR (Kafka's AlterPartition).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartition {
    /// The partition's leader, asking.
    pub broker_id: BrokerId,
    /// Its registration.
    pub broker_epoch: i64,
    /// The topic.
    pub topic_id: TopicId,
    /// The partition.
    pub partition: i32,
    /// The leader epoch the leader believes current.
    pub leader_epoch: i32,
    /// The partition epoch the change is based on.
    pub partition_epoch: i32,
    /// The ISR wanted.
    pub new_isr: Vec<BrokerId>,
}

/// A broker's registration request (Kafka's BrokerRegistration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBroker {
    /// The broker's id.
    pub broker_id: BrokerId,
    /// The cluster id in the broker's `meta.properties`, if it has one.
    pub cluster_id: Option<String>,
    /// The random id of this broker process.
    pub incarnation_id: [u8; 16],
    /// Its listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
}

/// A broker's heartbeat (Kafka's BrokerHeartbeat).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The broker.
    pub broker_id: BrokerId,
    /// Its registration's epoch.
    pub broker_epoch: i64,
    /// The metadata offset the broker has applied.
    pub current_metadata_offset: u64,
    /// The broker asks to be fenced (it cannot serve).
    pub want_fence: bool,
    /// The broker asks to shut down: move its leaderships away first.
    pub want_shutdown: bool,
}

/// The answer to a [`Heartbeat`], once its records are committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The broker has applied the metadata log up to its registration.
    pub is_caught_up: bool,
    /// The broker is fenced.
    pub is_fenced: bool,
    /// Controlled shutdown is complete: the broker leads nothing and may stop.
    pub should_shut_down: bool,
}

/// A CreateTopics entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopic {
    /// The name.
    pub name: String,
    /// Partitions, or `None` for `num.partitions`.
    pub num_partitions: Option<i32>,
    /// Replication factor, or `None` for `default.replication.factor`.
    pub replication_factor: Option<i16>,
    /// A manual assignment: replicas per partition, in partition order.
    pub assignments: Option<Vec<Vec<BrokerId>>>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

/// Which leader an ElectLeaders request asks for (Kafka's `ElectionType`, KIP-460).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// Kafka's PREFERRED (0): make the preferred replica (the first of the replicas) leader.
    Preferred,
    /// Kafka's UNCLEAN (1): elect a leader for a partition that has none, even outside the
    /// ISR. Weir never elects outside the ISR, so this only elects an active ISR member.
    Unclean,
}

/// Why a partition's election did not happen: each is one of Kafka's per-partition
/// ElectLeaders error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ElectionError {
    /// The partition already has the leader asked for: ELECTION_NOT_NEEDED.
    #[error("leader election not needed for {topic}-{partition}")]
    NotNeeded {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The preferred replica is fenced, shutting down or not in the ISR:
    /// PREFERRED_LEADER_NOT_AVAILABLE.
    #[error(
        "preferred replica {preferred} of {topic}-{partition} is not an active in-sync replica"
    )]
    PreferredLeaderNotAvailable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The preferred replica.
        preferred: BrokerId,
    },
    /// No replica may lead (Weir elects only from the ISR): ELIGIBLE_LEADERS_NOT_AVAILABLE.
    #[error(
        "no in-sync replica of {topic}-{partition} can lead; Weir never elects outside the ISR"
    )]
    EligibleLeadersNotAvailable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// No such topic or partition: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("no such partition as {topic}-{partition}")]
    UnknownTopicOrPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
}

/// One partition's part of an ElectLeaders answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionElection {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// `Ok` once the election's record applies, else why there is none.
    pub result: Result<(), ElectionError>,
}

/// One AlterPartitionReassignments entry (KIP-455).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The replicas to move to, the preferred leader first; `None` cancels the reassignment
    /// in progress.
    pub target: Option<Vec<BrokerId>>,
}

/// Why a partition's reassignment was refused: each is one of Kafka's per-partition
/// AlterPartitionReassignments error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReassignmentError {
    /// No such topic or partition: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("no such partition as {topic}-{partition}")]
    UnknownTopicOrPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The target is empty, names a broker twice or an unregistered one, or would leave the
    /// partition without an in-sync replica: INVALID_REPLICA_ASSIGNMENT.
    #[error("invalid reassignment of {topic}-{partition}: {why}")]
    InvalidReplicaAssignment {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Which rule.
        why: String,
    },
    /// A cancellation of a partition that is not being reassigned:
    /// NO_REASSIGNMENT_IN_PROGRESS.
    #[error("no reassignment of {topic}-{partition} is in progress")]
    NoReassignmentInProgress {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
}

/// One partition's part of an AlterPartitionReassignments answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentResult {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// `Ok` once the change's records apply (the reassignment started, completed or was
    /// cancelled), else why not.
    pub result: Result<(), ReassignmentError>,
}

/// A reassignment in progress, as ListPartitionReassignments shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OngoingReassignment {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Every replica: the target's, then those being removed.
    pub replicas: Vec<BrokerId>,
    /// Replicas being added.
    pub adding_replicas: Vec<BrokerId>,
    /// Replicas being removed.
    pub removing_replicas: Vec<BrokerId>,
}

/// The controller's soft state and decisions.
#[derive(Debug)]
pub struct Controller {
    config: ControllerConfig,
    /// When each broker's session ends unless it heartbeats, by broker id.
    sessions: BTreeMap<BrokerId, Millis>,
    /// When the next leader-imbalance check is due (only while this controller is active and
    /// `auto.leader.rebalance.enable` is on).
    next_rebalance: Option<Millis>,
}

impl Controller {
    /// A controller with no sessions yet; call [`Controller::activate`] when it becomes the
    /// active controller.
    pub fn new(config: ControllerConfig) -> Self {
        Self {
            config,
            sessions: BTreeMap::new(),
            next_rebalance: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Becomes the active controller at `now`: every registered broker gets a fresh session,
    /// since the last controller's heartbeat times died with it.
    pub fn activate(&mut self, image: &MetadataImage, now: Millis) {
        self.sessions = image
            .brokers()
            .keys()
            .map(|id| {
                (
                    *id,
                    now.saturating_add(self.config.broker_session_timeout_ms),
                )
            })
            .collect();
        self.next_rebalance = self
            .config
            .auto_leader_rebalance_enable
            .then(|| now.saturating_add(self.config.leader_imbalance_check_interval_ms));
    }

    /// The records the first active controller writes to an empty log (the cluster id), or
    /// nothing when the log has them.
    pub fn bootstrap(&self, image: &MetadataImage, cluster_id: &str) -> Vec<MetadataRecord> {
        if image.cluster_id().is_some() {
            return Vec::new();
        }
        vec![
            MetadataRecord::ClusterId {
                cluster_id: cluster_id.to_string(),
            },
            MetadataRecord::FeatureLevel {
                name: "metadata.version".to_string(),
                level: 1,
            },
        ]
    }

    /// When [`Controller::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.sessions
            .values()
            .copied()
            .chain(self.next_rebalance)
            .min()
    }

    /// Registers a broker: a new epoch, fenced until it catches up. A broker that restarted
    /// (new incarnation) while its old session is still alive is refused, unless the old one
    /// is already fenced; its old leaderships are given up either way.
    pub fn register_broker(
        &mut self,
        image: &MetadataImage,
        now: Millis,
        request: RegisterBroker,
    ) -> Result<(Vec<MetadataRecord>, i64), ControllerError> {
        if let (Some(expected), Some(got)) = (image.cluster_id(), &request.cluster_id) {
            if expected != got {
                return Err(ControllerError::InconsistentClusterId {
                    expected: expected.to_string(),
                    got: got.clone(),
                });
            }
        }
        if let Some(existing) = image.broker(request.broker_id) {
            let session_alive = self
                .sessions
                .get(&request.broker_id)
                .is_some_and(|end| *end > now);
            let is_local = self.config.local_node_id == Some(request.broker_id);
            if existing.incarnation_id != request.incarnation_id
                && !existing.fenced
                && session_alive
                && !is_local
            {
                return Err(ControllerError::DuplicateBrokerRegistration(
                    request.broker_id,
                ));
            }
        }
        let broker_epoch = image.max_broker_epoch().saturating_add(1);
        let mut records = vec![MetadataRecord::RegisterBroker(BrokerRegistration {
            broker_id: request.broker_id,
            incarnation_id: request.incarnation_id,
            broker_epoch,
            endpoints: request.endpoints,
            rack: request.rack,
            fenced: true,
            in_controlled_shutdown: false,
            registered_at_offset: 0,
        })];
        // The new registration is fenced: whatever the old process led moves away or goes
        // offline until this one catches up.
        let after = speculative(image, &records);
        records.extend(elect_leaders(&after, |p| {
            p.isr.contains(&request.broker_id)
        }));
        self.sessions.insert(
            request.broker_id,
            now.saturating_add(self.config.broker_session_timeout_ms),
        );
        Ok((records, broker_epoch))
    }

    /// A broker's heartbeat: extends its session, unfences it once it has caught up with its
    /// registration, fences it on request, and runs its controlled shutdown.
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        now: Millis,
        heartbeat: Heartbeat,
    ) -> Result<(Vec<MetadataRecord>, HeartbeatReply), ControllerError> {
        let broker = current_registration(image, heartbeat.broker_id, heartbeat.broker_epoch)?;
        self.sessions.insert(
            heartbeat.broker_id,
            now.saturating_add(self.config.broker_session_timeout_ms),
        );
        let is_caught_up = heartbeat.current_metadata_offset >= broker.registered_at_offset;
        let mut records = Vec::new();
        let mut fenced = broker.fenced;
        let mut shutting_down = broker.in_controlled_shutdown;
        if heartbeat.want_shutdown && !shutting_down {
            shutting_down = true;
            records.push(registration_change(broker, None, Some(true)));
        } else if heartbeat.want_fence && !fenced {
            fenced = true;
            records.push(registration_change(broker, Some(true), None));
        } else if fenced && is_caught_up && !heartbeat.want_fence && !heartbeat.want_shutdown {
            fenced = false;
            records.push(registration_change(broker, Some(false), None));
        }
        let id = heartbeat.broker_id;
        let after = speculative(image, &records);
        if fenced || shutting_down {
            records.extend(elect_leaders(&after, |p| p.isr.contains(&id)));
        } else if !broker.is_active() {
            // Newly unfenced: it may lead what has no leader.
            records.extend(elect_leaders(&after, |p| {
                p.leader == NO_LEADER && p.isr.contains(&id)
            }));
        }
        let after = speculative(image, &records);
        let leads_nothing = after
            .topics()
            .values()
            .all(|t| t.partitions.iter().all(|p| p.leader != id));
        let mut should_shut_down = false;
        if shutting_down && leads_nothing {
            should_shut_down = true;
            if !fenced {
                fenced = true;
                if let Some(b) = after.broker(id) {
                    records.push(registration_change(b, Some(true), None));
                }
            }
            self.sessions.remove(&id);
        }
        Ok((
            records,
            HeartbeatReply {
                is_caught_up,
                is_fenced: fenced,
                should_shut_down,
            },
        ))
    }

    /// Fences every unfenced broker whose session ended by `now` and moves its leaderships;
    /// when the leader-imbalance check is due, moves leaderships back to preferred replicas
    /// (see [`imbalanced_partitions`]).
    pub fn tick(&mut self, image: &MetadataImage, now: Millis) -> Vec<MetadataRecord> {
        let expired: Vec<BrokerId> = self
            .sessions
            .iter()
            .filter(|(_, end)| **end <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut records = Vec::new();
        for id in expired {
            self.sessions.remove(&id);
            let after = speculative(image, &records);
            let Some(broker) = after.broker(id) else {
                continue;
            };
            if !broker.fenced {
                records.push(registration_change(broker, Some(true), None));
            }
            let after = speculative(image, &records);
            records.extend(elect_leaders(&after, |p| p.isr.contains(&id)));
        }
        if self.next_rebalance.is_some_and(|at| at <= now) {
            self.next_rebalance =
                Some(now.saturating_add(self.config.leader_imbalance_check_interval_ms.max(1)));
            let after = speculative(image, &records);
            let imbalanced =
                imbalanced_partitions(&after, self.config.leader_imbalance_per_broker_percentage);
            let (elected, _) =
                self.elect_leaders(&after, ElectionType::Preferred, Some(imbalanced.as_slice()));
            records.extend(elected);
        }
        records
    }

    /// Kafka's ElectLeaders for `partitions` (topic name and partition; `None`: every
    /// partition). Returns the records and one result per partition; with `None`, partitions
    /// that already have the leader asked for are left out of the results, as Kafka does.
    ///
    /// [`ElectionType::Preferred`] makes the preferred replica leader when it is an active
    /// member of the ISR. [`ElectionType::Unclean`] is answered as Kafka answers it for a
    /// partition that has a leader (not needed); for one without, Weir elects only an active
    /// ISR member (which the controller already does whenever one becomes active), so the
    /// answer is ELIGIBLE_LEADERS_NOT_AVAILABLE unless one can lead.
    pub fn elect_leaders(
        &self,
        image: &MetadataImage,
        election_type: ElectionType,
        partitions: Option<&[(String, i32)]>,
    ) -> (Vec<MetadataRecord>, Vec<PartitionElection>) {
        let all: Vec<(String, i32)>;
        let (wanted, report_not_needed) = match partitions {
            Some(list) => (list, true),
            None => {
                all = image
                    .topics()
                    .values()
                    .flat_map(|t| (0..t.partition_count()).map(|p| (t.name.clone(), p)))
                    .collect();
                (all.as_slice(), false)
            }
        };
        let mut records = Vec::new();
        let mut results = Vec::new();
        let mut seen = BTreeSet::new();
        for (topic, partition) in wanted {
            if !seen.insert((topic, *partition)) {
                continue;
            }
            let result = elect_one(image, election_type, topic, *partition);
            let result = match result {
                Ok(record) => {
                    records.push(record);
                    Ok(())
                }
                Err(ElectionError::NotNeeded { .. }) if !report_not_needed => continue,
                Err(e) => Err(e),
            };
            results.push(PartitionElection {
                topic: topic.clone(),
                partition: *partition,
                result,
            });
        }
        (records, results)
    }

    /// The records that create a topic, after validating it against the image.
    pub fn create_topic(
        &self,
        image: &MetadataImage,
        topic_id: TopicId,
        request: &CreateTopic,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        validate_topic_name(&request.name)?;
        if image.topic(&request.name).is_some() {
            return Err(ControllerError::TopicAlreadyExists(request.name.clone()));
        }
        if topic_id.is_zero() || image.topic_by_id(topic_id).is_some() {
            return Err(ControllerError::NotAllowed(format!(
                "topic id {topic_id} is not usable"
            )));
        }
        let assignments = match &request.assignments {
            Some(manual) => {
                if request.num_partitions.is_some_and(|n| n != -1)
                    || request.replication_factor.is_some_and(|r| r != -1)
                {
                    return Err(ControllerError::InvalidReplicaAssignment(
                        "a manual assignment cannot be combined with a partition count or replication factor".into(),
                    ));
                }
                validate_assignments(image, manual, None)?;
                manual.clone()
            }
            None => {
                let partitions = match request.num_partitions {
                    None | Some(-1) => self.config.default_num_partitions,
                    Some(n) => n,
                };
                if partitions <= 0 {
                    return Err(ControllerError::InvalidPartitions(format!(
                        "number of partitions must be positive, got {partitions}"
                    )));
                }
                let factor = match request.replication_factor {
                    None | Some(-1) => self.config.default_replication_factor,
                    Some(r) => r,
                };
                place_replicas(image, 0, partitions, factor)?
            }
        };
        let mut records = vec![MetadataRecord::Topic {
            name: request.name.clone(),
            topic_id,
        }];
        records.extend(partition_records(image, topic_id, 0, &assignments));
        for (name, value) in &request.configs {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::Topic(request.name.clone()),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
        Ok(records)
    }

    /// The records that grow a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        image: &MetadataImage,
        topic: &str,
        count: i32,
        assignments: Option<&[Vec<BrokerId>]>,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let existing = image
            .topic(topic)
            .ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
        let current = existing.partition_count();
        if count <= current {
            return Err(ControllerError::InvalidPartitions(format!(
                "topic {topic} has {current} partitions; the new count must be higher, got {count}"
            )));
        }
        let added = count - current;
        let factor = existing
            .partitions
            .first()
            .map_or(1, |p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX));
        let assignments = match assignments {
            Some(manual) => {
                if i32::try_from(manual.len()).ok() != Some(added) {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "{} assignments for {added} new partitions",
                        manual.len()
                    )));
                }
                validate_assignments(image, manual, Some(factor))?;
                manual.to_vec()
            }
            None => place_replicas(image, current, added, factor)?,
        };
        Ok(partition_records(image, existing.id, current, &assignments))
    }

    /// The record that deletes a topic.
    pub fn delete_topic(
        &self,
        image: &MetadataImage,
        topic: &str,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let existing = image
            .topic(topic)
            .ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
        if existing.is_internal() {
            return Err(ControllerError::NotAllowed(format!(
                "internal topic {topic} cannot be deleted"
            )));
        }
        Ok(vec![MetadataRecord::RemoveTopic {
            topic_id: existing.id,
        }])
    }

    /// The records that set (`Some`) or remove (`None`) config entries of `resource`. The
    /// broker validates names and values against its catalog; this checks the resource.
    pub fn alter_configs(
        &self,
        image: &MetadataImage,
        resource: &ConfigResource,
        changes: &[(String, Option<String>)],
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        match resource {
            ConfigResource::Topic(name) if image.topic(name).is_none() => {
                return Err(ControllerError::UnknownTopic(name.clone()));
            }
            _ => {}
        }
        let current = image.configs(resource);
        Ok(changes
            .iter()
            .filter(|(name, value)| current.and_then(|c| c.get(name)) != value.as_ref())
            .map(|(name, value)| MetadataRecord::Config {
                resource: resource.clone(),
                name: name.clone(),
                value: value.clone(),
            })
            .collect())
    }

    /// A leader's ISR change (Kafka's AlterPartition), checked against the current registration
    /// of the partition: the asker must be its leader in the leader epoch it sent, the change
    /// must be based on the current partition epoch, and every new member must be an active
    /// replica. Returns the records and the partition as it will be once they apply.
    pub fn alter_partition(
        &self,
        image: &MetadataImage,
        request: &AlterPartition,
    ) -> Result<(Vec<MetadataRecord>, PartitionRegistration), ControllerError> {
        current_registration(image, request.broker_id, request.broker_epoch)?;
        let topic = image
            .topic_by_id(request.topic_id)
            .ok_or_else(|| ControllerError::UnknownTopic(request.topic_id.to_string()))?;
        let partition = topic.partition(request.partition).ok_or_else(|| {
            ControllerError::UnknownPartition {
                topic: topic.name.clone(),
                partition: request.partition,
            }
        })?;
        if partition.leader != request.broker_id || partition.leader_epoch != request.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch {
                broker_id: request.broker_id,
                leader_epoch: request.leader_epoch,
            });
        }
        if partition.partition_epoch != request.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion {
                sent: request.partition_epoch,
                current: partition.partition_epoch,
            });
        }
        let mut seen = BTreeSet::new();
        if !request.new_isr.iter().all(|id| seen.insert(*id)) {
            return Err(ControllerError::InvalidRequest(format!(
                "the ISR {:?} names a broker twice",
                request.new_isr
            )));
        }
        if !request.new_isr.contains(&request.broker_id) {
            return Err(ControllerError::InvalidRequest(format!(
                "the ISR {:?} leaves out its leader {}",
                request.new_isr, request.broker_id
            )));
        }
        // Members that stay need not be active (a shrink may keep a failing one for now), but
        // a joining one must be (KIP-841: the ISR only grows with unfenced brokers).
        let ineligible = request.new_isr.iter().find(|id| {
            !partition.replicas.contains(id)
                || (!partition.isr.contains(id)
                    && !image.broker(**id).is_some_and(|b| b.is_active()))
        });
        if let Some(id) = ineligible {
            return Err(ControllerError::IneligibleReplica(*id));
        }
        if request.new_isr == partition.isr {
            return Ok((Vec::new(), partition.clone()));
        }
        let mut records = vec![MetadataRecord::PartitionChange {
            topic_id: request.topic_id,
            partition: request.partition,
            leader: None,
            isr: Some(request.new_isr.clone()),
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
            original_replicas: None,
        }];
        // An expansion that brings the last target replica of a reassignment into the ISR
        // completes it (the leader learns the outcome from the registration returned).
        let after = speculative(image, &records);
        records.extend(complete_reassignment(
            &after,
            request.topic_id,
            request.partition,
        ));
        let after = speculative(image, &records);
        let changed = after
            .topic_by_id(request.topic_id)
            .and_then(|t| t.partition(request.partition))
            .cloned()
            .ok_or_else(|| ControllerError::UnknownPartition {
                topic: topic.name.clone(),
                partition: request.partition,
            })?;
        Ok((records, changed))
    }

    /// Kafka's AlterPartitionReassignments (KIP-455), one entry at a time, each building on
    /// the records of the ones before. Returns the records and one result per entry.
    ///
    /// A target starts a reassignment from the original replicas (the current ones without
    /// those a reassignment in progress is adding): the replicas become the target followed by
    /// the original ones it leaves out, `adding` the target's new ones and `removing` the
    /// original ones left out. It completes at once when every target replica is already in
    /// the ISR, else with the ISR expansion that makes it so. `None` cancels: the replicas go
    /// back to the original ones, the ISR keeps only those, and a leader outside them is
    /// replaced.
    pub fn alter_partition_reassignments(
        &self,
        image: &MetadataImage,
        reassignments: &[Reassignment],
    ) -> (Vec<MetadataRecord>, Vec<ReassignmentResult>) {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for reassignment in reassignments {
            let after = speculative(image, &records);
            let result = match reassign_one(&after, reassignment) {
                Ok(more) => {
                    records.extend(more);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            results.push(ReassignmentResult {
                topic: reassignment.topic.clone(),
                partition: reassignment.partition,
                result,
            });
        }
        (records, results)
    }

    /// Kafka's ListPartitionReassignments: the reassignments in progress among `partitions`
    /// (topic name and partition; `None`: every partition). Partitions that do not exist are
    /// left out, as Kafka does.
    pub fn list_partition_reassignments(
        &self,
        image: &MetadataImage,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<OngoingReassignment> {
        let ongoing = |topic: &crate::TopicImage, partition: i32| {
            topic
                .partition(partition)
                .filter(|p| p.is_reassigning())
                .map(|p| OngoingReassignment {
                    topic: topic.name.clone(),
                    partition,
                    replicas: p.replicas.clone(),
                    adding_replicas: p.adding_replicas.clone(),
                    removing_replicas: p.removing_replicas.clone(),
                })
        };
        match partitions {
            None => image
                .topics()
                .values()
                .flat_map(|t| (0..t.partition_count()).filter_map(|p| ongoing(t, p)))
                .collect(),
            Some(list) => {
                let mut seen = BTreeSet::new();
                list.iter()
                    .filter(|(t, p)| seen.insert((t.clone(), *p)))
                    .filter_map(|(t, p)| image.topic(t).and_then(|topic| ongoing(topic, *p)))
                    .collect()
            }
        }
    }

    /// Hands a block of producer ids to a broker.
    pub fn allocate_producer_ids(
        &self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> Result<(Vec<MetadataRecord>, ProducerIdBlock), ControllerError> {
        current_registration(image, broker_id, broker_epoch)?;
        let first = image.next_producer_id();
        let len = self.config.producer_id_block_size.max(1);
        let next = first
            .checked_add(len)
            .ok_or(ControllerError::ProducerIdsExhausted)?;
        Ok((
            vec![MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id: next,
            }],
            ProducerIdBlock { first, len },
        ))
    }
}

/// The records of one reassignment entry: the change it asks for and, when that leaves every
/// target replica in the ISR, the one completing it.
fn reassign_one(
    image: &MetadataImage,
    request: &Reassignment,
) -> Result<Vec<MetadataRecord>, ReassignmentError> {
    let (topic, partition) = (&request.topic, request.partition);
    let unknown = || ReassignmentError::UnknownTopicOrPartition {
        topic: topic.clone(),
        partition,
    };
    let invalid = |why: String| ReassignmentError::InvalidReplicaAssignment {
        topic: topic.clone(),
        partition,
        why,
    };
    let topic_image = image.topic(topic).ok_or_else(unknown)?;
    let current = topic_image.partition(partition).ok_or_else(unknown)?;
    let original = current.replicas_before_reassignment();
    let (replicas, adding, removing) = match &request.target {
        Some(target) => {
            if target.is_empty() {
                return Err(invalid("the target replicas are empty".into()));
            }
            let mut seen = BTreeSet::new();
            if let Some(id) = target.iter().find(|id| !seen.insert(**id)) {
                return Err(invalid(format!("the target names broker {id} twice")));
            }
            if let Some(id) = target.iter().find(|id| image.broker(**id).is_none()) {
                return Err(invalid(format!("broker {id} is not registered")));
            }
            let removing: Vec<BrokerId> = original
                .iter()
                .copied()
                .filter(|id| !target.contains(id))
                .collect();
            let adding: Vec<BrokerId> = target
                .iter()
                .copied()
                .filter(|id| !original.contains(id))
                .collect();
            let mut replicas = target.clone();
            replicas.extend(&removing);
            (replicas, adding, removing)
        }
        None => {
            if !current.is_reassigning() {
                return Err(ReassignmentError::NoReassignmentInProgress {
                    topic: topic.clone(),
                    partition,
                });
            }
            (original.clone(), Vec::new(), Vec::new())
        }
    };
    let original = if adding.is_empty() && removing.is_empty() {
        Vec::new()
    } else {
        original
    };
    let active = |id: &BrokerId| image.broker(*id).is_some_and(|b| b.is_active());
    let isr: Vec<BrokerId> = current
        .isr
        .iter()
        .copied()
        .filter(|id| replicas.contains(id))
        .collect();
    if isr.is_empty() {
        return Err(invalid(format!(
            "no in-sync replica ({:?}) would be left among {replicas:?}",
            current.isr
        )));
    }
    let leader = if isr.contains(&current.leader) {
        current.leader
    } else {
        isr.iter().copied().find(active).unwrap_or(NO_LEADER)
    };
    let unchanged = replicas == current.replicas
        && isr == current.isr
        && leader == current.leader
        && adding == current.adding_replicas
        && removing == current.removing_replicas
        && original == current.original_replicas;
    if unchanged {
        return Ok(Vec::new());
    }
    let mut records = vec![MetadataRecord::PartitionChange {
        topic_id: topic_image.id,
        partition,
        leader: (leader != current.leader).then_some(leader),
        isr: (isr != current.isr).then_some(isr),
        replicas: (replicas != current.replicas).then_some(replicas),
        adding_replicas: Some(adding),
        removing_replicas: Some(removing),
        original_replicas: Some(original),
    }];
    let after = speculative(image, &records);
    records.extend(complete_reassignment(&after, topic_image.id, partition));
    Ok(records)
}

/// The record completing the reassignment of a partition whose target replicas are all in
/// the ISR: the replicas become the target, the ISR keeps only target replicas, and a leader
/// being removed hands over to the first active target replica in the ISR (none if no target
/// replica is active: the partition waits for one, as after any failure).
fn complete_reassignment(
    image: &MetadataImage,
    topic_id: TopicId,
    partition: i32,
) -> Option<MetadataRecord> {
    let current = image.topic_by_id(topic_id)?.partition(partition)?;
    if !current.is_reassigning() {
        return None;
    }
    let target = current.target_replicas();
    if !target.iter().all(|id| current.isr.contains(id)) {
        return None;
    }
    let isr: Vec<BrokerId> = current
        .isr
        .iter()
        .copied()
        .filter(|id| target.contains(id))
        .collect();
    let leader = if target.contains(&current.leader) {
        current.leader
    } else {
        target
            .iter()
            .copied()
            .find(|id| isr.contains(id) && image.broker(*id).is_some_and(|b| b.is_active()))
            .unwrap_or(NO_LEADER)
    };
    Some(MetadataRecord::PartitionChange {
        topic_id,
        partition,
        leader: (leader != current.leader).then_some(leader),
        isr: (isr != current.isr).then_some(isr),
        replicas: (target != current.replicas).then_some(target),
        adding_replicas: Some(Vec::new()),
        removing_replicas: Some(Vec::new()),
        original_replicas: Some(Vec::new()),
    })
}

/// The image after `records`, for decisions that build on records not yet committed.
fn speculative(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
    if records.is_empty() {
        return image.clone();
    }
    image.apply(image.offset(), records).0
}

fn current_registration(
    image: &MetadataImage,
    broker_id: BrokerId,
    broker_epoch: i64,
) -> Result<&BrokerRegistration, ControllerError> {
    image
        .broker(broker_id)
        .filter(|b| b.broker_epoch == broker_epoch)
        .ok_or(ControllerError::StaleBrokerEpoch {
            broker_id,
            broker_epoch,
        })
}

fn registration_change(
    broker: &BrokerRegistration,
    fenced: Option<bool>,
    in_controlled_shutdown: Option<bool>,
) -> MetadataRecord {
    MetadataRecord::BrokerRegistrationChange {
        broker_id: broker.broker_id,
        broker_epoch: broker.broker_epoch,
        fenced,
        in_controlled_shutdown,
    }
}

/// Re-elects the leader of every partition `select` picks: the current leader if it can still
/// serve, else the first ISR member on an active broker, else no leader. Members that cannot
/// serve leave the ISR unless the last one (Kafka keeps the last one, so the partition can come back with its data when that
/// broker returns: no unclean election).
pub fn elect_leaders(
    image: &MetadataImage,
    select: impl Fn(&PartitionRegistration) -> bool,
) -> Vec<MetadataRecord> {
    let active = |id: &BrokerId| image.broker(*id).is_some_and(|b| b.is_active());
    let mut records = Vec::new();
    for topic in image.topics().values() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            if !select(partition) {
                continue;
            }
            let mut isr: Vec<BrokerId> = partition.isr.clone();
            if isr.len() > 1 {
                let kept: Vec<BrokerId> = isr.iter().copied().filter(active).collect();
                isr = if kept.is_empty() {
                    // Keep the last member standing: the partition waits for it.
                    partition.isr.iter().copied().take(1).collect()
                } else {
                    kept
                };
            }
            let leader = if active(&partition.leader) && isr.contains(&partition.leader) {
                partition.leader
            } else {
                isr.iter().copied().find(active).unwrap_or(NO_LEADER)
            };
            if leader == partition.leader && isr == partition.isr {
                continue;
            }
            records.push(MetadataRecord::PartitionChange {
                topic_id: topic.id,
                partition: i32::try_from(index).unwrap_or(i32::MAX),
                leader: (leader != partition.leader).then_some(leader),
                isr: (isr != partition.isr).then_some(isr),
                replicas: None,
                adding_replicas: None,
                removing_replicas: None,
                original_replicas: None,
            });
        }
    }
    records
}

/// The record that elects a leader of one partition, or why there is none to elect.
fn elect_one(
    image: &MetadataImage,
    election_type: ElectionType,
    topic_name: &str,
    partition: i32,
) -> Result<MetadataRecord, ElectionError> {
    let unknown = || ElectionError::UnknownTopicOrPartition {
        topic: topic_name.to_string(),
        partition,
    };
    let topic = image.topic(topic_name).ok_or_else(unknown)?;
    let current = topic.partition(partition).ok_or_else(unknown)?;
    let active = |id: BrokerId| image.broker(id).is_some_and(|b| b.is_active());
    let leader = match election_type {
        ElectionType::Preferred => {
            let preferred = current.replicas.first().copied().unwrap_or(NO_LEADER);
            if current.leader == preferred {
                return Err(ElectionError::NotNeeded {
                    topic: topic_name.to_string(),
                    partition,
                });
            }
            if !active(preferred) || !current.isr.contains(&preferred) {
                return Err(ElectionError::PreferredLeaderNotAvailable {
                    topic: topic_name.to_string(),
                    partition,
                    preferred,
                });
            }
            preferred
        }
        ElectionType::Unclean => {
            if current.leader != NO_LEADER {
                return Err(ElectionError::NotNeeded {
                    topic: topic_name.to_string(),
                    partition,
                });
            }
            current
                .isr
                .iter()
                .copied()
                .find(|id| active(*id))
                .ok_or_else(|| ElectionError::EligibleLeadersNotAvailable {
                    topic: topic_name.to_string(),
                    partition,
                })?
        }
    };
    Ok(MetadataRecord::PartitionChange {
        topic_id: topic.id,
        partition,
        leader: Some(leader),
        isr: None,
        replicas: None,
        adding_replicas: None,
        removing_replicas: None,
        original_replicas: None,
    })
}

/// The partitions whose preferred replica should lead again (the ZooKeeper-era controller's
/// leader-imbalance check): for each active broker, the partitions that prefer it but are led
/// by another; when their share of all partitions preferring it is above `percentage`, those
/// of them where it is in the ISR (it may lead) are picked.
pub fn imbalanced_partitions(image: &MetadataImage, percentage: u8) -> Vec<(String, i32)> {
    /// Per preferred broker: partitions preferring it, those it does not lead, and those of
    /// them it could lead (it is in the ISR).
    #[derive(Default)]
    struct Share {
        total: usize,
        not_led: usize,
        movable: Vec<(String, i32)>,
    }
    let mut by_broker: BTreeMap<BrokerId, Share> = BTreeMap::new();
    for topic in image.topics().values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            let Some(preferred) = p.replicas.first().copied() else {
                continue;
            };
            let share = by_broker.entry(preferred).or_default();
            share.total += 1;
            if p.leader != preferred {
                share.not_led += 1;
                if p.isr.contains(&preferred) {
                    let index = i32::try_from(index).unwrap_or(i32::MAX);
                    share.movable.push((topic.name.clone(), index));
                }
            }
        }
    }
    let mut picked = Vec::new();
    for (broker, share) in by_broker {
        if !image.broker(broker).is_some_and(|b| b.is_active()) {
            continue;
        }
        // not_led / total > percentage / 100, in integers.
        if share.not_led * 100 > share.total * usize::from(percentage) {
            picked.extend(share.movable);
        }
    }
    picked
}

fn partition_records(
    image: &MetadataImage,
    topic_id: TopicId,
    first: i32,
    assignments: &[Vec<BrokerId>],
) -> Vec<MetadataRecord> {
    let active = |id: &BrokerId| image.broker(*id).is_some_and(|b| b.is_active());
    assignments
        .iter()
        .enumerate()
        .map(|(i, replicas)| {
            let leader = replicas.iter().copied().find(active).unwrap_or(NO_LEADER);
            MetadataRecord::Partition {
                topic_id,
                partition: first.saturating_add(i32::try_from(i).unwrap_or(i32::MAX)),
                replicas: replicas.clone(),
                isr: replicas.clone(),
                leader,
            }
        })
        .collect()
}

/// Unfenced brokers in placement order: sorted by id, and with racks set, alternating between
/// racks (rack A's first, rack B's first, ..., rack A's second, ...) so that consecutive
/// replicas land on different racks.
fn placement_order(image: &MetadataImage) -> Vec<BrokerId> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<BrokerId>> = BTreeMap::new();
    for broker in image.brokers().values().filter(|b| b.is_active()) {
        by_rack
            .entry(broker.rack.as_deref())
            .or_default()
            .push(broker.broker_id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut order = Vec::new();
    for i in 0..longest {
        for brokers in by_rack.values() {
            if let Some(id) = brokers.get(i) {
                order.push(*id);
            }
        }
    }
    order
}

/// Round-robin placement of `count` partitions starting at index `first`: partition `p`'s
/// replicas are `factor` consecutive brokers of [`placement_order`] starting at `start + p`,
/// where `start` depends on how many partitions the cluster has, so leaders spread across
/// topics as well as within one.
fn place_replicas(
    image: &MetadataImage,
    first: i32,
    count: i32,
    factor: i16,
) -> Result<Vec<Vec<BrokerId>>, ControllerError> {
    let order = placement_order(image);
    if factor <= 0 {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "replication factor must be positive, got {factor}"
        )));
    }
    let factor = usize::try_from(factor).unwrap_or(0);
    if factor > order.len() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "replication factor {factor} is larger than the {} available brokers",
            order.len()
        )));
    }
    let existing: usize = image.topics().values().map(|t| t.partitions.len()).sum();
    let n = order.len();
    let mut assignments = Vec::new();
    for p in 0..usize::try_from(count).unwrap_or(0) {
        let start = existing + usize::try_from(first).unwrap_or(0) + p;
        let replicas = (0..factor)
            .filter_map(|j| order.get((start + j) % n).copied())
            .collect();
        assignments.push(replicas);
    }
    Ok(assignments)
}

fn validate_assignments(
    image: &MetadataImage,
    assignments: &[Vec<BrokerId>],
    factor: Option<i16>,
) -> Result<(), ControllerError> {
    let invalid = |why: String| Err(ControllerError::InvalidReplicaAssignment(why));
    if assignments.is_empty() {
        return invalid("the assignment is empty".into());
    }
    let expected = factor
        .map(|f| usize::try_from(f).unwrap_or(0))
        .or_else(|| assignments.first().map(Vec::len));
    for (i, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() {
            return invalid(format!("partition {i} has no replicas"));
        }
        if Some(replicas.len()) != expected {
            return invalid(format!(
                "partition {i} has {} replicas, the others {}",
                replicas.len(),
                expected.unwrap_or(0)
            ));
        }
        let mut seen = BTreeSet::new();
        for id in replicas {
            if !seen.insert(*id) {
                return invalid(format!("partition {i} names broker {id} twice"));
            }
            if image.broker(*id).is_none() {
                return invalid(format!("partition {i} names unknown broker {id}"));
            }
        }
    }
    Ok(())
}

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |why: &str| {
        Err(ControllerError::InvalidTopicName {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}
