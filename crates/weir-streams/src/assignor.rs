//! The task assignor of [`KafkaStreams`](crate::KafkaStreams): a
//! [`PartitionAssignor`] that keeps each task on the instance that ran it, or else holds its
//! state locally, so a rebalance moves as little state as balance allows.
//!
//! A task is a partition number: task N reads partition N of every subscribed topic (the
//! co-partitioned source topics and the repartition topics; global tables' topics are read
//! outside the group and are not subscribed). Each instance is one member of the group.
//!
//! Every member's subscription carries, in its user data, the tasks it was assigned in the
//! last generation it joined and the tasks it has a local state directory for. The leader
//! places each task, in task order:
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
//! Then, with `num.standby.replicas` above 0, each task gets up to that many standby
//! replicas on distinct members other than its active owner, one replica per pass over the
//! tasks (dealt by owner: every owner's first task, then every owner's second...): first a
//! member that has local state for it (while it holds fewer than its share of the standbys,
//! rounded up), else the member with the fewest standbys so far (ties go round the members).
//! Without local state the standby counts differ by at most one.
//! A group of fewer than `num.standby.replicas + 1` members gets fewer standbys per task,
//! one on every other member. Every member's standby tasks travel in its assignment's user
//! data (`StandbyAssignment`); a member reports its standbys as tasks with local state in
//! its next subscription, so a task whose owner leaves goes to a member that kept it warm.
//! Only the leader's `num.standby.replicas` counts: every instance of an application should
//! use the same value.
//!
//! It is eager: every instance closes its tasks before a rebalance (the runtime keeps a task
//! given back to it in the same rebalance, see `sync_tasks`).
//!
//! The user data is versioned so a later version can append fields: byte 0 the version (1),
//! then the owned tasks and the tasks with local state, each an `i32` count and that many
//! `i32` task ids, big-endian. A member whose data does not decode (a newer layout it cannot
//! read the prefix of, or none) counts as a member with no tasks and no state.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use weir_client::consumer::{GroupMember, MemberAssignment, PartitionAssignor, TopicPartition};

/// The protocol name in JoinGroup: every instance of an application must propose it.
pub(crate) const NAME: &str = "weir-streams";

/// The user data layout this version writes.
const VERSION: u8 = 1;

/// What one instance tells the leader about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskHistory {
    /// The tasks it was assigned in the last generation it joined.
    pub(crate) owned: BTreeSet<i32>,
    /// The tasks it has a local state directory for.
    pub(crate) with_state: BTreeSet<i32>,
}

impl TaskHistory {
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u8(VERSION);
        for set in [&self.owned, &self.with_state] {
            buf.put_i32(i32::try_from(set.len()).unwrap_or(i32::MAX));
            for task in set {
                buf.put_i32(*task);
            }
        }
        buf.freeze()
    }

    /// `None` when `bytes` is not a history this version can read.
    pub(crate) fn decode(mut bytes: &[u8]) -> Option<Self> {
        if bytes.remaining() < 1 || bytes.get_u8() < VERSION {
            return None;
        }
        let mut read_set = || -> Option<BTreeSet<i32>> {
            if bytes.remaining() < 4 {
                return None;
            }
            let len = usize::try_from(bytes.get_i32()).ok()?;
            if bytes.remaining() / 4 < len {
                return None;
            }
            Some((0..len).map(|_| bytes.get_i32()).collect())
        };
        let owned = read_set()?;
        let with_state = read_set()?;
        // Bytes after these belong to later versions.
        Some(Self { owned, with_state })
    }
}

/// The standby tasks the leader gives one member, in its assignment's user data: byte 0
/// the version (1), then an `i32` count and that many `i32` task ids, big-endian. Versioned
/// as [`TaskHistory`] is, so a later version can append fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StandbyAssignment {
    pub(crate) standbys: BTreeSet<i32>,
}

impl StandbyAssignment {
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u8(VERSION);
        buf.put_i32(i32::try_from(self.standbys.len()).unwrap_or(i32::MAX));
        for task in &self.standbys {
            buf.put_i32(*task);
        }
        buf.freeze()
    }

    /// `None` when `bytes` is not an assignment this version can read.
    pub(crate) fn decode(mut bytes: &[u8]) -> Option<Self> {
        if bytes.remaining() < 5 || bytes.get_u8() < VERSION {
            return None;
        }
        let len = usize::try_from(bytes.get_i32()).ok()?;
        if bytes.remaining() / 4 < len {
            return None;
        }
        let standbys = (0..len).map(|_| bytes.get_i32()).collect();
        Some(Self { standbys })
    }
}

/// The runtime's [`PartitionAssignor`]. It learns the instance's tasks from its own
/// assignments and the tasks with local state from the runtime, which tells it as it
/// creates and deletes task directories.
#[derive(Debug, Default)]
pub(crate) struct StreamsAssignor {
    history: Mutex<TaskHistory>,
    /// `num.standby.replicas`, used when this instance leads the group.
    num_standby_replicas: u32,
    /// The standby tasks of this instance's last assignment, for the runtime to follow.
    standbys: Mutex<BTreeSet<i32>>,
}

impl StreamsAssignor {
    /// An assignor that, as leader, places `num_standby_replicas` standbys per task.
    pub(crate) fn new(num_standby_replicas: u32) -> Self {
        Self {
            num_standby_replicas,
            ..Self::default()
        }
    }

    /// The standby tasks the last assignment gave this instance.
    pub(crate) fn standby_tasks(&self) -> BTreeSet<i32> {
        self.standbys.lock().clone()
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
        history
            .with_state
            .extend(self.standbys.lock().iter().copied());
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
        let by_member = assign_tasks(tasks, &instances);
        let standbys = assign_standbys(tasks, &instances, &by_member, self.num_standby_replicas);
        Ok(members
            .iter()
            .map(|m| {
                let tasks = by_member.get(&m.member_id).cloned().unwrap_or_default();
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
                    standbys: standbys.get(&m.member_id).cloned().unwrap_or_default(),
                };
                let assignment = MemberAssignment::new(partitions).with_user_data(standby.encode());
                (m.member_id.clone(), assignment)
            })
            .collect())
    }

    fn on_assignment(&self, partitions: &[TopicPartition], user_data: Option<&Bytes>) {
        // What the next join reports as owned.
        self.history.lock().owned = partitions.iter().map(|tp| tp.partition).collect();
        // A leader of another version may send none this version reads: no standbys then.
        let standbys = user_data
            .and_then(|data| StandbyAssignment::decode(data))
            .unwrap_or_default()
            .standbys;
        *self.standbys.lock() = standbys;
    }
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
        }
    }

    fn set(tasks: &[i32]) -> BTreeSet<i32> {
        tasks.iter().copied().collect()
    }

    #[test]
    fn history_round_trips_and_bad_bytes_are_none() {
        let h = history(&[0, 3], &[1]);
        assert_eq!(TaskHistory::decode(&h.encode()), Some(h.clone()));
        // A later version that appends fields still gives its prefix.
        let mut later = BytesMut::from(&h.encode()[..]);
        later[0] = 2;
        later.put_slice(b"more");
        assert_eq!(TaskHistory::decode(&later), Some(h));
        for bad in [&[][..], &[0][..], &[1, 0, 0][..], &[1, 0, 0, 0, 9, 0][..]] {
            assert_eq!(TaskHistory::decode(bad), None, "{bad:?}");
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
        assert_eq!(TaskHistory::decode(&data), Some(history(&[1], &[5, 6])));
    }

    #[test]
    fn standby_assignment_round_trips_and_bad_bytes_are_none() {
        let a = StandbyAssignment {
            standbys: set(&[2, 5]),
        };
        assert_eq!(StandbyAssignment::decode(&a.encode()), Some(a.clone()));
        let mut later = BytesMut::from(&a.encode()[..]);
        later[0] = 2;
        later.put_slice(b"more");
        assert_eq!(StandbyAssignment::decode(&later), Some(a));
        for bad in [
            &[][..],
            &[0, 0, 0, 0, 0][..],
            &[1, 0, 0][..],
            &[1, 0, 0, 0, 2, 0][..],
        ] {
            assert_eq!(StandbyAssignment::decode(bad), None, "{bad:?}");
        }
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
        let leader = StreamsAssignor::new(1);
        let topics: BTreeMap<String, i32> = [("in".to_string(), 2)].into();
        let a = GroupMember::new("a", vec!["in".into()]);
        let b = GroupMember::new("b", vec!["in".into()]);
        let out = leader.assign(&topics, &[a, b]).unwrap();
        let member = StreamsAssignor::new(1);
        member.on_assignment(&out["b"].partitions, out["b"].user_data.as_ref());
        assert_eq!(out["b"].partitions, [TopicPartition::new("in", 1)]);
        assert_eq!(member.standby_tasks(), set(&[0]));
        let data = member.subscription_user_data(&[]).unwrap();
        assert_eq!(TaskHistory::decode(&data), Some(history(&[1], &[0])));
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
                        (format!("m{i}"), TaskHistory { owned, with_state })
                    })
                    .collect();
                (tasks, members)
            })
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

        /// The same members again, each reporting what it got: nothing moves.
        #[test]
        fn sticky_when_membership_is_unchanged((tasks, members) in arb_case()) {
            let first = assign_tasks(tasks, &members);
            let again: Vec<(String, TaskHistory)> = members
                .iter()
                .map(|(id, h)| {
                    (id.clone(), TaskHistory { owned: first[id].clone(), with_state: h.with_state.clone() })
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
                .map(|(id, _)| (id.clone(), TaskHistory { owned: stable[id].clone(), with_state: BTreeSet::new() }))
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
