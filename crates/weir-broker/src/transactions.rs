//! The transaction coordinator driver: performs the I/O that `weir_transaction::Coordinator`
//! asks for, as `groups` does for the group coordinator.
//!
//! - The coordinator of a transactional id is the leader of its `__transaction_state`
//!   partition. The topic is created on the first transactional FindCoordinator or
//!   InitProducerId ([`ensure_state_topic`]): compacted, `transaction.state.log.num.partitions`
//!   partitions, `transaction.state.log.replication.factor` replicas clamped to the live
//!   brokers.
//! - [`Transactions::become_leader`] replays a partition's log into [`Coordinator::load`] (in
//!   the background; requests for it get COORDINATOR_LOAD_IN_PROGRESS meanwhile) and
//!   [`Transactions::resign`] unloads it, both called from `replication` as leadership moves.
//! - Requests park on a `oneshot` keyed by [`RequestId`] until the coordinator answers, which
//!   happens after the record of their transition is durable.
//! - [`Output::Persist`] is appended to the partition as its leader in the coordinator epoch
//!   (the partition's leader epoch at load) and reported with [`Coordinator::persisted`] once the
//!   high watermark passes it (acks=all). The coordinator keeps at most one write in flight per
//!   transactional id, so the writes of different ids run concurrently, each in its own task.
//! - [`Output::WriteMarkers`] is grouped by partition leader (from the metadata image): a local
//!   call to `write_txn_markers::write` where this broker leads, a WriteTxnMarkers request over
//!   the leader's PLAINTEXT listener elsewhere. Retriable failures are retried with a backoff
//!   until every partition has its marker or the coordinator no longer owns the transaction;
//!   each written partition is reported with [`Coordinator::markers_written`].
//! - A timer task ([`run_timer`]) calls [`Coordinator::tick`] at [`Coordinator::next_deadline`]
//!   (transaction timeouts, transactional id expiration, retried completions).

use crate::config::BrokerConfig;
use crate::replication::LeaderAppendError;
use crate::state::Broker;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, oneshot, watch};
use tracing::{debug, error, info, warn};
use weir_protocol::ErrorCode;
use weir_protocol::messages::WriteTxnMarkersRequest;
use weir_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use weir_transaction::{
    Config, Coordinator, Millis, Output, PersistError, PersistRecord, PersistToken,
    ProducerIdAllocator, ProducerIdAndEpoch, RequestId, TopicPartition, TxnMarkers,
};

/// The internal topic holding the transaction coordinator's state.
pub(crate) const STATE_TOPIC: &str = "__transaction_state";

/// The first and the longest pause between two rounds of marker writes that left partitions
/// without their marker.
const MARKER_BACKOFF: Duration = Duration::from_millis(50);
const MARKER_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The WriteTxnMarkers version sent to other brokers (every Weir broker serves 1-2).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;

/// What a parked request gets back: the producer id and epoch to continue with (InitProducerId,
/// EndTxn), or just success (AddPartitionsToTxn, AddOffsetsToTxn).
pub(crate) type Reply = Result<ProducerIdAndEpoch, TxnFailure>;

/// Why a transactional request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxnFailure {
    /// The coordinator refused it (or its write failed, mapped by the coordinator).
    Coordinator(weir_transaction::Error),
    /// The broker could not serve it: not the coordinator, loading, shutting down.
    Code(ErrorCode),
}

impl TxnFailure {
    /// The code the client sees; `knows_producer_fenced` as in
    /// [`weir_transaction::Error::code_for_version`].
    pub(crate) fn code(&self, knows_producer_fenced: bool) -> ErrorCode {
        match self {
            TxnFailure::Coordinator(e) => ErrorCode(e.code_for_version(knows_producer_fenced)),
            TxnFailure::Code(code) => *code,
        }
    }
}

#[derive(Debug, Default)]
struct Parked {
    /// Set at shutdown: nothing parks any more.
    closing: bool,
    waiters: HashMap<RequestId, oneshot::Sender<Reply>>,
}

/// The broker's transaction coordinator: the state machine plus the requests parked on it.
#[derive(Debug)]
pub(crate) struct Transactions {
    coordinator: Mutex<Coordinator>,
    parked: Mutex<Parked>,
    next_request: AtomicU64,
    /// Wakes the timer task: the next deadline may have changed.
    wake: Notify,
    /// The `__transaction_state` partitions this broker leads, and whether they are loaded.
    owned: crate::internal_topics::PartitionLoads,
    /// A producer id taken from the controller's block ahead of a coordinator call (the call
    /// runs under a lock and cannot wait for a new block); kept for the next call if unused.
    spare_id: Mutex<Option<i64>>,
    /// `transaction.state.log.*` and the coordinator settings.
    settings: Settings,
    /// Appends and marker writes running in their own tasks: shutdown waits for them (briefly),
    /// since each holds the broker and the server closes the logs only once nothing does.
    tasks: AtomicUsize,
    tasks_done: Notify,
    /// Idle connections to other brokers' client listeners, by address, for WriteTxnMarkers
    /// and verify-only AddPartitionsToTxn.
    idle: Mutex<IdleConnections>,
}

/// At most this many idle connections are kept per broker.
const IDLE_PER_BROKER: usize = 4;

/// Idle connections by address.
#[derive(Default)]
struct IdleConnections(HashMap<String, Vec<crate::replica_fetcher::LeaderConnection>>);

impl std::fmt::Debug for IdleConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(a, c)| (a, c.len())))
            .finish()
    }
}

/// The broker properties of the transaction coordinator, with Kafka's defaults.
#[derive(Debug, Clone)]
struct Settings {
    num_partitions: i32,
    replication_factor: i16,
    min_isr: i16,
    /// How long an append waits for the high watermark (`transaction.state.log` writes in Kafka
    /// wait up to `request.timeout.ms`).
    commit_timeout: Duration,
    max_timeout_ms: i32,
    id_expiration_ms: i64,
}

impl Settings {
    fn from(config: &BrokerConfig) -> Self {
        let t = &config.transactions;
        Self {
            num_partitions: t.state_log_num_partitions,
            replication_factor: t.state_log_replication_factor,
            min_isr: t.state_log_min_isr,
            commit_timeout: Duration::from_millis(t.request_timeout_ms),
            max_timeout_ms: t.max_timeout_ms,
            id_expiration_ms: t.transactional_id_expiration_ms,
        }
    }

    fn coordinator_config(&self, state_partitions: i32, offsets_partitions: i32) -> Config {
        let mut c = Config::default();
        c.state_log_partitions = state_partitions;
        c.offsets_topic_partitions = offsets_partitions;
        c.max_transaction_timeout_ms = self.max_timeout_ms;
        c.transactional_id_expiration_ms = self.id_expiration_ms;
        c
    }
}

/// Hands the coordinator the spare producer id, once.
pub(crate) struct Spare<'a>(&'a mut Option<i64>);

impl ProducerIdAllocator for Spare<'_> {
    fn allocate(&mut self) -> Option<i64> {
        self.0.take()
    }
}

impl Transactions {
    /// A coordinator that leads nothing yet; [`open`] fixes the partition counts.
    pub(crate) fn new(config: &BrokerConfig) -> Self {
        let settings = Settings::from(config);
        Self {
            coordinator: Mutex::new(Coordinator::new(settings.coordinator_config(
                settings.num_partitions,
                config.offsets_topic_num_partitions,
            ))),
            parked: Mutex::new(Parked::default()),
            next_request: AtomicU64::new(1),
            wake: Notify::new(),
            owned: crate::internal_topics::PartitionLoads::default(),
            spare_id: Mutex::new(None),
            settings,
            tasks: AtomicUsize::new(0),
            tasks_done: Notify::new(),
            idle: Mutex::new(IdleConnections::default()),
        }
    }

    /// The `__transaction_state` partition of `transactional_id`.
    pub(crate) fn partition_for(&self, transactional_id: &str) -> i32 {
        self.coordinator.lock().partition_for(transactional_id)
    }

    /// Read-only access to the coordinator (DescribeTransactions, ListTransactions).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Coordinator) -> T) -> T {
        f(&self.coordinator.lock())
    }

    /// Whether this broker leads `partition` but has not finished loading it.
    pub(crate) fn loading(&self, partition: i32) -> bool {
        self.owned.loading(partition)
    }

    /// Whether any partition this broker leads is still loading.
    pub(crate) fn any_loading(&self) -> bool {
        self.owned.any_loading()
    }

    /// This broker now leads `partition` of `__transaction_state` in `leader_epoch`: replays
    /// its log into the coordinator in the background. Transactions whose outcome was decided
    /// but not completed resume: their markers are sent again with the new coordinator epoch.
    pub(crate) fn become_leader(&self, broker: &Arc<Broker>, partition: i32, leader_epoch: i32) {
        if !self.owned.claim(partition, leader_epoch) {
            return;
        }
        let broker = broker.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let records = match broker.partitions.log(STATE_TOPIC, partition) {
                Some(log) => crate::blocking::spawn(move || crate::groups::replay(&log, partition))
                    .await
                    .map_err(|_| crate::BrokerError::TaskFailed)
                    .and_then(|r| r),
                None => Ok(crate::groups::Replayed::default()),
            };
            let records = match records {
                Ok(replayed) => replayed.records,
                Err(e) => {
                    error!(partition, error = %e, "cannot load __transaction_state partition; its transactional ids stay unavailable");
                    return;
                }
            };
            let txns = &broker.transactions;
            let count = records.len();
            let outputs = {
                let mut coordinator = txns.coordinator.lock();
                // None: leadership moved on meanwhile, or the partition is unreadable.
                let loaded = txns.owned.finish(partition, leader_epoch, || {
                    match coordinator.load(now_ms(), partition, leader_epoch, records) {
                        Ok(()) => Some(coordinator.take_outputs()),
                        Err(e) => {
                            // Nothing is loaded: the ids of this partition stay NOT_COORDINATOR
                            // rather than being served from a state that misses records.
                            error!(partition, error = %e, "unreadable __transaction_state partition; its transactional ids stay unavailable");
                            None
                        }
                    }
                });
                let Some(outputs) = loaded else {
                    return;
                };
                outputs
            };
            dispatch(&broker, outputs);
            info!(
                partition,
                leader_epoch,
                records = count,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "loaded the transactions of a __transaction_state partition"
            );
        });
    }

    /// This broker no longer leads `partition` of `__transaction_state`: its transactional ids
    /// are dropped and their parked requests answered NOT_COORDINATOR.
    pub(crate) fn resign(&self, broker: &Arc<Broker>, partition: i32) {
        let outputs = {
            let mut coordinator = self.coordinator.lock();
            if !self.owned.release(partition) {
                return;
            }
            coordinator.unload(partition);
            coordinator.take_outputs()
        };
        dispatch(broker, outputs);
        info!(
            partition,
            "unloaded the transactions of a __transaction_state partition"
        );
    }

    /// Runs a request on the coordinator and waits for its answer. `call` gets the time, the
    /// request's id and a producer id allocator; `needs_id` takes a producer id from the
    /// controller's block first (InitProducerId, EndTxn), which the coordinator may use.
    pub(crate) async fn request(
        &self,
        broker: &Arc<Broker>,
        needs_id: bool,
        call: impl FnOnce(&mut Coordinator, Millis, RequestId, &mut Spare<'_>),
    ) -> Reply {
        if needs_id && self.spare_id.lock().is_none() {
            let task_broker = broker.clone();
            let allocated =
                crate::blocking::spawn(move || task_broker.producer_ids.allocate(&task_broker))
                    .await;
            match allocated {
                Ok(Ok(id)) => {
                    let mut spare = self.spare_id.lock();
                    if spare.is_none() {
                        *spare = Some(id);
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot allocate a producer id");
                    // As Kafka's producer id manager answers while it waits for a block.
                    return Err(TxnFailure::Code(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS));
                }
                Err(_) => return Err(TxnFailure::Code(ErrorCode::UNKNOWN_SERVER_ERROR)),
            }
        }
        let (tx, rx) = oneshot::channel();
        let id = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        {
            let mut parked = self.parked.lock();
            if parked.closing {
                return Err(TxnFailure::Code(ErrorCode::NOT_COORDINATOR));
            }
            parked.waiters.insert(id, tx);
        }
        let outputs = {
            let mut coordinator = self.coordinator.lock();
            let mut spare = self.spare_id.lock();
            call(&mut coordinator, now_ms(), id, &mut Spare(&mut spare));
            coordinator.take_outputs()
        };
        dispatch(broker, outputs);
        rx.await
            .unwrap_or(Err(TxnFailure::Code(ErrorCode::NOT_COORDINATOR)))
    }

    /// Answers a parked request.
    fn answer(&self, request: RequestId, reply: Reply) {
        if let Some(tx) = self.parked.lock().waiters.remove(&request) {
            let _ = tx.send(reply);
        }
    }

    /// Releases every parked request and refuses new ones (shutdown).
    fn close(&self) {
        let mut parked = self.parked.lock();
        parked.closing = true;
        // Dropping the senders answers the handlers NOT_COORDINATOR.
        parked.waiters.clear();
    }

    /// Sends `request` to the broker at `address`, over an idle connection when there is one
    /// (and a new one if that fails: the peer may have closed it), keeping the connection for
    /// the next request after a successful exchange.
    async fn send_to<R: weir_protocol::Request>(
        &self,
        node_id: i32,
        address: &str,
        request: &R,
        version: i16,
    ) -> Result<R::Response, crate::replica_fetcher::FetchError> {
        let pooled = self.idle.lock().0.get_mut(address).and_then(Vec::pop);
        let mut connection = match pooled {
            Some(mut connection) => match connection.send(request, version).await {
                Ok(response) => {
                    self.keep(address, connection);
                    return Ok(response);
                }
                Err(_) => Self::connect(node_id, address).await?,
            },
            None => Self::connect(node_id, address).await?,
        };
        let response = connection.send(request, version).await?;
        self.keep(address, connection);
        Ok(response)
    }

    async fn connect(
        node_id: i32,
        address: &str,
    ) -> Result<crate::replica_fetcher::LeaderConnection, crate::replica_fetcher::FetchError> {
        crate::replica_fetcher::LeaderConnection::connect_as(
            address,
            format!("weir-txn-coordinator-{node_id}"),
        )
        .await
    }

    fn keep(&self, address: &str, connection: crate::replica_fetcher::LeaderConnection) {
        let mut idle = self.idle.lock();
        let list = idle.0.entry(address.to_string()).or_default();
        if list.len() < IDLE_PER_BROKER {
            list.push(connection);
        }
    }

    /// Whether the coordinator still owns `partition` at `coordinator_epoch`: markers of an
    /// earlier load stop being sent (the new owner sends them again).
    fn owns(&self, partition: i32, coordinator_epoch: i32) -> bool {
        self.owned.loaded(partition, coordinator_epoch)
    }
}

/// The coordinator's clock (wall-clock milliseconds, as the group coordinator uses).
fn now_ms() -> Millis {
    crate::groups::now_ms()
}

/// Performs the coordinator's outputs: appends and marker writes in their own tasks, answers at
/// once.
fn dispatch(broker: &Arc<Broker>, outputs: Vec<Output>) {
    let txns = &broker.transactions;
    for output in outputs {
        match output {
            Output::Persist {
                token,
                partition,
                coordinator_epoch,
                record,
            } => {
                let task = persist(broker.clone(), token, partition, coordinator_epoch, record);
                spawn_tracked(broker, task);
            }
            Output::WriteMarkers(markers) => {
                spawn_tracked(broker, send_markers(broker.clone(), markers));
            }
            Output::InitProducerId { request, response } | Output::EndTxn { request, response } => {
                txns.answer(request, response.map_err(TxnFailure::Coordinator));
            }
            Output::AddPartitions { request, response }
            | Output::AddOffsets { request, response } => {
                txns.answer(
                    request,
                    response
                        .map(|()| ProducerIdAndEpoch::default())
                        .map_err(TxnFailure::Coordinator),
                );
            }
        }
    }
    txns.wake.notify_one();
}

/// Runs `task` (which holds the broker) on its own, counted so shutdown can wait for it.
fn spawn_tracked(
    broker: &Arc<Broker>,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let txns = &broker.transactions;
    txns.tasks.fetch_add(1, Ordering::SeqCst);
    let broker = broker.clone();
    tokio::spawn(async move {
        task.await;
        let txns = &broker.transactions;
        if txns.tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            txns.tasks_done.notify_waiters();
        }
    });
}

/// How long shutdown waits for appends and marker writes in flight.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Appends one record and reports the outcome to the coordinator.
async fn persist(
    broker: Arc<Broker>,
    token: PersistToken,
    partition: i32,
    coordinator_epoch: i32,
    record: PersistRecord,
) {
    let result = append(&broker, partition, coordinator_epoch, record).await;
    let outputs = {
        let mut coordinator = broker.transactions.coordinator.lock();
        coordinator.persisted(now_ms(), token, result);
        coordinator.take_outputs()
    };
    dispatch(&broker, outputs);
}

/// Appends `record` to `__transaction_state` partition `partition` as its leader in
/// `coordinator_epoch` and waits until the high watermark passes it.
async fn append(
    broker: &Broker,
    partition: i32,
    coordinator_epoch: i32,
    record: PersistRecord,
) -> Result<(), PersistError> {
    use crate::internal_topics::AppendFailure;
    crate::internal_topics::append(
        broker,
        STATE_TOPIC,
        (partition, coordinator_epoch),
        [(record.key, record.value)],
        broker.transactions.settings.commit_timeout,
    )
    .await
    .map_err(|e| match e {
        AppendFailure::NotLeader(code) => {
            debug!(
                partition,
                error = code.name(),
                "cannot append to __transaction_state"
            );
            PersistError::NotLeader
        }
        AppendFailure::Records(e) => {
            error!(partition, error = %e, "cannot build a __transaction_state batch");
            PersistError::Other
        }
        AppendFailure::Append(LeaderAppendError::NotLeader)
        | AppendFailure::NotCommitted(crate::replication::AckError::NotLeader) => {
            PersistError::NotLeader
        }
        AppendFailure::Append(LeaderAppendError::Log(weir_log::Error::MessageTooLarge {
            ..
        })) => PersistError::Other,
        AppendFailure::Append(LeaderAppendError::Log(e)) => {
            warn!(partition, error = %e, "cannot append to __transaction_state");
            PersistError::Unavailable
        }
        AppendFailure::NotCommitted(_) => PersistError::Unavailable,
    })?;
    Ok(())
}

/// Writes the markers of one decided transaction, retrying until each partition has its
/// marker or this coordinator gives the transaction up.
async fn send_markers(broker: Arc<Broker>, markers: TxnMarkers) {
    let txns = &broker.transactions;
    let state_partition = txns.partition_for(&markers.transactional_id);
    let mut remaining = markers.partitions.clone();
    let mut backoff = MARKER_BACKOFF;
    loop {
        if txns.parked.lock().closing {
            // Shutting down: the next coordinator of the partition sends them again.
            return;
        }
        if !txns.owns(state_partition, markers.coordinator_epoch) {
            debug!(transactional_id = %markers.transactional_id, "no longer the coordinator; markers left to the new one");
            return;
        }
        let (written, fenced) = write_round(&broker, &markers, &remaining).await;
        if !written.is_empty() {
            remaining.retain(|tp| !written.contains(tp));
            let outputs = {
                let mut coordinator = txns.coordinator.lock();
                coordinator.markers_written(
                    now_ms(),
                    &markers.transactional_id,
                    markers.token,
                    &written,
                );
                coordinator.take_outputs()
            };
            dispatch(&broker, outputs);
        }
        if fenced {
            // A partition leader saw a newer coordinator epoch: this coordinator is stale, as
            // Kafka's marker channel concludes, and the newer one completes the transaction.
            warn!(transactional_id = %markers.transactional_id, "transaction markers fenced by a newer coordinator");
            return;
        }
        if remaining.is_empty() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MARKER_BACKOFF_MAX);
    }
}

/// One round: the markers of `partitions` to their current leaders. Returns the partitions
/// that now have their marker (or whose topic is gone, as Kafka counts them) and whether a
/// leader refused the coordinator epoch.
async fn write_round(
    broker: &Arc<Broker>,
    markers: &TxnMarkers,
    partitions: &[TopicPartition],
) -> (Vec<TopicPartition>, bool) {
    let image = broker.topics.image();
    let mut written = Vec::new();
    let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        match image
            .topic(&tp.topic)
            .and_then(|t| t.partition(tp.partition))
        {
            None => {
                // The topic (or partition) was deleted: nothing left to end.
                written.push(tp.clone());
            }
            Some(p) if p.leader == weir_metadata::NO_LEADER => {}
            Some(p) => by_leader.entry(p.leader).or_default().push(tp.clone()),
        }
    }
    let node_id = broker.config().node_id;
    let mut fenced = false;
    for (leader, tps) in by_leader {
        let request = marker_request(markers, &tps);
        let response = if leader == node_id {
            Some(crate::handler::write_txn_markers::write(broker, request).await)
        } else {
            match client_address(&image, leader) {
                Some(address) => send_remote(broker, &address, &request).await,
                None => None,
            }
        };
        let Some(response) = response else {
            continue;
        };
        for marker in response.markers {
            for topic in marker.topics {
                for p in topic.partitions {
                    let code = ErrorCode(p.error_code);
                    let tp = TopicPartition::new(topic.name.clone(), p.partition_index);
                    if code == ErrorCode::NONE {
                        written.push(tp);
                    } else if code == ErrorCode::TRANSACTION_COORDINATOR_FENCED
                        || code == ErrorCode::INVALID_PRODUCER_EPOCH
                    {
                        fenced = true;
                    } else {
                        debug!(topic = %tp.topic, partition = tp.partition, error = code.name(), "transaction marker not written; retrying");
                    }
                }
            }
        }
    }
    (written, fenced)
}

/// Sends a WriteTxnMarkers request to another broker's client listener; `None` when the
/// connection or the exchange failed (retried next round).
async fn send_remote(
    broker: &Broker,
    address: &str,
    request: &WriteTxnMarkersRequest,
) -> Option<weir_protocol::messages::WriteTxnMarkersResponse> {
    let sent = broker.transactions.send_to(
        broker.config().node_id,
        address,
        request,
        WRITE_TXN_MARKERS_VERSION,
    );
    match sent.await {
        Ok(response) => Some(response),
        Err(e) => {
            debug!(address, error = %e, "cannot send transaction markers; retrying");
            None
        }
    }
}

/// Where another broker serves clients (its PLAINTEXT listener), unless it is fenced.
fn client_address(image: &weir_metadata::MetadataImage, broker_id: i32) -> Option<String> {
    image
        .broker(broker_id)
        .filter(|b| !b.fenced)
        .and_then(|b| b.endpoint("PLAINTEXT"))
        .map(|e| format!("{}:{}", e.host, e.port))
}

fn marker_request(markers: &TxnMarkers, partitions: &[TopicPartition]) -> WriteTxnMarkersRequest {
    let topics = crate::handler::group_by_topic(
        partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)),
    );
    WriteTxnMarkersRequest {
        markers: vec![WritableTxnMarker {
            producer_id: markers.producer_id,
            producer_epoch: markers.producer_epoch,
            transaction_result: markers.result.is_commit(),
            coordinator_epoch: markers.coordinator_epoch,
            transaction_version: i8::try_from(markers.transaction_version.0).unwrap_or(0),
            topics: topics
                .into_iter()
                .map(|(name, partition_indexes)| WritableTxnMarkerTopic {
                    name,
                    partition_indexes,
                    ..WritableTxnMarkerTopic::default()
                })
                .collect(),
            ..WritableTxnMarker::default()
        }],
        ..WriteTxnMarkersRequest::default()
    }
}

/// Drives the coordinator's timers until `stopped`, then releases parked requests.
pub(crate) async fn run_timer(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let txns = &broker.transactions;
    let mut just_ticked = false;
    loop {
        if *stopped.borrow() {
            break;
        }
        let deadline = txns.coordinator.lock().next_deadline();
        let wait = deadline.map(|d| {
            let ms = u64::try_from(d.saturating_sub(now_ms())).unwrap_or(0);
            // A deadline the last tick left in the past must not spin the loop.
            Duration::from_millis(if just_ticked { ms.max(1) } else { ms })
        });
        just_ticked = false;
        tokio::select! {
            () = sleep_for(wait) => {
                let outputs = {
                    let mut coordinator = txns.coordinator.lock();
                    coordinator.tick(now_ms());
                    coordinator.take_outputs()
                };
                dispatch(&broker, outputs);
                just_ticked = true;
            }
            () = txns.wake.notified() => {}
            _ = stopped.changed() => break,
        }
    }
    txns.close();
    // Leadership has moved away by now (controlled shutdown), so appends end with
    // NOT_LEADER and marker writers at their next round.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
    loop {
        let done = txns.tasks_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if txns.tasks.load(Ordering::SeqCst) == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            warn!(
                tasks = txns.tasks.load(Ordering::SeqCst),
                "transaction coordinator tasks still running at shutdown"
            );
            break;
        }
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// Takes the partition counts of existing `__transaction_state` and `__consumer_offsets`
/// (transactional ids and groups are placed by them). Called before any partition loads.
pub(crate) fn open(broker: &Arc<Broker>) {
    let txns = &broker.transactions;
    let state = broker
        .topics
        .get(STATE_TOPIC)
        .map_or(txns.settings.num_partitions, |t| t.partitions);
    if state != txns.settings.num_partitions {
        // Records already sit in the existing partitions; placement must follow them.
        warn!(
            existing = state,
            configured = txns.settings.num_partitions,
            "transaction.state.log.num.partitions differs from the existing topic; using the topic's"
        );
    }
    set_partitions(broker, state);
}

/// Rebuilds the (empty) coordinator for `state_partitions` of `__transaction_state` and the
/// current `__consumer_offsets` count. Only before anything is loaded.
fn set_partitions(broker: &Broker, state_partitions: i32) {
    let txns = &broker.transactions;
    let offsets = broker
        .topics
        .get(crate::groups::OFFSETS_TOPIC)
        .map_or(broker.config().offsets_topic_num_partitions, |t| {
            t.partitions
        });
    let mut coordinator = txns.coordinator.lock();
    let config = coordinator.config();
    if config.state_log_partitions == state_partitions && config.offsets_topic_partitions == offsets
    {
        return;
    }
    if coordinator.loaded_partitions().next().is_some() {
        warn!("partition counts changed under a loaded transaction coordinator; keeping the old");
        return;
    }
    *coordinator = Coordinator::new(txns.settings.coordinator_config(state_partitions, offsets));
}

/// Creates `__transaction_state` through the controller if it does not exist yet, and waits
/// until this broker has published it.
pub(crate) async fn ensure_state_topic(broker: &Arc<Broker>) -> Result<(), crate::BrokerError> {
    if broker.topics.image().topic(STATE_TOPIC).is_some() {
        return Ok(());
    }
    // AddOffsetsToTxn places groups by `__consumer_offsets`: have it before the coordinator's
    // partition counts are fixed.
    crate::groups::ensure_offsets_topic(broker).await?;
    let settings = &broker.transactions.settings;
    // Kafka sets the topic's `min.insync.replicas` to `transaction.state.log.min.isr`; clamped
    // to the replication factor here, so that a cluster smaller than the defaults assume can
    // still run transactions.
    let min_isr = settings.min_isr;
    crate::internal_topics::create_topic(
        broker,
        STATE_TOPIC,
        settings.num_partitions,
        settings.replication_factor,
        |factor| {
            BTreeMap::from([(
                "min.insync.replicas".to_string(),
                min_isr.min(factor).max(1).to_string(),
            )])
        },
    )
    .await?;
    Ok(())
}

/// Whether this broker coordinates `transactional_id` (it leads the id's `__transaction_state`
/// partition, loaded): NOT_COORDINATOR otherwise, COORDINATOR_NOT_AVAILABLE when the partition
/// has no leader, COORDINATOR_LOAD_IN_PROGRESS while it loads.
pub(crate) async fn check_coordinator(
    broker: &Arc<Broker>,
    transactional_id: &str,
) -> Result<(), ErrorCode> {
    if broker.topics.image().topic(STATE_TOPIC).is_none() {
        ensure_state_topic(broker)
            .await
            .map_err(|_| ErrorCode::COORDINATOR_NOT_AVAILABLE)?;
    }
    let partition = broker.transactions.partition_for(transactional_id);
    crate::internal_topics::check_coordinator(
        broker,
        STATE_TOPIC,
        partition,
        &broker.transactions.owned,
    )
    .await
}

/// What a partition leader (or the group coordinator, for offsets) asks the transaction
/// coordinator before a producer's first transactional write to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnCheck {
    /// KIP-890 part 1: the partition must already be in the ongoing transaction (the producer
    /// added it with AddPartitionsToTxn or AddOffsetsToTxn).
    Verify,
    /// KIP-890 part 2, transaction version 2 (Produce v12+, TxnOffsetCommit v5 when the
    /// broker finalizes that level): the producer adds nothing itself, so the partition is
    /// added to its transaction, which this starts if none is open.
    ImplicitAdd,
}

impl TxnCheck {
    /// The check for a request of `version` when version 2 starts at `v2_from`.
    pub(crate) fn for_version(broker: &Broker, version: i16, v2_from: i16) -> Self {
        if uses_transaction_version_2(broker, version, v2_from) {
            Self::ImplicitAdd
        } else {
            Self::Verify
        }
    }

    /// The transaction version the coordinator is asked under.
    fn transaction_version(self) -> weir_transaction::TransactionVersion {
        match self {
            Self::Verify => weir_transaction::TransactionVersion::V0,
            Self::ImplicitAdd => weir_transaction::TransactionVersion::V2,
        }
    }
}

/// Whether a request of `version` speaks transaction version 2 (KIP-890 part 2): the API's
/// version 2 form starts at `v2_from` and the broker finalizes that level.
pub(crate) fn uses_transaction_version_2(broker: &Broker, version: i16, v2_from: i16) -> bool {
    version >= v2_from && broker.config().transaction_version >= 2
}

/// KIP-890, for a partition leader about to append `producer`'s first transactional batch on
/// `partition`: asks the coordinator of `transactional_id` (this broker's, or another broker's
/// with AddPartitionsToTxn v4+) to verify that the partition is in the producer's ongoing
/// transaction, or to add it (`check`). The answer is the Produce error: NONE,
/// INVALID_TXN_STATE when it is not in the transaction, INVALID_PRODUCER_EPOCH for a fenced
/// producer, NOT_ENOUGH_REPLICAS (retriable) when the coordinator cannot be asked or is busy,
/// as Kafka's `AddPartitionsToTxnManager` maps them.
pub(crate) async fn verify(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    partition: TopicPartition,
    check: TxnCheck,
) -> ErrorCode {
    match verify_in_txn(broker, transactional_id, producer, partition, check).await {
        Ok(()) => ErrorCode::NONE,
        Err(code) => produce_error(code),
    }
}

/// Whether `partition` is (or, with [`TxnCheck::ImplicitAdd`], is now) in the ongoing
/// transaction of `transactional_id` for `producer`, with the coordinator's error when not
/// (or COORDINATOR_NOT_AVAILABLE / COORDINATOR_LOAD_IN_PROGRESS when it cannot be asked).
/// TxnOffsetCommit asks it for the group's `__consumer_offsets` partition before writing.
pub(crate) async fn verify_in_txn(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    partition: TopicPartition,
    check: TxnCheck,
) -> Result<(), ErrorCode> {
    let state_partition = broker.transactions.partition_for(transactional_id);
    let image = broker.topics.image();
    let leader = image
        .topic(STATE_TOPIC)
        .and_then(|t| t.partition(state_partition))
        .map(|p| p.leader);
    let node_id = broker.config().node_id;
    let result: Result<(), i16> = match leader {
        Some(leader) if leader == node_id => {
            if !broker.transactions.owned.loaded(
                state_partition,
                image
                    .topic(STATE_TOPIC)
                    .and_then(|t| t.partition(state_partition))
                    .map_or(-1, |p| p.leader_epoch),
            ) {
                Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.code())
            } else {
                let request = weir_transaction::AddPartitionsRequest {
                    transactional_id: transactional_id.to_string(),
                    producer,
                    partitions: vec![partition.clone()],
                    transaction_version: check.transaction_version(),
                };
                match check {
                    TxnCheck::ImplicitAdd => broker
                        .transactions
                        .request(broker, false, |c, now, id, _| {
                            c.add_partitions_to_txn(now, id, &request);
                        })
                        .await
                        .map(|_| ())
                        .map_err(|f| f.code(true).code()),
                    TxnCheck::Verify => match broker
                        .transactions
                        .read(|c| c.verify_partitions_in_txn(&request))
                    {
                        Ok(each) => each
                            .into_iter()
                            .next()
                            .map_or(Ok(()), |(_, r)| r.map_err(|e| e.code())),
                        Err(e) => Err(e.code()),
                    },
                }
            }
        }
        Some(leader) if leader != weir_metadata::NO_LEADER => {
            match client_address(&image, leader) {
                Some(address) => {
                    verify_remote(
                        broker,
                        &address,
                        transactional_id,
                        producer,
                        &partition,
                        check,
                    )
                    .await
                }
                None => Err(ErrorCode::COORDINATOR_NOT_AVAILABLE.code()),
            }
        }
        _ => Err(ErrorCode::COORDINATOR_NOT_AVAILABLE.code()),
    };
    result.map_err(ErrorCode)
}

/// Kafka's mapping of a verification failure onto a Produce error.
fn produce_error(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::NONE => ErrorCode::NONE,
        ErrorCode::PRODUCER_FENCED | ErrorCode::INVALID_PRODUCER_EPOCH => {
            ErrorCode::INVALID_PRODUCER_EPOCH
        }
        ErrorCode::TRANSACTION_ABORTABLE | ErrorCode::INVALID_TXN_STATE => {
            ErrorCode::INVALID_TXN_STATE
        }
        ErrorCode::INVALID_PRODUCER_ID_MAPPING => ErrorCode::INVALID_PRODUCER_ID_MAPPING,
        // The coordinator is moving, loading or busy: the producer retries.
        _ => ErrorCode::NOT_ENOUGH_REPLICAS,
    }
}

/// AddPartitionsToTxn to the coordinator on another broker: verify-only (v4), or an implicit
/// add (v5, `verify_only` false).
async fn verify_remote(
    broker: &Broker,
    address: &str,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    partition: &TopicPartition,
    check: TxnCheck,
) -> Result<(), i16> {
    use weir_protocol::messages::AddPartitionsToTxnRequest;
    use weir_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    let request = AddPartitionsToTxnRequest {
        transactions: vec![AddPartitionsToTxnTransaction {
            transactional_id: transactional_id.to_string(),
            producer_id: producer.producer_id,
            producer_epoch: producer.epoch,
            verify_only: check == TxnCheck::Verify,
            topics: vec![AddPartitionsToTxnTopic {
                name: partition.topic.clone(),
                partitions: vec![partition.partition],
                ..AddPartitionsToTxnTopic::default()
            }],
            ..AddPartitionsToTxnTransaction::default()
        }],
        ..AddPartitionsToTxnRequest::default()
    };
    let sent = broker.transactions.send_to(
        broker.config().node_id,
        address,
        &request,
        if check == TxnCheck::Verify { 4 } else { 5 },
    );
    match sent.await {
        Ok(response) if response.error_code != 0 => Err(response.error_code),
        Ok(response) => {
            let code = response
                .results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results)
                .flat_map(|t| &t.results_by_partition)
                .map(|p| p.partition_error_code)
                .find(|c| *c != 0)
                .unwrap_or(0);
            if code == 0 { Ok(()) } else { Err(code) }
        }
        Err(e) => {
            debug!(address, error = %e, "cannot verify a transactional produce");
            Err(ErrorCode::COORDINATOR_NOT_AVAILABLE.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_properties_map_onto_the_coordinator_config() {
        let props = [
            ("transaction.state.log.num.partitions", "7"),
            ("transaction.max.timeout.ms", "1000"),
            ("transactional.id.expiration.ms", "5000"),
            ("transaction.state.log.replication.factor", "2"),
        ];
        let config = BrokerConfig::from_properties(
            props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap();
        let settings = Settings::from(&config);
        assert_eq!(settings.replication_factor, 2);
        assert_eq!(settings.min_isr, 2);
        let c = settings.coordinator_config(settings.num_partitions, 3);
        assert_eq!(c.state_log_partitions, 7);
        assert_eq!(c.offsets_topic_partitions, 3);
        assert_eq!(c.max_transaction_timeout_ms, 1000);
        assert_eq!(c.transactional_id_expiration_ms, 5000);
    }
}
