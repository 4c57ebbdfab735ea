//! What the two coordinators on internal topics share: the group coordinator on
//! `__consumer_offsets` (`groups.rs`) and the transaction coordinator on `__transaction_state`
//! (`transactions.rs`). Each topic is created on first use with its replication factor clamped
//! to the brokers alive then; each coordinator serves the keys of the partitions this broker
//! leads once it has replayed them ([`PartitionLoads`]), and [`check_coordinator`] says to a
//! request whether that is the case here. Their records go in with [`append`], acknowledged
//! at the high watermark.

use crate::replication::{AckError, LeaderAppendError};
use crate::state::Broker;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;
use weir_protocol::ErrorCode;
use weir_records::{Record, RecordBatchBuilder};

/// How long a coordinator request waits for its partition to finish loading before it answers
/// COORDINATOR_LOAD_IN_PROGRESS (a load is usually quick: a new partition is empty).
const LOAD_WAIT: Duration = Duration::from_secs(2);

/// The internal-topic partitions this broker leads: the leader epoch of each and whether the
/// coordinator has loaded it in that epoch.
#[derive(Debug)]
pub(crate) struct PartitionLoads {
    owned: Mutex<HashMap<i32, (i32, bool)>>,
    /// Bumped whenever a partition finishes loading.
    loads: watch::Sender<u64>,
}

impl Default for PartitionLoads {
    fn default() -> Self {
        Self {
            owned: Mutex::new(HashMap::new()),
            loads: watch::channel(0).0,
        }
    }
}

impl PartitionLoads {
    /// Records that this broker leads `partition` in `leader_epoch`, not loaded yet. False when
    /// it already did in that epoch (nothing to load again).
    pub(crate) fn claim(&self, partition: i32, leader_epoch: i32) -> bool {
        let mut owned = self.owned.lock();
        if owned
            .get(&partition)
            .is_some_and(|(e, _)| *e == leader_epoch)
        {
            return false;
        }
        owned.insert(partition, (leader_epoch, false));
        true
    }

    /// Finishes loading `partition` in `leader_epoch`: `load` runs (under the caller's
    /// coordinator lock) only while the partition is still claimed in that epoch and not
    /// loaded (leadership may have moved on meanwhile), and the partition counts as loaded
    /// when it returns `Some`.
    pub(crate) fn finish<T>(
        &self,
        partition: i32,
        leader_epoch: i32,
        load: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        let mut owned = self.owned.lock();
        if owned.get(&partition) != Some(&(leader_epoch, false)) {
            return None;
        }
        let loaded = load()?;
        owned.insert(partition, (leader_epoch, true));
        drop(owned);
        self.loads.send_modify(|n| *n += 1);
        Some(loaded)
    }

    /// Forgets `partition` (this broker no longer leads it); false if it did not lead it.
    pub(crate) fn release(&self, partition: i32) -> bool {
        self.owned.lock().remove(&partition).is_some()
    }

    /// Whether `partition` is loaded here in `leader_epoch`.
    pub(crate) fn loaded(&self, partition: i32, leader_epoch: i32) -> bool {
        self.owned.lock().get(&partition) == Some(&(leader_epoch, true))
    }

    /// Whether `partition` is loaded here, in whatever epoch.
    pub(crate) fn is_loaded(&self, partition: i32) -> bool {
        self.owned
            .lock()
            .get(&partition)
            .is_some_and(|(_, loaded)| *loaded)
    }

    /// Whether this broker leads `partition` but has not finished loading it.
    pub(crate) fn loading(&self, partition: i32) -> bool {
        self.owned
            .lock()
            .get(&partition)
            .is_some_and(|(_, loaded)| !loaded)
    }

    /// Whether any partition this broker leads is still loading.
    pub(crate) fn any_loading(&self) -> bool {
        self.owned.lock().values().any(|(_, loaded)| !loaded)
    }
}

/// Whether this broker coordinates the keys of `partition` of internal topic `topic`: it leads
/// the partition and has loaded it (waiting up to [`LOAD_WAIT`] for a load in progress).
/// NOT_COORDINATOR otherwise (the client looks the coordinator up again),
/// COORDINATOR_NOT_AVAILABLE when the partition has no leader (or the topic does not exist),
/// COORDINATOR_LOAD_IN_PROGRESS while it loads.
pub(crate) async fn check_coordinator(
    broker: &Arc<Broker>,
    topic: &str,
    partition: i32,
    loads: &PartitionLoads,
) -> Result<(), ErrorCode> {
    let image = broker.topics.image();
    let leader = image
        .topic(topic)
        .and_then(|t| t.partition(partition))
        .map(|p| (p.leader, p.leader_epoch));
    match leader {
        Some((leader, epoch)) if leader == broker.config().node_id => {
            let mut changes = loads.loads.subscribe();
            let loaded = tokio::time::timeout(
                LOAD_WAIT,
                changes.wait_for(|_| loads.loaded(partition, epoch)),
            )
            .await;
            match loaded {
                Ok(Ok(_)) => Ok(()),
                _ => Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS),
            }
        }
        Some((weir_metadata::NO_LEADER, _)) | None => Err(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        Some(_) => Err(ErrorCode::NOT_COORDINATOR),
    }
}

/// Creates internal topic `name` (compacted, plus `configs(replication factor)`) with
/// `partitions` partitions and `replication_factor` replicas clamped to the brokers that can
/// take one now, and returns once this broker has published it — also when another broker
/// created it first.
pub(crate) async fn create_topic(
    broker: &Arc<Broker>,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: impl FnOnce(i16) -> BTreeMap<String, String>,
) -> Result<(), crate::BrokerError> {
    let live = broker
        .cluster
        .latest_image()
        .brokers()
        .values()
        .filter(|b| b.is_active())
        .count();
    let factor = replication_factor
        .min(i16::try_from(live).unwrap_or(i16::MAX))
        .max(1);
    let mut configs = configs(factor);
    configs.insert("cleanup.policy".to_string(), "compact".into());
    let request = weir_metadata::active::ControllerRequest::CreateTopic {
        topic_id: weir_metadata::TopicId(crate::topics::new_topic_id().0),
        request: weir_metadata::CreateTopic {
            name: name.to_string(),
            num_partitions: Some(partitions),
            replication_factor: Some(factor),
            assignments: None,
            configs,
        },
        validate_only: false,
    };
    match broker.cluster.call(request).await {
        Ok(response) => {
            broker.cluster.wait_published(response.offset).await;
            info!(
                topic = name,
                partitions,
                replication_factor = factor,
                "created an internal topic"
            );
        }
        // Another broker created it first.
        Err(weir_metadata::active::ControllerCallError::Refused(
            weir_metadata::ControllerError::TopicAlreadyExists(_),
        )) => {
            let mut images = broker.cluster.images();
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                images.wait_for(|i| i.topic(name).is_some()),
            )
            .await;
            let offset = broker.cluster.latest_image().offset();
            broker.cluster.wait_published(offset).await;
        }
        Err(e) => {
            return Err(crate::BrokerError::Cluster(format!(
                "cannot create {name}: {e}"
            )));
        }
    }
    Ok(())
}

/// Why [`append`] did not commit its records.
#[derive(Debug)]
pub(crate) enum AppendFailure {
    /// This broker does not lead the partition (in the leader epoch asked for): the lookup's
    /// error.
    NotLeader(ErrorCode),
    /// The records did not encode into a batch.
    Records(weir_records::Error),
    /// The leader append failed, or leadership moved during it.
    Append(LeaderAppendError),
    /// Appended, but not committed in time or before leadership moved.
    NotCommitted(AckError),
}

/// Appends `records` (key, value) as one batch to `partition` of internal topic `topic` as its
/// leader — in `leader_epoch`, or whatever the current one is with -1 — and waits until the
/// high watermark passes it, at most `timeout`. Returns the batch's last offset.
pub(crate) async fn append(
    broker: &Broker,
    topic: &str,
    (partition, leader_epoch): (i32, i32),
    records: impl IntoIterator<Item = (Bytes, Option<Bytes>)>,
    timeout: Duration,
) -> Result<i64, AppendFailure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (replica, leader_epoch) = broker
        .leader_replica(topic, partition, leader_epoch)
        .map_err(AppendFailure::NotLeader)?;
    let now = crate::producers::wall_clock_ms();
    let mut builder = RecordBatchBuilder::new();
    for (key, value) in records {
        builder.push(Record {
            timestamp: now,
            key: Some(key),
            value,
            ..Record::default()
        });
    }
    let batch = builder.build().map_err(AppendFailure::Records)?;
    let appending = replica.clone();
    let dir = replica.log.dir().to_path_buf();
    let info = crate::blocking::spawn(move || {
        crate::replication::append_as_leader(&appending, leader_epoch, &batch)
    })
    .await
    .map_err(|e| {
        AppendFailure::Append(LeaderAppendError::Log(
            crate::partitions::append_task_failed(dir, e),
        ))
    })?
    .map_err(AppendFailure::Append)?;
    broker.partitions.notify_appended();
    broker.replicas.local_log_end_offset_moved(&replica);
    broker
        .replicas
        .wait_for_commit(&replica, leader_epoch, info.last_offset + 1, deadline)
        .await
        .map_err(AppendFailure::NotCommitted)?;
    Ok(info.last_offset)
}
