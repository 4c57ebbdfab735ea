//! Topic administration on [`Broker`]: delete a topic, grow its partitions, replace its config
//! overrides. The handlers check requests; these methods change the registry and the logs
//! together.
//!
//! Ordering for crash safety: the registry is the source of truth. Deleting removes the registry
//! entry first and the logs second, so a crash in between leaves orphan log directories, which
//! [`remove_orphan_logs`] deletes on the next start; a recreated topic never sees the old
//! data.

use crate::error::{AdminError, BrokerError};
use crate::partitions::Partitions;
use crate::state::Broker;
use crate::topic_config;
use crate::topics::{Topic, TopicError, TopicRegistry};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// Internal topics: created by the broker itself, never through CreateTopics or DeleteTopics.
pub(crate) const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

impl Broker {
    /// Deletes a topic: its registry entry, then its partition logs.
    pub(crate) fn delete_topic(&self, name: &str) -> Result<Topic, AdminError> {
        let topic = self.topics.delete(name)?;
        self.partitions
            .delete_logs(&topic.name, topic.partitions)
            .map_err(BrokerError::Log)?;
        self.metrics.forget_topic(&topic.name);
        info!(topic = name, partitions = topic.partitions, "deleted topic");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions and creates the new logs.
    pub(crate) fn grow_topic(&self, name: &str, count: i32) -> Result<Topic, AdminError> {
        let mut refused = None;
        let result = self.topics.update(name, |topic| {
            if count <= topic.partitions {
                refused = Some(topic.partitions);
                return Err(TopicError::InvalidPartitions(count));
            }
            topic.partitions = count;
            Ok(())
        });
        let topic = match (result, refused) {
            (Ok(topic), _) => topic,
            (Err(_), Some(current)) => return Err(shrink_error(current, count)),
            (Err(e), None) => return Err(e.into()),
        };
        self.partitions
            .create_logs(&topic)
            .map_err(BrokerError::Log)?;
        info!(topic = name, partitions = count, "grew topic");
        Ok(topic)
    }

    /// Replaces a topic's config overrides (already validated) and applies them to its logs.
    pub(crate) fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Topic, AdminError> {
        topic_config::validate(self, name, &configs)?;
        let topic = self.topics.update(name, |topic| {
            topic.configs = configs;
            Ok(())
        })?;
        self.partitions
            .reconfigure(&topic)
            .map_err(BrokerError::Log)?;
        info!(topic = name, configs = ?topic.configs, "changed topic configs");
        Ok(topic)
    }
}

/// Deletes logs that belong to no registered topic or partition: what a crash between deleting
/// a topic's registry entry and its logs leaves behind. Runs when the broker opens its data.
pub(crate) fn remove_orphan_logs(
    topics: &TopicRegistry,
    partitions: &Partitions,
) -> Result<(), BrokerError> {
    for (tp, _) in partitions.all() {
        let known = topics
            .get(&tp.topic)
            .is_some_and(|t| tp.partition < t.partitions);
        if !known {
            warn!(topic = %tp.topic, partition = tp.partition, "deleting orphan partition log");
            partitions.delete_logs_of(&tp)?;
        }
    }
    Ok(())
}

/// The error for a CreatePartitions count that does not grow the topic, in Kafka's words.
pub(crate) fn shrink_error(current: i32, requested: i32) -> AdminError {
    if current == requested {
        AdminError::InvalidPartitions(format!("Topic already has {current} partitions."))
    } else {
        AdminError::InvalidPartitions(format!(
            "Topic currently has {current} partitions, which is higher than the requested {requested}."
        ))
    }
}

/// Runs `work` (registry and log file I/O) on the blocking pool, so an fsync never stalls the
/// connection tasks, holding the admin lock so that concurrent admin requests (an incremental
/// config change reads, validates and writes back) do not interleave. `None` if the task died,
/// which handlers report as a storage error.
pub(crate) async fn blocking<T: Send + 'static>(
    broker: &std::sync::Arc<Broker>,
    work: impl FnOnce(&Broker) -> T + Send + 'static,
) -> Option<T> {
    let broker = broker.clone();
    tokio::task::spawn_blocking(move || {
        let _serialized = broker.admin_lock.lock();
        work(&broker)
    })
    .await
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    fn open(dir: &std::path::Path) -> Broker {
        let mut props = BTreeMap::new();
        props.insert("log.dirs".to_string(), dir.display().to_string());
        Broker::open(BrokerConfig::from_properties(props).unwrap()).unwrap()
    }

    #[test]
    fn config_changes_reach_the_open_logs_and_new_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(dir.path());
        broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1234".to_string());
        configs.insert("segment.bytes".to_string(), "4096".to_string());
        configs.insert("min.insync.replicas".to_string(), "1".to_string());
        broker.set_topic_configs("t", configs).unwrap();
        let log = broker.partitions.log("t", 0).unwrap();
        assert_eq!(log.config().retention_ms, 1234);
        assert_eq!(log.config().segment_bytes, 4096);

        broker.grow_topic("t", 3).unwrap();
        let added = broker.partitions.log("t", 2).unwrap();
        assert_eq!(added.config().segment_bytes, 4096);
        assert!(matches!(
            broker.grow_topic("t", 3),
            Err(AdminError::InvalidPartitions(_))
        ));

        // Refused values leave the logs alone.
        let mut bad = BTreeMap::new();
        bad.insert("segment.bytes".to_string(), "1".to_string());
        assert!(matches!(
            broker.set_topic_configs("t", bad),
            Err(AdminError::InvalidConfig(_))
        ));
        assert_eq!(log.config().segment_bytes, 4096);
        broker.close().unwrap();
    }

    /// Guards against a broker that would not start when a broker property maps to a topic
    /// config the log does not know (`log.segment.delete.delay.ms`).
    #[test]
    fn stored_configs_take_broker_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut props = BTreeMap::new();
        props.insert("log.dirs".to_string(), dir.path().display().to_string());
        props.insert(
            "log.segment.delete.delay.ms".to_string(),
            "1000".to_string(),
        );
        props.insert("min.insync.replicas".to_string(), "2".to_string());
        let broker = Broker::open(BrokerConfig::from_properties(props).unwrap()).unwrap();
        let topic = broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        let described = topic_config::describe_topic(&broker, &topic).unwrap();
        let delay = described
            .iter()
            .find(|d| d.name == "file.delete.delay.ms")
            .unwrap();
        assert_eq!(delay.value.as_deref(), Some("1000"));
        assert_eq!(delay.source, topic_config::ConfigSource::StaticBroker);
        let insync = described
            .iter()
            .find(|d| d.name == "min.insync.replicas")
            .unwrap();
        assert_eq!(insync.value.as_deref(), Some("2"));
        broker.close().unwrap();
    }

    /// Guards against a deleted topic's data coming back: a crash after the registry entry is
    /// removed but before the logs are deleted must not leave the logs to a recreated topic.
    #[test]
    fn orphan_logs_are_deleted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(dir.path());
        broker
            .create_topic("gone", 2, BTreeMap::new(), false)
            .unwrap();
        broker
            .create_topic("kept", 1, BTreeMap::new(), false)
            .unwrap();
        // The crash window: registry updated, logs still there.
        broker.topics.delete("gone").unwrap();
        broker.close().unwrap();
        assert!(dir.path().join("gone-1").exists());

        let broker = open(dir.path());
        assert!(!dir.path().join("gone-0").exists());
        assert!(!dir.path().join("gone-1").exists());
        assert!(broker.partitions.log("kept", 0).is_some());
        broker.close().unwrap();
    }
}
