//! The consumer: a member of a consumer group (classic protocol) or a reader of partitions
//! assigned by hand, handing out records one at a time.
//!
//! # Layout
//! - [`ConsumerConfig`]: the Java consumer's settings.
//! - `protocol`: the subscription and assignment bytes inside JoinGroup and SyncGroup.
//! - `assignor`: `range`, `roundrobin` and `cooperative-sticky`, run by the group leader, and
//!   [`PartitionAssignor`] for an application's own (set in
//!   [`ConsumerConfig::custom_assignor`]; its subscription and assignment user data travel
//!   in JoinGroup and SyncGroup).
//! - `group`: JoinGroup/SyncGroup/Heartbeat/LeaveGroup and commits, against the coordinator.
//! - `positions`: where the consumer stands in each partition, with no I/O.
//! - `fetcher`: Fetch requests to partition leaders and the buffer of fetched batches.
//! - [`RecordStream`]: the records as a `futures_core::Stream`.
//!
//! Like the Java consumer, all work happens inside [`Consumer::recv`] (and the other methods):
//! rebalances, rebalance callbacks, position lookups, auto commits and fetches. Only
//! heartbeats and the fetches already sent run on background tasks, so a consumer that stops
//! calling `recv` keeps its membership until `max.poll.interval.ms`-worth of rebalances pass
//! it by, and never has a callback run behind its back.
//!
//! ```no_run
//! # async fn run() -> weir_client::Result<()> {
//! use weir_client::consumer::{Consumer, ConsumerConfig, OffsetReset};
//!
//! let mut config = ConsumerConfig::new("localhost:9092", "my-consumer-group");
//! config.auto_offset_reset = OffsetReset::Earliest;
//! let mut consumer = Consumer::connect(config).await?;
//! consumer.subscribe(&["user-activity"])?;
//! loop {
//!     let record = consumer.recv().await?;
//!     println!("{}-{}@{}", record.topic, record.partition, record.offset);
//! }
//! # }
//! ```
//!
//! # Custom assignors
//!
//! An application that needs more than the built-in strategies (Kafka Streams assigns tasks
//! sticky to the instance holding their state) implements [`PartitionAssignor`] and sets
//! [`ConsumerConfig::custom_assignor`]. The built-ins stay a closed, `Copy`
//! [`AssignmentStrategy`] picked by name from properties, and the user's assignor is a
//! separate, optional field rather than a fourth variant: a trait object is neither `Copy`
//! nor nameable in a properties file, and keeping the two apart leaves every existing
//! configuration as it was. When set, the custom assignor is the only protocol the consumer
//! proposes in JoinGroup and `assignment_strategy` is ignored.
//!
//! The data flows the way the Java client's `ConsumerPartitionAssignor` has it: every member
//! puts [`PartitionAssignor::subscription_user_data`] into its JoinGroup subscription; the
//! leader's [`PartitionAssignor::assign`] sees every member's subscription as a
//! [`GroupMember`] and returns a [`MemberAssignment`] (partitions plus user data) per member;
//! each member's [`PartitionAssignor::on_assignment`] receives its own from SyncGroup before
//! the consumer takes the partitions or calls its rebalance listener.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//!
//! use bytes::Bytes;
//! use weir_client::consumer::{
//!     ConsumerConfig, GroupMember, MemberAssignment, PartitionAssignor, TopicPartition,
//! };
//!
//! /// Every partition to the members that volunteer in their user data, dealt in turn.
//! #[derive(Debug)]
//! struct Volunteers {
//!     volunteer: bool,
//! }
//!
//! impl PartitionAssignor for Volunteers {
//!     fn name(&self) -> &str {
//!         "volunteers"
//!     }
//!
//!     fn subscription_user_data(&self, _topics: &[String]) -> Option<Bytes> {
//!         Some(Bytes::from_static(if self.volunteer { b"yes" } else { b"no" }))
//!     }
//!
//!     fn assign(
//!         &self,
//!         partitions_per_topic: &BTreeMap<String, i32>,
//!         members: &[GroupMember],
//!     ) -> weir_client::Result<BTreeMap<String, MemberAssignment>> {
//!         let volunteers: Vec<&GroupMember> = members
//!             .iter()
//!             .filter(|m| m.user_data.as_deref() == Some(&b"yes"[..]))
//!             .collect();
//!         let mut assignment: BTreeMap<String, MemberAssignment> = BTreeMap::new();
//!         let partitions = partitions_per_topic
//!             .iter()
//!             .flat_map(|(topic, &n)| (0..n).map(move |p| TopicPartition::new(topic.clone(), p)));
//!         for (i, tp) in partitions.enumerate() {
//!             if let Some(member) = volunteers.get(i % volunteers.len().max(1)) {
//!                 let entry = assignment.entry(member.member_id.clone()).or_default();
//!                 entry.partitions.push(tp);
//!             }
//!         }
//!         Ok(assignment)
//!     }
//! }
//!
//! let mut config = ConsumerConfig::new("localhost:9092", "my-consumer-group");
//! config.custom_assignor = Some(Arc::new(Volunteers { volunteer: true }));
//! ```
//!
//! The consumer checks what a custom assignor returns before sending it: a member id not in
//! the group, a partition of a topic the member does not subscribe to or that does not exist,
//! a partition given twice, or (cooperative assignors) a partition handed to one member while
//! another still owns it is an [`Error::Assignor`]. The leader logs
//! it and sends no SyncGroup for that generation: [`Consumer::recv`] returns the error, the
//! other members' SyncGroup fails once the leader rejoins on the next `recv`, and the group
//! tries again with a new generation.

mod assignor;
mod config;
mod fetcher;
mod group;
mod positions;
pub(crate) mod protocol;
mod rebalance;
mod record;
mod stream;

use std::collections::{BTreeMap, BTreeSet};

use std::time::Instant;
use tokio::task::JoinHandle;

use assignor::Assignor;
use fetcher::Fetcher;
use group::{Group, Rejoin};
use positions::Positions;

pub use assignor::{
    AssignmentStrategy, GroupMember, MemberAssignment, PartitionAssignor, RebalanceProtocol,
};
pub use config::{ConsumerConfig, IsolationLevel};
pub use positions::OffsetReset;
pub use protocol::{OffsetAndMetadata, TopicPartition};
pub use record::{ConsumerRecord, RebalanceListener};
pub use stream::RecordStream;

use crate::{Client, Error, Result};

/// A consumer's place in its group, as a transactional producer commits offsets for it
/// (Java's `ConsumerGroupMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// `group.id`.
    pub group_id: String,
    /// The member's generation, or -1 outside one.
    pub generation_id: i32,
    /// The member id the coordinator gave, or empty.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Metadata naming only the group (generation -1, no member): the coordinator then
    /// commits without checking membership, as for a group whose members assign partitions
    /// themselves.
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// Reads records from a cluster. See the [module docs](self).
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    /// The assignor proposed in JoinGroup: `config.custom_assignor` or the built-in strategy.
    assignor: Assignor,
    /// The group; away on the rebalance task while `rebalancing` runs.
    group: Option<Group>,
    rebalancing: Option<JoinHandle<(Group, Result<rebalance::Joined>)>>,
    /// As the group's leader: the partition counts assigned, and when to compare them with the
    /// metadata again (a topic that gains partitions calls for a new assignment).
    led: Option<(BTreeMap<String, i32>, Instant)>,
    /// Positions of partitions revoked cooperatively, committed before the next JoinGroup.
    revoked_positions: Vec<(TopicPartition, i64)>,
    /// Topics subscribed to; `None` when partitions are assigned by hand.
    subscription: Option<Vec<String>>,
    /// Whether the member has joined its current generation.
    joined: bool,
    /// The member id and generation last joined, kept through a rebalance: offsets sent to a
    /// transaction meanwhile carry them and are refused if the generation has moved on,
    /// instead of being committed without a membership check.
    member: Option<(String, i32)>,
    positions: Positions,
    fetcher: Fetcher,
    listener: Option<Box<dyn RebalanceListener>>,
    next_auto_commit: Instant,
    /// Offsets committed last, to skip auto commits that would change nothing.
    last_committed: BTreeMap<TopicPartition, i64>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.config.group_id)
            .field("subscription", &self.subscription)
            .field("assignment", &self.assignment())
            .finish_non_exhaustive()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(handle) = &self.rebalancing {
            handle.abort();
        }
    }
}

impl Consumer {
    /// Validates `config` and connects with `config.client`. A consumer with a `group.id`
    /// opens a second set of connections for its group coordinator.
    pub async fn connect(config: ConsumerConfig) -> Result<Self> {
        config.validate()?;
        let client = Client::connect(config.client.clone()).await?;
        Self::from_client(client, config).await
    }

    /// Validates `config` and reads through `client`, which may be shared with producers and
    /// admin clients; its connection settings apply and `config.client` is not used. A
    /// consumer with a `group.id` opens a second set of connections, with the same settings,
    /// for its group coordinator.
    pub async fn from_client(client: Client, config: ConsumerConfig) -> Result<Self> {
        config.validate()?;
        let group = match &config.group_id {
            Some(group_id) => {
                let mut group_config = client.config().clone();
                // The coordinator may hold a JoinGroup for the whole rebalance timeout.
                group_config.request_timeout = group_config
                    .request_timeout
                    .max(config.max_poll_interval + std::time::Duration::from_secs(5));
                let mut group = Group::new(
                    Client::connect(group_config).await?,
                    group_id.clone(),
                    config.group_instance_id.clone(),
                    config.session_timeout,
                    config.max_poll_interval,
                    config.heartbeat_interval,
                );
                group.require_stable = config.isolation_level == IsolationLevel::ReadCommitted;
                Some(group)
            }
            None => None,
        };
        let assignor = match &config.custom_assignor {
            Some(custom) => Assignor::Custom(std::sync::Arc::clone(custom)),
            None => Assignor::Builtin(config.assignment_strategy),
        };
        Ok(Self {
            assignor,
            fetcher: Fetcher::new(client.clone(), &config),
            positions: Positions::new(config.auto_offset_reset),
            next_auto_commit: Instant::now() + config.auto_commit_interval,
            client,
            config,
            group,
            rebalancing: None,
            led: None,
            revoked_positions: Vec::new(),
            subscription: None,
            joined: false,
            member: None,
            listener: None,
            last_committed: BTreeMap::new(),
        })
    }

    /// Calls `listener` as partitions are assigned, revoked or lost.
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        self.listener = Some(Box::new(listener));
    }

    /// Subscribes to `topics` as a member of the group; the group is joined (or rejoined with
    /// the new topics) on the next [`Consumer::recv`].
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        if self.group.is_none() {
            return Err(Error::Config {
                key: "group.id",
                reason: "subscribing needs a consumer group".to_string(),
            });
        }
        if topics.is_empty() || topics.iter().any(|t| t.is_empty()) {
            return Err(Error::Kafka {
                code: weir_protocol::ErrorCode::INVALID_TOPIC_EXCEPTION,
                message: Some("subscribe to at least one topic, with non-empty names".to_string()),
            });
        }
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        if self.subscription.as_ref() != Some(&topics) {
            self.subscription = Some(topics);
            if let Some(group) = &self.group {
                group.signal.raise(Rejoin::Rebalance);
            }
        }
        Ok(())
    }

    /// Reads exactly these partitions, outside any group membership. With a `group.id` their
    /// committed offsets are the starting positions and commits are stored for the group.
    pub fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        if self.subscription.is_some() {
            return Err(Error::IllegalState(
                "the consumer is subscribed; it cannot also assign partitions".to_string(),
            ));
        }
        self.positions
            .assign(partitions.iter().cloned(), self.group.is_some());
        self.fetcher.retain(&self.positions);
        Ok(())
    }

    /// The partitions the consumer reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.assigned().cloned().collect()
    }

    /// The member id and generation in the group, once joined.
    pub fn group_generation(&self) -> Option<(String, i32)> {
        self.group
            .as_ref()
            .filter(|_| self.joined)
            .map(|g| (g.member_id.clone(), g.generation))
    }

    /// The group's id, this member's generation and ids, for
    /// [`Producer::send_offsets_to_transaction`](crate::producer::Producer::send_offsets_to_transaction)
    /// (Java's `groupMetadata()`): the group coordinator then refuses offsets of a member that
    /// was fenced by a rebalance. Before the member has joined, generation -1 and an empty
    /// member id; during a rebalance, the generation last joined. `None` without a
    /// `group.id`.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let group_id = self.config.group_id.clone()?;
        let (member_id, generation_id) = self.member.clone().unwrap_or((String::new(), -1));
        Some(ConsumerGroupMetadata {
            group_id,
            generation_id,
            member_id,
            group_instance_id: self.config.group_instance_id.clone(),
        })
    }

    /// Asks for a rebalance (Java's `KafkaConsumer#enforceRebalance`): the next
    /// [`Consumer::recv`] (or item of [`Consumer::stream`]) rejoins the group, giving up its
    /// partitions first as the assignor's protocol says ([`Consumer::try_recv`] returns
    /// `None` until then), and asks the assignor for fresh subscription user data, so
    /// an assignor that bases its assignment on changing member state (Kafka Streams'
    /// probing rebalances) gets it reassigned. It returns at once. A rebalance already under
    /// way, or already asked for, makes it a no-op.
    ///
    /// As with Kafka's classic protocol, the coordinator starts a new generation when the
    /// member leads the group or its subscription (user data included) changed; a follower
    /// that rejoins with the same subscription gets the current generation's assignment
    /// back. Refused with [`Error::IllegalState`] unless the consumer is subscribed.
    pub fn enforce_rebalance(&self) -> Result<()> {
        if self.subscription.is_none() {
            return Err(Error::IllegalState(
                "only a subscribed consumer can rejoin its group".to_string(),
            ));
        }
        if let Some(group) = &self.group {
            group.signal.raise(Rejoin::Rebalance);
        }
        Ok(())
    }

    /// The next record. Joins or rejoins the group when needed, runs rebalance callbacks,
    /// looks up starting positions, commits automatically and fetches when the buffer is empty.
    pub async fn recv(&mut self) -> Result<ConsumerRecord> {
        loop {
            // A pending rebalance goes first, even with records buffered: the coordinator
            // only waits so long for this member to rejoin.
            if self.rebalancing.is_none() && self.needs_join() {
                self.start_rebalance()?;
            }
            if let Some(record) = self.fetcher.next_record(&mut self.positions) {
                return record;
            }
            self.poll_once().await?;
        }
    }

    /// The next record already buffered from earlier fetches, without fetching or waiting;
    /// `None` when nothing is buffered or the group needs this member to rejoin first (then
    /// [`Consumer::recv`] does both). An application that orders what it has received (Kafka
    /// Streams orders a task's records by timestamp across its partitions) takes everything
    /// at hand with it after a `recv`.
    pub fn try_recv(&mut self) -> Option<Result<ConsumerRecord>> {
        if self.rebalancing.is_none() && self.needs_join() {
            return None;
        }
        self.fetcher.next_record(&mut self.positions)
    }

    /// The records as a [`futures_core::Stream`], each item what [`Consumer::recv`] returns.
    pub fn stream(&mut self) -> RecordStream<'_> {
        RecordStream::new(self)
    }

    /// One round of housekeeping and, when nothing is buffered, one wait for a fetch.
    async fn poll_once(&mut self) -> Result<()> {
        if self.rebalancing.is_none() && self.needs_join() {
            self.start_rebalance()?;
        }
        let mut retry_at = None;
        match self.init_positions().await {
            Ok(()) => {}
            // A lookup that may succeed later (a broker restarting, a leader moving) is
            // retried on the next round rather than failing `recv`.
            Err(err) if err.is_retriable() => {
                tracing::debug!(%err, "position lookup failed, retrying");
                retry_at = Some(Instant::now() + self.client.config().retry_backoff);
            }
            Err(err) => return Err(err),
        }
        self.maybe_auto_commit();
        self.check_partition_counts().await;
        self.fetcher.send_fetches(&self.positions).await?;
        let signal = self.group.as_ref().map(|g| g.signal.clone());
        let rejoin = async {
            match &signal {
                Some(signal) if self.subscription.is_some() => signal.raised().await,
                _ => std::future::pending().await,
            }
        };
        let wake_at = [
            retry_at,
            self.fetcher.next_retry(),
            (self.config.enable_auto_commit && self.group.is_some())
                .then_some(self.next_auto_commit),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + self.config.fetch_max_wait);
        let rebalancing = async {
            match &mut self.rebalancing {
                Some(handle) => handle.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            joined = rebalancing => self.finish_rebalance(joined)?,
            result = self.fetcher.receive(&mut self.positions), if self.fetcher.has_in_flight() => result?,
            () = rejoin => {}
            () = tokio::time::sleep_until(wake_at.into()) => {}
        }
        Ok(())
    }

    fn needs_join(&self) -> bool {
        self.subscription.is_some()
            && self
                .group
                .as_ref()
                .is_some_and(|g| !self.joined || g.signal.is_raised())
    }

    /// Commits the current positions of every assigned partition and waits for the answer.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = self.positions.fetchable();
        self.commit_offsets(&offsets).await
    }

    /// Commits these offsets (the next offset to read, as Kafka stores them) and waits.
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let target = self.group()?.commit_target(self.joined);
        target.commit(offsets.to_vec()).await?;
        self.last_committed.extend(offsets.iter().cloned());
        Ok(())
    }

    /// Commits these offsets, each with its metadata string (Kafka's
    /// `commitSync(Map<TopicPartition, OffsetAndMetadata>)`), and waits. Metadata longer than
    /// the broker's `offset.metadata.max.bytes` fails the commit with
    /// `OFFSET_METADATA_TOO_LARGE`.
    pub async fn commit_offsets_with_metadata(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        let target = self.group()?.commit_target(self.joined);
        target.commit_with_metadata(offsets.to_vec()).await?;
        self.last_committed
            .extend(offsets.iter().map(|(tp, c)| (tp.clone(), c.offset)));
        Ok(())
    }

    /// Commits the current positions on a background task; await the handle for the result.
    pub fn commit_async(&mut self) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let target = self.group()?.commit_target(self.joined);
        let offsets = self.positions.fetchable();
        self.last_committed.extend(offsets.iter().cloned());
        Ok(tokio::spawn(target.commit(offsets)))
    }

    /// The group's committed offsets for `partitions` (`None` where nothing is committed).
    pub async fn committed(&mut self, partitions: &[TopicPartition]) -> Result<Vec<Option<i64>>> {
        let committed = self.group_mut()?.fetch_committed(partitions).await?;
        Ok(partitions
            .iter()
            .map(|tp| committed.get(tp).copied().flatten())
            .collect())
    }

    /// The group's committed offsets for `partitions` with their metadata (`None` where
    /// nothing is committed).
    pub async fn committed_with_metadata(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<OffsetAndMetadata>>> {
        let committed = self
            .group_mut()?
            .fetch_committed_with_metadata(partitions)
            .await?;
        Ok(partitions
            .iter()
            .map(|tp| committed.get(tp).cloned().flatten())
            .collect())
    }

    /// Makes `offset` the next offset read from `partition`, which must be assigned.
    pub fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(Error::IllegalState(format!(
                "cannot seek {partition} to a negative offset ({offset})"
            )));
        }
        if !self.positions.seek(partition, offset) {
            return Err(Error::IllegalState(format!(
                "cannot seek {partition}: not assigned"
            )));
        }
        self.fetcher.retain(&self.positions);
        Ok(())
    }

    /// The next offset the consumer will read from `partition`, looking it up (committed
    /// offset, then the reset policy) if it has none yet.
    pub async fn position(&mut self, partition: &TopicPartition) -> Result<i64> {
        if !self.positions.is_assigned(partition) {
            return Err(Error::IllegalState(format!("{partition} is not assigned")));
        }
        let deadline = Instant::now() + self.client.config().request_timeout;
        loop {
            self.init_positions().await?;
            if let Some(position) = self.positions.position(partition) {
                return Ok(position);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(self.client.config().request_timeout));
            }
            tokio::time::sleep(self.client.config().retry_backoff).await;
        }
    }

    /// How many records the broker held for `partition` past the consumer's position, as of
    /// the last fetch response (its high watermark, or with `read_committed` its last stable
    /// offset, minus the position; Kafka's
    /// `KafkaConsumer#currentLag`). `None` while it is unknown: the partition is not
    /// assigned, has no position yet, or had no fetch response since it was assigned, sought
    /// or reset. It asks the broker nothing: Kafka Streams checks it for every empty input
    /// partition on every record to decide whether a task waits for more (`max.task.idle.ms`).
    pub fn current_lag(&self, partition: &TopicPartition) -> Option<i64> {
        self.positions.lag(partition)
    }

    /// Stops consuming the subscribed topics: commits positions (with auto commit on), calls
    /// `revoked`, leaves the group (dynamic members) and stops heartbeating. The consumer may
    /// subscribe or assign partitions again afterwards.
    pub async fn unsubscribe(&mut self) -> Result<()> {
        if let Some(handle) = self.rebalancing.take() {
            // Finish the round so the member leaves from a known generation.
            let joined = handle.await;
            self.finish_rebalance(joined)?;
        }
        if self.subscription.is_none() {
            return Ok(());
        }
        let mut result = Ok(());
        if self.joined {
            if self.config.enable_auto_commit {
                result = self.commit().await;
            }
            let all = self.assignment();
            if let Some(listener) = &mut self.listener {
                listener.revoked(&all);
            }
        }
        if let Some(group) = &mut self.group {
            result = result.and(group.leave().await);
            group.signal.take();
        }
        self.subscription = None;
        self.joined = false;
        self.member = None;
        self.led = None;
        self.positions.assign([], true);
        self.fetcher.retain(&self.positions);
        result
    }

    /// Leaves cleanly: [`Consumer::unsubscribe`] for a group member; with hand-assigned
    /// partitions and a `group.id`, commits their positions (with auto commit on).
    pub async fn close(mut self) -> Result<()> {
        if self.subscription.is_some() {
            return self.unsubscribe().await;
        }
        if self.group.is_some() && self.config.enable_auto_commit {
            return self.commit().await;
        }
        Ok(())
    }

    fn group(&self) -> Result<&Group> {
        self.group.as_ref().ok_or_else(|| self.no_group())
    }

    fn group_mut(&mut self) -> Result<&mut Group> {
        if self.group.is_none() {
            return Err(self.no_group());
        }
        self.group.as_mut().ok_or(Error::Closed)
    }

    fn no_group(&self) -> Error {
        if self.rebalancing.is_some() {
            Error::Kafka {
                code: weir_protocol::ErrorCode::REBALANCE_IN_PROGRESS,
                message: Some("the consumer is rejoining its group; retry after recv".to_string()),
            }
        } else {
            Error::Config {
                key: "group.id",
                reason: "commits and committed offsets need a consumer group".to_string(),
            }
        }
    }

    /// As the leader, every `metadata.max.age.ms`: asks for a new assignment when a subscribed
    /// topic's partition count differs from the one assigned.
    async fn check_partition_counts(&mut self) {
        let Some((counts, due)) = &self.led else {
            return;
        };
        if Instant::now() < *due || self.rebalancing.is_some() {
            return;
        }
        let mut changed = false;
        for (topic, &count) in counts {
            if let Ok(metadata) = self.client.topic(topic).await
                && i32::try_from(metadata.partitions.len()).ok() != Some(count)
            {
                tracing::debug!(%topic, "partition count changed, rebalancing");
                changed = true;
            }
        }
        let next = Instant::now() + self.client.config().metadata_max_age;
        if let Some((_, due)) = &mut self.led {
            *due = next;
        }
        if changed && let Some(group) = &self.group {
            group.signal.raise(Rejoin::Rebalance);
        }
    }

    fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || self.group.is_none() {
            return;
        }
        let now = Instant::now();
        if now < self.next_auto_commit {
            return;
        }
        self.next_auto_commit = now + self.config.auto_commit_interval;
        let offsets: Vec<_> = self
            .positions
            .fetchable()
            .into_iter()
            .filter(|(tp, o)| self.last_committed.get(tp) != Some(o))
            .collect();
        if offsets.is_empty() {
            return;
        }
        if let Some(group) = &self.group {
            let target = group.commit_target(self.joined);
            self.last_committed.extend(offsets.iter().cloned());
            tokio::spawn(async move {
                if let Err(err) = target.commit(offsets).await {
                    tracing::warn!(%err, "auto commit failed");
                }
            });
        }
    }

    /// Looks up starting positions: committed offsets first, then the reset policy.
    async fn init_positions(&mut self) -> Result<()> {
        let awaiting = self.positions.awaiting_committed();
        if !awaiting.is_empty()
            && let Some(group) = &mut self.group
        {
            let committed = group.fetch_committed(&awaiting).await?;
            for (tp, offset) in committed {
                self.positions.set_committed(&tp, offset);
            }
        }
        let resets = self.positions.awaiting_reset()?;
        if !resets.is_empty() {
            for (tp, offset) in self.fetcher.list_offsets(&resets).await? {
                self.positions.set_reset(&tp, offset);
            }
        }
        Ok(())
    }

    /// Starts a rebalance on its own task, after giving up what the protocol says to give up.
    fn start_rebalance(&mut self) -> Result<()> {
        let Some(topics) = self.subscription.clone() else {
            return Ok(());
        };
        let Some(mut group) = self.group.take() else {
            return Ok(());
        };
        let protocol = self.assignor.rebalance_protocol();
        group.stop_heartbeat();
        let reason = group.signal.take();
        let owned = self.assignment();
        let mut commit_first = std::mem::take(&mut self.revoked_positions);
        match reason {
            Some(Rejoin::Lost | Rejoin::UnknownMember) if self.joined => {
                if reason == Some(Rejoin::UnknownMember) {
                    group.member_id.clear();
                }
                // Another member may own these already: nothing to commit.
                commit_first.clear();
                if let Some(listener) = &mut self.listener {
                    listener.lost(&owned);
                }
                self.positions.assign([], true);
            }
            _ if self.joined && protocol == RebalanceProtocol::Eager => {
                if self.config.enable_auto_commit {
                    commit_first.extend(self.positions.fetchable());
                }
                if let Some(listener) = &mut self.listener {
                    listener.revoked(&owned);
                }
                self.positions.assign([], true);
            }
            _ => {}
        }
        self.joined = false;
        self.led = None;
        self.fetcher.retain(&self.positions);
        let rejoin = rebalance::Rejoin {
            topics,
            assignor: self.assignor.clone(),
            owned: self.assignment(),
            commit_first,
        };
        self.rebalancing = Some(tokio::spawn(rebalance::run(
            group,
            self.client.clone(),
            rejoin,
        )));
        Ok(())
    }

    /// Takes the group back from a finished rebalance and applies the assignment.
    fn finish_rebalance(
        &mut self,
        joined: std::result::Result<(Group, Result<rebalance::Joined>), tokio::task::JoinError>,
    ) -> Result<()> {
        self.rebalancing = None;
        let (group, result) = joined.map_err(|_| Error::Closed)?;
        // Whatever was raised meanwhile spoke of the previous generation (the new one's
        // heartbeat raises again, every interval, if the group rebalances once more).
        group.signal.take();
        self.group = Some(group);
        let joined = result?;
        self.joined = true;
        self.member = self
            .group
            .as_ref()
            .map(|g| (g.member_id.clone(), g.generation));
        self.led = joined.partition_counts.map(|counts| {
            (
                counts,
                Instant::now() + self.client.config().metadata_max_age,
            )
        });
        self.apply(self.assignor.rebalance_protocol(), joined.partitions);
        Ok(())
    }

    /// Takes the new assignment: eagerly (everything was revoked before joining) or
    /// cooperatively (revoke what moved away, then rejoin so others can take it).
    fn apply(&mut self, protocol: RebalanceProtocol, partitions: Vec<TopicPartition>) {
        match protocol {
            RebalanceProtocol::Eager => {
                self.positions.assign(partitions.iter().cloned(), true);
                if let Some(listener) = &mut self.listener {
                    listener.assigned(&partitions);
                }
            }
            RebalanceProtocol::Cooperative => {
                let new: BTreeSet<TopicPartition> = partitions.into_iter().collect();
                let owned: BTreeSet<TopicPartition> = self.positions.assigned().cloned().collect();
                let revoked: Vec<TopicPartition> = owned.difference(&new).cloned().collect();
                let added: Vec<TopicPartition> = new.difference(&owned).cloned().collect();
                if !revoked.is_empty() {
                    if self.config.enable_auto_commit {
                        let positions: Vec<_> = revoked
                            .iter()
                            .filter_map(|tp| self.positions.position(tp).map(|o| (tp.clone(), o)))
                            .collect();
                        self.revoked_positions.extend(positions);
                    }
                    if let Some(listener) = &mut self.listener {
                        listener.revoked(&revoked);
                    }
                    self.positions.remove(&revoked);
                    // The partitions are free now; the follow-up rebalance hands them out.
                    if let Some(group) = &self.group {
                        group.signal.raise(Rejoin::Rebalance);
                    }
                }
                self.positions.add(added.iter().cloned(), true);
                if let Some(listener) = &mut self.listener {
                    listener.assigned(&added);
                }
            }
        }
        self.fetcher.retain(&self.positions);
    }
}
