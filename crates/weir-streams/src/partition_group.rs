//! The records fetched for the tasks but not processed yet, per input partition, and the
//! wait of `max.task.idle.ms` (Kafka's `PartitionGroup`, with KIP-695's fetch lag): a task
//! whose input partition has nothing buffered waits for it before it processes its other
//! partitions, so that a join does not run ahead of the side that is late. It waits without
//! a time bound while the consumer knows the broker holds more of that partition (its fetch
//! lag is above 0) or does not know yet (no fetch response), since those records are on
//! their way; once the partition is known to be caught up it waits `max.task.idle.ms` more
//! for records produced meanwhile (0: none), then goes on without it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;
use weir_client::consumer::{ConsumerRecord, TopicPartition};

/// How often a task waiting for a partition's fetch checks the lag again without records
/// coming (Kafka Streams' `poll.ms`): a fetch response with no records, the one that tells a
/// partition is caught up, wakes nothing else.
const LAG_RECHECK_INTERVAL: Duration = Duration::from_millis(100);

/// What a task does about one of its input partitions that has nothing buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmptyPartition {
    /// The broker holds more of it, or the consumer does not know: wait for the fetch.
    AwaitFetch,
    /// Caught up: wait until this instant for records produced meanwhile.
    AwaitUntil(Instant),
    /// Caught up and waited for long enough: the task goes on without it.
    Skip,
}

/// The decision for an empty partition with fetch lag `lag` (`None`: unknown), given its
/// idle deadline, which it updates: the deadline is set when the partition is first found
/// caught up and dropped while it is not, so the idle time counts from the moment there is
/// nothing left to fetch, and a partition that stays caught up is waited for once only.
fn empty_partition(
    lag: Option<i64>,
    deadline: &mut Option<Instant>,
    max_idle: Duration,
    now: Instant,
) -> EmptyPartition {
    match lag {
        Some(0) => {
            let at = *deadline.get_or_insert(now + max_idle);
            if now < at {
                EmptyPartition::AwaitUntil(at)
            } else {
                EmptyPartition::Skip
            }
        }
        _ => {
            *deadline = None;
            EmptyPartition::AwaitFetch
        }
    }
}

/// Whether a task may take its next record, and if not, until when it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Ready,
    /// Nothing buffered.
    Empty,
    /// Waits for empty partitions: until the latest of their idle deadlines, or for a fetch
    /// (`None`).
    Waiting(Option<Instant>),
}

/// The buffered records of every task and the idle deadlines of their empty partitions.
pub(crate) struct PartitionGroups {
    max_idle: Duration,
    queues: BTreeMap<TopicPartition, VecDeque<ConsumerRecord>>,
    /// When each empty, caught-up partition stops being waited for (Kafka's
    /// `idlePartitionDeadlines`).
    idle_deadlines: HashMap<TopicPartition, Instant>,
    /// When the first task left waiting by the last [`PartitionGroups::ready`] should be
    /// checked again.
    wake_at: Option<Instant>,
}

impl PartitionGroups {
    /// `max_idle`: `max.task.idle.ms`, 0 or above (-1, never waiting, needs no groups).
    pub(crate) fn new(max_idle: Duration) -> Self {
        Self {
            max_idle,
            queues: BTreeMap::new(),
            idle_deadlines: HashMap::new(),
            wake_at: None,
        }
    }

    pub(crate) fn add(&mut self, records: Vec<ConsumerRecord>) {
        for record in records {
            self.queues
                .entry(record.topic_partition())
                .or_default()
                .push_back(record);
        }
    }

    /// The records to process now, each task's in timestamp order across its partitions (the
    /// partition whose next record is oldest first). `inputs` are the task partitions the
    /// consumer is assigned; records of a partition outside them are dropped (revoked: the
    /// new owner reads them from the committed offset), except those of `global_topics`,
    /// which wait for nothing. A task takes records while none of its empty partitions is
    /// waited for; `lag` is the consumer's fetch lag of a partition (`None`: unknown).
    pub(crate) fn ready(
        &mut self,
        inputs: &BTreeSet<TopicPartition>,
        global_topics: &BTreeSet<String>,
        now: Instant,
        lag: impl Fn(&TopicPartition) -> Option<i64>,
    ) -> Vec<ConsumerRecord> {
        let mut ready = Vec::new();
        self.queues.retain(|tp, queue| {
            if global_topics.contains(&tp.topic) {
                ready.extend(queue.drain(..));
            }
            inputs.contains(tp)
        });
        self.idle_deadlines.retain(|tp, _| inputs.contains(tp));
        let tasks: BTreeSet<i32> = self
            .queues
            .iter()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(tp, _)| tp.partition)
            .collect();
        self.wake_at = None;
        for task in tasks {
            let partitions: Vec<&TopicPartition> =
                inputs.iter().filter(|tp| tp.partition == task).collect();
            let state = loop {
                let state = self.task_state(&partitions, now, &lag);
                if state != TaskState::Ready {
                    break state;
                }
                let next = partitions
                    .iter()
                    .filter_map(|tp| {
                        let head = self.queues.get(*tp)?.front()?;
                        Some((head.timestamp, *tp))
                    })
                    .min_by_key(|(timestamp, _)| *timestamp);
                let Some(record) = next
                    .and_then(|(_, tp)| self.queues.get_mut(tp))
                    .and_then(VecDeque::pop_front)
                else {
                    break TaskState::Empty;
                };
                ready.push(record);
            };
            if let TaskState::Waiting(until) = state {
                let at = until.unwrap_or(now + LAG_RECHECK_INTERVAL);
                self.wake_at = Some(self.wake_at.map_or(at, |wake| wake.min(at)));
            }
        }
        ready
    }

    /// Whether the task of `partitions` may process its next record: it has one, and none
    /// of its empty partitions is waited for.
    fn task_state(
        &mut self,
        partitions: &[&TopicPartition],
        now: Instant,
        lag: &impl Fn(&TopicPartition) -> Option<i64>,
    ) -> TaskState {
        let mut queued = false;
        let mut awaits_fetch = false;
        let mut until: Option<Instant> = None;
        for tp in partitions {
            if self.queues.get(*tp).is_some_and(|queue| !queue.is_empty()) {
                self.idle_deadlines.remove(*tp);
                queued = true;
                continue;
            }
            let mut deadline = self.idle_deadlines.get(*tp).copied();
            let decision = empty_partition(lag(tp), &mut deadline, self.max_idle, now);
            match deadline {
                Some(at) => self.idle_deadlines.insert((*tp).clone(), at),
                None => self.idle_deadlines.remove(*tp),
            };
            match decision {
                EmptyPartition::AwaitFetch => awaits_fetch = true,
                EmptyPartition::AwaitUntil(at) => {
                    until = Some(until.map_or(at, |until| until.max(at)));
                }
                EmptyPartition::Skip => {}
            }
        }
        if !queued {
            TaskState::Empty
        } else if awaits_fetch {
            TaskState::Waiting(None)
        } else if until.is_some() {
            TaskState::Waiting(until)
        } else {
            TaskState::Ready
        }
    }

    /// When the first task left waiting may become ready without new records: the latest
    /// idle deadline of its empty partitions, or shortly, to check the fetch lag again, for
    /// a task waiting for a fetch.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.wake_at
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn record(topic: &str, partition: i32, offset: i64, timestamp: i64) -> ConsumerRecord {
        ConsumerRecord {
            topic: topic.into(),
            partition,
            offset,
            timestamp,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    /// Every partition fetched to its end: only `max.task.idle.ms` makes a task wait.
    fn caught_up(_: &TopicPartition) -> Option<i64> {
        Some(0)
    }

    fn offsets(records: &[ConsumerRecord]) -> Vec<(String, i64)> {
        records
            .iter()
            .map(|r| (r.topic.to_string(), r.offset))
            .collect()
    }

    /// A task waits for its empty partition up to the idle time, then processes what it
    /// has; data on the empty partition ends the wait, and a partition that empties again
    /// is waited for again.
    #[test]
    fn a_task_waits_for_an_empty_partition_up_to_the_idle_time() {
        let inputs: BTreeSet<TopicPartition> = [
            TopicPartition::new("orders", 0),
            TopicPartition::new("customers", 0),
        ]
        .into();
        let global = BTreeSet::new();
        let start = Instant::now();
        let idle = Duration::from_millis(100);
        let mut groups = PartitionGroups::new(idle);
        groups.add(vec![record("orders", 0, 0, 100)]);
        assert!(groups.ready(&inputs, &global, start, caught_up).is_empty());
        assert_eq!(groups.next_deadline(), Some(start + idle));
        // The table side comes within the idle time and goes first (older); then the
        // customers partition is empty again and the orders wait anew, as Kafka's.
        groups.add(vec![record("customers", 0, 0, 50)]);
        groups.add(vec![record("orders", 0, 1, 200)]);
        let at = start + Duration::from_millis(10);
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, at, caught_up)),
            vec![(String::from("customers"), 0)]
        );
        assert_eq!(groups.next_deadline(), Some(at + idle));
        assert!(
            groups
                .ready(&inputs, &global, at + idle / 2, caught_up)
                .is_empty()
        );
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, at + idle, caught_up)),
            vec![(String::from("orders"), 0), (String::from("orders"), 1)]
        );
        assert_eq!(groups.next_deadline(), None, "nothing waits");
    }

    /// A task waits until the deadline of each of its empty partitions has passed.
    #[test]
    fn a_task_is_ready_when_the_last_of_its_idle_deadlines_passes() {
        let inputs: BTreeSet<TopicPartition> = ["a", "b", "c"]
            .map(|topic| TopicPartition::new(topic, 0))
            .into();
        let global = BTreeSet::new();
        let start = Instant::now();
        let idle = Duration::from_millis(100);
        let mut groups = PartitionGroups::new(idle);
        // b and c found empty at the start, then b gets a record and c runs late.
        groups.add(vec![record("a", 0, 0, 1)]);
        assert!(groups.ready(&inputs, &global, start, caught_up).is_empty());
        groups.add(vec![record("b", 0, 0, 2)]);
        let later = start + idle / 2;
        assert!(
            groups.ready(&inputs, &global, later, caught_up).is_empty(),
            "c waited for"
        );
        groups.add(vec![record("a", 0, 1, 3)]);
        // Once c's deadline has passed the task goes on, until b runs empty: b is then
        // waited for anew, and the task is ready again when b's new deadline passes.
        let at = later + idle;
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, at, caught_up)),
            vec![(String::from("a"), 0), (String::from("b"), 0)]
        );
        assert_eq!(groups.next_deadline(), Some(at + idle));
    }

    #[test]
    fn global_records_wait_for_nothing_and_revoked_partitions_are_dropped() {
        let inputs: BTreeSet<TopicPartition> = [TopicPartition::new("orders", 0)].into();
        let global: BTreeSet<String> = [String::from("rates")].into();
        let mut groups = PartitionGroups::new(Duration::from_secs(60));
        groups.add(vec![
            record("rates", 0, 0, 5),
            record("orders", 1, 0, 1),
            record("orders", 0, 0, 9),
        ]);
        let now = Instant::now();
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, now, caught_up)),
            vec![(String::from("rates"), 0), (String::from("orders"), 0)]
        );
        assert!(groups.ready(&inputs, &global, now, caught_up).is_empty());
    }

    /// The decision for one empty partition: unknown or positive lag waits for the fetch
    /// and drops the deadline; lag 0 waits until the deadline set when it was first seen.
    #[test]
    fn an_empty_partition_is_waited_for_while_its_lag_is_unknown_or_positive() {
        let now = Instant::now();
        let idle = Duration::from_millis(100);
        for lag in [None, Some(3)] {
            let mut deadline = Some(now);
            assert_eq!(
                empty_partition(lag, &mut deadline, idle, now + idle * 10),
                EmptyPartition::AwaitFetch,
                "lag {lag:?}: no time bound"
            );
            assert_eq!(deadline, None);
        }
        let mut deadline = None;
        assert_eq!(
            empty_partition(Some(0), &mut deadline, Duration::ZERO, now),
            EmptyPartition::Skip,
            "caught up, max.task.idle.ms 0"
        );
        let mut deadline = None;
        assert_eq!(
            empty_partition(Some(0), &mut deadline, idle, now),
            EmptyPartition::AwaitUntil(now + idle)
        );
        let later = now + idle / 2;
        assert_eq!(
            empty_partition(Some(0), &mut deadline, idle, later),
            EmptyPartition::AwaitUntil(now + idle),
            "the deadline counts from the first time it was caught up"
        );
        assert_eq!(
            empty_partition(Some(0), &mut deadline, idle, now + idle),
            EmptyPartition::Skip
        );
        assert_eq!(deadline, Some(now + idle), "waited for once only");
    }

    /// With `max.task.idle.ms` 0 a task waits, with no time bound, for its empty partition
    /// while the consumer knows nothing of it or knows the broker holds more, and goes on
    /// once it is caught up; one caught up forever does not hold the task back.
    #[test]
    fn with_no_idle_time_a_task_waits_only_for_a_partition_with_records_at_the_broker() {
        let inputs: BTreeSet<TopicPartition> = [
            TopicPartition::new("orders", 0),
            TopicPartition::new("customers", 0),
        ]
        .into();
        let global = BTreeSet::new();
        let start = Instant::now();
        let mut groups = PartitionGroups::new(Duration::ZERO);
        groups.add(vec![
            record("orders", 0, 0, 100),
            record("orders", 0, 1, 300),
        ]);
        let lag = |customers: Option<i64>| {
            move |tp: &TopicPartition| {
                if tp.topic == "customers" {
                    customers
                } else {
                    Some(0)
                }
            }
        };
        let much_later = start + Duration::from_secs(3600);
        assert!(groups.ready(&inputs, &global, start, lag(None)).is_empty());
        assert_eq!(
            groups.next_deadline(),
            Some(start + LAG_RECHECK_INTERVAL),
            "the lag is checked again without records"
        );
        assert!(
            groups
                .ready(&inputs, &global, much_later, lag(Some(2)))
                .is_empty()
        );
        // The customers fetched: processed in timestamp order until they run out, then
        // the orders wait again for the one left at the broker.
        groups.add(vec![
            record("customers", 0, 0, 50),
            record("customers", 0, 1, 200),
        ]);
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, much_later, lag(Some(1)))),
            vec![
                (String::from("customers"), 0),
                (String::from("orders"), 0),
                (String::from("customers"), 1)
            ]
        );
        assert_eq!(
            groups.next_deadline(),
            Some(much_later + LAG_RECHECK_INTERVAL)
        );
        // Caught up (its last record compacted away, say): the order goes on at once, and
        // the next ones do not wait for the partition either.
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, much_later, lag(Some(0)))),
            vec![(String::from("orders"), 1)]
        );
        assert_eq!(groups.next_deadline(), None, "nothing waits");
        groups.add(vec![record("orders", 0, 2, 400)]);
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, much_later, lag(Some(0)))),
            vec![(String::from("orders"), 2)]
        );
    }

    /// Above 0, the idle time counts from when the empty partition is known to be caught up:
    /// a partition with records at the broker is waited for however long their fetch takes.
    #[test]
    fn the_idle_time_starts_once_the_partition_is_caught_up() {
        let inputs: BTreeSet<TopicPartition> =
            ["a", "b"].map(|topic| TopicPartition::new(topic, 0)).into();
        let global = BTreeSet::new();
        let start = Instant::now();
        let idle = Duration::from_millis(100);
        let mut groups = PartitionGroups::new(idle);
        groups.add(vec![record("a", 0, 0, 1)]);
        let b_lag =
            |b: Option<i64>| move |tp: &TopicPartition| if tp.topic == "b" { b } else { Some(0) };
        assert!(
            groups
                .ready(&inputs, &global, start, b_lag(Some(0)))
                .is_empty()
        );
        assert_eq!(groups.next_deadline(), Some(start + idle));
        // b turns out to have more at the broker: its deadline is dropped, and it is waited
        // for past the idle time.
        let later = start + idle * 5;
        assert!(
            groups
                .ready(&inputs, &global, later, b_lag(Some(4)))
                .is_empty()
        );
        assert!(
            groups
                .ready(&inputs, &global, later, b_lag(Some(0)))
                .is_empty()
        );
        assert_eq!(groups.next_deadline(), Some(later + idle));
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, later + idle, b_lag(Some(0)))),
            vec![(String::from("a"), 0)]
        );
    }
}
