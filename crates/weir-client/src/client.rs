//! The cluster handle shared by producers, consumers and admin clients.
//!
//! [`Client`] owns one [`Connection`] per broker (reconnected with backoff when it fails), the
//! bootstrap connection, and the metadata cache. Its typed request API sends any request at
//! the highest version both sides speak and returns the response with that version.

use crate::config::ClientConfig;
use crate::connection::{Connection, ConnectionOptions};
use crate::error::{Error, Result};
use crate::metadata::{BrokerMetadata, Metadata, TopicEntry, TopicMetadata, invalidates_metadata};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weir_protocol::messages::MetadataRequest;
use weir_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use weir_protocol::messages::metadata_request::MetadataRequestTopic;
use weir_protocol::{ErrorCode, Request};

/// A handle to a cluster: connections, API versions and metadata. Cheap to clone; clones share
/// everything.
///
/// ```no_run
/// # async fn run() -> weir_client::Result<()> {
/// use weir_client::{Client, ClientConfig};
/// use weir_protocol::messages::ListGroupsRequest;
///
/// let client = Client::connect(ClientConfig::new("localhost:9092")).await?;
/// let (groups, _version) = client.send_any(ListGroupsRequest::default()).await?;
/// println!("{} groups", groups.groups.len());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    options: ConnectionOptions,
    metadata: RwLock<Metadata>,
    /// Topics whose metadata the client keeps.
    topics: Mutex<BTreeSet<String>>,
    /// Changes whenever the metadata is refreshed or marked stale, so callers can cache what
    /// they derive from it.
    epoch: AtomicU64,
    /// Serialises refreshes so concurrent callers share one Metadata request.
    refresh: tokio::sync::Mutex<()>,
    /// Connections by broker id.
    pool: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<Slot>>>>,
    /// The connection to whichever bootstrap server answered first.
    bootstrap: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

/// A broker's connection and its reconnect backoff.
#[derive(Debug, Default)]
struct Slot {
    connection: Option<Arc<Connection>>,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Client {
    /// Validates `config`, connects to the first reachable bootstrap server and loads the
    /// cluster's brokers.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        config.validate()?;
        let options = ConnectionOptions {
            client_id: config.client_id.clone(),
            request_timeout: config.request_timeout,
            connect_timeout: config.connection_setup_timeout,
            max_response_size: config.max_response_size,
        };
        let client = Self {
            inner: Arc::new(Inner {
                config,
                options,
                metadata: RwLock::new(Metadata::default()),
                topics: Mutex::new(BTreeSet::new()),
                epoch: AtomicU64::new(0),
                refresh: tokio::sync::Mutex::new(()),
                pool: Mutex::new(HashMap::new()),
                bootstrap: tokio::sync::Mutex::new(None),
            }),
        };
        client.bootstrap_connection().await?;
        client.refresh_metadata().await?;
        Ok(client)
    }

    /// The configuration this client was created with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sends `request` to broker `broker_id` at the highest version both sides speak, and
    /// returns the response and that version. Fields the version does not carry are not sent,
    /// so callers may fill every field and read the version to interpret the response.
    ///
    /// Not retried: error codes inside the response are the caller's to handle (report leader
    /// errors with [`Client::invalidate_metadata_on`]).
    pub async fn send_to<R: Request>(
        &self,
        broker_id: i32,
        request: R,
    ) -> Result<(R::Response, i16)> {
        let connection = self.connection(broker_id).await?;
        connection.send(&request).await
    }

    /// Sends `request` to any reachable broker (for requests any broker answers: Metadata,
    /// FindCoordinator, CreateTopics, ...). Brokers that cannot be reached are skipped; once a
    /// request is sent it is not retried.
    pub async fn send_any<R: Request>(&self, request: R) -> Result<(R::Response, i16)> {
        let connection = self.any_connection().await?;
        connection.send(&request).await
    }

    /// The negotiated version of `R` on broker `broker_id`'s connection, connecting if needed:
    /// for callers that must build a request differently per version.
    pub async fn version_for<R: Request>(&self, broker_id: i32) -> Result<i16> {
        self.connection(broker_id).await?.version(R::API_KEY)
    }

    /// The leader of `topic`'s `partition`, refreshing metadata (within `request.timeout.ms`)
    /// while the topic is unknown or the partition has no leader.
    pub async fn leader_for(&self, topic: &str, partition: i32) -> Result<i32> {
        let topic = self.topic(topic).await?;
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let mut topic = topic;
        let mut backoff = self.retry_backoff();
        loop {
            let Some(p) = topic.partitions.iter().find(|p| p.partition == partition) else {
                return Err(Error::Kafka {
                    code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    message: Some(format!(
                        "{} has {} partitions, no partition {partition}",
                        topic.name,
                        topic.partitions.len()
                    )),
                });
            };
            if p.leader_id >= 0 {
                return Ok(p.leader_id);
            }
            if Instant::now() >= deadline {
                return Err(Error::kafka(ErrorCode::LEADER_NOT_AVAILABLE));
            }
            tokio::time::sleep(backoff.next()).await;
            self.invalidate_metadata();
            topic = self.topic(&topic.name).await?;
        }
    }

    /// The metadata of `topic`, fetched when not cached, stale or older than
    /// `metadata.max.age.ms`. Retriable topic errors (LEADER_NOT_AVAILABLE while a topic is
    /// being auto-created, UNKNOWN_TOPIC_OR_PARTITION) are retried within `request.timeout.ms`.
    pub async fn topic(&self, name: &str) -> Result<TopicMetadata> {
        let newly_tracked = self.inner.topics.lock().insert(name.to_string());
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let mut backoff = self.retry_backoff();
        let mut refresh = newly_tracked;
        loop {
            if refresh || self.needs_refresh() {
                self.refresh_metadata().await?;
            }
            let entry = self.inner.metadata.read().topics.get(name).cloned();
            let code = match entry {
                Some(TopicEntry::Known(topic)) => return Ok(topic),
                Some(TopicEntry::Error(code)) => code,
                None => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            };
            if !code.is_retriable() || Instant::now() >= deadline {
                return Err(Error::Kafka {
                    code,
                    message: Some(format!("topic {name}")),
                });
            }
            tokio::time::sleep(backoff.next()).await;
            refresh = true;
        }
    }

    /// The brokers the last metadata response listed.
    pub fn brokers(&self) -> Vec<BrokerMetadata> {
        let mut brokers: Vec<_> = self
            .inner
            .metadata
            .read()
            .brokers
            .values()
            .cloned()
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        brokers
    }

    /// The id of the broker coordinating consumer group `group`, retrying
    /// COORDINATOR_NOT_AVAILABLE and COORDINATOR_LOAD_IN_PROGRESS within `request.timeout.ms`.
    /// Not cached: callers keep it until the coordinator answers NOT_COORDINATOR.
    pub async fn find_coordinator(&self, group: &str) -> Result<i32> {
        self.find_coordinator_of(group, 0).await
    }

    /// The id of the broker coordinating `key` of `key_type` (0 a consumer group, 1 a
    /// transactional id), retrying as [`Client::find_coordinator`] does.
    pub(crate) async fn find_coordinator_of(&self, key: &str, key_type: i8) -> Result<i32> {
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let mut backoff = self.retry_backoff();
        loop {
            let request = FindCoordinatorRequest {
                key: key.to_string(),
                key_type,
                ..FindCoordinatorRequest::default()
            };
            let result = self.send_any(request).await;
            let error = match result {
                Ok((response, _)) => {
                    let code = ErrorCode(response.error_code);
                    if !code.is_error() {
                        self.inner.metadata.write().brokers.insert(
                            response.node_id,
                            BrokerMetadata {
                                node_id: response.node_id,
                                host: response.host,
                                port: response.port,
                                rack: None,
                            },
                        );
                        return Ok(response.node_id);
                    }
                    Error::Kafka {
                        code,
                        message: response.error_message,
                    }
                }
                Err(err) => err,
            };
            if !error.is_retriable() || Instant::now() >= deadline {
                return Err(error);
            }
            tokio::time::sleep(backoff.next()).await;
        }
    }

    /// Marks the metadata stale when `code` means the cached leader or topic is wrong
    /// (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, a fenced
    /// leader epoch, ...), so the next lookup refreshes it. Returns whether it did.
    pub fn invalidate_metadata_on(&self, code: ErrorCode) -> bool {
        let invalidates = invalidates_metadata(code);
        if invalidates {
            self.invalidate_metadata();
        }
        invalidates
    }

    /// Stops keeping metadata for `topics` (they were deleted): refreshes no longer ask for
    /// them, so they are not auto-created again.
    pub(crate) fn forget_topics(&self, topics: &[&str]) {
        let mut tracked = self.inner.topics.lock();
        let mut metadata = self.inner.metadata.write();
        for topic in topics {
            tracked.remove(*topic);
            metadata.topics.remove(*topic);
        }
        drop(metadata);
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks the metadata stale: the next lookup refreshes it.
    pub fn invalidate_metadata(&self) {
        self.inner.metadata.write().stale = true;
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Fetches metadata for the brokers and every topic looked up so far. Callers that were
    /// waiting while another refresh ran share its result.
    pub async fn refresh_metadata(&self) -> Result<()> {
        let generation = self.inner.metadata.read().generation;
        let _guard = self.inner.refresh.lock().await;
        if self.inner.metadata.read().generation != generation {
            return Ok(());
        }
        let topics: Vec<String> = self.inner.topics.lock().iter().cloned().collect();
        let request = MetadataRequest {
            topics: Some(
                topics
                    .iter()
                    .map(|name| MetadataRequestTopic {
                        name: Some(name.clone()),
                        ..MetadataRequestTopic::default()
                    })
                    .collect(),
            ),
            allow_auto_topic_creation: self.inner.config.allow_auto_create_topics,
            ..MetadataRequest::default()
        };
        let (response, _) = self.send_any(request).await?;
        self.inner.metadata.write().update(response, &topics);
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The connection to broker `broker_id`, (re)connecting with backoff when there is none.
    pub(crate) async fn connection(&self, broker_id: i32) -> Result<Arc<Connection>> {
        let address = match self.broker_address(broker_id) {
            Some(address) => address,
            None => {
                // Boxed: refreshing goes through `send_any`, which may come back here.
                self.invalidate_metadata();
                Box::pin(self.refresh_metadata()).await?;
                self.broker_address(broker_id)
                    .ok_or(Error::BrokerNotInMetadata(broker_id))?
            }
        };
        let slot = self.inner.pool.lock().entry(broker_id).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(connection) = &slot.connection {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
        }
        slot.connection = None;
        if let Some(at) = slot.next_attempt {
            tokio::time::sleep_until(at.into()).await;
        }
        match Connection::connect(&address, self.inner.options.clone()).await {
            Ok(connection) => {
                slot.failures = 0;
                slot.next_attempt = None;
                slot.connection = Some(connection.clone());
                Ok(connection)
            }
            Err(err) => {
                slot.failures = slot.failures.saturating_add(1);
                let pause = exponential(
                    self.inner.config.reconnect_backoff,
                    self.inner.config.reconnect_backoff_max,
                    slot.failures,
                );
                slot.next_attempt = Some(Instant::now() + pause);
                tracing::debug!(broker_id, %address, %err, ?pause, "connect failed");
                // A broker that cannot be reached may have moved.
                self.invalidate_metadata();
                Err(err)
            }
        }
    }

    fn broker_address(&self, broker_id: i32) -> Option<String> {
        self.inner
            .metadata
            .read()
            .brokers
            .get(&broker_id)
            .map(BrokerMetadata::address)
    }

    /// Any live connection: a pooled one, the bootstrap one, or a new one to a known broker
    /// or bootstrap server.
    async fn any_connection(&self) -> Result<Arc<Connection>> {
        let slots: Vec<_> = self.inner.pool.lock().values().cloned().collect();
        for slot in slots {
            if let Ok(slot) = slot.try_lock() {
                if let Some(connection) = &slot.connection {
                    if !connection.is_closed() {
                        return Ok(connection.clone());
                    }
                }
            }
        }
        let mut last_error = None;
        for broker in self.brokers() {
            match self.connection(broker.node_id).await {
                Ok(connection) => return Ok(connection),
                Err(err) => last_error = Some(err),
            }
        }
        match self.bootstrap_connection().await {
            Ok(connection) => Ok(connection),
            Err(err) => Err(last_error.unwrap_or(err)),
        }
    }

    /// The bootstrap connection, reconnecting to the bootstrap servers in order if it is gone.
    async fn bootstrap_connection(&self) -> Result<Arc<Connection>> {
        let mut bootstrap = self.inner.bootstrap.lock().await;
        if let Some(connection) = bootstrap.as_ref() {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
        }
        *bootstrap = None;
        let mut tried = Vec::new();
        for address in &self.inner.config.bootstrap_servers {
            match Connection::connect(address, self.inner.options.clone()).await {
                Ok(connection) => {
                    *bootstrap = Some(connection.clone());
                    return Ok(connection);
                }
                Err(err) => {
                    tracing::debug!(%address, %err, "bootstrap server unreachable");
                    tried.push(format!("{address}: {err}"));
                }
            }
        }
        Err(Error::NoBrokerReachable(tried.join("; ")))
    }

    /// The cached leader of a partition, without refreshing: `None` when the topic or
    /// partition is unknown or has no leader.
    pub(crate) fn cached_leader(&self, topic: &str, partition: i32) -> Option<i32> {
        match self.inner.metadata.read().topics.get(topic) {
            Some(TopicEntry::Known(t)) => usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
                .filter(|p| p.partition == partition && p.leader_id >= 0)
                .map(|p| p.leader_id),
            _ => None,
        }
    }

    /// A counter that changes whenever the metadata is refreshed or marked stale.
    pub(crate) fn metadata_epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn needs_refresh(&self) -> bool {
        let metadata = self.inner.metadata.read();
        metadata.stale
            || metadata
                .refreshed_at
                .is_none_or(|at| at.elapsed() >= self.inner.config.metadata_max_age)
    }

    /// A retry backoff starting at `retry.backoff.ms`, doubling up to `retry.backoff.max.ms`.
    pub(crate) fn retry_backoff(&self) -> Backoff {
        Backoff {
            base: self.inner.config.retry_backoff,
            max: self.inner.config.retry_backoff_max,
            attempts: 0,
        }
    }
}

/// Exponentially growing pauses between attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempts: u32,
}

impl Backoff {
    /// The pause before the next attempt.
    pub(crate) fn next(&mut self) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        exponential(self.base, self.max, self.attempts)
    }
}

/// `base * 2^(attempt-1)`, capped at `max`.
fn exponential(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_millis(50);
        let max = Duration::from_millis(300);
        let pauses: Vec<_> = (1..=5).map(|n| exponential(base, max, n)).collect();
        assert_eq!(pauses, [50, 100, 200, 300, 300].map(Duration::from_millis));
        assert_eq!(exponential(base, max, u32::MAX), max);
    }
}
