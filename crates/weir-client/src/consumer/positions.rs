//! Where the consumer stands in each assigned partition, with no I/O.
//!
//! A newly assigned partition first needs a starting offset: the group's committed offset if
//! there is one, else the `auto.offset.reset` policy turned into a ListOffsets lookup. Once it
//! has a position it is fetchable; every record handed to the application advances it. A fetch
//! result only counts if it was fetched from the current position, so a `seek` made while a
//! fetch was in flight wins over that fetch.
//!
//! Each partition also keeps the high watermark of its last fetch response, for the fetch lag
//! (Kafka's `currentLag`): Kafka Streams waits on a partition the broker holds more records
//! of, so the lag is dropped whenever it may no longer hold (a seek, a reset, a partition
//! that leaves the assignment) and is unknown until the next response.

use std::collections::BTreeMap;

use weir_protocol::ErrorCode;

use super::protocol::TopicPartition;
use crate::{Error, Result};

/// What to do when a partition has no committed offset, or its position is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OffsetReset {
    /// Start at the log start offset.
    Earliest,
    /// Start at the log end offset: only records produced from now on.
    #[default]
    Latest,
    /// Fail with `OFFSET_OUT_OF_RANGE` instead of guessing.
    None,
}

impl OffsetReset {
    /// The policy for an `auto.offset.reset` value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "earliest" | "smallest" | "beginning" => Some(Self::Earliest),
            "latest" | "largest" | "end" => Some(Self::Latest),
            "none" | "error" => Some(Self::None),
            _ => None,
        }
    }
}

/// The ListOffsets timestamp that asks for the log start offset.
pub(crate) const EARLIEST_TIMESTAMP: i64 = -2;
/// The ListOffsets timestamp that asks for the log end offset.
pub(crate) const LATEST_TIMESTAMP: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Waiting for the group's committed offset.
    Committed,
    /// Waiting for a ListOffsets answer under the reset policy.
    Reset,
    /// Fetching from this offset.
    At(i64),
}

/// The positions of the assigned partitions.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    partitions: BTreeMap<TopicPartition, Start>,
    /// The high watermark of each partition's last fetch response that continued from its
    /// position; absent until one arrives.
    high_watermarks: BTreeMap<TopicPartition, i64>,
    reset: OffsetReset,
}

impl Positions {
    pub(crate) fn new(reset: OffsetReset) -> Self {
        Self {
            partitions: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
            reset,
        }
    }

    /// Replaces the assignment. Partitions kept keep their position; new ones wait for a
    /// committed offset when `use_committed` (a group member, or a consumer with a group id),
    /// else go straight to the reset policy.
    pub(crate) fn assign(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
        use_committed: bool,
    ) {
        let mut next = BTreeMap::new();
        for tp in partitions {
            let start = self
                .partitions
                .get(&tp)
                .copied()
                .unwrap_or(if use_committed {
                    Start::Committed
                } else {
                    Start::Reset
                });
            next.insert(tp, start);
        }
        self.partitions = next;
        // Kept partitions keep their position, so their lag still holds.
        let partitions = &self.partitions;
        self.high_watermarks
            .retain(|tp, _| partitions.contains_key(tp));
    }

    /// Adds partitions (cooperative rebalancing), leaving the others alone.
    pub(crate) fn add(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
        use_committed: bool,
    ) {
        for tp in partitions {
            self.partitions.entry(tp).or_insert(if use_committed {
                Start::Committed
            } else {
                Start::Reset
            });
        }
    }

    /// Removes partitions (revoked or lost).
    pub(crate) fn remove(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.partitions.remove(tp);
            self.high_watermarks.remove(tp);
        }
    }

    pub(crate) fn assigned(&self) -> impl Iterator<Item = &TopicPartition> {
        self.partitions.keys()
    }

    pub(crate) fn is_assigned(&self, tp: &TopicPartition) -> bool {
        self.partitions.contains_key(tp)
    }

    /// Partitions waiting for their committed offset.
    pub(crate) fn awaiting_committed(&self) -> Vec<TopicPartition> {
        self.with_start(|s| s == Start::Committed)
    }

    /// Partitions waiting for a reset, each with the ListOffsets timestamp to ask for; fails
    /// naming the first partition when the policy is `none`.
    pub(crate) fn awaiting_reset(&self) -> Result<Vec<(TopicPartition, i64)>> {
        let waiting = self.with_start(|s| s == Start::Reset);
        let timestamp = match self.reset {
            OffsetReset::Earliest => EARLIEST_TIMESTAMP,
            OffsetReset::Latest => LATEST_TIMESTAMP,
            OffsetReset::None => {
                return match waiting.first() {
                    Some(tp) => Err(Error::Kafka {
                        code: ErrorCode::OFFSET_OUT_OF_RANGE,
                        message: Some(format!(
                            "{tp} has no valid position and auto.offset.reset is none"
                        )),
                    }),
                    None => Ok(Vec::new()),
                };
            }
        };
        Ok(waiting.into_iter().map(|tp| (tp, timestamp)).collect())
    }

    /// The committed offset arrived: `None` (or a negative offset) means nothing was committed.
    pub(crate) fn set_committed(&mut self, tp: &TopicPartition, offset: Option<i64>) {
        if let Some(start) = self.partitions.get_mut(tp)
            && *start == Start::Committed
        {
            *start = match offset {
                Some(o) if o >= 0 => Start::At(o),
                _ => Start::Reset,
            };
        }
    }

    /// The reset lookup answered.
    pub(crate) fn set_reset(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(start) = self.partitions.get_mut(tp)
            && *start == Start::Reset
        {
            *start = Start::At(offset);
        }
    }

    /// Moves the position; the next fetch starts there, and the lag is unknown until its
    /// response.
    pub(crate) fn seek(&mut self, tp: &TopicPartition, offset: i64) -> bool {
        match self.partitions.get_mut(tp) {
            Some(start) => {
                *start = Start::At(offset);
                self.high_watermarks.remove(tp);
                true
            }
            None => false,
        }
    }

    pub(crate) fn position(&self, tp: &TopicPartition) -> Option<i64> {
        match self.partitions.get(tp) {
            Some(Start::At(o)) => Some(*o),
            _ => None,
        }
    }

    /// Partitions with a position, to fetch from.
    pub(crate) fn fetchable(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter_map(|(tp, s)| match s {
                Start::At(o) => Some((tp.clone(), *o)),
                _ => None,
            })
            .collect()
    }

    /// Records up to `next_offset` were handed out; applies only if the consumer still stands
    /// at `fetched_from`.
    pub(crate) fn advance(
        &mut self,
        tp: &TopicPartition,
        fetched_from: i64,
        next_offset: i64,
    ) -> bool {
        match self.partitions.get_mut(tp) {
            Some(start) if *start == Start::At(fetched_from) => {
                *start = Start::At(next_offset);
                true
            }
            _ => false,
        }
    }

    /// The broker said `fetched_from` is out of range; reset if the consumer still stands there.
    pub(crate) fn out_of_range(&mut self, tp: &TopicPartition, fetched_from: i64) {
        if let Some(start) = self.partitions.get_mut(tp)
            && *start == Start::At(fetched_from)
        {
            *start = Start::Reset;
            self.high_watermarks.remove(tp);
        }
    }

    /// A fetch response for `tp` that continued from its position (or from the end of what
    /// is buffered for it) gave `high_watermark`.
    pub(crate) fn set_high_watermark(&mut self, tp: &TopicPartition, high_watermark: i64) {
        if self.partitions.contains_key(tp) && high_watermark >= 0 {
            self.high_watermarks.insert(tp.clone(), high_watermark);
        }
    }

    /// How many records the broker held past the position at the last fetch response:
    /// `None` without a position or without a response since the partition was assigned,
    /// sought or reset. A position past the high watermark counts as no lag: there is
    /// nothing to wait for.
    pub(crate) fn lag(&self, tp: &TopicPartition) -> Option<i64> {
        let position = self.position(tp)?;
        let high_watermark = self.high_watermarks.get(tp)?;
        Some((high_watermark - position).max(0))
    }
}

impl Positions {
    fn with_start(&self, pred: impl Fn(Start) -> bool) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .filter(|(_, s)| pred(**s))
            .map(|(tp, _)| tp.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn committed_offset_wins_else_reset_policy() {
        let mut positions = Positions::new(OffsetReset::Earliest);
        positions.assign([tp(0), tp(1)], true);
        assert_eq!(positions.awaiting_committed(), vec![tp(0), tp(1)]);
        positions.set_committed(&tp(0), Some(5));
        positions.set_committed(&tp(1), None);
        assert_eq!(positions.fetchable(), vec![(tp(0), 5)]);
        assert_eq!(
            positions.awaiting_reset().unwrap(),
            vec![(tp(1), EARLIEST_TIMESTAMP)]
        );
        positions.set_reset(&tp(1), 0);
        assert_eq!(positions.fetchable(), vec![(tp(0), 5), (tp(1), 0)]);
    }

    #[test]
    fn latest_and_none() {
        let mut positions = Positions::new(OffsetReset::Latest);
        positions.assign([tp(0)], false);
        assert_eq!(
            positions.awaiting_reset().unwrap(),
            vec![(tp(0), LATEST_TIMESTAMP)]
        );
        let mut positions = Positions::new(OffsetReset::None);
        positions.assign([tp(0)], false);
        let err = positions.awaiting_reset().unwrap_err();
        assert!(err.to_string().contains("t-0"), "{err}");
        positions.seek(&tp(0), 3);
        assert!(positions.awaiting_reset().unwrap().is_empty());
    }

    #[test]
    fn stale_fetch_results_do_not_override_a_seek() {
        let mut positions = Positions::new(OffsetReset::Earliest);
        positions.assign([tp(0)], false);
        positions.seek(&tp(0), 10);
        assert!(positions.advance(&tp(0), 10, 15));
        positions.seek(&tp(0), 2);
        assert!(!positions.advance(&tp(0), 15, 20));
        positions.out_of_range(&tp(0), 15);
        assert_eq!(positions.position(&tp(0)), Some(2));
        positions.out_of_range(&tp(0), 2);
        assert_eq!(positions.position(&tp(0)), None);
        assert_eq!(positions.awaiting_reset().unwrap().len(), 1);
    }

    #[test]
    fn reassignment_keeps_positions_of_kept_partitions() {
        let mut positions = Positions::new(OffsetReset::Earliest);
        positions.assign([tp(0), tp(1)], true);
        positions.set_committed(&tp(0), Some(4));
        positions.assign([tp(0), tp(2)], true);
        assert_eq!(positions.position(&tp(0)), Some(4));
        assert!(!positions.is_assigned(&tp(1)));
        assert_eq!(positions.awaiting_committed(), vec![tp(1 + 1)]);
        positions.remove(&[tp(0)]);
        positions.add([tp(3)], false);
        assert_eq!(positions.assigned().count(), 2);
    }

    /// The lag is the last response's high watermark minus the position, and is unknown
    /// before a response and after anything that moves the position other than reading.
    #[test]
    fn lag_follows_the_position_and_is_dropped_when_it_may_not_hold() {
        let mut positions = Positions::new(OffsetReset::Earliest);
        positions.assign([tp(0), tp(1)], true);
        positions.set_high_watermark(&tp(0), 10);
        assert_eq!(positions.lag(&tp(0)), None, "no position yet");
        positions.set_committed(&tp(0), Some(4));
        assert_eq!(positions.lag(&tp(0)), Some(6));
        assert!(positions.advance(&tp(0), 4, 10));
        assert_eq!(positions.lag(&tp(0)), Some(0));
        assert_eq!(positions.lag(&tp(1)), None, "never fetched");
        // A seek makes it unknown until the next response; a stale one past the high
        // watermark counts as nothing to read.
        positions.seek(&tp(0), 2);
        assert_eq!(positions.lag(&tp(0)), None);
        positions.set_high_watermark(&tp(0), 1);
        assert_eq!(positions.lag(&tp(0)), Some(0));
        positions.set_high_watermark(&tp(0), 12);
        positions.out_of_range(&tp(0), 2);
        positions.set_reset(&tp(0), 0);
        assert_eq!(positions.lag(&tp(0)), None, "reset");
        // Reassignment keeps the lag of kept partitions; removed ones forget it.
        positions.set_high_watermark(&tp(0), 3);
        positions.set_committed(&tp(1), Some(0));
        positions.set_high_watermark(&tp(1), 5);
        positions.assign([tp(0), tp(2)], true);
        assert_eq!(positions.lag(&tp(0)), Some(3));
        positions.add([tp(1)], false);
        positions.set_reset(&tp(1), 0);
        assert_eq!(positions.lag(&tp(1)), None);
        positions.remove(&[tp(0)]);
        positions.add([tp(0)], false);
        positions.set_reset(&tp(0), 0);
        assert_eq!(positions.lag(&tp(0)), None);
        positions.set_high_watermark(&tp(9), 5);
        assert!(
            !positions.high_watermarks.contains_key(&tp(9)),
            "not assigned"
        );
    }

    #[test]
    fn reset_names() {
        assert_eq!(
            OffsetReset::from_name("earliest"),
            Some(OffsetReset::Earliest)
        );
        assert_eq!(OffsetReset::from_name("latest"), Some(OffsetReset::Latest));
        assert_eq!(OffsetReset::from_name("none"), Some(OffsetReset::None));
        assert_eq!(OffsetReset::from_name("oldest"), None);
    }
}
