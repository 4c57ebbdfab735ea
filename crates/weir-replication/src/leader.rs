//! The leader's side of one partition: follower progress, the high watermark and ISR changes.

use std::collections::BTreeMap;

use crate::{
    AlterIsr, AlterIsrRejected, BrokerId, LeaderAndIsr, ReplicationConfig, ReplicationError,
    UNDEFINED_OFFSET,
};

/// What a follower's fetch changed on the leader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowerFetchOutcome {
    /// The new high watermark, if it advanced: complete the acks=all produces below it.
    pub high_watermark: Option<i64>,
    /// An ISR expansion to send to the controller.
    pub alter_isr: Option<AlterIsr>,
}

/// One follower's progress as the leader sees it (DescribeLogDirs, metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower.
    pub broker_id: BrokerId,
    /// Its log end offset from its last fetch, or [`UNDEFINED_OFFSET`] if it has not fetched
    /// since this leader took over.
    pub log_end_offset: i64,
    /// When it was last caught up with the leader's log end offset (Kafka's
    /// `lastCaughtUpTimeMs`), `-1` if never.
    pub last_caught_up_ms: i64,
}

/// What the leader knows about one follower.
#[derive(Clone, Debug)]
struct Follower {
    /// Its last fetch offset in this leader epoch; `None` until it fetches.
    log_end_offset: Option<i64>,
    /// Kafka's `lastCaughtUpTimeMs`; `-1` for never.
    last_caught_up_ms: i64,
    /// The leader's log end offset and the time at its previous fetch.
    last_fetch: Option<(i64, i64)>,
}

impl Follower {
    fn new(in_sync: bool, now_ms: i64) -> Self {
        // Like Kafka on becoming leader: ISR members get a full lag period to fetch.
        Self {
            log_end_offset: None,
            last_caught_up_ms: if in_sync { now_ms } else { -1 },
            last_fetch: None,
        }
    }
}

/// Leader-side state of one partition this broker leads, for one leader epoch.
///
/// The high watermark is the minimum log end offset over the maximal ISR (the ISR plus the
/// members of an in-flight expansion), the leader counting its own *counted* log end offset
/// (the fsynced one under durable acknowledgement). It only moves forward and never passes
/// the leader's counted log end offset. A member whose log end offset is unknown (it has not
/// fetched since this leader took over) holds it.
///
/// A new leader epoch needs a new `LeaderPartition`; incoming requests must have been checked
/// against [`LeaderPartition::leader_epoch`] by the caller.
#[derive(Clone, Debug)]
pub struct LeaderPartition {
    local: BrokerId,
    config: ReplicationConfig,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    leader_epoch_start_offset: i64,
    local_log_end_offset: i64,
    high_watermark: i64,
    followers: BTreeMap<BrokerId, Follower>,
    in_flight: Option<AlterIsr>,
    /// Requests that got no definitive answer: the controller may still commit them, until an
    /// image with a newer partition epoch than theirs arrives.
    unresolved: Vec<AlterIsr>,
}

impl LeaderPartition {
    /// Takes over leadership of a partition.
    ///
    /// `local_log_end_offset`: the leader's own counted log end offset (the caller passes its
    /// fsynced end offset when durable acknowledgement is on, its plain log end offset
    /// otherwise). `high_watermark`: the best known high watermark (e.g. the one this broker
    /// had as follower); it is clamped to `0..=local_log_end_offset` and never moves backwards
    /// from there.
    ///
    /// The start offset of the new leader epoch (a follower joins the ISR only once it has
    /// fetched up to it) defaults to `local_log_end_offset`; when that is not the log end
    /// offset the epoch starts at (durable acknowledgement with an unfsynced tail), set it
    /// with [`LeaderPartition::with_leader_epoch_start_offset`].
    pub fn new(
        local: BrokerId,
        state: LeaderAndIsr,
        config: ReplicationConfig,
        local_log_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> Self {
        let local_log_end_offset = local_log_end_offset.max(0);
        let followers = state
            .replicas
            .iter()
            .filter(|&&r| r != local)
            .map(|&r| (r, Follower::new(state.isr.contains(&r), now_ms)))
            .collect();
        let partition = Self {
            local,
            config,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas,
            isr: state.isr,
            leader_epoch_start_offset: local_log_end_offset,
            local_log_end_offset,
            high_watermark: high_watermark.clamp(0, local_log_end_offset),
            followers,
            in_flight: None,
            unresolved: Vec::new(),
        };
        tracing::debug!(
            leader = local,
            leader_epoch = partition.leader_epoch,
            high_watermark = partition.high_watermark,
            "took over partition leadership"
        );
        partition
    }

    /// Sets the start offset of this leader epoch: the leader's real log end offset when it
    /// took over, where its first record of the epoch goes (Kafka's `leaderEpochStartOffset`).
    /// A follower below it may lack records this leader had from earlier epochs, so it is not
    /// added to the ISR (KAFKA-7128) even if it has reached the high watermark, which a new
    /// leader may know only stale.
    #[must_use]
    pub fn with_leader_epoch_start_offset(mut self, offset: i64) -> Self {
        self.leader_epoch_start_offset = offset;
        self
    }

    /// A new image for a partition still led by `local` in the same leader epoch (ISR or
    /// replicas changed, e.g. an AlterIsr committed). Returns the new high watermark if it
    /// advanced. A partition epoch older than the current one is ignored, and so is an image
    /// for another leader or leader epoch (that needs a new `LeaderPartition`).
    pub fn update(&mut self, state: LeaderAndIsr, now_ms: i64) -> Option<i64> {
        if state.leader != self.local || state.leader_epoch != self.leader_epoch {
            tracing::warn!(
                leader = state.leader,
                leader_epoch = state.leader_epoch,
                current_leader_epoch = self.leader_epoch,
                "ignoring an image for another leadership"
            );
            return None;
        }
        if state.partition_epoch < self.partition_epoch {
            return None;
        }
        self.apply(state, now_ms);
        self.maybe_advance_high_watermark()
    }

    /// The leader's own counted log end offset moved (append, or fsync completed). Returns the
    /// new high watermark if it advanced. An offset below the current one is ignored: a leader
    /// does not truncate its log.
    pub fn on_local_log_end_offset(&mut self, offset: i64) -> Option<i64> {
        self.local_log_end_offset = self.local_log_end_offset.max(offset);
        self.maybe_advance_high_watermark()
    }

    /// A follower fetched at `fetch_offset` (= its log end offset; with durable
    /// acknowledgement the follower only fetches after fsyncing what it has).
    /// `leader_log_end_offset` is the leader's real (not just fsynced) log end offset at the
    /// time of this fetch, used for "caught up": a follower is caught up when its fetch offset
    /// reaches it (Kafka's `lastCaughtUpTimeMs`, also set to the previous fetch's time when
    /// this fetch reaches the leader log end offset of that previous fetch).
    ///
    /// A follower not in the ISR whose fetch offset is at least the high watermark and the
    /// start offset of this leader epoch is proposed for the ISR, unless an [`AlterIsr`] is
    /// already in flight (it will be proposed again on a later fetch).
    ///
    /// # Errors
    /// [`ReplicationError::NotAReplica`] if `follower` is not a follower replica;
    /// [`ReplicationError::OffsetOutOfRange`] if `fetch_offset` is negative or beyond
    /// `leader_log_end_offset`.
    pub fn on_follower_fetch(
        &mut self,
        follower: BrokerId,
        fetch_offset: i64,
        leader_log_end_offset: i64,
        now_ms: i64,
    ) -> Result<FollowerFetchOutcome, ReplicationError> {
        if follower == self.local || !self.replicas.contains(&follower) {
            return Err(ReplicationError::NotAReplica { broker: follower });
        }
        if !(0..=leader_log_end_offset).contains(&fetch_offset) {
            return Err(ReplicationError::OffsetOutOfRange {
                fetch_offset,
                log_end_offset: leader_log_end_offset,
            });
        }
        let state = self
            .followers
            .entry(follower)
            .or_insert_with(|| Follower::new(false, now_ms));
        if fetch_offset >= leader_log_end_offset {
            state.last_caught_up_ms = state.last_caught_up_ms.max(now_ms);
        } else if let Some((previous_leader_end, previous_ms)) = state.last_fetch {
            // Caught up with where the leader was at the previous fetch: caught up then.
            if fetch_offset >= previous_leader_end {
                state.last_caught_up_ms = state.last_caught_up_ms.max(previous_ms);
            }
        }
        state.last_fetch = Some((leader_log_end_offset, now_ms));
        state.log_end_offset = Some(fetch_offset);

        let alter_isr = self.maybe_expand(follower, fetch_offset);
        Ok(FollowerFetchOutcome {
            high_watermark: self.maybe_advance_high_watermark(),
            alter_isr,
        })
    }

    /// Periodic check: the ISR members (not the leader) that have not caught up within
    /// `replica_lag_time_max_ms` are proposed for removal. Returns the [`AlterIsr`] to send, at
    /// most one in flight at a time. The high watermark keeps counting them until the
    /// controller commits the shrink.
    pub fn tick(&mut self, now_ms: i64) -> Option<AlterIsr> {
        if self.in_flight.is_some() {
            return None;
        }
        let lag_max = self.config.replica_lag_time_max_ms;
        let out_of_sync: Vec<BrokerId> = self
            .isr
            .iter()
            .copied()
            .filter(|&r| r != self.local)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_none_or(|f| now_ms.saturating_sub(f.last_caught_up_ms) > lag_max)
            })
            .collect();
        if out_of_sync.is_empty() {
            return None;
        }
        tracing::info!(
            leader_epoch = self.leader_epoch,
            ?out_of_sync,
            "proposing an ISR shrink"
        );
        let new_isr = self
            .isr
            .iter()
            .copied()
            .filter(|r| !out_of_sync.contains(r))
            .collect();
        Some(self.propose(new_isr))
    }

    /// The controller answered the in-flight [`AlterIsr`]: `Ok` with the partition's new state,
    /// or `Err` (rejected, or [`AlterIsrRejected::NoAnswer`]). Either way the in-flight request
    /// is cleared, so the next tick or fetch may propose again. A state from another
    /// leadership or older than the current partition epoch is not applied. Returns the new
    /// high watermark if it advanced (a committed shrink, or a rejected expansion no longer
    /// holding it).
    ///
    /// Without a definitive answer the controller may still commit the request later, so its
    /// members keep holding the high watermark (see [`LeaderPartition::maximal_isr`]) until an
    /// image newer than the request's partition epoch settles it: forgetting them could let
    /// the HW pass a replica that then joins the ISR, and be elected, without those records.
    pub fn alter_isr_completed(
        &mut self,
        result: Result<LeaderAndIsr, AlterIsrRejected>,
        now_ms: i64,
    ) -> Option<i64> {
        let request = self.in_flight.take();
        if let (Err(AlterIsrRejected::NoAnswer), Some(request)) = (&result, request)
            && !self.unresolved.contains(&request)
        {
            self.unresolved.push(request);
        }
        match result {
            Ok(state)
                if state.leader == self.local
                    && state.leader_epoch == self.leader_epoch
                    && state.partition_epoch >= self.partition_epoch =>
            {
                self.apply(state, now_ms);
            }
            Ok(state) => {
                tracing::debug!(
                    partition_epoch = state.partition_epoch,
                    "stale AlterIsr answer"
                );
            }
            Err(rejected) => tracing::info!(?rejected, "AlterIsr rejected"),
        }
        self.maybe_advance_high_watermark()
    }

    /// Replaces the settings (`min.insync.replicas`, the lag limit) when the topic's or the
    /// broker's config changed; they apply from the next call on.
    pub fn set_config(&mut self, config: ReplicationConfig) {
        self.config = config;
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The committed ISR, as the controller last said.
    pub fn isr(&self) -> &[BrokerId] {
        &self.isr
    }

    /// The assigned replicas.
    pub fn replicas(&self) -> &[BrokerId] {
        &self.replicas
    }

    /// The ISR plus the members of an in-flight expansion (Kafka's "maximal ISR"), and of
    /// expansions that got no answer and the controller may still commit: the high watermark
    /// waits for them too.
    pub fn maximal_isr(&self) -> Vec<BrokerId> {
        let mut maximal = self.isr.clone();
        for request in self.in_flight.iter().chain(&self.unresolved) {
            for r in &request.new_isr {
                if !maximal.contains(r) {
                    maximal.push(*r);
                }
            }
        }
        maximal
    }

    /// The AlterIsr awaiting the controller's answer, if any.
    pub fn in_flight_alter_isr(&self) -> Option<&AlterIsr> {
        self.in_flight.as_ref()
    }

    /// This leadership's leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The partition epoch of the last state applied.
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// The start offset of this leader epoch (see
    /// [`LeaderPartition::with_leader_epoch_start_offset`]).
    pub fn leader_epoch_start_offset(&self) -> i64 {
        self.leader_epoch_start_offset
    }

    /// The leader's own counted log end offset.
    pub fn local_log_end_offset(&self) -> i64 {
        self.local_log_end_offset
    }

    /// The `min.insync.replicas` check before a produce with acks=all.
    ///
    /// # Errors
    /// [`ReplicationError::NotEnoughReplicas`] when the ISR is smaller than
    /// `min.insync.replicas`.
    pub fn check_min_isr(&self) -> Result<(), ReplicationError> {
        let required = self.config.min_insync_replicas;
        if self.isr.len() < required {
            return Err(ReplicationError::NotEnoughReplicas {
                isr: self.isr.len(),
                required,
            });
        }
        Ok(())
    }

    /// Per-follower progress, in replica order, for DescribeLogDirs and metrics.
    pub fn followers(&self) -> Vec<FollowerProgress> {
        self.replicas
            .iter()
            .filter_map(|&r| {
                let f = self.followers.get(&r)?;
                Some(FollowerProgress {
                    broker_id: r,
                    log_end_offset: f.log_end_offset.unwrap_or(UNDEFINED_OFFSET),
                    last_caught_up_ms: f.last_caught_up_ms,
                })
            })
            .collect()
    }

    /// Applies a state already checked to be this leadership's and not older.
    fn apply(&mut self, state: LeaderAndIsr, now_ms: i64) {
        let local = self.local;
        self.followers.retain(|r, _| state.replicas.contains(r));
        for &r in state.replicas.iter().filter(|&&r| r != local) {
            let joins_isr = state.isr.contains(&r) && !self.isr.contains(&r);
            let follower = self
                .followers
                .entry(r)
                .or_insert_with(|| Follower::new(false, now_ms));
            if joins_isr {
                // A fresh ISR member gets a full lag period before it can be shrunk away.
                follower.last_caught_up_ms = follower.last_caught_up_ms.max(now_ms);
            }
        }
        // The controller commits a request only at its exact partition epoch: a newer image
        // settles every request based on an older one, committed (it is in this image) or not.
        self.unresolved
            .retain(|r| r.partition_epoch >= state.partition_epoch);
        self.partition_epoch = state.partition_epoch;
        self.replicas = state.replicas;
        self.isr = state.isr;
    }

    fn maybe_expand(&mut self, follower: BrokerId, fetch_offset: i64) -> Option<AlterIsr> {
        if self.in_flight.is_some()
            || self.isr.contains(&follower)
            || fetch_offset < self.high_watermark
            || fetch_offset < self.leader_epoch_start_offset
        {
            return None;
        }
        tracing::info!(
            leader_epoch = self.leader_epoch,
            follower,
            "proposing an ISR expansion"
        );
        let mut new_isr = self.isr.clone();
        new_isr.push(follower);
        Some(self.propose(new_isr))
    }

    /// Records `new_isr` (with the leader added if missing) as the in-flight request.
    fn propose(&mut self, mut new_isr: Vec<BrokerId>) -> AlterIsr {
        if !new_isr.contains(&self.local) {
            new_isr.insert(0, self.local);
        }
        let request = AlterIsr {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        };
        self.in_flight = Some(request.clone());
        request
    }

    fn maybe_advance_high_watermark(&mut self) -> Option<i64> {
        let mut candidate = self.local_log_end_offset;
        for r in self.maximal_isr() {
            if r == self.local {
                continue;
            }
            match self.followers.get(&r).and_then(|f| f.log_end_offset) {
                Some(offset) => candidate = candidate.min(offset),
                None => return None,
            }
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
