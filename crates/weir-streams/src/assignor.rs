//! The task assignor of [`KafkaStreams`](crate::KafkaStreams): a
//! [`PartitionAssignor`] that keeps each task on the instance that ran it, or else holds its
//! state locally, so a rebalance moves as little state as balance allows; a task whose new
//! place is not caught up on its state stays where it is while a warm-up replica catches up
//! there (KIP-441).
//!
//! A task is a partition number: task N reads partition N of every subscribed topic (the
//! co-partitioned source topics and the repartition topics; global tables' topics are read
//! outside the group and are not subscribed). Each instance is one member of the group.
//!
//! Every member's subscription carries, in its user data, the tasks it was assigned in the
//! last generation it joined, the tasks it has a local state directory for, and its lag on
//! the tasks it has state for. The leader places each task, in task order:
//! 1. with its previous owner (the first such member in member order, if two claim it),
//! 2. else with a member that has local state for it,
//! 3. else, with the tasks left in task order, filling the members in member order,
//!
//! where every step only places a task with a member that can still take one without
//! breaking balance: `tasks / members` each, and one more for `tasks % members` of them.
//! Members are in the range assignor's order (static members by instance id, then member
//! ids), so a group without history gets range's layout: contiguous runs of tasks.
//! So counts differ by at most one, every task is assigned exactly once, and with an unchanged
//! membership and a balanced previous assignment nothing moves. Every subscribed topic's
//! partition N goes to task N's member.
//!
//! # Warm-up replicas (KIP-441)
//!
//! A member is *caught up* on a task when it ran the task in its last generation, or its
//! reported lag on it is at most `acceptable.recovery.lag`. Then, in task order, while fewer
//! than `max.warmup.replicas` tasks were held back: a task whose balanced place (above) is a
//! member that is not caught up (lag above the bound, or unknown: none reported, or a
//! version-1 subscription), while some other member is, stays with the most caught-up
//! member (least lag; the previous owner on a tie, then member order), and its balanced
//! place gets a *warm-up replica* of it: a standby that exists to catch up. Only this
//! holding back breaks balance. A task no member is caught up on is placed as above: a
//! warm-up would not be better off than the task itself. A topology without changelogs has
//! no state to catch up: every member is caught up on every task and there are no warm-ups.
//!
//! With warm-ups in the assignment, every member's assignment says when to rejoin: after
//! `probing.rebalance.interval.ms`, each instance reports its lags afresh and calls
//! [`Consumer::enforce_rebalance`](weir_client::consumer::Consumer::enforce_rebalance) (the
//! leader's rejoin is what makes the coordinator start a generation; followers' only do
//! when their lags changed). This *probing rebalance* moves every task whose warm-up is
//! caught up by then, and keeps warming the others up, until an assignment has none.
//!
//! Lags: each instance reports its own lag per task, computed from what it knows at once
//! and without I/O: a task it ran in its last generation is 0; a standby's (warm-ups
//! included) is what its changelog consumer's last fetch responses said (high watermark
//! minus position, [`Consumer::current_lag`](weir_client::consumer::Consumer::current_lag))
//! summed over the task's changelogs, refreshed by the runtime while it runs and just before
//! a probing rebalance. Kafka instead sends offset sums and lets the leader subtract them
//! from the changelogs' end offsets; here [`PartitionAssignor::assign`] is synchronous and
//! gets no client, and every standby consumer fetches continuously anyway, so it already
//! knows its own lag. In the subscriptions before the instance's first assignment, every
//! other task reports its distance to the changelogs' end offsets as `KafkaStreams::new`
//! looked them up: from a task directory's checkpoints, so that a restarted instance whose
//! state is close takes its tasks back at once, or, without local state, the changelogs'
//! whole length, as Kafka's leader counts an instance without state, so that a new instance
//! takes at once the tasks whose changelogs are within `acceptable.recovery.lag` instead of
//! warming them up until a probing rebalance. After that these lags would only grow stale,
//! and a task that is neither a task nor a standby here reports none (unknown).
//!
//! # Standby replicas
//!
//! Then, with `num.standby.replicas` above 0, each task gets up to that many standby
//! replicas on distinct members other than its active owner, one replica per pass over the
//! tasks (dealt by owner: every owner's first task, then every owner's second...): first a
//! member that has local state for it or is its warm-up's place (while it holds fewer than
//! its share of the standbys, rounded up), else the member with the fewest standbys so far
//! (ties go round the members). A warm-up's place that gets a standby of the task keeps just
//! the standby, which warms it up as well.
//! Without local state the standby counts differ by at most one.
//! A group of fewer than `num.standby.replicas + 1` members gets fewer standbys per task,
//! one on every other member. Every member's standby and warm-up tasks travel in its
//! assignment's user data (`StandbyAssignment`); a member reports them as tasks with local
//! state in its next subscription, so a task whose owner leaves goes to a member that kept
//! it warm. Only the leader's `num.standby.replicas`, `acceptable.recovery.lag`,
//! `max.warmup.replicas` and `probing.rebalance.interval.ms` count: every instance of an
//! application should use the same values.
//!
//! It is eager: every instance closes its tasks before a rebalance (the runtime keeps a task
//! given back to it in the same rebalance, see `sync_tasks`).
//!
//! # User data
//!
//! Versioned so a later version can append fields; everything big-endian. The subscription
//! (`TaskHistory`): byte 0 the version (2), then the owned tasks and the tasks with local
//! state, each an `i32` count and that many `i32` task ids; version 2 appends the lags: an
//! `i32` count and that many (`i32` task, `i64` lag) pairs. Version 1 is the prefix without
//! the lags: its members report no lags (caught up only on the tasks they owned). A member
//! whose data does not decode (a newer layout it cannot read the prefix of, or none) counts
//! as a member with no tasks and no state. The assignment (`StandbyAssignment`) is laid out
//! alike: the version, the standby tasks; version 2 appends the warm-up tasks and the
//! probing rebalance delay in milliseconds (`i64`, -1 for none).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use weir_client::consumer::{GroupMember, MemberAssignment, PartitionAssignor, TopicPartition};

/// The protocol name in JoinGroup: every instance of an application must propose it.
pub(crate) const NAME: &str = "weir-streams";

/// The user data layout this version writes.
const VERSION: u8 = 2;

/// An `i32` count and that many `i32` task ids; `None` when `bytes` is short.
fn read_tasks(bytes: &mut &[u8]) -> Option<BTreeSet<i32>> {
    if bytes.remaining() < 4 {
        return None;
    }
    let len = usize::try_from(bytes.get_i32()).ok()?;
    if bytes.remaining() / 4 < len {
        return None;
    }
    Some((0..len).map(|_| bytes.get_i32()).collect())
}

fn put_tasks(buf: &mut BytesMut, tasks: &BTreeSet<i32>) {
    buf.put_i32(i32::try_from(tasks.len()).unwrap_or(i32::MAX));
    for task in tasks {
        buf.put_i32(*task);
    }
}

/// What one instance tells the leader about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskHistory {
    /// The tasks it was assigned in the last generation it joined.
    pub(crate) owned: BTreeSet<i32>,
    /// The tasks it has a local state directory for.
    pub(crate) with_state: BTreeSet<i32>,
    /// Per task it has state for, how many changelog records its state is behind; a task
    /// without an entry has an unknown lag.
    pub(crate) lags: BTreeMap<i32, i64>,
}

impl TaskHistory {
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u8(VERSION);
        put_tasks(&mut buf, &self.owned);
        put_tasks(&mut buf, &self.with_state);
        buf.put_i32(i32::try_from(self.lags.len()).unwrap_or(i32::MAX));
        for (task, lag) in &self.lags {
            buf.put_i32(*task);
            buf.put_i64(*lag);
        }
        buf.freeze()
    }

    /// `None` when `bytes` is not a history this version can read.
    pub(crate) fn decode(mut bytes: &[u8]) -> Option<Self> {
        if bytes.remaining() < 1 {
            return None;
        }
        let version = bytes.get_u8();
        if version < 1 {
            return None;
        }
        let owned = read_tasks(&mut bytes)?;
        let with_state = read_tasks(&mut bytes)?;
        let mut lags = BTreeMap::new();
        if version >= 2 {
            if bytes.remaining() < 4 {
                return None;
            }
            let len = usize::try_from(bytes.get_i32()).ok()?;
            if bytes.remaining() / 12 < len {
                return None;
            }
            for _ in 0..len {
                let task = bytes.get_i32();
                lags.insert(task, bytes.get_i64());
            }
        }
        // Bytes after these belong to later versions.
        Some(Self {
            owned,
            with_state,
            lags,
        })
    }

    /// Its lag on `task`: 0 for a task it ran, `None` when unknown. A negative report (the
    /// end offsets moved back) counts as caught up.
    fn lag(&self, task: i32) -> Option<i64> {
        if self.owned.contains(&task) {
            return Some(0);
        }
        self.lags.get(&task).map(|lag| (*lag).max(0))
    }
}

/// The standby and warm-up tasks the leader gives one member, in its assignment's user data,
/// and when it should rejoin for a probing rebalance (see the module docs for the layout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StandbyAssignment {
    pub(crate) standbys: BTreeSet<i32>,
    /// Standbys that exist to catch up on a task held back elsewhere until they do.
    pub(crate) warmups: BTreeSet<i32>,
    /// How long after this assignment the member rejoins, while there are warm-ups.
    pub(crate) probing_rebalance_delay: Option<Duration>,
}

impl StandbyAssignment {
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u8(VERSION);
        put_tasks(&mut buf, &self.standbys);
        put_tasks(&mut buf, &self.warmups);
        buf.put_i64(self.probing_rebalance_delay.map_or(-1, |delay| {
            i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
        }));
        buf.freeze()
    }

    /// `None` when `bytes` is not an assignment this version can read.
    pub(crate) fn decode(mut bytes: &[u8]) -> Option<Self> {
        if bytes.remaining() < 1 {
            return None;
        }
        let version = bytes.get_u8();
        if version < 1 {
            return None;
        }
        let standbys = read_tasks(&mut bytes)?;
        let mut assignment = Self {
            standbys,
            ..Self::default()
        };
        if version >= 2 {
            assignment.warmups = read_tasks(&mut bytes)?;
            if bytes.remaining() < 8 {
                return None;
            }
            assignment.probing_rebalance_delay = u64::try_from(bytes.get_i64())
                .ok()
                .map(Duration::from_millis);
        }
        Some(assignment)
    }
}

/// The leader's settings (Kafka's `AssignmentConfigs`), from `StreamsConfig`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AssignmentConfigs {
    /// `num.standby.replicas`.
    pub(crate) num_standby_replicas: u32,
    /// `acceptable.recovery.lag`.
    pub(crate) acceptable_recovery_lag: i64,
    /// `max.warmup.replicas`; 0 (only in tests) places none.
    pub(crate) max_warmup_replicas: u32,
    /// `probing.rebalance.interval.ms`.
    pub(crate) probing_rebalance_interval: Duration,
    /// Whether the tasks have changelogs: without, every member is caught up on every task.
    pub(crate) stateful: bool,
}

/// The runtime's [`PartitionAssignor`]. It learns the instance's tasks from its own
/// assignments and the tasks with local state from the runtime, which tells it as it
/// creates and deletes task directories, and reports its standbys' lags.
#[derive(Debug, Default)]
pub(crate) struct StreamsAssignor {
    history: Mutex<TaskHistory>,
    /// Used when this instance leads the group.
    configs: AssignmentConfigs,
    /// The standby and warm-up tasks of this instance's last assignment, for the runtime
    /// to follow.
    standbys: Mutex<StandbyAssignment>,
    /// How far behind each task's changelogs this instance was at start (its checkpoints,
    /// or nothing for a task without local state); reported until the first assignment
    /// only, as they grow stale with the changelogs.
    start_lags: Mutex<BTreeMap<i32, i64>>,
}

impl StreamsAssignor {
    /// An assignor that, as leader, places standbys and warm-ups as `configs` say.
    pub(crate) fn new(configs: AssignmentConfigs) -> Self {
        Self {
            configs,
            ..Self::default()
        }
    }

    /// The tasks the last assignment gave this instance a replica of: standbys and warm-ups,
    /// which the runtime runs alike.
    pub(crate) fn standby_tasks(&self) -> BTreeSet<i32> {
        let standbys = self.standbys.lock();
        standbys
            .standbys
            .union(&standbys.warmups)
            .copied()
            .collect()
    }

    /// The warm-up tasks of the last assignment.
    pub(crate) fn warmup_tasks(&self) -> BTreeSet<i32> {
        self.standbys.lock().warmups.clone()
    }

    /// When the last assignment asks this instance to rejoin, after it was received.
    pub(crate) fn probing_rebalance_delay(&self) -> Option<Duration> {
        self.standbys.lock().probing_rebalance_delay
    }

    /// Replaces the set of tasks with local state (after scanning or wiping the directory).
    pub(crate) fn set_local_state(&self, tasks: impl IntoIterator<Item = i32>) {
        self.history.lock().with_state = tasks.into_iter().collect();
    }

    /// A task directory was created.
    pub(crate) fn add_local_state(&self, task: i32) {
        self.history.lock().with_state.insert(task);
    }

    /// Task directories were deleted.
    pub(crate) fn remove_local_state(&self, tasks: &[i32]) {
        let mut history = self.history.lock();
        for task in tasks {
            history.with_state.remove(task);
        }
    }

    /// How far behind each task's changelogs start found this instance (a task directory's
    /// checkpoints, or nothing, against the changelogs' end offsets), for the first
    /// subscription.
    pub(crate) fn set_start_lags(&self, lags: BTreeMap<i32, i64>) {
        *self.start_lags.lock() = lags;
    }

    /// Replaces the lags of the standbys (warm-ups included) reported in the next
    /// subscription; a standby left out has an unknown lag.
    pub(crate) fn set_standby_lags(&self, lags: BTreeMap<i32, i64>) {
        self.history.lock().lags = lags;
    }

    #[cfg(test)]
    fn history(&self) -> TaskHistory {
        self.history.lock().clone()
    }
}

impl PartitionAssignor for StreamsAssignor {
    fn name(&self) -> &str {
        NAME
    }

    fn subscription_user_data(&self, _topics: &[String]) -> Option<Bytes> {
        // A standby's stores are as good as local state (kept in memory, or in its
        // directory): the task restores little here.
        let mut history = self.history.lock().clone();
        let replicas = self.standby_tasks();
        // Lags of standbys dropped since they were reported no longer hold.
        history.lags.retain(|task, _| replicas.contains(task));
        // Until the first assignment: how far behind start found every other task, with
        // local state or without.
        for (task, lag) in self.start_lags.lock().iter() {
            if !replicas.contains(task) {
                history.lags.insert(*task, *lag);
            }
        }
        history.with_state.extend(replicas);
        for task in &history.owned {
            history.lags.insert(*task, 0);
        }
        Some(history.encode())
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[GroupMember],
    ) -> weir_client::Result<BTreeMap<String, MemberAssignment>> {
        let tasks = partitions_per_topic.values().copied().max().unwrap_or(0);
        let mut ordered: Vec<&GroupMember> = members.iter().collect();
        ordered.sort_by(|a, b| {
            let key =
                |m: &GroupMember| (m.group_instance_id.is_none(), m.group_instance_id.clone());
            key(a)
                .cmp(&key(b))
                .then_with(|| a.member_id.cmp(&b.member_id))
        });
        let instances: Vec<(String, TaskHistory)> = ordered
            .into_iter()
            .map(|m| {
                let history = m
                    .user_data
                    .as_deref()
                    .and_then(TaskHistory::decode)
                    .unwrap_or_else(|| {
                        tracing::debug!(member = %m.member_id, "no task history in its subscription");
                        TaskHistory::default()
                    });
                (m.member_id.clone(), history)
            })
            .collect();
        let placement = place(tasks, &instances, &self.configs);
        if !placement.held_back.is_empty() {
            tracing::info!(
                held_back = ?placement.held_back,
                warmups = ?placement.warmups,
                probing_in = ?self.configs.probing_rebalance_interval,
                "tasks kept on caught-up instances while their new places warm up"
            );
        }
        let probing_rebalance_delay =
            (!placement.held_back.is_empty()).then_some(self.configs.probing_rebalance_interval);
        Ok(members
            .iter()
            .map(|m| {
                let tasks = placement
                    .active
                    .get(&m.member_id)
                    .cloned()
                    .unwrap_or_default();
                // Partition N of every topic the member subscribes to: task N's inputs.
                let partitions = m
                    .topics
                    .iter()
                    .filter_map(|t| Some((t, *partitions_per_topic.get(t)?)))
                    .flat_map(|(topic, count)| {
                        tasks
                            .iter()
                            .filter(move |task| **task < count)
                            .map(move |task| TopicPartition::new(topic.clone(), *task))
                    })
                    .collect();
                let standby = StandbyAssignment {
                    standbys: placement
                        .standbys
                        .get(&m.member_id)
                        .cloned()
                        .unwrap_or_default(),
                    warmups: placement
                        .warmups
                        .get(&m.member_id)
                        .cloned()
                        .unwrap_or_default(),
                    probing_rebalance_delay,
                };
                let assignment = MemberAssignment::new(partitions).with_user_data(standby.encode());
                (m.member_id.clone(), assignment)
            })
            .collect())
    }

    fn on_assignment(&self, partitions: &[TopicPartition], user_data: Option<&Bytes>) {
        // What the next join reports as owned.
        self.history.lock().owned = partitions.iter().map(|tp| tp.partition).collect();
        self.start_lags.lock().clear();
        // A leader of another version may send none this version reads: no standbys then.
        *self.standbys.lock() = user_data
            .and_then(|data| StandbyAssignment::decode(data))
            .unwrap_or_default();
    }
}

/// Where the leader puts every task and its replicas; each map has every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) active: BTreeMap<String, BTreeSet<i32>>,
    pub(crate) standbys: BTreeMap<String, BTreeSet<i32>>,
    pub(crate) warmups: BTreeMap<String, BTreeSet<i32>>,
    /// The tasks kept off their balanced place until it is caught up, each with that place.
    pub(crate) held_back: BTreeMap<i32, String>,
}

/// The whole placement of tasks `0..tasks` on `members`, as the module docs say: the
/// balanced layout, the tasks held back for warm-ups, then the standbys.
pub(crate) fn place(
    tasks: i32,
    members: &[(String, TaskHistory)],
    configs: &AssignmentConfigs,
) -> Placement {
    let mut active = assign_tasks(tasks, members);
    let held = if configs.stateful {
        hold_back_for_warmups(
            tasks,
            members,
            &mut active,
            configs.acceptable_recovery_lag,
            configs.max_warmup_replicas,
        )
    } else {
        Vec::new()
    };
    // A warm-up's place is where a standby of its task does most good.
    let mut for_standbys = members.to_vec();
    for (task, target) in &held {
        if let Some((_, history)) = for_standbys.iter_mut().find(|(id, _)| id == target) {
            history.with_state.insert(*task);
        }
    }
    let standbys = assign_standbys(tasks, &for_standbys, &active, configs.num_standby_replicas);
    let mut warmups: BTreeMap<String, BTreeSet<i32>> = members
        .iter()
        .map(|(id, _)| (id.clone(), BTreeSet::new()))
        .collect();
    for (task, target) in &held {
        if !standbys.get(target).is_some_and(|s| s.contains(task))
            && let Some(set) = warmups.get_mut(target)
        {
            set.insert(*task);
        }
    }
    Placement {
        active,
        standbys,
        warmups,
        held_back: held.into_iter().collect(),
    }
}

/// Moves each task whose place in `active` is a member not caught up on it to the most
/// caught-up member, in task order, up to `max_warmups` tasks; returns the tasks moved with
/// the member each would have gone to (its warm-up's place).
fn hold_back_for_warmups(
    tasks: i32,
    members: &[(String, TaskHistory)],
    active: &mut BTreeMap<String, BTreeSet<i32>>,
    acceptable_recovery_lag: i64,
    max_warmups: u32,
) -> Vec<(i32, String)> {
    let budget = usize::try_from(max_warmups).unwrap_or(usize::MAX);
    let caught_up = |history: &TaskHistory, task: i32| {
        history
            .lag(task)
            .is_some_and(|lag| lag <= acceptable_recovery_lag)
    };
    let mut held = Vec::new();
    for task in 0..tasks {
        if held.len() >= budget {
            break;
        }
        let Some(target) = active
            .iter()
            .find(|(_, set)| set.contains(&task))
            .map(|(id, _)| id.clone())
        else {
            continue;
        };
        if members
            .iter()
            .any(|(id, history)| *id == target && caught_up(history, task))
        {
            continue;
        }
        // The least lag, then the previous owner, then member order.
        let keeper = members
            .iter()
            .enumerate()
            .filter(|(_, (_, history))| caught_up(history, task))
            .min_by_key(|(i, (_, history))| (history.lag(task), !history.owned.contains(&task), *i))
            .map(|(_, (id, _))| id.clone());
        let Some(keeper) = keeper else {
            continue;
        };
        if let Some(set) = active.get_mut(&target) {
            set.remove(&task);
        }
        if let Some(set) = active.get_mut(&keeper) {
            set.insert(task);
        }
        held.push((task, target));
    }
    held
}

/// Places tasks `0..tasks` on `members` (member id, history), as the module docs say.
/// Members are taken in the order given. Every member gets an entry.
pub(crate) fn assign_tasks(
    tasks: i32,
    members: &[(String, TaskHistory)],
) -> BTreeMap<String, BTreeSet<i32>> {
    let mut assigned: Vec<BTreeSet<i32>> = vec![BTreeSet::new(); members.len()];
    if members.is_empty() || tasks <= 0 {
        return members
            .iter()
            .map(|(id, _)| (id.clone(), BTreeSet::new()))
            .collect();
    }
    let n = usize::try_from(tasks).unwrap_or(0);
    let base = n / members.len();
    // How many members may still take one task above `base`.
    let mut extra = n % members.len();
    let mut placed = vec![false; n];

    // Whether member `i` can take another task without breaking balance; takes the extra
    // slot when it needs it.
    let mut take = |assigned: &mut [BTreeSet<i32>], i: usize, task: i32| -> bool {
        let Some(set) = assigned.get_mut(i) else {
            return false;
        };
        if set.len() < base {
            set.insert(task);
            true
        } else if set.len() == base && extra > 0 {
            extra -= 1;
            set.insert(task);
            true
        } else {
            false
        }
    };

    for prefer in [Prefer::Owner, Prefer::State] {
        for (task, done) in (0..tasks).zip(placed.iter_mut()) {
            if *done {
                continue;
            }
            for (i, (_, history)) in members.iter().enumerate() {
                let wants = match prefer {
                    Prefer::Owner => history.owned.contains(&task),
                    Prefer::State => history.with_state.contains(&task),
                };
                if wants && take(&mut assigned, i, task) {
                    *done = true;
                    break;
                }
            }
        }
    }
    // The rest in task order, filling each member in turn up to its share: contiguous runs,
    // so a group with no history gets the range assignor's layout.
    let mut rest = (0..tasks)
        .zip(placed)
        .filter(|(_, done)| !done)
        .map(|(task, _)| task);
    let mut next = rest.next();
    for i in 0..members.len() {
        while let Some(task) = next {
            if !take(&mut assigned, i, task) {
                break;
            }
            next = rest.next();
        }
    }
    members
        .iter()
        .map(|(id, _)| id.clone())
        .zip(assigned)
        .collect()
}

/// Places up to `replicas` standbys of each task `0..tasks` on `members` (member id,
/// history), as the module docs say, given the active layout `active`. Every member gets an
/// entry.
pub(crate) fn assign_standbys(
    tasks: i32,
    members: &[(String, TaskHistory)],
    active: &BTreeMap<String, BTreeSet<i32>>,
    replicas: u32,
) -> BTreeMap<String, BTreeSet<i32>> {
    let mut assigned: Vec<BTreeSet<i32>> = vec![BTreeSet::new(); members.len()];
    let per_task = usize::try_from(replicas)
        .unwrap_or(usize::MAX)
        .min(members.len().saturating_sub(1));
    if per_task > 0 && tasks > 0 {
        let total = usize::try_from(tasks).unwrap_or(0) * per_task;
        // A member with state for many tasks takes their standbys only up to its share,
        // so that local state does not pile them all on one member.
        let share = total.div_ceil(members.len());
        let mut next = 0;
        // The tasks dealt by owner: each owner's first task, then each one's second, and so
        // on. In plain task order, a run of one owner's tasks (range's layout) would pile
        // their standbys on the others, and the last run would leave its owner short.
        let mut order: Vec<(usize, usize, i32)> = members
            .iter()
            .enumerate()
            .flat_map(|(owner, (id, _))| {
                active
                    .get(id)
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(move |(rank, task)| (rank, owner, *task))
            })
            .collect();
        order.sort_unstable();
        // Replica by replica, each a pass over the tasks, so that no task's later replicas
        // go where the earlier tasks' standbys already piled up.
        for _ in 0..per_task {
            for &(_, _, task) in &order {
                // The eligible member that `with_state` asks for with the fewest standbys.
                let pick = |with_state: bool| -> Option<usize> {
                    members
                        .iter()
                        .zip(&assigned)
                        .enumerate()
                        .filter(|(_, ((id, history), set))| {
                            !active.get(id).is_some_and(|owned| owned.contains(&task))
                                && !set.contains(&task)
                                && (!with_state
                                    || (history.with_state.contains(&task) && set.len() < share))
                        })
                        // Ties go round the members from the last one chosen.
                        .min_by_key(|(i, (_, set))| {
                            (set.len(), (i + members.len() - next) % members.len())
                        })
                        .map(|(i, _)| i)
                };
                let chosen = pick(true).or_else(|| pick(false));
                if let Some(i) = chosen
                    && let Some(set) = assigned.get_mut(i)
                {
                    set.insert(task);
                    next = (i + 1) % members.len();
                }
            }
        }
    }
    members
        .iter()
        .map(|(id, _)| id.clone())
        .zip(assigned)
        .collect()
}

#[derive(Clone, Copy)]
enum Prefer {
    Owner,
    State,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn history(owned: &[i32], with_state: &[i32]) -> TaskHistory {
        TaskHistory {
            owned: owned.iter().copied().collect(),
            with_state: with_state.iter().copied().collect(),
            lags: BTreeMap::new(),
        }
    }

    fn set(tasks: &[i32]) -> BTreeSet<i32> {
        tasks.iter().copied().collect()
    }

    fn standby_configs(num_standby_replicas: u32) -> AssignmentConfigs {
        AssignmentConfigs {
            num_standby_replicas,
            ..AssignmentConfigs::default()
        }
    }

    fn warmup_configs(max_warmup_replicas: u32) -> AssignmentConfigs {
        AssignmentConfigs {
            num_standby_replicas: 0,
            acceptable_recovery_lag: 100,
            max_warmup_replicas,
            probing_rebalance_interval: Duration::from_secs(1),
            stateful: true,
        }
    }

    fn with_lags(mut history: TaskHistory, lags: &[(i32, i64)]) -> TaskHistory {
        history.lags = lags.iter().copied().collect();
        history
    }

    #[test]
    fn history_round_trips_and_bad_bytes_are_none() {
        let h = with_lags(history(&[0, 3], &[1]), &[(0, 0), (1, 42)]);
        assert_eq!(TaskHistory::decode(&h.encode()), Some(h.clone()));
        // A later version that appends fields still gives its prefix.
        let mut later = BytesMut::from(&h.encode()[..]);
        later[0] = 3;
        later.put_slice(b"more");
        assert_eq!(TaskHistory::decode(&later), Some(h));
        for bad in [
            &[][..],
            &[0][..],
            &[1, 0, 0][..],
            &[1, 0, 0, 0, 9, 0][..],
            // Version 2 without its lags, or with fewer than it counts.
            &[2, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7][..],
        ] {
            assert_eq!(TaskHistory::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn version_1_history_still_decodes_without_lags() {
        // What a version-1 instance sends: owned [2], with state [5].
        let v1 = [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 5];
        assert_eq!(TaskHistory::decode(&v1), Some(history(&[2], &[5])));
        // Its owned tasks count as caught up, its other state as unknown.
        let decoded = TaskHistory::decode(&v1).unwrap();
        assert_eq!(decoded.lag(2), Some(0));
        assert_eq!(decoded.lag(5), None);
    }

    proptest! {
        /// Whatever the bytes, decoding returns (`None` or a value) and never panics.
        #[test]
        fn garbage_user_data_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = TaskHistory::decode(&bytes);
            let _ = StandbyAssignment::decode(&bytes);
        }
    }

    #[test]
    fn owners_keep_their_tasks_then_state_then_the_least_loaded() {
        let members = vec![
            ("a".to_string(), history(&[0, 1, 2], &[])),
            ("b".to_string(), history(&[], &[3])),
            ("c".to_string(), history(&[], &[])),
        ];
        let out = assign_tasks(6, &members);
        // a keeps two (balance allows no more), b takes the task it has state for.
        assert_eq!(out["a"], set(&[0, 1]));
        assert!(out["b"].contains(&3));
        assert_eq!(
            out.values().map(BTreeSet::len).collect::<Vec<_>>(),
            [2, 2, 2]
        );
    }

    #[test]
    fn without_history_the_layout_is_ranges() {
        let members: Vec<(String, TaskHistory)> = ["a", "b", "c"]
            .iter()
            .map(|id| (id.to_string(), TaskHistory::default()))
            .collect();
        let out = assign_tasks(7, &members);
        assert_eq!(out["a"], set(&[0, 1, 2]));
        assert_eq!(out["b"], set(&[3, 4]));
        assert_eq!(out["c"], set(&[5, 6]));
    }

    #[test]
    fn members_go_in_the_range_assignors_order() {
        let assignor = StreamsAssignor::default();
        let topics: BTreeMap<String, i32> = [("in".to_string(), 2)].into();
        let dynamic = GroupMember::new("a", vec!["in".into()]);
        let mut stat = GroupMember::new("z", vec!["in".into()]);
        stat.group_instance_id = Some("instance".into());
        let out = assignor.assign(&topics, &[dynamic, stat]).unwrap();
        assert_eq!(out["z"].partitions, [TopicPartition::new("in", 0)]);
        assert_eq!(out["a"].partitions, [TopicPartition::new("in", 1)]);
    }

    #[test]
    fn the_assignor_gives_every_topic_partition_n_to_task_ns_member() {
        let assignor = StreamsAssignor::default();
        let topics: BTreeMap<String, i32> =
            [("in".to_string(), 3), ("app-rep".to_string(), 3)].into();
        let mut a = GroupMember::new("a", vec!["in".into(), "app-rep".into()]);
        a.user_data = Some(history(&[2], &[]).encode());
        let b = GroupMember::new("b", vec!["in".into(), "app-rep".into()]);
        let out = assignor.assign(&topics, &[a, b]).unwrap();
        let tasks = |id: &str| -> BTreeMap<String, BTreeSet<i32>> {
            let mut by_topic: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
            for tp in &out[id].partitions {
                by_topic
                    .entry(tp.topic.clone())
                    .or_default()
                    .insert(tp.partition);
            }
            by_topic
        };
        assert_eq!(tasks("a")["in"], tasks("a")["app-rep"]);
        assert_eq!(tasks("b")["in"], tasks("b")["app-rep"]);
        assert!(tasks("a")["in"].contains(&2));
        assert_eq!(tasks("a")["in"].len() + tasks("b")["in"].len(), 3);
    }

    #[test]
    fn on_assignment_becomes_the_next_subscriptions_owned_tasks() {
        let assignor = StreamsAssignor::default();
        assignor.set_local_state([4, 5]);
        assignor.add_local_state(6);
        assignor.remove_local_state(&[4]);
        assignor.on_assignment(
            &[TopicPartition::new("in", 1), TopicPartition::new("rep", 1)],
            None,
        );
        assert_eq!(assignor.history(), history(&[1], &[5, 6]));
        let data = assignor.subscription_user_data(&[]).unwrap();
        // An owned task is reported caught up.
        assert_eq!(
            TaskHistory::decode(&data),
            Some(with_lags(history(&[1], &[5, 6]), &[(1, 0)]))
        );
    }

    #[test]
    fn standby_assignment_round_trips_and_bad_bytes_are_none() {
        let a = StandbyAssignment {
            standbys: set(&[2, 5]),
            warmups: set(&[7]),
            probing_rebalance_delay: Some(Duration::from_millis(1500)),
        };
        assert_eq!(StandbyAssignment::decode(&a.encode()), Some(a.clone()));
        let none = StandbyAssignment {
            probing_rebalance_delay: None,
            ..a.clone()
        };
        assert_eq!(StandbyAssignment::decode(&none.encode()), Some(none));
        let mut later = BytesMut::from(&a.encode()[..]);
        later[0] = 3;
        later.put_slice(b"more");
        assert_eq!(StandbyAssignment::decode(&later), Some(a));
        // Version 1: the standbys alone.
        assert_eq!(
            StandbyAssignment::decode(&[1, 0, 0, 0, 1, 0, 0, 0, 4]),
            Some(StandbyAssignment {
                standbys: set(&[4]),
                ..StandbyAssignment::default()
            })
        );
        for bad in [
            &[][..],
            &[0, 0, 0, 0, 0][..],
            &[1, 0, 0][..],
            &[1, 0, 0, 0, 2, 0][..],
            // Version 2 cut short in its warm-ups or its probing delay.
            &[2, 0, 0, 0, 0][..],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        ] {
            assert_eq!(StandbyAssignment::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_new_member_without_state_gets_warmups_while_the_owner_keeps_its_tasks() {
        let members = vec![
            ("a".to_string(), history(&[0, 1, 2, 3], &[])),
            ("b".to_string(), history(&[], &[])),
        ];
        let out = place(4, &members, &warmup_configs(2));
        assert_eq!(out.active["a"], set(&[0, 1, 2, 3]));
        assert_eq!(out.active["b"], set(&[]));
        assert_eq!(out.warmups["b"], set(&[2, 3]));
        assert_eq!(out.warmups["a"], set(&[]));
        assert_eq!(out.held_back.len(), 2);
        // Without warm-ups (or a stateless topology) b takes its share at once.
        for configs in [
            warmup_configs(0),
            AssignmentConfigs {
                stateful: false,
                ..warmup_configs(2)
            },
        ] {
            let out = place(4, &members, &configs);
            assert_eq!(out.active["b"], set(&[2, 3]));
            assert!(out.held_back.is_empty());
            assert!(out.warmups.values().all(BTreeSet::is_empty));
        }
    }

    #[test]
    fn a_member_within_the_acceptable_lag_gets_the_task() {
        let a = history(&[0, 1, 2, 3], &[]);
        // b warmed 2 and 3 up: 2 is within the bound (100), 3 is not.
        let b = with_lags(history(&[], &[2, 3]), &[(2, 100), (3, 101)]);
        let members = vec![("a".to_string(), a), ("b".to_string(), b)];
        let out = place(4, &members, &warmup_configs(2));
        assert_eq!(out.active["a"], set(&[0, 1, 3]));
        assert_eq!(out.active["b"], set(&[2]));
        assert_eq!(out.warmups["b"], set(&[3]));
        assert_eq!(out.held_back.len(), 1);
    }

    #[test]
    fn at_most_max_warmup_replicas_tasks_are_held_back() {
        let members = vec![
            ("a".to_string(), history(&[0, 1, 2, 3, 4, 5], &[])),
            ("b".to_string(), history(&[], &[])),
        ];
        let out = place(6, &members, &warmup_configs(1));
        // b's share is 3, 4, 5: one held back, the others move as without warm-ups.
        assert_eq!(out.warmups["b"], set(&[3]));
        assert_eq!(out.active["a"], set(&[0, 1, 2, 3]));
        assert_eq!(out.active["b"], set(&[4, 5]));
    }

    #[test]
    fn the_most_caught_up_member_keeps_the_task_and_none_caught_up_places_as_before() {
        // The owner of 1 left; b's standby is its balanced place but too far behind, a's
        // and c's are within the bound, c's closer.
        let members = vec![
            ("a".to_string(), with_lags(history(&[0], &[1]), &[(1, 50)])),
            ("b".to_string(), with_lags(history(&[], &[1]), &[(1, 500)])),
            ("c".to_string(), with_lags(history(&[], &[1]), &[(1, 10)])),
        ];
        assert!(assign_tasks(3, &members)["b"].contains(&1));
        let out = place(3, &members, &warmup_configs(2));
        assert!(out.active["c"].contains(&1));
        assert_eq!(out.warmups["b"], set(&[1]));
        // On a tie the previous owner keeps it, before a member earlier in member order.
        let members = vec![
            (
                "x".to_string(),
                with_lags(history(&[], &[1, 2]), &[(1, 0), (2, 0)]),
            ),
            ("y".to_string(), history(&[0, 1, 2], &[])),
            ("z".to_string(), history(&[], &[])),
        ];
        assert_eq!(assign_tasks(3, &members)["z"], set(&[2]));
        let out = place(3, &members, &warmup_configs(2));
        assert_eq!(out.active["y"], set(&[0, 2]));
        assert_eq!(out.warmups["z"], set(&[2]));
        // Nobody is caught up on a task: placed as balance says, no warm-up.
        let cold = vec![
            ("a".to_string(), history(&[], &[])),
            (
                "b".to_string(),
                with_lags(history(&[], &[0]), &[(0, 5_000)]),
            ),
        ];
        let out = place(2, &cold, &warmup_configs(2));
        assert_eq!(out.active, assign_tasks(2, &cold));
        assert!(out.held_back.is_empty());
    }

    #[test]
    fn a_warmup_place_that_gets_a_standby_keeps_just_the_standby() {
        let members = vec![
            ("a".to_string(), history(&[0, 1], &[])),
            ("b".to_string(), history(&[], &[])),
        ];
        let configs = AssignmentConfigs {
            num_standby_replicas: 1,
            ..warmup_configs(2)
        };
        let out = place(2, &members, &configs);
        assert_eq!(out.active["a"], set(&[0, 1]));
        assert_eq!(out.standbys["b"], set(&[0, 1]));
        assert!(out.warmups["b"].is_empty());
        assert_eq!(out.held_back.len(), 1);
    }

    #[test]
    fn start_lags_are_reported_until_the_first_assignment() {
        let assignor = StreamsAssignor::default();
        assignor.set_local_state([1, 2]);
        // 3 has no directory: its lag is its changelogs' length, and counts as Kafka's
        // leader counts an instance without state.
        assignor.set_start_lags([(1, 40), (2, 20_000), (3, 7)].into());
        let data = assignor.subscription_user_data(&[]).unwrap();
        let reported = TaskHistory::decode(&data).unwrap();
        assert_eq!(
            reported,
            with_lags(history(&[], &[1, 2]), &[(1, 40), (2, 20_000), (3, 7)])
        );
        assert_eq!(reported.lag(3), Some(7));
        assert!(!reported.with_state.contains(&3));
        // As the standby of 2, its lag is the standby's.
        let standby = StandbyAssignment {
            standbys: set(&[2]),
            ..StandbyAssignment::default()
        };
        assignor.on_assignment(&[TopicPartition::new("in", 0)], Some(&standby.encode()));
        assignor.set_standby_lags([(2, 5)].into());
        let data = assignor.subscription_user_data(&[]).unwrap();
        assert_eq!(
            TaskHistory::decode(&data),
            Some(with_lags(history(&[0], &[1, 2]), &[(0, 0), (2, 5)]))
        );
    }

    #[test]
    fn the_leader_sends_warmups_and_a_probing_delay_to_every_member() {
        let leader = StreamsAssignor::new(warmup_configs(2));
        let topics: BTreeMap<String, i32> = [("in".to_string(), 2)].into();
        let mut a = GroupMember::new("a", vec!["in".into()]);
        a.user_data = Some(history(&[0, 1], &[]).encode());
        let b = GroupMember::new("b", vec!["in".into()]);
        let out = leader.assign(&topics, &[a, b]).unwrap();
        assert_eq!(out["b"].partitions, []);
        let member = StreamsAssignor::default();
        member.on_assignment(&out["b"].partitions, out["b"].user_data.as_ref());
        assert_eq!(member.warmup_tasks(), set(&[1]));
        assert_eq!(member.standby_tasks(), set(&[1]));
        assert_eq!(
            member.probing_rebalance_delay(),
            Some(Duration::from_secs(1))
        );
        let owner = StreamsAssignor::default();
        owner.on_assignment(&out["a"].partitions, out["a"].user_data.as_ref());
        assert_eq!(
            owner.probing_rebalance_delay(),
            Some(Duration::from_secs(1))
        );
        // b reports its warm-up's lag, and with it caught up the task moves.
        member.set_standby_lags([(1, 3), (9, 0)].into());
        let data = member.subscription_user_data(&[]).unwrap();
        assert_eq!(
            TaskHistory::decode(&data),
            Some(with_lags(history(&[], &[1]), &[(1, 3)]))
        );
        let mut a = GroupMember::new("a", vec!["in".into()]);
        a.user_data = owner.subscription_user_data(&[]);
        let mut b = GroupMember::new("b", vec!["in".into()]);
        b.user_data = Some(data);
        let out = leader.assign(&topics, &[a, b]).unwrap();
        assert_eq!(out["b"].partitions, [TopicPartition::new("in", 1)]);
        member.on_assignment(&out["b"].partitions, out["b"].user_data.as_ref());
        assert!(member.warmup_tasks().is_empty());
        assert_eq!(member.probing_rebalance_delay(), None);
    }

    #[test]
    fn standbys_go_to_members_with_state_then_the_least_loaded() {
        let members = vec![
            ("a".to_string(), history(&[0], &[])),
            ("b".to_string(), history(&[], &[])),
            ("c".to_string(), history(&[], &[0])),
        ];
        let active = assign_tasks(3, &members);
        assert_eq!(active["a"], set(&[0]));
        let out = assign_standbys(3, &members, &active, 1);
        // c has state for task 0; then the fewest standbys, in member order.
        assert_eq!(out["c"], set(&[0]));
        assert_eq!(out["a"], set(&[1]));
        assert_eq!(out["b"], set(&[2]));
        // More replicas than other members: one on every other member.
        let out = assign_standbys(3, &members, &active, 5);
        for (id, standbys) in &out {
            assert_eq!(standbys.len(), 2, "{id}: {out:?}");
            assert!(standbys.is_disjoint(&active[id]));
        }
        // None asked for, or a member alone: none.
        assert!(
            assign_standbys(3, &members, &active, 0)
                .values()
                .all(BTreeSet::is_empty)
        );
        let alone = &members[..1];
        let active = assign_tasks(3, alone);
        assert!(
            assign_standbys(3, alone, &active, 1)
                .values()
                .all(BTreeSet::is_empty)
        );
    }

    #[test]
    fn the_leader_sends_standbys_and_members_report_them_as_local_state() {
        let leader = StreamsAssignor::new(standby_configs(1));
        let topics: BTreeMap<String, i32> = [("in".to_string(), 2)].into();
        let a = GroupMember::new("a", vec!["in".into()]);
        let b = GroupMember::new("b", vec!["in".into()]);
        let out = leader.assign(&topics, &[a, b]).unwrap();
        let member = StreamsAssignor::new(standby_configs(1));
        member.on_assignment(&out["b"].partitions, out["b"].user_data.as_ref());
        assert_eq!(out["b"].partitions, [TopicPartition::new("in", 1)]);
        assert_eq!(member.standby_tasks(), set(&[0]));
        let data = member.subscription_user_data(&[]).unwrap();
        assert_eq!(
            TaskHistory::decode(&data),
            Some(with_lags(history(&[1], &[0]), &[(1, 0)]))
        );
        // A leader without standbys (or of another version) leaves none.
        member.on_assignment(&out["b"].partitions, None);
        assert!(member.standby_tasks().is_empty());
    }

    fn arb_case() -> impl Strategy<Value = (i32, Vec<(String, TaskHistory)>)> {
        (0i32..24, 1usize..7).prop_flat_map(|(tasks, n)| {
            let task = 0..tasks.max(1) + 2;
            let histories = proptest::collection::vec(
                (
                    proptest::collection::btree_set(task.clone(), 0..6),
                    proptest::collection::btree_set(task, 0..6),
                ),
                n,
            );
            (Just(tasks), histories).prop_map(|(tasks, histories)| {
                let members = histories
                    .into_iter()
                    .enumerate()
                    .map(|(i, (owned, with_state))| {
                        (
                            format!("m{i}"),
                            TaskHistory {
                                owned,
                                with_state,
                                lags: BTreeMap::new(),
                            },
                        )
                    })
                    .collect();
                (tasks, members)
            })
        })
    }

    /// `arb_case` with a lag reported for every task with state, some within the bound.
    fn arb_lagged_case() -> impl Strategy<Value = (i32, Vec<(String, TaskHistory)>)> {
        arb_case()
            .prop_flat_map(|(tasks, members)| {
                let n = members.len();
                let lags = proptest::collection::vec(proptest::collection::vec(0i64..400, 6), n);
                (Just(tasks), Just(members), lags)
            })
            .prop_map(|(tasks, mut members, lags)| {
                for ((_, history), lags) in members.iter_mut().zip(lags) {
                    history.lags = history.with_state.iter().copied().zip(lags).collect();
                }
                (tasks, members)
            })
    }

    fn check_complete_and_balanced(
        tasks: i32,
        members: &[(String, TaskHistory)],
        out: &BTreeMap<String, BTreeSet<i32>>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(out.len(), members.len());
        let mut seen = BTreeSet::new();
        for set in out.values() {
            for task in set {
                prop_assert!(seen.insert(*task), "task {} assigned twice", task);
            }
        }
        prop_assert_eq!(seen, (0..tasks).collect::<BTreeSet<_>>());
        let sizes: Vec<usize> = out.values().map(BTreeSet::len).collect();
        let (min, max) = (
            sizes.iter().min().copied().unwrap_or(0),
            sizes.iter().max().copied().unwrap_or(0),
        );
        prop_assert!(max - min <= 1, "unbalanced {:?}", sizes);
        Ok(())
    }

    proptest! {
        #[test]
        fn every_task_once_and_balanced((tasks, members) in arb_case()) {
            let out = assign_tasks(tasks, &members);
            check_complete_and_balanced(tasks, &members, &out)?;
        }

        /// Standbys never sit with their active task, a member holds at most one copy of a
        /// task, every task gets min(replicas, members - 1), and the counts stay balanced:
        /// within the share (rounded up) plus one, and within one of each other without
        /// local state.
        #[test]
        fn standbys_are_placed_apart_and_balanced(
            (tasks, members) in arb_case(),
            replicas in 0u32..4,
            with_history in any::<bool>(),
        ) {
            let members: Vec<(String, TaskHistory)> = if with_history {
                members
            } else {
                members.into_iter().map(|(id, _)| (id, TaskHistory::default())).collect()
            };
            let active = assign_tasks(tasks, &members);
            let out = assign_standbys(tasks, &members, &active, replicas);
            prop_assert_eq!(out.len(), members.len());
            let per_task = (replicas as usize).min(members.len() - 1);
            for task in 0..tasks {
                let holders: Vec<&String> =
                    out.iter().filter(|(_, s)| s.contains(&task)).map(|(id, _)| id).collect();
                prop_assert_eq!(holders.len(), per_task, "task {}: {:?}", task, holders);
                for id in holders {
                    prop_assert!(
                        !active[id].contains(&task),
                        "{} runs task {} and its standby",
                        id,
                        task
                    );
                }
            }
            for standbys in out.values() {
                prop_assert!(standbys.iter().all(|t| (0..tasks).contains(t)));
            }
            let sizes: Vec<usize> = out.values().map(BTreeSet::len).collect();
            let share = (usize::try_from(tasks).unwrap() * per_task).div_ceil(members.len());
            let (min, max) = (
                sizes.iter().min().copied().unwrap_or(0),
                sizes.iter().max().copied().unwrap_or(0),
            );
            prop_assert!(max <= share + 1, "share {} but {:?}", share, sizes);
            if !with_history {
                prop_assert!(max - min <= 1, "unbalanced {:?}", sizes);
            }
        }

        /// With warm-ups: every task is active exactly once; undoing the holding back gives
        /// the balanced layout back (the only imbalance); at most `max_warmup_replicas` tasks
        /// are held, each on a caught-up member away from a place that is not; warm-ups and
        /// standbys never sit with their active task nor with each other.
        #[test]
        fn warmups_keep_every_guarantee(
            (tasks, members) in arb_lagged_case(),
            replicas in 0u32..3,
            max_warmup_replicas in 0u32..4,
            acceptable_recovery_lag in 0i64..300,
        ) {
            let configs = AssignmentConfigs {
                num_standby_replicas: replicas,
                acceptable_recovery_lag,
                max_warmup_replicas,
                probing_rebalance_interval: Duration::from_secs(1),
                stateful: true,
            };
            let out = place(tasks, &members, &configs);
            let mut seen = BTreeSet::new();
            for set in out.active.values() {
                for task in set {
                    prop_assert!(seen.insert(*task), "task {} assigned twice", task);
                }
            }
            prop_assert_eq!(seen, (0..tasks).collect::<BTreeSet<_>>());
            prop_assert!(out.held_back.len() <= max_warmup_replicas as usize);
            let history = |id: &str| &members.iter().find(|(m, _)| m == id).unwrap().1;
            let caught_up = |id: &str, task: i32| {
                history(id).lag(task).is_some_and(|lag| lag <= acceptable_recovery_lag)
            };
            let mut undone = out.active.clone();
            for (task, target) in &out.held_back {
                let keeper = out.active.iter().find(|(_, s)| s.contains(task)).unwrap().0;
                prop_assert!(caught_up(keeper, *task), "{} kept {} not caught up", keeper, task);
                prop_assert!(!caught_up(target, *task), "{} is caught up on {}", target, task);
                for set in undone.values_mut() {
                    set.remove(task);
                }
                undone.get_mut(target).unwrap().insert(*task);
            }
            let balanced = assign_tasks(tasks, &members);
            prop_assert_eq!(&undone, &balanced);
            // Until the bound is reached, every task that can be held back is.
            if out.held_back.len() < max_warmup_replicas as usize {
                for (target, set) in &balanced {
                    for task in set {
                        let anyone = members.iter().any(|(id, _)| caught_up(id, *task));
                        if anyone && !caught_up(target, *task) {
                            prop_assert!(out.held_back.contains_key(task), "{} not held: {:?}", task, out);
                        }
                    }
                }
            }
            let per_task = (replicas as usize).min(members.len() - 1);
            for (id, warmups) in &out.warmups {
                prop_assert!(warmups.is_disjoint(&out.active[id]), "{}: {:?}", id, out);
                prop_assert!(warmups.is_disjoint(&out.standbys[id]), "{}: {:?}", id, out);
                prop_assert!(out.standbys[id].is_disjoint(&out.active[id]), "{}: {:?}", id, out);
                for task in warmups {
                    prop_assert_eq!(out.held_back.get(task), Some(id));
                }
            }
            for task in 0..tasks {
                let holders = out.standbys.values().filter(|s| s.contains(&task)).count();
                prop_assert_eq!(holders, per_task, "task {}", task);
            }
            let without = place(tasks, &members, &AssignmentConfigs { stateful: false, ..configs });
            prop_assert!(without.held_back.is_empty());
            prop_assert_eq!(without.active, assign_tasks(tasks, &members));
        }

        /// The same members again, each reporting what it got: nothing moves.
        #[test]
        fn sticky_when_membership_is_unchanged((tasks, members) in arb_case()) {
            let first = assign_tasks(tasks, &members);
            let again: Vec<(String, TaskHistory)> = members
                .iter()
                .map(|(id, h)| {
                    (id.clone(), TaskHistory { owned: first[id].clone(), with_state: h.with_state.clone(), lags: BTreeMap::new() })
                })
                .collect();
            let second = assign_tasks(tasks, &again);
            prop_assert_eq!(&second, &first);
        }

        /// A member joins a stable group: the old members keep all they can while balanced.
        #[test]
        fn a_new_member_takes_only_what_balance_needs(tasks in 0i32..24, n in 1usize..6) {
            let members: Vec<(String, TaskHistory)> =
                (0..n).map(|i| (format!("m{i}"), TaskHistory::default())).collect();
            let stable = assign_tasks(tasks, &members);
            let mut grown: Vec<(String, TaskHistory)> = members
                .iter()
                .map(|(id, _)| (id.clone(), TaskHistory { owned: stable[id].clone(), ..TaskHistory::default() }))
                .collect();
            grown.push(("new".to_string(), TaskHistory::default()));
            let out = assign_tasks(tasks, &grown);
            check_complete_and_balanced(tasks, &grown, &out)?;
            let floor = usize::try_from(tasks).unwrap_or(0) / grown.len();
            for (id, h) in &grown[..n] {
                let kept = out[id].intersection(&h.owned).count();
                prop_assert!(kept >= h.owned.len().min(floor), "{} kept {} of {:?}", id, kept, h.owned);
            }
        }
    }
}
