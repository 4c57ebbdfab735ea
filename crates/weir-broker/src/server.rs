//! The listener: accepts connections within `max.connections` and shuts down gracefully.

use crate::config::BrokerConfig;
use crate::connection;
use crate::state::Broker;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// A bound, not yet running broker server.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    listener: TcpListener,
}

impl Server {
    /// Opens the broker's state and binds its listener.
    pub async fn bind(config: BrokerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listener).await?;
        let broker = Arc::new(Broker::new(config));
        Ok(Self { broker, listener })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared broker state.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets every connection finish
    /// its in-flight request, and returns.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        let limit = Arc::new(Semaphore::new(self.broker.config().max_connections));
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        warn!(%peer, "max.connections reached; refusing connection");
                        drop(stream);
                        continue;
                    };
                    let broker = self.broker.clone();
                    let stopped = stopped.clone();
                    connections.spawn(async move {
                        connection::serve(broker, stream, peer, stopped).await;
                        drop(permit);
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        info!(
            connections = connections.len(),
            "shutting down: no new connections"
        );
        let _ = stop.send(true);
        while connections.join_next().await.is_some() {}
        info!("all connections closed");
        Ok(())
    }
}
