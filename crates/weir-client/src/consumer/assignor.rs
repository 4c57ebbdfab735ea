//! Partition assignors: the leader of a group runs one to split the partitions of the topics
//! the members subscribe to. The names and semantics are the Java client's, so a group can mix
//! Weir and other clients as long as they agree on the assignor's name.
//!
//! - `range`: per topic, the subscribed members in order each take a contiguous range; the
//!   first `partitions % members` take one extra.
//! - `roundrobin`: every partition of every topic, in (topic, partition) order, dealt to the
//!   members in order, skipping members not subscribed to the partition's topic.
//! - `cooperative-sticky`: balanced, keeps as many owned partitions in place as balance
//!   allows, and never hands a partition to a new owner in the same rebalance that takes it
//!   from the old one: the old owner revokes it first and rejoins, and the follow-up rebalance
//!   assigns it.
//!
//! Member order (`range`, `roundrobin`) is Kafka's: static members first by instance id, then
//! dynamic members by member id.
//!
//! An application's own assignor implements [`PartitionAssignor`]; the consumer's module docs
//! say how it is configured and how its data flows.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;

use super::protocol::{Assignment, Subscription, TopicPartition};
use crate::{Error, Result};

/// Which assignor the consumer proposes in JoinGroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AssignmentStrategy {
    /// Kafka's `range` assignor (eager rebalancing), the Java client's first default.
    #[default]
    Range,
    /// Kafka's `roundrobin` assignor (eager rebalancing).
    RoundRobin,
    /// Kafka's `cooperative-sticky` assignor (incremental cooperative rebalancing).
    CooperativeSticky,
}

/// How a rebalance treats partitions the members already own (Kafka's `RebalanceProtocol`).
/// An assignor says which one it follows because the consumer, not the assignor, gives
/// partitions up around a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebalanceProtocol {
    /// Every member gives up everything before joining.
    #[default]
    Eager,
    /// Members keep what they own and give up only what the new assignment takes away.
    Cooperative,
}

impl AssignmentStrategy {
    /// The protocol name in JoinGroup, as the Java client and librdkafka spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::RoundRobin => "roundrobin",
            Self::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The strategy with this protocol name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Range, Self::RoundRobin, Self::CooperativeSticky]
            .into_iter()
            .find(|s| s.name() == name)
    }

    pub(crate) fn rebalance_protocol(self) -> RebalanceProtocol {
        match self {
            Self::Range | Self::RoundRobin => RebalanceProtocol::Eager,
            Self::CooperativeSticky => RebalanceProtocol::Cooperative,
        }
    }

    /// Splits the partitions among `members`. `partition_counts` holds every topic any member
    /// subscribes to that exists; topics missing from it are skipped. Every member gets an
    /// entry, possibly empty.
    pub(crate) fn assign(
        self,
        partition_counts: &BTreeMap<String, i32>,
        members: &[Member],
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut assignment = match self {
            Self::Range => range(partition_counts, members),
            Self::RoundRobin => round_robin(partition_counts, members),
            Self::CooperativeSticky => cooperative_sticky(partition_counts, members),
        };
        for member in members {
            assignment.entry(member.member_id.clone()).or_default();
        }
        for partitions in assignment.values_mut() {
            partitions.sort();
        }
        assignment
    }
}

/// One member of the group as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) subscription: Subscription,
}

/// An assignor of the application's own, run by whichever member the coordinator makes the
/// group's leader, so every member of a group must configure one with the same
/// [`name`](PartitionAssignor::name). See the [consumer's module docs](crate::consumer) for
/// how it is configured and how its data flows.
///
/// It is shared between the consumer and the task that runs rebalances, hence `Send + Sync`
/// and `&self` methods: an assignor that learns from [`on_assignment`] keeps that state
/// behind a lock of its own.
///
/// [`on_assignment`]: PartitionAssignor::on_assignment
pub trait PartitionAssignor: Send + Sync + Debug {
    /// The protocol name proposed in JoinGroup; the coordinator only groups members that
    /// share one.
    fn name(&self) -> &str;

    /// Whether members give up all their partitions before a rebalance (eager, the default)
    /// or only those the new assignment takes away (cooperative). A cooperative assignor must
    /// not hand a partition to one member while another still owns it: the owner revokes it
    /// first and the follow-up rebalance assigns it.
    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    /// The user data this member puts in its subscription, asked at every JoinGroup so it
    /// can say what the member holds now; `topics` is the member's subscription. The leader
    /// reads it in [`GroupMember::user_data`].
    fn subscription_user_data(&self, topics: &[String]) -> Option<Bytes> {
        let _ = topics;
        None
    }

    /// Splits the partitions of `partitions_per_topic` (every subscribed topic that exists,
    /// with its partition count) among `members`; keyed by member id. Members left out get
    /// nothing. Runs on the leader only.
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[GroupMember],
    ) -> Result<BTreeMap<String, MemberAssignment>>;

    /// Tells this member what the leader assigned it, with the leader's user data for it,
    /// before the consumer takes the partitions and calls its rebalance listener. Runs on
    /// every member, leader included, once per generation joined.
    fn on_assignment(&self, partitions: &[TopicPartition], user_data: Option<&Bytes>) {
        let _ = (partitions, user_data);
    }
}

/// One member of the group as a [`PartitionAssignor`] sees it: its identity and the
/// subscription it sent in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMember {
    /// The member id the coordinator gave it; the key of the assignment.
    pub member_id: String,
    /// `group.instance.id` of a static member, stable across restarts.
    pub group_instance_id: Option<String>,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// The partitions it still owns (only cooperative members report them).
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation it owned them in; -1 when unknown.
    pub generation_id: i32,
    /// What its [`PartitionAssignor::subscription_user_data`] returned.
    pub user_data: Option<Bytes>,
}

impl GroupMember {
    /// A member subscribed to `topics` that owns nothing and sent no user data; the other
    /// fields are public to set (tests of an assignor build members this way).
    pub fn new(member_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            member_id: member_id.into(),
            group_instance_id: None,
            topics,
            owned_partitions: Vec::new(),
            generation_id: -1,
            user_data: None,
        }
    }

    fn from_member(member: &Member) -> Self {
        let sub = &member.subscription;
        Self {
            member_id: member.member_id.clone(),
            group_instance_id: member.group_instance_id.clone(),
            topics: sub.topics.clone(),
            owned_partitions: sub.owned_partitions.clone(),
            generation_id: sub.generation_id,
            user_data: sub.user_data.clone(),
        }
    }
}

/// What a [`PartitionAssignor`] gives one member: partitions and user data the member's
/// [`PartitionAssignor::on_assignment`] receives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MemberAssignment {
    /// The partitions the member is to read.
    pub partitions: Vec<TopicPartition>,
    /// Data for the member's assignor.
    pub user_data: Option<Bytes>,
}

impl MemberAssignment {
    /// `partitions` without user data.
    pub fn new(partitions: Vec<TopicPartition>) -> Self {
        Self {
            partitions,
            user_data: None,
        }
    }

    /// The same assignment carrying `user_data`.
    #[must_use]
    pub fn with_user_data(mut self, user_data: Bytes) -> Self {
        self.user_data = Some(user_data);
        self
    }
}

/// The assignor a consumer proposes: a built-in strategy or the application's own.
#[derive(Debug, Clone)]
pub(crate) enum Assignor {
    Builtin(AssignmentStrategy),
    Custom(Arc<dyn PartitionAssignor>),
}

impl Assignor {
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Builtin(strategy) => strategy.name(),
            Self::Custom(assignor) => assignor.name(),
        }
    }

    pub(crate) fn rebalance_protocol(&self) -> RebalanceProtocol {
        match self {
            Self::Builtin(strategy) => strategy.rebalance_protocol(),
            Self::Custom(assignor) => assignor.protocol(),
        }
    }

    pub(crate) fn subscription_user_data(&self, topics: &[String]) -> Option<Bytes> {
        match self {
            Self::Builtin(_) => None,
            Self::Custom(assignor) => assignor.subscription_user_data(topics),
        }
    }

    /// The assignor the group agreed on: a custom assignor is the only protocol proposed,
    /// while with built-ins the coordinator's choice wins when this client knows it.
    pub(crate) fn chosen(&self, protocol_name: Option<&str>) -> Self {
        match self {
            Self::Builtin(strategy) => Self::Builtin(
                protocol_name
                    .and_then(AssignmentStrategy::from_name)
                    .unwrap_or(*strategy),
            ),
            Self::Custom(_) => self.clone(),
        }
    }

    /// Runs the assignor; a custom one's answer is checked against the group first. Every
    /// member gets an entry, possibly empty.
    pub(crate) fn assign(
        &self,
        partition_counts: &BTreeMap<String, i32>,
        members: &[Member],
    ) -> Result<BTreeMap<String, Assignment>> {
        match self {
            Self::Builtin(strategy) => Ok(strategy
                .assign(partition_counts, members)
                .into_iter()
                .map(|(member_id, partitions)| {
                    (
                        member_id,
                        Assignment {
                            partitions,
                            user_data: None,
                        },
                    )
                })
                .collect()),
            Self::Custom(assignor) => {
                let group: Vec<GroupMember> =
                    members.iter().map(GroupMember::from_member).collect();
                let assigned = assignor.assign(partition_counts, &group)?;
                check_custom(assignor.as_ref(), partition_counts, members, &assigned)?;
                let mut out: BTreeMap<String, Assignment> = assigned
                    .into_iter()
                    .map(|(member_id, a)| {
                        let mut partitions = a.partitions;
                        partitions.sort();
                        (
                            member_id,
                            Assignment {
                                partitions,
                                user_data: a.user_data,
                            },
                        )
                    })
                    .collect();
                for member in members {
                    out.entry(member.member_id.clone()).or_default();
                }
                Ok(out)
            }
        }
    }

    /// Hands this member's assignment to a custom assignor.
    pub(crate) fn on_assignment(&self, assignment: &Assignment) {
        if let Self::Custom(assignor) = self {
            assignor.on_assignment(&assignment.partitions, assignment.user_data.as_ref());
        }
    }
}

/// Refuses an assignment that names a member not in the group, a partition that does not
/// exist or whose topic its member does not subscribe to, a partition given twice, or (for a
/// cooperative assignor) a partition given away while another member still owns it.
fn check_custom(
    assignor: &dyn PartitionAssignor,
    partition_counts: &BTreeMap<String, i32>,
    members: &[Member],
    assigned: &BTreeMap<String, MemberAssignment>,
) -> Result<()> {
    let invalid = |reason: String| Error::Assignor {
        assignor: assignor.name().to_string(),
        reason,
    };
    let owners = (assignor.protocol() == RebalanceProtocol::Cooperative)
        .then(|| valid_owners(partition_counts, members));
    let mut given: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
    for (member_id, assignment) in assigned {
        let Some(member) = members.iter().find(|m| &m.member_id == member_id) else {
            return Err(invalid(format!(
                "assigned partitions to {member_id:?}, which is not a member of the group"
            )));
        };
        for tp in &assignment.partitions {
            if !subscribes(member, &tp.topic) {
                return Err(invalid(format!(
                    "assigned {tp} to {member_id:?}, which does not subscribe to {:?}",
                    tp.topic
                )));
            }
            let exists = partition_counts
                .get(&tp.topic)
                .is_some_and(|&n| (0..n).contains(&tp.partition));
            if !exists {
                return Err(invalid(format!(
                    "assigned {tp} to {member_id:?}, but that partition does not exist"
                )));
            }
            if let Some(other) = given.insert(tp, member_id) {
                return Err(invalid(format!(
                    "assigned {tp} to both {other:?} and {member_id:?}"
                )));
            }
            if let Some(owner) = owners.as_ref().and_then(|o| o.get(tp))
                && owner != member_id
            {
                return Err(invalid(format!(
                    "assigned {tp} to {member_id:?} while {owner:?} still owns it \
                     (a cooperative assignor must let the owner revoke it first)"
                )));
            }
        }
    }
    Ok(())
}

fn member_order(a: &Member, b: &Member) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

fn sorted_members(members: &[Member]) -> Vec<&Member> {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| member_order(a, b));
    sorted
}

fn subscribes(member: &Member, topic: &str) -> bool {
    member.subscription.topics.iter().any(|t| t == topic)
}

fn range(
    partition_counts: &BTreeMap<String, i32>,
    members: &[Member],
) -> BTreeMap<String, Vec<TopicPartition>> {
    let sorted = sorted_members(members);
    let mut assignment: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    for (topic, &count) in partition_counts {
        let subscribed: Vec<&&Member> = sorted.iter().filter(|m| subscribes(m, topic)).collect();
        if subscribed.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribed.len() as i32;
        let per_member = count / n;
        let extra = count % n;
        for (i, member) in (0i32..).zip(subscribed) {
            let start = i * per_member + i.min(extra);
            let len = per_member + i32::from(i < extra);
            assignment
                .entry(member.member_id.clone())
                .or_default()
                .extend((start..start + len).map(|p| TopicPartition::new(topic.clone(), p)));
        }
    }
    assignment
}

fn round_robin(
    partition_counts: &BTreeMap<String, i32>,
    members: &[Member],
) -> BTreeMap<String, Vec<TopicPartition>> {
    let sorted = sorted_members(members);
    let mut assignment: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    if sorted.is_empty() {
        return assignment;
    }
    let mut next = 0usize;
    for (topic, &count) in partition_counts {
        if !sorted.iter().any(|m| subscribes(m, topic)) {
            continue;
        }
        for partition in 0..count.max(0) {
            // Some member subscribes, so this finds one within one lap.
            while !sorted
                .get(next % sorted.len())
                .is_some_and(|m| subscribes(m, topic))
            {
                next += 1;
            }
            if let Some(member) = sorted.get(next % sorted.len()) {
                assignment
                    .entry(member.member_id.clone())
                    .or_default()
                    .push(TopicPartition::new(topic.clone(), partition));
            }
            next += 1;
        }
    }
    assignment
}

/// The sticky assignment, then the cooperative rule applied to it.
fn cooperative_sticky(
    partition_counts: &BTreeMap<String, i32>,
    members: &[Member],
) -> BTreeMap<String, Vec<TopicPartition>> {
    let owners = valid_owners(partition_counts, members);
    let target = sticky(partition_counts, members, &owners);
    // A partition that changes hands is left out this round: its owner, which no longer finds
    // it in its assignment, revokes it and rejoins, and the next rebalance assigns it freely.
    target
        .into_iter()
        .map(|(member_id, partitions)| {
            let kept = partitions
                .into_iter()
                .filter(|tp| owners.get(tp).is_none_or(|owner| *owner == member_id))
                .collect();
            (member_id, kept)
        })
        .collect()
}

/// Who owns each partition according to the members' subscriptions. A claim counts only if
/// the partition exists and the member still subscribes to its topic; when two members claim
/// one partition, the newer generation wins and a tie leaves it unowned.
fn valid_owners(
    partition_counts: &BTreeMap<String, i32>,
    members: &[Member],
) -> BTreeMap<TopicPartition, String> {
    let mut claims: BTreeMap<TopicPartition, (i32, Option<String>)> = BTreeMap::new();
    for member in members {
        let sub = &member.subscription;
        for tp in &sub.owned_partitions {
            let exists = partition_counts
                .get(&tp.topic)
                .is_some_and(|&n| (0..n).contains(&tp.partition));
            if !exists || !subscribes(member, &tp.topic) {
                continue;
            }
            match claims.get_mut(tp) {
                None => {
                    claims.insert(
                        tp.clone(),
                        (sub.generation_id, Some(member.member_id.clone())),
                    );
                }
                Some((generation, owner)) => match sub.generation_id.cmp(generation) {
                    Ordering::Greater => {
                        *generation = sub.generation_id;
                        *owner = Some(member.member_id.clone());
                    }
                    Ordering::Equal => *owner = None,
                    Ordering::Less => {}
                },
            }
        }
    }
    claims
        .into_iter()
        .filter_map(|(tp, (_, owner))| owner.map(|o| (tp, o)))
        .collect()
}

/// A balanced assignment that moves as few owned partitions as balance allows. Balanced means
/// no partition could move to another member subscribed to its topic that holds at least two
/// fewer partitions (with identical subscriptions: counts differ by at most one).
fn sticky(
    partition_counts: &BTreeMap<String, i32>,
    members: &[Member],
    owners: &BTreeMap<TopicPartition, String>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let sorted = sorted_members(members);
    let mut held: BTreeMap<&str, BTreeSet<TopicPartition>> = sorted
        .iter()
        .map(|m| (m.member_id.as_str(), BTreeSet::new()))
        .collect();
    for (tp, owner) in owners {
        if let Some(set) = held.get_mut(owner.as_str()) {
            set.insert(tp.clone());
        }
    }
    let eligible = |tp: &TopicPartition| -> Vec<&str> {
        sorted
            .iter()
            .filter(|m| subscribes(m, &tp.topic))
            .map(|m| m.member_id.as_str())
            .collect()
    };

    // Unowned partitions go to the least loaded eligible member.
    for (topic, &count) in partition_counts {
        for partition in 0..count.max(0) {
            let tp = TopicPartition::new(topic.clone(), partition);
            if owners.contains_key(&tp) {
                continue;
            }
            let least = eligible(&tp)
                .into_iter()
                .min_by_key(|m| held.get(m).map_or(0, BTreeSet::len));
            if let Some(member) = least
                && let Some(set) = held.get_mut(member)
            {
                set.insert(tp);
            }
        }
    }

    // Then move partitions from the most to the least loaded member that can take them, a
    // partition the giver did not own before if it has one. Each move lowers the sum of
    // squared counts, so this ends.
    loop {
        let mut by_load: Vec<&str> = held.keys().copied().collect();
        by_load.sort_by_key(|m| std::cmp::Reverse(held.get(m).map_or(0, BTreeSet::len)));
        let mut moved = None;
        'givers: for giver in &by_load {
            let Some(giver_set) = held.get(giver) else {
                continue;
            };
            let giver_load = giver_set.len();
            let mut candidates: Vec<&TopicPartition> = giver_set.iter().collect();
            // Partitions the giver did not own before go first.
            candidates.sort_by_key(|tp| owners.get(*tp).is_some_and(|o| o == giver));
            for tp in candidates {
                let taker = eligible(tp)
                    .into_iter()
                    .filter(|m| m != giver)
                    .min_by_key(|m| held.get(m).map_or(0, BTreeSet::len));
                if let Some(taker) = taker
                    && held.get(taker).map_or(0, BTreeSet::len) + 1 < giver_load
                {
                    moved = Some((*giver, taker, tp.clone()));
                    break 'givers;
                }
            }
        }
        let Some((giver, taker, tp)) = moved else {
            break;
        };
        if let Some(set) = held.get_mut(giver) {
            set.remove(&tp);
        }
        if let Some(set) = held.get_mut(taker) {
            set.insert(tp);
        }
    }

    held.into_iter()
        .map(|(member, set)| (member.to_string(), set.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(id: &str, topics: &[&str]) -> Member {
        Member {
            member_id: id.to_string(),
            group_instance_id: None,
            subscription: Subscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            },
        }
    }

    fn owning(mut m: Member, owned: &[TopicPartition], generation_id: i32) -> Member {
        m.subscription.owned_partitions = owned.to_vec();
        m.subscription.generation_id = generation_id;
        m
    }

    fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn tps(topic: &str, partitions: &[i32]) -> Vec<TopicPartition> {
        partitions
            .iter()
            .map(|p| TopicPartition::new(topic, *p))
            .collect()
    }

    /// Gives everything to the member whose user data is `b"take"`, and each member its id
    /// back as user data; records what `on_assignment` hears.
    #[derive(Debug, Default)]
    struct Taker {
        heard: std::sync::Mutex<Vec<(Vec<TopicPartition>, Option<Bytes>)>>,
    }

    impl PartitionAssignor for Taker {
        fn name(&self) -> &str {
            "taker"
        }

        fn subscription_user_data(&self, topics: &[String]) -> Option<Bytes> {
            Some(Bytes::from(topics.join(",")))
        }

        fn assign(
            &self,
            partitions_per_topic: &BTreeMap<String, i32>,
            members: &[GroupMember],
        ) -> Result<BTreeMap<String, MemberAssignment>> {
            let Some(taker) = members
                .iter()
                .find(|m| m.user_data.as_deref() == Some(&b"take"[..]))
            else {
                return Err(Error::Assignor {
                    assignor: self.name().to_string(),
                    reason: "nobody takes".to_string(),
                });
            };
            let all = partitions_per_topic
                .iter()
                .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
                .collect();
            Ok(BTreeMap::from([(
                taker.member_id.clone(),
                MemberAssignment::new(all).with_user_data(Bytes::from(taker.member_id.clone())),
            )]))
        }

        fn on_assignment(&self, partitions: &[TopicPartition], user_data: Option<&Bytes>) {
            if let Ok(mut heard) = self.heard.lock() {
                heard.push((partitions.to_vec(), user_data.cloned()));
            }
        }
    }

    /// Returns a fixed answer, to feed the checks.
    #[derive(Debug)]
    struct Fixed(Vec<(&'static str, Vec<TopicPartition>)>, RebalanceProtocol);

    impl PartitionAssignor for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }

        fn protocol(&self) -> RebalanceProtocol {
            self.1
        }

        fn assign(
            &self,
            _: &BTreeMap<String, i32>,
            _: &[GroupMember],
        ) -> Result<BTreeMap<String, MemberAssignment>> {
            Ok(self
                .0
                .iter()
                .map(|(id, tps)| (id.to_string(), MemberAssignment::new(tps.clone())))
                .collect())
        }
    }

    fn with_user_data(mut m: Member, data: &'static [u8]) -> Member {
        m.subscription.user_data = Some(Bytes::from_static(data));
        m
    }

    #[test]
    fn a_custom_assignor_sees_user_data_and_sends_its_own() {
        let taker = Arc::new(Taker::default());
        let assignor = Assignor::Custom(taker.clone());
        assert_eq!(assignor.name(), "taker");
        assert_eq!(assignor.rebalance_protocol(), RebalanceProtocol::Eager);
        assert_eq!(
            assignor.subscription_user_data(&["a".into(), "b".into()]),
            Some(Bytes::from_static(b"a,b"))
        );
        let members = [
            with_user_data(member("a", &["t"]), b"leave"),
            with_user_data(member("b", &["t"]), b"take"),
        ];
        let out = assignor.assign(&counts(&[("t", 3)]), &members).unwrap();
        // Left out members still get an (empty) assignment.
        assert_eq!(out["a"], Assignment::default());
        assert_eq!(out["b"].partitions, tps("t", &[0, 1, 2]));
        assert_eq!(out["b"].user_data, Some(Bytes::from_static(b"b")));

        assignor.on_assignment(&out["b"]);
        let heard = taker.heard.lock().unwrap().clone();
        assert_eq!(
            heard,
            vec![(tps("t", &[0, 1, 2]), Some(Bytes::from_static(b"b")))]
        );
    }

    #[test]
    fn the_assignors_own_error_comes_back() {
        let assignor = Assignor::Custom(Arc::new(Taker::default()));
        let err = assignor
            .assign(&counts(&[("t", 1)]), &[member("a", &["t"])])
            .unwrap_err();
        assert!(err.to_string().contains("nobody takes"), "{err}");
    }

    #[test]
    fn built_ins_carry_no_user_data_and_follow_the_coordinators_choice() {
        let builtin = Assignor::Builtin(AssignmentStrategy::Range);
        assert_eq!(builtin.subscription_user_data(&["t".into()]), None);
        assert!(matches!(
            builtin.chosen(Some("roundrobin")),
            Assignor::Builtin(AssignmentStrategy::RoundRobin)
        ));
        let out = builtin
            .assign(&counts(&[("t", 2)]), &[member("a", &["t"])])
            .unwrap();
        assert_eq!(out["a"].user_data, None);
        let custom = Assignor::Custom(Arc::new(Taker::default()));
        assert_eq!(custom.chosen(Some("range")).name(), "taker");
    }

    #[test]
    fn invalid_custom_assignments_are_errors() {
        let topics = counts(&[("t", 2), ("u", 1)]);
        let members = [
            owning(member("a", &["t"]), &tps("t", &[0]), 4),
            member("b", &["t", "u"]),
        ];
        let cases: Vec<(Fixed, &str)> = vec![
            (
                Fixed(vec![("z", tps("t", &[0]))], RebalanceProtocol::Eager),
                "not a member",
            ),
            (
                Fixed(vec![("a", tps("u", &[0]))], RebalanceProtocol::Eager),
                "does not subscribe",
            ),
            (
                Fixed(vec![("a", tps("t", &[2]))], RebalanceProtocol::Eager),
                "does not exist",
            ),
            (
                Fixed(
                    vec![("a", tps("t", &[1])), ("b", tps("t", &[1]))],
                    RebalanceProtocol::Eager,
                ),
                "both",
            ),
            (
                Fixed(vec![("b", tps("t", &[0]))], RebalanceProtocol::Cooperative),
                "still owns",
            ),
        ];
        for (fixed, expected) in cases {
            let assignor = Assignor::Custom(Arc::new(fixed));
            let err = assignor.assign(&topics, &members).unwrap_err();
            assert!(matches!(err, Error::Assignor { .. }), "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        }
        // Eager: what a member owned is no one's once everyone revoked.
        let eager = Assignor::Custom(Arc::new(Fixed(
            vec![("b", tps("t", &[0, 1]))],
            RebalanceProtocol::Eager,
        )));
        assert_eq!(
            eager.assign(&topics, &members).unwrap()["b"].partitions,
            tps("t", &[0, 1])
        );
    }

    #[test]
    fn a_group_member_shows_the_whole_subscription() {
        let mut m = owning(member("a", &["t"]), &tps("t", &[1]), 7);
        m.group_instance_id = Some("i".into());
        m = with_user_data(m, b"x");
        let g = GroupMember::from_member(&m);
        let mut expected = GroupMember::new("a", vec!["t".into()]);
        expected.group_instance_id = Some("i".into());
        expected.owned_partitions = tps("t", &[1]);
        expected.generation_id = 7;
        expected.user_data = Some(Bytes::from_static(b"x"));
        assert_eq!(g, expected);
    }

    #[test]
    fn range_is_per_topic_with_extras_first() {
        let members = [member("b", &["t", "u"]), member("a", &["t", "u"])];
        let a = AssignmentStrategy::Range.assign(&counts(&[("t", 3), ("u", 3)]), &members);
        let mut a_expected = tps("t", &[0, 1]);
        a_expected.extend(tps("u", &[0, 1]));
        assert_eq!(a["a"], a_expected);
        let mut b_expected = tps("t", &[2]);
        b_expected.extend(tps("u", &[2]));
        assert_eq!(a["b"], b_expected);
    }

    #[test]
    fn range_puts_static_members_first() {
        let mut stat = member("z", &["t"]);
        stat.group_instance_id = Some("instance".into());
        let members = [member("a", &["t"]), stat];
        let a = AssignmentStrategy::Range.assign(&counts(&[("t", 3)]), &members);
        assert_eq!(a["z"], tps("t", &[0, 1]));
        assert_eq!(a["a"], tps("t", &[2]));
    }

    #[test]
    fn round_robin_skips_members_not_subscribed() {
        let members = [member("a", &["t"]), member("b", &["t", "u"])];
        let a = AssignmentStrategy::RoundRobin.assign(&counts(&[("t", 3), ("u", 2)]), &members);
        let mut b_expected = tps("t", &[1]);
        b_expected.extend(tps("u", &[0, 1]));
        assert_eq!(a["a"], tps("t", &[0, 2]));
        assert_eq!(a["b"], b_expected);
    }

    #[test]
    fn cooperative_new_member_waits_for_revocation() {
        let topics = counts(&[("t", 4)]);
        let a = owning(member("a", &["t"]), &tps("t", &[0, 1, 2, 3]), 1);
        let b = member("b", &["t"]);
        let first = AssignmentStrategy::CooperativeSticky.assign(&topics, &[a.clone(), b.clone()]);
        // a keeps two, gives up two that b does not get yet.
        assert_eq!(first["a"].len(), 2);
        assert!(first["b"].is_empty());
        let a = owning(member("a", &["t"]), &first["a"], 2);
        let second = AssignmentStrategy::CooperativeSticky.assign(&topics, &[a, b]);
        assert_eq!(second["a"], first["a"]);
        assert_eq!(second["b"].len(), 2);
    }

    #[test]
    fn conflicting_claims_go_to_the_newer_generation() {
        let topics = counts(&[("t", 2)]);
        let a = owning(member("a", &["t"]), &tps("t", &[0, 1]), 3);
        let b = owning(member("b", &["t"]), &tps("t", &[0]), 2);
        let owners = valid_owners(&topics, &[a, b]);
        assert_eq!(owners[&TopicPartition::new("t", 0)], "a");
    }

    #[test]
    fn names_round_trip() {
        for s in [
            AssignmentStrategy::Range,
            AssignmentStrategy::RoundRobin,
            AssignmentStrategy::CooperativeSticky,
        ] {
            assert_eq!(AssignmentStrategy::from_name(s.name()), Some(s));
        }
        assert_eq!(AssignmentStrategy::from_name("sticky"), None);
    }

    /// Every partition of a topic some member subscribes to.
    fn all_partitions(
        topics: &BTreeMap<String, i32>,
        members: &[Member],
    ) -> BTreeSet<TopicPartition> {
        topics
            .iter()
            .filter(|(t, _)| members.iter().any(|m| subscribes(m, t)))
            .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
            .collect()
    }

    /// Every partition assigned at most once, only to members subscribed to its topic; returns
    /// the assigned set.
    fn check_disjoint(
        members: &[Member],
        assignment: &BTreeMap<String, Vec<TopicPartition>>,
    ) -> Result<BTreeSet<TopicPartition>, TestCaseError> {
        let mut seen = BTreeSet::new();
        for (id, partitions) in assignment {
            let m = members.iter().find(|m| &m.member_id == id);
            prop_assert!(m.is_some(), "unknown member {}", id);
            for tp in partitions {
                prop_assert!(subscribes(m.unwrap(), &tp.topic));
                prop_assert!(seen.insert(tp.clone()), "{} assigned twice", tp);
            }
        }
        Ok(seen)
    }

    fn arb_topics() -> impl Strategy<Value = BTreeMap<String, i32>> {
        proptest::collection::btree_map("[a-d]", 0i32..12, 1..4)
    }

    fn arb_members(topics: Vec<String>) -> impl Strategy<Value = Vec<Member>> {
        let n = topics.len();
        proptest::collection::vec(proptest::sample::subsequence(topics, 1..=n), 1..7).prop_map(
            |subs| {
                subs.into_iter()
                    .enumerate()
                    .map(|(i, topics)| Member {
                        member_id: format!("m{i}"),
                        group_instance_id: None,
                        subscription: Subscription {
                            topics,
                            ..Default::default()
                        },
                    })
                    .collect()
            },
        )
    }

    fn arb_case() -> impl Strategy<Value = (BTreeMap<String, i32>, Vec<Member>)> {
        arb_topics().prop_flat_map(|topics| {
            let names: Vec<String> = topics.keys().cloned().collect();
            (Just(topics), arb_members(names))
        })
    }

    proptest! {
        #[test]
        fn eager_assignors_assign_every_partition_exactly_once((topics, members) in arb_case()) {
            for strategy in [AssignmentStrategy::Range, AssignmentStrategy::RoundRobin] {
                let assignment = strategy.assign(&topics, &members);
                let assigned = check_disjoint(&members, &assignment)?;
                prop_assert_eq!(assigned, all_partitions(&topics, &members));
                prop_assert_eq!(assignment.len(), members.len());
            }
        }

        #[test]
        fn sticky_from_scratch_is_complete_and_balanced((topics, members) in arb_case()) {
            let assignment = AssignmentStrategy::CooperativeSticky.assign(&topics, &members);
            let assigned = check_disjoint(&members, &assignment)?;
            prop_assert_eq!(assigned, all_partitions(&topics, &members));
            // Balanced: no partition could move to an eligible member two or more lighter.
            for (giver, partitions) in &assignment {
                for tp in partitions {
                    for taker in members.iter().filter(|m| subscribes(m, &tp.topic)) {
                        prop_assert!(assignment[&taker.member_id].len() + 1 >= partitions.len(),
                            "{} could move from {} to {}", tp, giver, taker.member_id);
                    }
                }
            }
        }

        /// Members join and leave a stable group with identical subscriptions: the first round
        /// hands out nothing still owned by someone else, the second completes the assignment,
        /// counts differ by at most one, and every member keeps what balance allows.
        #[test]
        fn cooperative_two_rounds_are_sticky_and_balanced(
            n_partitions in 1i32..30,
            before in 1usize..6,
            after in 1usize..6,
            offset in 0usize..6,
        ) {
            let topics = counts(&[("t", n_partitions)]);
            let initial: Vec<Member> = (0..before).map(|i| member(&format!("m{i}"), &["t"])).collect();
            let stable = AssignmentStrategy::CooperativeSticky.assign(&topics, &initial);
            // The new membership: some old members (shifted by `offset`) and some new ones.
            let ids: Vec<String> = (offset..offset + after).map(|i| format!("m{i}")).collect();
            let round1_members: Vec<Member> = ids.iter().map(|id| {
                let owned = stable.get(id).cloned().unwrap_or_default();
                owning(member(id, &["t"]), &owned, 1)
            }).collect();
            let round1 = AssignmentStrategy::CooperativeSticky.assign(&topics, &round1_members);
            check_disjoint(&round1_members, &round1)?;
            for m in &round1_members {
                for tp in &round1[&m.member_id] {
                    let owned_elsewhere = round1_members.iter().any(|o| o.member_id != m.member_id
                        && o.subscription.owned_partitions.contains(tp));
                    prop_assert!(!owned_elsewhere, "{} handed to {} while still owned", tp, m.member_id);
                }
            }
            let round2_members: Vec<Member> = ids.iter().map(|id| {
                owning(member(id, &["t"]), &round1[id], 2)
            }).collect();
            let round2 = AssignmentStrategy::CooperativeSticky.assign(&topics, &round2_members);
            let assigned = check_disjoint(&round2_members, &round2)?;
            prop_assert_eq!(assigned, all_partitions(&topics, &round2_members));
            let sizes: Vec<usize> = round2.values().map(Vec::len).collect();
            let (min, max) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
            prop_assert!(max - min <= 1, "unbalanced {:?}", sizes);
            let floor = n_partitions as usize / after;
            for m in &round1_members {
                let owned: BTreeSet<_> = m.subscription.owned_partitions.iter().collect();
                let kept = round2[&m.member_id].iter().filter(|tp| owned.contains(tp)).count();
                prop_assert!(kept >= owned.len().min(floor),
                    "{} kept {} of {} (floor {})", m.member_id, kept, owned.len(), floor);
            }
        }
    }
}
