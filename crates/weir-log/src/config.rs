//! [`LogConfig`]: per-topic log settings under Kafka's property names, with Kafka's defaults,
//! and the [`Clock`] the log reads time from.

use crate::{Error, Result};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
pub use weir_records::TimestampType;

/// What happens to old data (`cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupPolicy {
    /// `delete`: drop whole segments by `retention.ms` and `retention.bytes`.
    pub delete: bool,
    /// `compact`: keep the latest record per key.
    pub compact: bool,
}

impl CleanupPolicy {
    /// `delete`, Kafka's default.
    pub const DELETE: Self = Self {
        delete: true,
        compact: false,
    };
    /// `compact`.
    pub const COMPACT: Self = Self {
        delete: false,
        compact: true,
    };
}

/// Log settings of one partition. Field docs name the Kafka property; `-1` means unlimited
/// where Kafka says so.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this size (default 1 GiB).
    pub segment_bytes: u32,
    /// `segment.ms`: roll when the active segment's first timestamp is this old (default 7 days).
    pub segment_ms: i64,
    /// `segment.index.bytes`: size of a full offset index; roll when reached (default 10 MiB).
    pub segment_index_bytes: u32,
    /// `index.interval.bytes`: bytes between offset index entries (default 4096).
    pub index_interval_bytes: u32,
    /// `retention.ms`: delete segments whose newest timestamp (their file's modification time
    /// when they hold none) is older (default 7 days; -1 keeps all).
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger (default -1).
    pub retention_bytes: i64,
    /// `max.message.bytes`: largest record batch accepted (default 1048588).
    pub max_message_bytes: u32,
    /// `message.timestamp.type`: CreateTime (default) or LogAppendTime.
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime may be (default unlimited).
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime may be (default 1 hour).
    pub message_timestamp_after_max_ms: i64,
    /// `flush.messages`: fsync after this many appended records (default unlimited; 1 = every append).
    pub flush_messages: i64,
    /// `flush.ms`: fsync when the last one is this old at an append or tick (default unlimited).
    pub flush_ms: i64,
    /// `cleanup.policy`: delete (default), compact, or both.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long tombstones survive compaction (default 1 day).
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted (default 0).
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact a log once this share of its inactive bytes is new
    /// since the last pass (default 0.5).
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 3_600_000,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 3_600_000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| Error::InvalidConfig {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: "not a number in range",
    })
}

impl LogConfig {
    /// Sets one property by its Kafka name. Unknown names are an error so typos surface.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let invalid = |reason| Error::InvalidConfig {
            name: name.to_owned(),
            value: value.to_owned(),
            reason,
        };
        match name {
            "segment.bytes" => self.segment_bytes = parse(name, value)?,
            "segment.ms" => self.segment_ms = parse(name, value)?,
            "segment.index.bytes" => self.segment_index_bytes = parse(name, value)?,
            "index.interval.bytes" => self.index_interval_bytes = parse(name, value)?,
            "retention.ms" => self.retention_ms = parse(name, value)?,
            "retention.bytes" => self.retention_bytes = parse(name, value)?,
            "max.message.bytes" => self.max_message_bytes = parse(name, value)?,
            "message.timestamp.type" => {
                self.message_timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid("expected CreateTime or LogAppendTime")),
                }
            }
            "message.timestamp.before.max.ms" => {
                self.message_timestamp_before_max_ms = parse(name, value)?
            }
            "message.timestamp.after.max.ms" => {
                self.message_timestamp_after_max_ms = parse(name, value)?
            }
            "flush.messages" => self.flush_messages = parse(name, value)?,
            "flush.ms" => self.flush_ms = parse(name, value)?,
            "cleanup.policy" => {
                let mut policy = CleanupPolicy::default();
                for part in value.split(',') {
                    match part.trim() {
                        "delete" => policy.delete = true,
                        "compact" => policy.compact = true,
                        _ => return Err(invalid("expected delete, compact or both")),
                    }
                }
                self.cleanup_policy = policy;
            }
            "delete.retention.ms" => self.delete_retention_ms = parse(name, value)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = parse(name, value)?,
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio = parse(name, value)?;
                if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
                    return Err(invalid("expected a ratio between 0 and 1"));
                }
            }
            _ => return Err(invalid("unknown log property")),
        }
        self.validate().map_err(invalid)
    }

    /// A config from Kafka properties over the defaults.
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let mut config = Self::default();
        for (name, value) in props {
            config.set(name, value)?;
        }
        Ok(config)
    }

    /// Checks the values the log relies on.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.segment_bytes < 14 {
            return Err("segment.bytes must be at least 14");
        }
        if self.segment_index_bytes < 8 {
            return Err("segment.index.bytes must hold at least one entry");
        }
        if self.flush_messages < 1 {
            return Err("flush.messages must be at least 1");
        }
        if self.segment_ms < 1 {
            return Err("segment.ms must be at least 1");
        }
        Ok(())
    }
}

/// The wall clock the log uses for LogAppendTime, timestamp checks, `segment.ms`, `flush.ms`
/// and retention; tests inject [`ManualClock`].
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }
    /// Sets the time.
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    /// Moves the time forward.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_parse() {
        let config = LogConfig::from_properties([
            ("segment.bytes", "1024"),
            ("cleanup.policy", "compact,delete"),
            ("message.timestamp.type", "LogAppendTime"),
            ("flush.messages", "1"),
        ])
        .unwrap();
        assert_eq!(config.segment_bytes, 1024);
        assert!(config.cleanup_policy.compact && config.cleanup_policy.delete);
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);
        assert!(LogConfig::default().set("segment.bytez", "1").is_err());
        assert!(LogConfig::default().set("flush.messages", "0").is_err());
    }
}
