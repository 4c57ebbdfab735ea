//! [`Broker`]: the state every handler shares.

use crate::cluster::ClusterNode;
use crate::config::BrokerConfig;
use crate::error::{AdminError, BrokerError};
use crate::partitions::Partitions;
use crate::producer_ids::ProducerIds;
use crate::producer_state::ProducerStates;
use crate::topics::{Topic, Topics};
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::info;
use weir_metadata::active::ControllerRequest;
use weir_metadata::{CreateTopic, TopicId};
use weir_protocol::ErrorCode;

/// Shared broker state.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    cluster_id: String,
    /// This node in the cluster: the metadata quorum, the controller, registration.
    pub(crate) cluster: ClusterNode,
    /// The group coordinator (`__consumer_offsets` loaded at open).
    pub(crate) groups: crate::groups::Groups,
    /// The transaction coordinator (`__transaction_state` partitions load as this broker
    /// becomes their leader).
    pub(crate) transactions: crate::transactions::Transactions,
    /// Topics of the published metadata image.
    pub(crate) topics: Topics,
    pub(crate) partitions: Partitions,
    /// Request, byte and connection counters for `/metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Serializes admin changes, which read a topic, validate and write it back.
    pub(crate) admin_lock: parking_lot::Mutex<()>,
    /// Producer ids for InitProducerId.
    pub(crate) producer_ids: ProducerIds,
    /// Idempotent producers' sequence state per partition.
    pub(crate) producer_states: ProducerStates,
    /// Each local replica's role and high watermark.
    pub(crate) replicas: Arc<crate::replication::Replicas>,
    /// `queued.max.request.bytes`: room for requests being read or handled.
    pub(crate) request_memory: crate::request_memory::RequestMemory,
}

impl Broker {
    /// Opens the broker: recovers every partition log, starts this node's metadata quorum and
    /// controller, joins the cluster (see [`crate::cluster`]), makes the logs match the
    /// metadata, creates `__consumer_offsets` on first start and loads the groups.
    pub(crate) async fn open(
        config: BrokerConfig,
        controller_listener: Option<tokio::net::TcpListener>,
    ) -> Result<Arc<Self>, BrokerError> {
        let started = std::time::Instant::now();
        let meta_dir = config.log_dirs.first().cloned().unwrap_or_default();
        let partitions = {
            let config = config.clone();
            crate::blocking::spawn(move || Partitions::open(&config))
                .await
                .map_err(|_| BrokerError::TaskFailed)??
        };
        let bootstrap = {
            let dir = meta_dir.clone();
            let node = config.node_id;
            crate::blocking::spawn(move || crate::cluster::legacy_bootstrap(&dir, node))
                .await
                .map_err(|_| BrokerError::TaskFailed)??
        };
        let legacy_topics = crate::cluster::topic_ids(&bootstrap.records);
        let cluster = ClusterNode::start(&config, bootstrap, controller_listener).await?;
        let cluster_id = cluster.check_cluster_id(&meta_dir).await?;
        let registered_at = cluster.register(&config, &cluster_id).await?;
        // The image at the registration holds everything committed before this start: only now
        // may logs that no topic holds be deleted.
        let mut images = cluster.images();
        let _ = images.wait_for(|i| i.offset() >= registered_at).await;
        let image = cluster.latest_image();
        if !legacy_topics.is_empty()
            && legacy_topics
                .iter()
                .all(|id| image.topic_by_id(*id).is_some())
        {
            crate::topics::retire_legacy_registry(&meta_dir)?;
            info!(
                topics = legacy_topics.len(),
                "imported the topics of an earlier single-node Weir"
            );
        }
        let partitions = {
            let image = image.clone();
            let node = config.node_id;
            crate::blocking::spawn(move || {
                crate::cluster::reconcile_logs(node, &partitions, None, &image).map(|()| partitions)
            })
            .await
            .map_err(|_| BrokerError::TaskFailed)??
        };
        let broker = Arc::new(Self {
            groups: crate::groups::Groups::new(&config),
            transactions: crate::transactions::Transactions::new(&config),
            replicas: Arc::new(crate::replication::Replicas::new(
                config.node_id,
                config.replication.clone(),
                partitions.append_signal(),
            )),
            producer_ids: ProducerIds::default(),
            request_memory: crate::request_memory::RequestMemory::new(
                config.queued_max_request_bytes,
            ),
            config,
            cluster_id,
            cluster,
            topics: Topics::new(image),
            partitions,
            metrics: crate::metrics::Metrics::default(),
            admin_lock: parking_lot::Mutex::new(()),
            producer_states: ProducerStates::default(),
        });
        crate::groups::open(&broker);
        crate::transactions::open(&broker);
        {
            let b = broker.clone();
            crate::blocking::spawn(move || b.replicas.apply(&b, &b.topics.image()))
                .await
                .map_err(|_| BrokerError::TaskFailed)?;
        }
        crate::cluster::start_background(&broker);
        broker.cluster.wait_unfenced().await?;
        info!(
            topics = broker.topics.all().len(),
            partitions = broker.partitions.all().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "data directories loaded and cluster joined"
        );
        Ok(broker)
    }

    /// The replica of a partition this broker leads and its leader epoch, or the error a client
    /// gets: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER (another broker leads, or none
    /// does), KAFKA_STORAGE_ERROR (its data directory failed), and for a client whose
    /// `current_leader_epoch` (-1: unknown, no check) differs from the partition's,
    /// FENCED_LEADER_EPOCH (older) or UNKNOWN_LEADER_EPOCH (newer than this broker knows).
    pub(crate) fn leader_replica(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<(Arc<crate::replication::Replica>, i32), ErrorCode> {
        let image = self.topics.image();
        let registration = image
            .topic(topic)
            .and_then(|t| t.partition(partition))
            .ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)?;
        if registration.leader != self.config.node_id {
            return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
        }
        let epoch = registration.leader_epoch;
        match current_leader_epoch {
            -1 => {}
            e if e < epoch => return Err(ErrorCode::FENCED_LEADER_EPOCH),
            e if e > epoch => return Err(ErrorCode::UNKNOWN_LEADER_EPOCH),
            _ => {}
        }
        // Roles are applied before an image is published, so a led partition whose log exists
        // has its replica; none means its data directory is offline.
        let replica = self
            .replicas
            .get(topic, partition)
            .ok_or_else(|| self.partitions.missing_log_error(topic, partition))?;
        Ok((replica, epoch))
    }

    /// The log of a partition this broker leads and its leader epoch, with the errors of
    /// [`Broker::leader_replica`].
    pub(crate) fn leader_log(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<(Arc<weir_log::Log>, i32), ErrorCode> {
        self.leader_replica(topic, partition, current_leader_epoch)
            .map(|(replica, epoch)| (replica.log.clone(), epoch))
    }

    /// The high watermark of a local replica (-1 when there is none).
    pub(crate) fn high_watermark(&self, topic: &str, partition: i32) -> i64 {
        self.replicas
            .get(topic, partition)
            .map_or(-1, |r| r.high_watermark())
    }

    /// Where the log cleaner may compact a local replica up to: its last stable offset, so
    /// that no undecided transaction is cleaned (the cleaner drops aborted data, which it
    /// knows only once the marker is written). -1 (nothing) when the replica or its producer
    /// state is unavailable.
    pub(crate) fn cleanable_end(&self, topic: &str, partition: i32) -> i64 {
        let (Some(replica), Some(t)) =
            (self.replicas.get(topic, partition), self.topics.get(topic))
        else {
            return -1;
        };
        self.producer_states
            .last_stable_offset(
                topic,
                t.id,
                partition,
                &replica.log,
                replica.high_watermark(),
            )
            .unwrap_or(-1)
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The cluster id reported in metadata.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Creates a topic through the controller and waits until its logs exist here. Blocks:
    /// call it on the blocking pool.
    pub(crate) fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Topic, AdminError> {
        self.cluster.call_blocking(ControllerRequest::CreateTopic {
            topic_id: TopicId(crate::topics::new_topic_id().0),
            request: CreateTopic {
                name: name.to_string(),
                num_partitions: Some(partitions),
                replication_factor: None,
                assignments: None,
                configs,
            },
            validate_only: false,
        })?;
        let topic = self.topics.get(name).ok_or_else(|| {
            AdminError::from(crate::topics::TopicError::Unknown(name.to_string()))
        })?;
        info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Flushes and closes every log (writing clean-shutdown markers).
    pub fn close(self) -> Result<(), BrokerError> {
        self.producer_states
            .write_snapshots(&self.topics, |topic, partition| {
                self.partitions.log(topic, partition)
            });
        self.replicas.release_all();
        self.partitions.close()?;
        Ok(())
    }

    /// Flushes what the flush policy says is due and checkpoints; called periodically. Failures
    /// are logged per partition; returns how many logs failed.
    pub(crate) fn tick(&self) -> usize {
        self.partitions.tick()
    }
}

/// Where a partition's leader is, for the KIP-951 hints a NOT_LEADER_OR_FOLLOWER answer
/// carries (so a client can go there without a metadata round trip).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaderHint {
    /// The leader's id and leader epoch.
    pub(crate) leader_id: i32,
    pub(crate) leader_epoch: i32,
    /// The leader's client listener and rack.
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) rack: Option<String>,
}

impl Broker {
    /// The current leader of a partition (by topic name, or by id when the name is empty),
    /// when it has one that clients can reach.
    pub(crate) fn leader_hint(
        &self,
        topic: &str,
        topic_id: weir_protocol::Uuid,
        partition: i32,
    ) -> Option<LeaderHint> {
        let image = self.topics.image();
        let found = if topic.is_empty() {
            image.topic_by_id(weir_metadata::TopicId(topic_id.0))
        } else {
            image.topic(topic)
        };
        let registration = found?.partition(partition)?;
        let leader = image.broker(registration.leader).filter(|b| !b.fenced)?;
        let endpoint = leader.endpoint("PLAINTEXT")?;
        Some(LeaderHint {
            leader_id: leader.broker_id,
            leader_epoch: registration.leader_epoch,
            host: endpoint.host.clone(),
            port: i32::from(endpoint.port),
            rack: leader.rack.clone(),
        })
    }
}
