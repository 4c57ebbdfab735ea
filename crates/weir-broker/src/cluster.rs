//! The broker in its cluster: the metadata quorum and the active controller on this node,
//! joining the cluster, calls to the controller, and the local logs kept in step with each
//! metadata image before it is published to handlers.
//!
//! Start-up ([`ClusterNode::start`], then [`ClusterNode::join`]): the quorum opens its log
//! and elects a leader; the active controller writes the cluster id (and what an earlier
//! single-node Weir left in its data directory) into an empty log; the broker checks the
//! cluster id against its `meta.properties`, registers (fenced), waits until its image reaches
//! its registration, makes its logs match that image (creating what is missing and deleting
//! logs of topics that no longer exist — only now, when the image is known to be complete),
//! publishes it, and heartbeats until the controller unfences it.
//!
//! Afterwards every new image goes through [`publish`]: logs first, then the image, so a
//! handler never sees a partition whose log does not exist yet. A caller that changed metadata
//! waits with [`ClusterNode::wait_published`] until its change is visible here.

use crate::config::BrokerConfig;
use crate::error::{AdminError, BrokerError};
use crate::partitions::Partitions;
use crate::peer::{PeerClient, PeerError, PeerService};
use crate::topics::Topic;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use weir_metadata::active::{
    self, AppendError, Bootstrap, ControllerCallError, ControllerHandle, ControllerOutcome,
    ControllerRequest, ControllerResponse, MetadataLog,
};
use weir_metadata::controller::{Heartbeat, HeartbeatReply, RegisterBroker};
use weir_metadata::quorum::{
    Leadership, Observer, ObserverConfig, Quorum, QuorumConfig, QuorumDescription, QuorumError,
    Transport, TransportError, TransportFuture,
};
use weir_metadata::{
    ConfigResource, ControllerConfig, ControllerError, Endpoint, MetadataImage, MetadataRecord,
    NO_LEADER, TopicId,
};

/// How long start-up waits for the quorum to elect a leader and the controller to answer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one call to the controller may take.
const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a controlled shutdown waits for the controller to move leaderships away.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// This node's part of the cluster.
pub(crate) struct ClusterNode {
    node_id: i32,
    peers: Arc<PeerClient>,
    /// How this node holds the metadata: as a voter with a controller, or as an observer.
    metadata: Metadata,
    /// A random id of this process, so the controller tells a restart from a duplicate.
    incarnation: [u8; 16],
    broker_epoch: AtomicI64,
    /// The offset of the image handlers see.
    published: watch::Sender<u64>,
    runtime: tokio::runtime::Handle,
    /// Stops the background tasks.
    stop: watch::Sender<bool>,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// This node's part in the metadata quorum (`process.roles`).
enum Metadata {
    /// A controller: a voter of the quorum, with the controller that runs while it leads.
    Voter {
        quorum: Quorum,
        controller: ControllerHandle,
        /// `controller.quorum.voters`: where to reach the active controller elsewhere.
        voters: BTreeMap<u64, String>,
    },
    /// A broker-only node: follows the committed log from the voters.
    Observer(Observer),
}

impl Metadata {
    fn images(&self) -> watch::Receiver<Arc<MetadataImage>> {
        match self {
            Metadata::Voter { quorum, .. } => quorum.images(),
            Metadata::Observer(observer) => observer.images(),
        }
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        match self {
            Metadata::Voter { quorum, .. } => quorum.leadership(),
            Metadata::Observer(observer) => observer.leadership(),
        }
    }

    fn voters(&self) -> BTreeMap<u64, String> {
        match self {
            Metadata::Voter { voters, .. } => voters.clone(),
            Metadata::Observer(observer) => observer.voters(),
        }
    }
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node_id", &self.node_id)
            .field("broker_epoch", &self.broker_epoch)
            .field("published", &*self.published.borrow())
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// Starts the metadata quorum and the active controller of this node, and serves the
    /// CONTROLLER listener (when this node has one) for the other voters.
    pub(crate) async fn start(
        config: &BrokerConfig,
        bootstrap: Bootstrap,
        controller_listener: Option<tokio::net::TcpListener>,
    ) -> Result<Self, BrokerError> {
        let node_id = u64::try_from(config.node_id)
            .map_err(|_| BrokerError::Setup(format!("node.id {} is negative", config.node_id)))?;
        let peers = Arc::new(PeerClient::default());
        let (published, _) = watch::channel(0);
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        let metadata = if config.quorum.roles.controller {
            let (quorum, controller) =
                Self::start_voter(config, node_id, &peers, bootstrap).await?;
            if let Some(listener) = controller_listener {
                let service = Arc::new(ControllerService {
                    quorum: quorum.clone(),
                    controller: controller.clone(),
                });
                tasks.push(tokio::spawn(crate::peer::serve(
                    listener,
                    service,
                    stop.subscribe(),
                )));
            }
            Metadata::Voter {
                quorum,
                controller,
                voters: config.quorum.voters.clone(),
            }
        } else {
            info!(
                voters = ?config.quorum.voters,
                bootstrap = ?config.quorum.bootstrap_servers,
                "broker-only node: following the metadata log of the controllers"
            );
            Metadata::Observer(Observer::start(
                ObserverConfig {
                    node_id,
                    voters: config.quorum.voters.clone(),
                    bootstrap: config.quorum.bootstrap_servers.clone(),
                },
                Arc::new(PeerTransport {
                    peers: peers.clone(),
                    kind: crate::peer::FETCH_METADATA,
                }),
            ))
        };
        Ok(Self {
            node_id: config.node_id,
            peers,
            metadata,
            incarnation: crate::topics::new_topic_id().0,
            broker_epoch: AtomicI64::new(-1),
            published,
            runtime: tokio::runtime::Handle::current(),
            stop,
            tasks: parking_lot::Mutex::new(tasks),
        })
    }

    /// Starts this node's voter of the metadata quorum and its controller.
    async fn start_voter(
        config: &BrokerConfig,
        node_id: u64,
        peers: &Arc<PeerClient>,
        bootstrap: Bootstrap,
    ) -> Result<(Quorum, ControllerHandle), BrokerError> {
        let meta_dir = config.log_dirs.first().cloned().unwrap_or_default();
        let quorum = Quorum::start(
            QuorumConfig {
                node_id,
                voters: config.quorum.voters.clone(),
                dir: meta_dir.join(METADATA_DIR),
                ..QuorumConfig::default()
            },
            Arc::new(PeerTransport {
                peers: peers.clone(),
                kind: crate::peer::RAFT,
            }),
        )
        .await
        .map_err(|e| match e {
            QuorumError::Config(why) => BrokerError::Setup(why),
            other => BrokerError::Cluster(format!("cannot start the metadata quorum: {other}")),
        })?;
        let log: Arc<dyn MetadataLog> = Arc::new(quorum.clone());
        let controller = active::spawn(
            log,
            quorum.leadership(),
            ControllerConfig {
                local_node_id: config.quorum.roles.broker.then_some(config.node_id),
                broker_session_timeout_ms: config.broker_session_timeout_ms,
                default_num_partitions: config.num_partitions,
                default_replication_factor: config.default_replication_factor,
                producer_id_block_size: 1_000,
                auto_leader_rebalance_enable: config.auto_leader_rebalance_enable,
                leader_imbalance_check_interval_ms: config
                    .leader_imbalance_check_interval_seconds
                    .saturating_mul(1_000),
                leader_imbalance_per_broker_percentage: config
                    .leader_imbalance_per_broker_percentage,
            },
            active::monotonic_clock(),
            bootstrap,
        );
        Ok((quorum, controller))
    }

    /// The quorum as its leader sees it (with every voter's progress): this node's view if it
    /// leads, else the leader's, asked over its CONTROLLER listener. `None` when no leader is
    /// known or it cannot be reached.
    pub(crate) async fn describe_quorum(&self) -> Option<QuorumDescription> {
        let leadership = self.metadata.leadership().borrow().clone();
        if let Metadata::Voter { quorum, .. } = &self.metadata
            && leadership.is_self
        {
            return Some(quorum.describe());
        }
        let voters = self.metadata.voters();
        let address = voters.get(&leadership.leader?).filter(|a| !a.is_empty())?;
        let answer = self
            .peers
            .call(address, crate::peer::DESCRIBE_QUORUM, bytes::Bytes::new())
            .await
            .ok()?;
        serde_json::from_slice(&answer).ok()
    }

    /// The voters and their CONTROLLER listeners (`controller.quorum.voters`, or as learned
    /// from `controller.quorum.bootstrap.servers`).
    pub(crate) fn voters(&self) -> BTreeMap<u64, String> {
        self.metadata.voters()
    }

    /// The node id of the active controller (the quorum's leader), if known.
    pub(crate) fn active_controller(&self) -> Option<i32> {
        self.metadata
            .leadership()
            .borrow()
            .leader
            .and_then(|id| i32::try_from(id).ok())
    }

    /// The latest image the quorum applied (not necessarily published yet).
    pub(crate) fn latest_image(&self) -> Arc<MetadataImage> {
        self.metadata.images().borrow().clone()
    }

    /// New images as the quorum applies them.
    pub(crate) fn images(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.metadata.images()
    }

    /// This broker's registration epoch (-1 before it registered).
    pub(crate) fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::SeqCst)
    }

    /// Waits until the quorum's image holds a cluster id, then checks it against the one in
    /// `meta.properties` (writing the file on first start). A data directory of another
    /// cluster is refused.
    pub(crate) async fn check_cluster_id(
        &self,
        meta_dir: &std::path::Path,
    ) -> Result<String, BrokerError> {
        let mut images = self.metadata.images();
        let waited = tokio::time::timeout(JOIN_TIMEOUT, async {
            loop {
                if let Some(id) = images.borrow_and_update().cluster_id() {
                    return Some(id.to_string());
                }
                if images.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        let cluster_id = match waited {
            Ok(Some(id)) => id,
            _ => {
                return Err(BrokerError::Cluster(
                    "no metadata quorum leader wrote a cluster id in time".into(),
                ));
            }
        };
        let (dir, node_id) = (meta_dir.to_path_buf(), self.node_id);
        crate::blocking::spawn(move || match read_meta_properties(&dir)? {
            Some(existing) if existing != cluster_id => Err(BrokerError::Setup(format!(
                "data directory {} belongs to cluster {existing}, but this cluster is {cluster_id}",
                dir.display()
            ))),
            Some(_) => Ok(cluster_id),
            None => {
                write_meta_properties(&dir, &cluster_id, node_id)?;
                Ok(cluster_id)
            }
        })
        .await
        .map_err(|e| BrokerError::Cluster(format!("meta.properties: {e}")))?
    }

    /// Sends `request` to the active controller (this node's, or over the CONTROLLER
    /// listener of the node that leads the quorum), retrying while there is none yet.
    pub(crate) async fn call(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, ControllerCallError> {
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        loop {
            match self.call_once(&request).await {
                // No controller yet, or it lost its leadership while writing (an election
                // race): ask whoever leads now. A write lost that way may still commit; every
                // request here is safe to repeat (a repeated topic creation is answered
                // TOPIC_ALREADY_EXISTS, a repeated registration just takes a newer epoch).
                Err(ControllerCallError::NotActive { leader })
                | Err(ControllerCallError::Log(AppendError::NotLeader { leader }))
                    if tokio::time::Instant::now() < deadline =>
                {
                    debug!(?leader, "no active controller reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// One attempt of [`ClusterNode::call`]: this node's controller, else the one it names.
    /// Bounded by [`CONTROLLER_CALL_TIMEOUT`]: without a majority of voters a write never
    /// commits, and neither a handler nor a shutdown may wait for that forever.
    async fn call_once(
        &self,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, ControllerCallError> {
        let attempt = async {
            let first = match &self.metadata {
                Metadata::Voter { controller, .. } => controller.call(request.clone()).await,
                Metadata::Observer(observer) => Err(ControllerCallError::NotActive {
                    leader: observer.leadership().borrow().leader,
                }),
            };
            match first {
                Err(ControllerCallError::NotActive {
                    leader: Some(leader),
                }) if leader != self.quorum_node_id() => {
                    match self.call_remote(leader, request).await {
                        // The voter asked knows a newer leader than this node did: one more hop.
                        Err(ControllerCallError::NotActive {
                            leader: Some(newer),
                        }) if newer != leader && newer != self.quorum_node_id() => {
                            self.call_remote(newer, request).await
                        }
                        other => other,
                    }
                }
                other => other,
            }
        };
        tokio::time::timeout(CONTROLLER_CALL_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(ControllerCallError::Log(AppendError::Failed(
                    "the metadata quorum did not commit in time (is a majority of voters up?)"
                        .into(),
                )))
            })
    }

    fn quorum_node_id(&self) -> u64 {
        u64::try_from(self.node_id).unwrap_or(u64::MAX)
    }

    /// Sends `request` to the controller of voter `leader`.
    async fn call_remote(
        &self,
        leader: u64,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, ControllerCallError> {
        let not_active = ControllerCallError::NotActive {
            leader: Some(leader),
        };
        let voters = self.metadata.voters();
        let Some(address) = voters.get(&leader).filter(|a| !a.is_empty()) else {
            return Err(not_active);
        };
        let Ok(payload) = serde_json::to_vec(request) else {
            return Err(not_active);
        };
        match self
            .peers
            .call(address, crate::peer::CONTROLLER, payload.into())
            .await
        {
            Ok(answer) => match serde_json::from_slice::<RemoteAnswer>(&answer) {
                Ok(RemoteAnswer::Done(response)) => Ok(response),
                Ok(RemoteAnswer::Refused(e)) => Err(ControllerCallError::Refused(e)),
                Ok(RemoteAnswer::NotActive { leader }) => {
                    Err(ControllerCallError::NotActive { leader })
                }
                Ok(RemoteAnswer::Failed(why)) => {
                    Err(ControllerCallError::Log(AppendError::Failed(why)))
                }
                Err(_) => Err(not_active),
            },
            Err(e) => {
                debug!(leader, error = %e, "the active controller is unreachable");
                Err(not_active)
            }
        }
    }

    /// [`ClusterNode::call`], then waits until this broker published the image holding the
    /// request's records. For handlers running on the blocking pool.
    pub(crate) fn call_blocking(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, AdminError> {
        self.runtime.block_on(async {
            let response = self.call(request).await.map_err(admin_error)?;
            self.wait_published(response.offset).await;
            Ok(response)
        })
    }

    /// Waits until the published image has reached `offset`.
    pub(crate) async fn wait_published(&self, offset: u64) {
        let mut published = self.published.subscribe();
        let _ = published.wait_for(|p| *p >= offset).await;
    }

    /// Registers this broker with the controller; returns the registration's offset.
    pub(crate) async fn register(
        &self,
        config: &BrokerConfig,
        cluster_id: &str,
    ) -> Result<u64, BrokerError> {
        let request = ControllerRequest::RegisterBroker(RegisterBroker {
            broker_id: self.node_id,
            cluster_id: Some(cluster_id.to_string()),
            incarnation_id: self.incarnation,
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: config.advertised_host.clone(),
                port: config.advertised_port,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: config.broker_rack.clone(),
        });
        // A process of this id that died moments ago still holds its session until the
        // controller fences it (`broker.session.timeout.ms`): wait that out, as Kafka does.
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        let mut told = false;
        let response = loop {
            match self.call(request.clone()).await {
                Err(ControllerCallError::Refused(
                    ControllerError::DuplicateBrokerRegistration(_),
                )) if tokio::time::Instant::now() < deadline => {
                    if !told {
                        info!(
                            "the controller still sees this node's previous process; waiting for its session to end"
                        );
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // The write failed on the controller (CI met one within a millisecond of the
                // quorum's first election): ask again, as Kafka's broker lifecycle manager
                // resends its registration until it is answered.
                Err(e @ ControllerCallError::Log(_)) if tokio::time::Instant::now() < deadline => {
                    warn!(error = %with_causes(&e), "registration failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => {
                    break other.map_err(|e| {
                        BrokerError::Cluster(format!("registration failed: {}", with_causes(&e)))
                    })?;
                }
            }
        };
        if let ControllerOutcome::Registered { broker_epoch } = response.outcome {
            self.broker_epoch.store(broker_epoch, Ordering::SeqCst);
            info!(
                broker_epoch,
                offset = response.offset,
                "registered with the controller"
            );
        }
        Ok(response.offset)
    }

    /// One heartbeat with the published offset: the answer, and the offset at which its
    /// records (if any) apply.
    pub(crate) async fn heartbeat(
        &self,
        want_shutdown: bool,
    ) -> Result<(HeartbeatReply, u64), ControllerCallError> {
        let request = ControllerRequest::Heartbeat(Heartbeat {
            broker_id: self.node_id,
            broker_epoch: self.broker_epoch(),
            current_metadata_offset: *self.published.borrow(),
            want_fence: false,
            want_shutdown,
        });
        let response = self.call_once(&request).await?;
        match response.outcome {
            ControllerOutcome::Heartbeat(reply) => Ok((reply, response.offset)),
            other => {
                warn!(?other, "unexpected heartbeat answer");
                let reply = HeartbeatReply {
                    is_caught_up: false,
                    is_fenced: true,
                    should_shut_down: false,
                };
                Ok((reply, response.offset))
            }
        }
    }

    /// Heartbeats until the controller unfences this broker.
    pub(crate) async fn wait_unfenced(&self) -> Result<(), BrokerError> {
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        loop {
            match self.heartbeat(false).await {
                Ok((reply, offset)) if !reply.is_fenced => {
                    // Serve only once this broker's image shows it unfenced, leading what it
                    // was given back.
                    self.wait_published(offset).await;
                    return Ok(());
                }
                Ok(_) | Err(ControllerCallError::NotActive { .. }) => {}
                Err(e) => return Err(BrokerError::Cluster(format!("heartbeat failed: {e}"))),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::Cluster(
                    "the controller did not unfence this broker in time".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Asks the controller to move this broker's leaderships away and waits (bounded) until it
    /// says the broker may stop.
    pub(crate) async fn controlled_shutdown(&self) {
        let deadline = tokio::time::Instant::now() + CONTROLLED_SHUTDOWN_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            // The whole cluster may be stopping: without a majority this heartbeat never commits.
            let Ok(answer) = tokio::time::timeout_at(deadline, self.heartbeat(true)).await else {
                break;
            };
            match answer {
                Ok((reply, _)) if reply.should_shut_down => {
                    info!("controlled shutdown complete");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "controlled shutdown: heartbeat failed");
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        warn!("controlled shutdown did not complete in time");
    }

    /// Stops the background tasks ([`publish`], [`heartbeat_loop`]) and waits for them.
    pub(crate) async fn stop_background(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        match &self.metadata {
            Metadata::Voter { quorum, .. } => {
                if let Err(e) = quorum.shutdown().await {
                    debug!(error = %e, "metadata quorum shutdown");
                }
            }
            Metadata::Observer(observer) => observer.shutdown().await,
        }
    }

    fn set_published(&self, offset: u64) {
        self.published.send_if_modified(|p| {
            let moved = offset > *p;
            if moved {
                *p = offset;
            }
            moved
        });
    }
}

/// Where the metadata log lives in the first data directory (Kafka's name for it).
pub(crate) const METADATA_DIR: &str = "__cluster_metadata-0";

/// A controller call's answer as it travels between nodes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum RemoteAnswer {
    Done(ControllerResponse),
    Refused(ControllerError),
    NotActive { leader: Option<u64> },
    Failed(String),
}

/// Raft messages (or an observer's fetches) over [`PeerClient`].
struct PeerTransport {
    peers: Arc<PeerClient>,
    /// [`crate::peer::RAFT`] or [`crate::peer::FETCH_METADATA`].
    kind: i16,
}

impl Transport for PeerTransport {
    fn send(&self, _target: u64, address: &str, rpc: bytes::Bytes) -> TransportFuture {
        let peers = self.peers.clone();
        let address = address.to_string();
        let kind = self.kind;
        Box::pin(async move {
            peers
                .call(&address, kind, rpc)
                .await
                // Unreachable is what makes openraft back off before the next try; an
                // unreachable voter otherwise gets retried in a tight loop.
                .map_err(|e| match e {
                    PeerError::Timeout(_) => TransportError::Timeout,
                    other => TransportError::Unreachable(other.to_string()),
                })
        })
    }
}

/// What this node serves on its CONTROLLER listener.
struct ControllerService {
    quorum: Quorum,
    controller: ControllerHandle,
}

impl PeerService for ControllerService {
    fn serve(&self, kind: i16, payload: bytes::Bytes) -> crate::peer::BoxFuture<bytes::Bytes> {
        let quorum = self.quorum.clone();
        let controller = self.controller.clone();
        Box::pin(async move {
            if kind == crate::peer::RAFT {
                return quorum.handle_rpc(payload).await;
            }
            if kind == crate::peer::FETCH_METADATA {
                return quorum.serve_fetch(payload).await;
            }
            if kind == crate::peer::DESCRIBE_QUORUM {
                return serde_json::to_vec(&quorum.describe())
                    .map(bytes::Bytes::from)
                    .unwrap_or_default();
            }
            let answer = match serde_json::from_slice::<ControllerRequest>(&payload) {
                Err(e) => RemoteAnswer::Failed(format!("malformed controller request: {e}")),
                Ok(request) => match controller.call(request).await {
                    Ok(response) => RemoteAnswer::Done(response),
                    Err(ControllerCallError::Refused(e)) => RemoteAnswer::Refused(e),
                    Err(ControllerCallError::NotActive { leader }) => {
                        RemoteAnswer::NotActive { leader }
                    }
                    Err(e) => RemoteAnswer::Failed(with_causes(&e)),
                },
            };
            serde_json::to_vec(&answer)
                .map(bytes::Bytes::from)
                .unwrap_or_default()
        })
    }
}

/// The error for a failed controller call, as an admin request reports it.
pub(crate) fn admin_error(error: ControllerCallError) -> AdminError {
    use crate::topics::TopicError;
    match error {
        ControllerCallError::Refused(refused) => match refused {
            ControllerError::InvalidTopicName { name, why } => {
                TopicError::InvalidName(name, why).into()
            }
            ControllerError::TopicAlreadyExists(name) => TopicError::AlreadyExists(name).into(),
            ControllerError::UnknownTopic(name) => TopicError::Unknown(name).into(),
            ControllerError::InvalidPartitions(m) => AdminError::InvalidPartitions(m),
            ControllerError::InvalidReplicationFactor(m) => AdminError::InvalidReplicationFactor(m),
            ControllerError::InvalidReplicaAssignment(m) => AdminError::InvalidReplicaAssignment(m),
            other => AdminError::InvalidRequest(other.to_string()),
        },
        other => AdminError::Broker(BrokerError::Cluster(other.to_string())),
    }
}

/// Makes this broker's logs match `image` (after `previous`): creates the logs of partitions
/// it holds a replica of, applies changed topic configs, deletes the logs of deleted topics
/// and of partitions a reassignment moved off this broker.
/// With `previous` = `None` (at start) every local log the image does not know is deleted.
pub(crate) fn reconcile_logs(
    node_id: i32,
    partitions: &Partitions,
    previous: Option<&MetadataImage>,
    image: &MetadataImage,
) -> Result<(), BrokerError> {
    let dynamic_changed =
        partitions.set_dynamic_defaults(crate::topic_config::dynamic_defaults(image, node_id));
    for topic in image.topics().values() {
        let before = previous.and_then(|p| p.topic(&topic.name));
        let view = Topic::of(image, topic);
        let config_changed = dynamic_changed
            || before.is_some_and(|b| b.id == topic.id)
                && previous.and_then(|p| p.configs(&ConfigResource::Topic(topic.name.clone())))
                    != image.configs(&ConfigResource::Topic(topic.name.clone()));
        if before.is_some_and(|b| b.id != topic.id) {
            // Deleted and created again under the same name: the old data must not come back.
            if let Some(old) = before {
                partitions.delete_logs(&old.name, old.partition_count())?;
            }
        }
        let unchanged = before.is_some_and(|b| Arc::ptr_eq(b, topic) || **b == **topic);
        if !unchanged || previous.is_none() {
            let local: Vec<i32> = topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.replicas.contains(&node_id))
                .filter_map(|(i, _)| i32::try_from(i).ok())
                .collect();
            partitions.create_logs_of(&view, &local)?;
        }
        if config_changed {
            partitions.reconfigure(&view)?;
        }
    }
    match previous {
        Some(previous) => {
            for old in previous.topics().values() {
                if image.topic_by_id(old.id).is_none() {
                    partitions.delete_logs(&old.name, old.partition_count())?;
                    info!(topic = %old.name, "deleted the logs of a deleted topic");
                }
            }
            delete_reassigned_away(node_id, partitions, previous, image)?;
        }
        None => {
            for (tp, _) in partitions.all() {
                let known = image
                    .topic(&tp.topic)
                    .and_then(|t| t.partition(tp.partition));
                if known.is_none_or(|p| !p.replicas.contains(&node_id)) {
                    warn!(topic = %tp.topic, partition = tp.partition, "deleting a log no topic holds");
                    partitions.delete_logs_of(&tp)?;
                }
            }
        }
    }
    Ok(())
}

/// Deletes the logs of partitions whose replicas held this broker in `previous` and do not in
/// `image` (a reassignment completed or was cancelled): the topic is the same (same id), so
/// this never repeats a topic deletion. The replica stops following when
/// [`crate::replication::Replicas::apply`] runs next; until then its fetches land in the
/// unlinked files.
fn delete_reassigned_away(
    node_id: i32,
    partitions: &Partitions,
    previous: &MetadataImage,
    image: &MetadataImage,
) -> Result<(), BrokerError> {
    for topic in image.topics().values() {
        let Some(old) = previous.topic_by_id(topic.id) else {
            continue;
        };
        if Arc::ptr_eq(old, topic) {
            continue;
        }
        for (index, before) in old.partitions.iter().enumerate() {
            let Ok(partition) = i32::try_from(index) else {
                continue;
            };
            let now_held = topic
                .partition(partition)
                .is_some_and(|p| p.replicas.contains(&node_id));
            if before.replicas.contains(&node_id) && !now_held {
                let tp = weir_log::TopicPartition::new(&topic.name, partition);
                partitions.delete_logs_of(&tp)?;
                info!(topic = %topic.name, partition, "deleted the log of a replica reassigned away");
            }
        }
    }
    Ok(())
}

/// Starts the broker's cluster background tasks: the publisher and the heartbeats.
pub(crate) fn start_background(broker: &Arc<crate::state::Broker>) {
    broker.cluster.set_published(broker.topics.image().offset());
    let stopped = broker.cluster.stop.subscribe();
    let publisher = tokio::spawn(publish(broker.clone(), stopped.clone()));
    let heartbeats = tokio::spawn(heartbeat_loop(broker.clone(), stopped));
    broker.cluster.tasks.lock().extend([publisher, heartbeats]);
}

/// The topic ids that `records` create.
pub(crate) fn topic_ids(records: &[MetadataRecord]) -> Vec<TopicId> {
    records
        .iter()
        .filter_map(|r| match r {
            MetadataRecord::Topic { topic_id, .. } => Some(*topic_id),
            _ => None,
        })
        .collect()
}

/// Publishes every new image the quorum applies, after this broker's logs match it, until the
/// server stops.
pub(crate) async fn publish(broker: Arc<crate::state::Broker>, mut stopped: watch::Receiver<bool>) {
    let mut images = broker.cluster.images();
    loop {
        let image = images.borrow_and_update().clone();
        let current = broker.topics.image();
        if image.offset() > current.offset() {
            let b = broker.clone();
            let next = image.clone();
            let done = crate::blocking::spawn(move || {
                let node_id = b.config().node_id;
                let reconciled = reconcile_logs(node_id, &b.partitions, Some(&current), &next);
                // Producer state of partitions whose logs just went (deleted topics, replicas
                // reassigned away) goes too.
                let dropped = b.producer_states.retain_held(|topic, id, partition| {
                    next.topic(topic).is_some_and(|t| {
                        t.id.0 == id.0
                            && t.partition(partition)
                                .is_some_and(|p| p.replicas.contains(&node_id))
                    })
                });
                if dropped > 0 {
                    debug!(
                        partitions = dropped,
                        "dropped the producer state of partitions no longer held"
                    );
                }
                // Roles next, before handlers see the image: one that finds this broker the
                // leader finds the replica leading.
                b.replicas.apply(&b, &next);
                reconciled
            })
            .await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, offset = image.offset(), "could not make the logs match the metadata")
                }
                Err(_) => warn!("log reconciliation task failed"),
            }
            broker.topics.publish(image.clone());
            broker.cluster.set_published(image.offset());
            broker.partitions.notify_appended();
        }
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return },
            _ = stopped.changed() => return,
        }
    }
}

/// Heartbeats every `broker.heartbeat.interval.ms` until the server stops; re-registers when
/// the controller no longer knows this registration.
pub(crate) async fn heartbeat_loop(
    broker: Arc<crate::state::Broker>,
    mut stopped: watch::Receiver<bool>,
) {
    let period = Duration::from_millis(broker.config().broker_heartbeat_interval_ms);
    let mut interval = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped.changed() => return,
        }
        let answer = tokio::select! {
            answer = broker.cluster.heartbeat(false) => answer,
            _ = stopped.changed() => return,
        };
        match answer {
            Ok(_) => {}
            Err(ControllerCallError::Refused(ControllerError::StaleBrokerEpoch { .. })) => {
                warn!("the controller no longer knows this registration; registering again");
                if let Err(e) = broker
                    .cluster
                    .register(broker.config(), broker.cluster_id())
                    .await
                {
                    warn!(error = %e, "registration failed");
                }
            }
            Err(e) => debug!(error = %e, "heartbeat failed"),
        }
    }
}

/// What an earlier single-node Weir left in `dir` (its topic registry, producer-id reservation
/// and cluster id), as bootstrap records for a new cluster's metadata log. The topics keep
/// their ids, partition counts and configs, with this node as their only replica.
pub(crate) fn legacy_bootstrap(
    dir: &std::path::Path,
    node_id: i32,
) -> Result<Bootstrap, BrokerError> {
    let cluster_id = read_meta_properties(dir)?.unwrap_or_else(new_cluster_id);
    let mut records = Vec::new();
    for topic in crate::topics::read_legacy_registry(dir)?.unwrap_or_default() {
        let topic_id = TopicId(topic.id.0);
        records.push(MetadataRecord::Topic {
            name: topic.name.clone(),
            topic_id,
        });
        for partition in 0..topic.partitions {
            records.push(MetadataRecord::Partition {
                topic_id,
                partition,
                replicas: vec![node_id],
                isr: vec![node_id],
                leader: NO_LEADER,
            });
        }
        for (name, value) in &topic.configs {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::Topic(topic.name.clone()),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
    }
    if let Some(next) = crate::producer_ids::read_legacy_reservation(dir)? {
        if next > 0 {
            records.push(MetadataRecord::ProducerIds {
                broker_id: NO_LEADER,
                broker_epoch: -1,
                next_producer_id: next,
            });
        }
    }
    Ok(Bootstrap {
        cluster_id,
        records,
    })
}

/// What a controller-only node writes into a new cluster's empty log: the cluster id from its
/// `meta.properties` (as `kafka-storage format` leaves it) or a new one, and nothing else.
pub(crate) fn controller_bootstrap(dir: &std::path::Path) -> Result<Bootstrap, BrokerError> {
    Ok(Bootstrap {
        cluster_id: read_meta_properties(dir)?.unwrap_or_else(new_cluster_id),
        records: Vec::new(),
    })
}

/// A new cluster id: 22 characters, as Kafka's (any stable string works for clients).
fn new_cluster_id() -> String {
    let id = crate::topics::new_topic_id();
    format!("{id:?}").chars().take(22).collect()
}

/// The cluster id in `meta.properties` in `dir`, if the file exists.
fn read_meta_properties(dir: &std::path::Path) -> Result<Option<String>, BrokerError> {
    let path = dir.join("meta.properties");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("cluster.id="))
            .map(|id| id.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BrokerError::Cluster(format!("{}: {e}", path.display()))),
    }
}

/// Writes `meta.properties` (Kafka's format: version, cluster id, node id), durably.
fn write_meta_properties(
    dir: &std::path::Path,
    cluster_id: &str,
    node_id: i32,
) -> Result<(), BrokerError> {
    let path = dir.join("meta.properties");
    std::fs::create_dir_all(dir)
        .map_err(|e| BrokerError::Cluster(format!("{}: {e}", dir.display())))?;
    weir_log::fs::write_atomically(
        &weir_log::StdFs,
        &path,
        format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n").as_bytes(),
    )
    .map_err(|e| BrokerError::Cluster(format!("{}: {e}", path.display())))
}

/// `e` and its causes on one line: controller errors travel between nodes and into start-up
/// failures as text, and the cause is what tells a failed write's reason.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
