//! Broker configuration with Kafka's property names.
//!
//! Sources, later ones winning: built-in defaults, a config file (`--config FILE`: TOML with
//! dotted keys, or a Kafka `server.properties` file), environment variables (`WEIR_` + the key
//! in upper case with `.` as `_`, e.g. `WEIR_LOG_DIRS`), and command-line flags, which
//! weir-cli's clap grammar has already turned into ordered `(key, value)` pairs
//! (`--log.dirs=DIR`, `--log.dirs DIR`, `--override log.dirs=DIR`). `server.properties` files
//! go through the `java-properties` crate (Java's full syntax). Names are classified
//! ([`classify`]): read by Weir, a Kafka broker property Weir ignores (a debug line), or
//! unknown (a warning at start, with the nearest known name within two edits).
//!
//! Every property the broker reads is parsed and checked here, once, into a typed field of
//! [`BrokerConfig`] (or of its [`GroupSettings`], [`TransactionSettings`] and
//! [`TopicDefaults`]); a bad value is an error naming the key, so the broker stops at start
//! instead of running on a silent default. Handlers read the typed fields only. The merged
//! strings survive as [`BrokerConfig::static_properties`], private and read-only, for one
//! reason: DescribeConfigs reports the static broker properties as the operator wrote them
//! (including Kafka properties Weir ignores). Nothing parses them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;
use weir_log::LogConfig;

/// A configuration problem, naming the key or file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value does not parse or is out of range.
    #[error("invalid value {value:?} for `{key}`: {reason}")]
    InvalidValue {
        /// The property name.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or properties.
    #[error("cannot parse config file {path}: {reason}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Everything the broker reads from its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `node.id`: this broker's id.
    pub node_id: i32,
    /// `listeners`: where clients connect (`PLAINTEXT://127.0.0.1:9092`).
    pub listener: SocketAddr,
    /// `advertised.listeners` (default: `listeners`): the host given to clients in Metadata,
    /// FindCoordinator and DescribeCluster, exactly as configured.
    pub advertised_host: String,
    /// Port given to clients in metadata.
    pub advertised_port: u16,
    /// `log.dirs`: data directories.
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions`: partitions of an auto-created topic.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `message.max.bytes`: largest record batch accepted.
    pub message_max_bytes: i32,
    /// `socket.request.max.bytes`: largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// `connections.max.idle.ms`: idle connections are closed after this.
    pub connections_max_idle_ms: u64,
    /// `max.connections`: open connections allowed at once.
    pub max_connections: usize,
    /// `queued.max.request.bytes`: bytes of requests (read or being read) the broker holds
    /// at once, over all connections (`None`: no cap, Kafka's -1). See `request_memory`.
    pub queued_max_request_bytes: Option<usize>,
    /// `weir.request.read.timeout.ms`: a request must arrive whole within this long of its
    /// first byte (time spent waiting for `queued.max.request.bytes` not counted), else its
    /// connection is closed.
    pub request_read_timeout_ms: u64,
    /// `weir.queued.max.response.bytes`: responses queued on one connection, in bytes, above
    /// which the broker stops reading that connection's requests until the client drains them.
    pub queued_max_response_bytes: usize,
    /// `fetch.max.bytes`: the broker's cap on a Fetch response, whatever the request asks.
    pub fetch_max_bytes: i32,
    /// `log.segment.bytes`.
    pub log_segment_bytes: u64,
    /// `log.retention.ms` (-1: forever).
    pub log_retention_ms: i64,
    /// `log.retention.bytes` (-1: unbounded).
    pub log_retention_bytes: i64,
    /// `log.flush.interval.messages`.
    pub log_flush_interval_messages: i64,
    /// `log.flush.interval.ms` (`None`: only `log.flush.interval.messages` and shutdown).
    pub log_flush_interval_ms: Option<i64>,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.retention.minutes`.
    pub offsets_retention_minutes: i64,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i64,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i64,
    /// `log.retention.check.interval.ms`: how often segments past `retention.ms` or
    /// `retention.bytes` are deleted.
    pub log_retention_check_interval_ms: u64,
    /// `log.cleaner.enable`: whether the log cleaner compacts `cleanup.policy=compact` topics.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`: how long the cleaner sleeps when no log needs cleaning.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: memory for the cleaner's key map in one pass.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `producer.id.expiration.ms`: an idempotent producer that has not appended for this long
    /// (by the broker's clock) is forgotten.
    pub producer_id_expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms`: how often idle producers are looked for.
    pub producer_id_expiration_check_interval_ms: u64,
    /// `weir.admin.listener`: the HTTP port for `/metrics` and `/health` (`None`: off).
    pub admin_listener: Option<SocketAddr>,
    /// `broker.session.timeout.ms`: a broker without a heartbeat for this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the controller.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.rack`: the rack, for rack-aware replica placement.
    pub broker_rack: Option<String>,
    /// `auto.leader.rebalance.enable`: the controller moves leadership back to preferred
    /// replicas when a broker's share of partitions it prefers but does not lead is too high.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often that share is checked.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage` (0 to 100): the share above which leadership
    /// moves back.
    pub leader_imbalance_per_broker_percentage: u8,
    /// The metadata quorum: `controller.quorum.voters` and this node's CONTROLLER listener.
    pub quorum: QuorumSettings,
    /// Replication settings.
    pub replication: ReplicationSettings,
    /// `weir.debug.fsync.journal` (Weir, tests only): partition logs go through
    /// `weir_log::SyncJournalFs`, journaling what was fsynced to `<first log dir>/fsync-journal`
    /// so a test can cut the data directory back to what a power loss would leave.
    pub debug_fsync_journal: bool,
    /// `weir.transaction.version` (Weir; Kafka sets it as a feature with `kafka-features.sh`):
    /// the `transaction.version` feature level finalized in ApiVersions, 0 to 2. At 2 (the
    /// default, as a new Kafka 4 cluster) clients that know KIP-890 part 2 use it: implicit
    /// partition adds and an epoch bump at every EndTxn. Every broker of a cluster should set
    /// the same level.
    pub transaction_version: i16,
    /// The group coordinator's `group.*` and `offsets.*` settings not listed above.
    pub groups: GroupSettings,
    /// The transaction coordinator's settings.
    pub transactions: TransactionSettings,
    /// The broker-level defaults of topic configs (`log.retention.ms`, `log.cleanup.policy`,
    /// `compression.type`, ...).
    pub topic_defaults: TopicDefaults,
    /// Every property given (file, environment, flags, after Kafka's aliases), as written.
    /// Private and only reported (DescribeConfigs' static broker configs): the typed fields
    /// are the configuration, and no code parses these strings.
    given: BTreeMap<String, String>,
}

/// The group coordinator's settings (Kafka's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// `group.max.size`: members a classic group admits.
    pub max_size: usize,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`: the longest metadata string an offset commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.commit.timeout.ms`: how long an offset commit waits for its write to
    /// replicate.
    pub offsets_commit_timeout_ms: u64,
}

/// The transaction coordinator's settings (Kafka's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSettings {
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    pub state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor`.
    pub state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr`.
    pub state_log_min_isr: i16,
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: a transactional id unused for this long is forgotten.
    pub transactional_id_expiration_ms: i64,
    /// `request.timeout.ms`: how long a coordinator's write waits for the high watermark.
    pub request_timeout_ms: u64,
}

/// `compression.type` as a broker or topic config: what the log stores batches as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Whatever the producer sent (Kafka's default).
    Producer,
    /// Not compressed.
    Uncompressed,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl CompressionType {
    /// Kafka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Uncompressed => "uncompressed",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for CompressionType {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "producer" => Self::Producer,
            "uncompressed" => Self::Uncompressed,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "lz4" => Self::Lz4,
            "zstd" => Self::Zstd,
            _ => return Err("expected producer, uncompressed, gzip, snappy, lz4 or zstd"),
        })
    }
}

/// The broker properties that set topic configs' defaults (each topic config of
/// `topic_config::CATALOG` with a broker synonym), typed. `min.insync.replicas` is
/// [`ReplicationSettings::min_insync_replicas`].
#[derive(Debug, Clone, PartialEq)]
pub struct TopicDefaults {
    /// The log configs (`log.retention.ms` → `retention.ms`, `log.cleanup.policy` →
    /// `cleanup.policy`, ...): what every topic's log config starts from. Properties left
    /// unset keep `LogConfig`'s defaults, which are Kafka's.
    pub log: LogConfig,
    /// `compression.type`.
    pub compression_type: CompressionType,
    /// `log.segment.delete.delay.ms` (`file.delete.delay.ms`).
    pub file_delete_delay_ms: i64,
    /// `log.cleaner.max.compaction.lag.ms` (`max.compaction.lag.ms`).
    pub max_compaction_lag_ms: i64,
    /// `log.preallocate` (`preallocate`).
    pub preallocate: bool,
    /// `log.roll.jitter.ms` (`segment.jitter.ms`).
    pub segment_jitter_ms: i64,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election_enable: bool,
}

/// How partitions replicate (Kafka's names, plus Weir's `durable.acks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long leaves the
    /// ISR.
    pub replica_lag_time_max_ms: i64,
    /// `min.insync.replicas`: the broker default of the topic config.
    pub min_insync_replicas: usize,
    /// `replica.fetch.max.bytes`: bytes a follower asks for per partition.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: bytes a follower asks for per fetch.
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits at the leader.
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.backoff.ms`: the pause after a failed fetch.
    pub replica_fetch_backoff_ms: u64,
    /// `offsets.topic.replication.factor`: replicas of `__consumer_offsets` (clamped to the
    /// live brokers when it is created).
    pub offsets_topic_replication_factor: i16,
    /// `durable.acks` (Weir): a replica counts towards the high watermark only for data it has
    /// fsynced, so acks=all survives every replica losing power at once. `false` is Kafka's
    /// behaviour: the high watermark follows the replicas' log end offsets, and fsyncs follow
    /// the flush policy.
    pub durable_acks: bool,
}

/// Defaults for a single embedded node on localhost.
pub(crate) const DEFAULTS: &[(&str, &str)] = &[
    ("node.id", "0"),
    ("listeners", "PLAINTEXT://127.0.0.1:9092"),
    ("log.dirs", "./weir-data"),
    ("num.partitions", "1"),
    ("auto.create.topics.enable", "true"),
    ("default.replication.factor", "1"),
    ("message.max.bytes", "1048588"),
    ("socket.request.max.bytes", "104857600"),
    ("connections.max.idle.ms", "600000"),
    ("max.connections", "10000"),
    ("queued.max.request.bytes", "268435456"),
    ("weir.request.read.timeout.ms", "30000"),
    ("weir.queued.max.response.bytes", "16777216"),
    ("fetch.max.bytes", "57671680"),
    ("log.segment.bytes", "1073741824"),
    ("log.retention.ms", "604800000"),
    ("log.retention.bytes", "-1"),
    ("log.flush.interval.messages", "9223372036854775807"),
    ("offsets.topic.num.partitions", "50"),
    ("offsets.retention.minutes", "10080"),
    ("group.initial.rebalance.delay.ms", "100"),
    ("group.min.session.timeout.ms", "6000"),
    ("group.max.session.timeout.ms", "1800000"),
    ("log.retention.check.interval.ms", "300000"),
    ("log.cleaner.enable", "true"),
    ("log.cleaner.backoff.ms", "15000"),
    ("log.cleaner.dedupe.buffer.size", "134217728"),
    ("producer.id.expiration.ms", "86400000"),
    ("producer.id.expiration.check.interval.ms", "600000"),
    ("weir.admin.listener", "127.0.0.1:9644"),
    ("broker.session.timeout.ms", "9000"),
    ("broker.heartbeat.interval.ms", "2000"),
    ("auto.leader.rebalance.enable", "true"),
    ("leader.imbalance.check.interval.seconds", "300"),
    ("leader.imbalance.per.broker.percentage", "10"),
    ("replica.lag.time.max.ms", "30000"),
    ("min.insync.replicas", "1"),
    ("replica.fetch.max.bytes", "1048576"),
    ("replica.fetch.response.max.bytes", "10485760"),
    ("replica.fetch.wait.max.ms", "500"),
    ("replica.fetch.backoff.ms", "1000"),
    ("offsets.topic.replication.factor", "3"),
    ("durable.acks", "true"),
    ("weir.debug.fsync.journal", "false"),
    ("weir.transaction.version", "2"),
    ("group.max.size", "2147483647"),
    ("offsets.retention.check.interval.ms", "600000"),
    ("offset.metadata.max.bytes", "4096"),
    ("offsets.commit.timeout.ms", "5000"),
    ("transaction.state.log.num.partitions", "50"),
    ("transaction.state.log.replication.factor", "3"),
    ("transaction.state.log.min.isr", "2"),
    ("transaction.max.timeout.ms", "900000"),
    ("transactional.id.expiration.ms", "604800000"),
    // How long a coordinator's write waits for the high watermark.
    ("request.timeout.ms", "30000"),
];

/// Properties Weir reads besides [`DEFAULTS`] and the topic defaults
/// (`topic_config::CATALOG`'s broker synonyms), with the value their absence stands for
/// (`None`: absence means something else, given in the comment), so DescribeConfigs can list
/// them all.
pub(crate) const OTHER_PROPERTIES: &[(&str, Option<&str>)] = &[
    // Follows `listeners`.
    ("advertised.listeners", None),
    ("process.roles", Some("broker,controller")),
    ("controller.listener.names", Some("CONTROLLER")),
    // This node alone.
    ("controller.quorum.voters", None),
    ("controller.quorum.bootstrap.servers", None),
    ("broker.rack", None),
    // `log.dirs` wins; Kafka's single-directory form.
    ("log.dir", None),
    // `log.retention.ms` wins over minutes, minutes over hours, as in Kafka.
    ("log.retention.minutes", None),
    ("log.retention.hours", Some("168")),
    // `log.roll.ms` wins.
    ("log.roll.hours", Some("168")),
];

/// Kafka broker properties Weir accepts and ignores (threads, socket buffers, security,
/// quotas, tiered storage, ...): a real Kafka `server.properties` carries them, so they get a
/// debug line, not a warning.
const KAFKA_IGNORED: &[&str] = &[
    "alter.config.policy.class.name",
    "alter.log.dirs.replication.quota.window.num",
    "alter.log.dirs.replication.quota.window.size.seconds",
    "authorizer.class.name",
    "allow.everyone.if.no.acl.found",
    "auto.include.jmx.reporter",
    "background.threads",
    "client.quota.callback.class",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "config.providers",
    "connection.failed.authentication.delay.ms",
    "connections.max.reauth.ms",
    "controlled.shutdown.enable",
    "controlled.shutdown.max.retries",
    "controlled.shutdown.retry.backoff.ms",
    "create.topic.policy.class.name",
    "delete.records.purgatory.purge.interval.requests",
    "delete.topic.enable",
    "early.start.listeners",
    "eligible.leader.replicas.enable",
    "fetch.purgatory.purge.interval.requests",
    "initial.broker.registration.timeout.ms",
    "inter.broker.listener.name",
    "inter.broker.protocol.version",
    "kafka.metrics.polling.interval.secs",
    "kafka.metrics.reporters",
    "listener.security.protocol.map",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.threads",
    "log.dir.failure.timeout.ms",
    "log.flush.offset.checkpoint.interval.ms",
    "log.flush.scheduler.interval.ms",
    "log.flush.start.offset.checkpoint.interval.ms",
    "log.index.size.max.bytes",
    "log.initial.task.delay.ms",
    "log.message.downconversion.enable",
    "log.message.timestamp.after.max.ms",
    "log.message.timestamp.before.max.ms",
    "log.roll.jitter.hours",
    "max.connection.creation.rate",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "max.incremental.fetch.session.cache.slots",
    "max.request.partition.size.limit",
    "metadata.log.dir",
    "metadata.log.max.record.bytes.between.snapshots",
    "metadata.log.max.snapshot.interval.ms",
    "metadata.log.segment.bytes",
    "metadata.log.segment.ms",
    "metadata.max.idle.interval.ms",
    "metadata.max.retention.bytes",
    "metadata.max.retention.ms",
    "metric.reporters",
    "metrics.num.samples",
    "metrics.recording.level",
    "metrics.sample.window.ms",
    "node.id.generation.enable",
    "num.io.threads",
    "num.network.threads",
    "num.recovery.threads.per.data.dir",
    "num.replica.alter.log.dirs.threads",
    "num.replica.fetchers",
    "offsets.load.buffer.size",
    "offsets.topic.compression.codec",
    "offsets.topic.segment.bytes",
    "principal.builder.class",
    "producer.purgatory.purge.interval.requests",
    "queued.max.requests",
    "replica.fetch.min.bytes",
    "replica.high.watermark.checkpoint.interval.ms",
    "replica.selector.class",
    "replica.socket.receive.buffer.bytes",
    "replica.socket.timeout.ms",
    "replication.quota.window.num",
    "replication.quota.window.size.seconds",
    "reserved.broker.max.id",
    "security.inter.broker.protocol",
    "security.providers",
    "socket.connection.setup.timeout.max.ms",
    "socket.connection.setup.timeout.ms",
    "socket.listen.backlog.size",
    "socket.receive.buffer.bytes",
    "socket.send.buffer.bytes",
    "super.users",
    "telemetry.max.bytes",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.partition.verification.enable",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
    "transaction.state.log.load.buffer.size",
    "transaction.state.log.segment.bytes",
    "unstable.api.versions.enable",
    "unstable.feature.versions.enable",
];

/// Families of Kafka broker properties Weir ignores, by prefix (TLS, SASL, per-listener
/// settings, share groups, tiered storage, quotas, the KIP-848 group coordinator, the
/// controller's Raft tuning).
const KAFKA_IGNORED_PREFIXES: &[&str] = &[
    "controller.quorum.",
    "delegation.token.",
    "group.consumer.",
    "group.coordinator.",
    "group.share.",
    "listener.name.",
    "log.local.",
    "metrics.",
    "quota.",
    "remote.",
    "sasl.",
    "share.",
    "ssl.",
];

/// What Weir makes of a property name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PropertyName {
    /// Weir reads it.
    Read,
    /// A Kafka broker property Weir ignores.
    KafkaIgnored,
    /// Neither: most likely a typo, so the broker warns, naming the nearest known property
    /// within two edits.
    Unknown {
        /// The property it is most likely a misspelling of.
        did_you_mean: Option<&'static str>,
    },
}

/// Every property name Weir reads.
pub(crate) fn read_properties() -> impl Iterator<Item = &'static str> {
    DEFAULTS
        .iter()
        .map(|(k, _)| *k)
        .chain(OTHER_PROPERTIES.iter().map(|(k, _)| *k))
        .chain(
            crate::topic_config::CATALOG
                .iter()
                .filter_map(|d| d.broker_synonym),
        )
}

/// Classifies a property name (see [`PropertyName`]).
pub(crate) fn classify(name: &str) -> PropertyName {
    if read_properties().any(|k| k == name) {
        return PropertyName::Read;
    }
    if KAFKA_IGNORED.contains(&name) || KAFKA_IGNORED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return PropertyName::KafkaIgnored;
    }
    let did_you_mean = read_properties()
        .chain(KAFKA_IGNORED.iter().copied())
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k);
    PropertyName::Unknown { did_you_mean }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        // The defaults are constants that parse; fall back field by field if they ever don't.
        Self::from_properties(BTreeMap::new()).unwrap_or_else(|_| Self::fallback())
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The built-in value of a property Weir reads: [`DEFAULTS`], else the default of the stored
/// topic config it sets.
fn builtin_default(key: &str) -> Option<&'static str> {
    DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .or_else(|| {
            crate::topic_config::def_by_broker_key(key)
                .and_then(crate::topic_config::stored_default)
        })
}

/// The value of `key`: given, else built in.
fn value_of(props: &BTreeMap<String, String>, key: &str) -> String {
    props
        .get(key)
        .map(String::as_str)
        .or_else(|| builtin_default(key))
        .unwrap_or_default()
        .to_string()
}

fn parse<T: std::str::FromStr>(
    props: &BTreeMap<String, String>,
    key: &str,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let value = value_of(props, key);
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| invalid(key, &value, e.to_string()))
}

/// An integer property within `min..=max`, converted to the type its user holds it in.
fn int_in<T: TryFrom<i64>>(
    props: &BTreeMap<String, String>,
    key: &str,
    min: i64,
    max: i64,
) -> Result<T, ConfigError> {
    let value: i64 = parse(props, key)?;
    let reason = match (min, max) {
        (0, i64::MAX) => "must not be negative".to_string(),
        (1, i64::MAX) => "must be positive".to_string(),
        (1, max) => format!("must be positive and at most {max}"),
        (min, max) => format!("must be from {min} to {max}"),
    };
    if !(min..=max).contains(&value) {
        return Err(invalid(key, &value_of(props, key), reason));
    }
    T::try_from(value).map_err(|_| invalid(key, &value_of(props, key), reason))
}

impl GroupSettings {
    fn parse(props: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        Ok(Self {
            max_size: int_in(props, "group.max.size", 1, i64::from(i32::MAX))?,
            offsets_retention_check_interval_ms: int_in(
                props,
                "offsets.retention.check.interval.ms",
                1,
                i64::MAX,
            )?,
            offset_metadata_max_bytes: int_in(
                props,
                "offset.metadata.max.bytes",
                0,
                i64::from(i32::MAX),
            )?,
            offsets_commit_timeout_ms: int_in(
                props,
                "offsets.commit.timeout.ms",
                1,
                i64::from(i32::MAX),
            )?,
        })
    }
}

impl TransactionSettings {
    fn parse(props: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let int = i64::from(i32::MAX);
        let short = i64::from(i16::MAX);
        Ok(Self {
            state_log_num_partitions: int_in(
                props,
                "transaction.state.log.num.partitions",
                1,
                int,
            )?,
            state_log_replication_factor: int_in(
                props,
                "transaction.state.log.replication.factor",
                1,
                short,
            )?,
            state_log_min_isr: int_in(props, "transaction.state.log.min.isr", 1, short)?,
            max_timeout_ms: int_in(props, "transaction.max.timeout.ms", 1, int)?,
            // A long in Kafka, bounded as an int here: the coordinator's timers add it to now.
            transactional_id_expiration_ms: int_in(
                props,
                "transactional.id.expiration.ms",
                1,
                int,
            )?,
            request_timeout_ms: int_in(props, "request.timeout.ms", 1, int)?,
        })
    }
}

impl TopicDefaults {
    fn parse(props: &BTreeMap<String, String>, segment_bytes: u64) -> Result<Self, ConfigError> {
        let mut log = LogConfig::default();
        for def in crate::topic_config::CATALOG {
            let Some(key) = def.broker_synonym else {
                continue;
            };
            if !crate::topic_config::is_log_config(def.name) {
                continue;
            }
            // `log.segment.bytes` is read as a long; the log caps it at 4 GiB instead of
            // refusing a larger one.
            let value = if key == "log.segment.bytes" {
                segment_bytes.min(u64::from(u32::MAX)).to_string()
            } else {
                match props.get(key) {
                    Some(value) => value.clone(),
                    None => continue,
                }
            };
            log.set(def.name, &value).map_err(|e| match e {
                weir_log::Error::InvalidConfig { reason, .. } => invalid(key, &value, reason),
                other => invalid(key, &value, other.to_string()),
            })?;
        }
        Ok(Self {
            log,
            compression_type: parse(props, "compression.type")?,
            file_delete_delay_ms: int_in(props, "log.segment.delete.delay.ms", 0, i64::MAX)?,
            max_compaction_lag_ms: int_in(props, "log.cleaner.max.compaction.lag.ms", 1, i64::MAX)?,
            preallocate: parse(props, "log.preallocate")?,
            segment_jitter_ms: int_in(props, "log.roll.jitter.ms", 0, i64::MAX)?,
            unclean_leader_election_enable: parse(props, "unclean.leader.election.enable")?,
        })
    }

    /// The value of a stored (not log) topic config's broker default, as Kafka spells it.
    pub(crate) fn stored_value(&self, topic_config: &str) -> Option<String> {
        Some(match topic_config {
            "compression.type" => self.compression_type.as_str().to_string(),
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "preallocate" => self.preallocate.to_string(),
            "segment.jitter.ms" => self.segment_jitter_ms.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            _ => return None,
        })
    }
}

fn positive<T: PartialOrd + Default + Copy>(
    key: &str,
    value: T,
    text: &str,
) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(invalid(key, text, "must be positive"))
    }
}

/// Parses `PLAINTEXT://host:port` (or plain `host:port`) into host and port; the host is
/// returned as written (brackets of an IPv6 literal removed), empty when none is given.
fn parse_listener(key: &str, value: &str) -> Result<(String, u16), ConfigError> {
    let first = value.split(',').next().unwrap_or_default().trim();
    let address = match first.split_once("://") {
        Some((protocol, rest)) => {
            if !protocol.eq_ignore_ascii_case("PLAINTEXT") {
                return Err(invalid(
                    key,
                    value,
                    "only PLAINTEXT listeners are supported",
                ));
            }
            rest
        }
        None => first,
    };
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, value, "expected host:port"))?;
    let port = port
        .parse()
        .map_err(|_| invalid(key, value, "port must be a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

impl ReplicationSettings {
    fn parse(props: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let int = i64::from(i32::MAX);
        Ok(Self {
            replica_lag_time_max_ms: int_in(props, "replica.lag.time.max.ms", 1, i64::MAX)?,
            min_insync_replicas: int_in(props, "min.insync.replicas", 1, int)?,
            replica_fetch_max_bytes: int_in(props, "replica.fetch.max.bytes", 1, int)?,
            replica_fetch_response_max_bytes: int_in(
                props,
                "replica.fetch.response.max.bytes",
                1,
                int,
            )?,
            replica_fetch_wait_max_ms: int_in(props, "replica.fetch.wait.max.ms", 1, int)?,
            replica_fetch_backoff_ms: int_in(props, "replica.fetch.backoff.ms", 1, i64::MAX)?,
            offsets_topic_replication_factor: int_in(
                props,
                "offsets.topic.replication.factor",
                1,
                i64::from(i16::MAX),
            )?,
            durable_acks: parse(props, "durable.acks")?,
        })
    }
}

/// The metadata quorum as this node is configured (KRaft's property names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSettings {
    /// `controller.quorum.voters`: node id → `host:port` of its CONTROLLER listener. Without
    /// the property: this node alone, a one-voter quorum that needs no listener.
    pub voters: BTreeMap<u64, String>,
    /// This node's CONTROLLER listener (the `listeners` entry named by
    /// `controller.listener.names`), if it has one.
    pub controller_listener: Option<SocketAddr>,
    /// `controller.quorum.bootstrap.servers`: controllers a broker-only node asks first (it
    /// learns the voters from their answer), or, on a controller with no
    /// `controller.quorum.voters`, its own CONTROLLER listener (a standalone quorum).
    pub bootstrap_servers: Vec<String>,
    /// `process.roles`.
    pub roles: ProcessRoles,
}

/// `process.roles`: what this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    /// Serves clients, holds partitions (`broker`).
    pub broker: bool,
    /// Is a voter of the metadata quorum and may be the active controller (`controller`).
    pub controller: bool,
}

impl ProcessRoles {
    /// `broker,controller`: the default, and the embedded single node.
    pub const COMBINED: ProcessRoles = ProcessRoles {
        broker: true,
        controller: true,
    };

    fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut roles = ProcessRoles {
            broker: false,
            controller: false,
        };
        for role in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let seen = match role {
                "broker" => std::mem::replace(&mut roles.broker, true),
                "controller" => std::mem::replace(&mut roles.controller, true),
                other => {
                    return Err(invalid(
                        "process.roles",
                        text,
                        format!("unknown role {other:?}: expected broker, controller or both"),
                    ));
                }
            };
            if seen {
                return Err(invalid(
                    "process.roles",
                    text,
                    format!("{role} is listed twice"),
                ));
            }
        }
        if !roles.broker && !roles.controller {
            return Err(invalid(
                "process.roles",
                text,
                "expected broker, controller or broker,controller",
            ));
        }
        Ok(roles)
    }
}

impl QuorumSettings {
    /// A one-voter quorum of node `node_id`: the embedded single node.
    pub fn single(node_id: i32) -> Self {
        Self {
            voters: BTreeMap::from([(u64::try_from(node_id).unwrap_or(0), String::new())]),
            controller_listener: None,
            bootstrap_servers: Vec::new(),
            roles: ProcessRoles::COMBINED,
        }
    }

    fn parse(
        props: &BTreeMap<String, String>,
        listeners: &str,
        controller_names: &[String],
        roles: ProcessRoles,
    ) -> Result<Self, ConfigError> {
        let controller_listener = match listeners.split(',').map(str::trim).find(|entry| {
            listener_name(entry).is_some_and(|n| controller_names.iter().any(|c| c == n))
        }) {
            Some(entry) => {
                let (_, address) = entry.split_once("://").unwrap_or(("", entry));
                let (host, port) = address
                    .rsplit_once(':')
                    .ok_or_else(|| invalid("listeners", listeners, "expected NAME://host:port"))?;
                let host = match host.trim_start_matches('[').trim_end_matches(']') {
                    "" => "0.0.0.0",
                    "localhost" => "127.0.0.1",
                    h => h,
                };
                let port: u16 = port.parse().map_err(|_| {
                    invalid(
                        "listeners",
                        listeners,
                        "port must be a number from 0 to 65535",
                    )
                })?;
                Some(
                    format!("{host}:{port}")
                        .parse()
                        .or_else(|_| format!("[{host}]:{port}").parse())
                        .map_err(|_| {
                            invalid(
                                "listeners",
                                listeners,
                                "a CONTROLLER listener host must be an IP address or localhost",
                            )
                        })?,
                )
            }
            None => None,
        };
        let mut voters = BTreeMap::new();
        if let Some(text) = props.get("controller.quorum.voters") {
            for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let bad = || {
                    invalid(
                        "controller.quorum.voters",
                        text,
                        "expected id@host:port,...",
                    )
                };
                let (id, address) = entry.split_once('@').ok_or_else(bad)?;
                let id: u64 = id.trim().parse().map_err(|_| bad())?;
                let address = address.trim();
                if address
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    return Err(bad());
                }
                if voters.insert(id, address.to_string()).is_some() {
                    return Err(invalid(
                        "controller.quorum.voters",
                        text,
                        format!("node id {id} appears twice"),
                    ));
                }
            }
        }
        let mut bootstrap_servers = Vec::new();
        if let Some(text) = props.get("controller.quorum.bootstrap.servers") {
            for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                if entry
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    return Err(invalid(
                        "controller.quorum.bootstrap.servers",
                        text,
                        "expected host:port,...",
                    ));
                }
                bootstrap_servers.push(entry.to_string());
            }
        }
        Ok(Self {
            voters,
            controller_listener,
            bootstrap_servers,
            roles,
        })
    }

    /// Fills in the one-voter default and checks the settings against `node_id`.
    fn check(&mut self, node_id: i32) -> Result<(), ConfigError> {
        let id = u64::try_from(node_id)
            .map_err(|_| invalid("node.id", &node_id.to_string(), "must not be negative"))?;
        if !self.roles.controller {
            return self.check_broker_only(node_id, id);
        }
        if self.voters.is_empty() {
            match self.bootstrap_servers.as_slice() {
                [] => {
                    self.voters.insert(id, String::new());
                    if !self.roles.broker && self.controller_listener.is_none() {
                        return Err(invalid(
                            "listeners",
                            "",
                            "a controller-only node needs a CONTROLLER listener \
                             (listeners=CONTROLLER://host:port)",
                        ));
                    }
                    return Ok(());
                }
                // Kafka's sample server.properties: the node's own CONTROLLER listener as the
                // only bootstrap server, formatted with `kafka-storage format --standalone`.
                [own]
                    if self.controller_listener.is_some_and(|l| {
                        own.rsplit_once(':')
                            .and_then(|(_, p)| p.parse::<u16>().ok())
                            == Some(l.port())
                    }) =>
                {
                    self.voters.insert(id, own.clone());
                    return Ok(());
                }
                _ => {
                    return Err(invalid(
                        "controller.quorum.bootstrap.servers",
                        &self.bootstrap_servers.join(","),
                        "a controller joining other controllers needs controller.quorum.voters \
                         (Weir has static quorums; adding voters at run time, KIP-853, is not \
                         supported); a controller alone may name only its own CONTROLLER \
                         listener here",
                    ));
                }
            }
        }
        let voters = self
            .voters
            .iter()
            .map(|(id, a)| format!("{id}@{a}"))
            .collect::<Vec<_>>()
            .join(",");
        if !self.voters.contains_key(&id) {
            return Err(invalid(
                "controller.quorum.voters",
                &voters,
                format!("this node (node.id={node_id}) is a controller but not one of the voters"),
            ));
        }
        if self.voters.len() > 1 && self.controller_listener.is_none() {
            return Err(invalid(
                "listeners",
                &voters,
                "a controller of a quorum with several voters needs a CONTROLLER listener \
                 (listeners=PLAINTEXT://...,CONTROLLER://host:port)",
            ));
        }
        if !self.roles.broker && self.controller_listener.is_none() {
            return Err(invalid(
                "listeners",
                &voters,
                "a controller-only node needs a CONTROLLER listener \
                 (listeners=CONTROLLER://host:port)",
            ));
        }
        Ok(())
    }

    /// A broker-only node follows the voters: it must know where some are, and must not be
    /// one of them.
    fn check_broker_only(&self, node_id: i32, id: u64) -> Result<(), ConfigError> {
        if self.voters.contains_key(&id) {
            return Err(invalid(
                "process.roles",
                "broker",
                format!(
                    "node.id={node_id} is one of controller.quorum.voters, so this node must \
                     have the controller role (process.roles=broker,controller)"
                ),
            ));
        }
        if self.voters.is_empty() && self.bootstrap_servers.is_empty() {
            return Err(invalid(
                "process.roles",
                "broker",
                "a broker-only node needs controller.quorum.voters or \
                 controller.quorum.bootstrap.servers to find the controllers",
            ));
        }
        Ok(())
    }
}

/// `controller.listener.names` (default `CONTROLLER`).
fn controller_listener_names(props: &BTreeMap<String, String>) -> Vec<String> {
    props
        .get("controller.listener.names")
        .map_or("CONTROLLER", String::as_str)
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The listener name of a `NAME://host:port` entry.
fn listener_name(entry: &str) -> Option<&str> {
    entry.split_once("://").map(|(name, _)| name.trim())
}

/// `listeners` without the controller listeners: what clients connect to.
fn listeners_except(listeners: &str, controller_names: &[String]) -> String {
    listeners
        .split(',')
        .map(str::trim)
        .filter(|entry| {
            !listener_name(entry).is_some_and(|n| controller_names.iter().any(|c| c == n))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The host clients are given for a listener, as Kafka chooses it: the host exactly as
/// configured (clients that verify TLS host names or compare broker addresses rely on it), the
/// machine's host name when none is given, and never a wildcard address, which no client can
/// connect to.
fn advertised_host(key: &str, value: &str, host: &str) -> Result<String, ConfigError> {
    if host.is_empty() {
        return Ok(machine_host_name());
    }
    if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        return Err(invalid(
            key,
            value,
            "a wildcard address cannot be advertised to clients; set advertised.listeners to a \
             host or address they can reach",
        ));
    }
    Ok(host.to_string())
}

/// The machine's host name (uname's node name), what an empty listener host advertises.
fn machine_host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    // A machine without a host name still needs something clients can resolve.
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

impl BrokerConfig {
    fn fallback() -> Self {
        Self {
            node_id: 0,
            listener: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            log_dirs: vec![PathBuf::from("./weir-data")],
            num_partitions: 1,
            auto_create_topics_enable: true,
            default_replication_factor: 1,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            connections_max_idle_ms: 600_000,
            max_connections: 10_000,
            queued_max_request_bytes: Some(256 << 20),
            request_read_timeout_ms: 30_000,
            queued_max_response_bytes: 16 << 20,
            fetch_max_bytes: 57_671_680,
            log_segment_bytes: 1 << 30,
            log_retention_ms: 604_800_000,
            log_retention_bytes: -1,
            log_flush_interval_messages: i64::MAX,
            log_flush_interval_ms: None,
            offsets_topic_num_partitions: 50,
            offsets_retention_minutes: 10_080,
            group_initial_rebalance_delay_ms: 100,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            log_retention_check_interval_ms: 300_000,
            log_cleaner_enable: true,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_size: 128 << 20,
            producer_id_expiration_ms: 86_400_000,
            producer_id_expiration_check_interval_ms: 600_000,
            admin_listener: None,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            broker_rack: None,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
            quorum: QuorumSettings::single(0),
            replication: ReplicationSettings {
                replica_lag_time_max_ms: 30_000,
                min_insync_replicas: 1,
                replica_fetch_max_bytes: 1 << 20,
                replica_fetch_response_max_bytes: 10 << 20,
                replica_fetch_wait_max_ms: 500,
                replica_fetch_backoff_ms: 1_000,
                offsets_topic_replication_factor: 3,
                durable_acks: true,
            },
            debug_fsync_journal: false,
            transaction_version: 2,
            groups: GroupSettings {
                max_size: 2_147_483_647,
                offsets_retention_check_interval_ms: 600_000,
                offset_metadata_max_bytes: 4096,
                offsets_commit_timeout_ms: 5_000,
            },
            transactions: TransactionSettings {
                state_log_num_partitions: 50,
                state_log_replication_factor: 3,
                state_log_min_isr: 2,
                max_timeout_ms: 900_000,
                transactional_id_expiration_ms: 604_800_000,
                request_timeout_ms: 30_000,
            },
            topic_defaults: TopicDefaults {
                log: LogConfig::default(),
                compression_type: CompressionType::Producer,
                file_delete_delay_ms: 60_000,
                max_compaction_lag_ms: i64::MAX,
                preallocate: false,
                segment_jitter_ms: 0,
                unclean_leader_election_enable: false,
            },
            given: BTreeMap::new(),
        }
    }

    /// Every property given (file, environment, flags; Kafka's aliases resolved), as written:
    /// for reporting only (DescribeConfigs' static broker configs). Read the typed fields for
    /// the values.
    pub(crate) fn static_properties(&self) -> &BTreeMap<String, String> {
        &self.given
    }

    /// Whether property `key` was given (rather than left at its default).
    pub(crate) fn is_static(&self, key: &str) -> bool {
        self.given.contains_key(key)
    }

    /// Builds the config from merged properties (missing keys take their defaults).
    pub fn from_properties(mut props: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        apply_kafka_aliases(&mut props)?;
        let get = |key: &str| value_of(&props, key);
        let controller_names = controller_listener_names(&props);
        let listeners = get("listeners");
        let mut client_listeners = listeners_except(&listeners, &controller_names);
        let roles = match props.get("process.roles") {
            Some(text) => ProcessRoles::parse(text)?,
            None => ProcessRoles::COMBINED,
        };
        if !roles.broker && client_listeners.is_empty() {
            // A controller-only node serves no clients; this address is never bound.
            client_listeners = "PLAINTEXT://127.0.0.1:0".into();
        }
        let (host, port) = parse_listener("listeners", &client_listeners)?;
        let listener: SocketAddr = match (host.as_str(), port) {
            // No host: every interface, as in Kafka.
            ("", p) => SocketAddr::from(([0, 0, 0, 0], p)),
            ("localhost", p) => SocketAddr::from(([127, 0, 0, 1], p)),
            (h, p) => format!("{h}:{p}")
                .parse()
                .or_else(|_| format!("[{h}]:{p}").parse())
                .map_err(|_| {
                    invalid(
                        "listeners",
                        &listeners,
                        "host must be an IP address or localhost",
                    )
                })?,
        };
        // Without `advertised.listeners` the listener is advertised as written (`localhost`
        // stays `localhost`), not as the address it was bound to.
        let (advertised_key, advertised_value) = match props.get("advertised.listeners") {
            // Kafka's sample files advertise the CONTROLLER listener too; clients get the rest.
            Some(adv) if !listeners_except(adv, &controller_names).is_empty() => (
                "advertised.listeners",
                listeners_except(adv, &controller_names),
            ),
            _ => ("listeners", client_listeners.clone()),
        };
        let (host, advertised_port) = parse_listener(advertised_key, &advertised_value)?;
        let advertised_host = advertised_host(advertised_key, &advertised_value, &host)?;
        let log_dirs: Vec<PathBuf> = get("log.dirs")
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        if log_dirs.is_empty() {
            return Err(invalid(
                "log.dirs",
                &get("log.dirs"),
                "needs at least one directory",
            ));
        }
        let admin = get("weir.admin.listener");
        let admin_listener =
            if admin.trim().is_empty() || admin.trim() == "none" {
                None
            } else {
                Some(admin.trim().parse().map_err(|_| {
                    invalid("weir.admin.listener", &admin, "expected ip:port or none")
                })?)
            };
        let flush_ms = props.get("log.flush.interval.ms");
        let log_segment_bytes = positive(
            "log.segment.bytes",
            parse(&props, "log.segment.bytes")?,
            &get("log.segment.bytes"),
        )?;
        let mut config = Self {
            node_id: parse(&props, "node.id")?,
            listener,
            advertised_host,
            advertised_port,
            log_dirs,
            num_partitions: positive(
                "num.partitions",
                parse(&props, "num.partitions")?,
                &get("num.partitions"),
            )?,
            auto_create_topics_enable: parse(&props, "auto.create.topics.enable")?,
            default_replication_factor: positive(
                "default.replication.factor",
                parse(&props, "default.replication.factor")?,
                &get("default.replication.factor"),
            )?,
            message_max_bytes: positive(
                "message.max.bytes",
                parse(&props, "message.max.bytes")?,
                &get("message.max.bytes"),
            )?,
            socket_request_max_bytes: positive(
                "socket.request.max.bytes",
                parse(&props, "socket.request.max.bytes")?,
                &get("socket.request.max.bytes"),
            )?,
            connections_max_idle_ms: parse(&props, "connections.max.idle.ms")?,
            max_connections: positive(
                "max.connections",
                parse(&props, "max.connections")?,
                &get("max.connections"),
            )?,
            queued_max_request_bytes: match parse::<i64>(&props, "queued.max.request.bytes")? {
                -1 => None,
                n if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                _ => {
                    return Err(invalid(
                        "queued.max.request.bytes",
                        &get("queued.max.request.bytes"),
                        "must be positive, or -1 for no cap",
                    ));
                }
            },
            request_read_timeout_ms: positive(
                "weir.request.read.timeout.ms",
                parse(&props, "weir.request.read.timeout.ms")?,
                &get("weir.request.read.timeout.ms"),
            )?,
            queued_max_response_bytes: positive(
                "weir.queued.max.response.bytes",
                parse(&props, "weir.queued.max.response.bytes")?,
                &get("weir.queued.max.response.bytes"),
            )?,
            fetch_max_bytes: positive(
                "fetch.max.bytes",
                parse(&props, "fetch.max.bytes")?,
                &get("fetch.max.bytes"),
            )?,
            log_segment_bytes,
            log_retention_ms: parse(&props, "log.retention.ms")?,
            log_retention_bytes: parse(&props, "log.retention.bytes")?,
            log_flush_interval_messages: positive(
                "log.flush.interval.messages",
                parse(&props, "log.flush.interval.messages")?,
                &get("log.flush.interval.messages"),
            )?,
            log_flush_interval_ms: match flush_ms {
                Some(_) => Some(parse(&props, "log.flush.interval.ms")?),
                None => None,
            },
            offsets_topic_num_partitions: positive(
                "offsets.topic.num.partitions",
                parse(&props, "offsets.topic.num.partitions")?,
                &get("offsets.topic.num.partitions"),
            )?,
            offsets_retention_minutes: positive(
                "offsets.retention.minutes",
                parse(&props, "offsets.retention.minutes")?,
                &get("offsets.retention.minutes"),
            )?,
            group_initial_rebalance_delay_ms: parse(&props, "group.initial.rebalance.delay.ms")?,
            group_min_session_timeout_ms: parse(&props, "group.min.session.timeout.ms")?,
            group_max_session_timeout_ms: parse(&props, "group.max.session.timeout.ms")?,
            log_retention_check_interval_ms: positive(
                "log.retention.check.interval.ms",
                parse(&props, "log.retention.check.interval.ms")?,
                &get("log.retention.check.interval.ms"),
            )?,
            log_cleaner_enable: parse(&props, "log.cleaner.enable")?,
            log_cleaner_backoff_ms: positive(
                "log.cleaner.backoff.ms",
                parse(&props, "log.cleaner.backoff.ms")?,
                &get("log.cleaner.backoff.ms"),
            )?,
            log_cleaner_dedupe_buffer_size: positive(
                "log.cleaner.dedupe.buffer.size",
                parse(&props, "log.cleaner.dedupe.buffer.size")?,
                &get("log.cleaner.dedupe.buffer.size"),
            )?,
            producer_id_expiration_ms: positive(
                "producer.id.expiration.ms",
                parse(&props, "producer.id.expiration.ms")?,
                &get("producer.id.expiration.ms"),
            )?,
            // An int in Kafka; the bound also keeps the timer's deadline from overflowing.
            producer_id_expiration_check_interval_ms: u64::from(
                positive(
                    "producer.id.expiration.check.interval.ms",
                    parse::<i32>(&props, "producer.id.expiration.check.interval.ms")?,
                    &get("producer.id.expiration.check.interval.ms"),
                )?
                .unsigned_abs(),
            ),
            admin_listener,
            broker_session_timeout_ms: positive(
                "broker.session.timeout.ms",
                parse(&props, "broker.session.timeout.ms")?,
                &get("broker.session.timeout.ms"),
            )?,
            broker_heartbeat_interval_ms: positive(
                "broker.heartbeat.interval.ms",
                parse(&props, "broker.heartbeat.interval.ms")?,
                &get("broker.heartbeat.interval.ms"),
            )?,
            broker_rack: props
                .get("broker.rack")
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty()),
            auto_leader_rebalance_enable: parse(&props, "auto.leader.rebalance.enable")?,
            // A long in Kafka; bounded so the controller's deadline in milliseconds cannot
            // overflow.
            leader_imbalance_check_interval_seconds: u64::from(
                positive(
                    "leader.imbalance.check.interval.seconds",
                    parse::<i32>(&props, "leader.imbalance.check.interval.seconds")?,
                    &get("leader.imbalance.check.interval.seconds"),
                )?
                .unsigned_abs(),
            ),
            leader_imbalance_per_broker_percentage: parse::<u8>(
                &props,
                "leader.imbalance.per.broker.percentage",
            )
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| {
                invalid(
                    "leader.imbalance.per.broker.percentage",
                    &get("leader.imbalance.per.broker.percentage"),
                    "must be a percentage from 0 to 100",
                )
            })?,
            quorum: QuorumSettings::parse(&props, &listeners, &controller_names, roles)?,
            replication: ReplicationSettings::parse(&props)?,
            debug_fsync_journal: parse(&props, "weir.debug.fsync.journal")?,
            transaction_version: parse::<i16>(&props, "weir.transaction.version")
                .ok()
                .filter(|v| (0..=2).contains(v))
                .ok_or_else(|| {
                    invalid(
                        "weir.transaction.version",
                        &get("weir.transaction.version"),
                        "must be a transaction.version feature level from 0 to 2",
                    )
                })?,
            groups: GroupSettings::parse(&props)?,
            transactions: TransactionSettings::parse(&props)?,
            topic_defaults: TopicDefaults::parse(&props, log_segment_bytes)?,
            given: BTreeMap::new(),
        };
        config.given = props;
        config.quorum.check(config.node_id)?;
        if config.group_min_session_timeout_ms > config.group_max_session_timeout_ms {
            return Err(invalid(
                "group.min.session.timeout.ms",
                &config.group_min_session_timeout_ms.to_string(),
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        Ok(config)
    }

    /// Merges the sources (later ones win) and builds the config: the file named by
    /// `--config`, then `WEIR_*` environment variables, then the command line's properties in
    /// the order given (weir-cli parses the flags and hands them over as key-value pairs).
    /// Unknown names in the file and flags draw a warning.
    pub fn load(
        file: Option<&Path>,
        flags: Vec<(String, String)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut props = BTreeMap::new();
        let mut given = Vec::new();
        if let Some(path) = file {
            let from_file = read_file(path)?;
            given.extend(from_file.keys().cloned());
            props.extend(from_file);
        }
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix("WEIR_") {
                let key = rest.to_ascii_lowercase().replace('_', ".");
                // Other tools share the prefix (the CLI's WEIR_BROKERS, the tests' WEIR_BIN):
                // a variable that names no property is not the broker's.
                if matches!(classify(&key), PropertyName::Unknown { .. }) {
                    tracing::debug!(variable = %name, "environment variable names no broker property; ignored");
                    continue;
                }
                props.insert(key, value);
            }
        }
        given.extend(flags.iter().map(|(k, _)| k.clone()));
        props.extend(flags);
        for key in &given {
            match classify(key) {
                PropertyName::Read => {}
                PropertyName::KafkaIgnored => {
                    tracing::debug!(property = %key, "Kafka broker property not used by Weir; ignored")
                }
                PropertyName::Unknown {
                    did_you_mean: Some(near),
                } => tracing::warn!(
                    property = %key,
                    "unknown property {key:?} ignored: did you mean {near:?}?"
                ),
                PropertyName::Unknown { did_you_mean: None } => {
                    tracing::warn!(property = %key, "unknown property {key:?} ignored")
                }
            }
        }
        Self::from_properties(props)
    }
}

/// Kafka's other spellings of properties Weir reads: `log.dir` for `log.dirs`,
/// `log.retention.minutes` / `log.retention.hours` for `log.retention.ms`, `log.roll.hours`
/// for `log.roll.ms`, each used only when the preferred one is not set (Kafka's precedence).
/// Kafka's sample `server.properties` sets `log.retention.hours=168`.
fn apply_kafka_aliases(props: &mut BTreeMap<String, String>) -> Result<(), ConfigError> {
    if !props.contains_key("log.dirs") {
        if let Some(dir) = props.get("log.dir").cloned() {
            props.insert("log.dirs".into(), dir);
        }
    }
    for (target, sources) in [
        (
            "log.retention.ms",
            &[
                ("log.retention.minutes", 60_000),
                ("log.retention.hours", 3_600_000),
            ][..],
        ),
        ("log.roll.ms", &[("log.roll.hours", 3_600_000)][..]),
    ] {
        if props.contains_key(target) {
            continue;
        }
        for (key, unit_ms) in sources {
            let Some(text) = props.get(*key) else {
                continue;
            };
            let value: i64 = text
                .trim()
                .parse()
                .map_err(|e: std::num::ParseIntError| invalid(key, text, e.to_string()))?;
            // Negative retention means forever, as in Kafka.
            let ms = if value < 0 {
                -1
            } else {
                value.saturating_mul(*unit_ms)
            };
            if target == "log.roll.ms" && ms <= 0 {
                return Err(invalid(key, text, "must be positive"));
            }
            props.insert(target.to_string(), ms.to_string());
            break;
        }
    }
    Ok(())
}

/// Reads a TOML file (dotted keys, as quoted keys or nested tables) or a `server.properties`
/// file into flat properties.
pub fn read_file(path: &std::path::Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    if is_toml {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::ParseFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
        let mut out = BTreeMap::new();
        flatten("", &toml::Value::Table(table), &mut out);
        Ok(out)
    } else {
        // Java's `Properties.load` syntax (escapes, `\` line continuations, `=`, `:` or
        // whitespace between key and value, `#` and `!` comments), decoded as UTF-8: the same
        // as ISO-8859-1 for the ASCII every Kafka key uses, and what editors write today.
        let mut out = BTreeMap::new();
        java_properties::PropertiesIter::new_with_encoding(text.as_bytes(), encoding_rs::UTF_8)
            .read_into(|k, v| {
                out.insert(k, v.trim().to_string());
            })
            .map_err(|e| ConfigError::ParseFile {
                path: path.to_path_buf(),
                reason: match e.line_number() {
                    Some(line) => format!("line {line}: {e}"),
                    None => e.to_string(),
                },
            })?;
        Ok(out)
    }
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        toml::Value::Array(items) => {
            let joined: Vec<String> = items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.insert(prefix.to_string(), joined.join(","));
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config from command-line properties written as `--KEY=VALUE`.
    fn flags(list: &[&str]) -> Result<BrokerConfig, ConfigError> {
        let properties = list
            .iter()
            .map(|flag| {
                let (k, v) = flag.trim_start_matches("--").split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        BrokerConfig::load(None, properties, vec![])
    }

    #[test]
    fn defaults_are_a_local_single_node() {
        let c = BrokerConfig::default();
        assert_eq!(c.listener, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(c.log_dirs, vec![PathBuf::from("./weir-data")]);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.advertised_host, "127.0.0.1");
    }

    /// Issue 15: `localhost` was advertised as `127.0.0.1`, the address it was bound to.
    #[test]
    fn listeners_are_advertised_as_configured() {
        let c = flags(&["--listeners=PLAINTEXT://localhost:19092"]).unwrap();
        assert_eq!(c.listener, "127.0.0.1:19092".parse().unwrap());
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("localhost", 19092)
        );

        let c = flags(&[
            "--listeners=PLAINTEXT://0.0.0.0:9092",
            "--advertised.listeners=PLAINTEXT://broker-1.example.com:19092",
        ])
        .unwrap();
        assert!(c.listener.ip().is_unspecified());
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("broker-1.example.com", 19092)
        );

        // No host: every interface, advertised under the machine's host name.
        let c = flags(&["--listeners=PLAINTEXT://:9092"]).unwrap();
        assert!(c.listener.ip().is_unspecified());
        assert_eq!(c.advertised_host, machine_host_name());
        assert!(!c.advertised_host.is_empty());
    }

    #[test]
    fn a_wildcard_address_needs_an_advertised_listener() {
        for listeners in ["PLAINTEXT://0.0.0.0:9092", "PLAINTEXT://[::]:9092"] {
            let err = flags(&[&format!("--listeners={listeners}")]).unwrap_err();
            assert!(err.to_string().contains("advertised.listeners"), "{err}");
        }
        let err = flags(&["--advertised.listeners=PLAINTEXT://0.0.0.0:9092"]).unwrap_err();
        assert!(err.to_string().contains("`advertised.listeners`"), "{err}");
    }

    #[test]
    fn flags_override_env_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.properties");
        std::fs::write(
            &file,
            "# comment\nnum.partitions=3\nlog.dirs=/tmp/a\nzookeeper.connect=x:2181\n",
        )
        .unwrap();
        let c = BrokerConfig::load(
            Some(&file),
            vec![("num.partitions".to_string(), "5".to_string())],
            vec![
                ("WEIR_LOG_DIRS".to_string(), "/tmp/b".to_string()),
                ("WEIR_NUM_PARTITIONS".to_string(), "4".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(c.num_partitions, 5);
        assert_eq!(c.log_dirs, vec![PathBuf::from("/tmp/b")]);
    }

    #[test]
    fn toml_files_with_dotted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weir.toml");
        std::fs::write(
            &file,
            "\"num.partitions\" = 4\n[log]\ndirs = [\"/d1\", \"/d2\"]\n",
        )
        .unwrap();
        let c = BrokerConfig::load(Some(&file), vec![], vec![]).unwrap();
        assert_eq!(c.num_partitions, 4);
        assert_eq!(c.log_dirs.len(), 2);
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = flags(&["--num.partitions=zero"]).unwrap_err();
        assert!(err.to_string().contains("num.partitions"), "{err}");
        let err = flags(&["--listeners=SSL://1.2.3.4:1"]).unwrap_err();
        assert!(err.to_string().contains("listeners"), "{err}");
        let err = flags(&["--num.partitions=0"]).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
        let err = flags(&["--weir.debug.fsync.journal=yes"]).unwrap_err();
        assert!(
            err.to_string().contains("weir.debug.fsync.journal"),
            "{err}"
        );
        let err = flags(&["--group.max.size=lots"]).unwrap_err();
        assert!(err.to_string().contains("group.max.size"), "{err}");
        for bad in [
            "--producer.id.expiration.ms=0",
            "--producer.id.expiration.check.interval.ms=0",
            "--producer.id.expiration.check.interval.ms=99999999999999",
        ] {
            let err = flags(&[bad]).unwrap_err();
            assert!(err.to_string().contains("producer.id.expiration"), "{err}");
        }
        let err = flags(&["--offset.metadata.max.bytes=-1"]).unwrap_err();
        assert!(
            err.to_string().contains("offset.metadata.max.bytes"),
            "{err}"
        );
        for bad in ["3", "-1", "two"] {
            let flag = format!("--weir.transaction.version={bad}");
            let err = flags(&[&flag]).unwrap_err();
            assert!(
                err.to_string().contains("weir.transaction.version"),
                "{err}"
            );
        }
        let ok = flags(&["--weir.transaction.version=0"]).unwrap();
        assert_eq!(ok.transaction_version, 0);
        assert_eq!(BrokerConfig::default().transaction_version, 2);
    }

    fn properties_file(text: &str) -> BTreeMap<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.properties");
        std::fs::write(&file, text).unwrap();
        read_file(&file).unwrap()
    }

    /// Issue 14: the hand-written parser split on the first `=` only: no escapes, no line
    /// continuations, no `:` or space separators.
    #[test]
    fn server_properties_follow_java_syntax() {
        let props = properties_file(
            "# comment\n\
             ! another comment\n\
             log.dirs = /data/a,\\\n    /data/b\n\
             num.partitions: 3\n\
             broker.rack eu\\u002dwest\n\
             weir.admin.listener=none\n\
             listeners=PLAINTEXT\\://127.0.0.1\\:9092\n\
             key\\ with\\ spaces=v\n",
        );
        assert_eq!(props["log.dirs"], "/data/a,/data/b");
        assert_eq!(props["num.partitions"], "3");
        assert_eq!(props["broker.rack"], "eu-west");
        assert_eq!(props["listeners"], "PLAINTEXT://127.0.0.1:9092");
        assert_eq!(props["key with spaces"], "v");
        let c = BrokerConfig::from_properties(props).unwrap();
        assert_eq!(c.log_dirs.len(), 2);
        assert_eq!(c.broker_rack.as_deref(), Some("eu-west"));
    }

    #[test]
    fn property_names_are_read_ignored_or_unknown() {
        assert_eq!(classify("log.retention.ms"), PropertyName::Read);
        assert_eq!(classify("log.cleanup.policy"), PropertyName::Read);
        assert_eq!(
            classify("transaction.state.log.min.isr"),
            PropertyName::Read
        );
        assert_eq!(classify("queued.max.request.bytes"), PropertyName::Read);
        assert_eq!(classify("num.io.threads"), PropertyName::KafkaIgnored);
        assert_eq!(
            classify("ssl.keystore.location"),
            PropertyName::KafkaIgnored
        );
        assert_eq!(
            classify("log.retension.ms"),
            PropertyName::Unknown {
                did_you_mean: Some("log.retention.ms")
            }
        );
        assert_eq!(
            classify("num.partitons"),
            PropertyName::Unknown {
                did_you_mean: Some("num.partitions")
            }
        );
        assert_eq!(
            classify("zookeeper.connect"),
            PropertyName::Unknown { did_you_mean: None }
        );
    }

    /// Every property of Kafka 4's sample `config/server.properties` is read or knowingly
    /// ignored: none draws a warning.
    #[test]
    fn kafka_4_sample_properties_draw_no_warning() {
        for key in [
            "process.roles",
            "node.id",
            "controller.quorum.bootstrap.servers",
            "listeners",
            "inter.broker.listener.name",
            "advertised.listeners",
            "controller.listener.names",
            "listener.security.protocol.map",
            "num.network.threads",
            "num.io.threads",
            "socket.send.buffer.bytes",
            "socket.receive.buffer.bytes",
            "socket.request.max.bytes",
            "log.dirs",
            "num.partitions",
            "num.recovery.threads.per.data.dir",
            "offsets.topic.replication.factor",
            "share.coordinator.state.topic.replication.factor",
            "share.coordinator.state.topic.min.isr",
            "transaction.state.log.replication.factor",
            "transaction.state.log.min.isr",
            "log.flush.interval.messages",
            "log.flush.interval.ms",
            "log.retention.hours",
            "log.retention.bytes",
            "log.segment.bytes",
            "log.retention.check.interval.ms",
        ] {
            assert!(
                !matches!(classify(key), PropertyName::Unknown { .. }),
                "{key}"
            );
        }
    }

    #[test]
    fn kafka_aliases_apply_unless_the_preferred_key_is_set() {
        let c = flags(&[
            "--log.retention.hours=24",
            "--log.dir=/d",
            "--log.roll.hours=1",
        ])
        .unwrap();
        assert_eq!(c.log_retention_ms, 24 * 3_600_000);
        assert_eq!(c.log_dirs, vec![PathBuf::from("/d")]);
        assert_eq!(c.topic_defaults.log.segment_ms, 3_600_000);
        let c = flags(&[
            "--log.retention.hours=24",
            "--log.retention.minutes=5",
            "--log.dirs=/a",
            "--log.dir=/d",
        ])
        .unwrap();
        assert_eq!(c.log_retention_ms, 5 * 60_000);
        assert_eq!(c.log_dirs, vec![PathBuf::from("/a")]);
        let c = flags(&["--log.retention.hours=-1", "--log.retention.ms=1000"]).unwrap();
        assert_eq!(c.log_retention_ms, 1000);
        let c = flags(&["--log.retention.hours=-1"]).unwrap();
        assert_eq!(c.log_retention_ms, -1);
    }

    /// The coordinators' settings and the topic defaults were parsed by their handlers, each
    /// falling back to a default on a bad value; now they are typed here and a bad value
    /// stops the broker, naming the key.
    #[test]
    fn bad_values_of_properties_read_elsewhere_are_refused() {
        for bad in [
            "--transaction.state.log.num.partitions=many",
            "--transaction.state.log.min.isr=0",
            "--transaction.max.timeout.ms=99999999999",
            "--offsets.commit.timeout.ms=-5",
            "--request.timeout.ms=soon",
            "--log.cleanup.policy=shred",
            "--log.message.timestamp.type=Whenever",
            "--log.cleaner.min.cleanable.ratio=lots",
            "--min.insync.replicas=0",
            "--unclean.leader.election.enable=maybe",
            "--log.retention.hours=week",
            "--queued.max.request.bytes=0",
            "--fetch.max.bytes=-1",
            "--weir.request.read.timeout.ms=0",
        ] {
            let err = flags(&[bad]).unwrap_err();
            let key = bad.trim_start_matches("--").split('=').next().unwrap();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
        // Kafka's -1: no cap.
        let c = flags(&["--queued.max.request.bytes=-1"]).unwrap();
        assert_eq!(c.queued_max_request_bytes, None);
    }

    #[test]
    fn environment_variables_that_name_no_property_are_not_properties() {
        let c = BrokerConfig::load(
            None,
            vec![],
            vec![
                ("WEIR_BROKERS".to_string(), "localhost:9092".to_string()),
                ("WEIR_NUM_PARTITIONS".to_string(), "7".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(c.num_partitions, 7);
        assert!(!c.static_properties().contains_key("brokers"));
    }

    #[test]
    fn leader_rebalance_settings() {
        let c = BrokerConfig::default();
        assert!(c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_seconds, 300);
        assert_eq!(c.leader_imbalance_per_broker_percentage, 10);
        let c = flags(&[
            "--auto.leader.rebalance.enable=false",
            "--leader.imbalance.check.interval.seconds=2",
            "--leader.imbalance.per.broker.percentage=0",
        ])
        .unwrap();
        assert!(!c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_seconds, 2);
        assert_eq!(c.leader_imbalance_per_broker_percentage, 0);
        for bad in [
            "--auto.leader.rebalance.enable=sometimes",
            "--leader.imbalance.check.interval.seconds=0",
            "--leader.imbalance.check.interval.seconds=99999999999",
            "--leader.imbalance.per.broker.percentage=101",
            "--leader.imbalance.per.broker.percentage=-1",
        ] {
            let err = flags(&[bad]).unwrap_err();
            let key = bad.trim_start_matches("--").split('=').next().unwrap();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn coordinator_settings_and_topic_defaults_are_typed() {
        let c = BrokerConfig::default();
        assert_eq!(c.groups.max_size, 2_147_483_647);
        assert_eq!(c.groups.offsets_commit_timeout_ms, 5_000);
        assert_eq!(c.transactions.state_log_num_partitions, 50);
        assert_eq!(c.transactions.request_timeout_ms, 30_000);
        assert_eq!(c.topic_defaults.log, LogConfig::default());
        assert_eq!(c.topic_defaults.compression_type, CompressionType::Producer);
        assert_eq!(c.topic_defaults.max_compaction_lag_ms, i64::MAX);
        assert!(!c.topic_defaults.unclean_leader_election_enable);
        assert!(c.static_properties().is_empty());

        let c = flags(&[
            "--group.max.size=7",
            "--offsets.retention.check.interval.ms=1000",
            "--offset.metadata.max.bytes=0",
            "--offsets.commit.timeout.ms=250",
            "--transaction.state.log.num.partitions=3",
            "--transaction.state.log.replication.factor=1",
            "--transaction.state.log.min.isr=1",
            "--transaction.max.timeout.ms=60000",
            "--transactional.id.expiration.ms=120000",
            "--request.timeout.ms=1500",
            "--log.cleanup.policy=compact,delete",
            "--log.retention.ms=-1",
            "--log.message.timestamp.type=LogAppendTime",
            "--log.cleaner.min.cleanable.ratio=0.25",
            "--log.cleaner.min.compaction.lag.ms=10",
            "--log.segment.bytes=99999999999",
            "--compression.type=zstd",
            "--log.segment.delete.delay.ms=0",
            "--log.preallocate=true",
            "--log.roll.jitter.ms=5",
            "--unclean.leader.election.enable=true",
        ])
        .unwrap();
        assert_eq!(
            c.groups,
            GroupSettings {
                max_size: 7,
                offsets_retention_check_interval_ms: 1000,
                offset_metadata_max_bytes: 0,
                offsets_commit_timeout_ms: 250,
            }
        );
        assert_eq!(
            c.transactions,
            TransactionSettings {
                state_log_num_partitions: 3,
                state_log_replication_factor: 1,
                state_log_min_isr: 1,
                max_timeout_ms: 60_000,
                transactional_id_expiration_ms: 120_000,
                request_timeout_ms: 1_500,
            }
        );
        let log = &c.topic_defaults.log;
        assert!(log.cleanup_policy.compact && log.cleanup_policy.delete);
        assert_eq!(log.retention_ms, -1);
        assert_eq!(
            log.message_timestamp_type,
            weir_log::TimestampType::LogAppendTime
        );
        assert!((log.min_cleanable_dirty_ratio - 0.25).abs() < f64::EPSILON);
        assert_eq!(log.min_compaction_lag_ms, 10);
        // Capped at the log's 4 GiB rather than refused.
        assert_eq!(log.segment_bytes, u32::MAX);
        assert_eq!(c.topic_defaults.compression_type, CompressionType::Zstd);
        assert_eq!(c.topic_defaults.file_delete_delay_ms, 0);
        assert!(c.topic_defaults.preallocate);
        assert_eq!(c.topic_defaults.segment_jitter_ms, 5);
        assert!(c.topic_defaults.unclean_leader_election_enable);
        assert_eq!(
            c.topic_defaults.stored_value("compression.type").as_deref(),
            Some("zstd")
        );
        assert_eq!(c.static_properties()["group.max.size"], "7");
        assert!(c.is_static("log.cleanup.policy"));
        assert!(!c.is_static("log.retention.bytes"));
    }

    /// The error is one line naming the key and the value, whatever the kind of value.
    #[test]
    fn bad_typed_values_are_one_line_naming_key_and_value() {
        for (flag, key, value) in [
            ("--group.max.size=abc", "group.max.size", "abc"),
            ("--group.max.size=0", "group.max.size", "0"),
            (
                "--group.max.size=2147483648",
                "group.max.size",
                "2147483648",
            ),
            ("--log.cleanup.policy=bogus", "log.cleanup.policy", "bogus"),
            ("--compression.type=brotli", "compression.type", "brotli"),
            ("--log.preallocate=maybe", "log.preallocate", "maybe"),
            (
                "--log.segment.delete.delay.ms=-1",
                "log.segment.delete.delay.ms",
                "-1",
            ),
            (
                "--log.cleaner.max.compaction.lag.ms=0",
                "log.cleaner.max.compaction.lag.ms",
                "0",
            ),
            (
                "--log.cleaner.min.compaction.lag.ms=soon",
                "log.cleaner.min.compaction.lag.ms",
                "soon",
            ),
            (
                "--offsets.commit.timeout.ms=0",
                "offsets.commit.timeout.ms",
                "0",
            ),
            (
                "--transaction.state.log.replication.factor=40000",
                "transaction.state.log.replication.factor",
                "40000",
            ),
            ("--log.segment.bytes=10", "log.segment.bytes", "10"),
            ("--log.roll.ms=0", "log.roll.ms", "0"),
        ] {
            let err = flags(&[flag]).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains(&format!("{value:?}")),
                "{flag}: {err}"
            );
            assert!(!err.contains('\n'), "{flag}: {err}");
        }
    }

    /// `weir broker --help` lists some properties as flags of their own, with their
    /// defaults: each is a property the broker reads, with the default it really has.
    #[test]
    fn the_command_lines_property_flags_match_the_config() {
        for (key, _, help) in weir_cli::BROKER_PROPERTY_FLAGS {
            assert_eq!(classify(key), PropertyName::Read, "{key}");
            let builtin = builtin_default(key).or_else(|| {
                OTHER_PROPERTIES
                    .iter()
                    .find(|(k, _)| k == key)
                    .and_then(|(_, v)| *v)
            });
            let shown = help
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.strip_suffix(']'));
            match (builtin, shown) {
                (Some(builtin), Some(shown)) => assert_eq!(builtin, shown, "{key}"),
                (Some(builtin), None) => panic!("{key}: the help does not show {builtin}"),
                (None, _) => {}
            }
        }
    }
}
