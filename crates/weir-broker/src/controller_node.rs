//! A controller-only node (`process.roles=controller`): a voter of the metadata quorum and,
//! while it leads, the active controller. It serves only its CONTROLLER listener (Raft, the
//! controller's requests from brokers, DescribeQuorum, and the metadata fetches of broker-only
//! nodes); it has no client listener and holds no partitions, as in KRaft.

use crate::cluster::ClusterNode;
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::server::ServerError;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tracing::info;

/// A started controller-only node.
#[derive(Debug)]
pub struct ControllerNode {
    cluster: ClusterNode,
    controller_addr: SocketAddr,
    cluster_id: String,
}

impl ControllerNode {
    /// Binds the CONTROLLER listener, starts this voter and its controller, and waits until
    /// the quorum has a cluster id (checked against this node's `meta.properties`).
    pub async fn start(config: BrokerConfig) -> Result<Self, ServerError> {
        crate::descriptors::raise_open_file_limit();
        let address = config.quorum.controller_listener.ok_or_else(|| {
            BrokerError::Setup("a controller-only node needs a CONTROLLER listener".into())
        })?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Bind { address, source })?;
        let controller_addr = listener.local_addr().unwrap_or(address);
        let meta_dir = config.log_dirs.first().cloned().unwrap_or_default();
        std::fs::create_dir_all(&meta_dir).map_err(|e| {
            BrokerError::Setup(format!("cannot create {}: {e}", meta_dir.display()))
        })?;
        let bootstrap = crate::cluster::controller_bootstrap(&meta_dir)?;
        let cluster = ClusterNode::start(&config, bootstrap, Some(listener)).await?;
        let cluster_id = cluster.check_cluster_id(&meta_dir).await?;
        Ok(Self {
            cluster,
            controller_addr,
            cluster_id,
        })
    }

    /// Where the CONTROLLER listener is bound.
    pub fn controller_addr(&self) -> SocketAddr {
        self.controller_addr
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The node id of the active controller, if known.
    pub fn active_controller(&self) -> Option<i32> {
        self.cluster.active_controller()
    }

    /// Serves until `shutdown` resolves, then stops the quorum.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        shutdown.await;
        info!("controller stopping");
        self.cluster.stop_background().await;
        Ok(())
    }
}
