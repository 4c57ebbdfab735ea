//! [`Broker`]: the state every handler shares.

use crate::config::BrokerConfig;

/// Shared broker state.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    cluster_id: String,
}

impl Broker {
    /// A broker with `config`.
    pub fn new(config: BrokerConfig) -> Self {
        Self {
            config,
            cluster_id: "weir-cluster".to_string(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The cluster id reported in metadata.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }
}
