//! The listener: accepts connections within `max.connections` and shuts down gracefully.

use crate::admin_http;
use crate::config::BrokerConfig;
use crate::connection;
use crate::error::BrokerError;
use crate::state::Broker;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

/// How often the broker flushes what its flush policy says is due and checkpoints logs.
const TICK_INTERVAL: Duration = Duration::from_millis(500);

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listener could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker's data could not be opened or closed.
    #[error("broker storage")]
    Broker(#[from] BrokerError),
}

/// A bound, not yet running broker server.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    listener: TcpListener,
    /// The admin HTTP listener (`weir.admin.listener`), unless disabled.
    admin: Option<TcpListener>,
    /// Where the CONTROLLER listener is bound, if this node has one.
    controller_addr: Option<SocketAddr>,
}

impl Server {
    /// Opens the broker's data (recovering it if needed) and binds its listener.
    pub async fn bind(mut config: BrokerConfig) -> Result<Self, ServerError> {
        crate::descriptors::raise_open_file_limit();
        let listener =
            TcpListener::bind(config.listener)
                .await
                .map_err(|source| ServerError::Bind {
                    address: config.listener,
                    source,
                })?;
        // With port 0 the OS picks the port; clients must be told the real one.
        if config.advertised_port == 0 {
            if let Ok(bound) = listener.local_addr() {
                config.advertised_port = bound.port();
            }
        }
        let admin = match config.admin_listener {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|source| ServerError::Bind { address, source })?,
            ),
            None => None,
        };
        let controller = match config.quorum.controller_listener {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|source| ServerError::Bind { address, source })?,
            ),
            None => None,
        };
        let controller_addr = controller.as_ref().and_then(|l| l.local_addr().ok());
        let broker = Broker::open(config, controller).await?;
        Ok(Self {
            broker,
            controller_addr,
            listener,
            admin,
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address the CONTROLLER listener is bound to, if this node has one.
    pub fn controller_addr(&self) -> Option<SocketAddr> {
        self.controller_addr
    }

    /// The address the admin HTTP listener is bound to, if it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The shared broker state.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets every connection finish
    /// its in-flight request, and returns.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let limit = Arc::new(Semaphore::new(self.broker.config().max_connections));
        let (stop, stopped) = watch::channel(false);
        let ticker = tokio::spawn(tick_loop(self.broker.clone(), stopped.clone()));
        let retention = tokio::spawn(retention_loop(self.broker.clone(), stopped.clone()));
        let producer_expiration = tokio::spawn(producer_expiration_loop(
            self.broker.clone(),
            stopped.clone(),
        ));
        let cleaner = self
            .broker
            .config()
            .log_cleaner_enable
            .then(|| tokio::spawn(cleaner_loop(self.broker.clone(), stopped.clone())));
        let isr_check = tokio::spawn(crate::replication::isr_check_loop(
            self.broker.clone(),
            stopped.clone(),
        ));
        let group_timer = tokio::spawn(crate::groups::run_timer(
            self.broker.clone(),
            stopped.clone(),
        ));
        let txn_timer = tokio::spawn(crate::transactions::run_timer(
            self.broker.clone(),
            stopped.clone(),
        ));
        let admin = self.admin.map(|listener| {
            tokio::spawn(admin_http::serve(
                listener,
                self.broker.clone(),
                stopped.clone(),
            ))
        });
        let mut connections = JoinSet::new();
        let mut backoff = crate::descriptors::AcceptBackoff::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            backoff.failed("client", &e).await;
                            continue;
                        }
                    };
                    backoff.accepted("client");
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
        // Leaderships move away before the connections close (Kafka's controlled shutdown).
        self.broker.cluster.controlled_shutdown().await;
        let _ = stop.send(true);
        self.broker.partitions.stop_waiting();
        self.broker.replicas.fetchers.stop_all();
        let _ = isr_check.await;
        self.broker
            .replicas
            .fetchers
            .join_all(Duration::from_secs(10))
            .await;
        while connections.join_next().await.is_some() {}
        let _ = ticker.await;
        let _ = retention.await;
        let _ = producer_expiration.await;
        if let Some(cleaner) = cleaner {
            let _ = cleaner.await;
        }
        let _ = group_timer.await;
        let _ = txn_timer.await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        self.broker.cluster.stop_background().await;
        info!("all connections closed; flushing logs");
        match Arc::try_unwrap(self.broker) {
            Ok(broker) => crate::blocking::spawn(move || broker.close())
                .await
                .map_err(|_| ServerError::Broker(BrokerError::TaskFailed))??,
            // Something still holds the state (a detached task); flush what we can.
            Err(shared) => {
                warn!(
                    "broker state still shared at shutdown; flushing without clean-shutdown markers"
                );
                shared.tick();
            }
        }
        Ok(())
    }
}

/// Runs `work` on the blocking pool at every tick of `interval` until the server stops; a
/// task that panics is reported as `what` failing.
async fn run_periodically(
    broker: Arc<Broker>,
    mut stopped: watch::Receiver<bool>,
    mut interval: tokio::time::Interval,
    what: &'static str,
    work: fn(&Broker),
) {
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let b = broker.clone();
                if crate::blocking::spawn(move || work(&b)).await.is_err() {
                    error!(task = what, "periodic task failed");
                }
            }
            _ = stopped.changed() => return,
        }
    }
}

/// Deletes segments past retention every `log.retention.check.interval.ms`.
async fn retention_loop(broker: Arc<Broker>, stopped: watch::Receiver<bool>) {
    let period = Duration::from_millis(broker.config().log_retention_check_interval_ms);
    let interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    run_periodically(broker, stopped, interval, "retention", |broker| {
        let deleted = broker
            .partitions
            .apply_retention(|tp| broker.high_watermark(&tp.topic, tp.partition));
        if deleted > 0 {
            info!(segments = deleted, "retention deleted old segments");
        }
    })
    .await;
}

/// Forgets idempotent producers idle for `producer.id.expiration.ms` every
/// `producer.id.expiration.check.interval.ms`.
async fn producer_expiration_loop(broker: Arc<Broker>, stopped: watch::Receiver<bool>) {
    let period = Duration::from_millis(broker.config().producer_id_expiration_check_interval_ms);
    let interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    run_periodically(broker, stopped, interval, "producer expiration", |broker| {
        let forgotten = broker.producer_states.expire(
            crate::producers::wall_clock_ms(),
            broker.config().producer_id_expiration_ms,
        );
        if forgotten > 0 {
            debug!(producers = forgotten, "expired idle producers");
        }
    })
    .await;
}

/// The log cleaner: compacts one log at a time while any needs it, then sleeps
/// `log.cleaner.backoff.ms`. A pass that is running when the server stops finishes first (its
/// work is bounded by `log.cleaner.dedupe.buffer.size`).
async fn cleaner_loop(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let backoff = Duration::from_millis(broker.config().log_cleaner_backoff_ms);
    loop {
        if *stopped.borrow() {
            return;
        }
        let b = broker.clone();
        let busy = match crate::blocking::spawn(move || {
            b.partitions
                .clean_step(|tp| b.cleanable_end(&tp.topic, tp.partition))
        })
        .await
        {
            Ok(Ok(Some((tp, stats)))) => {
                info!(
                    %tp,
                    records_removed = stats.records_removed,
                    bytes_before = stats.bytes_before,
                    bytes_after = stats.bytes_after,
                    segments_before = stats.segments,
                    segments_after = stats.segments_after,
                    "log cleaned"
                );
                true
            }
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                error!(error = %e, "log cleaner pass failed");
                false
            }
            Err(_) => {
                error!("log cleaner task failed");
                false
            }
        };
        if busy {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Flushes what the flush policy makes due and checkpoints logs every [`TICK_INTERVAL`].
async fn tick_loop(broker: Arc<Broker>, stopped: watch::Receiver<bool>) {
    let interval = tokio::time::interval(TICK_INTERVAL);
    // Each failing log is logged by `tick`, which carries on with the others.
    run_periodically(broker, stopped, interval, "periodic flush", |broker| {
        broker.tick();
    })
    .await;
}
