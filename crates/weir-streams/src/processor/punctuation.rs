//! Punctuation: the task's two queues of scheduled punctuators (stream time and wall-clock
//! time), after Kafka's `PunctuationQueue` and `PunctuationSchedule`.
//!
//! A schedule names its processor by index in the topology's processor list and its
//! punctuator by id; the punctuator itself is typed by the processor's output and lives in
//! the processor's node. The queue is untyped, so one task-wide order covers every processor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::topology::{Context, RawRecord};

use super::ProcessorNode;

/// When a punctuator fires (Kafka's `PunctuationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PunctuationType {
    /// When stream time (the largest timestamp the task has processed) reaches the next
    /// scheduled time. The schedule is aligned to 0, so the first punctuation comes with the
    /// first record; the punctuator gets the stream time, and fires once per advance however
    /// many intervals the advance spans.
    StreamTime,
    /// When the wall clock reaches the next scheduled time, whether or not records arrive.
    /// The schedule is aligned to the time of scheduling: the first punctuation is one
    /// interval later. The punctuator gets the wall-clock time.
    WallClockTime,
}

/// Cancels a scheduled punctuation (Kafka's `Cancellable`). Dropping it does not cancel.
#[derive(Debug, Clone)]
pub struct Cancellable {
    cancelled: Arc<AtomicBool>,
}

impl Cancellable {
    /// Stops the punctuation: it does not fire again, even when cancelled from its own
    /// punctuator.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// The topic, partition and offset of the input record being processed (Kafka's
/// `RecordMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordMetadata {
    /// The input topic.
    pub topic: String,
    /// The input partition.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
}

impl RecordMetadata {
    pub(crate) fn of(record: &RawRecord) -> Self {
        Self {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        }
    }
}

/// Where the task's wall-clock time comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum WallClock {
    /// The system clock (`KafkaStreams`).
    #[default]
    System,
    /// A mocked clock at this time, moved by the test driver.
    Mock(i64),
}

impl WallClock {
    pub(crate) fn now(self) -> i64 {
        match self {
            Self::System => system_time_ms(),
            Self::Mock(now) => now,
        }
    }
}

/// Milliseconds since the epoch on the system clock (0 for a clock set before the epoch).
pub(crate) fn system_time_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// One scheduled punctuator and its next time.
#[derive(Debug, Clone)]
struct Schedule {
    time: i64,
    interval: i64,
    processor: usize,
    punctuator: u64,
    cancelled: Arc<AtomicBool>,
}

impl Schedule {
    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The schedule after a punctuation at `now`: one interval on, or, when `now` is already
    /// past that (a gap in the data, or a late wall-clock check), the first multiple of the
    /// interval from this schedule's time that lies after `now`, so missed intervals are
    /// skipped instead of fired in a burst (Kafka's `PunctuationSchedule#next`).
    fn next(mut self, now: i64) -> Self {
        let next = self.time.saturating_add(self.interval);
        self.time = if now >= next {
            let missed = (now - self.time) / self.interval;
            self.time
                .saturating_add(missed.saturating_add(1).saturating_mul(self.interval))
        } else {
            next
        };
        self
    }
}

/// Schedules ordered by time, then by the order they were scheduled in.
#[derive(Debug, Default)]
struct PunctuationQueue {
    schedules: BTreeMap<(i64, u64), Schedule>,
}

impl PunctuationQueue {
    fn push(&mut self, seq: u64, schedule: Schedule) {
        self.schedules.insert((schedule.time, seq), schedule);
    }

    /// The earliest schedule, if it is due at `now`.
    fn pop_due(&mut self, now: i64) -> Option<Schedule> {
        let (&(time, _), _) = self.schedules.first_key_value()?;
        if time > now {
            return None;
        }
        self.schedules.pop_first().map(|(_, schedule)| schedule)
    }

    fn next_time(&self) -> Option<i64> {
        self.schedules.keys().next().map(|&(time, _)| time)
    }
}

/// The task's share of the processor API, kept in its [`Context`] so processors reach it while
/// they process records: the clock, the input record's metadata, the punctuation queues.
#[derive(Debug, Default)]
pub(crate) struct ProcessorTaskState {
    /// Whether the topology's processors have been created and initialized.
    pub(crate) initialized: bool,
    pub(crate) clock: WallClock,
    /// The input record being processed; `None` during punctuation.
    pub(crate) record_metadata: Option<RecordMetadata>,
    stream_time_queue: PunctuationQueue,
    wall_clock_queue: PunctuationQueue,
    /// Numbers punctuators and queue entries.
    next_seq: u64,
}

impl ProcessorTaskState {
    fn queue(&mut self, kind: PunctuationType) -> &mut PunctuationQueue {
        match kind {
            PunctuationType::StreamTime => &mut self.stream_time_queue,
            PunctuationType::WallClockTime => &mut self.wall_clock_queue,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Queues a new punctuation for `processor` and returns its punctuator id and handle.
    pub(crate) fn schedule(
        &mut self,
        processor: usize,
        interval: Duration,
        kind: PunctuationType,
    ) -> Result<(u64, Cancellable), Error> {
        let interval = i64::try_from(interval.as_millis())
            .ok()
            .filter(|&ms| ms >= 1)
            .ok_or(Error::PunctuationInterval(interval))?;
        let time = match kind {
            // Aligned to 0: punctuates as soon as there is data.
            PunctuationType::StreamTime => 0,
            // Aligned to now: punctuates once the interval has elapsed.
            PunctuationType::WallClockTime => self.clock.now().saturating_add(interval),
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let punctuator = self.next_seq();
        let seq = self.next_seq();
        self.queue(kind).push(
            seq,
            Schedule {
                time,
                interval,
                processor,
                punctuator,
                cancelled: Arc::clone(&cancelled),
            },
        );
        Ok((punctuator, Cancellable { cancelled }))
    }

    /// When the earliest wall-clock punctuation is due.
    pub(crate) fn next_wall_clock_punctuation(&self) -> Option<i64> {
        self.wall_clock_queue.next_time()
    }
}

/// Fires every punctuator of `kind` due at `now`, earliest first, each once (Kafka's
/// `PunctuationQueue#maybePunctuate`); returns whether any fired. A punctuator scheduled by
/// another one fires in the same call when it is already due.
pub(crate) fn punctuate(
    processors: &[Arc<dyn ProcessorNode>],
    ctx: &mut Context,
    kind: PunctuationType,
    now: i64,
) -> Result<bool, Error> {
    let mut punctuated = false;
    while let Some(schedule) = ctx.processor_api.queue(kind).pop_due(now) {
        let Some(node) = processors.get(schedule.processor) else {
            continue;
        };
        if schedule.cancelled() {
            node.drop_punctuator(schedule.punctuator);
            continue;
        }
        // Records forwarded by a punctuator come from no input record.
        ctx.processor_api.record_metadata = None;
        node.punctuate(ctx, schedule.punctuator, now)?;
        punctuated = true;
        // The punctuator may have cancelled itself.
        if schedule.cancelled() {
            node.drop_punctuator(schedule.punctuator);
        } else {
            let seq = ctx.processor_api.next_seq();
            ctx.processor_api.queue(kind).push(seq, schedule.next(now));
        }
    }
    Ok(punctuated)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn schedule(time: i64, interval: i64) -> Schedule {
        Schedule {
            time,
            interval,
            processor: 0,
            punctuator: 0,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn next_is_one_interval_on_when_on_time() {
        assert_eq!(schedule(0, 10).next(0).time, 10);
        assert_eq!(schedule(10, 10).next(19).time, 20);
    }

    #[test]
    fn next_skips_missed_intervals_keeping_the_alignment() {
        // At 35 with 10-ms intervals from 10: 20 and 30 were missed; the next is 40.
        assert_eq!(schedule(10, 10).next(35).time, 40);
        // Exactly on a multiple: the next is one interval after it.
        assert_eq!(schedule(10, 10).next(30).time, 40);
        assert_eq!(schedule(0, 10).next(10).time, 20);
    }

    #[test]
    fn next_saturates_instead_of_overflowing() {
        assert_eq!(schedule(i64::MAX - 1, 10).next(i64::MAX).time, i64::MAX);
    }

    #[test]
    fn queue_pops_due_schedules_in_time_then_scheduling_order() {
        let mut queue = PunctuationQueue::default();
        queue.push(
            1,
            Schedule {
                punctuator: 1,
                ..schedule(20, 10)
            },
        );
        queue.push(
            2,
            Schedule {
                punctuator: 2,
                ..schedule(10, 10)
            },
        );
        queue.push(
            3,
            Schedule {
                punctuator: 3,
                ..schedule(10, 10)
            },
        );
        assert_eq!(queue.next_time(), Some(10));
        assert_eq!(queue.pop_due(10).unwrap().punctuator, 2);
        assert_eq!(queue.pop_due(10).unwrap().punctuator, 3);
        assert!(queue.pop_due(19).is_none());
        assert_eq!(queue.pop_due(20).unwrap().punctuator, 1);
        assert!(queue.pop_due(i64::MAX).is_none());
    }

    #[test]
    fn intervals_below_one_millisecond_are_refused() {
        let mut state = ProcessorTaskState::default();
        let refused = state.schedule(0, Duration::from_micros(999), PunctuationType::StreamTime);
        assert!(matches!(refused, Err(Error::PunctuationInterval(_))));
        let (_, _) = state
            .schedule(0, Duration::from_millis(1), PunctuationType::StreamTime)
            .unwrap();
    }

    #[test]
    fn wall_clock_schedules_start_one_interval_from_now() {
        let mut state = ProcessorTaskState {
            clock: WallClock::Mock(1_000),
            ..ProcessorTaskState::default()
        };
        state
            .schedule(0, Duration::from_secs(5), PunctuationType::WallClockTime)
            .unwrap();
        assert_eq!(state.next_wall_clock_punctuation(), Some(6_000));
    }
}
