//! [`KafkaStreams`]: runs a topology against a Kafka-compatible cluster, at least once.
//!
//! One consumer in the group `application.id` reads every source topic, repartition topics
//! included; one producer writes the outputs. The work is split into tasks, one per input
//! partition number: task `p` is a topology of its own (built by the application's factory)
//! that processes partition `p` of every source topic and logs its stores to partition `p` of
//! their changelogs. This is coarser than Kafka's tasks per (sub-topology, partition): every
//! task holds the whole topology. Instances of one application share the tasks through the
//! group with the streams assignor (`crate::assignor`), which hands out partition N of every
//! subscribed topic together and keeps a task with the instance that ran it, else one that
//! has its local state, while balancing the counts; a task is created (and its stores
//! restored from their changelogs) when its partitions are assigned, and dropped when they
//! are revoked. With
//! `state_dir`, a task also keeps its stores' changelog records and checkpoints in a redb
//! database of its own (`crate::state`), written at each commit and read back first when
//! the task is created, so that only the changelog past the checkpoint is read.
//!
//! Records are processed in batches: each record goes through its task as it arrives and its
//! outputs (changelog records included) are enqueued at once (so they flow with the
//! producer's linger, not the commit interval); a batch ends after `max_uncommitted_records`
//! records (processed `max.poll.records` at a time), `commit.interval.ms` after its first
//! record, or at shutdown. Then every output of the
//! batch must be acknowledged before the batch's input offsets are committed: a crash at any
//! point loses nothing, and reprocesses at most the records since the last commit. Each
//! offset carries its partition's time in the commit metadata (`crate::partition_time`), which
//! a task created later reads back to resume its stream time.
//!
//! Global tables' topics are not the group's: a consumer of the instance's own, outside the
//! group, reads every partition of them (`GlobalState`, Kafka's global stream thread and
//! global state manager) into one topology whose global stores every task looks up. It reads
//! them to their end offsets in `KafkaStreams::new`, before any task exists, then between
//! the tasks' records in the run loop; nothing is committed for them. With `state_dir`, they
//! keep a local copy as a task does, in the `global` directory beside the tasks', written at
//! each commit and loaded first at start, so that each global partition is read only past
//! its checkpoint.
//!
//! Standby replicas (`num_standby_replicas`, Kafka's standby tasks): the assignor gives an
//! instance, beside its tasks, standby task ids in its assignment's user data. For each the
//! runtime builds the task's topology (`StandbyTask`) and feeds its stores the records of the
//! task's changelog partitions, read by one consumer outside the group in the run loop, as
//! the global tables' records are; with `state_dir`, into the task's local state too, at
//! each commit. A standby is created (from local state first, if any) and dropped as the
//! assignment changes; when its task becomes active here, `create_task` promotes it: the
//! task keeps its stores, and the restore reads only the changelogs past the standby's
//! positions.
//!
//! Warm-up replicas (KIP-441) are standbys too, listed apart in the assignment: the runtime
//! runs them as it runs standbys. It tells the assignor each standby's lag (the standby
//! consumer's fetch lag over the task's changelogs) every idle sync tick, after each commit
//! and before a probing rebalance, for the next subscription; while the last assignment has
//! warm-ups it rejoins the group `probing_rebalance_interval` after it
//! (`Consumer::enforce_rebalance`), so that the caught-up ones take their tasks.
//!
//! This commit path (process, produce, flush, commit) is the one an exactly-once version
//! keeps, with the produce and the offset commit inside one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Instant;
use weir_client::admin::{Admin, NewTopic, OffsetSpec};
use weir_client::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetAndMetadata, OffsetReset,
    PartitionAssignor, RebalanceListener, TopicPartition,
};
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_client::{Client, ClientConfig};

use crate::Error;
use crate::assignor::{AssignmentConfigs, StreamsAssignor};
use crate::partition_group::PartitionGroups;
use crate::partition_time;
use crate::partitioner::PartitionCounts;
use crate::state::{self, GLOBAL_DIR, LocalCopy, LocalRecord, TaskState, blocking};
use crate::store::{
    ReadOnlyKeyValueStore, changelog_value_to_kafka, split_timestamped_value, timestamped_value,
};
use crate::topology::{
    DeserializationExceptionHandler, InternalTopicKind, RawRecord, Task, TaskMetrics, Topology,
};
use crate::window_store::{ReadOnlySessionStore, ReadOnlyWindowStore, WindowedStore};

/// Settings of a streams application, named after Kafka Streams' properties.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamsConfig {
    /// `application.id`: the consumer group, and the name of the application.
    pub application_id: String,
    /// The connection settings (`bootstrap.servers` and the rest).
    pub client: ClientConfig,
    /// `commit.interval.ms`: the longest a batch runs before its outputs are flushed and its
    /// input offsets committed (default 30 s, as Kafka Streams at least once).
    pub commit_interval: Duration,
    /// `max.poll.records`: the most records processed at a time, in timestamp order across
    /// partitions, from what one fetch brought (default 1000, as Kafka Streams).
    pub max_poll_records: usize,
    /// The most records one batch processes before its outputs are flushed and its input
    /// offsets committed, whatever `commit_interval` (default 10,000). weir-streams' own
    /// setting: Kafka Streams commits by interval alone, while a batch here keeps a delivery
    /// handle per output and its changelog records until its commit, so this bounds that
    /// memory, and what a crash processes again. A batch per poll (this no larger than
    /// `max_poll_records`) commits more often, at a cost in throughput.
    pub max_uncommitted_records: usize,
    /// `auto.offset.reset` for partitions the group has no offset for (default earliest, as
    /// Kafka Streams).
    pub auto_offset_reset: OffsetReset,
    /// `session.timeout.ms` of the group member: how long the group waits for an instance
    /// that stopped heartbeating (crashed) before its partitions move (default 45 s).
    pub session_timeout: Duration,
    /// `default.deserialization.exception.handler` (and KIP-1034's dead-letter queue): what
    /// to do with an input record that does not deserialize (default: fail).
    pub deserialization_exception_handler: DeserializationExceptionHandler,
    /// How long restoring one task's stores from their changelogs may wait for the next
    /// record before it fails (default 60 s).
    pub restore_timeout: Duration,
    /// `max.task.idle.ms`: whether, and how long, a task with records to process waits for
    /// data on one of its input partitions that has nothing buffered, so that it processes
    /// its partitions in timestamp order (a join sees the late side first, and the result of
    /// inputs written before the start does not depend on how the fetches were cut). 0 (the
    /// default, as Kafka's, KIP-695) waits, with no time bound, while the consumer knows the
    /// broker holds more records of that partition (its fetch lag,
    /// [`Consumer::current_lag`](weir_client::consumer::Consumer::current_lag), is above 0)
    /// or has had no fetch response for it yet, and stops waiting once the partition is
    /// known to be caught up. Above 0: the same, then that many milliseconds more after it is
    /// caught up, for records produced meanwhile. -1: never waits (each fetch's records are
    /// still processed in timestamp order).
    pub max_task_idle_ms: i64,
    /// `state.dir`: where each task keeps a local copy of its state stores
    /// (`<state_dir>/<application.id>/<task>/state.redb`) with the changelog offsets it holds,
    /// so that a restarted task reads only the changelog past them; the global tables keep
    /// theirs in `<state_dir>/<application.id>/global/state.redb`, so that a restart reads
    /// only the global topics past it. Default `None`: state only in memory, every task
    /// restores its whole changelog and every start reads the global topics from their
    /// beginning (Kafka's default is a directory under `/tmp`; a library should not write
    /// files nobody asked for, and each instance needs a directory of its own, which only
    /// the application knows).
    pub state_dir: Option<PathBuf>,
    /// `state.cleanup.delay.ms`: how long a task directory under `state_dir` of a task this
    /// instance does not run stays unchanged before the state cleaner deletes it (default
    /// 10 minutes). The cleaner runs at a commit once the instance runs tasks, then every
    /// delay.
    pub state_cleanup_delay: Duration,
    /// `num.standby.replicas`: how many other instances keep a standby replica of each task,
    /// its stores fed from their changelogs, so that when the task moves to one of them it
    /// reads only the changelog records the standby had not applied yet (default 0, as
    /// Kafka). The group's leader places the standbys with its own value, so every instance
    /// of an application should use the same one. A group of `n` instances keeps at most
    /// `n - 1` per task.
    pub num_standby_replicas: u32,
    /// `acceptable.recovery.lag`: how many changelog records an instance's state of a task
    /// may be behind for the instance to count as caught up on it, and take the task over
    /// without a warm-up first (default 10000, as Kafka; at least 0). See
    /// [`StreamsConfig::max_warmup_replicas`].
    pub acceptable_recovery_lag: i64,
    /// `max.warmup.replicas` (KIP-441): when balance would move a task to an instance that
    /// is not caught up on its state, the task stays on a caught-up one and the other gets a
    /// *warm-up replica*, a standby that catches up, until it is within
    /// [`StreamsConfig::acceptable_recovery_lag`]; this bounds how many tasks one assignment
    /// holds back so (default 2, as Kafka; at least 1). Beyond it, tasks move at once, as
    /// without warm-ups. Only the group leader's value counts.
    pub max_warmup_replicas: u32,
    /// `probing.rebalance.interval.ms`: while an assignment has warm-ups, how long after it
    /// the instances rejoin the group (a *probing rebalance*) so that the tasks whose warm-ups
    /// caught up move (default 10 minutes, as Kafka). Kafka refuses less than a minute; this
    /// takes any non-zero interval, so that tests and small deployments can probe sooner.
    pub probing_rebalance_interval: Duration,
    /// With a `state_dir`: the logged stores of each task (tables, the DSL's counts,
    /// reductions and aggregations, windowed or not, and the processor API's logged
    /// key-value stores) are *persistent*: served from the task's local state, as Kafka's
    /// RocksDB stores are, so that they can hold more than memory. Each keeps in memory the
    /// entries updated since the last commit and at most this many others, the most recently
    /// used (default 10,000 per store and task). `None` keeps every entry in memory, the
    /// local state then being loaded whole when a task starts. The stream-stream join and
    /// suppression buffers always stay in memory (their windows bound them); so do stores
    /// without a changelog. Without a `state_dir` nothing is persistent.
    pub store_cache_max_entries: Option<usize>,
    /// `repartition.purge.interval.ms`: how often, at a commit, the records of the internal
    /// topics the application reads back (repartition topics, a foreign-key join's two
    /// topics) before the committed offsets are deleted (`DeleteRecords`), as Kafka Streams
    /// purges them (default 30 s). Those topics are created keeping records for ever
    /// (`retention.ms=-1`), so a stopped application loses none of them.
    pub repartition_purge_interval: Duration,
    /// `processing.guarantee` (default at least once). See [`ProcessingGuarantee`].
    pub processing_guarantee: ProcessingGuarantee,
}

/// `processing.guarantee`: what a crash or a rebalance may do to the outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessingGuarantee {
    /// `at_least_once`: a batch's outputs are acknowledged before its input offsets are
    /// committed, so a crash loses nothing and processes again at most the records since
    /// the last commit; their outputs and changelog records are written twice.
    #[default]
    AtLeastOnce,
    /// `exactly_once_v2` (KIP-447): each batch's outputs, changelog records and input
    /// offsets are written in one transaction of the instance's transactional producer, so
    /// a `read_committed` consumer sees every input's effect once. The instance reads its
    /// inputs, changelogs and global topics `read_committed`. A batch that a rebalance or a
    /// failed commit interrupts is aborted, and the tasks are rebuilt from their committed
    /// state. Kafka Streams commits every 100 ms under it: set `commit_interval` to match,
    /// since the latency of an output is the time to its transaction's commit.
    ExactlyOnceV2,
}

impl StreamsConfig {
    /// The defaults for the application `application_id` on `bootstrap_servers`.
    pub fn new(application_id: &str, bootstrap_servers: &str) -> Self {
        Self {
            application_id: application_id.to_string(),
            client: ClientConfig::new(bootstrap_servers),
            commit_interval: Duration::from_secs(30),
            max_poll_records: 1000,
            max_uncommitted_records: 10_000,
            auto_offset_reset: OffsetReset::Earliest,
            session_timeout: Duration::from_secs(45),
            deserialization_exception_handler: DeserializationExceptionHandler::LogAndFail,
            restore_timeout: Duration::from_secs(60),
            max_task_idle_ms: 0,
            state_dir: None,
            state_cleanup_delay: Duration::from_secs(600),
            num_standby_replicas: 0,
            acceptable_recovery_lag: 10_000,
            max_warmup_replicas: 2,
            probing_rebalance_interval: Duration::from_secs(600),
            store_cache_max_entries: Some(10_000),
            repartition_purge_interval: Duration::from_secs(30),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
        }
    }

    /// Refuses the settings Kafka Streams refuses, with [`Error::Config`] naming the key:
    /// `acceptable.recovery.lag` below 0, `max.warmup.replicas` 0, or
    /// `probing.rebalance.interval.ms` 0. [`KafkaStreams::new`] calls it.
    pub fn validate(&self) -> Result<(), Error> {
        if self.acceptable_recovery_lag < 0 {
            return Err(Error::Config {
                key: "acceptable.recovery.lag",
                reason: format!("must be at least 0, got {}", self.acceptable_recovery_lag),
            });
        }
        if self.max_warmup_replicas < 1 {
            return Err(Error::Config {
                key: "max.warmup.replicas",
                reason: "must be at least 1, got 0".to_string(),
            });
        }
        if self.probing_rebalance_interval.is_zero() {
            return Err(Error::Config {
                key: "probing.rebalance.interval.ms",
                reason: "must be above 0".to_string(),
            });
        }
        Ok(())
    }
}

/// How long a restore waits for a changelog record before it checks whether it reached the
/// end.
const RESTORE_POLL: Duration = Duration::from_millis(500);

/// How often a consumer that receives nothing checks for assignment changes.
const TASK_SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// Restore progress is logged every this many records of a store.
const RESTORE_PROGRESS_EVERY: u64 = 10_000;

/// Builds the topology of one task; called once per task, and once at start to learn the
/// topics and stores. It must build the same topology every time (generated names follow the
/// order operators are added in).
pub type TopologyFactory = Arc<dyn Fn() -> Result<Topology, Error> + Send + Sync>;

/// A topology running against a cluster (Kafka's `KafkaStreams`), as one task per input
/// partition number (see the crate docs, *Tasks*). Several instances with one
/// `application.id` share the partitions; when one leaves or crashes, its tasks move to the
/// others, which restore their stores from the changelog topics first.
pub struct KafkaStreams {
    factory: TopologyFactory,
    /// Exactly once: the producer is transactional, and `in_transaction` says whether the
    /// batch under way began its transaction.
    exactly_once: bool,
    in_transaction: bool,
    /// Exactly once: whether the batch under way processed a record (its effects are in
    /// the tasks' memory and in the open transaction, or would be committed with it).
    batch_dirty: bool,
    /// Exactly once: the batch under way was aborted (a rebalance or a failed commit); its
    /// deliveries and offsets are dropped by the run loop.
    batch_aborted: bool,
    /// The partition counts of the topics written with a partitioner, for every task.
    partition_counts: Arc<PartitionCounts>,
    tasks: BTreeMap<i32, StreamTask>,
    client: Client,
    admin: Admin,
    consumer: Consumer,
    /// The group's assignor, told which task directories this instance holds.
    assignor: Arc<StreamsAssignor>,
    producer: Producer,
    config: StreamsConfig,
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
    /// Whether the tasks were created for the first assignment.
    synced: bool,
    /// `<application.id>-`, the prefix of internal topics.
    prefix: String,
    repartition_topics: BTreeSet<String>,
    /// Repartition and changelog topics, by their names in the topology, each with its name
    /// in the cluster (the application's prefix added once, not per record) and the `v`
    /// header its records carry (Kafka's format version), if any.
    internal_topics: BTreeMap<String, InternalTopicName>,
    global_topics: BTreeSet<String>,
    /// The instance's global tables, read outside the group; `None` without any.
    global: Option<GlobalState>,
    /// The counters of tasks dropped so far.
    retired: TaskMetrics,
    /// With a state dir: the store of each changelog topic (by its name in the topology), to
    /// keep the changelog records the tasks write in their local state.
    changelogs: Option<HashMap<String, String>>,
    /// The changelog records of the batch under way, for the tasks' local state.
    logged: Vec<Logged>,
    /// With a state dir: per task, the windows and sessions its stores' retention dropped in
    /// the batch under way, deleted from its local state with the batch's records.
    expired: Vec<(i32, LocalRecord)>,
    /// With `max_task_idle_ms` 0 or above: the records fetched and not processed yet.
    partition_groups: Option<PartitionGroups>,
    /// When the state cleaner runs next (`None`: at the first commit with tasks).
    next_state_cleanup: Option<Instant>,
    /// The committed offsets of the repartition partitions not purged yet, and when to.
    purgeable: BTreeMap<TopicPartition, i64>,
    next_purge: Option<Instant>,
    /// The standby tasks the last assignment gave this instance.
    standbys: BTreeMap<i32, StandbyTask>,
    /// The consumer, outside the group, that reads the standbys' changelog partitions;
    /// `None` without standbys.
    standby_consumer: Option<Consumer>,
    /// The standbys whose changelog partitions `standby_consumer` is assigned.
    standby_reading: BTreeSet<i32>,
    /// When the last assignment, which has warm-ups, asks this instance to rejoin the group.
    next_probing_rebalance: Option<Instant>,
    /// The lock of `<state_dir>/<application.id>`, held while the instance lives.
    _state_lock: Option<File>,
}

/// A standby replica of a task (Kafka's `StandbyTask`): the task's topology, whose stores
/// are fed the records of the task's changelog partitions as the active task writes them,
/// so that a takeover here starts from them. It processes no input.
struct StandbyTask {
    task: Task,
    /// Per changelog topic (full name): the store it logs.
    stores: HashMap<String, String>,
    /// Per changelog topic: the offset after the last record applied, where a promotion's
    /// restore starts reading.
    positions: HashMap<String, i64>,
    /// With a state dir: the task's local state, and the records and checkpoints applied
    /// since its last write, written at each commit as an active task's are.
    local: LocalWriter,
}

/// An internal topic as the producer writes it.
struct InternalTopicName {
    /// Its name in the cluster (with the application id).
    prefixed: String,
    /// The `v` header of its records, if any.
    version: Option<u8>,
    /// The changelog of a timestamped store: its values lose their timestamp when produced
    /// ([`changelog_value_to_kafka`]).
    timestamped: bool,
}

/// A changelog record a task wrote in the batch under way: written to the task's local state
/// once acknowledged, at the offset its delivery gives.
struct Logged {
    /// Its index among the batch's deliveries.
    delivery: usize,
    task: i32,
    store: String,
    key: Bytes,
    value: Option<Bytes>,
}

/// A task and, per input partition, the offset after the last record it processed: a
/// rebalance that keeps the task may hand it records it already processed again (their
/// offsets were not committed yet), which it skips.
struct StreamTask {
    task: Task,
    next_offsets: HashMap<(String, i32), i64>,
    /// Its local state, with a state dir. Shared with the blocking pool while it writes.
    state: Option<Arc<TaskState>>,
}

/// What the consumer's rebalance callbacks reported, for the runtime to act on after
/// `recv` returns (callbacks cannot await restores).
#[derive(Debug)]
enum RebalanceEvent {
    Assigned,
    Revoked(Vec<TopicPartition>),
    Lost(Vec<TopicPartition>),
}

struct Listener(Arc<Mutex<Vec<RebalanceEvent>>>);

impl RebalanceListener for Listener {
    fn revoked(&mut self, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .push(RebalanceEvent::Revoked(partitions.to_vec()));
    }

    fn assigned(&mut self, _partitions: &[TopicPartition]) {
        self.0.lock().push(RebalanceEvent::Assigned);
    }

    fn lost(&mut self, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .push(RebalanceEvent::Lost(partitions.to_vec()));
    }
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams")
            .field("application_id", &self.config.application_id)
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .field("standby_tasks", &self.standbys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KafkaStreams {
    /// Connects, checks the source topics (they must exist, and co-partitioned topics must
    /// have equal partition counts), creates the missing internal topics (repartition topics
    /// and compacted changelogs, with as many partitions as the largest source topic, the
    /// number of tasks, or as the user topics they must be co-partitioned with), and joins the
    /// group `application.id`. `factory` builds each task's topology.
    pub async fn new<F>(factory: F, config: StreamsConfig) -> Result<Self, Error>
    where
        F: Fn() -> Result<Topology, Error> + Send + Sync + 'static,
    {
        config.validate()?;
        let factory: TopologyFactory = Arc::new(factory);
        let template = factory()?;
        // One instance per state directory, refused before anything else is done, as Kafka
        // Streams refuses a second one ("multiple instances of Kafka Streams are running in
        // the same state directory"): each task directory is locked as well, but an instance
        // would only find out task by task.
        let state_lock = match &config.state_dir {
            Some(dir) => {
                let dir = dir.join(&config.application_id);
                let locked = dir.clone();
                match blocking(&dir.clone(), move || state::try_lock(&dir)).await? {
                    Some(lock) => Some(lock),
                    None => return Err(Error::StateLocked { path: locked }),
                }
            }
            None => None,
        };
        let prefix = format!("{}-", config.application_id);
        let client = Client::connect(config.client.clone()).await?;
        let admin = Admin::from_client(client.clone());
        let repartition_topics: BTreeSet<String> = template
            .internal_topics()
            .into_iter()
            .filter(|topic| topic.kind == InternalTopicKind::Repartition)
            .map(|topic| topic.name)
            .collect();
        let user_topics: Vec<String> = template
            .source_topics()
            .into_iter()
            .filter(|topic| !repartition_topics.contains(topic))
            .collect();
        let counts = topic_partition_counts(&admin, &user_topics, "source").await?;
        // Global tables' topics go to every task: they do not make tasks.
        let tasks = counts
            .iter()
            .filter(|(topic, _)| !template.global_topics.contains(*topic))
            .map(|(_, count)| *count)
            .max()
            .unwrap_or(1);
        let internal_counts = internal_partition_counts(&template, &counts, tasks);
        let mut all_counts = counts.clone();
        all_counts.extend(internal_counts.clone());
        check_copartitioning(&template, &all_counts)?;
        let sinks: Vec<String> = template.partitioned_sink_topics.iter().cloned().collect();
        let sink_counts =
            topic_partition_counts(&admin, &sinks, "sink (written with a partitioner)").await?;
        all_counts.extend(sink_counts);
        create_internal_topics(&admin, &client, &prefix, &template, &internal_counts).await?;

        let assignor = Arc::new(StreamsAssignor::new(AssignmentConfigs {
            num_standby_replicas: config.num_standby_replicas,
            acceptable_recovery_lag: config.acceptable_recovery_lag,
            max_warmup_replicas: config.max_warmup_replicas,
            probing_rebalance_interval: config.probing_rebalance_interval,
            // Without changelogs a task has no state to catch up on anywhere.
            stateful: template
                .internal_topics()
                .iter()
                .any(|topic| topic.kind == InternalTopicKind::Changelog),
        }));
        let mut local = BTreeSet::new();
        if let Some(dir) = &config.state_dir {
            let app_dir = dir.join(&config.application_id);
            let scanning = app_dir.clone();
            local = blocking(&app_dir, move || state::local_tasks(&scanning)).await?;
            assignor.set_local_state(local.iter().copied());
        }
        let consumer_config = ConsumerConfig {
            client: config.client.clone(),
            group_id: Some(config.application_id.clone()),
            auto_offset_reset: config.auto_offset_reset,
            // Offsets are committed only once the outputs they led to are acknowledged.
            enable_auto_commit: false,
            session_timeout: config.session_timeout,
            // The Java client's ratio: a third of the session, at most its 3 s default.
            heartbeat_interval: (config.session_timeout / 3).min(Duration::from_secs(3)),
            // Every partition of a task lands on one instance, the one that ran it if it can.
            custom_assignor: Some(Arc::clone(&assignor) as Arc<dyn PartitionAssignor>),
            isolation_level: isolation_level(&config),
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::from_client(client.clone(), consumer_config).await?;
        let events = Arc::new(Mutex::new(Vec::new()));
        consumer.set_rebalance_listener(Listener(Arc::clone(&events)));
        // Global tables' topics are read by every instance in full, outside the group: they
        // take no part in the assignment and get no committed offsets.
        let mut topics: Vec<String> = user_topics
            .into_iter()
            .filter(|topic| !template.global_topics.contains(topic))
            .collect();
        topics.extend(repartition_topics.iter().map(|t| format!("{prefix}{t}")));
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let changelogs = config.state_dir.as_ref().map(|_| {
            template
                .internal_topics()
                .into_iter()
                .filter(|topic| topic.kind == InternalTopicKind::Changelog)
                .filter_map(|topic| {
                    let store = topic.name.strip_suffix("-changelog")?.to_string();
                    Some((topic.name, store))
                })
                .collect()
        });
        let exactly_once = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
        let mut producer_config = ProducerConfig::new(config.client.clone());
        if exactly_once {
            // Kafka's EOS v2 id, `<application.id>-<process id>-<thread>`: unique per start,
            // since the group generation (KIP-447), not the id, fences a zombie's commits.
            producer_config.transactional_id =
                Some(format!("{}-{}-1", config.application_id, process_id()));
            // Kafka Streams' default under exactly once: a crashed instance's open
            // transaction is aborted, and its tasks' changelogs readable, after 10 s.
            producer_config.transaction_timeout = Duration::from_secs(10);
        }
        let producer = Producer::from_client(client.clone(), producer_config).await?;
        if exactly_once {
            producer.init_transactions().await?;
        }
        let restorer = Restorer {
            client: &client,
            admin: &admin,
            config: &config,
            prefix: &prefix,
        };
        let changelog_counts: BTreeMap<String, i32> = template
            .restorers
            .keys()
            .map(|store| {
                let count = internal_counts
                    .get(&changelog_topic("", store))
                    .copied()
                    .unwrap_or(tasks);
                (store.clone(), count)
            })
            .collect();
        let app_dir = config
            .state_dir
            .as_ref()
            .map(|dir| dir.join(&config.application_id));
        let lags = start_lags(
            &restorer,
            app_dir.as_deref(),
            &changelog_counts,
            tasks,
            local,
        )
        .await;
        assignor.set_start_lags(lags);
        let global = GlobalState::bootstrap(&restorer, &factory, &counts).await?;
        let internal_topics = template
            .internal_topics()
            .into_iter()
            .map(|topic| {
                let name = InternalTopicName {
                    prefixed: format!("{prefix}{}", topic.name),
                    version: template.changelog_versions.get(&topic.name).copied(),
                    timestamped: template.timestamped_changelog_topic(&topic.name),
                };
                (topic.name, name)
            })
            .collect();
        Ok(Self {
            factory,
            exactly_once,
            in_transaction: false,
            batch_dirty: false,
            batch_aborted: false,
            partition_counts: Arc::new(PartitionCounts::of(all_counts)),
            tasks: BTreeMap::new(),
            client,
            admin,
            consumer,
            assignor,
            producer,
            events,
            synced: false,
            prefix,
            repartition_topics,
            internal_topics,
            global_topics: template.global_topics.clone(),
            global,
            retired: TaskMetrics::default(),
            changelogs,
            logged: Vec::new(),
            expired: Vec::new(),
            partition_groups: u64::try_from(config.max_task_idle_ms)
                .ok()
                .map(|idle| PartitionGroups::new(Duration::from_millis(idle))),
            next_state_cleanup: None,
            purgeable: BTreeMap::new(),
            next_purge: None,
            config,
            standbys: BTreeMap::new(),
            standby_consumer: None,
            standby_reading: BTreeSet::new(),
            next_probing_rebalance: None,
            _state_lock: state_lock,
        })
    }

    /// Processes batches until `shutdown` completes, then finishes the batch under way
    /// (flush, commit) and returns. Stops with the error of a record that fails to
    /// deserialize, an output that is not acknowledged, a failed restore, or the consumer;
    /// the batch under way is then not committed, and is processed again by the next run.
    pub async fn run_until(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            match self.run_batch(shutdown.as_mut()).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => {
                    // Nothing of the failed batch may become visible.
                    if self.in_transaction {
                        self.in_transaction = false;
                        if let Err(abort) = self.producer.abort_transaction().await {
                            tracing::warn!(%abort, "the failed batch's transaction not aborted");
                        }
                    }
                    return Err(error);
                }
            }
        }
    }

    /// One batch; true when `shutdown` completed during it.
    async fn run_batch(
        &mut self,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool, Error> {
        let mut deliveries = Vec::new();
        let mut offsets: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut deadline = None;
        let mut stopped = false;
        let mut records = 0;
        // What the global bootstrap sent to the dead-letter queue.
        if self.send_global_dead_letters(&mut deliveries).await? {
            deadline.get_or_insert_with(|| Instant::now() + self.config.commit_interval);
        }
        let batch_records = self.config.max_uncommitted_records.max(1);
        while records < batch_records {
            let wait_for_deadline = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let punctuation = self.next_wall_clock_punctuation()?;
            let idle_deadline = self
                .partition_groups
                .as_ref()
                .and_then(PartitionGroups::next_deadline);
            let wait_for_idle_deadline = async {
                match idle_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let probe = self.next_probing_rebalance;
            // `Consumer::recv` may be cancelled at any await (weir-client's consumer docs).
            let record = tokio::select! {
                () = shutdown.as_mut() => {
                    stopped = true;
                    break;
                }
                () = wait_for_deadline => break,
                // A task waited long enough for its empty partitions, or checks again whether
                // their fetch caught up (a response without records wakes nothing else).
                () = wait_for_idle_deadline => {
                    records += self
                        .process_ready(Vec::new(), &mut deliveries, &mut offsets, &mut deadline)
                        .await?;
                    continue;
                }
                () = sleep_until_wall_clock(punctuation) => {
                    if self.punctuate_wall_clock(&mut deliveries).await? {
                        deadline.get_or_insert_with(|| Instant::now() + self.config.commit_interval);
                    }
                    continue;
                }
                // An idle consumer still follows rebalances: tasks are created (and restored)
                // when their partitions are assigned, not when their first record comes.
                () = tokio::time::sleep(TASK_SYNC_INTERVAL) => {
                    self.sync_tasks().await?;
                    self.drop_aborted(&mut deliveries, &mut offsets, &mut deadline);
                    self.report_standby_lags();
                    continue;
                }
                // The assignment holds tasks back while warm-ups catch up: rejoin, with fresh
                // lags, so that the caught-up ones take their tasks.
                () = sleep_until_probe(probe) => {
                    self.next_probing_rebalance = None;
                    self.report_standby_lags();
                    tracing::info!(
                        warmups = ?self.assignor.warmup_tasks(),
                        "probing rebalance: rejoining the group"
                    );
                    self.consumer.enforce_rebalance()?;
                    continue;
                }
                record = recv_global(&mut self.global) => {
                    if let Some(global) = &mut self.global {
                        global.process(record?)?;
                        let local = global.has_local_state();
                        let dead = self.send_global_dead_letters(&mut deliveries).await?;
                        // Its local copy and dead letters are written at the batch's commit,
                        // which a global record starts the clock of, as a task's record does.
                        if local || dead {
                            deadline.get_or_insert_with(|| {
                                Instant::now() + self.config.commit_interval
                            });
                        }
                    }
                    continue;
                }
                // The standbys follow their changelogs between the tasks' records.
                record = recv_standby(&mut self.standby_consumer) => {
                    if self.apply_standby(&record?)? {
                        // Their local state is written at the batch's commit.
                        deadline.get_or_insert_with(|| {
                            Instant::now() + self.config.commit_interval
                        });
                    }
                    continue;
                }
                record = self.consumer.recv() => record?,
            };
            // Rebalances happen inside `recv`: the tasks follow the assignment before the
            // record is routed.
            self.sync_tasks().await?;
            self.drop_aborted(&mut deliveries, &mut offsets, &mut deadline);
            // Everything fetched with it is processed in timestamp order across partitions.
            let mut received = vec![record];
            while received.len() < self.config.max_poll_records
                && records + received.len() < batch_records
            {
                match self.consumer.try_recv() {
                    Some(record) => received.push(record?),
                    None => break,
                }
            }
            records += self
                .process_ready(received, &mut deliveries, &mut offsets, &mut deadline)
                .await?;
        }
        self.commit(deliveries, offsets).await?;
        self.report_standby_lags();
        self.clean_removed_tasks().await;
        Ok(stopped)
    }

    /// Kafka's state cleaner, when due: deletes the directories of tasks this instance does
    /// not run that have not changed for `state_cleanup_delay`. Before the instance runs
    /// tasks it does not know which directories are its own, so it waits for them. A failure
    /// is logged: the directories stay until the next run.
    async fn clean_removed_tasks(&mut self) {
        let Some(state_dir) = &self.config.state_dir else {
            return;
        };
        let now = Instant::now();
        if self.tasks.is_empty() || self.next_state_cleanup.is_some_and(|next| now < next) {
            return;
        }
        self.next_state_cleanup = Some(now + self.config.state_cleanup_delay);
        let app_dir = state_dir.join(&self.config.application_id);
        let mut owned: BTreeSet<i32> = self.tasks.keys().copied().collect();
        owned.extend(self.consumer.assignment().iter().map(|tp| tp.partition));
        owned.extend(self.standbys.keys().copied());
        let delay = self.config.state_cleanup_delay;
        let cleaning = app_dir.clone();
        match blocking(&app_dir, move || {
            state::clean_removed_tasks(&cleaning, &owned, delay)
        })
        .await
        {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::info!(tasks = ?deleted, "deleted the local state of tasks not run here");
                self.assignor.remove_local_state(&deleted);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "state cleaner failed"),
        }
    }

    /// Deletes this application's local state under `state_dir`, every task directory and
    /// the global tables' directory (Kafka's `KafkaStreams#cleanUp`), so that the tasks
    /// restore from their changelogs and the next start bootstraps the global tables from
    /// the beginning; this instance keeps its global stores but no local copy of them.
    /// Refused with [`Error::IllegalState`] once the instance runs tasks (call it before
    /// [`KafkaStreams::run_until`]); without a state dir there is nothing to delete.
    pub async fn cleanup(&mut self) -> Result<(), Error> {
        if !self.tasks.is_empty() || !self.standbys.is_empty() {
            return Err(Error::IllegalState(
                "cannot clean up the local state while the instance runs tasks".to_string(),
            ));
        }
        let Some(state_dir) = &self.config.state_dir else {
            return Ok(());
        };
        // The global tables were bootstrapped in `new`, with their local copy open: it is
        // closed (released) to be deleted, and not written again by this instance, whose
        // stores it could no longer vouch for. The next start bootstraps them in full.
        if let Some(global) = &mut self.global
            && global.has_local_state()
        {
            // Persistent global stores are read into memory first: their database goes.
            global.task.detach_local_state()?;
            global.close_local_state().await;
            tracing::info!("global local state closed for cleanup; not kept by this instance");
        }
        let app_dir = state_dir.join(&self.config.application_id);
        let wiping = app_dir.clone();
        blocking(&app_dir, move || state::wipe_app_dir(&wiping)).await?;
        self.assignor.set_local_state([]);
        Ok(())
    }

    /// Processes what is ready of `received` and of the records fetched before (all of it,
    /// unless tasks wait for empty partitions under `max_task_idle_ms`), in timestamp order
    /// across each task's partitions; returns how many records it processed.
    async fn process_ready(
        &mut self,
        received: Vec<ConsumerRecord>,
        deliveries: &mut Vec<weir_client::producer::Delivery>,
        offsets: &mut BTreeMap<TopicPartition, i64>,
        deadline: &mut Option<Instant>,
    ) -> Result<usize, Error> {
        let ready = match &mut self.partition_groups {
            None => in_timestamp_order(received),
            Some(groups) => {
                groups.add(received);
                let inputs: BTreeSet<TopicPartition> = self
                    .consumer
                    .assignment()
                    .into_iter()
                    .filter(|tp| !self.global_topics.contains(&tp.topic))
                    .collect();
                let consumer = &self.consumer;
                groups.ready(&inputs, &self.global_topics, Instant::now(), |tp| {
                    consumer.current_lag(tp)
                })
            }
        };
        let count = ready.len();
        if count > 0 {
            deadline.get_or_insert_with(|| Instant::now() + self.config.commit_interval);
        }
        for record in ready {
            let topic = match record.topic.strip_prefix(self.prefix.as_str()) {
                Some(name) if self.repartition_topics.contains(name) => name.to_string(),
                _ => record.topic.to_string(),
            };
            let raw = RawRecord {
                topic,
                partition: record.partition,
                offset: record.offset,
                key: record.key,
                value: record.value,
                timestamp: record.timestamp,
            };
            let outputs = self.process(&raw).await?;
            self.batch_dirty = true;
            if !outputs.is_empty() {
                self.open_transaction()?;
            }
            enqueue_outputs(
                &self.producer,
                &self.internal_topics,
                self.changelogs.as_ref(),
                outputs,
                deliveries,
                &mut self.logged,
            )
            .await?;
            let next = record.offset + 1;
            offsets
                .entry(TopicPartition::new(
                    record.topic.to_string(),
                    record.partition,
                ))
                .and_modify(|offset| *offset = (*offset).max(next))
                .or_insert(next);
        }
        Ok(count)
    }

    /// Runs `raw` through its task and returns the outputs.
    async fn process(&mut self, raw: &RawRecord) -> Result<Vec<RawRecord>, Error> {
        if !self.tasks.contains_key(&raw.partition) {
            // The assignment holds the partition; its task is made on first use if the
            // rebalance callbacks have not said so yet.
            self.create_task(raw.partition).await?;
        }
        let Some(task) = self.tasks.get_mut(&raw.partition) else {
            return Ok(Vec::new());
        };
        let position = (raw.topic.clone(), raw.partition);
        if task
            .next_offsets
            .get(&position)
            .is_some_and(|next| raw.offset < *next)
        {
            // Processed before a rebalance that kept the task; its outputs are on their way.
            return Ok(Vec::new());
        }
        task.next_offsets.insert(position, raw.offset + 1);
        let result = task
            .task
            .process(raw)
            .and_then(|()| task.task.punctuate_stream_time().map(drop));
        let outputs = task.task.take_outputs();
        let expired = task.task.take_expired();
        if self.changelogs.is_some() {
            let partition = raw.partition;
            self.expired
                .extend(expired.into_iter().map(|record| (partition, record)));
        }
        result.map(|()| outputs)
    }

    /// Makes the tasks follow the consumer's assignment: drops the tasks whose partitions
    /// were revoked or lost, and creates (restoring their stores) the tasks of newly assigned
    /// partitions. A task whose partitions were revoked and given back in the same rebalance
    /// is kept: no other instance can have processed them in between. After several
    /// rebalances in one `recv` that is not certain, and such tasks are rebuilt.
    async fn sync_tasks(&mut self) -> Result<(), Error> {
        let events = std::mem::take(&mut *self.events.lock());
        if events.is_empty() && self.synced {
            return Ok(());
        }
        self.synced = true;
        // Exactly once: a rebalance gave up the partitions under the batch's transaction,
        // whose offsets this member may no longer commit (Kafka Streams commits before it
        // gives them up; this consumer's callbacks cannot wait for a commit). The batch is
        // aborted; its tasks are rebuilt below, and every partition is read again from its
        // committed offset, as the eager rebalance assigned it.
        let gave_up = events
            .iter()
            .any(|event| matches!(event, RebalanceEvent::Revoked(_) | RebalanceEvent::Lost(_)));
        if self.exactly_once && self.batch_dirty && gave_up {
            tracing::info!("a rebalance interrupted the batch: its transaction is aborted");
            self.abort_batch(false).await?;
        }
        let mut rebuild = BTreeSet::new();
        let mut revoked = BTreeSet::new();
        let mut assignments = 0;
        for event in events {
            match event {
                RebalanceEvent::Assigned => assignments += 1,
                RebalanceEvent::Revoked(partitions) => {
                    revoked.extend(partitions.into_iter().map(|tp| tp.partition));
                }
                RebalanceEvent::Lost(partitions) => {
                    rebuild.extend(partitions.into_iter().map(|tp| tp.partition));
                }
            }
        }
        if assignments > 1 {
            rebuild.extend(revoked);
        }
        if assignments > 0 {
            // Every assignment restarts the probing clock, or stops it (no warm-ups left).
            self.next_probing_rebalance = self
                .assignor
                .probing_rebalance_delay()
                .map(|delay| Instant::now() + delay);
        }
        let assigned: BTreeSet<i32> = self
            .consumer
            .assignment()
            .into_iter()
            .filter(|tp| !self.global_topics.contains(&tp.topic))
            .map(|tp| tp.partition)
            .collect();
        let dropped: Vec<i32> = self
            .tasks
            .keys()
            .copied()
            .filter(|p| !assigned.contains(p) || rebuild.contains(p))
            .collect();
        for partition in dropped {
            if let Some(mut task) = self.tasks.remove(&partition) {
                tracing::info!(task = partition, "closing task: its partitions moved");
                if let Err(error) = task.task.close_processors() {
                    tracing::warn!(task = partition, %error, "a processor failed to close");
                }
                // Its local state holds its last commit; closing it releases its directory.
                close_state(partition, task.state).await;
                add_metrics(&mut self.retired, retired(task.task.metrics()));
            }
        }
        for partition in assigned {
            if !self.tasks.contains_key(&partition) {
                self.create_task(partition).await?;
            }
        }
        self.sync_standbys().await
    }

    /// Makes the standby tasks follow the last assignment: drops those it no longer holds
    /// (their local state written and released), creates the new ones, and points the
    /// standby consumer at their changelog partitions. Runs after the active tasks were
    /// synced, so that a task active here has taken its standby over already and a standby
    /// of a task dropped here opens its directory once the task released it.
    async fn sync_standbys(&mut self) -> Result<(), Error> {
        let wanted = self.assignor.standby_tasks();
        let removed: Vec<i32> = self
            .standbys
            .keys()
            .copied()
            .filter(|p| !wanted.contains(p) || self.tasks.contains_key(p))
            .collect();
        for partition in removed {
            if let Some(mut standby) = self.standbys.remove(&partition) {
                tracing::info!(task = partition, "closing standby task: no longer assigned");
                if let Err(error) = standby.local.flush().await {
                    tracing::warn!(task = partition, %error, "standby local state not written");
                }
                close_state(partition, standby.local.state.take()).await;
                add_metrics(&mut self.retired, retired(standby.task.metrics()));
            }
        }
        for partition in wanted {
            if !self.tasks.contains_key(&partition) && !self.standbys.contains_key(&partition) {
                self.create_standby(partition).await?;
            }
        }
        let reading: BTreeSet<i32> = self.standbys.keys().copied().collect();
        // The consumer exists exactly while there are standbys to read.
        if reading == self.standby_reading {
            return Ok(());
        }
        if reading.is_empty() {
            self.standby_consumer = None;
            self.standby_reading = reading;
            return Ok(());
        }
        let positions: Vec<(TopicPartition, i64)> = self
            .standbys
            .iter()
            .flat_map(|(partition, standby)| {
                standby.stores.keys().map(|topic| {
                    let position = standby.positions.get(topic).copied().unwrap_or(0);
                    (TopicPartition::new(topic.clone(), *partition), position)
                })
            })
            .collect();
        let consumer = match &mut self.standby_consumer {
            Some(consumer) => consumer,
            None => {
                let restorer = Restorer {
                    client: &self.client,
                    admin: &self.admin,
                    config: &self.config,
                    prefix: &self.prefix,
                };
                let consumer = restorer.assigned_consumer().await?;
                self.standby_consumer.insert(consumer)
            }
        };
        let partitions: Vec<TopicPartition> = positions.iter().map(|(tp, _)| tp.clone()).collect();
        consumer.assign(&partitions)?;
        for (tp, position) in &positions {
            consumer.seek(tp, *position)?;
        }
        self.standby_reading = reading;
        Ok(())
    }

    /// Tells the assignor how far each standby (warm-ups included) is behind its changelogs,
    /// as the standby consumer's last fetch responses say, for the next subscription. A
    /// standby with a changelog partition not fetched yet has an unknown lag and is left out.
    fn report_standby_lags(&self) {
        let mut lags = BTreeMap::new();
        for (partition, standby) in &self.standbys {
            let lag = standby.stores.keys().try_fold(0i64, |sum, topic| {
                let tp = TopicPartition::new(topic.clone(), *partition);
                let lag = self.standby_consumer.as_ref()?.current_lag(&tp)?;
                Some(sum.saturating_add(lag))
            });
            if let Some(lag) = lag {
                lags.insert(*partition, lag);
            }
        }
        self.assignor.set_standby_lags(lags);
    }

    /// A new task of `partition`: a fresh topology, which looks up the instance's global
    /// stores.
    fn new_task(&self, partition: i32) -> Result<Task, Error> {
        let mut task = Task::new(
            (self.factory)()?,
            partition,
            self.config.deserialization_exception_handler.clone(),
        );
        task.set_partition_counts(Arc::clone(&self.partition_counts));
        if let Some(global) = &self.global {
            task.share_global_stores(&global.task);
        }
        Ok(task)
    }

    /// Builds the standby of `partition`: with a state dir, its stores are loaded from the
    /// task's local state and the changelogs are read from its checkpoints, else from their
    /// start.
    async fn create_standby(&mut self, partition: i32) -> Result<(), Error> {
        let mut task = self.new_task(partition)?;
        let stores: Vec<String> = task.topology().restorers.keys().cloned().collect();
        let by_topic = changelog_stores(&self.prefix, &stores);
        let partitions: Vec<TopicPartition> = by_topic
            .keys()
            .map(|topic| TopicPartition::new(topic.clone(), partition))
            .collect();
        let restorer = Restorer {
            client: &self.client,
            admin: &self.admin,
            config: &self.config,
            prefix: &self.prefix,
        };
        let starts = restorer
            .list_offsets(&partitions, OffsetSpec::Earliest)
            .await?;
        let (state, checkpoints) = match &self.config.state_dir {
            Some(dir) if !stores.is_empty() => {
                let dir = dir
                    .join(&self.config.application_id)
                    .join(partition.to_string());
                let opened = open_task_state(dir, self.config.restore_timeout).await?;
                self.assignor.add_local_state(partition);
                let ends = restorer
                    .list_offsets(&partitions, OffsetSpec::Latest)
                    .await?;
                let (state, checkpoints) = restorer
                    .load_local_state(&mut task, partition, opened, &stores, &starts, &ends)
                    .await?;
                (Some(state), checkpoints)
            }
            _ => (None, HashMap::new()),
        };
        let positions: HashMap<String, i64> = partitions
            .iter()
            .map(|tp| {
                let start = starts.get(tp).copied().unwrap_or(0);
                let from = checkpoints.get(&tp.topic).copied().unwrap_or(start);
                (tp.topic.clone(), from.max(start))
            })
            .collect();
        tracing::info!(task = partition, ?positions, "standby task created");
        self.standbys.insert(
            partition,
            StandbyTask {
                task,
                stores: by_topic,
                positions,
                local: LocalWriter {
                    state,
                    records: Vec::new(),
                    checkpoints: HashMap::new(),
                },
            },
        );
        Ok(())
    }

    /// Applies a changelog record to its standby's store; true when it is kept for the
    /// standby's local state (written at the commit). A record of a standby dropped since
    /// the consumer fetched it, or one already applied, is skipped.
    fn apply_standby(&mut self, record: &ConsumerRecord) -> Result<bool, Error> {
        let Some(standby) = self.standbys.get_mut(&record.partition) else {
            return Ok(false);
        };
        let (Some(store), Some(next)) = (
            standby.stores.get(&*record.topic),
            // Every changelog of the standby has a position from its creation on.
            standby.positions.get_mut(&*record.topic),
        ) else {
            return Ok(false);
        };
        if record.offset < *next {
            return Ok(false);
        }
        let value = standby.task.changelog_value(store, record);
        standby
            .task
            .restore(store, record.key.as_deref(), value.as_deref())?;
        standby.task.count_standby_applied(1);
        *next = record.offset + 1;
        standby.local.keep(store, &record.topic, record, value);
        Ok(standby.local.state.is_some())
    }

    /// Builds the task of `partition` and restores its stores from their changelogs. A
    /// standby of the task on this instance is promoted: the task takes its stores, local
    /// state and positions over, and reads only the changelog records past them.
    async fn create_task(&mut self, partition: i32) -> Result<(), Error> {
        let (mut task, promoted) = match self.standbys.remove(&partition) {
            Some(mut standby) => {
                // Its local state then vouches for the positions the restore starts at.
                standby.local.flush().await?;
                standby.task.local_state_written();
                let state = standby.local.state.take();
                (standby.task, Some((state, standby.positions)))
            }
            None => (self.new_task(partition)?, None),
        };
        // This instance's own changelog writes (of a task it just dropped) must be in the
        // changelog before it is read; the changelog then holds them, so the new task's local
        // state must not take them from this batch (they are behind its restored state).
        self.producer.flush().await;
        self.logged.retain(|logged| logged.task != partition);
        self.expired.retain(|(task, _)| *task != partition);
        let from = match promoted {
            Some((state, positions)) => RestoreFrom::Positions { state, positions },
            None => RestoreFrom::LocalState(match &self.config.state_dir {
                Some(dir) => {
                    let dir = dir
                        .join(&self.config.application_id)
                        .join(partition.to_string());
                    let opened = open_task_state(dir, self.config.restore_timeout).await?;
                    self.assignor.add_local_state(partition);
                    Some(opened)
                }
                None => None,
            }),
        };
        let promoting = matches!(from, RestoreFrom::Positions { .. });
        let restorer = Restorer {
            client: &self.client,
            admin: &self.admin,
            config: &self.config,
            prefix: &self.prefix,
        };
        let restoring = Instant::now();
        let read_before = task.metrics().restored_from_changelog;
        let state = restorer.restore(&mut task, partition, from).await?;
        task.count_restore_time(restoring.elapsed());
        if promoting {
            tracing::info!(
                task = partition,
                records = task.metrics().restored_from_changelog - read_before,
                applied_as_standby = task.metrics().standby_applied,
                "standby task promoted: read the changelog records it had not applied yet"
            );
        }
        self.resume_stream_time(&mut task, partition).await;
        tracing::info!(
            task = partition,
            stream_time = task.stream_time(),
            "task created"
        );
        self.tasks.insert(
            partition,
            StreamTask {
                task,
                next_offsets: HashMap::new(),
                state,
            },
        );
        Ok(())
    }

    /// The name the task's sources know a subscribed topic by (a repartition topic's without
    /// the application id); `None` for a global table's topic, which has no partition time
    /// of its own in a task.
    fn task_topic<'a>(&self, topic: &'a str) -> Option<&'a str> {
        if self.global_topics.contains(topic) {
            return None;
        }
        Some(match topic.strip_prefix(self.prefix.as_str()) {
            Some(name) if self.repartition_topics.contains(name) => name,
            _ => topic,
        })
    }

    /// Resumes the partition times (and so the stream time) of the task of `partition` from
    /// the metadata committed with its input offsets, so that windows closed before a
    /// restart or a rebalance stay closed. Metadata it cannot read, or a failed fetch, is
    /// logged: the task then starts with its stream time unknown, as a new one does.
    async fn resume_stream_time(&mut self, task: &mut Task, partition: i32) {
        let inputs: Vec<TopicPartition> = task
            .topology()
            .source_topics()
            .into_iter()
            .filter(|topic| !self.global_topics.contains(topic))
            .map(|topic| {
                let topic = if self.repartition_topics.contains(&topic) {
                    format!("{}{topic}", self.prefix)
                } else {
                    topic
                };
                TopicPartition::new(topic, partition)
            })
            .collect();
        let committed = match self.consumer.committed_with_metadata(&inputs).await {
            Ok(committed) => committed,
            Err(error) => {
                tracing::warn!(task = partition, %error, "cannot read the committed partition times; the stream time starts unknown");
                return;
            }
        };
        for (tp, committed) in inputs.iter().zip(committed) {
            let Some(committed) = committed.filter(|c| !c.metadata.is_empty()) else {
                continue;
            };
            let Some(topic) = self.task_topic(&tp.topic) else {
                continue;
            };
            match partition_time::decode(&committed.metadata) {
                Some(time) => task.resume_partition_time(topic, time),
                None => tracing::warn!(
                    task = partition,
                    partition = %tp,
                    metadata = %committed.metadata,
                    "committed metadata holds no partition time; ignored"
                ),
            }
        }
    }

    /// Sends the dead-letter records the global tables' records made (KIP-1295: a global
    /// record that does not deserialize goes to the dead-letter queue as a task's does) with
    /// the batch's outputs, whose commit waits for them; whether there were any.
    async fn send_global_dead_letters(
        &mut self,
        deliveries: &mut Vec<weir_client::producer::Delivery>,
    ) -> Result<bool, Error> {
        let Some(global) = &mut self.global else {
            return Ok(false);
        };
        let dead = std::mem::take(&mut global.dead_letters);
        if dead.is_empty() {
            return Ok(false);
        }
        self.open_transaction()?;
        enqueue_outputs(
            &self.producer,
            &self.internal_topics,
            None,
            dead,
            deliveries,
            &mut self.logged,
        )
        .await?;
        Ok(true)
    }

    /// Begins the batch's transaction under exactly once, if it has not begun.
    fn open_transaction(&mut self) -> Result<(), Error> {
        if self.exactly_once && !self.in_transaction {
            self.producer.begin_transaction()?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// After an aborted batch (`batch_aborted`), drops what the run loop kept of it: its
    /// deliveries (aborted), its offsets (not to be committed) and its commit deadline.
    fn drop_aborted(
        &mut self,
        deliveries: &mut Vec<weir_client::producer::Delivery>,
        offsets: &mut BTreeMap<TopicPartition, i64>,
        deadline: &mut Option<Instant>,
    ) {
        if std::mem::take(&mut self.batch_aborted) {
            deliveries.clear();
            offsets.clear();
            *deadline = None;
        }
    }

    /// Exactly once: aborts the batch under way. Its transaction is aborted, and every task
    /// is dropped without writing its local state, since their memory holds the batch's
    /// effects: they are created again from their local state and changelogs, as of the last
    /// commit, and read their partitions again from the committed offsets. After a rebalance
    /// the consumer reads from there already; otherwise (`rewind`) it rejoins the group,
    /// which gives every partition up and takes it back at its committed offset.
    async fn abort_batch(&mut self, rewind: bool) -> Result<(), Error> {
        if self.in_transaction {
            self.in_transaction = false;
            self.producer.abort_transaction().await?;
        }
        for (partition, mut task) in std::mem::take(&mut self.tasks) {
            tracing::info!(
                task = partition,
                "closing task dirty: its batch was aborted"
            );
            if let Err(error) = task.task.close_processors() {
                tracing::warn!(task = partition, %error, "a processor failed to close");
            }
            close_state(partition, task.state).await;
            add_metrics(&mut self.retired, retired(task.task.metrics()));
        }
        self.logged.clear();
        self.expired.clear();
        self.batch_dirty = false;
        self.batch_aborted = true;
        if rewind {
            self.consumer.enforce_rebalance()?;
        }
        Ok(())
    }

    /// Waits for every output of the batch to be acknowledged, then commits its input offsets
    /// (under exactly once, with its outputs, in its transaction).
    async fn commit(
        &mut self,
        deliveries: Vec<weir_client::producer::Delivery>,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Result<(), Error> {
        if self.exactly_once {
            return self.commit_transaction(deliveries, offsets).await;
        }
        self.producer.flush().await;
        let mut acknowledged = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            acknowledged.push(delivery.await?.offset);
        }
        self.write_local_states(&acknowledged).await?;
        let offsets = self.offsets_to_commit(offsets);
        if offsets.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.consumer.commit_offsets_with_metadata(&offsets).await {
            // The outputs are acknowledged; an uncommitted batch is only processed again
            // (at least once), so the application keeps running.
            tracing::warn!(%error, "offset commit failed; the batch will be processed again");
            return Ok(());
        }
        self.committed(&offsets).await;
        Ok(())
    }

    /// Exactly once: commits the batch's transaction with its input offsets (KIP-447: the
    /// group coordinator refuses them if a rebalance fenced this member), then writes the
    /// local states, which must hold committed data only. A rebalance during the batch, or a
    /// commit refused, aborts it instead ([`KafkaStreams::abort_batch`]); a fatal error
    /// (this producer fenced) stops the application.
    async fn commit_transaction(
        &mut self,
        deliveries: Vec<weir_client::producer::Delivery>,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Result<(), Error> {
        if !self.events.lock().is_empty() {
            // A rebalance the tasks have not followed yet: it aborts a dirty batch.
            self.sync_tasks().await?;
            if std::mem::take(&mut self.batch_aborted) {
                return Ok(());
            }
        }
        let offsets = self.offsets_to_commit(offsets);
        if !offsets.is_empty() || self.in_transaction {
            self.open_transaction()?;
            let group = self.consumer.group_metadata();
            let committed = commit_with_offsets(&self.producer, &offsets, group).await;
            match committed {
                Ok(()) => self.in_transaction = false,
                Err(Error::Client(error @ weir_client::Error::FatalTransaction { .. })) => {
                    self.in_transaction = false;
                    return Err(Error::Client(error));
                }
                Err(error) => {
                    tracing::warn!(%error, "transaction not committed: the batch is aborted \
                        and processed again from the committed offsets");
                    self.abort_batch(true).await?;
                    self.batch_aborted = false;
                    return Ok(());
                }
            }
        }
        // Committed: every delivery is acknowledged (a failed one fails the commit).
        let mut acknowledged = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            acknowledged.push(delivery.await?.offset);
        }
        self.batch_dirty = false;
        self.write_local_states(&acknowledged).await?;
        self.committed(&offsets).await;
        Ok(())
    }

    /// Writes the batch's changelog records (acknowledged at `acknowledged`) into the tasks'
    /// local state, and the global tables' and standbys' records read since the last commit.
    async fn write_local_states(&mut self, acknowledged: &[i64]) -> Result<(), Error> {
        self.write_local_state(acknowledged).await?;
        if let Some(global) = &mut self.global {
            global.write_local_state().await?;
        }
        for standby in self.standbys.values_mut() {
            standby.local.flush().await?;
            standby.task.local_state_written();
        }
        Ok(())
    }

    /// The batch's input offsets to commit, with each partition's time as metadata.
    fn offsets_to_commit(
        &self,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        // A partition revoked during the batch is another member's now: committing it could
        // move its offset past what the new owner has processed.
        let assigned = self.consumer.assignment();
        offsets
            .into_iter()
            .filter(|(tp, _)| assigned.contains(tp))
            .map(|(tp, offset)| {
                let metadata = self
                    .task_topic(&tp.topic)
                    .and_then(|topic| self.tasks.get(&tp.partition)?.task.partition_time(topic))
                    .map(partition_time::encode)
                    .unwrap_or_default();
                (tp, OffsetAndMetadata::with_metadata(offset, metadata))
            })
            .collect()
    }

    /// After `offsets` were committed: the repartition records before them may be purged.
    async fn committed(&mut self, offsets: &[(TopicPartition, OffsetAndMetadata)]) {
        for (tp, committed) in offsets {
            let internal = tp.topic.strip_prefix(self.prefix.as_str());
            if internal.is_some_and(|topic| self.repartition_topics.contains(topic)) {
                self.purgeable.insert(tp.clone(), committed.offset);
            }
        }
        self.purge_repartition_topics().await;
    }

    /// Deletes the records of the repartition partitions before their committed offsets,
    /// every `repartition_purge_interval` (Kafka's `maybePurgeCommittedRecords`). A failure
    /// is logged: the next purge asks again.
    async fn purge_repartition_topics(&mut self) {
        let now = Instant::now();
        let due = *self
            .next_purge
            .get_or_insert(now + self.config.repartition_purge_interval);
        if now < due || self.purgeable.is_empty() {
            return;
        }
        self.next_purge = Some(now + self.config.repartition_purge_interval);
        let before: Vec<((String, i32), i64)> = std::mem::take(&mut self.purgeable)
            .into_iter()
            .map(|(tp, offset)| ((tp.topic, tp.partition), offset))
            .collect();
        match self.admin.delete_records(&before).await {
            Ok(results) => {
                for ((topic, partition), result) in results {
                    match result {
                        Ok(low) => tracing::debug!(%topic, partition, low, "purged"),
                        Err(error) => {
                            tracing::debug!(%topic, partition, %error, "purge refused");
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "repartition topics not purged"),
        }
    }

    /// Writes the batch's changelog records, now acknowledged at `offsets` (by delivery), and
    /// the changelog offsets after them into each task's local state: one write transaction
    /// per task, so records and checkpoints agree. Runs before the input offsets are
    /// committed; a failed write stops the application (the local copy could otherwise miss
    /// records its next checkpoint vouches for), as Kafka treats a failed state store write.
    async fn write_local_state(&mut self, offsets: &[i64]) -> Result<(), Error> {
        let logged = std::mem::take(&mut self.logged);
        // Per task: its records, and per store the offset after its last one.
        let mut per_task: BTreeMap<i32, (Vec<LocalRecord>, HashMap<String, i64>)> = BTreeMap::new();
        for record in logged {
            let Some(offset) = offsets.get(record.delivery).copied() else {
                continue;
            };
            let (records, next_offsets) = per_task.entry(record.task).or_default();
            let next = next_offsets
                .entry(record.store.clone())
                .or_insert(offset + 1);
            *next = (*next).max(offset + 1);
            records.push((record.store, record.key, record.value));
        }
        // After the batch's changelog records: a window expires only after its last update.
        // Deleting a key costs about what writing one does: a commit deletes at most as many
        // as it writes, or `EXPIRED_PER_COMMIT`, and leaves the rest to the next ones, so that
        // a bulk expiry (all of a store's windows when its time jumps) does not hold one
        // commit, and the records waiting on it, up. An expired key is never written again
        // (its records are late), so its deletion may wait.
        let written: BTreeMap<i32, usize> = per_task
            .iter()
            .map(|(task, (records, _))| (*task, records.len()))
            .collect();
        let (now, later) = split_expired(std::mem::take(&mut self.expired), &written, |task| {
            self.tasks.contains_key(&task)
        });
        for (task, record) in now {
            per_task.entry(task).or_default().0.push(record);
        }
        self.expired = later;
        for (partition, (records, next_offsets)) in per_task {
            let checkpoints: HashMap<String, i64> = next_offsets
                .into_iter()
                .map(|(store, next)| (changelog_topic(&self.prefix, &store), next))
                .collect();
            // A task dropped during the batch closed its state at its last commit.
            let Some(state) = self.tasks.get(&partition).and_then(|t| t.state.clone()) else {
                continue;
            };
            let path = state.path().to_path_buf();
            blocking(&path, move || state.commit(&records, &checkpoints)).await?;
            if let Some(entry) = self.tasks.get(&partition) {
                entry.task.local_state_written();
            }
        }
        Ok(())
    }

    /// A read-only view of the local key-value state store `name` over every task this
    /// instance runs now (an interactive query on this instance); a global table's store is
    /// the instance's one copy of the whole table.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlyKeyValueStore<K, V>, Error> {
        // A global table's store is the instance's, whatever tasks it runs.
        if let Some(global) = &self.global
            && global.task.topology().global_stores.contains_key(name)
        {
            return global.task.topology().key_value_store(name);
        }
        if self.tasks.is_empty() {
            return (self.factory)()?.key_value_store(name);
        }
        let mut view: Option<ReadOnlyKeyValueStore<K, V>> = None;
        for task in self.tasks.values() {
            let store = task.task.topology().key_value_store::<K, V>(name)?;
            match &mut view {
                Some(view) => view.entries.extend(store.entries),
                None => view = Some(store),
            }
        }
        view.ok_or_else(|| Error::UnknownStore(name.to_string()))
    }

    /// A read-only view of the local window store `name` over every task this instance runs
    /// now.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlyWindowStore<K, V>, Error> {
        if self.tasks.is_empty() {
            return (self.factory)()?.window_store(name);
        }
        let stores = self.task_stores(|topology| Ok(topology.window_store(name)?.stores))?;
        Ok(ReadOnlyWindowStore {
            name: name.to_string(),
            stores,
        })
    }

    /// A read-only view of the local session store `name` over every task this instance runs
    /// now.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlySessionStore<K, V>, Error> {
        if self.tasks.is_empty() {
            return (self.factory)()?.session_store(name);
        }
        let stores = self.task_stores(|topology| Ok(topology.session_store(name)?.stores))?;
        Ok(ReadOnlySessionStore {
            name: name.to_string(),
            stores,
        })
    }

    /// Every task's windowed store, as `stores_of` finds it in the task's topology.
    fn task_stores<K, V>(
        &self,
        stores_of: impl Fn(&Topology) -> Result<Vec<WindowedStore<K, V>>, Error>,
    ) -> Result<Vec<WindowedStore<K, V>>, Error> {
        let mut stores = Vec::new();
        for task in self.tasks.values() {
            stores.extend(stores_of(task.task.topology())?);
        }
        Ok(stores)
    }

    /// The partitions (task ids) this instance runs tasks for.
    pub fn tasks(&self) -> Vec<i32> {
        self.tasks.keys().copied().collect()
    }

    /// The task ids this instance keeps standby replicas of
    /// ([`StreamsConfig::num_standby_replicas`]), warm-up replicas included.
    pub fn standby_tasks(&self) -> Vec<i32> {
        self.standbys.keys().copied().collect()
    }

    /// The task ids this instance keeps warm-up replicas of
    /// ([`StreamsConfig::max_warmup_replicas`]): standbys that catch up on a task the group
    /// holds back on another instance until this one is within
    /// [`StreamsConfig::acceptable_recovery_lag`]. They are among
    /// [`KafkaStreams::standby_tasks`].
    pub fn warmup_tasks(&self) -> Vec<i32> {
        let warmups = self.assignor.warmup_tasks();
        self.standbys
            .keys()
            .copied()
            .filter(|task| warmups.contains(task))
            .collect()
    }

    /// The counters of every task this instance ran, summed, with its global tables' (their
    /// bootstrap's restored records and time, their records that did not deserialize).
    pub fn metrics(&self) -> TaskMetrics {
        let mut metrics = self.retired;
        for task in self.tasks.values() {
            add_metrics(&mut metrics, task.task.metrics());
        }
        for standby in self.standbys.values() {
            add_metrics(&mut metrics, standby.task.metrics());
        }
        // The global tables' bootstrap and records that did not deserialize.
        if let Some(global) = &self.global {
            add_metrics(&mut metrics, global.task.metrics());
        }
        metrics
    }

    /// Leaves the group. Everything processed was committed by the last batch. Then closes
    /// every task's processors.
    pub async fn close(mut self) -> Result<(), Error> {
        self.producer.flush().await;
        self.consumer.close().await?;
        for task in self.tasks.values_mut() {
            task.task.close_processors()?;
        }
        for (partition, task) in std::mem::take(&mut self.tasks) {
            close_state(partition, task.state).await;
        }
        for (partition, mut standby) in std::mem::take(&mut self.standbys) {
            if let Err(error) = standby.local.flush().await {
                tracing::warn!(task = partition, %error,
                    "standby local state not written at close");
            }
            close_state(partition, standby.local.state.take()).await;
        }
        if let Some(global) = &mut self.global {
            global.close_local_state().await;
        }
        Ok(())
    }

    /// When the next wall-clock punctuation of any task is due.
    fn next_wall_clock_punctuation(&mut self) -> Result<Option<i64>, Error> {
        let mut next: Option<i64> = None;
        for task in self.tasks.values_mut() {
            if let Some(at) = task.task.next_wall_clock_punctuation()? {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
    }

    /// Fires every task's wall-clock punctuations due now and enqueues their outputs with the
    /// batch's, so the batch's commit waits for them too; true when there were outputs.
    async fn punctuate_wall_clock(
        &mut self,
        deliveries: &mut Vec<weir_client::producer::Delivery>,
    ) -> Result<bool, Error> {
        let now = crate::processor::system_time_ms();
        let mut outputs = Vec::new();
        for (partition, task) in &mut self.tasks {
            task.task.punctuate_wall_clock(now)?;
            outputs.extend(task.task.take_outputs());
            // A punctuator's writes to a processor's window store may expire windows too.
            let expired = task.task.take_expired();
            if self.changelogs.is_some() {
                self.expired
                    .extend(expired.into_iter().map(|record| (*partition, record)));
            }
        }
        let produced = !outputs.is_empty();
        if produced {
            self.batch_dirty = true;
            self.open_transaction()?;
        }
        enqueue_outputs(
            &self.producer,
            &self.internal_topics,
            self.changelogs.as_ref(),
            outputs,
            deliveries,
            &mut self.logged,
        )
        .await?;
        Ok(produced)
    }
}

/// `records` in the order Kafka Streams' `PartitionGroup` processes a task's buffered
/// records: repeatedly the head of the partition whose head has the smallest timestamp
/// (ties: the partition that arrived first). Each partition's own order is kept, so an
/// out-of-order timestamp within a partition stays where it is. Ordering across every
/// partition at once also orders each task's, which is what matters: a join sees a table
/// update before the stream records that follow it in time.
fn in_timestamp_order(records: Vec<ConsumerRecord>) -> Vec<ConsumerRecord> {
    // One queue per partition, in the order partitions first appear; none is empty yet.
    let mut queues: Vec<VecDeque<ConsumerRecord>> = Vec::new();
    for record in records {
        let same_partition = |queue: &&mut VecDeque<ConsumerRecord>| {
            queue.front().is_some_and(|head| {
                head.partition == record.partition && head.topic == record.topic
            })
        };
        match queues.iter_mut().find(same_partition) {
            Some(queue) => queue.push_back(record),
            None => queues.push(VecDeque::from([record])),
        }
    }
    let mut ordered = Vec::new();
    loop {
        let next = queues
            .iter_mut()
            .filter_map(|queue| queue.front().map(|head| head.timestamp).zip(Some(queue)))
            .min_by_key(|(timestamp, _)| *timestamp);
        match next.and_then(|(_, queue)| queue.pop_front()) {
            Some(record) => ordered.push(record),
            None => return ordered,
        }
    }
}

/// Enqueues a task's outputs: internal topics get the application's prefix, records with a
/// partition (changelogs) go to it. A free function over the fields it needs, so that the
/// run loop's future stays `Send` (the instance is not `Sync`).
/// With `changelogs` (a state dir), changelog records are also kept in `logged`, for the
/// tasks' local state.
async fn enqueue_outputs(
    producer: &Producer,
    internal_topics: &BTreeMap<String, InternalTopicName>,
    changelogs: Option<&HashMap<String, String>>,
    outputs: Vec<RawRecord>,
    deliveries: &mut Vec<weir_client::producer::Delivery>,
    logged: &mut Vec<Logged>,
) -> Result<(), Error> {
    for output in outputs {
        if let (Some(store), Some(key)) = (
            changelogs.and_then(|changelogs| changelogs.get(&output.topic)),
            &output.key,
        ) {
            logged.push(Logged {
                delivery: deliveries.len(),
                task: output.partition,
                store: store.clone(),
                key: key.clone(),
                value: output.value.clone(),
            });
        }
        let (topic, version, timestamped) = match internal_topics.get(&output.topic) {
            Some(name) => (name.prefixed.clone(), name.version, name.timestamped),
            None => (output.topic, None, false),
        };
        let mut produce = ProducerRecord::new(topic).timestamp(output.timestamp);
        // Kafka sends tombstones without the header.
        if let (Some(version), Some(_)) = (version, &output.value) {
            produce = produce.header("v", Some(Bytes::from(vec![version])));
        }
        if output.partition >= 0 {
            produce = produce.partition(output.partition);
        }
        produce.key = output.key;
        produce.value = match output.value {
            Some(value) if timestamped => Some(changelog_value_to_kafka(value)),
            value => value,
        };
        deliveries.push(producer.enqueue(produce).await?);
    }
    Ok(())
}

/// Sends `offsets` to the producer's transaction for the consumer `group`, then commits it.
/// A free function, so that the run loop's future stays `Send`.
async fn commit_with_offsets(
    producer: &Producer,
    offsets: &[(TopicPartition, OffsetAndMetadata)],
    group: Option<weir_client::consumer::ConsumerGroupMetadata>,
) -> Result<(), Error> {
    if !offsets.is_empty() {
        let group =
            group.ok_or_else(|| Error::IllegalState("the consumer has no group".to_string()))?;
        producer
            .send_offsets_to_transaction(offsets, &group)
            .await?;
    }
    producer.commit_transaction().await?;
    Ok(())
}

/// How the instance's consumers read: `read_committed` under exactly once, so that no
/// aborted output, changelog record or input is seen.
fn isolation_level(config: &StreamsConfig) -> IsolationLevel {
    match config.processing_guarantee {
        ProcessingGuarantee::ExactlyOnceV2 => IsolationLevel::ReadCommitted,
        _ => IsolationLevel::ReadUncommitted,
    }
}

/// This start's process id, for the transactional id: the process and the clock, in hex.
fn process_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{:x}-{nanos:x}", std::process::id())
}

/// Completes when the wall clock reaches `at` (milliseconds since the epoch); never without
/// a time.
async fn sleep_until_wall_clock(at: Option<i64>) {
    match at {
        Some(at) => {
            let wait = at.saturating_sub(crate::processor::system_time_ms()).max(0);
            tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
        }
        None => std::future::pending().await,
    }
}

/// How far this instance is behind each of `tasks` on its changelogs (`changelog_counts`:
/// every logged store with its changelog's partition count), for its first subscription. A
/// task with a directory in `local` (under `app_dir`) is behind by its changelogs' end
/// offsets minus its checkpoints, summed (a changelog without a checkpoint counts from
/// offset 0), so that a restarted instance whose checkpoints are close takes its tasks back
/// at once. Any other task is behind by its changelogs' end offsets summed, as Kafka's
/// leader counts an instance without state: a new instance takes tasks whose changelogs are
/// short at once rather than warm them up first. A task whose checkpoints do not read has
/// an unknown lag; a failed end-offset lookup leaves every lag unknown.
async fn start_lags(
    restorer: &Restorer<'_>,
    app_dir: Option<&std::path::Path>,
    changelog_counts: &BTreeMap<String, i32>,
    tasks: i32,
    local: BTreeSet<i32>,
) -> BTreeMap<i32, i64> {
    if changelog_counts.is_empty() {
        return BTreeMap::new();
    }
    let checkpoints = match app_dir {
        Some(app_dir) if !local.is_empty() => {
            let reading = app_dir.to_path_buf();
            let scanned = local.clone();
            match blocking(app_dir, move || {
                Ok(state::local_checkpoints(&reading, &scanned))
            })
            .await
            {
                Ok(checkpoints) => checkpoints,
                Err(error) => {
                    tracing::warn!(%error, "local checkpoints not read; their lags are unknown");
                    BTreeMap::new()
                }
            }
        }
        _ => BTreeMap::new(),
    };
    let topics: Vec<(String, i32)> = changelog_counts
        .iter()
        .map(|(store, count)| (changelog_topic(restorer.prefix, store), *count))
        .collect();
    let partitions: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|(topic, count)| (0..*count).map(|task| TopicPartition::new(topic.clone(), task)))
        .collect();
    let ends = match restorer.list_offsets(&partitions, OffsetSpec::Latest).await {
        Ok(ends) => ends,
        Err(error) => {
            tracing::warn!(%error, "changelog end offsets not read; lags unknown");
            return BTreeMap::new();
        }
    };
    let no_checkpoints = HashMap::new();
    (0..tasks)
        .filter_map(|task| {
            let held = match checkpoints.get(&task) {
                Some(checkpoints) => checkpoints,
                // Local state whose checkpoints did not read: unknown.
                None if local.contains(&task) => return None,
                None => &no_checkpoints,
            };
            let lag = topics
                .iter()
                .map(|(topic, _)| {
                    let end = ends
                        .get(&TopicPartition::new(topic.clone(), task))
                        .copied()
                        .unwrap_or(0);
                    let held = held.get(topic).copied().unwrap_or(0);
                    end.saturating_sub(held).max(0)
                })
                .fold(0i64, i64::saturating_add);
            Some((task, lag))
        })
        .collect()
}

async fn sleep_until_probe(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How often a task whose directory is locked tries the lock again.
const STATE_LOCK_RETRY: Duration = Duration::from_millis(100);

/// Locks and opens the local state of a task in `dir`. The lock may be held for a moment by
/// a task of this process being dropped in the same rebalance, so it is tried again until
/// `timeout` (Kafka's task lock is retried the same way) before the task fails with
/// [`Error::StateLocked`].
async fn open_task_state(dir: PathBuf, timeout: Duration) -> Result<TaskState, Error> {
    let deadline = Instant::now() + timeout;
    let lock = loop {
        let locking = dir.clone();
        if let Some(lock) = blocking(&dir, move || state::try_lock(&locking)).await? {
            break lock;
        }
        if Instant::now() >= deadline {
            return Err(Error::StateLocked { path: dir });
        }
        tokio::time::sleep(STATE_LOCK_RETRY).await;
    };
    let opening = dir.clone();
    let (state, _wiped) = blocking(&dir, move || TaskState::open(opening, lock)).await?;
    Ok(state)
}

/// Closes a task's local state: makes its commits durable and releases its directory. A
/// failure is logged: the state on disk is then at an earlier commit, consistent still.
async fn close_state(partition: i32, state: Option<Arc<TaskState>>) {
    let Some(state) = state else { return };
    let path = state.path().to_path_buf();
    if let Err(error) = blocking(&path, move || state.persist()).await {
        tracing::warn!(task = partition, %error, "local state not persisted at close");
    }
}

/// The instance's global tables (Kafka's `GlobalStreamThread` and `GlobalStateManager`): a
/// consumer outside the group assigned every partition of their topics, feeding a topology
/// of its own whose global stores every task of the instance looks up. It reads each topic
/// to its end before the instance runs tasks, then goes on in the run loop, so updates reach
/// the joins. No offsets are committed for it: where it is in each partition is the global
/// local state's checkpoint, with a state dir; without one, each start reads the topics from
/// their beginning.
struct GlobalState {
    task: Task,
    consumer: Consumer,
    /// Dead-letter records of global records that did not deserialize, not sent yet.
    dead_letters: Vec<RawRecord>,
    /// With a state dir: the global local copy (Kafka's `state.dir/<application.id>/global`)
    /// and the records and checkpoints read since its last write, written at each commit.
    local: LocalWriter,
}

/// The checkpoint name of a global topic's partition, `<topic>-<partition>` as Kafka names a
/// topic partition: unlike a task's changelogs, the global copy holds every partition of its
/// topics, so the topic alone does not say which one.
fn global_checkpoint(tp: &TopicPartition) -> String {
    format!("{}-{}", tp.topic, tp.partition)
}

impl GlobalState {
    /// Builds the global state of the topologies `factory` makes and reads every partition
    /// of their global topics (`counts` holds their partition counts) to the end offsets they
    /// have now, logging progress per topic; `None` without global tables. With a state dir,
    /// the stores are first loaded from the global local copy, and each partition is read
    /// from its checkpoint on (what the copy misses); what is read goes into the copy. A
    /// checkpoint outside its partition's offsets (the topic was deleted, recreated or
    /// truncated) wipes the copy: everything is read from the beginning again.
    async fn bootstrap(
        restorer: &Restorer<'_>,
        factory: &TopologyFactory,
        counts: &BTreeMap<String, i32>,
    ) -> Result<Option<Self>, Error> {
        let topology = factory()?;
        if topology.global_topics.is_empty() {
            return Ok(None);
        }
        let partitions: Vec<TopicPartition> = topology
            .global_topics
            .iter()
            .flat_map(|topic| {
                let count = counts.get(topic).copied().unwrap_or(0);
                (0..count).map(|partition| TopicPartition::new(topic.clone(), partition))
            })
            .collect();
        let restoring = Instant::now();
        let task = Task::new(
            topology,
            -1,
            restorer.config.deserialization_exception_handler.clone(),
        );
        let starts = restorer
            .list_offsets(&partitions, OffsetSpec::Earliest)
            .await?;
        let ends = restorer
            .list_offsets(&partitions, OffsetSpec::Latest)
            .await?;
        let consumer = restorer.assigned_consumer().await?;
        let mut global = Self {
            task,
            consumer,
            dead_letters: Vec::new(),
            local: LocalWriter {
                state: None,
                records: Vec::new(),
                checkpoints: HashMap::new(),
            },
        };
        let checkpoints = match &restorer.config.state_dir {
            Some(dir) => {
                let dir = dir.join(&restorer.config.application_id).join(GLOBAL_DIR);
                let state = open_task_state(dir, restorer.config.restore_timeout).await?;
                global
                    .load_local_state(
                        state,
                        &partitions,
                        (&starts, &ends),
                        restorer.config.store_cache_max_entries,
                    )
                    .await?
            }
            None => HashMap::new(),
        };
        global.consumer.assign(&partitions)?;
        // Per topic: (records read, records to read); per partition still behind: its end.
        let mut progress: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        let mut pending: HashMap<TopicPartition, i64> = HashMap::new();
        for tp in &partitions {
            // From the local copy's checkpoint, or the partition's start.
            let from = checkpoints
                .get(&global_checkpoint(tp))
                .or(starts.get(tp))
                .copied()
                .unwrap_or(0);
            let end = ends.get(tp).copied().unwrap_or(0);
            global.consumer.seek(tp, from)?;
            progress.entry(tp.topic.clone()).or_default().1 += (end - from).max(0);
            if end > from {
                pending.insert(tp.clone(), end);
            }
        }
        for (topic, (_, records)) in &progress {
            tracing::info!(topic = %topic, records = *records, "bootstrapping global table");
        }
        let started = Instant::now();
        while !pending.is_empty() {
            // As a restore: a compacted topic may end in a gap, so the end is a position.
            let record = match tokio::time::timeout(RESTORE_POLL, global.consumer.recv()).await {
                Ok(record) => record?,
                Err(_) => {
                    let behind: Vec<TopicPartition> = pending.keys().cloned().collect();
                    for tp in behind {
                        let position = global.consumer.position(&tp).await?;
                        if pending.get(&tp).is_some_and(|end| position >= *end) {
                            pending.remove(&tp);
                        }
                    }
                    if !pending.is_empty() && started.elapsed() > restorer.config.restore_timeout {
                        let topics: BTreeSet<&str> =
                            pending.keys().map(|tp| tp.topic.as_str()).collect();
                        return Err(Error::GlobalBootstrap {
                            topic: topics.into_iter().collect::<Vec<_>>().join(", "),
                            reason: format!(
                                "not at its end after {:?}",
                                restorer.config.restore_timeout
                            ),
                        });
                    }
                    continue;
                }
            };
            // Every record is applied, also one past the end or of a partition already at
            // its end: the consumer does not return it again, and the local copy's
            // checkpoint must not pass a record the store lacks.
            let tp = record.topic_partition();
            let offset = record.offset;
            global.process(record)?;
            let Some(end) = pending.get(&tp).copied() else {
                continue;
            };
            if offset < end {
                global.task.count_restored(0, 1);
                if let Some((read, of)) = progress.get_mut(&tp.topic) {
                    *read += 1;
                    if *read % RESTORE_PROGRESS_EVERY == 0 {
                        tracing::info!(topic = %tp.topic, read = *read, of = *of,
                            "bootstrapping global table");
                    }
                }
            }
            if global.local.records.len() >= RESTORE_PROGRESS_EVERY as usize {
                global.write_local_state().await?;
            }
            if offset + 1 >= end {
                pending.remove(&tp);
            }
        }
        // Every partition is at its end now (a compacted one maybe past its last record):
        // the checkpoints say so, unless a record past the end was applied already.
        if global.local.state.is_some() {
            for tp in &partitions {
                let end = ends.get(tp).copied().unwrap_or(0);
                let checkpoint = global
                    .local
                    .checkpoints
                    .entry(global_checkpoint(tp))
                    .or_insert(end);
                *checkpoint = (*checkpoint).max(end);
            }
        }
        global.write_local_state().await?;
        global.task.count_restore_time(restoring.elapsed());
        for (topic, (read, _)) in &progress {
            tracing::info!(topic = %topic, read = *read, elapsed = ?started.elapsed(),
                "global table bootstrapped");
        }
        Ok(Some(global))
    }

    /// Puts the records of the global local copy `state` into the global stores and keeps
    /// the copy; returns its checkpoints. A checkpoint outside its partition's offsets
    /// (`starts`, `ends`), or of a partition the topic no longer has, wipes the copy first,
    /// as a task's local state is wiped (Kafka's `OffsetOutOfRange`), leaving nothing to
    /// load and no checkpoints.
    async fn load_local_state(
        &mut self,
        state: TaskState,
        partitions: &[TopicPartition],
        (starts, ends): (&HashMap<TopicPartition, i64>, &HashMap<TopicPartition, i64>),
        max_cached: Option<usize>,
    ) -> Result<HashMap<String, i64>, Error> {
        let path = state.path().to_path_buf();
        // Per checkpoint name: the offsets its partition has now.
        let ranges: HashMap<String, (i64, i64)> = partitions
            .iter()
            .map(|tp| {
                let start = starts.get(tp).copied().unwrap_or(0);
                (
                    global_checkpoint(tp),
                    (start, ends.get(tp).copied().unwrap_or(0)),
                )
            })
            .collect();
        let topics = self.task.topology().global_topics.clone();
        // The persistent stores are read where they are; only the others are loaded.
        let persistent = &self.task.topology().global_persistent_stores;
        let names: Vec<String> = topics
            .iter()
            .filter(|topic| max_cached.is_none() || !persistent.contains_key(*topic))
            .cloned()
            .collect();
        let (state, copy) = blocking(&path, move || {
            state.load_checked(&names, |name, offset| match ranges.get(name) {
                Some((start, end)) => offset < *start || offset > *end,
                // A partition of a global topic that it no longer has: the topic was
                // recreated with fewer. A topic the topology no longer reads does not matter.
                None => name
                    .rsplit_once('-')
                    .is_some_and(|(topic, _)| topics.contains(topic)),
            })
        })
        .await?;
        let state = Arc::new(state);
        let served = match max_cached {
            Some(max_cached) => {
                let attached = self.task.attach_global_local_state(&state, max_cached);
                count_records(&state, attached).await?
            }
            None => 0,
        };
        self.local.state = Some(Arc::clone(&state));
        let (records, checkpoints) = match copy {
            LocalCopy::Loaded {
                records,
                checkpoints,
            } => (records, checkpoints),
            LocalCopy::Wiped { name, offset } => {
                tracing::warn!(partition = %name, checkpoint = offset, path = %path.display(),
                    "the global local state's checkpoint is outside the global topic's offsets; \
                     wiped it, bootstrapping the global tables from the beginning");
                return Ok(HashMap::new());
            }
        };
        let mut loaded = 0;
        for (topic, records) in records {
            loaded += records.len() as u64;
            for (key, kept) in records {
                let Ok((timestamp, value)) = split_timestamped_value(&kept) else {
                    return Err(Error::GlobalBootstrap {
                        topic,
                        reason: format!(
                            "a value of the local state at {} has no timestamp",
                            path.display()
                        ),
                    });
                };
                let raw = RawRecord {
                    topic: topic.clone(),
                    partition: -1,
                    offset: -1,
                    key: Some(Bytes::from(key)),
                    value: Some(Bytes::copy_from_slice(value)),
                    timestamp,
                };
                self.task.process_global(&raw)?;
                // Kept records deserialized when they were read; dropped ones are not kept.
                self.task.take_outputs();
            }
        }
        self.task.count_restored(loaded + served, 0);
        tracing::info!(records = loaded, served_from_disk = served, path = %path.display(),
            "global tables restored from local state");
        Ok(checkpoints)
    }

    /// Puts a record of a global topic into its store. A record that does not deserialize
    /// goes to the deserialization exception handler; a dead-letter record it makes waits in
    /// `dead_letters` for the run loop's next batch. With a state dir, the record (raw bytes,
    /// unless the store skipped it) and the offset after it are kept for the global local
    /// copy's next write.
    fn process(&mut self, record: ConsumerRecord) -> Result<(), Error> {
        let dropped_before = self.task.metrics().dropped_deserialization_errors;
        let tp = record.topic_partition();
        let raw = RawRecord {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            key: record.key,
            value: record.value,
            timestamp: record.timestamp,
        };
        self.task.process_global(&raw)?;
        self.dead_letters.extend(self.task.take_outputs());
        if self.local.state.is_none() {
            return Ok(());
        }
        // A record without a key, or one that did not deserialize, left the store as it was:
        // the copy stays as it is too, only its checkpoint moves past the record.
        let skipped = self.task.metrics().dropped_deserialization_errors != dropped_before;
        if let (Some(key), false) = (raw.key, skipped) {
            let value = raw
                .value
                .map(|value| Bytes::from(timestamped_value(raw.timestamp, &value)));
            self.local.records.push((raw.topic, key, value));
        }
        self.local
            .checkpoints
            .insert(global_checkpoint(&tp), raw.offset + 1);
        Ok(())
    }

    /// Whether the global tables keep a local copy (a state dir): then their records are
    /// written at the commits of the run loop, which their arrival starts.
    fn has_local_state(&self) -> bool {
        self.local.state.is_some()
    }

    /// Writes the global local copy's records and checkpoints kept since its last write, as
    /// the tasks' local state is written at a commit: one write transaction, durable every
    /// `DURABLE_EVERY` records.
    async fn write_local_state(&mut self) -> Result<(), Error> {
        self.local.flush().await?;
        self.task.local_state_written();
        Ok(())
    }

    /// Writes what is kept, makes the global local copy durable and releases its directory.
    /// A failure is logged: the copy on disk is then at an earlier write, consistent still.
    async fn close_local_state(&mut self) {
        if let Err(error) = self.local.flush().await {
            tracing::warn!(%error, "global local state not written at close");
        }
        let Some(state) = self.local.state.take() else {
            return;
        };
        let path = state.path().to_path_buf();
        if let Err(error) = blocking(&path, move || state.persist()).await {
            tracing::warn!(%error, "global local state not persisted at close");
        }
    }
}

/// The next record of the global tables' consumer; never, without global tables.
async fn recv_global(global: &mut Option<GlobalState>) -> weir_client::Result<ConsumerRecord> {
    match global {
        Some(global) => global.consumer.recv().await,
        None => std::future::pending().await,
    }
}

/// Where a restore starts.
enum RestoreFrom {
    /// A new task: its local state (with a state dir), then the changelogs from its
    /// checkpoints.
    LocalState(Option<TaskState>),
    /// A promoted standby, its stores filled: the changelogs from `positions` (the offset
    /// after the last record applied, per changelog topic), its local state kept as it is.
    Positions {
        state: Option<Arc<TaskState>>,
        positions: HashMap<String, i64>,
    },
}

/// The next record of the standbys' changelogs; never, without standbys.
async fn recv_standby(consumer: &mut Option<Consumer>) -> weir_client::Result<ConsumerRecord> {
    match consumer {
        Some(consumer) => consumer.recv().await,
        None => std::future::pending().await,
    }
}

/// What restoring a task needs of the instance; borrowed apart from it so that the restore's
/// future stays `Send` (the instance is not `Sync`).
struct Restorer<'a> {
    client: &'a Client,
    admin: &'a Admin,
    config: &'a StreamsConfig,
    prefix: &'a str,
}

impl Restorer<'_> {
    /// A consumer outside the group, for partitions it is assigned and positions it is told
    /// (changelog restores, global tables): it commits nothing.
    async fn assigned_consumer(&self) -> Result<Consumer, Error> {
        let config = ConsumerConfig {
            client: self.config.client.clone(),
            group_id: None,
            auto_offset_reset: OffsetReset::Earliest,
            enable_auto_commit: false,
            isolation_level: isolation_level(self.config),
            ..ConsumerConfig::default()
        };
        Ok(Consumer::from_client(self.client.clone(), config).await?)
    }

    /// Restores the task's stores: for a new task, first the records of its local `state`
    /// (if any), then partition `partition` of every changelog from the local state's
    /// checkpoint (or the start) to its end offset; for a promoted standby, whose stores are
    /// filled already, the changelogs from its positions. Logs progress per store. The
    /// changelog records read are written to the local state too, with checkpoints at the
    /// end offsets. A checkpoint outside a changelog's offsets (the topic was deleted or
    /// recreated) wipes the local state first, which is then rebuilt from the whole
    /// changelogs.
    async fn restore(
        &self,
        task: &mut Task,
        partition: i32,
        from: RestoreFrom,
    ) -> Result<Option<Arc<TaskState>>, Error> {
        let stores: Vec<String> = task.topology().restorers.keys().cloned().collect();
        if stores.is_empty() {
            return Ok(match from {
                RestoreFrom::LocalState(state) => state.map(Arc::new),
                RestoreFrom::Positions { state, .. } => state,
            });
        }
        let by_topic = changelog_stores(self.prefix, &stores);
        let partitions: Vec<TopicPartition> = by_topic
            .keys()
            .map(|topic| TopicPartition::new(topic.clone(), partition))
            .collect();
        let starts = self.list_offsets(&partitions, OffsetSpec::Earliest).await?;
        let ends = self.list_offsets(&partitions, OffsetSpec::Latest).await?;
        let (state, checkpoints) = match from {
            RestoreFrom::LocalState(Some(state)) => {
                let (state, checkpoints) = self
                    .load_local_state(task, partition, state, &stores, &starts, &ends)
                    .await?;
                (Some(state), checkpoints)
            }
            RestoreFrom::LocalState(None) => (None, HashMap::new()),
            RestoreFrom::Positions { state, positions } => (state, positions),
        };
        // Per changelog still being read: (store, start, end, records restored).
        let mut pending: HashMap<String, (String, i64, i64, u64)> = HashMap::new();
        for tp in &partitions {
            let store = by_topic.get(&tp.topic).cloned().unwrap_or_default();
            let first = starts.get(tp).copied().unwrap_or(0);
            let (start, end) = (
                checkpoints
                    .get(&tp.topic)
                    .copied()
                    .unwrap_or(first)
                    .max(first),
                ends.get(tp).copied().unwrap_or(0),
            );
            if end > start {
                tracing::info!(store = %store, partition, from = start, records = end - start,
                    "restoring state store from its changelog");
                pending.insert(tp.topic.clone(), (store, start, end, 0));
            }
        }
        // With local state, the changelog records read are kept in it, and the checkpoints
        // end at the end offsets (also of changelogs with nothing to read).
        let end_checkpoints: HashMap<String, i64> = partitions
            .iter()
            .map(|tp| (tp.topic.clone(), ends.get(tp).copied().unwrap_or(0)))
            .collect();
        let mut local = LocalWriter {
            state: state.clone(),
            records: Vec::new(),
            checkpoints: HashMap::new(),
        };
        if pending.is_empty() {
            local.checkpoints = end_checkpoints;
            local.flush().await?;
            return Ok(state);
        }
        let mut consumer = self.assigned_consumer().await?;
        let reading: Vec<TopicPartition> = pending
            .keys()
            .map(|topic| TopicPartition::new(topic.clone(), partition))
            .collect();
        consumer.assign(&reading)?;
        for tp in &reading {
            // From the local state's checkpoint, or the changelog's start.
            if let Some((_, start, _, _)) = pending.get(&tp.topic) {
                consumer.seek(tp, *start)?;
            }
        }
        let restore_failed = |store: &str, reason: String| Error::Restore {
            store: store.to_string(),
            partition,
            reason,
        };
        let started = Instant::now();
        while !pending.is_empty() {
            // A short wait, then the positions: a compacted changelog may end in a gap (its
            // last offsets compacted away), so reaching the end is the position, not a record.
            let record = match tokio::time::timeout(RESTORE_POLL, consumer.recv()).await {
                Ok(record) => record?,
                Err(_) => {
                    let topics: Vec<String> = pending.keys().cloned().collect();
                    for topic in topics {
                        let tp = TopicPartition::new(topic.clone(), partition);
                        let position = consumer.position(&tp).await?;
                        if let Some((store, start, end, restored)) = pending.get(&topic)
                            && position >= *end
                        {
                            tracing::info!(store = %store, partition, restored = *restored,
                                of = *end - *start, "state store restored");
                            pending.remove(&topic);
                        }
                    }
                    if !pending.is_empty() && started.elapsed() > self.config.restore_timeout {
                        let stores: Vec<&str> = pending.values().map(|p| p.0.as_str()).collect();
                        return Err(restore_failed(
                            &stores.join(", "),
                            format!("not at its end after {:?}", self.config.restore_timeout),
                        ));
                    }
                    continue;
                }
            };
            let Some((store, start, end, restored)) = pending.get_mut(&*record.topic) else {
                continue;
            };
            if record.offset < *end {
                let value = task.changelog_value(store, &record);
                task.restore(store, record.key.as_deref(), value.as_deref())?;
                task.count_restored(0, 1);
                local.keep(store, &record.topic, &record, value);
                if local.records.len() >= RESTORE_PROGRESS_EVERY as usize {
                    local.flush().await?;
                    // A persistent store restored larger than memory stays within it.
                    task.local_state_written();
                }
                *restored += 1;
                if *restored % RESTORE_PROGRESS_EVERY == 0 {
                    tracing::info!(store = %store, partition, restored = *restored,
                        of = *end - *start, "restoring state store");
                }
            }
            if record.offset + 1 >= *end {
                tracing::info!(store = %store, partition, restored = *restored,
                    of = *end - *start, "state store restored");
                pending.remove(&*record.topic);
            }
        }
        local.checkpoints = end_checkpoints;
        local.flush().await?;
        task.local_state_written();
        Ok(state)
    }

    /// Serves the task's persistent stores from the local `state` and puts its records of
    /// the other stores into them; returns the state with its checkpoints. A checkpoint
    /// outside its changelog's offsets (`starts`, `ends`) wipes the state first (Kafka's
    /// `OffsetOutOfRange` on restore), leaving nothing to load.
    async fn load_local_state(
        &self,
        task: &mut Task,
        partition: i32,
        state: TaskState,
        stores: &[String],
        starts: &HashMap<TopicPartition, i64>,
        ends: &HashMap<TopicPartition, i64>,
    ) -> Result<(Arc<TaskState>, HashMap<String, i64>), Error> {
        let path = state.path().to_path_buf();
        // Per changelog of the task: the offsets it has now. A changelog this topology no
        // longer has is not restored: its checkpoint does not matter.
        let ranges: HashMap<String, (i64, i64)> = starts
            .iter()
            .filter(|(tp, _)| tp.partition == partition)
            .map(|(tp, start)| {
                let end = ends.get(tp).copied().unwrap_or(0);
                (tp.topic.clone(), (*start, end))
            })
            .collect();
        // The persistent stores are read where they are; only the others are loaded.
        let persistent = match self.config.store_cache_max_entries {
            Some(_) => task.topology().persistent_stores.keys().cloned().collect(),
            None => BTreeSet::new(),
        };
        let loading: Vec<String> = stores
            .iter()
            .filter(|store| !persistent.contains(*store))
            .cloned()
            .collect();
        let (state, copy) = blocking(&path, move || {
            state.load_checked(&loading, |topic, offset| {
                ranges
                    .get(topic)
                    .is_some_and(|(start, end)| offset < *start || offset > *end)
            })
        })
        .await?;
        let state = Arc::new(state);
        let served = match self.config.store_cache_max_entries {
            Some(max_cached) => {
                let attached = task.attach_local_state(&state, max_cached);
                count_records(&state, attached).await?
            }
            None => 0,
        };
        let (records, checkpoints) = match copy {
            LocalCopy::Loaded {
                records,
                checkpoints,
            } => (records, checkpoints),
            LocalCopy::Wiped { name, offset } => {
                tracing::warn!(task = partition, changelog = %name, checkpoint = offset,
                    path = %path.display(),
                    "the local state's checkpoint is outside the changelog's offsets; wiped \
                     it, restoring the whole changelogs");
                return Ok((state, HashMap::new()));
            }
        };
        let mut loaded = 0;
        for (store, records) in records {
            loaded += records.len() as u64;
            for (key, value) in records {
                task.restore(&store, Some(&key), Some(&value))?;
            }
        }
        task.count_restored(loaded + served, 0);
        tracing::info!(task = partition, records = loaded, served_from_disk = served,
            path = %path.display(), "state stores restored from local state");
        Ok((state, checkpoints))
    }

    async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<HashMap<TopicPartition, i64>, Error> {
        // The admin client names partitions as (topic, partition) pairs.
        let specs: Vec<((String, i32), OffsetSpec)> = partitions
            .iter()
            .map(|tp| ((tp.topic.clone(), tp.partition), spec))
            .collect();
        let mut offsets = HashMap::new();
        for ((topic, partition), listed) in self.admin.list_offsets(&specs).await? {
            offsets.insert(TopicPartition::new(topic, partition), listed?.offset);
        }
        Ok(offsets)
    }
}

/// The fewest expired keys a commit deletes from a task's local state (when it writes fewer
/// records): a few milliseconds of redb's time.
const EXPIRED_PER_COMMIT: usize = 1000;

/// Deletions of expired keys from tasks' local state, by task.
type TaskDeletions = Vec<(i32, LocalRecord)>;

/// Splits the deletions of expired keys, in order, into those a commit makes now (per task,
/// as many as it writes records, `written`, or [`EXPIRED_PER_COMMIT`]) and those left for
/// later (of the tasks that are still `live`).
fn split_expired(
    expired: TaskDeletions,
    written: &BTreeMap<i32, usize>,
    live: impl Fn(i32) -> bool,
) -> (TaskDeletions, TaskDeletions) {
    let mut deleted: BTreeMap<i32, usize> = BTreeMap::new();
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for (task, record) in expired {
        let budget = written
            .get(&task)
            .copied()
            .unwrap_or(0)
            .max(EXPIRED_PER_COMMIT);
        let count = deleted.entry(task).or_default();
        if *count < budget {
            *count += 1;
            now.push((task, record));
        } else if live(task) {
            later.push((task, record));
        }
    }
    (now, later)
}

/// The full name of the changelog topic of `store` (its application's `prefix` before it).
fn changelog_topic(prefix: &str, store: &str) -> String {
    format!("{prefix}{store}-changelog")
}

/// The changelog topics of `stores`, each with its store.
fn changelog_stores(prefix: &str, stores: &[String]) -> HashMap<String, String> {
    stores
        .iter()
        .map(|store| (changelog_topic(prefix, store), store.clone()))
        .collect()
}

fn add_metrics(total: &mut TaskMetrics, more: TaskMetrics) {
    total.process_total += more.process_total;
    total.dropped_invalid_timestamp += more.dropped_invalid_timestamp;
    total.dropped_late += more.dropped_late;
    total.dropped_deserialization_errors += more.dropped_deserialization_errors;
    total.restored_from_changelog += more.restored_from_changelog;
    total.restored_from_local_state += more.restored_from_local_state;
    total.restore_time_ms += more.restore_time_ms;
    total.standby_applied += more.standby_applied;
    total.persistent_entries_in_memory += more.persistent_entries_in_memory;
}

/// How many records `state` holds for `stores`, together.
async fn count_records(state: &Arc<TaskState>, stores: Vec<String>) -> Result<u64, Error> {
    let counting = Arc::clone(state);
    blocking(state.path(), move || {
        stores
            .iter()
            .map(|store| counting.count(store))
            .sum::<Result<u64, Error>>()
    })
    .await
}

/// The metrics of a task that closed: its gauges no longer count.
fn retired(metrics: TaskMetrics) -> TaskMetrics {
    TaskMetrics {
        persistent_entries_in_memory: 0,
        ..metrics
    }
}

/// Writes what a restore reads from the changelogs into the task's local state, in write
/// transactions of [`RESTORE_PROGRESS_EVERY`] records: a restore interrupted midway keeps
/// what it wrote, with checkpoints that vouch for it.
struct LocalWriter {
    state: Option<Arc<TaskState>>,
    records: Vec<LocalRecord>,
    checkpoints: HashMap<String, i64>,
}

impl LocalWriter {
    /// Keeps `record` of `store`'s changelog `topic`, with `value`, its value as the task
    /// holds it ([`Task::changelog_value`]).
    fn keep(
        &mut self,
        store: &str,
        topic: &str,
        record: &weir_client::consumer::ConsumerRecord,
        value: Option<Bytes>,
    ) {
        if self.state.is_none() {
            return;
        }
        if let Some(key) = &record.key {
            self.records.push((store.to_string(), key.clone(), value));
        }
        self.checkpoints
            .insert(topic.to_string(), record.offset + 1);
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let Some(state) = self.state.clone() else {
            return Ok(());
        };
        if self.records.is_empty() && self.checkpoints.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.records);
        let checkpoints = std::mem::take(&mut self.checkpoints);
        let path = state.path().to_path_buf();
        blocking(&path, move || state.commit(&records, &checkpoints)).await
    }
}

/// The partition counts of user topics the topology reads or writes (`role`); a missing
/// topic refuses the start, as Kafka's `MissingSourceTopicException` for a source.
async fn topic_partition_counts(
    admin: &Admin,
    topics: &[String],
    role: &str,
) -> Result<BTreeMap<String, i32>, Error> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut counts = BTreeMap::new();
    for (name, described) in admin.describe_topics(&names).await? {
        let topic = described.map_err(|error| {
            Error::InvalidTopology(format!("{role} topic {name} cannot be read: {error}"))
        })?;
        counts.insert(name, topic.partitions.len() as i32);
    }
    Ok(counts)
}

/// The partition count of each internal topic: that of the user topics it must be
/// co-partitioned with (a foreign-key join's registration topic takes the right table's, as
/// a repartition topic joined with a user topic takes that topic's, in Kafka), else `tasks`.
fn internal_partition_counts(
    topology: &Topology,
    counts: &BTreeMap<String, i32>,
    tasks: i32,
) -> BTreeMap<String, i32> {
    let groups = topology.copartition_groups();
    topology
        .internal_topics()
        .into_iter()
        .map(|topic| {
            let count = groups
                .iter()
                .filter(|group| group.topics.contains(&topic.name))
                .flat_map(|group| &group.topics)
                .find_map(|member| counts.get(member).copied())
                .unwrap_or(tasks);
            (topic.name, count)
        })
        .collect()
}

/// Refuses topics that must be co-partitioned but have different partition counts, naming
/// the node and the topics. `counts` has every topic's, internal ones included.
fn check_copartitioning(topology: &Topology, counts: &BTreeMap<String, i32>) -> Result<(), Error> {
    for group in topology.copartition_groups() {
        let with_counts: Vec<(String, i32)> = group
            .topics
            .iter()
            .filter_map(|topic| Some((topic.clone(), *counts.get(topic)?)))
            .collect();
        let first = with_counts.first().map(|(_, count)| *count);
        if with_counts.iter().any(|(_, count)| Some(*count) != first) {
            let listed: Vec<String> = with_counts
                .iter()
                .map(|(topic, count)| format!("{topic} ({count} partitions)"))
                .collect();
            return Err(Error::InvalidTopology(format!(
                "{}: its source topics must be co-partitioned (equal partition counts), but \
                 they are {}",
                group.node,
                listed.join(", ")
            )));
        }
    }
    Ok(())
}

/// Creates the internal topics that do not exist yet: repartition topics and compacted
/// changelogs, each with its count in `counts`. One that exists with another partition count
/// is refused (its records would go to the wrong tasks).
async fn create_internal_topics(
    admin: &Admin,
    client: &Client,
    prefix: &str,
    topology: &Topology,
    counts: &BTreeMap<String, i32>,
) -> Result<(), Error> {
    let internal = topology.internal_topics();
    if internal.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = internal
        .iter()
        .map(|topic| format!("{prefix}{}", topic.name))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut missing = Vec::new();
    for ((name, described), topic) in admin
        .describe_topics(&refs)
        .await?
        .into_iter()
        .zip(&internal)
    {
        let needed = counts.get(&topic.name).copied().unwrap_or(1);
        match described {
            Ok(described) if described.partitions.len() as i32 == needed => {}
            Ok(described) => {
                return Err(Error::InvalidTopology(format!(
                    "internal topic {name} has {} partitions, the topology needs {needed}",
                    described.partitions.len()
                )));
            }
            Err(_) => {
                let new = NewTopic::new(name, needed);
                missing.push(match topic.kind {
                    InternalTopicKind::Changelog => new.config("cleanup.policy", "compact"),
                    // Kafka's repartition topic settings: purged by the application once
                    // committed (`repartition_purge_interval`), never by retention.
                    _ => new
                        .config("cleanup.policy", "delete")
                        .config("retention.ms", "-1")
                        .config("segment.bytes", "52428800"),
                });
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    for (name, created) in admin.create_topics(&missing).await? {
        match created {
            Ok(()) => tracing::info!(topic = %name, "created internal topic"),
            // Another instance may have created it first.
            Err(error) => tracing::debug!(topic = %name, %error, "internal topic not created"),
        }
    }
    for topic in &missing {
        for partition in 0..topic.num_partitions {
            client.leader_for(&topic.name, partition).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;

    /// A bulk expiry is spread over commits: each deletes as many keys as it writes records,
    /// or `EXPIRED_PER_COMMIT`, per task, oldest first; a dropped task's deletions go.
    #[test]
    fn expired_keys_are_deleted_a_commit_at_a_time() {
        let deletion = |i: usize| {
            (
                "windows".to_string(),
                bytes::Bytes::from(i.to_string()),
                None,
            )
        };
        let mut expired: Vec<(i32, crate::state::LocalRecord)> = Vec::new();
        for i in 0..2 * EXPIRED_PER_COMMIT + 10 {
            expired.push((0, deletion(i)));
            expired.push((1, deletion(i)));
            expired.push((2, deletion(i)));
        }
        // Task 1 writes many records in this commit; task 2 was dropped.
        let written = [(0, 3), (1, 2 * EXPIRED_PER_COMMIT)].into();
        let (now, later) = split_expired(expired, &written, |task| task != 2);
        let count = |list: &[(i32, crate::state::LocalRecord)], task| {
            list.iter().filter(|(t, _)| *t == task).count()
        };
        assert_eq!(count(&now, 0), EXPIRED_PER_COMMIT);
        assert_eq!(count(&now, 1), 2 * EXPIRED_PER_COMMIT);
        assert_eq!(count(&now, 2), EXPIRED_PER_COMMIT);
        assert_eq!(count(&later, 0), EXPIRED_PER_COMMIT + 10);
        assert_eq!(count(&later, 1), 10);
        assert_eq!(count(&later, 2), 0, "a dropped task's deletions go");
        // Oldest first: the first left for later follows the last deleted now.
        let first_later = later.iter().find(|(t, _)| *t == 0).unwrap();
        assert_eq!(first_later.1.1, EXPIRED_PER_COMMIT.to_string());
        // The next commit, writing nothing, takes the next ones.
        let (now, later) = split_expired(later, &BTreeMap::new(), |_| true);
        assert_eq!(count(&now, 0), EXPIRED_PER_COMMIT);
        assert_eq!(count(&later, 0), 10);
    }

    /// An internal topic takes the partition count of the user topics it must be
    /// co-partitioned with: a rekeyed stream joined with a 2-partition table goes through a
    /// 2-partition repartition topic, a foreign-key join's registration topic has the right
    /// table's count; the others have one partition per task.
    #[test]
    fn internal_topics_take_the_count_of_the_topics_they_are_copartitioned_with() {
        use crate::{Nullable, StreamsBuilder, StringSerde};

        let builder = StreamsBuilder::new();
        let customers = builder.table("customers", StringSerde, Nullable(StringSerde));
        builder
            .stream("payments", StringSerde, StringSerde)
            .select_key(|_, customer| customer.clone())
            .repartition_with(crate::Grouped::with(StringSerde, StringSerde))
            .join_table(&customers, |payment, customer| {
                format!("{payment}/{customer}")
            })
            .to("checked", StringSerde, StringSerde);
        let orders = builder.table("orders", StringSerde, Nullable(StringSerde));
        orders
            .join_foreign_key(&customers, String::clone, |order, name| {
                format!("{order}/{name}")
            })
            .to_stream()
            .to("joined", StringSerde, Nullable(StringSerde));
        let topology = builder.build().unwrap();
        let counts = BTreeMap::from([
            ("customers".to_string(), 2),
            ("payments".to_string(), 4),
            ("orders".to_string(), 4),
        ]);
        let internal = internal_partition_counts(&topology, &counts, 4);
        let of = |part: &str| -> Vec<i32> {
            internal
                .iter()
                .filter(|(name, _)| name.contains(part))
                .map(|(_, count)| *count)
                .collect()
        };
        assert_eq!(of("-repartition"), [2]);
        assert_eq!(of("REGISTRATION"), [2]);
        assert_eq!(of("RESPONSE"), [4]);
        assert_eq!(of("-changelog"), [4, 4, 4, 4], "{internal:?}");
        let mut all = counts.clone();
        all.extend(internal);
        check_copartitioning(&topology, &all).unwrap();
    }

    fn record(topic: &str, partition: i32, offset: i64, timestamp: i64) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from(topic),
            partition,
            offset,
            timestamp,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn warmup_settings_default_as_kafka_and_invalid_values_are_refused() {
        let config = StreamsConfig::new("app", "localhost:9092");
        assert_eq!(config.acceptable_recovery_lag, 10_000);
        assert_eq!(config.max_warmup_replicas, 2);
        assert_eq!(config.probing_rebalance_interval, Duration::from_secs(600));
        config.validate().unwrap();
        let refused = |config: StreamsConfig| match config.validate() {
            Err(Error::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let mut bad = config.clone();
        bad.max_warmup_replicas = 0;
        assert_eq!(refused(bad), "max.warmup.replicas");
        let mut bad = config.clone();
        bad.acceptable_recovery_lag = -1;
        assert_eq!(refused(bad), "acceptable.recovery.lag");
        let mut bad = config.clone();
        bad.probing_rebalance_interval = Duration::ZERO;
        assert_eq!(refused(bad), "probing.rebalance.interval.ms");
        let mut fine = config;
        fine.acceptable_recovery_lag = 0;
        fine.max_warmup_replicas = 1;
        fine.probing_rebalance_interval = Duration::from_millis(1);
        fine.validate().unwrap();
    }

    fn order(records: Vec<ConsumerRecord>) -> Vec<(String, i32, i64)> {
        in_timestamp_order(records)
            .into_iter()
            .map(|r| (r.topic.to_string(), r.partition, r.offset))
            .collect()
    }

    #[test]
    fn records_go_by_their_partitions_head_timestamps() {
        // The stream's records all arrived before the table's; the table update at 6 s must
        // come between the stream records at 5.5 s and 7 s.
        let received = vec![
            record("stream", 0, 0, 5_500),
            record("stream", 0, 1, 7_000),
            record("table", 0, 0, 1_000),
            record("table", 0, 1, 6_000),
        ];
        assert_eq!(
            order(received),
            [
                ("table".into(), 0, 0),
                ("stream".into(), 0, 0),
                ("table".into(), 0, 1),
                ("stream".into(), 0, 1),
            ]
        );
    }

    #[test]
    fn a_partitions_own_order_is_kept_and_ties_go_to_the_first_partition() {
        // Partition 0's records are out of order in time: 9 s stays before 2 s. At equal
        // head timestamps the partition that arrived first goes first.
        let received = vec![
            record("t", 0, 0, 9_000),
            record("t", 0, 1, 2_000),
            record("t", 1, 0, 9_000),
            record("t", 1, 1, 10_000),
        ];
        assert_eq!(
            order(received),
            [
                ("t".into(), 0, 0),
                ("t".into(), 0, 1),
                ("t".into(), 1, 0),
                ("t".into(), 1, 1),
            ]
        );
    }

    /// A task directory locked by another task waits for it, up to the timeout, then fails
    /// with a clear error; once released, the task opens it.
    #[tokio::test]
    async fn a_locked_task_directory_is_waited_for_then_refused() {
        let dir = tempfile::tempdir().unwrap();
        let task_dir = dir.path().join("app").join("0");
        let held = open_task_state(task_dir.clone(), Duration::ZERO)
            .await
            .unwrap();
        let started = Instant::now();
        let error = open_task_state(task_dir.clone(), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            matches!(&error, Error::StateLocked { path } if *path == task_dir),
            "{error}"
        );
        // Released while the next one waits: it gets the directory.
        let waiting = tokio::spawn(open_task_state(task_dir.clone(), Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(held);
        let state = waiting.await.unwrap().unwrap();
        assert!(state.path().starts_with(&task_dir));
    }
}
