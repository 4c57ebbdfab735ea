//! The catalog of topic configs the broker accepts, and how each one is described: its value,
//! where that value comes from (a topic override, a broker property, or the built-in default),
//! and its broker-level synonym.
//!
//! Two kinds of config are accepted. Log configs (`retention.ms`, `segment.bytes`, ...) are
//! enforced by `weir_log::LogConfig`, which also validates their values. Stored configs
//! (`min.insync.replicas`, `compression.type`, ...) are Kafka topic configs that clients commonly
//! set when creating topics; the broker validates, persists and reports them so those clients
//! work, but the single-node log does not act on them (yet). Any other name is refused with
//! INVALID_CONFIG, as Kafka refuses unknown topic config names.

use crate::config::BrokerConfig;
use crate::error::AdminError;
use crate::state::Broker;
use crate::topics::Topic;
use std::collections::BTreeMap;
use weir_log::{LogConfig, TimestampType};
use weir_metadata::{ConfigResource, MetadataImage};

/// Where a config value comes from (Kafka's `ConfigSource` ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub(crate) enum ConfigSource {
    /// A per-topic override set through CreateTopics or AlterConfigs.
    DynamicTopic = 1,
    /// A dynamic config of this broker (a BROKER resource naming its id).
    DynamicBroker = 2,
    /// A dynamic cluster-wide default (the BROKER resource with an empty name).
    DynamicDefaultBroker = 3,
    /// A property in the broker's config file, environment or flags.
    StaticBroker = 4,
    /// The built-in default.
    Default = 5,
}

/// The type of a config value (Kafka's `ConfigType` ids, DescribeConfigs v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub(crate) enum ConfigType {
    /// `true` or `false`.
    Boolean = 1,
    /// Free text or one of a few words.
    String = 2,
    /// A 32-bit integer.
    Int = 3,
    /// A 64-bit integer.
    Long = 5,
    /// A floating point number.
    Double = 6,
    /// A comma-separated list (APPEND and SUBTRACT apply).
    List = 7,
}

/// How a topic config is backed.
#[derive(Debug, Clone, Copy)]
enum Backing {
    /// Enforced by the partition log; values are checked by `LogConfig`.
    Log,
    /// Validated and stored but not acted on; `default` applies unless the broker property is set.
    Stored {
        default: &'static str,
        check: fn(&str) -> Result<(), &'static str>,
    },
}

/// One accepted topic config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConfigDef {
    /// The topic-level name.
    pub(crate) name: &'static str,
    /// The broker property that sets its default, when the broker honours one.
    pub(crate) broker_synonym: Option<&'static str>,
    /// The value type.
    pub(crate) config_type: ConfigType,
    backing: Backing,
}

const fn log(
    name: &'static str,
    broker_synonym: Option<&'static str>,
    config_type: ConfigType,
) -> ConfigDef {
    ConfigDef {
        name,
        broker_synonym,
        config_type,
        backing: Backing::Log,
    }
}

const fn stored(
    name: &'static str,
    broker_synonym: &'static str,
    config_type: ConfigType,
    default: &'static str,
    check: fn(&str) -> Result<(), &'static str>,
) -> ConfigDef {
    ConfigDef {
        name,
        broker_synonym: Some(broker_synonym),
        config_type,
        backing: Backing::Stored { default, check },
    }
}

fn check_bool(value: &str) -> Result<(), &'static str> {
    match value.trim() {
        "true" | "false" => Ok(()),
        _ => Err("expected true or false"),
    }
}

fn check_min_insync(value: &str) -> Result<(), &'static str> {
    match value.trim().parse::<i32>() {
        Ok(n) if n >= 1 => Ok(()),
        _ => Err("expected an integer of at least 1"),
    }
}

fn check_positive_ms(value: &str) -> Result<(), &'static str> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(()),
        _ => Err("expected a positive number of milliseconds"),
    }
}

fn check_non_negative_ms(value: &str) -> Result<(), &'static str> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(()),
        _ => Err("expected a non-negative number of milliseconds"),
    }
}

fn check_compression(value: &str) -> Result<(), &'static str> {
    match value.trim() {
        "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
        _ => Err("expected producer, uncompressed, gzip, snappy, lz4 or zstd"),
    }
}

/// Every accepted topic config, in the order DescribeConfigs lists them. Broker synonyms are
/// given only where the broker honours the property (`config::TopicDefaults` reads each one).
pub(crate) const CATALOG: &[ConfigDef] = &[
    log(
        "cleanup.policy",
        Some("log.cleanup.policy"),
        ConfigType::List,
    ),
    stored(
        "compression.type",
        "compression.type",
        ConfigType::String,
        "producer",
        check_compression,
    ),
    log(
        "delete.retention.ms",
        Some("log.cleaner.delete.retention.ms"),
        ConfigType::Long,
    ),
    stored(
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        ConfigType::Long,
        "60000",
        check_non_negative_ms,
    ),
    log(
        "flush.messages",
        Some("log.flush.interval.messages"),
        ConfigType::Long,
    ),
    log("flush.ms", Some("log.flush.interval.ms"), ConfigType::Long),
    log(
        "index.interval.bytes",
        Some("log.index.interval.bytes"),
        ConfigType::Int,
    ),
    stored(
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        ConfigType::Long,
        "9223372036854775807",
        check_positive_ms,
    ),
    log(
        "max.message.bytes",
        Some("message.max.bytes"),
        ConfigType::Int,
    ),
    log("message.timestamp.after.max.ms", None, ConfigType::Long),
    log("message.timestamp.before.max.ms", None, ConfigType::Long),
    log(
        "message.timestamp.type",
        Some("log.message.timestamp.type"),
        ConfigType::String,
    ),
    log(
        "min.cleanable.dirty.ratio",
        Some("log.cleaner.min.cleanable.ratio"),
        ConfigType::Double,
    ),
    log(
        "min.compaction.lag.ms",
        Some("log.cleaner.min.compaction.lag.ms"),
        ConfigType::Long,
    ),
    stored(
        "min.insync.replicas",
        "min.insync.replicas",
        ConfigType::Int,
        "1",
        check_min_insync,
    ),
    stored(
        "preallocate",
        "log.preallocate",
        ConfigType::Boolean,
        "false",
        check_bool,
    ),
    log(
        "retention.bytes",
        Some("log.retention.bytes"),
        ConfigType::Long,
    ),
    log("retention.ms", Some("log.retention.ms"), ConfigType::Long),
    log("segment.bytes", Some("log.segment.bytes"), ConfigType::Int),
    log("segment.index.bytes", None, ConfigType::Int),
    stored(
        "segment.jitter.ms",
        "log.roll.jitter.ms",
        ConfigType::Long,
        "0",
        check_non_negative_ms,
    ),
    log("segment.ms", Some("log.roll.ms"), ConfigType::Long),
    stored(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        ConfigType::Boolean,
        "false",
        check_bool,
    ),
];

/// The catalog entry for `name`.
pub(crate) fn def(name: &str) -> Option<&'static ConfigDef> {
    CATALOG.iter().find(|d| d.name == name)
}

/// The catalog entry whose default the broker property `key` sets (`log.retention.ms` →
/// `retention.ms`). These properties are the dynamic broker configs: they can be changed at
/// run time through a BROKER resource, for one broker or as the cluster-wide default, as
/// Kafka's per-broker log configs can.
pub(crate) fn def_by_broker_key(key: &str) -> Option<&'static ConfigDef> {
    CATALOG.iter().find(|d| d.broker_synonym == Some(key))
}

/// The built-in default of a stored (not log) topic config; `None` for a log config, whose
/// default is `LogConfig`'s.
pub(crate) fn stored_default(def: &ConfigDef) -> Option<&'static str> {
    match def.backing {
        Backing::Stored { default, .. } => Some(default),
        Backing::Log => None,
    }
}

/// The default of a topic config from this broker's properties, as Kafka spells it.
fn static_default(config: &BrokerConfig, def: &ConfigDef) -> String {
    match def.backing {
        Backing::Log => log_value(&config.topic_defaults.log, def.name),
        Backing::Stored { default, .. } => match def.name {
            // Read with the replication settings, which act on it.
            "min.insync.replicas" => config.replication.min_insync_replicas.to_string(),
            name => config
                .topic_defaults
                .stored_value(name)
                .unwrap_or_else(|| default.to_string()),
        },
    }
}

/// The dynamic broker configs in force on broker `node_id`, by topic config name: the
/// cluster-wide default overridden by the broker's own.
pub(crate) fn dynamic_defaults(image: &MetadataImage, node_id: i32) -> BTreeMap<String, String> {
    let mut dynamic = BTreeMap::new();
    for (resource, _) in dynamic_layers(node_id).iter().rev() {
        for (key, value) in image.configs(resource).into_iter().flatten() {
            if let Some(def) = def_by_broker_key(key) {
                dynamic.insert(def.name.to_string(), value.clone());
            }
        }
    }
    dynamic
}

/// Where dynamic broker configs of broker `node_id` come from, most specific first: its own,
/// then the cluster-wide default.
fn dynamic_layers(node_id: i32) -> [(ConfigResource, ConfigSource); 2] {
    [
        (ConfigResource::Broker(node_id), ConfigSource::DynamicBroker),
        (
            ConfigResource::ClusterDefault,
            ConfigSource::DynamicDefaultBroker,
        ),
    ]
}

/// The dynamic values of broker property `key` on this broker, most specific first: its own,
/// then the cluster-wide default.
fn dynamic_values(image: &MetadataImage, node_id: i32, key: &str) -> Vec<(String, ConfigSource)> {
    dynamic_layers(node_id)
        .into_iter()
        .filter_map(|(resource, source)| {
            image
                .configs(&resource)
                .and_then(|c| c.get(key))
                .map(|v| (v.clone(), source))
        })
        .collect()
}

/// Checks a whole set of dynamic broker configs (broker property names): each must be one of
/// the dynamic ones, with a value the topic config it defaults would accept.
pub(crate) fn validate_dynamic(
    broker: &Broker,
    configs: &BTreeMap<String, String>,
) -> Result<(), AdminError> {
    let mut as_topic = BTreeMap::new();
    let mut static_only = Vec::new();
    for (key, value) in configs {
        match def_by_broker_key(key) {
            Some(def) => {
                as_topic.insert(def.name.to_string(), value.clone());
            }
            None => static_only.push(key.as_str()),
        }
    }
    if !static_only.is_empty() {
        return Err(AdminError::InvalidRequest(format!(
            "Cannot update these configs dynamically: {}. Dynamic broker configs are the \
             topic defaults: {}",
            static_only.join(", "),
            CATALOG
                .iter()
                .filter_map(|d| d.broker_synonym)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    validate(broker, "", &as_topic).map_err(|e| match e {
        // Name the broker property, not the topic config it defaults.
        AdminError::InvalidConfig(mut message) => {
            for key in configs.keys() {
                if let Some(def) = def_by_broker_key(key) {
                    message = message.replace(&format!(" {}", def.name), &format!(" {key}"));
                }
            }
            AdminError::InvalidConfig(message)
        }
        other => other,
    })
}

/// Whether `name` is a config the partition log enforces (and `LogConfig` understands).
pub(crate) fn is_log_config(name: &str) -> bool {
    def(name).is_some_and(|d| matches!(d.backing, Backing::Log))
}

/// Checks a complete override set: every name is known and every value valid, including the
/// log configs as the log would apply them over the broker defaults.
pub(crate) fn validate(
    broker: &Broker,
    topic: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<(), AdminError> {
    for (name, value) in overrides {
        let def = def(name).ok_or_else(|| {
            AdminError::InvalidConfig(format!("Unknown topic config name: {name}"))
        })?;
        if let Backing::Stored { check, .. } = def.backing {
            check(value).map_err(|reason| {
                AdminError::InvalidConfig(format!(
                    "Invalid value {value} for configuration {name}: {reason}"
                ))
            })?;
        }
    }
    let probe = Topic {
        name: topic.to_string(),
        id: weir_protocol::Uuid::ZERO,
        partitions: 1,
        configs: overrides.clone(),
        internal: false,
    };
    broker.partitions.log_config(&probe)?;
    Ok(())
}

/// A described config value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Described {
    /// The config name.
    pub(crate) name: String,
    /// Its value (`None` for a sensitive value).
    pub(crate) value: Option<String>,
    /// Where the value comes from.
    pub(crate) source: ConfigSource,
    /// Whether AlterConfigs may change it.
    pub(crate) read_only: bool,
    /// Whether the value is a secret.
    pub(crate) sensitive: bool,
    /// The value type.
    pub(crate) config_type: ConfigType,
    /// The value's synonyms, most specific first (Kafka's order): the topic override, the
    /// broker property, the built-in default.
    pub(crate) synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

/// Every config of `topic`, with values and sources.
pub(crate) fn describe_topic(broker: &Broker, topic: &Topic) -> Result<Vec<Described>, AdminError> {
    let defaults_probe = Topic {
        configs: BTreeMap::new(),
        ..topic.clone()
    };
    let default_log = broker.partitions.log_config(&defaults_probe)?;
    let config = broker.config();
    let image = broker.topics.image();
    let node_id = config.node_id;
    Ok(CATALOG
        .iter()
        .map(|def| {
            let broker_value = def
                .broker_synonym
                .filter(|key| config.is_static(key))
                .map(|key| (key, static_default(config, def)));
            let dynamic = def
                .broker_synonym
                .map(|key| dynamic_values(&image, node_id, key))
                .unwrap_or_default();
            let default_value = match def.backing {
                Backing::Log => log_value(&default_log, def.name),
                Backing::Stored { default, .. } => default.to_string(),
            };
            let builtin = match def.backing {
                Backing::Log => log_value(&LogConfig::default(), def.name),
                Backing::Stored { default, .. } => default.to_string(),
            };
            let mut synonyms = Vec::new();
            let override_value = topic.configs.get(def.name).cloned();
            if let Some(v) = &override_value {
                synonyms.push((
                    def.name.to_string(),
                    Some(v.clone()),
                    ConfigSource::DynamicTopic,
                ));
            }
            for (v, source) in &dynamic {
                synonyms.push((
                    def.broker_synonym.unwrap_or(def.name).to_string(),
                    Some(v.clone()),
                    *source,
                ));
            }
            if let Some((key, v)) = &broker_value {
                synonyms.push((key.to_string(), Some(v.clone()), ConfigSource::StaticBroker));
            }
            synonyms.push((
                def.broker_synonym.unwrap_or(def.name).to_string(),
                Some(builtin),
                ConfigSource::Default,
            ));
            let (value, source) = match (override_value, &broker_value) {
                (Some(v), _) => (v, ConfigSource::DynamicTopic),
                (None, _) if !dynamic.is_empty() => match (def.backing, dynamic.first()) {
                    // The log config already merged the dynamic value in.
                    (Backing::Log, Some((_, source))) => (default_value, *source),
                    (_, Some((v, source))) => (v.clone(), *source),
                    (_, None) => (default_value, ConfigSource::Default),
                },
                (None, Some((_, v))) => match def.backing {
                    // The log config already merged the broker property in.
                    Backing::Log => (default_value, ConfigSource::StaticBroker),
                    Backing::Stored { .. } => (v.clone(), ConfigSource::StaticBroker),
                },
                (None, None) => (default_value, ConfigSource::Default),
            };
            Described {
                name: def.name.to_string(),
                value: Some(value),
                source,
                read_only: false,
                sensitive: false,
                config_type: def.config_type,
                synonyms,
            }
        })
        .collect())
}

/// The value a topic config has when the topic does not override it.
pub(crate) fn default_value(broker: &Broker, name: &str) -> Result<Option<String>, AdminError> {
    let probe = Topic {
        name: String::new(),
        id: weir_protocol::Uuid::ZERO,
        partitions: 1,
        configs: BTreeMap::new(),
        internal: false,
    };
    Ok(describe_topic(broker, &probe)?
        .into_iter()
        .find(|d| d.name == name)
        .and_then(|d| d.value))
}

/// The broker's properties: every property Weir reads (its built-in default, `DEFAULT_CONFIG`;
/// no value when its absence means something else, such as `advertised.listeners` following
/// `listeners`), every property given (`STATIC_BROKER_CONFIG`), and the dynamic configs over
/// them (the cluster-wide default, then — when `own` — this broker's). Only the dynamic broker
/// configs (the topic defaults, [`def_by_broker_key`]) can be altered; the rest are read-only
/// (change them in the file or flags and restart).
pub(crate) fn describe_broker(broker: &Broker, own: bool) -> Vec<Described> {
    let given = broker.config().static_properties();
    let mut all: BTreeMap<String, (Option<String>, ConfigSource)> = crate::config::DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), (Some(v.to_string()), ConfigSource::Default)))
        .collect();
    for (k, v) in crate::config::OTHER_PROPERTIES {
        all.entry(k.to_string())
            .or_insert((v.map(str::to_string), ConfigSource::Default));
    }
    let builtin_log = LogConfig::default();
    for def in CATALOG {
        let Some(key) = def.broker_synonym else {
            continue;
        };
        let builtin = match def.backing {
            Backing::Log => log_value(&builtin_log, def.name),
            Backing::Stored { default, .. } => default.to_string(),
        };
        all.entry(key.to_string())
            .or_insert((Some(builtin), ConfigSource::Default));
    }
    for (k, v) in given {
        all.insert(k.clone(), (Some(v.clone()), ConfigSource::StaticBroker));
    }
    let image = broker.topics.image();
    // The default first, so that this broker's own values (when asked for) win.
    let layers = dynamic_layers(broker.config().node_id);
    for (resource, source) in layers.iter().rev().take(if own { 2 } else { 1 }) {
        for (k, v) in image.configs(resource).into_iter().flatten() {
            all.insert(k.clone(), (Some(v.clone()), *source));
        }
    }
    all.into_iter()
        .map(|(name, (value, source))| {
            let sensitive = name.contains("password") || name.contains("secret");
            let value = value.filter(|_| !sensitive);
            Described {
                synonyms: vec![(name.clone(), value.clone(), source)],
                read_only: def_by_broker_key(&name).is_none(),
                config_type: def_by_broker_key(&name).map_or(ConfigType::String, |d| d.config_type),
                name,
                value,
                source,
                sensitive,
            }
        })
        .collect()
}

/// The value of a log config as Kafka spells it.
fn log_value(config: &LogConfig, name: &str) -> String {
    match name {
        "segment.bytes" => config.segment_bytes.to_string(),
        "segment.ms" => config.segment_ms.to_string(),
        "segment.index.bytes" => config.segment_index_bytes.to_string(),
        "index.interval.bytes" => config.index_interval_bytes.to_string(),
        "retention.ms" => config.retention_ms.to_string(),
        "retention.bytes" => config.retention_bytes.to_string(),
        "max.message.bytes" => config.max_message_bytes.to_string(),
        "message.timestamp.type" => match config.message_timestamp_type {
            TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            TimestampType::CreateTime => "CreateTime".to_string(),
        },
        "message.timestamp.before.max.ms" => config.message_timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => config.message_timestamp_after_max_ms.to_string(),
        "flush.messages" => config.flush_messages.to_string(),
        "flush.ms" => config.flush_ms.to_string(),
        "cleanup.policy" => {
            let policy = config.cleanup_policy;
            match (policy.compact, policy.delete) {
                (true, true) => "compact,delete".to_string(),
                (true, false) => "compact".to_string(),
                _ => "delete".to_string(),
            }
        }
        "delete.retention.ms" => config.delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => config.min_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => config.min_cleanable_dirty_ratio.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_log_config_in_the_catalog_is_understood_by_the_log() {
        let defaults = LogConfig::default();
        for def in CATALOG {
            if is_log_config(def.name) {
                let value = log_value(&defaults, def.name);
                assert!(!value.is_empty(), "{} has no rendering", def.name);
                LogConfig::from_properties([(def.name, value.as_str())])
                    .unwrap_or_else(|e| panic!("{}: {e}", def.name));
            } else {
                assert!(LogConfig::from_properties([(def.name, "1")]).is_err());
            }
        }
    }

    #[test]
    fn catalog_is_sorted_and_unique() {
        let names: Vec<_> = CATALOG.iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }
}
