//! Consumer settings, with the Java consumer's property names.

use std::sync::Arc;
use std::time::Duration;

use super::assignor::{AssignmentStrategy, PartitionAssignor};
use super::positions::OffsetReset;
use crate::config::{config_error, millis, parse};
use crate::{ClientConfig, Result};

/// How a [`Consumer`](super::Consumer) joins its group and fetches. Build it as a struct or
/// from Java-style properties with [`ConsumerConfig::set`]; properties it does not know go to
/// the [`ClientConfig`].
///
/// Two configs are equal when their settings are and they share the same custom assignor
/// (the same `Arc`), if any: an assignor is code, not a value to compare.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The connection settings.
    pub client: ClientConfig,
    /// `group.id`: the consumer group; required to subscribe and to commit.
    pub group_id: Option<String>,
    /// `group.instance.id`: makes the member static (KIP-345): a restart within the session
    /// timeout takes its place back without a rebalance.
    pub group_instance_id: Option<String>,
    /// `auto.offset.reset`: where to start without a committed offset (default latest).
    pub auto_offset_reset: OffsetReset,
    /// `enable.auto.commit`: commit positions every `auto.commit.interval.ms`, before giving up
    /// partitions and on close (default true).
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (default 5 s).
    pub auto_commit_interval: Duration,
    /// `session.timeout.ms`: how long the coordinator waits for a heartbeat (default 45 s).
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (default 3 s).
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: sent as the rebalance timeout, how long the coordinator waits
    /// for every member to rejoin (default 5 min).
    pub max_poll_interval: Duration,
    /// `partition.assignment.strategy` (default `range`); ignored when `custom_assignor` is
    /// set.
    pub assignment_strategy: AssignmentStrategy,
    /// An assignor of the application's own (default none). When set it is the only
    /// protocol proposed in JoinGroup, so every member of the group needs one of the same
    /// name. It has no property: code, not text, configures it. See
    /// [`PartitionAssignor`].
    pub custom_assignor: Option<Arc<dyn PartitionAssignor>>,
    /// `fetch.min.bytes`: the broker waits for this much data, up to `fetch.max.wait.ms`.
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`: the most one fetch response may carry (default 50 MiB).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`: the most one partition contributes to a fetch (1 MiB).
    pub max_partition_fetch_bytes: i32,
    /// `fetch.max.wait.ms`: how long the broker may hold a fetch for `fetch.min.bytes` (500 ms).
    pub fetch_max_wait: Duration,
    /// `check.crcs`: verify each batch's CRC-32C (default true).
    pub check_crcs: bool,
    /// `isolation.level`: whether records of open and aborted transactions are read (default
    /// `read_uncommitted`).
    pub isolation_level: IsolationLevel,
}

/// Which transactional records a consumer reads (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// `read_uncommitted`: every record up to the high watermark, aborted ones included.
    #[default]
    ReadUncommitted,
    /// `read_committed`: records up to the last stable offset, without those of aborted
    /// transactions.
    ReadCommitted,
}

impl IsolationLevel {
    /// The value carried in Fetch and ListOffsets requests.
    pub fn wire_value(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            group_id: None,
            group_instance_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            assignment_strategy: AssignmentStrategy::Range,
            custom_assignor: None,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            check_crcs: true,
            isolation_level: IsolationLevel::ReadUncommitted,
        }
    }
}

impl PartialEq for ConsumerConfig {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let Self {
            client,
            group_id,
            group_instance_id,
            auto_offset_reset,
            enable_auto_commit,
            auto_commit_interval,
            session_timeout,
            heartbeat_interval,
            max_poll_interval,
            assignment_strategy,
            custom_assignor,
            fetch_min_bytes,
            fetch_max_bytes,
            max_partition_fetch_bytes,
            fetch_max_wait,
            check_crcs,
            isolation_level,
        } = self;
        let same_assignor = match (custom_assignor, &other.custom_assignor) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_assignor
            && *client == other.client
            && *group_id == other.group_id
            && *group_instance_id == other.group_instance_id
            && *auto_offset_reset == other.auto_offset_reset
            && *enable_auto_commit == other.enable_auto_commit
            && *auto_commit_interval == other.auto_commit_interval
            && *session_timeout == other.session_timeout
            && *heartbeat_interval == other.heartbeat_interval
            && *max_poll_interval == other.max_poll_interval
            && *assignment_strategy == other.assignment_strategy
            && *fetch_min_bytes == other.fetch_min_bytes
            && *fetch_max_bytes == other.fetch_max_bytes
            && *max_partition_fetch_bytes == other.max_partition_fetch_bytes
            && *fetch_max_wait == other.fetch_max_wait
            && *check_crcs == other.check_crcs
            && *isolation_level == other.isolation_level
    }
}

impl Eq for ConsumerConfig {}

impl ConsumerConfig {
    /// The defaults with `bootstrap.servers` and `group.id` set.
    pub fn new(bootstrap_servers: &str, group_id: &str) -> Self {
        Self {
            client: ClientConfig::new(bootstrap_servers),
            group_id: Some(group_id.to_string()),
            ..Self::default()
        }
    }

    /// Sets one property by its Java client name; unknown consumer properties are passed to
    /// [`ClientConfig::set`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        match key {
            "group.id" => self.group_id = Some(value.to_string()),
            "group.instance.id" => self.group_instance_id = Some(value.to_string()),
            "auto.offset.reset" => {
                self.auto_offset_reset = OffsetReset::from_name(value).ok_or_else(|| {
                    config_error(
                        "auto.offset.reset",
                        format!("{value:?} is not earliest, latest or none"),
                    )
                })?
            }
            "enable.auto.commit" => self.enable_auto_commit = parse("enable.auto.commit", value)?,
            "auto.commit.interval.ms" => {
                self.auto_commit_interval = millis("auto.commit.interval.ms", value)?
            }
            "session.timeout.ms" => self.session_timeout = millis("session.timeout.ms", value)?,
            "heartbeat.interval.ms" => {
                self.heartbeat_interval = millis("heartbeat.interval.ms", value)?
            }
            "max.poll.interval.ms" => {
                self.max_poll_interval = millis("max.poll.interval.ms", value)?
            }
            "partition.assignment.strategy" => {
                // The Java client takes a list; the first name this client knows wins.
                self.assignment_strategy = value
                    .split(',')
                    .filter_map(|name| {
                        let name = name.trim();
                        let short = name.rsplit('.').next().unwrap_or(name);
                        AssignmentStrategy::from_name(name).or(match short {
                            "RangeAssignor" => Some(AssignmentStrategy::Range),
                            "RoundRobinAssignor" => Some(AssignmentStrategy::RoundRobin),
                            "CooperativeStickyAssignor" => {
                                Some(AssignmentStrategy::CooperativeSticky)
                            }
                            _ => None,
                        })
                    })
                    .next()
                    .ok_or_else(|| {
                        config_error(
                            "partition.assignment.strategy",
                            format!("{value:?} names no known assignor (range, roundrobin, cooperative-sticky)"),
                        )
                    })?
            }
            "fetch.min.bytes" => self.fetch_min_bytes = parse("fetch.min.bytes", value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = parse("fetch.max.bytes", value)?,
            "max.partition.fetch.bytes" => {
                self.max_partition_fetch_bytes = parse("max.partition.fetch.bytes", value)?
            }
            "fetch.max.wait.ms" => self.fetch_max_wait = millis("fetch.max.wait.ms", value)?,
            "check.crcs" => self.check_crcs = parse("check.crcs", value)?,
            "isolation.level" => {
                self.isolation_level = match value.trim() {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    other => {
                        return Err(config_error(
                            "isolation.level",
                            format!("{other:?} is not read_uncommitted or read_committed"),
                        ));
                    }
                }
            }
            _ => {
                self.client.set(key, value)?;
            }
        }
        Ok(self)
    }

    /// Checks the values against each other and their ranges.
    pub fn validate(&self) -> Result<()> {
        self.client.validate()?;
        if self.group_id.as_deref() == Some("") {
            return Err(config_error("group.id", "must not be empty"));
        }
        if self.group_instance_id.as_deref() == Some("") {
            return Err(config_error("group.instance.id", "must not be empty"));
        }
        if self
            .custom_assignor
            .as_ref()
            .is_some_and(|a| a.name().is_empty())
        {
            return Err(config_error(
                "partition.assignment.strategy",
                "the custom assignor's name must not be empty",
            ));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return Err(config_error(
                "heartbeat.interval.ms",
                "must be positive and below session.timeout.ms",
            ));
        }
        for (key, value) in [
            ("session.timeout.ms", self.session_timeout),
            ("max.poll.interval.ms", self.max_poll_interval),
        ] {
            if value.is_zero() || value.as_millis() > i32::MAX as u128 {
                return Err(config_error(key, "must be between 1 and 2147483647 ms"));
            }
        }
        if self.fetch_max_wait.as_millis() > i32::MAX as u128 {
            return Err(config_error("fetch.max.wait.ms", "at most 2147483647"));
        }
        for (key, value) in [
            ("fetch.min.bytes", self.fetch_min_bytes),
            ("fetch.max.bytes", self.fetch_max_bytes),
            ("max.partition.fetch.bytes", self.max_partition_fetch_bytes),
        ] {
            if value < 1 {
                return Err(config_error(key, "must be positive"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_property_names() {
        let mut config = ConsumerConfig::default();
        config
            .set("group.id", "g")
            .unwrap()
            .set("auto.offset.reset", "earliest")
            .unwrap()
            .set(
                "partition.assignment.strategy",
                "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
            )
            .unwrap()
            .set("bootstrap.servers", "h:1")
            .unwrap()
            .set("enable.auto.commit", "false")
            .unwrap();
        assert_eq!(config.group_id.as_deref(), Some("g"));
        assert_eq!(config.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(
            config.assignment_strategy,
            AssignmentStrategy::CooperativeSticky
        );
        assert_eq!(config.client.bootstrap_servers, ["h:1"]);
        assert!(!config.enable_auto_commit);
        assert_eq!(config.isolation_level, IsolationLevel::ReadUncommitted);
        config.set("isolation.level", "read_committed").unwrap();
        assert_eq!(config.isolation_level, IsolationLevel::ReadCommitted);
        config.validate().unwrap();
    }

    #[derive(Debug)]
    struct Named(&'static str);

    impl PartitionAssignor for Named {
        fn name(&self) -> &str {
            self.0
        }

        fn assign(
            &self,
            _: &std::collections::BTreeMap<String, i32>,
            _: &[super::super::GroupMember],
        ) -> Result<std::collections::BTreeMap<String, super::super::MemberAssignment>> {
            Ok(Default::default())
        }
    }

    #[test]
    fn a_custom_assignor_compares_by_identity_and_needs_a_name() {
        let assignor: Arc<dyn PartitionAssignor> = Arc::new(Named("mine"));
        let with = ConsumerConfig {
            custom_assignor: Some(Arc::clone(&assignor)),
            ..ConsumerConfig::default()
        };
        assert_eq!(with, with.clone());
        assert_ne!(with, ConsumerConfig::default());
        let other = ConsumerConfig {
            custom_assignor: Some(Arc::new(Named("mine"))),
            ..ConsumerConfig::default()
        };
        assert_ne!(with, other);
        with.validate().unwrap();
        let unnamed = ConsumerConfig {
            custom_assignor: Some(Arc::new(Named(""))),
            ..ConsumerConfig::default()
        };
        let err = unnamed.validate().unwrap_err();
        assert!(err.to_string().contains("custom assignor"), "{err}");
    }

    #[test]
    fn bad_values_name_the_property() {
        let mut config = ConsumerConfig::default();
        for (key, value) in [
            ("auto.offset.reset", "oldest"),
            ("partition.assignment.strategy", "sticky"),
            ("fetch.min.bytes", "x"),
            ("isolation.level", "serializable"),
        ] {
            let err = config.set(key, value).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        config.heartbeat_interval = config.session_timeout;
        assert!(config.validate().is_err());
    }
}
