//! The records fetched for the tasks but not processed yet, per input partition, and the
//! wait of `max.task.idle.ms` (Kafka's `PartitionGroup`): a task whose input partition has
//! nothing buffered waits for it, up to the idle time, before it processes its other
//! partitions, so that a join does not run ahead of the side that is late.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;
use weir_client::consumer::{ConsumerRecord, TopicPartition};

/// The buffered records of every task and the idle deadlines of their empty partitions.
pub(crate) struct PartitionGroups {
    max_idle: Duration,
    queues: BTreeMap<TopicPartition, VecDeque<ConsumerRecord>>,
    /// When each empty partition stops being waited for: set when it is first found empty,
    /// cleared when it has records again (Kafka's `idlePartitionDeadlines`).
    idle_deadlines: HashMap<TopicPartition, Instant>,
}

impl PartitionGroups {
    pub(crate) fn new(max_idle: Duration) -> Self {
        Self {
            max_idle,
            queues: BTreeMap::new(),
            idle_deadlines: HashMap::new(),
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
    /// which wait for nothing. A task takes records while every one of its partitions has
    /// some buffered, or while the idle deadline of each empty one has passed.
    pub(crate) fn ready(
        &mut self,
        inputs: &BTreeSet<TopicPartition>,
        global_topics: &BTreeSet<String>,
        now: Instant,
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
        for task in tasks {
            let partitions: Vec<&TopicPartition> =
                inputs.iter().filter(|tp| tp.partition == task).collect();
            while self.task_ready(&partitions, now) {
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
                    break;
                };
                ready.push(record);
            }
        }
        ready
    }

    /// Whether the task of `partitions` may process its next record: it has one, and each of
    /// its empty partitions was waited for long enough.
    fn task_ready(&mut self, partitions: &[&TopicPartition], now: Instant) -> bool {
        let mut queued = false;
        let mut waiting = false;
        for tp in partitions {
            if self.queues.get(*tp).is_some_and(|queue| !queue.is_empty()) {
                self.idle_deadlines.remove(*tp);
                queued = true;
            } else {
                let deadline = *self
                    .idle_deadlines
                    .entry((*tp).clone())
                    .or_insert(now + self.max_idle);
                waiting |= now < deadline;
            }
        }
        queued && !waiting
    }

    /// When the first task with records waiting becomes ready: its empty partitions' latest
    /// idle deadline (a task waits until every one has passed).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let waiting: BTreeSet<i32> = self
            .queues
            .iter()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(tp, _)| tp.partition)
            .collect();
        let mut ready_at: BTreeMap<i32, Instant> = BTreeMap::new();
        for (tp, deadline) in &self.idle_deadlines {
            let empty = self.queues.get(tp).is_none_or(VecDeque::is_empty);
            if empty && waiting.contains(&tp.partition) {
                let at = ready_at.entry(tp.partition).or_insert(*deadline);
                *at = (*at).max(*deadline);
            }
        }
        ready_at.into_values().min()
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
        assert!(groups.ready(&inputs, &global, start).is_empty());
        assert_eq!(groups.next_deadline(), Some(start + idle));
        // The table side comes within the idle time and goes first (older); then the
        // customers partition is empty again and the orders wait anew, as Kafka's.
        groups.add(vec![record("customers", 0, 0, 50)]);
        groups.add(vec![record("orders", 0, 1, 200)]);
        let at = start + Duration::from_millis(10);
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, at)),
            vec![(String::from("customers"), 0)]
        );
        assert_eq!(groups.next_deadline(), Some(at + idle));
        assert!(groups.ready(&inputs, &global, at + idle / 2).is_empty());
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, at + idle)),
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
        assert!(groups.ready(&inputs, &global, start).is_empty());
        groups.add(vec![record("b", 0, 0, 2)]);
        let later = start + idle / 2;
        assert!(
            groups.ready(&inputs, &global, later).is_empty(),
            "c waited for"
        );
        groups.add(vec![record("a", 0, 1, 3)]);
        // Once c's deadline has passed the task goes on, until b runs empty: b is then
        // waited for anew, and the task is ready again when b's new deadline passes.
        let at = later + idle;
        assert_eq!(
            offsets(&groups.ready(&inputs, &global, at)),
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
            offsets(&groups.ready(&inputs, &global, now)),
            vec![(String::from("rates"), 0), (String::from("orders"), 0)]
        );
        assert!(groups.ready(&inputs, &global, now).is_empty());
    }
}
