//! [`Broker`]: the state every handler shares.

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partitions::Partitions;
use crate::producer_ids::ProducerIds;
use crate::producer_state::ProducerStates;
use crate::topics::{Topic, TopicRegistry};
use std::collections::BTreeMap;
use tracing::info;

/// Shared broker state.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    cluster_id: String,
    /// The group coordinator (`__consumer_offsets` loaded at open).
    pub(crate) groups: crate::groups::Groups,
    pub(crate) topics: TopicRegistry,
    pub(crate) partitions: Partitions,
    /// Request, byte and connection counters for `/metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Serializes admin changes, which read a topic, validate and write it back.
    pub(crate) admin_lock: parking_lot::Mutex<()>,
    /// Producer ids for InitProducerId.
    pub(crate) producer_ids: ProducerIds,
    /// Idempotent producers' sequence state per partition.
    pub(crate) producer_states: ProducerStates,
}

impl Broker {
    /// Opens the broker's data: the topic registry and every partition log (recovering logs
    /// that were not shut down cleanly).
    pub fn open(config: BrokerConfig) -> Result<Self, BrokerError> {
        let started = std::time::Instant::now();
        let meta_dir = config.log_dirs.first().cloned().unwrap_or_default();
        let topics = TopicRegistry::open(&meta_dir)?;
        let partitions = Partitions::open(&config)?;
        for topic in topics.all() {
            partitions.create_logs(&topic)?;
        }
        crate::admin::remove_orphan_logs(&topics, &partitions)?;
        let groups = crate::groups::Groups::open(&config, &topics, &partitions)?;
        let cluster_id = cluster_id(&meta_dir)?;
        let producer_ids = ProducerIds::open(&meta_dir)?;
        info!(
            topics = topics.all().len(),
            partitions = partitions.all().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "data directories loaded"
        );
        Ok(Self {
            config,
            cluster_id,
            groups,
            topics,
            partitions,
            metrics: crate::metrics::Metrics::default(),
            admin_lock: parking_lot::Mutex::new(()),
            producer_ids,
            producer_states: ProducerStates::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The cluster id reported in metadata.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Creates a topic and its partition logs.
    pub(crate) fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        internal: bool,
    ) -> Result<Topic, BrokerError> {
        let topic = self.topics.create(name, partitions, configs, internal)?;
        if let Err(e) = self.partitions.create_logs(&topic) {
            let _ = self.topics.delete(name);
            let _ = self.partitions.delete_logs(name, partitions);
            return Err(e.into());
        }
        info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Flushes and closes every log (writing clean-shutdown markers).
    pub fn close(self) -> Result<(), BrokerError> {
        self.producer_states
            .write_snapshots(&self.topics, |topic, partition| {
                self.partitions.log(topic, partition)
            });
        self.partitions.close()?;
        Ok(())
    }

    /// Flushes what the flush policy says is due; called periodically.
    pub(crate) fn tick(&self) -> Result<(), BrokerError> {
        self.partitions.tick()?;
        Ok(())
    }
}

/// Reads the cluster id from `meta.properties`, creating one on first start.
fn cluster_id(dir: &std::path::Path) -> Result<String, BrokerError> {
    let path = dir.join("meta.properties");
    let storage =
        |e: std::io::Error| crate::topics::TopicError::Storage(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Some(id) = text.lines().find_map(|l| l.strip_prefix("cluster.id=")) {
                return Ok(id.trim().to_string());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage(e).into()),
    }
    let id = crate::topics::new_topic_id();
    // Kafka cluster ids are 22 characters of URL-safe base64 of a UUID; any stable string works
    // for clients, so hex keeps it simple.
    let id = format!("{id:?}").chars().take(22).collect::<String>();
    std::fs::write(&path, format!("version=1\ncluster.id={id}\n")).map_err(storage)?;
    Ok(id)
}
