//! Replica fetchers: one task per leader broker that copies the partitions this broker follows
//! from it, as Kafka's ReplicaFetcherThread does.
//!
//! Each partition handed to a fetcher starts by truncating: the fetcher asks the leader for
//! the end offset of the follower's latest leader epoch (OffsetForLeaderEpoch, KIP-101 and
//! KIP-279; `weir_replication::truncation_offset` decides) and cuts off whatever diverged.
//! Then it fetches with Kafka's Fetch (with this broker's id as `replica_id`, so the leader
//! counts the fetch as replica progress), all of the leader's partitions in one request;
//! appends the batches as they are, offsets and epochs kept; and with `durable.acks` fsyncs
//! them before the next fetch, so the offset the leader sees is durable here.
//!
//! Errors: a leader that is unreachable or answers garbage is retried after
//! `replica.fetch.backoff.ms`; a partition the leader no longer leads waits for the metadata
//! image that says who does (the publisher then moves it to another fetcher).

use crate::config::ReplicationSettings;
use crate::replication::{Replica, Role};
use crate::state::Broker;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use weir_log::{AppendOrigin, TopicPartition};
use weir_protocol::frame::write_frame;
use weir_protocol::header::{request_header_version, response_header_version};
use weir_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir_protocol::messages::fetch_response::PartitionData;
use weir_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use weir_protocol::messages::{
    FetchRequest, OffsetForLeaderEpochRequest, RequestHeader, ResponseHeader,
};
use weir_protocol::{ErrorCode, Message, Request};

/// Fetch v12: the last version that names topics and carries `replica_id` at the top.
const FETCH_VERSION: i16 = 12;
/// OffsetForLeaderEpoch v4 (flexible, with `replica_id`).
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// Kafka's `replica.socket.timeout.ms` default.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response a fetcher accepts.
const MAX_RESPONSE: usize = 256 << 20;

/// Where a followed partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// It must truncate to the leader's log first; `Some` asks about that epoch (a KIP-279
    /// second round) instead of the local latest.
    Truncating(Option<i32>),
    /// It fetches.
    Fetching,
}

#[derive(Debug)]
struct Followed {
    replica: Arc<Replica>,
    leader_epoch: i32,
    phase: Phase,
    /// Not before this (after an error).
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct Fetcher {
    leader: i32,
    address: Mutex<String>,
    partitions: Mutex<BTreeMap<TopicPartition, Followed>>,
    changed: Notify,
}

/// Every replica fetcher of this broker, by leader.
#[derive(Debug)]
pub(crate) struct Fetchers {
    node_id: i32,
    settings: ReplicationSettings,
    fetchers: Mutex<HashMap<i32, Arc<Fetcher>>>,
    /// Turned true by [`Fetchers::stop_all`]: a shutdown's controlled leadership moves can
    /// still make this broker a follower afterwards, and a fetcher started then would hold the
    /// replica's log (and the broker) past the clean close. Fetcher tasks watch it to drop a
    /// round in flight.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The fetcher tasks, awaited at shutdown ([`Fetchers::join_all`]): each holds the broker.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Fetchers {
    pub(crate) fn new(node_id: i32, settings: ReplicationSettings) -> Self {
        Self {
            node_id,
            settings,
            fetchers: Mutex::new(HashMap::new()),
            stopping: tokio::sync::watch::Sender::new(false),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Follows `replica` from `leader` at `address` in `leader_epoch`, starting with a
    /// truncation; starts that leader's fetcher if there is none.
    pub(crate) fn add(
        &self,
        broker: &Arc<Broker>,
        leader: i32,
        address: String,
        replica: Arc<Replica>,
        leader_epoch: i32,
    ) {
        let tp = replica.tp.clone();
        self.remove(&tp);
        let (fetcher, start) = {
            let mut fetchers = self.fetchers.lock();
            // Checked under the lock `stop_all` drains with, so no fetcher starts after it.
            if *self.stopping.borrow() {
                return;
            }
            match fetchers.get(&leader) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Fetcher {
                        leader,
                        address: Mutex::new(address.clone()),
                        partitions: Mutex::new(BTreeMap::new()),
                        changed: Notify::new(),
                    });
                    fetchers.insert(leader, f.clone());
                    (f, true)
                }
            }
        };
        *fetcher.address.lock() = address;
        fetcher.partitions.lock().insert(
            tp,
            Followed {
                replica,
                leader_epoch,
                phase: Phase::Truncating(None),
                retry_at: None,
            },
        );
        fetcher.changed.notify_one();
        if start {
            let broker = broker.clone();
            let node_id = self.node_id;
            let settings = self.settings.clone();
            let stopping = self.stopping.subscribe();
            let task = tokio::spawn(async move {
                run(broker, fetcher, node_id, settings, stopping).await;
            });
            let mut tasks = self.tasks.lock();
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Stops following a partition.
    pub(crate) fn remove(&self, tp: &TopicPartition) {
        for fetcher in self.fetchers.lock().values() {
            if fetcher.partitions.lock().remove(tp).is_some() {
                fetcher.changed.notify_one();
            }
        }
    }

    /// Waits, after [`Fetchers::stop_all`], until every fetcher task has ended (a round in
    /// flight finishes first), so none holds the broker or a log when they close; a task still
    /// running after `within` is aborted.
    pub(crate) async fn join_all(&self, within: Duration) {
        let tasks: Vec<_> = self.tasks.lock().drain(..).collect();
        let deadline = tokio::time::Instant::now() + within;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                warn!("a replica fetcher did not stop in time; aborting it");
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Stops every fetcher (shutdown).
    pub(crate) fn stop_all(&self) {
        let mut fetchers = self.fetchers.lock();
        self.stopping.send_replace(true);
        for fetcher in fetchers.drain().map(|(_, f)| f) {
            fetcher.partitions.lock().clear();
            fetcher.changed.notify_one();
        }
    }
}

/// Why a round trip to the leader failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("connection to {address}: {source}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} did not answer in time")]
    Timeout(String),
    #[error("{address} answered with a malformed response: {reason}")]
    Malformed { address: String, reason: String },
}

/// One connection to a leader; requests go one at a time.
pub(crate) struct LeaderConnection {
    address: String,
    stream: TcpStream,
    client_id: String,
    next_correlation_id: i32,
}

impl LeaderConnection {
    async fn connect(address: &str, node_id: i32) -> Result<Self, FetchError> {
        Self::connect_as(address, format!("weir-replica-fetcher-{node_id}")).await
    }

    /// A connection to another broker's client listener, sending as `client_id` (the
    /// transaction coordinator's marker sender uses it too).
    pub(crate) async fn connect_as(address: &str, client_id: String) -> Result<Self, FetchError> {
        let io = |source| FetchError::Io {
            address: address.to_string(),
            source,
        };
        let stream = tokio::time::timeout(SOCKET_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| FetchError::Timeout(address.to_string()))?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        Ok(Self {
            address: address.to_string(),
            stream,
            client_id,
            next_correlation_id: 0,
        })
    }

    pub(crate) async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, FetchError> {
        let address = self.address.clone();
        let malformed = |reason: String| FetchError::Malformed {
            address: address.clone(),
            reason,
        };
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let correlation_id = self.next_correlation_id;
        let header = RequestHeader {
            request_api_key: R::API_KEY as i16,
            request_api_version: version,
            correlation_id,
            client_id: Some(self.client_id.clone()),
            ..RequestHeader::default()
        };
        let mut buf = BytesMut::new();
        write_frame(&mut buf, |buf| {
            header.encode(buf, request_header_version(R::API_KEY, version))?;
            request.encode(buf, version)
        })
        .map_err(|e| malformed(e.to_string()))?;
        let frame = tokio::time::timeout(SOCKET_TIMEOUT, self.round_trip(&buf))
            .await
            .map_err(|_| FetchError::Timeout(self.address.clone()))??;
        let mut frame = frame;
        let response_header =
            ResponseHeader::decode(&mut frame, response_header_version(R::API_KEY, version))
                .map_err(|e| malformed(e.to_string()))?;
        if response_header.correlation_id != correlation_id {
            return Err(malformed(format!(
                "correlation id {} for request {correlation_id}",
                response_header.correlation_id
            )));
        }
        <R::Response as Message>::decode_exact(frame, version).map_err(|e| malformed(e.to_string()))
    }

    async fn round_trip(&mut self, request: &[u8]) -> Result<Bytes, FetchError> {
        let io = |source| FetchError::Io {
            address: self.address.clone(),
            source,
        };
        self.stream.write_all(request).await.map_err(io)?;
        let size = self.stream.read_i32().await.map_err(io)?;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_RESPONSE)
            .ok_or_else(|| FetchError::Malformed {
                address: self.address.clone(),
                reason: format!("response size {size}"),
            })?;
        let mut body = vec![0; size];
        self.stream.read_exact(&mut body).await.map_err(io)?;
        Ok(Bytes::from(body))
    }
}

/// A snapshot of one partition for a round.
struct Work {
    tp: TopicPartition,
    replica: Arc<Replica>,
    leader_epoch: i32,
    phase: Phase,
}

/// Resolves once [`Fetchers::stop_all`] ran (or the fetchers are gone).
async fn until_stopping(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

async fn run(
    broker: Arc<Broker>,
    fetcher: Arc<Fetcher>,
    node_id: i32,
    settings: ReplicationSettings,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let backoff = Duration::from_millis(settings.replica_fetch_backoff_ms);
    let mut connection: Option<LeaderConnection> = None;
    info!(leader = fetcher.leader, "replica fetcher started");
    loop {
        if broker.partitions.closing() {
            return;
        }
        let now = Instant::now();
        let (work, next_retry): (Vec<Work>, Option<Instant>) = {
            let partitions = fetcher.partitions.lock();
            let work = partitions
                .iter()
                .filter(|(_, f)| f.retry_at.is_none_or(|at| at <= now))
                .map(|(tp, f)| Work {
                    tp: tp.clone(),
                    replica: f.replica.clone(),
                    leader_epoch: f.leader_epoch,
                    phase: f.phase,
                })
                .collect();
            let next_retry = partitions.values().filter_map(|f| f.retry_at).min();
            (work, next_retry)
        };
        if work.is_empty() {
            let wait = next_retry.map_or(Duration::from_secs(1), |at| {
                at.saturating_duration_since(now)
            });
            let _ = tokio::time::timeout(wait, fetcher.changed.notified()).await;
            continue;
        }
        let address = fetcher.address.lock().clone();
        if connection.as_ref().is_none_or(|c| c.address != address) {
            let connected = tokio::select! {
                connected = LeaderConnection::connect(&address, node_id) => connected,
                () = until_stopping(&mut stopping) => return,
            };
            match connected {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    debug!(leader = fetcher.leader, error = %e, "cannot reach the leader");
                    let _ = tokio::time::timeout(backoff, fetcher.changed.notified()).await;
                    continue;
                }
            }
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        let (truncating, fetching): (Vec<Work>, Vec<Work>) = work
            .into_iter()
            .partition(|w| matches!(w.phase, Phase::Truncating(_)));
        // At shutdown a round in flight is dropped: a leader that is itself stopping no longer
        // answers, and waiting out the request timeout would hold this broker's clean close.
        let round = async {
            if truncating.is_empty() {
                fetch_round(&broker, &fetcher, conn, node_id, &settings, fetching).await
            } else {
                truncate_round(&broker, &fetcher, conn, node_id, truncating).await
            }
        };
        let result = tokio::select! {
            result = round => result,
            () = until_stopping(&mut stopping) => return,
        };
        if let Err(e) = result {
            debug!(leader = fetcher.leader, error = %e, "replica fetch failed");
            connection = None;
            let _ = tokio::time::timeout(backoff, fetcher.changed.notified()).await;
        }
    }
}

/// Sets a partition's phase if it is still followed in `leader_epoch`; `retry` delays it.
fn set_phase(
    fetcher: &Fetcher,
    tp: &TopicPartition,
    leader_epoch: i32,
    phase: Phase,
    retry: Option<Duration>,
) {
    if let Some(f) = fetcher.partitions.lock().get_mut(tp) {
        if f.leader_epoch == leader_epoch {
            f.phase = phase;
            f.retry_at = retry.map(|d| Instant::now() + d);
        }
    }
}

/// Asks the leader for the end offsets of the epochs the truncating partitions ended with and
/// truncates them (KIP-279).
async fn truncate_round(
    broker: &Arc<Broker>,
    fetcher: &Fetcher,
    conn: &mut LeaderConnection,
    node_id: i32,
    work: Vec<Work>,
) -> Result<(), FetchError> {
    let backoff = Duration::from_millis(broker.replicas.settings().replica_fetch_backoff_ms);
    let mut asked = Vec::new();
    let mut topics: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
    for w in work {
        let log = &w.replica.log;
        let epoch = match w.phase {
            Phase::Truncating(Some(epoch)) => Some(epoch),
            _ => log.latest_epoch(),
        };
        let Some(epoch) = epoch else {
            // No epoch at all: an empty log (or one with nothing but data from before epochs),
            // which has nothing that can diverge beyond its high watermark.
            let hw = w.replica.high_watermark();
            if log.log_end_offset() > hw.max(log.log_start_offset()) {
                let replica = w.replica.clone();
                let b = broker.clone();
                let leader_epoch = w.leader_epoch;
                let _ = crate::blocking::spawn(move || {
                    truncate_follower(&b, &replica, leader_epoch, hw)
                })
                .await;
            }
            set_phase(fetcher, &w.tp, w.leader_epoch, Phase::Fetching, None);
            continue;
        };
        topics
            .entry(w.tp.topic.clone())
            .or_default()
            .push(OffsetForLeaderPartition {
                partition: w.tp.partition,
                current_leader_epoch: w.leader_epoch,
                leader_epoch: epoch,
                ..OffsetForLeaderPartition::default()
            });
        asked.push(w);
    }
    if asked.is_empty() {
        return Ok(());
    }
    let request = OffsetForLeaderEpochRequest {
        replica_id: node_id,
        topics: topics
            .into_iter()
            .map(|(topic, partitions)| OffsetForLeaderTopic {
                topic,
                partitions,
                ..OffsetForLeaderTopic::default()
            })
            .collect(),
        ..OffsetForLeaderEpochRequest::default()
    };
    let response = conn.send(&request, OFFSET_FOR_LEADER_EPOCH_VERSION).await?;
    let mut answers = HashMap::new();
    for topic in response.topics {
        for p in topic.partitions {
            answers.insert(TopicPartition::new(&topic.topic, p.partition), p);
        }
    }
    for w in asked {
        let Some(answer) = answers.remove(&w.tp) else {
            set_phase(fetcher, &w.tp, w.leader_epoch, w.phase, Some(backoff));
            continue;
        };
        if answer.error_code != 0 {
            let code = ErrorCode(answer.error_code);
            debug!(topic = %w.tp.topic, partition = w.tp.partition, error = code.name(), "OffsetForLeaderEpoch refused");
            let wait = match code {
                // The leader has not applied the metadata that makes it leader yet.
                ErrorCode::NOT_LEADER_OR_FOLLOWER
                | ErrorCode::UNKNOWN_LEADER_EPOCH
                | ErrorCode::FENCED_LEADER_EPOCH => METADATA_BACKOFF,
                _ => backoff,
            };
            set_phase(fetcher, &w.tp, w.leader_epoch, w.phase, Some(wait));
            continue;
        }
        let leader = weir_replication::EpochEndOffset {
            leader_epoch: answer.leader_epoch,
            end_offset: answer.end_offset,
        };
        let replica = w.replica.clone();
        let b = broker.clone();
        let leader_epoch = w.leader_epoch;
        let decided = crate::blocking::spawn(move || {
            let log = &replica.log;
            let local = log.end_offset_for_epoch(leader.leader_epoch);
            let local = weir_replication::EpochEndOffset {
                leader_epoch: local.leader_epoch,
                end_offset: local.end_offset,
            };
            match weir_replication::truncation_offset(
                leader,
                local,
                log.log_end_offset(),
                replica.high_watermark(),
            ) {
                weir_replication::Truncation::To(offset) => {
                    truncate_follower(&b, &replica, leader_epoch, offset).then_some(Phase::Fetching)
                }
                weir_replication::Truncation::AskAgain(epoch) => {
                    Some(Phase::Truncating(Some(epoch)))
                }
            }
        })
        .await
        .ok()
        .flatten();
        match decided {
            Some(phase) => set_phase(fetcher, &w.tp, w.leader_epoch, phase, None),
            None => set_phase(fetcher, &w.tp, w.leader_epoch, w.phase, Some(backoff)),
        }
    }
    Ok(())
}

/// Truncates a follower's log to `offset` if it is still a follower in `leader_epoch`;
/// returns whether it is (and the truncation, if any, succeeded).
fn truncate_follower(broker: &Broker, replica: &Replica, leader_epoch: i32, offset: i64) -> bool {
    let role = replica.role.lock();
    if !matches!(*role, Role::Follower { leader_epoch: e, .. } if e == leader_epoch) {
        return false;
    }
    let log = &replica.log;
    let leo = log.log_end_offset();
    if offset >= leo {
        return true;
    }
    match log.truncate_to(offset) {
        Ok(()) => {
            info!(topic = %replica.tp.topic, partition = replica.tp.partition, from = leo, to = log.log_end_offset(), "truncated the follower's log to the leader's");
            broker
                .producer_states
                .forget(&replica.tp.topic, replica.tp.partition, log.dir());
            true
        }
        Err(e) => {
            warn!(topic = %replica.tp.topic, partition = replica.tp.partition, error = %e, "truncation failed");
            false
        }
    }
}

/// One Fetch of every fetching partition from the leader; appends what comes back.
async fn fetch_round(
    broker: &Arc<Broker>,
    fetcher: &Fetcher,
    conn: &mut LeaderConnection,
    node_id: i32,
    settings: &ReplicationSettings,
    work: Vec<Work>,
) -> Result<(), FetchError> {
    let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
    let mut by_tp = HashMap::new();
    for w in work {
        let log = &w.replica.log;
        topics
            .entry(w.tp.topic.clone())
            .or_default()
            .push(FetchPartition {
                partition: w.tp.partition,
                current_leader_epoch: w.leader_epoch,
                fetch_offset: log.log_end_offset(),
                last_fetched_epoch: log.latest_epoch().unwrap_or(-1),
                log_start_offset: log.log_start_offset(),
                partition_max_bytes: settings.replica_fetch_max_bytes,
                ..FetchPartition::default()
            });
        by_tp.insert(w.tp.clone(), w);
    }
    let request = FetchRequest {
        replica_id: node_id,
        max_wait_ms: settings.replica_fetch_wait_max_ms,
        min_bytes: 1,
        max_bytes: settings.replica_fetch_response_max_bytes,
        isolation_level: 0,
        session_id: 0,
        session_epoch: -1,
        topics: topics
            .into_iter()
            .map(|(topic, partitions)| FetchTopic {
                topic,
                partitions,
                ..FetchTopic::default()
            })
            .collect(),
        ..FetchRequest::default()
    };
    let response = conn.send(&request, FETCH_VERSION).await?;
    if response.error_code != 0 {
        return Err(FetchError::Malformed {
            address: conn.address.clone(),
            reason: format!("fetch error {}", response.error_code),
        });
    }
    let mut results = Vec::new();
    for topic in response.responses {
        for p in topic.partitions {
            let tp = TopicPartition::new(&topic.topic, p.partition_index);
            if let Some(w) = by_tp.remove(&tp) {
                results.push((w, p));
            }
        }
    }
    if results.is_empty() {
        return Ok(());
    }
    let b = broker.clone();
    let durable = settings.durable_acks;
    let outcomes = crate::blocking::spawn(move || {
        results
            .into_iter()
            .map(|(w, data)| {
                let phase = apply_fetched(&b, &w, data, durable);
                (w.tp, w.leader_epoch, phase)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let backoff = Duration::from_millis(settings.replica_fetch_backoff_ms);
    for (tp, leader_epoch, outcome) in outcomes {
        match outcome {
            Applied::Ok => {}
            Applied::Truncate => {
                set_phase(fetcher, &tp, leader_epoch, Phase::Truncating(None), None)
            }
            Applied::Retry => set_phase(fetcher, &tp, leader_epoch, Phase::Fetching, Some(backoff)),
            Applied::AwaitMetadata => set_phase(
                fetcher,
                &tp,
                leader_epoch,
                Phase::Fetching,
                Some(METADATA_BACKOFF),
            ),
        }
    }
    Ok(())
}

enum Applied {
    Ok,
    Truncate,
    /// Try again after `replica.fetch.backoff.ms`.
    Retry,
    /// The leader does not (yet) know itself leader in this epoch: the metadata is on its way,
    /// so try again soon rather than after the full backoff.
    AwaitMetadata,
}

/// The pause after a leader answered that it does not lead in the follower's epoch (yet).
const METADATA_BACKOFF: Duration = Duration::from_millis(50);

/// Appends one partition's fetched batches (on the blocking pool), fsyncs them with durable
/// acknowledgement, and takes the leader's high watermark and log start offset.
fn apply_fetched(broker: &Broker, w: &Work, data: PartitionData, durable: bool) -> Applied {
    let replica = &w.replica;
    let tp = &w.tp;
    let role = replica.role.lock();
    if !matches!(*role, Role::Follower { leader_epoch, .. } if leader_epoch == w.leader_epoch) {
        return Applied::Ok;
    }
    let log = &replica.log;
    match ErrorCode(data.error_code) {
        ErrorCode::NONE => {}
        ErrorCode::OFFSET_OUT_OF_RANGE => {
            let leo = log.log_end_offset();
            if data.log_start_offset > leo {
                // The leader deleted what this replica still needs: start over at its start.
                warn!(%tp, log_end_offset = leo, leader_log_start_offset = data.log_start_offset, "the leader no longer has this replica's next offset; restarting the log at the leader's start");
                if let Err(e) = log.truncate_fully_and_start_at(data.log_start_offset) {
                    warn!(%tp, error = %e, "cannot restart the log");
                    return Applied::Retry;
                }
                broker
                    .producer_states
                    .forget(&tp.topic, tp.partition, log.dir());
                return Applied::Ok;
            }
            return Applied::Truncate;
        }
        ErrorCode::NOT_LEADER_OR_FOLLOWER
        | ErrorCode::UNKNOWN_LEADER_EPOCH
        | ErrorCode::FENCED_LEADER_EPOCH => {
            debug!(%tp, error = ErrorCode(data.error_code).name(), "the leader refused the fetch; waiting for metadata");
            return Applied::AwaitMetadata;
        }
        other => {
            debug!(%tp, error = other.name(), "the leader refused the fetch");
            return Applied::Retry;
        }
    }
    if let Some(records) = data.records.filter(|r| !r.is_empty()) {
        // A response may end in a partial batch (a size limit): keep whole batches only.
        let whole = whole_batches_len(&records);
        let mut batches = records.slice(..whole).to_vec();
        if !batches.is_empty() {
            if let Err(e) = log.append(&mut batches, AppendOrigin::Replication) {
                warn!(%tp, error = %e, "cannot append replicated batches");
                return match e {
                    weir_log::Error::OutOfOrderOffset { .. } => Applied::Truncate,
                    _ => Applied::Retry,
                };
            }
            // The same producer state as the leader's, so that as leader this broker knows
            // the ongoing transactions, and the same transaction index entries.
            if let Err(e) = broker.producer_states.track_appended(
                &tp.topic,
                weir_protocol::Uuid(replica.topic_id.0),
                tp.partition,
                log,
                &Bytes::from(batches),
            ) {
                warn!(%tp, error = %e, "cannot track the producers of replicated batches; rebuilding on next use");
            }
        }
    }
    if data.log_start_offset > log.log_start_offset()
        && data.log_start_offset <= log.log_end_offset()
    {
        if let Err(e) = log.delete_records_before(data.log_start_offset) {
            debug!(%tp, error = %e, "cannot follow the leader's log start offset");
        }
    }
    // The fsync needs no role: it makes durable what is appended already, whatever the role
    // becomes meanwhile; holding the lock through it would stall every request that reads the
    // role (on the runtime's worker threads) for as long as the disk takes.
    drop(role);
    if durable {
        if let Err(e) = log.flush() {
            warn!(%tp, error = %e, "cannot fsync replicated batches");
            return Applied::Retry;
        }
    }
    replica.follower_high_watermark(data.high_watermark);
    Applied::Ok
}

/// The length of the whole batches at the front of `records`: up to a partial batch at the end,
/// which a fetch response may carry. Any other framing error keeps everything, for the log's
/// validation to refuse.
fn whole_batches_len(records: &Bytes) -> usize {
    let mut batches = weir_records::RecordBatches::new(records.clone());
    while let Some(batch) = batches.next() {
        if let Err(weir_records::Error::Truncated { .. }) = batch {
            return records.len() - batches.remaining().len();
        }
    }
    records.len()
}

#[cfg(test)]
mod tests {
    use super::whole_batches_len;
    use bytes::Bytes;

    #[test]
    fn partial_batches_at_the_end_are_cut_off() {
        let batch = |value: &[u8]| {
            let mut builder = weir_records::RecordBatchBuilder::new();
            builder.push(weir_records::Record::new(0, None, Some(value)));
            builder.build().unwrap_or_default()
        };
        let mut records = Vec::new();
        for value in [&b"first"[..], b"second batch"] {
            records.extend_from_slice(&batch(value));
        }
        let whole = records.len();
        assert_eq!(whole_batches_len(&Bytes::from(records.clone())), whole);
        let third = batch(b"cut off by the size limit");
        records.extend_from_slice(third.get(..third.len() - 10).unwrap_or_default());
        assert_eq!(whole_batches_len(&Bytes::from(records)), whole);
        assert_eq!(whole_batches_len(&Bytes::from_static(&[0; 5])), 0);
    }
}
