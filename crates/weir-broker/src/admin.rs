//! Topic administration on [`Broker`]: delete a topic, grow its partitions, replace its config
//! overrides. The handlers check requests; these methods ask the controller to write the change
//! into the metadata log and return once this broker has published it (its logs created,
//! reconfigured or deleted to match: see [`crate::cluster`]).
//!
//! Crash safety comes from that order: the metadata log is the source of truth, and a broker
//! that restarts makes its logs match it before it serves, so a topic deleted just before a
//! crash never comes back with its old data.

use crate::error::AdminError;
use crate::state::Broker;
use crate::topic_config;
use crate::topics::{Topic, TopicError};
use std::collections::BTreeMap;
use tracing::info;
use weir_metadata::ConfigResource;
use weir_metadata::active::ControllerRequest;

/// Internal topics: created by the broker itself, never through CreateTopics or DeleteTopics.
pub(crate) const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

impl Broker {
    /// Deletes a topic, with its partition logs.
    pub(crate) fn delete_topic(&self, name: &str) -> Result<Topic, AdminError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| AdminError::from(TopicError::Unknown(name.to_string())))?;
        self.cluster.call_blocking(ControllerRequest::DeleteTopic {
            name: name.to_string(),
        })?;
        self.metrics.forget_topic(&topic.name);
        info!(topic = name, partitions = topic.partitions, "deleted topic");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions (placed by the controller, or on `assignments`).
    pub(crate) fn grow_topic(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
    ) -> Result<(), AdminError> {
        let current = self
            .topics
            .get(name)
            .ok_or_else(|| AdminError::from(TopicError::Unknown(name.to_string())))?
            .partitions;
        if count <= current {
            return Err(shrink_error(current, count));
        }
        self.cluster
            .call_blocking(ControllerRequest::CreatePartitions {
                topic: name.to_string(),
                count,
                assignments,
                validate_only: false,
            })?;
        info!(topic = name, partitions = count, "grew topic");
        Ok(())
    }

    /// Replaces a topic's config overrides (already validated); its logs follow when the
    /// change is published.
    pub(crate) fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Topic, AdminError> {
        topic_config::validate(self, name, &configs)?;
        let current = self
            .topics
            .get(name)
            .ok_or_else(|| AdminError::from(TopicError::Unknown(name.to_string())))?;
        self.cluster
            .call_blocking(ControllerRequest::AlterConfigs {
                resource: ConfigResource::Topic(name.to_string()),
                changes: config_changes(&current.configs, &configs),
            })?;
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| AdminError::from(TopicError::Unknown(name.to_string())))?;
        info!(topic = name, configs = ?topic.configs, "changed topic configs");
        Ok(topic)
    }

    /// Replaces the dynamic broker configs of `resource` (this broker's or the cluster-wide
    /// default), `current` → `configs`, through the controller; returns once this broker's
    /// image holds them (and its logs were reconfigured).
    pub(crate) fn set_dynamic_broker_configs(
        &self,
        resource: ConfigResource,
        current: &BTreeMap<String, String>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        self.cluster
            .call_blocking(ControllerRequest::AlterConfigs {
                resource: resource.clone(),
                changes: config_changes(current, &configs),
            })?;
        info!(?resource, ?configs, "changed dynamic broker configs");
        Ok(())
    }
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
    crate::blocking::spawn(move || {
        let _serialized = broker.admin_lock.lock();
        work(&broker)
    })
    .await
    .ok()
}

/// The config changes that turn `current` into `configs`: every name `configs` drops is
/// removed (`None`), every name it holds is set.
fn config_changes(
    current: &BTreeMap<String, String>,
    configs: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>)> {
    current
        .keys()
        .filter(|k| !configs.contains_key(*k))
        .map(|k| (k.clone(), None))
        .chain(configs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use std::sync::Arc;

    async fn open(dir: &std::path::Path, extra: &[(&str, &str)]) -> Arc<Broker> {
        let mut props = BTreeMap::new();
        props.insert("log.dirs".to_string(), dir.display().to_string());
        props.insert("offsets.topic.num.partitions".to_string(), "1".to_string());
        for (k, v) in extra {
            props.insert(k.to_string(), v.to_string());
        }
        Broker::open(BrokerConfig::from_properties(props).unwrap(), None)
            .await
            .unwrap()
    }

    /// Runs `f` on the blocking pool, where admin methods run.
    async fn blocking<T: Send + 'static>(
        broker: &Arc<Broker>,
        f: impl FnOnce(&Broker) -> T + Send + 'static,
    ) -> T {
        let b = broker.clone();
        crate::blocking::spawn(move || f(&b)).await.unwrap()
    }

    async fn close(broker: Arc<Broker>) {
        broker.cluster.stop_background().await;
        let broker = Arc::try_unwrap(broker).unwrap();
        crate::blocking::spawn(move || broker.close())
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn config_changes_reach_the_open_logs_and_new_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(dir.path(), &[]).await;
        blocking(&broker, |b| {
            b.create_topic("t", 1, BTreeMap::new()).unwrap()
        })
        .await;
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1234".to_string());
        configs.insert("segment.bytes".to_string(), "4096".to_string());
        configs.insert("min.insync.replicas".to_string(), "1".to_string());
        blocking(&broker, |b| b.set_topic_configs("t", configs).unwrap()).await;
        let log = broker.partitions.log("t", 0).unwrap();
        assert_eq!(log.config().retention_ms, 1234);
        assert_eq!(log.config().segment_bytes, 4096);

        blocking(&broker, |b| b.grow_topic("t", 3, None).unwrap()).await;
        let added = broker.partitions.log("t", 2).unwrap();
        assert_eq!(added.config().segment_bytes, 4096);
        assert!(matches!(
            blocking(&broker, |b| b.grow_topic("t", 3, None)).await,
            Err(AdminError::InvalidPartitions(_))
        ));

        // Refused values leave the logs alone.
        let mut bad = BTreeMap::new();
        bad.insert("segment.bytes".to_string(), "1".to_string());
        assert!(matches!(
            blocking(&broker, |b| b.set_topic_configs("t", bad)).await,
            Err(AdminError::InvalidConfig(_))
        ));
        assert_eq!(log.config().segment_bytes, 4096);
        close(broker).await;
    }

    /// Guards against a broker that would not start when a broker property maps to a topic
    /// config the log does not know (`log.segment.delete.delay.ms`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_configs_take_broker_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(
            dir.path(),
            &[
                ("log.segment.delete.delay.ms", "1000"),
                ("min.insync.replicas", "2"),
            ],
        )
        .await;
        let topic = blocking(&broker, |b| {
            b.create_topic("t", 1, BTreeMap::new()).unwrap()
        })
        .await;
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
        close(broker).await;
    }

    /// Guards against a deleted topic's data coming back: logs that no topic of the metadata
    /// holds (a crash after the deletion was committed, before the logs were removed) are
    /// deleted when the broker starts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphan_logs_are_deleted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(dir.path(), &[]).await;
        blocking(&broker, |b| {
            b.create_topic("kept", 1, BTreeMap::new()).unwrap()
        })
        .await;
        close(broker).await;
        // What a crash between the metadata commit and the log deletion leaves behind.
        std::fs::create_dir_all(dir.path().join("gone-0")).unwrap();
        std::fs::create_dir_all(dir.path().join("gone-1")).unwrap();

        let broker = open(dir.path(), &[]).await;
        assert!(!dir.path().join("gone-0").exists());
        assert!(!dir.path().join("gone-1").exists());
        assert!(broker.partitions.log("kept", 0).is_some());
        close(broker).await;
    }

    /// A data directory of an earlier single-node Weir (topic registry in
    /// `weir-topics.json`, producer ids in `weir-producer-ids`) keeps its topics, ids, configs
    /// and data when it becomes a cluster node.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_legacy_registry_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("weir-topics.json"),
            r#"[{"name":"old","id":"0102030405060708090a0b0c0d0e0f10","partitions":2,
                 "configs":{"retention.ms":"99"},"internal":false}]"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("weir-producer-ids"), "5000\n").unwrap();
        std::fs::write(
            dir.path().join("meta.properties"),
            "version=1\ncluster.id=legacy-cluster\n",
        )
        .unwrap();
        let broker = open(dir.path(), &[]).await;
        let topic = broker.topics.get("old").unwrap();
        assert_eq!(
            format!("{:?}", topic.id),
            "0102030405060708090a0b0c0d0e0f10"
        );
        assert_eq!(topic.partitions, 2);
        assert_eq!(topic.configs["retention.ms"], "99");
        assert_eq!(broker.cluster_id(), "legacy-cluster");
        assert!(broker.partitions.log("old", 1).is_some());
        let id = blocking(&broker, |b| b.producer_ids.allocate(b).unwrap()).await;
        assert!(id >= 5000, "{id}");
        assert!(!dir.path().join("weir-topics.json").exists());
        close(broker).await;
    }
}
