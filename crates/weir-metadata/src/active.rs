//! The active controller: the thin async layer that drives [`Controller`] on the node that
//! leads the metadata quorum.
//!
//! One task owns the [`Controller`] and handles one request at a time: it decides against the
//! latest image, appends the records, and waits until they are committed and applied before it
//! answers and takes the next request, so every decision sees the effects of the one before.
//! When the node becomes leader it first appends an empty batch (returning once everything
//! before it is applied, so its image is complete) and gives every broker a fresh session;
//! while it is not leader, requests are refused with [`ControllerCallError::NotActive`] naming
//! the leader, so the caller can go there instead.

use crate::controller::{AlterPartition, Heartbeat, HeartbeatReply, RegisterBroker};
use crate::controller::{Controller, ControllerConfig, ControllerError, CreateTopic};
use crate::controller::{ElectionType, PartitionElection};
use crate::controller::{OngoingReassignment, Reassignment, ReassignmentResult};
use crate::image::{ApplyError, MetadataImage};
use crate::quorum::{Leadership, Quorum, QuorumError};
use crate::record::MetadataRecord;
use crate::types::{
    BrokerId, ConfigResource, Millis, PartitionRegistration, ProducerIdBlock, TopicId,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// A boxed future, for the object-safe [`MetadataLog`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an append to the metadata log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// This node does not lead the quorum (any more).
    #[error("this node is not the metadata quorum's leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<u64>,
    },
    /// The batch was committed but did not apply (a controller bug).
    #[error("the batch did not apply")]
    Rejected(#[source] ApplyError),
    /// The log failed (storage, shutdown).
    #[error("metadata log failure: {0}")]
    Failed(String),
}

/// The replicated metadata log as the active controller uses it: the quorum in production, an
/// in-memory log in tests.
pub trait MetadataLog: Send + Sync + 'static {
    /// The latest applied image.
    fn image(&self) -> Arc<MetadataImage>;
    /// Appends one batch; resolves once it is committed and applied here, with its offset.
    fn append(&self, records: Vec<MetadataRecord>) -> BoxFuture<'_, Result<u64, AppendError>>;
}

impl MetadataLog for Quorum {
    fn image(&self) -> Arc<MetadataImage> {
        Quorum::image(self)
    }

    fn append(&self, records: Vec<MetadataRecord>) -> BoxFuture<'_, Result<u64, AppendError>> {
        Box::pin(async move {
            Quorum::append(self, records).await.map_err(|e| match e {
                QuorumError::NotLeader { leader } => AppendError::NotLeader { leader },
                QuorumError::Apply(e) => AppendError::Rejected(e),
                other => AppendError::Failed(other.to_string()),
            })
        })
    }
}

/// One request to the active controller.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControllerRequest {
    /// Kafka's BrokerRegistration.
    RegisterBroker(RegisterBroker),
    /// Kafka's BrokerHeartbeat.
    Heartbeat(Heartbeat),
    /// One CreateTopics entry, with the id the topic gets.
    CreateTopic {
        /// The new topic's id.
        topic_id: TopicId,
        /// What to create.
        request: CreateTopic,
        /// Check only; write nothing.
        validate_only: bool,
    },
    /// One CreatePartitions entry.
    CreatePartitions {
        /// The topic.
        topic: String,
        /// The new partition count.
        count: i32,
        /// Replicas of each new partition, or `None` to place them.
        assignments: Option<Vec<Vec<BrokerId>>>,
        /// Check only; write nothing.
        validate_only: bool,
    },
    /// One DeleteTopics entry.
    DeleteTopic {
        /// The topic.
        name: String,
    },
    /// Config changes of one resource (already validated by the broker).
    AlterConfigs {
        /// Whose configs.
        resource: ConfigResource,
        /// Entries to set (`Some`) or remove (`None`).
        changes: Vec<(String, Option<String>)>,
    },
    /// Kafka's AlterPartition: a leader's ISR change.
    AlterPartition(AlterPartition),
    /// Kafka's AllocateProducerIds.
    AllocateProducerIds {
        /// The asking broker.
        broker_id: BrokerId,
        /// Its registration.
        broker_epoch: i64,
    },
    /// Kafka's ElectLeaders (KIP-460).
    ElectLeaders {
        /// Which leader to elect.
        election_type: ElectionType,
        /// Topic names and partitions, or `None` for every partition.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Kafka's AlterPartitionReassignments (KIP-455).
    AlterPartitionReassignments(Vec<Reassignment>),
    /// Kafka's ListPartitionReassignments (KIP-455); writes nothing.
    ListPartitionReassignments {
        /// Topic names and partitions, or `None` for every partition.
        partitions: Option<Vec<(String, i32)>>,
    },
}

/// What a request achieved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControllerOutcome {
    /// Done; nothing to report beyond the offset.
    Done,
    /// The broker's new registration epoch.
    Registered {
        /// The epoch.
        broker_epoch: i64,
    },
    /// The heartbeat's answer.
    Heartbeat(HeartbeatReply),
    /// The producer ids handed out.
    ProducerIds(ProducerIdBlock),
    /// The partition after an AlterPartition.
    Partition(PartitionRegistration),
    /// Each partition's result of an ElectLeaders.
    Elections(Vec<PartitionElection>),
    /// Each partition's result of an AlterPartitionReassignments.
    Reassignments(Vec<ReassignmentResult>),
    /// The reassignments in progress, for ListPartitionReassignments.
    OngoingReassignments(Vec<OngoingReassignment>),
}

/// The answer to a [`ControllerRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerResponse {
    /// The metadata offset at which the request's records are applied (a caller waits for its
    /// own image to reach it before it relies on them).
    pub offset: u64,
    /// What it achieved.
    pub outcome: ControllerOutcome,
}

/// Why a controller call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerCallError {
    /// The controller refused the request.
    #[error(transparent)]
    Refused(#[from] ControllerError),
    /// This node is not the active controller.
    #[error("this node is not the active controller (leader: {leader:?})")]
    NotActive {
        /// The node that is, if known.
        leader: Option<u64>,
    },
    /// The records could not be written.
    #[error("the metadata log failed")]
    Log(#[source] AppendError),
    /// The controller task has stopped.
    #[error("the controller has stopped")]
    Stopped,
}

type Pending = (
    ControllerRequest,
    oneshot::Sender<Result<ControllerResponse, ControllerCallError>>,
);

/// A handle to the active-controller task; cheap to clone.
#[derive(Clone, Debug)]
pub struct ControllerHandle {
    requests: mpsc::Sender<Pending>,
}

impl ControllerHandle {
    /// Sends a request and waits for its answer.
    pub async fn call(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, ControllerCallError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((request, tx))
            .await
            .map_err(|_| ControllerCallError::Stopped)?;
        rx.await.map_err(|_| ControllerCallError::Stopped)?
    }
}

/// A clock for the controller: milliseconds from any fixed origin.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// A monotonic clock starting at 0 now.
pub fn monotonic_clock() -> Clock {
    let origin = std::time::Instant::now();
    Arc::new(move || u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// What the first active controller of a new cluster writes before anything else.
#[derive(Clone, Debug, Default)]
pub struct Bootstrap {
    /// The cluster id to give the cluster (from this node's `meta.properties`, or new).
    pub cluster_id: String,
    /// Records to write with it: what this node imports from an earlier single-node Weir.
    pub records: Vec<MetadataRecord>,
}

/// Starts the active-controller task on the current tokio runtime. It acts while `leadership`
/// says this node leads, and stops when every handle is dropped. If it finds the log without a
/// cluster id when it takes over, it writes `bootstrap` first.
pub fn spawn(
    log: Arc<dyn MetadataLog>,
    leadership: watch::Receiver<Leadership>,
    config: ControllerConfig,
    clock: Clock,
    bootstrap: Bootstrap,
) -> ControllerHandle {
    let (requests, inbox) = mpsc::channel(256);
    tokio::spawn(run(
        log,
        leadership,
        Controller::new(config),
        clock,
        inbox,
        bootstrap,
    ));
    ControllerHandle { requests }
}

/// Takes over as the active controller: waits until everything committed before is applied
/// (an empty batch commits only after it), writes the bootstrap records into an empty log, and
/// gives every broker a fresh session.
async fn take_over(
    log: &dyn MetadataLog,
    controller: &mut Controller,
    clock: &Clock,
    bootstrap: &Bootstrap,
) -> Result<u64, AppendError> {
    let mut offset = log.append(Vec::new()).await?;
    let records = controller.bootstrap(&log.image(), &bootstrap.cluster_id);
    if !records.is_empty() {
        info!(
            cluster_id = bootstrap.cluster_id,
            imported = bootstrap.records.len(),
            "bootstrapping a new cluster"
        );
        let mut records = records;
        records.extend(bootstrap.records.iter().cloned());
        offset = log.append(records).await?;
    }
    controller.activate(&log.image(), clock());
    Ok(offset)
}

async fn run(
    log: Arc<dyn MetadataLog>,
    mut leadership: watch::Receiver<Leadership>,
    mut controller: Controller,
    clock: Clock,
    mut inbox: mpsc::Receiver<Pending>,
    bootstrap: Bootstrap,
) {
    let mut active = false;
    loop {
        let leader = leadership.borrow_and_update().clone();
        if leader.is_self && !active {
            match take_over(log.as_ref(), &mut controller, &clock, &bootstrap).await {
                Ok(offset) => {
                    active = true;
                    info!(offset, "became the active controller");
                }
                Err(e) => debug!(error = %e, "could not take over as the active controller yet"),
            }
        } else if !leader.is_self && active {
            active = false;
            info!(leader = ?leader.leader, "no longer the active controller");
        }
        let deadline = if active {
            controller.next_deadline()
        } else {
            None
        };
        let wait = async {
            match deadline {
                Some(at) => {
                    let ms = at.saturating_sub(clock());
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            changed = leadership.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            pending = inbox.recv() => {
                let Some((request, reply)) = pending else {
                    return;
                };
                let answer = if active {
                    handle(&mut controller, log.as_ref(), &clock, request).await
                } else {
                    Err(ControllerCallError::NotActive { leader: leadership.borrow().leader })
                };
                if let Err(ControllerCallError::Log(AppendError::NotLeader { .. })) = &answer {
                    active = false;
                }
                let _ = reply.send(answer);
            }
            () = wait => {
                let records = controller.tick(&log.image(), clock());
                if !records.is_empty() {
                    if let Err(e) = log.append(records).await {
                        warn!(error = %e, "could not write fencing or rebalancing records");
                        if matches!(e, AppendError::NotLeader { .. }) {
                            active = false;
                        }
                    }
                }
            }
        }
    }
}

async fn handle(
    controller: &mut Controller,
    log: &dyn MetadataLog,
    clock: &Clock,
    request: ControllerRequest,
) -> Result<ControllerResponse, ControllerCallError> {
    let image = log.image();
    let now = clock();
    let (records, outcome) = match request {
        ControllerRequest::RegisterBroker(register) => {
            let id = register.broker_id;
            let (records, broker_epoch) = controller.register_broker(&image, now, register)?;
            info!(broker = id, broker_epoch, "registering broker");
            (records, ControllerOutcome::Registered { broker_epoch })
        }
        ControllerRequest::Heartbeat(heartbeat) => {
            let (records, reply) = controller.heartbeat(&image, now, heartbeat)?;
            (records, ControllerOutcome::Heartbeat(reply))
        }
        ControllerRequest::CreateTopic {
            topic_id,
            request,
            validate_only,
        } => {
            let records = controller.create_topic(&image, topic_id, &request)?;
            if validate_only {
                (Vec::new(), ControllerOutcome::Done)
            } else {
                (records, ControllerOutcome::Done)
            }
        }
        ControllerRequest::CreatePartitions {
            topic,
            count,
            assignments,
            validate_only,
        } => {
            let records =
                controller.create_partitions(&image, &topic, count, assignments.as_deref())?;
            if validate_only {
                (Vec::new(), ControllerOutcome::Done)
            } else {
                (records, ControllerOutcome::Done)
            }
        }
        ControllerRequest::DeleteTopic { name } => (
            controller.delete_topic(&image, &name)?,
            ControllerOutcome::Done,
        ),
        ControllerRequest::AlterConfigs { resource, changes } => (
            controller.alter_configs(&image, &resource, &changes)?,
            ControllerOutcome::Done,
        ),
        ControllerRequest::AlterPartition(request) => {
            let (records, partition) = controller.alter_partition(&image, &request)?;
            (records, ControllerOutcome::Partition(partition))
        }
        ControllerRequest::AllocateProducerIds {
            broker_id,
            broker_epoch,
        } => {
            let (records, block) =
                controller.allocate_producer_ids(&image, broker_id, broker_epoch)?;
            (records, ControllerOutcome::ProducerIds(block))
        }
        ControllerRequest::ElectLeaders {
            election_type,
            partitions,
        } => {
            let (records, results) =
                controller.elect_leaders(&image, election_type, partitions.as_deref());
            info!(
                ?election_type,
                elected = records.len(),
                "electing leaders on request"
            );
            (records, ControllerOutcome::Elections(results))
        }
        ControllerRequest::AlterPartitionReassignments(reassignments) => {
            let (records, results) =
                controller.alter_partition_reassignments(&image, &reassignments);
            info!(
                partitions = reassignments.len(),
                records = records.len(),
                "altering partition reassignments"
            );
            (records, ControllerOutcome::Reassignments(results))
        }
        ControllerRequest::ListPartitionReassignments { partitions } => {
            let ongoing = controller.list_partition_reassignments(&image, partitions.as_deref());
            (Vec::new(), ControllerOutcome::OngoingReassignments(ongoing))
        }
    };
    if records.is_empty() {
        return Ok(ControllerResponse {
            offset: image.offset(),
            outcome,
        });
    }
    let offset = log
        .append(records)
        .await
        .map_err(ControllerCallError::Log)?;
    Ok(ControllerResponse { offset, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A single-node, in-memory metadata log.
    struct MemoryLog {
        image: Mutex<Arc<MetadataImage>>,
    }

    impl MetadataLog for MemoryLog {
        fn image(&self) -> Arc<MetadataImage> {
            self.image.lock().clone()
        }

        fn append(&self, records: Vec<MetadataRecord>) -> BoxFuture<'_, Result<u64, AppendError>> {
            Box::pin(async move {
                let mut image = self.image.lock();
                let offset = image.offset() + 1;
                let (next, result) = image.apply(offset, &records);
                *image = Arc::new(next);
                result.map(|()| offset).map_err(AppendError::Rejected)
            })
        }
    }

    #[tokio::test]
    async fn answers_only_while_leader_and_fences_silent_brokers() {
        let log = Arc::new(MemoryLog {
            image: Mutex::new(Arc::new(MetadataImage::empty())),
        });
        let (leader_tx, leader_rx) = watch::channel(Leadership {
            leader: None,
            term: 0,
            is_self: false,
        });
        let time = Arc::new(AtomicU64::new(0));
        let clock_time = time.clone();
        let clock: Clock = Arc::new(move || clock_time.load(Ordering::SeqCst));
        let controller = spawn(
            log.clone(),
            leader_rx,
            ControllerConfig {
                broker_session_timeout_ms: 50,
                ..ControllerConfig::default()
            },
            clock,
            Bootstrap {
                cluster_id: "c".into(),
                records: Vec::new(),
            },
        );
        let register = ControllerRequest::RegisterBroker(RegisterBroker {
            broker_id: 1,
            cluster_id: Some("c".into()),
            incarnation_id: [1; 16],
            endpoints: Vec::new(),
            rack: None,
        });
        assert!(matches!(
            controller.call(register.clone()).await,
            Err(ControllerCallError::NotActive { leader: None })
        ));
        leader_tx
            .send(Leadership {
                leader: Some(1),
                term: 1,
                is_self: true,
            })
            .unwrap();
        // The task notices leadership before it takes the next request.
        tokio::task::yield_now().await;
        let mut answer = controller.call(register.clone()).await;
        for _ in 0..100 {
            if answer.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            answer = controller.call(register.clone()).await;
        }
        let registered = answer.unwrap();
        assert_eq!(log.image().cluster_id(), Some("c"));
        let ControllerOutcome::Registered { broker_epoch } = registered.outcome else {
            panic!("{registered:?}");
        };
        let beat = controller
            .call(ControllerRequest::Heartbeat(Heartbeat {
                broker_id: 1,
                broker_epoch,
                current_metadata_offset: registered.offset,
                want_fence: false,
                want_shutdown: false,
            }))
            .await
            .unwrap();
        assert!(matches!(
            beat.outcome,
            ControllerOutcome::Heartbeat(HeartbeatReply {
                is_fenced: false,
                ..
            })
        ));
        assert!(!log.image().broker(1).unwrap().fenced);
        // Silence past the session: the timer fences it.
        time.store(1_000, Ordering::SeqCst);
        for _ in 0..200 {
            if log.image().broker(1).is_some_and(|b| b.fenced) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(log.image().broker(1).unwrap().fenced);
    }
}
